//! `ReferencedAttributes`: which attributes (and which keys of map attributes) a `Check` decision
//! looked at, each present (`EXACT`) or absent (`ABSENCE`).
//!
//! Mixer records them while evaluating ([`Recorder`], a [`Tracker`]) and sends them encoded with
//! the caller's dictionary. A client turns them into a cache key ([`Shape`]): two requests that
//! agree on every referenced attribute's value and presence get the same answer, so the second
//! need not ask.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use istio_api::pb::istio::mixer::v1 as mixer;
use mixer::referenced_attributes::{AttributeMatch, Condition};

use crate::bag::{Lookup, MapBag, Tracker};
use crate::dictionary::{global_words, lookup, MessageDictionary};
use crate::value::Value;

/// What Mixer's evaluations looked at: `(attribute, map key)` → present.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorder {
    matches: BTreeMap<(String, Option<String>), bool>,
}

impl Tracker for Recorder {
    fn attribute(&mut self, name: &str, lookup: Lookup) {
        // A map's own presence is said by its keys.
        if lookup != Lookup::FoundMap {
            self.matches.insert((name.to_string(), None), lookup == Lookup::Found);
        }
    }

    fn map_key(&mut self, map: &str, key: &str, present: bool) {
        self.matches.insert((map.to_string(), Some(key.to_string())), present);
    }
}

impl Recorder {
    pub fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// The wire form, using only the first `global_word_count` global words (the caller's).
    pub fn to_proto(&self, global_word_count: usize) -> mixer::ReferencedAttributes {
        let mut dictionary = MessageDictionary::with_global_word_count(global_word_count);
        let attribute_matches = self
            .matches
            .iter()
            .map(|((name, key), present)| AttributeMatch {
                name: dictionary.index(name),
                condition: if *present { Condition::Exact } else { Condition::Absence } as i32,
                regex: String::new(),
                map_key: key.as_deref().map_or(0, |key| dictionary.index(key)),
            })
            .collect();
        mixer::ReferencedAttributes { words: dictionary.into_words(), attribute_matches }
    }

    /// `name` or `map[key]`, present or absent (`-name`), sorted as text.
    pub fn list(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .matches
            .iter()
            .map(|((name, key), present)| {
                let entry = key.as_ref().map_or_else(|| name.clone(), |key| format!("{name}[{key}]"));
                if *present {
                    entry
                } else {
                    format!("-{entry}")
                }
            })
            .collect();
        list.sort();
        list
    }
}

/// Referenced attributes a client cannot use (the answer is then not cached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("global word index is too big: {index} >= {size}")]
    GlobalIndex { index: i32, size: usize },
    #[error("per message word index is too big: {index} >= {size}")]
    MessageIndex { index: i32, size: usize },
    #[error("a REGEX attribute match is not supported")]
    Regex,
}

/// The set of attributes a decision depended on, as a client keeps it to key its cache:
/// names (with map keys) that must be absent, and names whose values form the key.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    absent: Vec<(String, String)>,
    exact: Vec<(String, String)>,
}

impl Shape {
    /// Reads a `ReferencedAttributes` against the request it answered. A map key is read only
    /// when the request holds that attribute as a map.
    pub fn from_proto(referenced: &mixer::ReferencedAttributes, request: &MapBag) -> Result<Shape, ShapeError> {
        let word = |index: i32| -> Result<String, ShapeError> {
            lookup(index, &referenced.words).map(str::to_string).map_err(|_| {
                if index >= 0 {
                    ShapeError::GlobalIndex { index, size: global_words().len() }
                } else {
                    ShapeError::MessageIndex { index, size: referenced.words.len() }
                }
            })
        };
        let mut shape = Shape::default();
        for matched in &referenced.attribute_matches {
            let name = word(matched.name)?;
            let key = match request.get_value(&name) {
                Some(Value::StringMap(_)) => word(matched.map_key)?,
                _ => String::new(),
            };
            match Condition::try_from(matched.condition) {
                Ok(Condition::Absence) => shape.absent.push((name, key)),
                Ok(Condition::Exact) => shape.exact.push((name, key)),
                Ok(Condition::Regex) => return Err(ShapeError::Regex),
                _ => {}
            }
        }
        shape.absent.sort();
        shape.exact.sort();
        Ok(shape)
    }

    /// The cache key of `request` under this shape, or `None` when the request contradicts it
    /// (an attribute that must be absent is there, or one the key needs is missing).
    /// `extra` tells keys of different caches apart (the quota name).
    pub fn signature(&self, request: &MapBag, extra: &str) -> Option<u64> {
        for (name, key) in &self.absent {
            match request.get_value(name) {
                Some(Value::StringMap(map)) if !key.is_empty() && map.contains_key(key) => return None,
                None | Some(Value::StringMap(_)) => {}
                Some(_) => return None,
            }
        }
        let mut hasher = DefaultHasher::new();
        for (name, key) in &self.exact {
            let value = request.get_value(name)?;
            name.hash(&mut hasher);
            match value {
                Value::StringMap(map) => {
                    if !key.is_empty() {
                        let entry = map.get(key)?;
                        key.hash(&mut hasher);
                        entry.hash(&mut hasher);
                    }
                }
                other => hash_value(other, &mut hasher),
            }
        }
        extra.hash(&mut hasher);
        Some(hasher.finish())
    }
}

fn hash_value(value: &Value<'_>, hasher: &mut DefaultHasher) {
    match value {
        Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => text.hash(hasher),
        Value::Int64(value) | Value::Duration(value) => value.hash(hasher),
        Value::Double(value) => value.to_bits().hash(hasher),
        Value::Bool(value) => value.hash(hasher),
        Value::Timestamp(at) => at.hash(hasher),
        Value::IpAddress(bytes) | Value::Bytes(bytes) => bytes.hash(hasher),
        Value::StringMap(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort();
            entries.hash(hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::dictionary::global_index;

    fn map(entries: &[(&str, &str)]) -> Value<'static> {
        Value::StringMap(Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn text(value: &str) -> Value<'static> {
        Value::String(Cow::Owned(value.to_string()))
    }

    #[test]
    fn a_recording_round_trips_through_the_wire_form() {
        // 1.4.6's reference-tracking case: two strings read, one unknown name, a map read for a
        // present and an absent key; a map's own presence is not a match.
        let mut recorder = Recorder::default();
        recorder.attribute("source.ip", Lookup::Found);
        recorder.attribute("N1", Lookup::Found);
        recorder.attribute("XX", Lookup::Absent);
        recorder.attribute("request.headers", Lookup::FoundMap);
        recorder.map_key("request.headers", "source.name", true);
        recorder.map_key("request.headers", "YY", false);
        let proto = recorder.to_proto(222);
        assert_eq!(proto.attribute_matches.len(), 5);
        let request = MapBag::new()
            .with("source.ip", Value::Bytes(Cow::Owned(vec![1, 2, 3, 4])))
            .with("N1", text("G0"))
            .with("request.headers", map(&[("source.name", "x")]));
        let shape = Shape::from_proto(&proto, &request).expect("fills");
        assert_eq!(
            shape.absent,
            [("XX".to_string(), String::new()), ("request.headers".to_string(), "YY".to_string())]
        );
        assert_eq!(shape.exact.len(), 3);
        assert!(shape.signature(&request, "").is_some());
    }

    #[test]
    fn a_smaller_word_count_moves_names_into_the_message() {
        let mut recorder = Recorder::default();
        recorder.attribute("source.port", Lookup::Found);
        let proto = recorder.to_proto(1);
        assert_eq!(proto.words, ["source.port"]);
        assert_eq!(proto.attribute_matches[0].name, -1);
        assert_eq!(recorder.to_proto(222).attribute_matches[0].name, global_index("source.port").expect("global"));
    }

    #[test]
    fn bad_indices_and_regexes_make_no_shape() {
        let request = MapBag::new();
        let exact = |name: i32| AttributeMatch { name, condition: Condition::Exact as i32, ..Default::default() };
        let proto = mixer::ReferencedAttributes { words: vec![], attribute_matches: vec![exact(10_000)] };
        assert_eq!(Shape::from_proto(&proto, &request), Err(ShapeError::GlobalIndex { index: 10_000, size: 222 }));
        let proto =
            mixer::ReferencedAttributes { words: vec!["a".into(), "b".into()], attribute_matches: vec![exact(-10)] };
        assert_eq!(Shape::from_proto(&proto, &request), Err(ShapeError::MessageIndex { index: -10, size: 2 }));
        let regex = AttributeMatch { name: 0, condition: Condition::Regex as i32, ..Default::default() };
        let proto = mixer::ReferencedAttributes { words: vec![], attribute_matches: vec![regex] };
        assert_eq!(Shape::from_proto(&proto, &request), Err(ShapeError::Regex));
    }

    #[test]
    fn string_map_keys_decide_compatibility() {
        // 1.4.6's string-map case: map-key1 exact; map-key2 keys 4 and 5 exact, 6 and 7 absent;
        // map-key3 absent.
        let words: Vec<String> = [
            "map-key1",
            "map-key2",
            "map-key3",
            "exact-subkey4",
            "exact-subkey5",
            "absence-subkey6",
            "absence-subkey7",
        ]
        .iter()
        .map(|word| word.to_string())
        .collect();
        let entry = |name: i32, key: i32, condition: Condition| AttributeMatch {
            name,
            map_key: key,
            condition: condition as i32,
            regex: String::new(),
        };
        let proto = mixer::ReferencedAttributes {
            words,
            attribute_matches: vec![
                entry(-1, 0, Condition::Exact),
                entry(-2, -4, Condition::Exact),
                entry(-2, -5, Condition::Exact),
                entry(-2, -6, Condition::Absence),
                entry(-2, -7, Condition::Absence),
                entry(-3, 0, Condition::Absence),
            ],
        };
        let good = MapBag::new()
            .with("map-key1", text("string"))
            .with("map-key2", map(&[("subkey3", "x"), ("exact-subkey4", "y"), ("exact-subkey5", "z")]));
        let shape = Shape::from_proto(&proto, &good).expect("fills");
        assert!(shape.signature(&good, "").is_some());
        let mut with_absent = good.clone();
        with_absent.set("map-key3", text("here"));
        assert_eq!(shape.signature(&with_absent, ""), None);
        let mut without_exact = good.clone();
        without_exact.remove("map-key1");
        assert_eq!(shape.signature(&without_exact, ""), None);
        let mut absent_key_present = good.clone();
        absent_key_present
            .set("map-key2", map(&[("exact-subkey4", "y"), ("exact-subkey5", "z"), ("absence-subkey6", "!")]));
        assert_eq!(shape.signature(&absent_key_present, ""), None);
        let mut exact_key_missing = good.clone();
        exact_key_missing.set("map-key2", map(&[("exact-subkey5", "z")]));
        assert_eq!(shape.signature(&exact_key_missing, ""), None);
    }

    #[test]
    fn keys_differ_by_value_and_by_extra_key_only() {
        let mut recorder = Recorder::default();
        recorder.attribute("target.service", Lookup::Found);
        let first = MapBag::new().with("target.service", text("a")).with("other", Value::Int64(1));
        let shape = Shape::from_proto(&recorder.to_proto(222), &first).expect("fills");
        let same = MapBag::new().with("target.service", text("a")).with("other", Value::Int64(2));
        let different = MapBag::new().with("target.service", text("b"));
        assert_eq!(shape.signature(&first, ""), shape.signature(&same, ""));
        assert_ne!(shape.signature(&first, ""), shape.signature(&different, ""));
        assert_ne!(shape.signature(&first, ""), shape.signature(&first, "RequestCount"));
    }
}
