//! The proto3 JSON mapping for Envoy's v3 API: turn `Any`-wrapped xDS resources (and any other
//! message `envoy-types` knows) into JSON for debug endpoints and `istioctl x xds`, and read
//! Envoy-shaped YAML/JSON (a static bootstrap, a `--config-file`) back into typed messages.
//! Istio 1.4's Mixer client config (the `mixer` filters' typed configs) is described too.

use std::sync::Mutex;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));
/// The subset a data plane needs (the bootstrap, xDS resources, admin dumps and the typed
/// configs it understands): a fraction of the memory of the whole set.
static DATA_PLANE_DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors_data_plane.bin"));

static DATA_PLANE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Limits the mapping to the data plane's subset of Envoy's API. Call before the first
/// conversion; messages outside the subset then count as unknown types.
pub fn use_data_plane_subset() {
    DATA_PLANE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("decoding {type_name}: {source}")]
    Decode { type_name: String, source: prost::DecodeError },
    #[error("{type_name}: {message}")]
    Json { type_name: String, message: String },
}

/// The decoded descriptors, built on first use and kept until `release_pool`.
static POOL: Mutex<Option<DescriptorPool>> = Mutex::new(None);

/// Every Envoy, xDS, udpa and well-known message, as prost-reflect descriptors (a cheap handle
/// to one shared pool).
pub fn pool() -> DescriptorPool {
    let mut pool = istio_runtime::sync::lock(&POOL);
    pool.get_or_insert_with(|| {
        let descriptors = if DATA_PLANE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
            DATA_PLANE_DESCRIPTORS
        } else {
            DESCRIPTORS
        };
        let mut pool = DescriptorPool::decode(descriptors).expect("envoy-types ships a valid descriptor set");
        add_mixer_client_config(&mut pool);
        pool
    })
    .clone()
}

/// Adds `istio.mixer.v1` attributes and `istio.mixer.v1.config.client` (the typed configs of
/// 1.4's `mixer` filters) from the Istio API's descriptors; the well-known types they import
/// are already in the pool.
fn add_mixer_client_config(pool: &mut DescriptorPool) {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(istio_api::FILE_DESCRIPTOR_SET) else { return };
    let mut files: Vec<prost_types::FileDescriptorProto> = set
        .file
        .into_iter()
        .filter(|file| {
            file.name().starts_with("mixer/v1/attributes") || file.name().starts_with("mixer/v1/config/client/")
        })
        .collect();
    // Imports first.
    files.sort_by_key(|file| match file.name() {
        "mixer/v1/attributes.proto" => 0,
        "mixer/v1/config/client/service.proto" => 1,
        "mixer/v1/config/client/quota.proto" | "mixer/v1/config/client/api_spec.proto" => 2,
        _ => 3,
    });
    if let Err(error) = pool.add_file_descriptor_protos(files) {
        // The pool still works without them.
        tracing::warn!(%error, "Istio Mixer client config types are not available for JSON");
    }
}

/// Frees the decoded descriptors (several MB) once nothing else holds them; the next
/// conversion decodes them again. A long-running process that converts only now and then (a
/// proxy reading its bootstrap, rendering a `/config_dump`) calls this after each burst.
pub fn release_pool() {
    istio_runtime::sync::lock(&POOL).take();
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Envoy's admin API and Pilot's debug endpoints print proto field names (`socket_address`),
/// not proto3 JSON's camelCase, and tools that read them expect that.
fn serialize_options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(true).use_proto_field_name(true)
}

/// Decode `bytes` as the message named by `type_url` (or a bare full name) and render it as JSON.
/// Nested `Any` fields are expanded too, with their `@type`.
pub fn to_json(type_url: &str, bytes: &[u8]) -> Result<serde_json::Value, Error> {
    let name = type_name(type_url);
    let descriptor = pool().get_message_by_name(name).ok_or_else(|| Error::UnknownType(name.to_string()))?;
    let message = DynamicMessage::decode(descriptor, bytes)
        .map_err(|source| Error::Decode { type_name: name.to_string(), source })?;
    message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| Error::Json { type_name: name.to_string(), message: e.to_string() })
}

/// The message named by `type_url` decoded from `bytes` and encoded again: one encoding for
/// one value, whatever encoding it came in (fields in order, a repeated merge folded into one).
pub fn reencode(type_url: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let name = type_name(type_url);
    let descriptor = pool().get_message_by_name(name).ok_or_else(|| Error::UnknownType(name.to_string()))?;
    let message = DynamicMessage::decode(descriptor, bytes)
        .map_err(|source| Error::Decode { type_name: name.to_string(), source })?;
    Ok(crate::canonical::encode(&message))
}

/// Render an `Any` as JSON, with `@type` first as Envoy's config dumps show it.
pub fn any_to_json(any: &envoy_types::pb::google::protobuf::Any) -> Result<serde_json::Value, Error> {
    let body = to_json(&any.type_url, &any.value)?;
    let mut object = serde_json::Map::new();
    object.insert("@type".into(), serde_json::Value::String(any.type_url.clone()));
    if let serde_json::Value::Object(fields) = body {
        object.extend(fields);
    }
    Ok(serde_json::Value::Object(object))
}

/// Render a typed message as JSON.
pub fn message_to_json<M: prost::Name>(message: &M) -> Result<serde_json::Value, Error> {
    to_json(&M::full_name(), &message.encode_to_vec())
}

/// Reads the message named `name` from JSON; unknown fields are errors naming their path.
fn dynamic_from_json(name: &str, value: &serde_json::Value) -> Result<DynamicMessage, Error> {
    let descriptor = pool().get_message_by_name(name).ok_or_else(|| Error::UnknownType(name.to_string()))?;
    DynamicMessage::deserialize_with_options(descriptor, value, &DeserializeOptions::new())
        .map_err(|e| Error::Json { type_name: name.to_string(), message: e.to_string() })
}

/// Read a typed message from JSON (or YAML already parsed into a JSON value). Unknown fields
/// are rejected, and the error names the field path.
pub fn message_from_json<M: prost::Name + Default>(value: &serde_json::Value) -> Result<M, Error> {
    let name = M::full_name();
    let dynamic = dynamic_from_json(&name, value)?;
    // Through the canonical encoding, so the typed configs (`Any`) inside come out the same
    // for the same JSON.
    M::decode(crate::canonical::encode(&dynamic).as_slice()).map_err(|source| Error::Decode { type_name: name, source })
}

/// Read an `Any` from JSON that names its type in `@type` (as Envoy's typed configs do); the other
/// fields are the message's, checked against its descriptor.
pub fn any_from_json(value: &serde_json::Value) -> Result<envoy_types::pb::google::protobuf::Any, Error> {
    let type_url = value
        .get("@type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Error::Json { type_name: "google.protobuf.Any".into(), message: "missing @type".into() })?
        .to_string();
    let mut fields = value.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("@type");
    }
    let dynamic = dynamic_from_json(type_name(&type_url), &fields)?;
    Ok(envoy_types::pb::google::protobuf::Any { type_url, value: crate::canonical::encode(&dynamic) })
}

/// Read a typed message from YAML text in Envoy's v3 shape.
pub fn message_from_yaml<M: prost::Name + Default>(text: &str) -> Result<M, Error> {
    let value: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| Error::Json { type_name: M::full_name(), message: format!("YAML: {e}") })?;
    message_from_json(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::google::protobuf::Duration;
    use prost::Message;

    /// A released pool is decoded again on the next conversion; handles taken before the
    /// release stay usable.
    #[test]
    fn conversions_work_across_a_release() {
        let held = pool();
        release_pool();
        let cluster = Cluster { name: "after-release".into(), ..Default::default() };
        assert_eq!(message_to_json(&cluster).unwrap()["name"], "after-release");
        assert!(held.get_message_by_name("envoy.config.cluster.v3.Cluster").is_some());
    }

    #[test]
    fn cluster_round_trips_through_json() {
        let cluster = Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
            load_assignment: Some(ClusterLoadAssignment { cluster_name: "c".into(), ..Default::default() }),
            ..Default::default()
        };
        let json = message_to_json(&cluster).unwrap();
        assert_eq!(json["name"], "outbound|9080||reviews.default.svc.cluster.local");
        assert_eq!(json["connect_timeout"], "1s");
        let back: Cluster = message_from_json(&json).unwrap();
        assert_eq!(back, cluster);
    }

    #[test]
    fn any_is_rendered_with_its_type() {
        let address = Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(15001)),
                ..Default::default()
            })),
        };
        let any = envoy_types::pb::google::protobuf::Any {
            type_url: "type.googleapis.com/envoy.config.core.v3.Address".into(),
            value: address.encode_to_vec(),
        };
        let json = any_to_json(&any).unwrap();
        assert_eq!(json["@type"], "type.googleapis.com/envoy.config.core.v3.Address");
        assert_eq!(json["socket_address"]["port_value"], 15001);
    }

    #[test]
    fn any_is_read_back_from_json_with_its_type() {
        let json = serde_json::json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": "function envoy_on_request(h) end"}
        });
        let any = any_from_json(&json).unwrap();
        assert_eq!(any.type_url, "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua");
        assert_eq!(any_to_json(&any).unwrap(), json);
        assert!(any_from_json(&serde_json::json!({"inlineCode": "x"})).is_err(), "no @type");
    }

    #[test]
    fn yaml_with_a_misspelt_field_is_rejected_by_name() {
        let err = message_from_yaml::<Cluster>("name: a\nconect_timeout: 1s\n").unwrap_err().to_string();
        assert!(err.contains("conect_timeout"), "{err}");
    }
}
