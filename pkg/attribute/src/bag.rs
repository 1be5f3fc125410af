//! Attribute bags: where an expression reads its attributes from, and the trackers that note what
//! it read. Mixer's `Check` answer tells the client which attributes (and which map keys) the
//! decision looked at, present or absent, so the client can cache the answer for every request
//! that agrees on exactly those; a [`Tracker`] is how the evaluator reports each lookup.

use std::collections::{BTreeMap, HashMap};

use crate::value::{OwnedValue, Value};

/// Something that holds attributes by name.
pub trait Bag: Send + Sync {
    /// The attribute's value, if the bag has it.
    fn get(&self, name: &str) -> Option<Value<'_>>;
}

/// What looking an attribute up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Absent,
    Found,
    /// A string map, whose keys are then tracked one by one.
    FoundMap,
}

/// Told of every lookup an evaluation makes.
pub trait Tracker: Send {
    /// `name` was looked up.
    fn attribute(&mut self, name: &str, lookup: Lookup);
    /// Key `key` of the map attribute `map` was looked up.
    fn map_key(&mut self, map: &str, key: &str, present: bool);
}

/// Tracks nothing: for evaluations whose references nobody needs (instances on the report path).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTracking;

impl Tracker for NoTracking {
    fn attribute(&mut self, _name: &str, _lookup: Lookup) {}
    fn map_key(&mut self, _map: &str, _key: &str, _present: bool) {}
}

/// Every lookup, by name: `name` or `map[key]`, with whether it was found (the last lookup wins).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Referenced {
    lookups: BTreeMap<String, bool>,
}

impl Referenced {
    /// The lookups as a sorted list, absent ones as `-name`.
    pub fn list(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .lookups
            .iter()
            .map(|(name, present)| if *present { name.clone() } else { format!("-{name}") })
            .collect();
        list.sort();
        list
    }

    /// Lookups of whole attributes: name → present.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, bool)> {
        self.lookups.iter().filter(|(name, _)| !name.ends_with(']')).map(|(name, present)| (name.as_str(), *present))
    }

    pub fn is_empty(&self) -> bool {
        self.lookups.is_empty()
    }
}

impl Tracker for Referenced {
    fn attribute(&mut self, name: &str, lookup: Lookup) {
        let present = lookup != Lookup::Absent;
        if let Some(found) = self.lookups.get_mut(name) {
            *found = present;
        } else {
            self.lookups.insert(name.to_string(), present);
        }
    }

    fn map_key(&mut self, map: &str, key: &str, present: bool) {
        self.lookups.insert(format!("{map}[{key}]"), present);
    }
}

/// A bag held in a map: what tests, `istioctl x mixer eval` and attribute producers build.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MapBag {
    /// Seeded, but much cheaper than SipHash for the short names every lookup hashes.
    values: HashMap<String, OwnedValue, foldhash::fast::RandomState>,
}

impl MapBag {
    pub fn new() -> MapBag {
        MapBag::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: OwnedValue) {
        self.values.insert(name.into(), value);
    }

    pub fn with(mut self, name: impl Into<String>, value: OwnedValue) -> MapBag {
        self.set(name, value);
        self
    }

    pub fn remove(&mut self, name: &str) -> Option<OwnedValue> {
        self.values.remove(name)
    }

    /// The stored value itself.
    pub fn get_value(&self, name: &str) -> Option<&OwnedValue> {
        self.values.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The attributes in name order.
    pub fn sorted(&self) -> Vec<(&str, &OwnedValue)> {
        let mut entries: Vec<_> = self.values.iter().map(|(name, value)| (name.as_str(), value)).collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// Copies every attribute of `other` over this bag's.
    pub fn merge(&mut self, other: &MapBag) {
        for (name, value) in &other.values {
            self.values.insert(name.clone(), value.clone());
        }
    }
}

impl Bag for MapBag {
    fn get(&self, name: &str) -> Option<Value<'_>> {
        self.values.get(name).map(Value::borrowed)
    }
}

/// Two bags as one: the first wins (Mixer's preprocessing output over the request's bag).
pub struct Layered<'a> {
    pub top: &'a dyn Bag,
    pub bottom: &'a dyn Bag,
}

impl Bag for Layered<'_> {
    fn get(&self, name: &str) -> Option<Value<'_>> {
        self.top.get(name).or_else(|| self.bottom.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_lists_sorted_with_absent_marked() {
        let mut referenced = Referenced::default();
        referenced.attribute("ar", Lookup::FoundMap);
        referenced.map_key("ar", "foo", false);
        referenced.attribute("ai", Lookup::Found);
        referenced.attribute("ai", Lookup::Absent);
        assert_eq!(referenced.list(), vec!["-ai", "-ar[foo]", "ar"]);
        assert_eq!(referenced.attributes().collect::<Vec<_>>(), vec![("ai", false), ("ar", true)]);
    }

    #[test]
    fn layered_bags_prefer_the_top() {
        let top = MapBag::new().with("a", Value::Int64(1));
        let bottom = MapBag::new().with("a", Value::Int64(2)).with("b", Value::Bool(true));
        let both = Layered { top: &top, bottom: &bottom };
        assert_eq!(both.get("a"), Some(Value::Int64(1)));
        assert_eq!(both.get("b"), Some(Value::Bool(true)));
        assert_eq!(both.get("c"), None);
    }
}
