//! Which `envoy.filters.http.wasm` filters the built-in data plane runs: 1.4's null-VM plugins
//! (`vm_config.runtime: envoy.wasm.runtime.null`, the plugin named by `code.local.inline_string`)
//! `envoy.wasm.metadata_exchange` and `envoy.wasm.stats`. Anything else (a real Wasm module, an
//! unknown plugin) is refused, so the update is rejected and the last good config serves on.
//!
//! The stats plugin's `configuration` is JSON as protobuf's parser took it in 1.4: trailing
//! commas and quoted booleans are accepted (1.4's own EnvoyFilters have both), unknown fields
//! are not.

use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::plugin_config;
use envoy_types::pb::google::protobuf::StringValue;
use prost::Message;
use serde_json::Value;

pub(crate) const NULL_RUNTIME: &str = "envoy.wasm.runtime.null";
pub(crate) const METADATA_EXCHANGE: &str = "envoy.wasm.metadata_exchange";
pub(crate) const STATS: &str = "envoy.wasm.stats";
/// The plugins this data plane has, as it announces them to Pilot.
pub(crate) const PLUGINS: [&str; 2] = [METADATA_EXCHANGE, STATS];

/// A null-VM plugin and its config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plugin {
    MetadataExchange,
    Stats(StatsConfig),
}

/// 1.4.6's `stats.PluginConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatsConfig {
    /// Metric names start `<stat_prefix>_` (`istio_requests_total`).
    pub stat_prefix: String,
    /// Without a route to a service, `destination_service` is the request's authority.
    pub host_header_fallback: bool,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { stat_prefix: "istio".into(), host_header_fallback: true }
    }
}

/// Why a Wasm filter cannot run here.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum PluginError {
    #[error("decoding the Wasm config: {0}")]
    Decode(String),
    #[error("only the null VM runs here (runtime {0:?})")]
    Runtime(String),
    #[error("null-VM plugin {0:?} is not built in (the built-in ones are envoy.wasm.metadata_exchange and envoy.wasm.stats)")]
    Unknown(String),
    #[error("stats configuration: {0}")]
    StatsConfig(String),
}

/// Drops commas that only precede a closing `}` or `]` (outside strings).
fn without_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let chars: Vec<char> = text.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = chars[index + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']') | None) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn flag(value: &Value, field: &str) -> Result<bool, PluginError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text == "true" => Ok(true),
        Value::String(text) if text == "false" => Ok(false),
        other => Err(PluginError::StatsConfig(format!("{field}: {other} is not a boolean"))),
    }
}

/// Reads the stats plugin's JSON configuration (empty means the defaults).
pub(crate) fn stats_config(text: &str) -> Result<StatsConfig, PluginError> {
    let mut config = StatsConfig::default();
    if text.trim().is_empty() {
        return Ok(config);
    }
    let value: Value = serde_json::from_str(&without_trailing_commas(text))
        .map_err(|error| PluginError::StatsConfig(error.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(PluginError::StatsConfig("must be a JSON object".into()));
    };
    for (field, value) in &fields {
        match field.as_str() {
            "debug" => {
                flag(value, field)?;
            }
            "stat_prefix" | "statPrefix" => {
                let prefix =
                    value.as_str().ok_or_else(|| PluginError::StatsConfig(format!("{field}: not a string")))?;
                if !prefix.is_empty() {
                    config.stat_prefix = prefix.to_string();
                }
            }
            "disable_host_header_fallback" | "disableHostHeaderFallback" => {
                config.host_header_fallback = !flag(value, field)?;
            }
            // Accepted for 1.4 compatibility; series here are kept by label set, not by name.
            "max_peer_cache_size"
            | "maxPeerCacheSize"
            | "field_separator"
            | "fieldSeparator"
            | "value_separator"
            | "valueSeparator" => {}
            other => return Err(PluginError::StatsConfig(format!("unknown field {other:?}"))),
        }
    }
    Ok(config)
}

/// The plugin a Wasm filter's typed config names.
pub(crate) fn plugin(typed_config: &[u8]) -> Result<Plugin, PluginError> {
    let wasm = Wasm::decode(typed_config).map_err(|error| PluginError::Decode(error.to_string()))?;
    let config = wasm.config.unwrap_or_default();
    let vm = match &config.vm {
        Some(plugin_config::Vm::VmConfig(vm)) => vm.clone(),
        None => Default::default(),
    };
    if vm.runtime != NULL_RUNTIME {
        return Err(PluginError::Runtime(vm.runtime));
    }
    let code = match vm.code.and_then(|code| code.specifier) {
        Some(async_data_source::Specifier::Local(local)) => match local.specifier {
            Some(data_source::Specifier::InlineString(name)) => name,
            Some(data_source::Specifier::InlineBytes(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let configuration = match config.configuration {
        None => String::new(),
        Some(any) if any.type_url.ends_with("google.protobuf.StringValue") => {
            StringValue::decode(any.value.as_slice()).map_err(|error| PluginError::Decode(error.to_string()))?.value
        }
        Some(any) => {
            return Err(PluginError::Decode(format!("configuration of type {} (a StringValue is read)", any.type_url)))
        }
    };
    match code.as_str() {
        METADATA_EXCHANGE => Ok(Plugin::MetadataExchange),
        STATS => Ok(Plugin::Stats(stats_config(&configuration)?)),
        other => Err(PluginError::Unknown(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_1_4_stats_configurations_read() {
        let gateway = "{\n  \"debug\": \"false\",\n  \"stat_prefix\": \"istio\",\n  \"disable_host_header_fallback\": \"true\",\n}\n";
        assert_eq!(stats_config(gateway), Ok(StatsConfig { stat_prefix: "istio".into(), host_header_fallback: false }));
        assert_eq!(stats_config("{\"debug\": \"false\", \"stat_prefix\": \"istio\",}"), Ok(StatsConfig::default()));
        assert_eq!(stats_config(""), Ok(StatsConfig::default()));
        assert_eq!(stats_config("{\"disable_host_header_fallback\": true}").map(|c| c.host_header_fallback), Ok(false));
        assert!(
            matches!(stats_config("{\"metrics\": []}"), Err(PluginError::StatsConfig(message)) if message.contains("metrics"))
        );
        assert_eq!(without_trailing_commas("{\"a\": \"x,}\",}"), "{\"a\": \"x,}\"}");
        assert_eq!(without_trailing_commas(r#"{"a": "\\", "b": [1,],}"#), r#"{"a": "\\", "b": [1]}"#);
    }

    fn wasm(runtime: &str, code: &str, configuration: Option<&str>) -> Vec<u8> {
        use envoy_types::pb::envoy::config::core::v3::{AsyncDataSource, DataSource};
        use envoy_types::pb::envoy::extensions::wasm::v3::{PluginConfig, VmConfig};
        Wasm {
            config: Some(PluginConfig {
                root_id: "stats_outbound".into(),
                vm: Some(plugin_config::Vm::VmConfig(VmConfig {
                    runtime: runtime.into(),
                    code: Some(AsyncDataSource {
                        specifier: Some(async_data_source::Specifier::Local(DataSource {
                            specifier: Some(data_source::Specifier::InlineString(code.into())),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                configuration: configuration
                    .map(|text| envoy_types::util::pack_any(StringValue { value: text.into() })),
                ..Default::default()
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn only_the_built_in_null_vm_plugins_run() {
        assert_eq!(
            plugin(&wasm(NULL_RUNTIME, METADATA_EXCHANGE, Some(METADATA_EXCHANGE))),
            Ok(Plugin::MetadataExchange)
        );
        assert_eq!(
            plugin(&wasm(NULL_RUNTIME, STATS, Some("{\"stat_prefix\": \"mesh\"}"))),
            Ok(Plugin::Stats(StatsConfig { stat_prefix: "mesh".into(), host_header_fallback: true }))
        );
        assert_eq!(
            plugin(&wasm("envoy.wasm.runtime.v8", STATS, None)),
            Err(PluginError::Runtime("envoy.wasm.runtime.v8".into()))
        );
        assert!(matches!(plugin(&wasm(NULL_RUNTIME, "envoy.wasm.other", None)), Err(PluginError::Unknown(_))));
    }
}
