//! The Kubernetes-shaped object every part of the mesh exchanges: `apiVersion`, `kind`,
//! `metadata`, and the rest of the body (`spec`, `data`, `subsets`, …) kept as JSON so that any
//! kind — Istio or core Kubernetes — round-trips unchanged through files, the store and MCP.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A Kubernetes object of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Everything else at the top level (`spec`, `status`, `data`, `subsets`, …).
    #[serde(flatten)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// What identifies a stored object: its API group, kind, namespace (empty when cluster-scoped)
/// and name. The version is not part of identity, as in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// A kind without a particular object: group and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    pub group: String,
    pub kind: String,
}

impl TypeKey {
    pub fn new(group: &str, kind: &str) -> Self {
        TypeKey { group: group.to_string(), kind: kind.to_string() }
    }
}

impl fmt::Display for TypeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl ObjectKey {
    pub fn type_key(&self) -> TypeKey {
        TypeKey { group: self.group.clone(), kind: self.kind.clone() }
    }
}

impl Object {
    /// A new object with the given type, namespace and name and an empty body.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Object {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: namespace.map(str::to_string),
                ..ObjectMeta::default()
            },
            body: serde_json::Map::new(),
        }
    }

    /// The API group (`""` for the core group, whose apiVersion is just `v1`).
    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(group, _)| group)
    }

    /// The API version without the group.
    pub fn version(&self) -> &str {
        self.api_version.split_once('/').map_or(self.api_version.as_str(), |(_, version)| version)
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            group: self.group().to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    pub fn type_key(&self) -> TypeKey {
        TypeKey::new(self.group(), &self.kind)
    }

    /// The object's `spec`, or JSON null when it has none.
    pub fn spec(&self) -> &serde_json::Value {
        self.body.get("spec").unwrap_or(&serde_json::Value::Null)
    }

    /// The resource version, as a string (empty when unset).
    pub fn resource_version(&self) -> &str {
        self.metadata.resource_version.as_deref().unwrap_or("")
    }

    /// `Kind namespace/name` (or `Kind name` when cluster-scoped), the form errors use.
    pub fn display_name(&self) -> String {
        self.key().to_string()
    }

    /// Puts a namespaced Istio object that names no namespace into `namespace`, as kubectl
    /// does with the current namespace. Core and cluster-scoped objects are left alone.
    pub fn default_namespace(&mut self, namespace: &str) {
        if self.namespace().is_empty() && self.istio_kind().is_some_and(|kind| kind.namespaced) {
            self.metadata.namespace = Some(namespace.to_string());
        }
    }

    /// The Istio kind this object is, if it is one at a version Istio 1.4 serves.
    pub fn istio_kind(&self) -> Option<&'static istio_api::kinds::Kind> {
        istio_api::kinds::lookup(&self.api_version, &self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_round_trips_and_names_itself() {
        let json = serde_json::json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}},
            "spec": {"hosts": ["reviews"]}
        });
        let object: Object = serde_json::from_value(json.clone()).expect("parse");
        assert_eq!(object.group(), "networking.istio.io");
        assert_eq!(object.version(), "v1alpha3");
        assert_eq!(object.display_name(), "VirtualService default/reviews");
        assert_eq!(object.spec()["hosts"][0], "reviews");
        assert_eq!(serde_json::to_value(&object).expect("serialize"), json);
        let core = Object::new("v1", "Service", Some("default"), "reviews");
        assert_eq!(core.group(), "");
        assert_eq!(core.type_key().to_string(), "Service");
    }
}
