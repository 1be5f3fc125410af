//! Whether a pod gets a sidecar: Istio 1.4's `injectRequired`. Host-network pods and the
//! Kubernetes system namespaces never do, nor pods already injected; the
//! `sidecar.istio.io/inject` annotation decides when present; then the never- and
//! always-inject selectors; then the policy.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use serde_json::Value;

use crate::config::{InjectorConfig, Policy};

/// Namespaces the injector leaves alone whatever their labels say.
pub const IGNORED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// The decision and why, for logs and the skip metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip(&'static str),
}

/// Decides for a pod (template) with metadata `meta` and spec `spec` in `namespace`.
pub fn injection_required(config: &InjectorConfig, namespace: &str, meta: &Value, spec: &Value) -> Decision {
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Decision::Skip("the pod uses the host network");
    }
    if IGNORED_NAMESPACES.contains(&namespace) {
        return Decision::Skip("system namespace");
    }
    let annotations = string_map(meta.get("annotations"));
    if annotations.contains_key(STATUS_ANNOTATION) {
        return Decision::Skip("already injected");
    }
    let explicit = match annotations.get(INJECT_ANNOTATION).map(|value| value.to_lowercase()) {
        None => None,
        Some(value) if value.is_empty() => None,
        Some(value) => Some(matches!(value.as_str(), "y" | "yes" | "true" | "on")),
    };
    let labels = string_map(meta.get("labels"));
    let chosen = explicit
        .or_else(|| matches_any(&config.never_inject_selector, &labels).then_some(false))
        .or_else(|| matches_any(&config.always_inject_selector, &labels).then_some(true));
    let inject = match (chosen, config.policy) {
        (Some(inject), _) => inject,
        (None, Policy::Enabled) => true,
        (None, Policy::Disabled) => false,
    };
    match (inject, chosen) {
        (true, _) => Decision::Inject,
        (false, Some(_)) => Decision::Skip("the pod's annotation or a never-inject selector says no"),
        (false, None) => Decision::Skip("policy disabled and the pod does not ask for injection"),
    }
}

/// True when a non-empty selector in `selectors` matches `labels`.
fn matches_any(
    selectors: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector],
    labels: &BTreeMap<String, String>,
) -> bool {
    selectors.iter().any(|selector| {
        Selector::try_from(selector.clone())
            .map(|selector| !selector.selects_all() && selector.matches(labels))
            .unwrap_or(false)
    })
}

/// A `map[string]string` field (labels, annotations) as a map; absent or malformed is empty.
pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter().filter_map(|(key, value)| value.as_str().map(|value| (key.clone(), value.to_string()))).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(text: &str) -> InjectorConfig {
        InjectorConfig::parse(text, "test").expect("config")
    }

    #[test]
    fn policy_annotation_and_selectors_decide_in_1_4_order() {
        let enabled = config("policy: enabled\nneverInjectSelector:\n- matchLabels: {openshift.io/build.name: x}\n");
        let disabled = config(
            "policy: disabled\nalwaysInjectSelector:\n- matchExpressions:\n  - {key: always, operator: Exists}\n",
        );
        let spec = json!({"containers": []});
        let plain = json!({"labels": {"app": "a"}});
        assert_eq!(injection_required(&enabled, "default", &plain, &spec), Decision::Inject);
        assert!(matches!(injection_required(&disabled, "default", &plain, &spec), Decision::Skip(_)));

        let opted_out = json!({"annotations": {"sidecar.istio.io/inject": "false"}});
        assert!(matches!(injection_required(&enabled, "default", &opted_out, &spec), Decision::Skip(_)));
        let opted_in = json!({"annotations": {"sidecar.istio.io/inject": "Yes"}});
        assert_eq!(injection_required(&disabled, "default", &opted_in, &spec), Decision::Inject);

        let never = json!({"labels": {"openshift.io/build.name": "x"}});
        assert!(matches!(injection_required(&enabled, "default", &never, &spec), Decision::Skip(_)));
        // The annotation wins over the selectors.
        let never_but_asked =
            json!({"labels": {"openshift.io/build.name": "x"}, "annotations": {"sidecar.istio.io/inject": "true"}});
        assert_eq!(injection_required(&enabled, "default", &never_but_asked, &spec), Decision::Inject);
        let always = json!({"labels": {"always": ""}});
        assert_eq!(injection_required(&disabled, "default", &always, &spec), Decision::Inject);
    }

    #[test]
    fn host_network_system_namespaces_and_injected_pods_are_skipped() {
        let enabled = config("policy: enabled\n");
        let meta = json!({});
        assert!(matches!(
            injection_required(&enabled, "default", &meta, &json!({"hostNetwork": true})),
            Decision::Skip(_)
        ));
        assert!(matches!(injection_required(&enabled, "kube-system", &meta, &json!({})), Decision::Skip(_)));
        let injected = json!({"annotations": {"sidecar.istio.io/status": "{}"}});
        assert_eq!(injection_required(&enabled, "default", &injected, &json!({})), Decision::Skip("already injected"));
    }
}
