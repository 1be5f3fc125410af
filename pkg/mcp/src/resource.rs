//! Config objects as MCP resources and back. A resource is named `namespace/name` (or `name`
//! when cluster-scoped), carries the object's resource version, labels, annotations and creation
//! time in its metadata, and its spec as the kind's proto in an `Any`. A sink reading Galley's
//! synthetic ServiceEntries gets them as ServiceEntry objects named `synthetic.NAME`, apart from
//! the user's own entries of the same name.

use istio_api::kinds::{self, Kind};
use istio_api::pb::istio::mcp::v1alpha1::{Metadata, Resource};
use istio_config::object::Object;
use prost::Message;

/// Why an object could not become a resource, or a resource an object.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{object}: {reason}")]
    Encode { object: String, reason: String },
    #[error("unknown collection {0}")]
    UnknownCollection(String),
    #[error("{collection} {name}: resource without a body")]
    NoBody { collection: String, name: String },
    #[error("{collection} {name}: {source}")]
    Decode { collection: String, name: String, source: istio_api::json::JsonError },
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
pub fn encode_body(proto: &str, value: &serde_json::Value) -> Result<prost_types::Any, istio_api::json::JsonError> {
    let message = istio_api::json::decode_dynamic(proto, value)?;
    Ok(prost_types::Any { type_url: format!("type.googleapis.com/{proto}"), value: message.encode_to_vec() })
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

/// The resource for an Istio object of `kind`.
pub fn istio_resource(kind: &Kind, object: &Object) -> Result<Resource, ResourceError> {
    let spec = if object.spec().is_null() { serde_json::json!({}) } else { object.spec().clone() };
    let body = encode_body(kind.proto, &spec)
        .map_err(|error| ResourceError::Encode { object: object.display_name(), reason: error.to_string() })?;
    Ok(Resource { metadata: Some(metadata(object, object.resource_version().to_string())), body: Some(body) })
}

/// The object a resource of `collection` stands for.
pub fn resource_object(collection: &str, resource: &Resource) -> Result<Object, ResourceError> {
    let (kind, synthetic) = match kinds::by_collection(collection) {
        Some(kind) => (kind, false),
        None if collection == kinds::SYNTHETIC_SERVICE_ENTRIES => match kinds::by_name("ServiceEntry") {
            Some(kind) => (kind, true),
            None => return Err(ResourceError::UnknownCollection(collection.to_string())),
        },
        None => return Err(ResourceError::UnknownCollection(collection.to_string())),
    };
    let metadata = resource.metadata.clone().unwrap_or_default();
    let body = resource
        .body
        .as_ref()
        .ok_or_else(|| ResourceError::NoBody { collection: collection.to_string(), name: metadata.name.clone() })?;
    let spec = istio_api::json::encode_bytes(istio_api::json::type_url_message(&body.type_url), &body.value).map_err(
        |source| ResourceError::Decode { collection: collection.to_string(), name: metadata.name.clone(), source },
    )?;
    let (namespace, name) =
        metadata.name.split_once('/').map_or((None, metadata.name.as_str()), |(ns, name)| (Some(ns), name));
    // Synthetic entries share names with Services; keep them apart from user ServiceEntries.
    let name = if synthetic { format!("synthetic.{name}") } else { name.to_string() };
    let mut object = Object::new(&kind.api_version(), kind.kind, namespace, &name);
    object.metadata.resource_version = Some(metadata.version);
    object.metadata.labels = (!metadata.labels.is_empty()).then(|| metadata.labels.into_iter().collect());
    object.metadata.annotations =
        (!metadata.annotations.is_empty()).then(|| metadata.annotations.into_iter().collect());
    object.body.insert("spec".to_string(), spec);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virtual_service() -> Object {
        let mut object = Object::new("networking.istio.io/v1alpha3", "VirtualService", Some("default"), "reviews");
        object.metadata.resource_version = Some("42".into());
        object.metadata.labels = Some([("app".to_string(), "reviews".to_string())].into());
        object.body.insert(
            "spec".into(),
            serde_json::json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        object
    }

    #[test]
    fn objects_survive_the_trip_through_a_resource() {
        let object = virtual_service();
        let kind = object.istio_kind().expect("an Istio kind");
        let resource = istio_resource(kind, &object).expect("encodes");
        let metadata = resource.metadata.as_ref().expect("metadata");
        assert_eq!((metadata.name.as_str(), metadata.version.as_str()), ("default/reviews", "42"));
        let back = resource_object(kind.collection, &resource).expect("decodes");
        assert_eq!(back.display_name(), object.display_name());
        assert_eq!(back.resource_version(), "42");
        assert_eq!(back.spec(), object.spec());
        assert_eq!(back.metadata.labels, object.metadata.labels);
    }

    #[test]
    fn synthetic_entries_are_named_apart_and_bad_resources_are_named() {
        let mut entry = Object::new("networking.istio.io/v1alpha3", "ServiceEntry", Some("default"), "reviews");
        entry.body.insert("spec".into(), serde_json::json!({"hosts": ["reviews.default.svc.cluster.local"]}));
        let resource = istio_resource(entry.istio_kind().expect("kind"), &entry).expect("encodes");
        let synthetic = resource_object(kinds::SYNTHETIC_SERVICE_ENTRIES, &resource).expect("decodes");
        assert_eq!(synthetic.name(), "synthetic.reviews");
        assert_eq!(synthetic.kind, "ServiceEntry");

        let error = resource_object("istio/no/such", &resource).expect_err("unknown");
        assert_eq!(error.to_string(), "unknown collection istio/no/such");
        let bodiless = Resource { body: None, ..resource };
        let error = resource_object(kinds::SYNTHETIC_SERVICE_ENTRIES, &bodiless).expect_err("no body");
        assert!(error.to_string().ends_with("default/reviews: resource without a body"), "{error}");
    }
}
