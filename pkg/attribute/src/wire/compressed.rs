//! `CompressedAttributes`: an attribute set whose names and string values are dictionary indices
//! (global words, or the message's own `words`), and the uncompressed `Attributes` form that
//! `x-istio-attributes` and static config use.
//!
//! Decoding comes in the two strengths 1.4's Mixer had: [`decode`] refuses a message with an
//! index that names no word or an attribute given twice (what a report batch's later elements
//! get), [`decode_lenient`] leaves such attributes out and says which (what a `Check` and a
//! batch's first element get, where 1.4 read lazily and saw them as absent).

use std::borrow::Cow;
use std::collections::HashSet;

use istio_api::pb::istio::mixer::v1 as mixer;

use crate::bag::MapBag;
use crate::dictionary::{lookup, MessageDictionary};
use crate::value::{OwnedValue, StringMap, Timestamp, Value};

/// One problem in a compressed attribute set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("attribute index {0} is not defined in the available dictionaries")]
    UnknownIndex(i32),
    #[error("duplicate attribute {name} (type {value_type})")]
    Duplicate { name: String, value_type: &'static str },
    #[error("attribute {name}: duration or timestamp out of range")]
    OutOfRange { name: String },
    #[error("the attributes decode to more than {MAX_DECODED_BYTES} bytes")]
    TooLarge,
}

/// The most text a message's attributes may decode to. Words are shared on the wire and
/// copied when decoded, so a small message could otherwise decode to gigabytes.
pub const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// Every problem in a message, shown as 1.4 listed them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeErrors(pub Vec<DecodeError>);

impl std::fmt::Display for DecodeErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "1 error occurred:\n\t* {one}\n\n"),
            many => {
                write!(f, "{} errors occurred:", many.len())?;
                for error in many {
                    write!(f, "\n\t* {error}")?;
                }
                f.write_str("\n\n")
            }
        }
    }
}

/// Decodes strictly into `bag`, over what it holds (a delta element over the batch so far).
pub fn decode_into(
    bag: &mut MapBag,
    message: &mixer::CompressedAttributes,
    words: &[String],
) -> Result<(), DecodeErrors> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (name, value) in entries(message, words) {
        let (name, value) = match (name, value) {
            (Ok(name), Ok(value)) => (name, value),
            (name, value) => {
                errors.extend(name.err());
                errors.extend(value.err());
                continue;
            }
        };
        // Strings come first and two of them naming one word collapse; later kinds may not repeat a name.
        let is_string = matches!(value, Value::String(_));
        if !seen.insert(name.clone()) && !is_string {
            return Err(DecodeErrors(vec![DecodeError::Duplicate { name, value_type: go_type(&value) }]));
        }
        bag.set(name, value);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DecodeErrors(errors))
    }
}

/// Decodes strictly into a new bag.
pub fn decode(message: &mixer::CompressedAttributes, words: &[String]) -> Result<MapBag, DecodeErrors> {
    let mut bag = MapBag::new();
    decode_into(&mut bag, message, words)?;
    Ok(bag)
}

/// Decodes what can be decoded; attributes whose name or value names no word are left out and
/// returned as problems.
pub fn decode_lenient(message: &mixer::CompressedAttributes, words: &[String]) -> (MapBag, Vec<DecodeError>) {
    let mut bag = MapBag::new();
    let mut problems = Vec::new();
    for (name, value) in entries(message, words) {
        match (name, value) {
            (Ok(name), Ok(value)) => {
                // The first kind to hold a name wins, as 1.4's lazy bag looked kinds up in order.
                if !bag.contains(&name) {
                    bag.set(name, value);
                }
            }
            (name, value) => {
                problems.extend(name.err());
                problems.extend(value.err());
            }
        }
    }
    (bag, problems)
}

type Entry = (Result<String, DecodeError>, Result<OwnedValue, DecodeError>);

/// Every (name, value) in 1.4's order of kinds: strings, int64s, doubles, bools, timestamps,
/// durations, bytes, string maps. Words past [`MAX_DECODED_BYTES`] of text decode as errors.
fn entries(message: &mixer::CompressedAttributes, words: &[String]) -> Vec<Entry> {
    let mut budget = MAX_DECODED_BYTES;
    let mut word = |index: i32| -> Result<String, DecodeError> {
        let word = lookup(index, words).map_err(|_| DecodeError::UnknownIndex(index))?;
        budget = budget.checked_sub(word.len()).ok_or(DecodeError::TooLarge)?;
        Ok(word.to_string())
    };
    let mut entries: Vec<Entry> = Vec::new();
    for (name, value) in &message.strings {
        entries.push((word(*name), word(*value).map(|text| Value::String(Cow::Owned(text)))));
    }
    for (name, value) in &message.int64s {
        entries.push((word(*name), Ok(Value::Int64(*value))));
    }
    for (name, value) in &message.doubles {
        entries.push((word(*name), Ok(Value::Double(*value))));
    }
    for (name, value) in &message.bools {
        entries.push((word(*name), Ok(Value::Bool(*value))));
    }
    for (name, value) in &message.timestamps {
        entries.push((word(*name), Ok(Value::Timestamp(Timestamp::from_parts(value.seconds, value.nanos)))));
    }
    for (name, value) in &message.durations {
        let name = word(*name);
        let nanos = i128::from(value.seconds) * 1_000_000_000 + i128::from(value.nanos);
        let value = i64::try_from(nanos)
            .map(Value::Duration)
            .map_err(|_| DecodeError::OutOfRange { name: name.clone().unwrap_or_default() });
        entries.push((name, value));
    }
    for (name, value) in &message.bytes {
        entries.push((word(*name), Ok(Value::Bytes(Cow::Owned(value.clone())))));
    }
    for (name, map) in &message.string_maps {
        let name = word(*name);
        let mut decoded = StringMap::new();
        let mut failure = None;
        for (key, value) in &map.entries {
            match (word(*key), word(*value)) {
                (Ok(key), Ok(value)) => {
                    decoded.insert(key, value);
                }
                (Err(error), _) | (_, Err(error)) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        entries.push((name, failure.map_or_else(|| Ok(Value::StringMap(Cow::Owned(decoded))), Err)));
    }
    entries
}

/// The Go type 1.4 named in duplicate errors.
fn go_type(value: &Value<'_>) -> &'static str {
    match value {
        Value::String(_) | Value::DnsName(_) | Value::EmailAddress(_) | Value::Uri(_) => "string",
        Value::Int64(_) => "int64",
        Value::Double(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Timestamp(_) => "time.Time",
        Value::Duration(_) => "time.Duration",
        Value::IpAddress(_) | Value::Bytes(_) => "[]uint8",
        Value::StringMap(_) => "attribute.StringMap",
    }
}

/// Encodes `bag` against `dictionary` (whose words the caller sends: in the message, or as a
/// batch's `default_words`); the returned message's own `words` are left empty.
pub fn encode_with(bag: &MapBag, dictionary: &mut MessageDictionary) -> mixer::CompressedAttributes {
    let mut message = mixer::CompressedAttributes::default();
    for (name, value) in bag.sorted() {
        let index = dictionary.index(name);
        match value {
            Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => {
                let value = dictionary.index(text);
                message.strings.insert(index, value);
            }
            Value::Int64(value) => {
                message.int64s.insert(index, *value);
            }
            Value::Double(value) => {
                message.doubles.insert(index, *value);
            }
            Value::Bool(value) => {
                message.bools.insert(index, *value);
            }
            Value::Timestamp(at) => {
                let (seconds, nanos) = at.to_parts();
                message.timestamps.insert(index, prost_types::Timestamp { seconds, nanos });
            }
            Value::Duration(nanos) => {
                message.durations.insert(index, proto_duration(*nanos));
            }
            Value::IpAddress(bytes) | Value::Bytes(bytes) => {
                message.bytes.insert(index, bytes.to_vec());
            }
            Value::StringMap(map) => {
                let mut sorted: Vec<_> = map.iter().collect();
                sorted.sort();
                let entries =
                    sorted.into_iter().map(|(key, value)| (dictionary.index(key), dictionary.index(value))).collect();
                message.string_maps.insert(index, mixer::StringMap { entries });
            }
        }
    }
    message
}

/// Encodes `bag` as a message of its own, words included.
pub fn encode(bag: &MapBag, global_word_count: usize) -> mixer::CompressedAttributes {
    let mut dictionary = MessageDictionary::with_global_word_count(global_word_count);
    let mut message = encode_with(bag, &mut dictionary);
    message.words = dictionary.into_words();
    message
}

/// A signed nanosecond count as a protobuf duration (seconds and nanos share the sign).
pub fn proto_duration(nanos: i64) -> prost_types::Duration {
    let seconds = nanos / 1_000_000_000;
    let rest = nanos % 1_000_000_000;
    prost_types::Duration { seconds, nanos: i32::try_from(rest).unwrap_or(0) }
}

/// The uncompressed form (`Attributes`) as a bag.
pub fn from_attributes(attributes: &mixer::Attributes) -> MapBag {
    use mixer::attributes::attribute_value::Value as Wire;
    let mut bag = MapBag::new();
    for (name, value) in &attributes.attributes {
        let value = match &value.value {
            Some(Wire::StringValue(text)) => Value::String(Cow::Owned(text.clone())),
            Some(Wire::Int64Value(value)) => Value::Int64(*value),
            Some(Wire::DoubleValue(value)) => Value::Double(*value),
            Some(Wire::BoolValue(value)) => Value::Bool(*value),
            Some(Wire::BytesValue(bytes)) => Value::Bytes(Cow::Owned(bytes.clone())),
            Some(Wire::TimestampValue(at)) => Value::Timestamp(Timestamp::from_parts(at.seconds, at.nanos)),
            Some(Wire::DurationValue(duration)) => {
                let nanos = i128::from(duration.seconds) * 1_000_000_000 + i128::from(duration.nanos);
                Value::Duration(i64::try_from(nanos).unwrap_or(i64::MAX))
            }
            Some(Wire::StringMapValue(map)) => Value::StringMap(Cow::Owned(map.entries.clone().into_iter().collect())),
            None => continue,
        };
        bag.set(name.clone(), value);
    }
    bag
}

/// A bag in the uncompressed form.
pub fn to_attributes(bag: &MapBag) -> mixer::Attributes {
    use mixer::attributes::attribute_value::Value as Wire;
    use mixer::attributes::{AttributeValue, StringMap as WireMap};
    let attributes = bag
        .sorted()
        .into_iter()
        .map(|(name, value)| {
            let wire = match value {
                Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => {
                    Wire::StringValue(text.to_string())
                }
                Value::Int64(value) => Wire::Int64Value(*value),
                Value::Double(value) => Wire::DoubleValue(*value),
                Value::Bool(value) => Wire::BoolValue(*value),
                Value::Timestamp(at) => {
                    let (seconds, nanos) = at.to_parts();
                    Wire::TimestampValue(prost_types::Timestamp { seconds, nanos })
                }
                Value::Duration(nanos) => Wire::DurationValue(proto_duration(*nanos)),
                Value::IpAddress(bytes) | Value::Bytes(bytes) => Wire::BytesValue(bytes.to_vec()),
                Value::StringMap(map) => {
                    Wire::StringMapValue(WireMap { entries: map.clone().into_owned().into_iter().collect() })
                }
            };
            (name.to_string(), AttributeValue { value: Some(wire) })
        })
        .collect();
    mixer::Attributes { attributes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::global_index;

    fn text(value: &str) -> OwnedValue {
        Value::String(Cow::Owned(value.to_string()))
    }

    fn map(entries: &[(&str, &str)]) -> OwnedValue {
        Value::StringMap(Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    /// The proxy's compressor test set, whose indices are 1.4.6's global dictionary.
    fn proxy_attributes() -> MapBag {
        MapBag::new()
            .with("source.name", text("connection.received.bytes_total"))
            .with("source.ip", Value::Bytes(Cow::Owned(b"text/html; charset=utf-8".to_vec())))
            .with("range", Value::Double(99.9))
            .with("source.port", Value::Int64(35))
            .with("keep-alive", Value::Bool(true))
            .with("source.user", text("x-http-method-override"))
            .with("target.port", Value::Int64(8080))
            .with("context.timestamp", Value::Timestamp(Timestamp(0)))
            .with("response.duration", Value::Duration(5_000_000_000))
            .with("request.headers", map(&[("authorization", "JWT-Token"), ("content-type", "application/json")]))
    }

    #[test]
    fn compresses_with_1_4_6s_indices() {
        let message = encode(&proxy_attributes(), 222);
        assert_eq!(message.words, ["JWT-Token"]);
        assert_eq!(message.strings, [(2, 127), (6, 101)].into());
        assert_eq!(message.int64s, [(1, 35), (8, 8080)].into());
        assert_eq!(message.doubles, [(78, 99.9)].into());
        assert_eq!(message.bools, [(71, true)].into());
        assert_eq!(message.timestamps, [(132, prost_types::Timestamp::default())].into());
        assert_eq!(message.durations, [(29, prost_types::Duration { seconds: 5, nanos: 0 })].into());
        assert_eq!(message.bytes, [(0, b"text/html; charset=utf-8".to_vec())].into());
        assert_eq!(message.string_maps, [(15, mixer::StringMap { entries: [(50, -1), (58, 104)].into() })].into());
        assert_eq!(decode(&message, &message.words), Ok(proxy_attributes()));
    }

    #[test]
    fn an_empty_bag_encodes_to_the_empty_message() {
        assert_eq!(encode(&MapBag::new(), 0), mixer::CompressedAttributes::default());
    }

    #[test]
    fn message_words_serve_names_and_values_once() {
        let bag = MapBag::new().with("M1", Value::Int64(1)).with("M2", Value::Int64(2)).with("M3", text("M2"));
        let message = encode(&bag, 222);
        assert_eq!(message.words.len(), 3);
        assert_eq!(decode(&message, &message.words), Ok(bag));
    }

    #[test]
    fn every_kind_decodes_from_global_and_message_words() {
        let g = |word: &str| global_index(word).expect("global word");
        let words: Vec<String> = (1..=10).map(|n| format!("M{n}")).collect();
        let message = mixer::CompressedAttributes {
            words: words.clone(),
            strings: [(g("source.name"), g("source.uid"))].into(),
            int64s: [(g("source.port"), 42)].into(),
            doubles: [(g("request.size"), 42.0)].into(),
            bools: [(-1, true)].into(),
            timestamps: [(-2, prost_types::Timestamp { seconds: 9, nanos: 0 })].into(),
            durations: [(-3, prost_types::Duration { seconds: 42, nanos: 0 })].into(),
            bytes: [(-4, vec![11])].into(),
            string_maps: [(-5, mixer::StringMap { entries: [(-6, -7)].into() })].into(),
        };
        let expected = MapBag::new()
            .with("source.name", text("source.uid"))
            .with("source.port", Value::Int64(42))
            .with("request.size", Value::Double(42.0))
            .with("M1", Value::Bool(true))
            .with("M2", Value::Timestamp(Timestamp(9_000_000_000)))
            .with("M3", Value::Duration(42_000_000_000))
            .with("M4", Value::Bytes(Cow::Owned(vec![11])))
            .with("M5", map(&[("M6", "M7")]));
        assert_eq!(decode(&message, &words), Ok(expected.clone()));
        let (lenient, problems) = decode_lenient(&message, &words);
        assert_eq!((lenient, problems), (expected.clone(), vec![]));
        // Re-encoding and decoding again gives the same set.
        let again = encode(&expected, 222);
        assert_eq!(decode(&again, &again.words), Ok(expected));
    }

    #[test]
    fn later_messages_update_a_bag_and_may_change_types() {
        let mut bag = MapBag::new();
        let first = mixer::CompressedAttributes {
            words: vec!["M1".into()],
            bools: [(-1, true)].into(),
            int64s: [(1, 42)].into(),
            ..Default::default()
        };
        decode_into(&mut bag, &first, &first.words).expect("first");
        decode_into(&mut bag, &first, &first.words).expect("the same message again");
        let second = mixer::CompressedAttributes {
            words: vec!["M1".into(), "M7".into(), "M6".into()],
            string_maps: [(-1, mixer::StringMap { entries: [(-2, -3)].into() })].into(),
            int64s: [(1, 142)].into(),
            ..Default::default()
        };
        decode_into(&mut bag, &second, &second.words).expect("second");
        assert_eq!(bag, MapBag::new().with("M1", map(&[("M7", "M6")])).with("source.port", Value::Int64(142)));
    }

    #[test]
    fn a_name_given_twice_in_one_message_is_refused() {
        let string = [(4, 5)];
        let cases = [
            mixer::CompressedAttributes { strings: string.into(), int64s: [(4, 1)].into(), ..Default::default() },
            mixer::CompressedAttributes { strings: string.into(), doubles: [(4, 1.0)].into(), ..Default::default() },
            mixer::CompressedAttributes { strings: string.into(), bools: [(4, true)].into(), ..Default::default() },
            mixer::CompressedAttributes {
                strings: string.into(),
                durations: [(4, prost_types::Duration::default())].into(),
                ..Default::default()
            },
            mixer::CompressedAttributes {
                strings: string.into(),
                timestamps: [(4, prost_types::Timestamp::default())].into(),
                ..Default::default()
            },
            mixer::CompressedAttributes { strings: string.into(), bytes: [(4, vec![1])].into(), ..Default::default() },
            mixer::CompressedAttributes {
                strings: string.into(),
                string_maps: [(4, mixer::StringMap::default())].into(),
                ..Default::default()
            },
        ];
        for message in cases {
            let error = decode(&message, &[]).expect_err("duplicate");
            assert!(error.to_string().contains("duplicate attribute source.namespace (type"), "{error}");
        }
    }

    #[test]
    fn indices_that_name_no_word() {
        let words: Vec<String> = (1..=10).map(|n| format!("N{n}")).collect();
        let message = mixer::CompressedAttributes { strings: [(-24, 25_000)].into(), ..Default::default() };
        let error = decode(&message, &words).expect_err("out of range");
        assert_eq!(
            error.to_string(),
            "2 errors occurred:\n\t* attribute index -24 is not defined in the available dictionaries\n\t* attribute index 25000 is not defined in the available dictionaries\n\n"
        );
        // Read leniently, bad names, bad values and bad map entries are simply absent.
        let words: Vec<String> = vec!["N1".into(), "N2".into()];
        let bogus = mixer::CompressedAttributes {
            strings: [(42_000, 1), (1, 42_000)].into(),
            string_maps: [
                (-1, mixer::StringMap { entries: [(-42, 0)].into() }),
                (-2, mixer::StringMap { entries: [(0, -42)].into() }),
            ]
            .into(),
            ..Default::default()
        };
        let (bag, problems) = decode_lenient(&bogus, &words);
        assert!(bag.is_empty());
        assert_eq!(problems.len(), 4);
    }

    #[test]
    fn a_word_in_both_lists_resolves() {
        let words: Vec<String> = vec!["source.ip".into(), "GOOD".into(), "BAD".into()];
        let message = mixer::CompressedAttributes { strings: [(-1, -2)].into(), ..Default::default() };
        assert_eq!(decode(&message, &words), Ok(MapBag::new().with("source.ip", text("GOOD"))));
        let edge = mixer::CompressedAttributes { strings: [(0, -2)].into(), ..Default::default() };
        assert_eq!(decode(&edge, &["N1".into(), "N2".into()]), Ok(MapBag::new().with("source.ip", text("N2"))));
    }

    #[test]
    fn uncompressed_attributes_round_trip() {
        let bag = proxy_attributes();
        assert_eq!(from_attributes(&to_attributes(&bag)), bag);
    }
}
