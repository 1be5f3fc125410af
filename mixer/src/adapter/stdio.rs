//! `stdio`: 1.4's stdio adapter. `logentry` instances become one line each (JSON by default:
//! `level`, `time`, `instance`, then the variables in name order), `metric` instances likewise
//! with their `value` and dimensions; written to Mixer's stdout or stderr, to a file, or to a
//! file rotated by size with old files kept by count and age. The entry's severity picks its
//! level through `severityLevels`; entries below `outputLevel` are not written.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use istio_api::pb::adapter::stdio::config::params::{Level, Stream};
use istio_api::pb::adapter::stdio::config::Params;
use istio_attribute::{Timestamp, Value};
use serde_json::{Map, Value as Json};

use super::api::{decode_params, each_handled, has_field, AdapterError, BuildContext, BuildError, Handler};
use crate::template::{Instance, Template};

const PARAMS: &str = "adapter.stdio.config.Params";

/// 1.4's default severity names.
const SEVERITIES: [(&str, Level); 14] = [
    ("INFORMATIONAL", Level::Info),
    ("informational", Level::Info),
    ("INFO", Level::Info),
    ("info", Level::Info),
    ("WARNING", Level::Warning),
    ("warning", Level::Warning),
    ("WARN", Level::Warning),
    ("warn", Level::Warning),
    ("ERROR", Level::Error),
    ("error", Level::Error),
    ("ERR", Level::Error),
    ("err", Level::Error),
    ("FATAL", Level::Error),
    ("fatal", Level::Error),
];

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Warning => "warn",
        Level::Error => "error",
    }
}

/// Where lines go.
enum Sink {
    Stdout,
    Stderr,
    File(std::fs::File),
    Rotated(Rotating),
}

/// A file that is renamed aside (`NAME-TIMESTAMP`) when it grows past its size, keeping at most
/// `keep` old files and none older than `max_age`.
struct Rotating {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    max_bytes: u64,
    keep: usize,
    max_age: Option<Duration>,
}

fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl Rotating {
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.written += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let mut aside = self.path.clone().into_os_string();
        aside.push(format!("-{stamp}"));
        std::fs::rename(&self.path, &aside)?;
        self.file = open_append(&self.path)?;
        self.written = 0;
        self.prune();
        Ok(())
    }

    /// Removes the oldest rotated files beyond `keep`, and those older than `max_age`.
    fn prune(&self) {
        let (Some(directory), Some(name)) = (self.path.parent(), self.path.file_name()) else { return };
        let prefix = format!("{}-", name.to_string_lossy());
        let Ok(entries) =
            std::fs::read_dir(if directory.as_os_str().is_empty() { std::path::Path::new(".") } else { directory })
        else {
            return;
        };
        let mut rotated: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        rotated.sort();
        let now = SystemTime::now();
        let excess = rotated.len().saturating_sub(self.keep);
        for (position, (modified, path)) in rotated.iter().enumerate() {
            let too_old = self.max_age.is_some_and(|age| now.duration_since(*modified).unwrap_or_default() > age);
            if (self.keep > 0 && position < excess) || too_old {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Sink {
    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = String::with_capacity(line.len() + 1);
        bytes.push_str(line);
        bytes.push('\n');
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(bytes.as_bytes()),
            Sink::Stderr => std::io::stderr().lock().write_all(bytes.as_bytes()),
            Sink::File(file) => file.write_all(bytes.as_bytes()),
            Sink::Rotated(rotating) => rotating.write(bytes.as_bytes()),
        }
    }
}

pub struct Stdio {
    severities: HashMap<String, Level>,
    metric_level: Level,
    output_level: Level,
    json: bool,
    sink: Mutex<Sink>,
}

impl std::fmt::Debug for Stdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stdio").field("json", &self.json).finish()
    }
}

fn level(value: i32) -> Level {
    Level::try_from(value).unwrap_or(Level::Info)
}

pub(super) fn build(context: &BuildContext<'_>) -> Result<Arc<Stdio>, BuildError> {
    let params: Params = decode_params(PARAMS, context.params)?;
    let stream = Stream::try_from(params.log_stream).unwrap_or(Stream::Stdout);
    let path = PathBuf::from(&params.output_path);
    let invalid = |message: &str| BuildError::Invalid(vec![("outputPath".to_string(), message.to_string())]);
    match stream {
        Stream::Stdout | Stream::Stderr if !params.output_path.is_empty() => {
            return Err(invalid("cannot specify an output path when using a STDOUT or STDERR log stream"))
        }
        Stream::File | Stream::RotatedFile if params.output_path.is_empty() => {
            return Err(invalid("need a valid output path when using a FILE or ROTATED_FILE log stream"))
        }
        _ => {}
    }
    let opened = |path: &PathBuf| {
        open_append(path)
            .map_err(|error| BuildError::Instantiation(format!("could not build logger: {}: {error}", path.display())))
    };
    let sink = match stream {
        Stream::Stdout => Sink::Stdout,
        Stream::Stderr => Sink::Stderr,
        Stream::File => Sink::File(opened(&path)?),
        Stream::RotatedFile => {
            let file = opened(&path)?;
            let written = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
            // Params merge over 1.4's defaults: zero means the default.
            let megabytes = if params.max_megabytes_before_rotation > 0 {
                u64::try_from(params.max_megabytes_before_rotation).unwrap_or(100)
            } else {
                100 * 1024 * 1024
            };
            let days = if params.max_days_before_rotation > 0 { params.max_days_before_rotation } else { 30 };
            let keep = if params.max_rotated_files > 0 { params.max_rotated_files } else { 1000 };
            Sink::Rotated(Rotating {
                path,
                file,
                written,
                max_bytes: megabytes.saturating_mul(1024 * 1024),
                keep: usize::try_from(keep).unwrap_or(1000),
                max_age: Some(Duration::from_secs(u64::try_from(days).unwrap_or(30) * 86_400)),
            })
        }
    };
    let mut severities: HashMap<String, Level> =
        SEVERITIES.iter().map(|(name, level)| (name.to_string(), *level)).collect();
    for (name, value) in &params.severity_levels {
        severities.insert(name.clone(), level(*value));
    }
    // A proto3 merge cannot turn the default `outputAsJson: true` off; 1.4 behaved so too, but
    // a handler that writes `false` means it, so it is honoured here.
    let json = params.output_as_json || !has_field(context.params, "outputAsJson", "output_as_json");
    Ok(Arc::new(Stdio {
        severities,
        metric_level: level(params.metric_level),
        output_level: level(params.output_level),
        json,
        sink: Mutex::new(sink),
    }))
}

/// `2006-01-02T15:04:05.000000Z`, the time format 1.4's entries carry.
fn format_time(timestamp: Timestamp) -> String {
    let (seconds, nanos) = timestamp.to_parts();
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        + time::Duration::nanoseconds(i64::from(nanos));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// A value as the entry shows it: numbers and booleans as JSON ones, maps as objects, times in
/// the entry's format, the rest (addresses, durations) as text.
fn json_value(value: &Value<'_>) -> Json {
    match value {
        Value::Int64(number) => Json::from(*number),
        Value::Double(number) => Json::from(*number),
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Timestamp(timestamp) => Json::String(format_time(*timestamp)),
        Value::StringMap(map) => {
            Json::Object(map.iter().map(|(key, value)| (key.clone(), Json::String(value.clone()))).collect())
        }
        other => Json::String(other.to_string()),
    }
}

/// Appends `text` as a JSON string.
fn push_json_text(line: &mut Vec<u8>, text: &str) {
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *line, text);
}

/// Appends a value as [`json_value`] shows it, without building the JSON value for plain text.
fn push_json_value(line: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::String(text) => push_json_text(line, text),
        other => {
            let _ = serde_json::to_writer(&mut *line, &json_value(other));
        }
    }
}

impl Stdio {
    fn level_of(&self, severity: Option<&Value<'_>>) -> Level {
        severity.and_then(Value::as_str).and_then(|name| self.severities.get(name)).copied().unwrap_or(Level::Info)
    }

    /// One line: `level`, `time`, `instance`, then the fields in order.
    fn line(&self, level: Level, time: Timestamp, instance: &str, fields: &BTreeMap<&str, &Value<'_>>) -> String {
        if self.json {
            // Built in order: `level`, `time` and `instance` first, as 1.4's encoder wrote them.
            let mut line = Vec::with_capacity(256 + fields.len() * 48);
            line.extend_from_slice(b"{\"level\":\"");
            line.extend_from_slice(level_name(level).as_bytes());
            line.extend_from_slice(b"\",\"time\":\"");
            line.extend_from_slice(format_time(time).as_bytes());
            line.extend_from_slice(b"\",\"instance\":");
            push_json_text(&mut line, instance);
            for (name, value) in fields {
                line.push(b',');
                push_json_text(&mut line, name);
                line.push(b':');
                push_json_value(&mut line, value);
            }
            line.push(b'}');
            // Only UTF-8 text and JSON punctuation went in.
            String::from_utf8(line).unwrap_or_default()
        } else {
            let context: Map<String, Json> =
                fields.iter().map(|(name, value)| ((*name).to_string(), json_value(value))).collect();
            format!("{}\t{}\t{instance}\t{}", format_time(time), level_name(level), Json::Object(context))
        }
    }

    fn write(&self, level: Level, line: String) -> Result<(), String> {
        if level < self.output_level {
            return Ok(());
        }
        istio_runtime::sync::lock(&self.sink).write(&line).map_err(|error| format!("could not write entry: {error}"))
    }

    fn entry(&self, instance: &Instance) -> Result<(), String> {
        match instance.template {
            Template::LogEntry => {
                let level = self.level_of(instance.field("severity"));
                let time = match instance.field("timestamp") {
                    Some(Value::Timestamp(timestamp)) => *timestamp,
                    _ => Timestamp::from_parts(0, 0),
                };
                let variables = instance.map_field("variables");
                self.write(level, self.line(level, time, &instance.name, &variables))
            }
            Template::Metric => {
                let mut fields = instance.map_field("dimensions");
                let value = instance.field("value");
                if let Some(value) = value {
                    fields.insert("value", value);
                }
                self.write(self.metric_level, self.line(self.metric_level, Timestamp::now(), &instance.name, &fields))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Handler for Stdio {
    async fn report(&self, instances: &[Instance]) -> Result<(), AdapterError> {
        each_handled(instances.iter().filter_map(|instance| self.entry(instance).err()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::env::Environment;

    fn build_with(params: Json) -> Result<Arc<Stdio>, BuildError> {
        let environment = Environment::default();
        build(&BuildContext {
            handler: "stdio.istio-system",
            params: &params,
            instances: &[],
            environment: &environment,
        })
    }

    fn log_instance(severity: &str, variables: &[(&str, Value<'static>)]) -> Instance {
        let mut fields = BTreeMap::new();
        fields.insert("severity".into(), Value::String(severity.to_string().into()));
        fields.insert("timestamp".into(), Value::Timestamp(Timestamp::from_parts(1_537_044_396, 9_801_000)));
        for (name, value) in variables {
            fields.insert(format!("variables.{name}").into(), value.clone());
        }
        Instance { name: "newlog.instance.istio-system".into(), template: Template::LogEntry, fields }
    }

    #[tokio::test]
    async fn log_entries_are_1_4s_json_lines_in_a_file() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("mixer.log");
        let handler = build_with(json!({"logStream": "FILE", "outputPath": path.to_str()})).expect("builds");
        let entry = log_instance(
            "warning",
            &[
                ("source", Value::String("productpage".into())),
                ("destination", Value::String("details".into())),
                ("latency", Value::Duration(13_601_485)),
                ("responseCode", Value::Int64(200)),
                ("sourceIp", Value::IpAddress(vec![10, 1, 0, 5].into())),
            ],
        );
        handler.report(&[entry]).await.expect("written");
        let text = std::fs::read_to_string(&path).expect("log");
        assert_eq!(
            text,
            "{\"level\":\"warn\",\"time\":\"2018-09-15T20:46:36.009801Z\",\"instance\":\"newlog.instance.istio-system\",\
             \"destination\":\"details\",\"latency\":\"13.601485ms\",\"responseCode\":200,\"source\":\"productpage\",\
             \"sourceIp\":\"10.1.0.5\"}\n"
        );
    }

    #[tokio::test]
    async fn levels_filter_and_unknown_severities_are_info() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("mixer.log");
        let params = json!({"logStream": "FILE", "outputPath": path.to_str(), "outputLevel": "WARNING",
            "severityLevels": {"loud": "ERROR"}});
        let handler = build_with(params).expect("builds");
        handler
            .report(&[log_instance("whatever", &[]), log_instance("loud", &[]), log_instance("WARN", &[])])
            .await
            .expect("written");
        let text = std::fs::read_to_string(&path).expect("log");
        let levels: Vec<&str> = text.lines().map(|line| line.split('"').nth(3).unwrap_or_default()).collect();
        assert_eq!(levels, ["error", "warn"]);
    }

    #[test]
    fn output_paths_must_match_the_stream() {
        let error = build_with(json!({"outputPath": "/tmp/x"})).expect_err("stdout with a path");
        assert_eq!(
            error.to_string(),
            "adapter validation failed : outputPath: cannot specify an output path when using a STDOUT or STDERR log stream"
        );
        let error = build_with(json!({"logStream": "ROTATED_FILE"})).expect_err("no path");
        assert!(error.to_string().contains("need a valid output path"), "{error}");
        let error = build_with(json!({"logStream": "SIDEWAYS"})).expect_err("bad enum");
        assert!(error.to_string().contains("SIDEWAYS"), "{error}");
    }

    #[tokio::test]
    async fn rotated_files_keep_the_newest_backups() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("access.log");
        let params = json!({"logStream": "ROTATED_FILE", "outputPath": path.to_str(), "maxMegabytesBeforeRotation": 1,
            "maxRotatedFiles": 2});
        let handler = build_with(params).expect("builds");
        let big = Value::String("x".repeat(400 * 1024).into());
        for _ in 0..8 {
            handler.report(&[log_instance("info", &[("body", big.clone())])]).await.expect("written");
        }
        let names: Vec<String> = std::fs::read_dir(directory.path())
            .expect("dir")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "the current file and two backups: {names:?}");
        assert!(std::fs::metadata(&path).expect("current").len() <= 1024 * 1024);
    }

    #[tokio::test]
    async fn metrics_print_their_value_and_dimensions() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("metrics.log");
        let handler = build_with(json!({"logStream": "FILE", "outputPath": path.to_str(), "outputAsJson": false}))
            .expect("builds");
        let mut fields = BTreeMap::new();
        fields.insert("value".into(), Value::Int64(2));
        fields.insert("dimensions.source".into(), Value::String("a".into()));
        let metric =
            Instance { name: "doublerequestcount.instance.istio-system".into(), template: Template::Metric, fields };
        handler.report(&[metric]).await.expect("written");
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(
            text.ends_with("\tinfo\tdoublerequestcount.instance.istio-system\t{\"source\":\"a\",\"value\":2}\n"),
            "{text}"
        );
    }
}
