//! What analysis reads: the objects of the collections 1.4's `localAnalysis` snapshot held
//! (namespaces, services, pods, deployments and the Istio kinds), each with its origin, plus
//! the synthetic ServiceEntries that service discovery makes from Services. Core kinds are
//! only read with service discovery on (1.4's `--discovery`), as 1.4 did.

use std::collections::BTreeMap;

use serde_json::Value;

use super::messages::Origin;
use crate::object::Object;

/// A kind analysis reads, by API group and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection {
    pub group: &'static str,
    pub kind: &'static str,
}

const fn collection(group: &'static str, kind: &'static str) -> Collection {
    Collection { group, kind }
}

pub const NAMESPACES: Collection = collection("", "Namespace");
pub const SERVICES: Collection = collection("", "Service");
pub const PODS: Collection = collection("", "Pod");
pub const DEPLOYMENTS: Collection = collection("apps", "Deployment");
pub const AUTHENTICATION_POLICIES: Collection = collection("authentication.istio.io", "Policy");
pub const SERVICE_ROLES: Collection = collection("rbac.istio.io", "ServiceRole");
pub const SERVICE_ROLE_BINDINGS: Collection = collection("rbac.istio.io", "ServiceRoleBinding");
pub const ENVOY_FILTERS: Collection = collection("networking.istio.io", "EnvoyFilter");
pub const DESTINATION_RULES: Collection = collection("networking.istio.io", "DestinationRule");
pub const GATEWAYS: Collection = collection("networking.istio.io", "Gateway");
pub const SERVICE_ENTRIES: Collection = collection("networking.istio.io", "ServiceEntry");
pub const SIDECARS: Collection = collection("networking.istio.io", "Sidecar");
pub const VIRTUAL_SERVICES: Collection = collection("networking.istio.io", "VirtualService");
/// The ServiceEntries service discovery makes from Services.
pub const SYNTHETIC_SERVICE_ENTRIES: Collection = collection("networking.istio.io", "SyntheticServiceEntry");

pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

impl Collection {
    /// Whether the collection comes from service discovery (the core kinds 1.4 only read with
    /// `--discovery`, and what is made from them).
    pub fn needs_discovery(self) -> bool {
        matches!(self, NAMESPACES | SERVICES | PODS | SYNTHETIC_SERVICE_ENTRIES)
    }

    /// The collection an object belongs to, if analysis reads its kind.
    fn of(object: &Object) -> Option<Collection> {
        match (object.group(), object.kind.as_str()) {
            ("", "Namespace") => Some(NAMESPACES),
            ("", "Service") => Some(SERVICES),
            ("", "Pod") => Some(PODS),
            ("apps", "Deployment") => Some(DEPLOYMENTS),
            _ => object.istio_kind().map(|kind| collection(kind.group, kind.kind)),
        }
    }
}

/// One object of a collection.
#[derive(Debug, Clone)]
pub struct Entry {
    pub object: Object,
    pub origin: Origin,
}

impl Entry {
    fn new(object: Object) -> Entry {
        let origin = Origin {
            kind: object.kind.clone(),
            namespace: object.namespace().to_string(),
            name: object.name().to_string(),
        };
        Entry { object, origin }
    }

    pub fn name(&self) -> &str {
        self.object.name()
    }

    pub fn namespace(&self) -> &str {
        self.object.namespace()
    }

    pub fn spec(&self) -> &Value {
        self.object.spec()
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.object.metadata.labels.clone().unwrap_or_default()
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.object.metadata.annotations.clone().unwrap_or_default()
    }
}

/// The objects analysis reads, by collection, each collection sorted by namespace and name.
#[derive(Debug, Default)]
pub struct Snapshot {
    collections: BTreeMap<Collection, Vec<Entry>>,
}

impl Snapshot {
    /// The snapshot of `objects`. With `discovery`, the core kinds are kept and synthetic
    /// ServiceEntries are made from the Services; without it, they are left out.
    pub fn new(objects: impl IntoIterator<Item = Object>, discovery: bool) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for object in objects {
            let Some(collection) = Collection::of(&object) else { continue };
            if collection.needs_discovery() && !discovery {
                continue;
            }
            snapshot.collections.entry(collection).or_default().push(Entry::new(object));
        }
        if discovery {
            let synthetic: Vec<Entry> = snapshot.entries(SERVICES).iter().map(synthetic_service_entry).collect();
            snapshot.collections.insert(SYNTHETIC_SERVICE_ENTRIES, synthetic);
        }
        for entries in snapshot.collections.values_mut() {
            entries.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        }
        snapshot
    }

    /// The objects of one collection.
    pub fn entries(&self, collection: Collection) -> &[Entry] {
        self.collections.get(&collection).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether the collection holds `namespace/name`.
    pub fn exists(&self, collection: Collection, namespace: &str, name: &str) -> bool {
        self.entries(collection).iter().any(|entry| entry.namespace() == namespace && entry.name() == name)
    }
}

/// The ServiceEntry service discovery makes for a Service: its FQDN, its ports by number, and
/// the Service's `exportTo` annotation.
fn synthetic_service_entry(service: &Entry) -> Entry {
    let host = format!("{}.{}.{DOMAIN_SUFFIX}", service.name(), service.namespace());
    let ports: Vec<Value> = array(service.spec(), "ports")
        .iter()
        .map(|port| serde_json::json!({"number": port.get("port").and_then(Value::as_i64).unwrap_or(0)}))
        .collect();
    let export_to: Vec<String> = service
        .annotations()
        .get(EXPORT_TO_ANNOTATION)
        .map(|value| value.split(',').map(|item| item.trim().to_string()).filter(|item| !item.is_empty()).collect())
        .unwrap_or_default();
    let mut object =
        Object::new("networking.istio.io/v1alpha3", "ServiceEntry", Some(service.namespace()), service.name());
    object.body.insert("spec".into(), serde_json::json!({"hosts": [host], "ports": ports, "exportTo": export_to}));
    let mut entry = Entry::new(object);
    entry.origin = service.origin.clone();
    entry
}

/// The array at `key` of a JSON object (empty when absent).
pub fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// The string at `key` (empty when absent).
pub fn string<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A string map at `key` (`selector`, `labels`, …).
pub fn string_map(value: &Value, key: &str) -> BTreeMap<String, String> {
    value
        .get(key)
        .and_then(Value::as_object)
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// Whether an equality selector matches labels (an empty selector matches everything).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// A selector as Kubernetes prints it: `a=b,c=d`, sorted by key.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

/// A host as an FQDN: short names get the namespace and the cluster domain; wildcards and names
/// with a dot are kept.
pub fn host_fqdn(namespace: &str, host: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
    }
}

/// The namespace and name a host refers to: `name.ns.svc.cluster.local` names its own
/// namespace; anything else is taken as a name in `namespace`.
pub fn host_resource_name(namespace: &str, host: &str) -> (String, String) {
    if let Some(prefix) = host.strip_suffix(&format!(".{DOMAIN_SUFFIX}")) {
        if let Some((name, host_namespace)) = prefix.rsplit_once('.') {
            if !name.is_empty() && !host_namespace.is_empty() {
                return (host_namespace.to_string(), name.to_string());
            }
        }
    }
    (namespace.to_string(), host.to_string())
}

/// Whether `exportTo` exports to every namespace (`*`, or no `.`), as 1.4 decided it.
pub fn exported_to_all(export_to: &[Value]) -> bool {
    let mut all = true;
    for item in export_to.iter().filter_map(Value::as_str) {
        if item == "." {
            all = false;
        } else if item == "*" {
            return true;
        }
    }
    all
}

/// Host visibility scope: `*` for hosts exported everywhere, else the namespace.
pub fn scope(namespace: &str, export_to: &[Value]) -> String {
    if exported_to_all(export_to) {
        "*".to_string()
    } else {
        namespace.to_string()
    }
}

/// The names of entries, in order (for messages that list them).
pub fn names(entries: &[&Entry]) -> Vec<String> {
    entries.iter().map(|entry| entry.name().to_string()).collect()
}
