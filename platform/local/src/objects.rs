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

/// Whether `name` is a DNS-1123 label (namespaces): lowercase letters, digits and `-`, at
/// most 63 characters, starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS-1123 subdomain (most object names): dot-separated labels, at most
/// 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Checks an object's namespace and name as the API server does; they become file and
/// network-namespace names here, so nothing else may pass.
pub fn validate_identity(object: &Object) -> Result<(), IdentityError> {
    let namespace = object.namespace();
    if !namespace.is_empty() && !is_dns_label(namespace) {
        return Err(IdentityError::Namespace(namespace.to_string()));
    }
    if !is_dns_subdomain(object.name()) {
        return Err(IdentityError::Name { kind: object.kind.clone(), name: object.name().to_string() });
    }
    Ok(())
}

/// An object name or namespace the platform refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("namespace {0:?} is not a valid DNS-1123 label")]
    Namespace(String),
    #[error("{kind} name {name:?} is not a valid DNS-1123 subdomain")]
    Name { kind: String, name: String },
}

/// Whether a ConfigMap or Secret key may become a file name (`[-._a-zA-Z0-9]+`, not `.`/`..`).
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && !key.starts_with("..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        assert!(is_dns_label("istio-system") && !is_dns_label("..") && !is_dns_label("A") && !is_dns_label("-a"));
        assert!(is_dns_subdomain("details-v1.x") && !is_dns_subdomain("a/b") && !is_dns_subdomain(""));
        assert!(is_data_key("cert-chain.pem") && !is_data_key("../x") && !is_data_key(".."));
        let bad: Object = from_json(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "..", "namespace": "default"}}))
        .expect("object");
        assert!(validate_identity(&bad).is_err());
    }
}
