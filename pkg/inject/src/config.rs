//! The injector's inputs, shaped like Istio 1.4's: the `config` key of the
//! `istio-sidecar-injector` ConfigMap (policy, selectors, injected annotations, template), the
//! `values` key (the Helm values, merged over 1.4's defaults) and the mesh config's
//! `defaultConfig` (the ProxyConfig every sidecar starts from).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Whether pods are injected unless they opt out (`enabled`) or only when they opt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Enabled,
    Disabled,
}

/// The `config` key of the injector ConfigMap.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectorConfig {
    pub policy: Policy,
    #[serde(default)]
    pub always_inject_selector: Vec<LabelSelector>,
    #[serde(default)]
    pub never_inject_selector: Vec<LabelSelector>,
    #[serde(default)]
    pub injected_annotations: BTreeMap<String, String>,
    /// 1.4's Go text/template. The sidecar itself comes from the built-in template (see
    /// `template.rs`); the text given here only versions the status annotation.
    #[serde(default)]
    pub template: String,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Enabled,
            always_inject_selector: Vec::new(),
            never_inject_selector: Vec::new(),
            injected_annotations: BTreeMap::new(),
            template: String::new(),
        }
    }
}

impl InjectorConfig {
    /// Parses the YAML of the ConfigMap's `config` key; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text)
            .map_err(|error| ConfigError::Invalid { path: origin.to_string(), reason: error.to_string() })?;
        for (field, selectors) in [
            ("alwaysInjectSelector", &config.always_inject_selector),
            ("neverInjectSelector", &config.never_inject_selector),
        ] {
            for (index, selector) in selectors.iter().enumerate() {
                for (position, expression) in selector.match_expressions.iter().flatten().enumerate() {
                    if !matches!(expression.operator.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist") {
                        return Err(ConfigError::Invalid {
                            path: origin.to_string(),
                            reason: format!(
                                "{field}[{index}].matchExpressions[{position}].operator: unknown operator {:?}",
                                expression.operator
                            ),
                        });
                    }
                }
                Selector::try_from(selector.clone()).map_err(|error| ConfigError::Invalid {
                    path: origin.to_string(),
                    reason: format!("{field}[{index}]: {error}"),
                })?;
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(path)?, &path.display().to_string())
    }
}

/// 1.4's Helm values that the injection template reads, with their chart defaults.
pub fn default_values() -> Value {
    json!({
        "global": {
            "hub": "docker.io/istio",
            "tag": "1.4.10",
            "imagePullPolicy": "IfNotPresent",
            "imagePullSecrets": [],
            "trustDomain": "cluster.local",
            "meshID": "",
            "network": "",
            "multicluster": {"clusterName": ""},
            "sds": {"enabled": false, "token": {"aud": "istio-ca"}},
            "proxy": {
                "image": "proxyv2",
                "clusterDomain": "cluster.local",
                "includeIPRanges": "*",
                "excludeIPRanges": "",
                "excludeInboundPorts": "",
                "excludeOutboundPorts": "",
                "statusPort": 15020,
                "readinessInitialDelaySeconds": 1,
                "readinessPeriodSeconds": 2,
                "readinessFailureThreshold": 30,
                "logLevel": "warning",
                "componentLogLevel": "misc:error",
                "dnsRefreshRate": "300s",
                "privileged": false,
                "enableCoreDump": false,
                "tracer": "zipkin",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "2000m", "memory": "1024Mi"}
                },
                "init": {
                    "resources": {
                        "limits": {"cpu": "100m", "memory": "50Mi"},
                        "requests": {"cpu": "10m", "memory": "10Mi"}
                    }
                }
            },
            "proxy_init": {"image": "proxyv2"}
        },
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": false},
        "istio_cni": {"enabled": false, "repair": {"enabled": true}}
    })
}

/// Merges `overlay` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// The values (YAML or JSON, as 1.4 stored them) merged over the defaults.
pub fn parse_values(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let given: Value = serde_yaml::from_str(text)
        .map_err(|error| ConfigError::Invalid { path: origin.to_string(), reason: error.to_string() })?;
    let mut values = default_values();
    match given {
        Value::Null => {}
        Value::Object(_) => merge(&mut values, &given),
        _ => return Err(ConfigError::Invalid { path: origin.to_string(), reason: "values must be a mapping".into() }),
    }
    Ok(values)
}

pub fn load_values(path: &Path) -> Result<Value, ConfigError> {
    parse_values(&read(path)?, &path.display().to_string())
}

/// How traffic reaches the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptionMode {
    Redirect,
    Tproxy,
    None,
}

impl InterceptionMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "REDIRECT" => Some(Self::Redirect),
            "TPROXY" => Some(Self::Tproxy),
            "NONE" => Some(Self::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "REDIRECT",
            Self::Tproxy => "TPROXY",
            Self::None => "NONE",
        }
    }
}

/// The mesh config's `defaultConfig` with 1.4's defaults filled in.
#[derive(Debug, Clone)]
pub struct ProxyDefaults {
    pub config_path: String,
    /// Envoy to run instead of the built-in data plane; `None` runs the built-in one.
    pub binary_path: Option<String>,
    pub service_cluster: String,
    pub drain_duration: Duration,
    pub parent_shutdown_duration: Duration,
    pub discovery_address: String,
    pub proxy_admin_port: u16,
    pub control_plane_auth_policy: String,
    pub connect_timeout: Duration,
    pub concurrency: u32,
    pub zipkin_address: String,
    pub interception_mode: InterceptionMode,
}

/// A mesh config `defaultConfig` the injector cannot use; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum MeshDefaultsError {
    #[error("defaultConfig.{field}: {source}")]
    Duration { field: &'static str, source: istio_duration::DurationError },
    #[error("defaultConfig.{field}: {value} is not a non-negative integer")]
    Number { field: &'static str, value: Value },
    #[error("defaultConfig.{0}: out of range")]
    OutOfRange(&'static str),
    #[error("defaultConfig.interceptionMode: unknown mode {0:?}")]
    InterceptionMode(String),
}

impl ProxyDefaults {
    /// Reads `defaultConfig` out of a mesh config (as JSON).
    pub fn from_mesh(mesh: &Value) -> Result<Self, MeshDefaultsError> {
        let proxy = mesh.get("defaultConfig").cloned().unwrap_or_else(|| json!({}));
        let text = |field: &str, default: &str| -> String {
            proxy.get(field).and_then(Value::as_str).filter(|value| !value.is_empty()).unwrap_or(default).to_string()
        };
        let duration = |field: &'static str, default: Duration| -> Result<Duration, MeshDefaultsError> {
            match proxy.get(field).and_then(Value::as_str) {
                Some(text) => {
                    istio_duration::parse(text).map_err(|source| MeshDefaultsError::Duration { field, source })
                }
                None => Ok(default),
            }
        };
        let number = |field: &'static str, default: u64| -> Result<u64, MeshDefaultsError> {
            match proxy.get(field) {
                None => Ok(default),
                Some(value) => value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                    .ok_or_else(|| MeshDefaultsError::Number { field, value: value.clone() }),
            }
        };
        let mode_text = text("interceptionMode", "REDIRECT");
        let interception_mode = InterceptionMode::parse(&mode_text)
            .ok_or_else(|| MeshDefaultsError::InterceptionMode(mode_text.clone()))?;
        let zipkin_address = proxy
            .pointer("/tracing/zipkin/address")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text("zipkinAddress", "zipkin.istio-system:9411"));
        Ok(Self {
            config_path: text("configPath", "/etc/istio/proxy"),
            binary_path: proxy
                .get("binaryPath")
                .and_then(Value::as_str)
                .filter(|path| !path.is_empty())
                .map(str::to_string),
            service_cluster: text("serviceCluster", "istio-proxy"),
            drain_duration: duration("drainDuration", Duration::from_secs(45))?,
            parent_shutdown_duration: duration("parentShutdownDuration", Duration::from_secs(60))?,
            discovery_address: text("discoveryAddress", "istio-pilot.istio-system:15010"),
            proxy_admin_port: u16::try_from(number("proxyAdminPort", u64::from(istio_runtime::ports::PROXY_ADMIN))?)
                .map_err(|_| MeshDefaultsError::OutOfRange("proxyAdminPort"))?,
            control_plane_auth_policy: text("controlPlaneAuthPolicy", "NONE"),
            connect_timeout: duration("connectTimeout", Duration::from_secs(10))?,
            concurrency: u32::try_from(number("concurrency", 2)?)
                .map_err(|_| MeshDefaultsError::OutOfRange("concurrency"))?,
            zipkin_address,
            interception_mode,
        })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_merge_over_the_chart_defaults() {
        let values =
            parse_values("global:\n  proxy:\n    statusPort: 15021\n  tag: 1.4.3\n", "values").expect("values");
        assert_eq!(values["global"]["proxy"]["statusPort"], 15021);
        assert_eq!(values["global"]["proxy"]["image"], "proxyv2");
        assert_eq!(values["global"]["tag"], "1.4.3");
        assert!(parse_values("[1]", "v").is_err());
    }

    #[test]
    fn config_errors_name_the_source_and_field() {
        let error = InjectorConfig::parse("policy: sometimes\n", "inject/config").expect_err("bad policy").to_string();
        assert!(error.starts_with("inject/config:"), "{error}");
        let error = InjectorConfig::parse(
            "policy: enabled\nneverInjectSelector:\n- matchExpressions:\n  - {key: a, operator: Near}\n",
            "cfg",
        )
        .expect_err("bad selector")
        .to_string();
        assert!(error.contains("cfg:") && error.contains("Near"), "{error}");
        let config = InjectorConfig::parse("policy: disabled\ntemplate: '{{ x }}'\n", "cfg").expect("valid");
        assert_eq!(config.policy, Policy::Disabled);
    }

    #[test]
    fn proxy_defaults_follow_the_mesh_config() {
        let defaults = ProxyDefaults::from_mesh(&json!({})).expect("defaults");
        assert_eq!(defaults.discovery_address, "istio-pilot.istio-system:15010");
        assert_eq!(defaults.parent_shutdown_duration, Duration::from_secs(60));
        assert!(defaults.binary_path.is_none());
        let mesh = json!({"defaultConfig": {"drainDuration": "5s", "concurrency": 1, "binaryPath": "/usr/bin/envoy",
            "tracing": {"zipkin": {"address": "z:9411"}}, "interceptionMode": "TPROXY"}});
        let defaults = ProxyDefaults::from_mesh(&mesh).expect("given");
        assert_eq!(defaults.drain_duration, Duration::from_secs(5));
        assert_eq!(defaults.concurrency, 1);
        assert_eq!(defaults.zipkin_address, "z:9411");
        assert_eq!(defaults.interception_mode, InterceptionMode::Tproxy);
        let error = ProxyDefaults::from_mesh(&json!({"defaultConfig": {"interceptionMode": "MAGIC"}}))
            .expect_err("bad")
            .to_string();
        assert!(error.contains("defaultConfig.interceptionMode"), "{error}");
    }
}
