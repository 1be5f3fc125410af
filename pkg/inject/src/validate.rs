//! Checks of the settings that shape the capture and the proxy, before anything is rendered:
//! the per-pod annotations (1.4's `validateAnnotations`) and the Helm values (1.4's
//! `Params.Validate`). Each failure names the annotation or value and says what is wrong.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::InterceptionMode;

/// A setting the injector refuses.
#[derive(Debug, thiserror::Error)]
pub enum InvalidSetting {
    #[error("annotation {name}={value:?}: {problem}")]
    Annotation { name: String, value: String, problem: String },
    #[error("values {field}={value:?}: {problem}")]
    Value { field: &'static str, value: String, problem: String },
}

/// A Helm value as the text a flag takes.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Checks the annotations the template reads (1.4's `validateAnnotations`).
pub(crate) fn validate_annotations(annotations: &BTreeMap<String, String>) -> Result<(), InvalidSetting> {
    for (name, value) in annotations {
        let problem = match name.as_str() {
            "sidecar.istio.io/interceptionMode" => {
                InterceptionMode::parse(value).is_none().then(|| "must be REDIRECT, TPROXY or NONE".to_string())
            }
            "sidecar.istio.io/controlPlaneAuthPolicy" => {
                (!matches!(value.as_str(), "NONE" | "MUTUAL_TLS")).then(|| "must be NONE or MUTUAL_TLS".to_string())
            }
            "status.sidecar.istio.io/port" => value.parse::<u16>().is_err().then(|| "is not a port".to_string()),
            "readiness.status.sidecar.istio.io/initialDelaySeconds"
            | "readiness.status.sidecar.istio.io/periodSeconds"
            | "readiness.status.sidecar.istio.io/failureThreshold" => {
                value.parse::<u32>().is_err().then(|| "is not a non-negative integer".to_string())
            }
            "readiness.status.sidecar.istio.io/applicationPorts"
            | "traffic.sidecar.istio.io/excludeInboundPorts"
            | "traffic.sidecar.istio.io/excludeOutboundPorts" => port_list_problem(value),
            "traffic.sidecar.istio.io/includeInboundPorts" => {
                if value == "*" {
                    None
                } else {
                    port_list_problem(value)
                }
            }
            "traffic.sidecar.istio.io/includeOutboundIPRanges" => {
                if value == "*" {
                    None
                } else {
                    cidr_list_problem(value)
                }
            }
            // As 1.4's, excluding everything is refused: "*" is not a CIDR.
            "traffic.sidecar.istio.io/excludeOutboundIPRanges" => cidr_list_problem(value),
            "sidecar.istio.io/rewriteAppHTTPProbers" => {
                value.parse::<bool>().is_err().then(|| "must be true or false".to_string())
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(InvalidSetting::Annotation { name: name.clone(), value: value.clone(), problem });
        }
    }
    Ok(())
}

/// A check of one value: the problem with it, if any.
type ValueCheck = fn(&str) -> Option<String>;

/// Checks the Helm values the capture reads, as 1.4's `Params.Validate` checked
/// kube-inject's flags: `*` includes everything but excludes nothing.
pub(crate) fn validate_values(proxy: &Value) -> Result<(), InvalidSetting> {
    let checks: [(&'static str, &str, ValueCheck); 5] =
        [
            ("global.proxy.includeIPRanges", "includeIPRanges", |v| if v == "*" { None } else { cidr_list_problem(v) }),
            ("global.proxy.excludeIPRanges", "excludeIPRanges", cidr_list_problem),
            ("global.proxy.includeInboundPorts", "includeInboundPorts", |v| {
                if v == "*" {
                    None
                } else {
                    port_list_problem(v)
                }
            }),
            ("global.proxy.excludeInboundPorts", "excludeInboundPorts", port_list_problem),
            ("global.proxy.excludeOutboundPorts", "excludeOutboundPorts", port_list_problem),
        ];
    for (field, key, check) in checks {
        let value = value_text(&proxy[key]);
        if let Some(problem) = check(&value) {
            return Err(InvalidSetting::Value { field, value, problem });
        }
    }
    Ok(())
}

fn cidr_list_problem(value: &str) -> Option<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .find(|cidr| cidr.parse::<ipnet::IpNet>().is_err())
        .map(|cidr| format!("{cidr:?} is not a CIDR"))
}

fn port_list_problem(value: &str) -> Option<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|port| !port.is_empty())
        .find(|port| port.parse::<u16>().map_or(true, |port| port == 0))
        .map(|port| format!("{port:?} is not a port"))
}
