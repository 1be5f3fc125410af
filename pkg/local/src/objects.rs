//! Helpers over stored objects as JSON: keys, labels, selectors, owner references, and the
//! kinds the platform acts on.

use std::collections::BTreeMap;

use istio_config::object::{Object, ObjectKey, TypeKey};
use serde_json::Value;

pub fn kind(group: &str, kind: &str) -> TypeKey {
    TypeKey::new(group, kind)
}

pub fn pods() -> TypeKey {
    kind("", "Pod")
}
pub fn services() -> TypeKey {
    kind("", "Service")
}
pub fn endpoints() -> TypeKey {
    kind("", "Endpoints")
}
pub fn namespaces() -> TypeKey {
    kind("", "Namespace")
}
pub fn deployments() -> TypeKey {
    kind("apps", "Deployment")
}
pub fn secrets() -> TypeKey {
    kind("", "Secret")
}
pub fn config_maps() -> TypeKey {
    kind("", "ConfigMap")
}

/// An object as JSON.
pub fn to_json(object: &Object) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// JSON as an object.
pub fn from_json(value: Value) -> anyhow::Result<Object> {
    Ok(serde_json::from_value(value)?)
}

pub fn key(group: &str, kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey { group: group.into(), kind: kind.into(), namespace: namespace.into(), name: name.into() }
}

/// A string map field (`labels`, `selector`, …).
pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

pub fn labels(object: &Object) -> BTreeMap<String, String> {
    object.metadata.labels.clone().unwrap_or_default()
}

/// Whether `labels` has every pair of a (matchLabels-style) `selector`; an empty selector
/// selects nothing, as a Service's does.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Whether a namespace asks for sidecar injection (`istio-injection=enabled`).
pub fn injection_enabled(namespaces: &[Object], namespace: &str) -> bool {
    namespaces
        .iter()
        .find(|object| object.name() == namespace)
        .is_some_and(|object| labels(object).get("istio-injection").map(String::as_str) == Some("enabled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_need_every_label_and_are_never_empty() {
        let labels =
            BTreeMap::from([("app".to_string(), "reviews".to_string()), ("version".to_string(), "v1".to_string())]);
        assert!(selects(&BTreeMap::from([("app".to_string(), "reviews".to_string())]), &labels));
        assert!(!selects(&BTreeMap::from([("app".to_string(), "ratings".to_string())]), &labels));
        assert!(!selects(&BTreeMap::new(), &labels));
    }
}
