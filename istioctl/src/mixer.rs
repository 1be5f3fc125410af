//! `istioctl x mixer check|report|eval`: talk to Mixer as 1.4's `mixc` did, with its flags
//! (`-m` address; `-s`, `-i`, `-d`, `-b`, `-t`, `--duration_attributes`, `--bytes_attributes`,
//! `--stringmap_attributes`, `-a` for attributes of each type; `-r` repeats, `-c` workers) and
//! its output, and evaluate one expression locally to debug a rule (`eval`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::batch::BatchEncoder;
use istio_attribute::wire::compressed::encode;
use istio_attribute::{Compiled, MapBag, OwnedValue, Referenced, Timestamp, Value, ValueType};

/// The attribute vocabulary of 1.4's default config, for `eval`.
const DEFAULT_MANIFESTS: &str = include_str!("../../install/mixer/config.yaml");

#[derive(Debug, clap::Subcommand)]
pub enum MixerCommand {
    /// Invokes Mixer's Check API to perform precondition checks and quota allocations.
    Check(CheckArgs),
    /// Invokes Mixer's Report API to send attribute sets.
    Report(ReportArgs),
    /// Type-checks and evaluates one expression against the given attributes.
    Eval(EvalArgs),
}

/// Attributes given on the command line, by type, as `name1=value1,name2=value2`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AttributeFlags {
    /// Auto-sensed attributes: int64, double, bool, timestamp, duration, bytes, string map, else string.
    #[arg(short = 'a', long = "attributes", default_value = "")]
    pub attributes: String,
    #[arg(short = 's', long = "string_attributes", default_value = "")]
    pub strings: String,
    #[arg(short = 'i', long = "int64_attributes", default_value = "")]
    pub int64s: String,
    #[arg(short = 'd', long = "double_attributes", default_value = "")]
    pub doubles: String,
    #[arg(short = 'b', long = "bool_attributes", default_value = "")]
    pub bools: String,
    /// RFC 3339 instants.
    #[arg(short = 't', long = "timestamp_attributes", default_value = "")]
    pub timestamps: String,
    /// Go durations (`10ms`).
    #[arg(long = "duration_attributes", default_value = "")]
    pub durations: String,
    /// Hex bytes: `name=b0:b1:b2`.
    #[arg(long = "bytes_attributes", default_value = "")]
    pub bytes: String,
    /// `name1=k1:v1;k2:v2,name2=k3:v3`.
    #[arg(long = "stringmap_attributes", default_value = "")]
    pub string_maps: String,
}

/// How to reach Mixer and how many requests to send.
#[derive(Debug, Clone, clap::Args)]
pub struct CallFlags {
    /// Address and port of a running Mixer instance.
    #[arg(short = 'm', long = "mixer", default_value = "localhost:9091")]
    pub mixer: String,
    /// Sends the specified number of requests in quick succession.
    #[arg(short = 'r', long = "repeat", default_value_t = 1)]
    pub repeat: usize,
    /// Number of workers sending requests concurrently.
    #[arg(short = 'c', long = "concurrency", default_value_t = 1)]
    pub concurrency: usize,
    /// Whether to print Mixer's responses.
    #[arg(long = "print_response", default_value_t = true, action = clap::ArgAction::Set)]
    pub print_response: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub attributes: AttributeFlags,
    #[command(flatten)]
    pub call: CallFlags,
    /// Quotas to allocate: `name1=amount1,name2=amount2`.
    #[arg(short = 'q', long = "quotas", default_value = "")]
    pub quotas: String,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub attributes: AttributeFlags,
    #[command(flatten)]
    pub call: CallFlags,
    /// Attribute sets per Report call.
    #[arg(long = "report_batch_size", default_value_t = 1)]
    pub batch_size: usize,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The expression, e.g. `match(request.headers["cookie"], "session=*") == false`.
    pub expression: String,
    #[command(flatten)]
    pub attributes: AttributeFlags,
    /// Attribute manifests (YAML) to type-check against, besides 1.4's defaults.
    #[arg(long = "manifest")]
    pub manifests: Vec<std::path::PathBuf>,
}

fn parse_bytes(text: &str) -> anyhow::Result<Vec<u8>> {
    text.split(':')
        .map(|segment| u8::from_str_radix(segment, 16).with_context(|| format!("{segment:?} is not a hex byte")))
        .collect()
}

fn parse_map(text: &str) -> anyhow::Result<HashMap<String, String>> {
    text.split(';')
        .map(|pair| match pair.split_once(':') {
            Some((key, value)) => Ok((key.to_string(), value.to_string())),
            None => bail!("{pair} is not a valid key/value pair in the form key:value"),
        })
        .collect()
}

fn parse_duration(text: &str) -> anyhow::Result<i64> {
    istio_duration::parse_signed_nanos(text)
        .and_then(|nanos| i64::try_from(nanos).ok())
        .with_context(|| format!("{text:?} is not a duration"))
}

fn parse_typed(text: &str, value_type: ValueType) -> anyhow::Result<OwnedValue> {
    Ok(match value_type {
        ValueType::Int64 => Value::Int64(text.parse().with_context(|| format!("{text:?} is not an int64"))?),
        ValueType::Double => Value::Double(text.parse().with_context(|| format!("{text:?} is not a double"))?),
        ValueType::Bool => Value::Bool(go_bool(text).with_context(|| format!("{text:?} is not a bool"))?),
        ValueType::Timestamp => Value::Timestamp(
            Timestamp::parse_rfc3339(text).with_context(|| format!("{text:?} is not an RFC 3339 time"))?,
        ),
        ValueType::Duration => Value::Duration(parse_duration(text)?),
        ValueType::IpAddress => Value::Bytes(Cow::Owned(parse_bytes(text)?)),
        ValueType::StringMap => Value::StringMap(Cow::Owned(parse_map(text)?)),
        _ => Value::String(Cow::Owned(text.to_string())),
    })
}

/// Go's `strconv.ParseBool` spellings.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An auto-sensed value, tried in `mixc`'s order.
fn parse_any(text: &str) -> OwnedValue {
    for value_type in [
        ValueType::Int64,
        ValueType::Double,
        ValueType::Bool,
        ValueType::Timestamp,
        ValueType::Duration,
        ValueType::IpAddress,
        ValueType::StringMap,
    ] {
        if let Ok(value) = parse_typed(text, value_type) {
            return value;
        }
    }
    Value::String(Cow::Owned(text.to_string()))
}

impl AttributeFlags {
    /// The attributes as a bag.
    pub fn bag(&self) -> anyhow::Result<MapBag> {
        let mut bag = MapBag::new();
        let lists: [(&str, Option<ValueType>); 9] = [
            (&self.strings, Some(ValueType::String)),
            (&self.int64s, Some(ValueType::Int64)),
            (&self.doubles, Some(ValueType::Double)),
            (&self.bools, Some(ValueType::Bool)),
            (&self.timestamps, Some(ValueType::Timestamp)),
            (&self.durations, Some(ValueType::Duration)),
            (&self.bytes, Some(ValueType::IpAddress)),
            (&self.string_maps, Some(ValueType::StringMap)),
            (&self.attributes, None),
        ];
        for (list, value_type) in lists {
            if list.is_empty() {
                continue;
            }
            for segment in list.split(',') {
                let Some((name, text)) = segment.split_once('=') else {
                    bail!("attribute value {segment} does not include an = sign");
                };
                if name.is_empty() {
                    bail!("attribute value {segment} does not contain a valid name");
                }
                let value = match value_type {
                    Some(value_type) => parse_typed(text, value_type).with_context(|| format!("attribute {name}"))?,
                    None => parse_any(text),
                };
                bag.set(name, value);
            }
        }
        Ok(bag)
    }
}

fn endpoint(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

async fn client(address: &str) -> anyhow::Result<mixer::mixer_client::MixerClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint(address))
        .with_context(|| format!("{address:?} is not an address"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("Unable to establish connection to {address}"))?;
    Ok(mixer::mixer_client::MixerClient::new(channel))
}

fn status_text(status: Option<&istio_api::pb::google::rpc::Status>) -> String {
    let Some(status) = status else { return "OK".to_string() };
    let name = match status.code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        other => return format_with_message(&format!("Code {other}"), &status.message),
    };
    format_with_message(name, &status.message)
}

fn format_with_message(name: &str, message: &str) -> String {
    if message.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({message})")
    }
}

fn grpc_error(status: &tonic::Status) -> String {
    let name = format!("{:?}", status.code());
    format_with_message(&name, status.message())
}

fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    let Some(duration) = duration else { return "0s".to_string() };
    let nanos = i128::from(duration.seconds) * 1_000_000_000 + i128::from(duration.nanos);
    istio_duration::format(Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)))
}

/// The referenced attributes as `mixc` listed them: `name[::key] CONDITION`, sorted.
pub(crate) fn referenced_lines(referenced: &mixer::ReferencedAttributes) -> Vec<String> {
    let word = |index: i32| istio_attribute::dictionary::lookup(index, &referenced.words).unwrap_or("?").to_string();
    let mut lines: Vec<String> = referenced
        .attribute_matches
        .iter()
        .map(|matched| {
            let mut line = word(matched.name);
            if matched.map_key != 0 {
                line.push_str("::");
                line.push_str(&word(matched.map_key));
            }
            let condition = mixer::referenced_attributes::Condition::try_from(matched.condition)
                .map(|c| c.as_str_name().to_string())
                .unwrap_or_else(|_| matched.condition.to_string());
            format!("{line} {condition}")
        })
        .collect();
    lines.sort();
    lines
}

fn print_check(response: &mixer::CheckResponse) {
    let precondition = response.precondition.clone().unwrap_or_default();
    println!("Check RPC completed successfully. Check status was {}", status_text(precondition.status.as_ref()));
    println!(
        "  Valid use count: {}, valid duration: {}",
        precondition.valid_use_count,
        duration_text(precondition.valid_duration.as_ref())
    );
    println!("  Referenced Attributes");
    for line in referenced_lines(&precondition.referenced_attributes.unwrap_or_default()) {
        println!("    {line}");
    }
    if let Some(directive) = &precondition.route_directive {
        for (direction, operations) in
            [("request", &directive.request_header_operations), ("response", &directive.response_header_operations)]
        {
            for op in operations {
                let operation = mixer::header_operation::Operation::try_from(op.operation)
                    .map(|o| o.as_str_name())
                    .unwrap_or("REPLACE");
                println!("  Route directive: {direction} header {operation} {}: {}", op.name, op.value);
            }
        }
    }
    if !response.quotas.is_empty() {
        let mut names: Vec<&String> = response.quotas.keys().collect();
        names.sort();
        let rows: Vec<Vec<String>> = names
            .into_iter()
            .map(|name| {
                let quota = &response.quotas[name];
                vec![name.clone(), quota.granted_amount.to_string(), duration_text(quota.valid_duration.as_ref())]
            })
            .collect();
        for line in crate::table::render(&["Quota", "Granted Amount", "Duration"], &rows).lines() {
            println!("  {line}");
        }
    }
}

async fn check(args: &CheckArgs) -> anyhow::Result<i32> {
    let bag = args.attributes.bag()?;
    let mut quotas = HashMap::new();
    if !args.quotas.is_empty() {
        for segment in args.quotas.split(',') {
            let Some((name, amount)) = segment.split_once('=') else {
                bail!("Quota definition {segment} does not include an = sign");
            };
            if name.is_empty() {
                bail!("Quota definition {segment} does not contain a valid name");
            }
            let amount: i64 = amount.parse().with_context(|| format!("Unable to parse quota value {amount}"))?;
            quotas.insert(name.to_string(), mixer::check_request::QuotaParams { amount, best_effort: true });
        }
    }
    // As mixc: every name a message word, no global words.
    let attributes = encode(&bag, 0);
    let client = client(&args.call.mixer).await?;
    // Ids unique across runs: this process, this moment, then the call's number.
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let salt = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
    let mut failures = 0;
    let workers = args.call.concurrency.max(1);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = client.clone();
        let attributes = attributes.clone();
        let quotas = quotas.clone();
        let salt = salt.clone();
        let (repeat, print) = (args.call.repeat, args.call.print_response);
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for n in 0..repeat {
                let request = mixer::CheckRequest {
                    attributes: Some(attributes.clone()),
                    global_word_count: 0,
                    deduplication_id: format!("{salt}-{}", worker * repeat + n),
                    quotas: quotas.clone(),
                };
                match client.check(request).await {
                    Ok(response) if print => print_check(response.get_ref()),
                    Ok(_) => {}
                    Err(status) => {
                        failed += 1;
                        println!("Check RPC failed with: {}", grpc_error(&status));
                    }
                }
            }
            failed
        }));
    }
    for task in tasks {
        failures += task.await.unwrap_or(1);
    }
    Ok(if failures == 0 { 0 } else { 1 })
}

async fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let bag = args.attributes.bag()?;
    let mut client = client(&args.call.mixer).await?;
    let total = args.call.repeat * args.call.concurrency.max(1);
    let batch = args.batch_size.max(1);
    let mut sent = 0;
    let mut failures = 0;
    while sent < total {
        let mut encoder = BatchEncoder::independent(0);
        let count = batch.min(total - sent);
        for _ in 0..count {
            encoder.add(bag.clone());
        }
        sent += count;
        match client.report(encoder.finish()).await {
            Ok(_) if args.call.print_response => println!("Report RPC returned OK"),
            Ok(_) => {}
            Err(status) => {
                failures += 1;
                println!("Report RPC failed with: {}", grpc_error(&status));
            }
        }
    }
    Ok(if failures == 0 { 0 } else { 1 })
}

/// Attribute types from manifests (YAML with `attributemanifest` objects).
fn manifest_types(text: &str, source: &str, types: &mut HashMap<String, ValueType>) {
    let (objects, _) = istio_config::yaml::parse_objects(source, text);
    for object in objects.into_iter().map(|source| source.object).filter(|object| object.kind == "attributemanifest") {
        let Some(attributes) = object.spec().get("attributes").and_then(|a| a.as_object()) else { continue };
        for (name, info) in attributes {
            let text = info.get("valueType").and_then(|v| v.as_str()).unwrap_or_default();
            if let Some(value_type) = ValueType::from_str_name(text) {
                types.insert(name.clone(), value_type);
            }
        }
    }
}

fn eval(args: &EvalArgs) -> anyhow::Result<i32> {
    let bag = args.attributes.bag()?;
    let mut types = HashMap::new();
    manifest_types(DEFAULT_MANIFESTS, "default manifests", &mut types);
    for path in &args.manifests {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        manifest_types(&text, &path.display().to_string(), &mut types);
    }
    for (name, value) in bag.sorted() {
        types.entry(name.to_string()).or_insert_with(|| value.value_type());
    }
    let compiled = match Compiled::new(&args.expression, &types) {
        Ok(compiled) => compiled,
        Err(error) => {
            println!("Error: {error}");
            return Ok(1);
        }
    };
    let mut referenced = Referenced::default();
    match compiled.evaluate(&bag, &mut referenced) {
        Ok(value) => {
            println!("{value}");
            println!("  type: {}", compiled.result_type().as_str_name());
            println!("  referenced: {}", referenced.list().join(", "));
            Ok(0)
        }
        Err(error) => {
            println!("Error: {error}");
            println!("  type: {}", compiled.result_type().as_str_name());
            Ok(1)
        }
    }
}

pub(crate) fn run(command: &MixerCommand) -> anyhow::Result<i32> {
    match command {
        MixerCommand::Eval(args) => eval(args),
        MixerCommand::Check(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(check(args))
        }
        MixerCommand::Report(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(report(args))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_flags_parse_as_mixc() {
        let flags = AttributeFlags {
            strings: "destination.service=ratings,source.uid=kubernetes://a.default".into(),
            int64s: "response.code=200".into(),
            bools: "connection.mtls=true".into(),
            durations: "response.duration=10ms".into(),
            bytes: "source.ip=0a:00:00:01".into(),
            string_maps: "request.headers=cookie:session=x;x-user:jason".into(),
            attributes: "a=1,b=2.5,c=false,d=hello".into(),
            ..Default::default()
        };
        let bag = flags.bag().expect("parses");
        assert_eq!(bag.get_value("response.code"), Some(&Value::Int64(200)));
        assert_eq!(bag.get_value("response.duration"), Some(&Value::Duration(10_000_000)));
        assert_eq!(bag.get_value("source.ip"), Some(&Value::Bytes(Cow::Owned(vec![10, 0, 0, 1]))));
        assert!(
            matches!(bag.get_value("request.headers"), Some(Value::StringMap(m)) if m["cookie"] == "session=x" && m["x-user"] == "jason")
        );
        assert_eq!(bag.get_value("a"), Some(&Value::Int64(1)));
        assert_eq!(bag.get_value("b"), Some(&Value::Double(2.5)));
        assert_eq!(bag.get_value("c"), Some(&Value::Bool(false)));
        assert_eq!(bag.get_value("d"), Some(&Value::String("hello".into())));
        let bad = AttributeFlags { int64s: "x=abc".into(), ..Default::default() };
        assert!(bad.bag().is_err());
        let no_equals = AttributeFlags { strings: "x".into(), ..Default::default() };
        assert_eq!(no_equals.bag().expect_err("no =").to_string(), "attribute value x does not include an = sign");
    }

    #[test]
    fn the_default_manifests_type_the_vocabulary() {
        let mut types = HashMap::new();
        manifest_types(DEFAULT_MANIFESTS, "default", &mut types);
        assert_eq!(types.get("request.headers"), Some(&ValueType::StringMap));
        assert_eq!(types.get("destination.workload.name"), Some(&ValueType::String));
        assert_eq!(types.get("response.duration"), Some(&ValueType::Duration));
    }
}
