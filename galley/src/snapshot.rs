//! MCP snapshots: the accepted config turned into collections of MCP `Resource`s, each
//! collection with a version computed from its content, so a sink is only pushed collections
//! that really changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use istio_api::kinds::{self, Kind};
use istio_api::pb::istio::mcp::v1alpha1::{Metadata, Resource};
use istio_config::object::Object;
use prost::Message;

/// One collection: its version and its resources by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collection {
    pub version: String,
    pub resources: BTreeMap<String, Resource>,
}

impl Collection {
    /// Builds a collection from resources, deriving the version from names and versions.
    pub fn new(resources: BTreeMap<String, Resource>) -> Self {
        let bytes: Vec<u8> = resources
            .iter()
            .flat_map(|(name, resource)| {
                let version = resource.metadata.as_ref().map_or("", |metadata| metadata.version.as_str());
                name.bytes().chain([0]).chain(version.bytes()).chain([0]).collect::<Vec<u8>>()
            })
            .collect();
        Collection { version: istio_config::hash::fnv1a64_hex(bytes), resources }
    }
}

/// Every collection Galley serves, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    pub collections: BTreeMap<String, Arc<Collection>>,
}

impl Snapshot {
    pub fn collection(&self, name: &str) -> Option<&Arc<Collection>> {
        self.collections.get(name)
    }
}

/// Why an object could not become an MCP resource (it passed validation, so this is rare).
#[derive(Debug, thiserror::Error)]
#[error("{object}: {reason}")]
pub struct ResourceError {
    pub object: String,
    pub reason: String,
}

/// The MCP name of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn resource_name(object: &Object) -> String {
    if object.namespace().is_empty() {
        object.name().to_string()
    } else {
        format!("{}/{}", object.namespace(), object.name())
    }
}

fn timestamp(object: &Object) -> Option<prost_types::Timestamp> {
    let time = object.metadata.creation_timestamp.as_ref()?;
    let seconds = time.0.as_second();
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Encodes a message given as JSON into an `Any` body.
pub fn encode_body(proto: &str, value: &serde_json::Value) -> Result<prost_types::Any, String> {
    let message = istio_api::json::decode_dynamic(proto, value).map_err(|error| error.to_string())?;
    Ok(prost_types::Any { type_url: format!("type.googleapis.com/{proto}"), value: message.encode_to_vec() })
}

/// The MCP resource for an accepted Istio object.
pub fn istio_resource(kind: &Kind, object: &Object) -> Result<Resource, ResourceError> {
    let spec = if object.spec().is_null() { serde_json::json!({}) } else { object.spec().clone() };
    let body =
        encode_body(kind.proto, &spec).map_err(|reason| ResourceError { object: object.display_name(), reason })?;
    Ok(Resource { metadata: Some(metadata(object, object.resource_version().to_string())), body: Some(body) })
}

/// MCP metadata of an object, with the given version.
pub fn metadata(object: &Object, version: String) -> Metadata {
    Metadata {
        name: resource_name(object),
        create_time: timestamp(object),
        version,
        labels: object.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
        annotations: object.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
    }
}

/// Builds the collections of every Istio kind (empty ones included) from accepted objects.
pub fn istio_collections<'a>(objects: impl IntoIterator<Item = &'a Object>) -> BTreeMap<String, Arc<Collection>> {
    let mut by_collection: BTreeMap<&'static str, BTreeMap<String, Resource>> =
        kinds::all().iter().map(|kind| (kind.collection, BTreeMap::new())).collect();
    for object in objects {
        let Some(kind) = object.istio_kind() else { continue };
        match istio_resource(kind, object) {
            Ok(resource) => {
                by_collection.entry(kind.collection).or_default().insert(resource_name(object), resource);
            }
            Err(error) => tracing::warn!(%error, "cannot encode accepted object; not served"),
        }
    }
    by_collection
        .into_iter()
        .map(|(name, resources)| (name.to_string(), Arc::new(Collection::new(resources))))
        .collect()
}
