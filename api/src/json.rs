//! The proto3 JSON mapping for every message in this crate, driven by the embedded descriptor
//! set: camelCase (or original) field names, durations as `"5s"`, enums by name, well-known
//! wrappers and `Struct`, and unknown fields rejected. Decoding reports the path of the field
//! that failed (`http[0].route[0].destination.hots`), which validation messages reuse.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde::de::IntoDeserializer;

use crate::FILE_DESCRIPTOR_SET;

/// Why a JSON value could not become the requested message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The message name is not in the descriptor set (a programming error, not user input).
    #[error("unknown proto message {0}")]
    UnknownMessage(String),
    /// The value does not match the message's JSON form. `path` is empty for the top level.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Mismatch { path: String, message: String },
    /// The bytes are not an encoding of the message.
    #[error("cannot decode {message_name}: {reason}")]
    Decode { message_name: String, reason: String },
}

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The descriptor set is produced by this crate's build script from its own protos; if it
    // does not decode the build itself is broken, so there is nothing sensible to fall back to.
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|error| panic!("embedded descriptor set is corrupt: {error}"))
});

/// The descriptor pool holding every message of the Istio API.
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message by full name (`istio.networking.v1alpha3.VirtualService`).
pub fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    POOL.get_message_by_name(full_name).ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))
}

/// Decodes a JSON value into a dynamic message of type `full_name`, rejecting unknown fields.
/// Durations may use Go's syntax (`30ms`, `3m`, `1h30m`) as Istio 1.4 accepted, besides `"5s"`.
pub fn decode_dynamic(full_name: &str, value: &serde_json::Value) -> Result<DynamicMessage, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let mut value = value.clone();
    normalize_durations(&descriptor, &mut value);
    whole_floats_to_integers(&mut value);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value.into_deserializer(), &mut track);
    DynamicMessage::deserialize_with_options(descriptor, deserializer, &options)
        .map_err(|error| JsonError::Mismatch { path: json_path(&track.path().to_string()), message: error.to_string() })
}

/// Decodes a JSON value into the generated message `T` whose proto name is `full_name`.
pub fn decode<T: prost::Message + Default>(full_name: &str, value: &serde_json::Value) -> Result<T, JsonError> {
    let dynamic = decode_dynamic(full_name, value)?;
    dynamic
        .transcode_to::<T>()
        .map_err(|error| JsonError::Decode { message_name: full_name.to_string(), reason: error.to_string() })
}

/// Encodes the binary form of message `full_name` as proto3 JSON (camelCase, defaults omitted).
pub fn encode_bytes(full_name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    let descriptor = message_descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(descriptor, bytes)
        .map_err(|error| JsonError::Decode { message_name: full_name.to_string(), reason: error.to_string() })?;
    Ok(dynamic_to_json(&dynamic))
}

/// Encodes a generated message as proto3 JSON.
pub fn encode<T: prost::Message>(full_name: &str, message: &T) -> Result<serde_json::Value, JsonError> {
    encode_bytes(full_name, &message.encode_to_vec())
}

/// Proto3 JSON of a dynamic message.
pub fn dynamic_to_json(message: &DynamicMessage) -> serde_json::Value {
    let options = SerializeOptions::new().skip_default_fields(true);
    message.serialize_with_options(serde_json::value::Serializer, &options).unwrap_or(serde_json::Value::Null)
}

/// The message name inside a `type.googleapis.com/<name>` type URL.
pub fn type_url_message(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Turns whole-number floats (`1.0`) into integers. Objects that travelled as a
/// `google.protobuf.Struct` (Galley's MCP resources) carry every number as a double, and an
/// integer or enum field must still take them; a double field takes an integer as well.
fn whole_floats_to_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64() {
                if float.fract() == 0.0 && float.abs() < 9.0e15 {
                    *value = serde_json::Value::from(float as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_floats_to_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_floats_to_integers),
        _ => {}
    }
}

const DURATION: &str = "google.protobuf.Duration";

/// Rewrites every Go-style duration string found at a `Duration` field into proto3 form.
/// Values that do not parse are left alone for the decoder to reject with its own message.
fn normalize_durations(descriptor: &MessageDescriptor, value: &mut serde_json::Value) {
    use prost_reflect::Kind;
    let serde_json::Value::Object(map) = value else { return };
    for (key, item) in map.iter_mut() {
        let field = descriptor.get_field_by_json_name(key).or_else(|| descriptor.get_field_by_name(key));
        let Some(field) = field else { continue };
        let Kind::Message(message) = field.kind() else { continue };
        if field.is_map() {
            let Some(value_field) = message.map_entry_value_field().kind().as_message().cloned() else { continue };
            if let serde_json::Value::Object(entries) = item {
                for entry in entries.values_mut() {
                    normalize_one(&value_field, entry);
                }
            }
        } else if field.is_list() {
            if let serde_json::Value::Array(items) = item {
                for entry in items {
                    normalize_one(&message, entry);
                }
            }
        } else {
            normalize_one(&message, item);
        }
    }
}

fn normalize_one(message: &MessageDescriptor, value: &mut serde_json::Value) {
    if message.full_name() == DURATION {
        if let serde_json::Value::String(text) = value {
            if let Some(proto) = istio_duration::to_proto_json(text) {
                *text = proto;
            }
        }
    } else if !message.full_name().starts_with("google.protobuf.") {
        normalize_durations(message, value);
    }
}

/// serde_path_to_error prints the top level as `.`; drop it, keep everything else.
fn json_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_accepts_go_durations_in_nested_and_repeated_fields() {
        let value = serde_json::json!({
            "host": "reviews",
            "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "30ms"}}, "outlierDetection": {"baseEjectionTime": "3m"}},
            "subsets": [{"name": "v1", "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "1h"}}}}]
        });
        let message = decode_dynamic("istio.networking.v1alpha3.DestinationRule", &value).expect("decodes");
        let json = dynamic_to_json(&message);
        assert_eq!(json["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"], "0.030s");
        assert_eq!(json["trafficPolicy"]["outlierDetection"]["baseEjectionTime"], "180s");
        assert_eq!(json["subsets"][0]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"], "3600s");
    }

    #[test]
    fn whole_floats_from_structs_fill_integer_and_enum_fields() {
        // As Galley's MCP resources carry them: every number a double.
        let value = serde_json::json!({"severity_levels": {"warning": 1.0}, "maxRotatedFiles": 3.0});
        let params: crate::pb::adapter::stdio::config::Params =
            decode("adapter.stdio.config.Params", &value).expect("decodes");
        assert_eq!(params.severity_levels["warning"], 1);
        assert_eq!(params.max_rotated_files, 3);
        let fraction = serde_json::json!({"maxRotatedFiles": 2.5});
        assert!(decode_dynamic("adapter.stdio.config.Params", &fraction).is_err());
    }

    #[test]
    fn unknown_fields_and_bad_values_report_their_path() {
        let value = serde_json::json!({"hosts": ["r"], "http": [{"route": [{"destination": {"hots": "r"}}]}]});
        let error = decode_dynamic("istio.networking.v1alpha3.VirtualService", &value).expect_err("unknown field");
        let JsonError::Mismatch { path, message } = error else { panic!("wrong error") };
        assert_eq!(path, "http[0].route[0].destination");
        assert!(message.contains("hots"), "{message}");
        let error = decode_dynamic(
            "istio.networking.v1alpha3.VirtualService",
            &serde_json::json!({"http": [{"timeout": "soon"}]}),
        )
        .expect_err("bad duration");
        assert!(matches!(error, JsonError::Mismatch { ref path, .. } if path == "http[0].timeout"), "{error:?}");
    }

    /// A JSON value for `message` with every field set: scalars non-default, enums at their
    /// second value, one list and map entry, the first member of each oneof, nested messages
    /// down to a depth limit.
    fn filled(message: &MessageDescriptor, depth: usize) -> serde_json::Value {
        use prost_reflect::Kind;
        let mut object = serde_json::Map::new();
        let mut oneofs_done = std::collections::HashSet::new();
        for field in message.fields() {
            if let Some(oneof) = field.containing_oneof() {
                if !oneofs_done.insert(oneof.name().to_string()) {
                    continue;
                }
            }
            let single = |kind: &Kind| -> Option<serde_json::Value> {
                Some(match kind {
                    Kind::Double | Kind::Float => serde_json::json!(1.5),
                    Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => serde_json::json!(-7),
                    Kind::Uint32 | Kind::Fixed32 => serde_json::json!(7),
                    Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => serde_json::json!("-9"),
                    Kind::Uint64 | Kind::Fixed64 => serde_json::json!("9"),
                    Kind::Bool => serde_json::json!(true),
                    Kind::String => serde_json::json!("text"),
                    Kind::Bytes => serde_json::json!("AQI="),
                    Kind::Enum(enumeration) => {
                        let value = enumeration.values().nth(1).or_else(|| enumeration.values().next())?;
                        serde_json::json!(value.name())
                    }
                    Kind::Message(inner) => match inner.full_name() {
                        DURATION => serde_json::json!("1.500s"),
                        "google.protobuf.Timestamp" => serde_json::json!("2020-01-02T03:04:05Z"),
                        "google.protobuf.Struct" => serde_json::json!({"key": ["value", 1.0, true, null]}),
                        "google.protobuf.Value" => serde_json::json!({"nested": "value"}),
                        "google.protobuf.Any"
                        | "google.protobuf.Empty"
                        | "google.protobuf.ListValue"
                        | "google.protobuf.FieldMask" => return None,
                        name if name.starts_with("google.protobuf.") && name.ends_with("Value") => {
                            let wrapped = inner.get_field_by_name("value")?;
                            return single_wrapper(&wrapped.kind());
                        }
                        _ if depth == 0 => return None,
                        _ => filled(inner, depth - 1),
                    },
                })
            };
            let value = if field.is_map() {
                let Kind::Message(entry) = field.kind() else { continue };
                let key = match entry.map_entry_key_field().kind() {
                    Kind::String => "key".to_string(),
                    Kind::Bool => "true".to_string(),
                    _ => "3".to_string(),
                };
                let Some(item) = single(&entry.map_entry_value_field().kind()) else { continue };
                serde_json::json!({ key: item })
            } else if field.is_list() {
                let Some(item) = single(&field.kind()) else { continue };
                serde_json::json!([item])
            } else {
                let Some(item) = single(&field.kind()) else { continue };
                item
            };
            object.insert(field.json_name().to_string(), value);
        }
        serde_json::Value::Object(object)
    }

    fn single_wrapper(kind: &prost_reflect::Kind) -> Option<serde_json::Value> {
        use prost_reflect::Kind;
        Some(match kind {
            Kind::Double | Kind::Float => serde_json::json!(2.5),
            Kind::Int32 => serde_json::json!(-3),
            Kind::Uint32 => serde_json::json!(3),
            Kind::Int64 => serde_json::json!("-4"),
            Kind::Uint64 => serde_json::json!("4"),
            Kind::Bool => serde_json::json!(true),
            Kind::String => serde_json::json!("wrapped"),
            Kind::Bytes => serde_json::json!("AQI="),
            _ => return None,
        })
    }

    #[test]
    fn every_kind_round_trips_through_json_and_binary_with_every_field_set() {
        let mut checked = 0;
        for kind in crate::kinds::all() {
            let descriptor = message_descriptor(kind.proto).expect("descriptor");
            let value = filled(&descriptor, 4);
            // Through YAML text, as objects arrive from files.
            let yaml = serde_yaml::to_string(&value).expect("yaml");
            let value: serde_json::Value = serde_yaml::from_str(&yaml).expect("yaml parses");
            let message =
                decode_dynamic(kind.proto, &value).unwrap_or_else(|error| panic!("{}: {error}\n{value:#}", kind.kind));
            let json = dynamic_to_json(&message);
            let again =
                decode_dynamic(kind.proto, &json).unwrap_or_else(|error| panic!("{}: re-decoding: {error}", kind.kind));
            assert_eq!(message, again, "{}: JSON round trip changed the message", kind.kind);
            let bytes = prost::Message::encode_to_vec(&message);
            assert_eq!(encode_bytes(kind.proto, &bytes).expect("binary"), json, "{}: binary round trip", kind.kind);
            if descriptor.fields().len() > 0 {
                assert!(!bytes.is_empty(), "{}: a filled message encodes to something", kind.kind);
            }
            checked += 1;
        }
        assert_eq!(checked, crate::kinds::all().len());
    }

    #[test]
    fn snake_case_field_names_are_accepted_too() {
        let value = serde_json::json!({"host": "r", "traffic_policy": {"connection_pool": {"http": {"http1_max_pending_requests": 1}}}});
        let json =
            dynamic_to_json(&decode_dynamic("istio.networking.v1alpha3.DestinationRule", &value).expect("decodes"));
        assert_eq!(json["trafficPolicy"]["connectionPool"]["http"]["http1MaxPendingRequests"], 1);
    }
}
