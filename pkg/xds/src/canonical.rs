//! One encoding for one value of a dynamic message. prost-reflect keeps a map field in a hash
//! map and encodes its entries in that map's order, which differs from one decoded value to the
//! next; config read from JSON (an EnvoyFilter's patches, a `Struct`) would then be different
//! bytes on every push, and a proxy that compares a filter chain's bytes would drain it each
//! time. Here map entries are encoded in key order, and so are the messages inside each `Any`
//! whose type the message's pool knows. Everything else is encoded by prost-reflect itself, one
//! field at a time, in field-number order.

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};

const ANY: &str = "google.protobuf.Any";

/// `message` encoded with every map's entries in key order, recursively.
pub fn encode(message: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::new();
    let descriptor = message.descriptor();
    if descriptor.full_name() == ANY {
        if let Some(canonical) = canonical_any(message) {
            return canonical;
        }
    }
    for (field, value) in message.fields() {
        let nested = matches!(field.kind(), Kind::Message(_)) && !field.is_group();
        match value {
            Value::Map(entries) if field.is_map() => {
                let Kind::Message(entry_type) = field.kind() else { continue };
                let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
                sorted.sort_by_key(|(key, _)| *key);
                for (key, value) in sorted {
                    let mut entry = DynamicMessage::new(entry_type.clone());
                    entry.set_field_by_number(1, Value::from(key.clone()));
                    entry.set_field_by_number(2, value.clone());
                    length_delimited(field.number(), &encode(&entry), &mut out);
                }
            }
            Value::Message(inner) if nested => length_delimited(field.number(), &encode(inner), &mut out),
            Value::List(items) if nested => {
                for item in items {
                    if let Value::Message(inner) = item {
                        length_delimited(field.number(), &encode(inner), &mut out);
                    }
                }
            }
            _ => {
                let mut alone = DynamicMessage::new(descriptor.clone());
                alone.set_field(&field, value.clone());
                alone.encode(&mut out).unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
            }
        }
    }
    for unknown in message.unknown_fields() {
        unknown.encode(&mut out);
    }
    out
}

/// An `Any` whose message type the pool knows, with that message encoded canonically.
fn canonical_any(any: &DynamicMessage) -> Option<Vec<u8>> {
    let type_url = any.get_field_by_name("type_url")?;
    let value = any.get_field_by_name("value")?;
    let (Value::String(type_url), Value::Bytes(bytes)) = (type_url.as_ref(), value.as_ref()) else { return None };
    let inner_type = any.descriptor().parent_pool().get_message_by_name(type_url.rsplit('/').next()?)?;
    let inner = DynamicMessage::decode(inner_type, bytes.as_ref()).ok()?;
    let mut canonical = DynamicMessage::new(any.descriptor());
    canonical.set_field_by_name("type_url", Value::String(type_url.clone()));
    canonical.set_field_by_name("value", Value::Bytes(encode(&inner).into()));
    Some(canonical.encode_to_vec())
}

fn length_delimited(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn struct_type() -> prost_reflect::MessageDescriptor {
        crate::json::pool().get_message_by_name("google.protobuf.Struct").expect("Struct is known")
    }

    fn from_json(name: &str, value: &serde_json::Value) -> DynamicMessage {
        let descriptor = crate::json::pool().get_message_by_name(name).expect("known type");
        DynamicMessage::deserialize(descriptor, value).expect("valid JSON")
    }

    fn many_fields() -> serde_json::Value {
        let fields: serde_json::Map<String, serde_json::Value> = (0..32)
            .map(|n| (format!("field{n}"), serde_json::json!({"nested": n, "list": [n, {"deeper": n}]})))
            .collect();
        serde_json::Value::Object(fields)
    }

    #[test]
    fn equal_values_are_equal_bytes_and_decode_back() {
        let json = many_fields();
        let encodings: Vec<Vec<u8>> = (0..8).map(|_| encode(&from_json("google.protobuf.Struct", &json))).collect();
        assert!(encodings.windows(2).all(|pair| pair[0] == pair[1]), "every decoded copy encodes the same");
        let back = DynamicMessage::decode(struct_type(), encodings[0].as_slice()).expect("decodes");
        assert_eq!(back, from_json("google.protobuf.Struct", &json));
        // prost-reflect's own encoding follows each copy's hash order (the reason for this module).
        let plain: std::collections::HashSet<Vec<u8>> =
            (0..8).map(|_| from_json("google.protobuf.Struct", &json).encode_to_vec()).collect();
        assert!(plain.len() > 1, "hash order varies between copies");
    }

    #[test]
    fn messages_inside_an_any_are_canonical_too() {
        let filter = serde_json::json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": many_fields()}
        });
        let name = "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter";
        let encodings: std::collections::HashSet<Vec<u8>> = (0..8).map(|_| encode(&from_json(name, &filter))).collect();
        assert_eq!(encodings.len(), 1);
        // The same config: compared as JSON, which expands the Any.
        let canonical = crate::json::to_json(name, encodings.iter().next().expect("one")).expect("decodes");
        let plain = crate::json::to_json(name, &from_json(name, &filter).encode_to_vec()).expect("decodes");
        assert_eq!(canonical, plain);
    }
}
