//! A small least-recently-used map with a capacity, for the check and quota caches.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub(crate) struct Lru<V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<u64, (V, u64)>,
    order: BTreeMap<u64, u64>,
}

impl<V> Lru<V> {
    pub(crate) fn new(capacity: usize) -> Lru<V> {
        Lru { capacity, tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for `key`, marked as just used.
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.entries.get_mut(&key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key);
        Some(value)
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.entries.contains_key(&key)
    }

    /// Inserts (or replaces) an entry, evicting the least recently used beyond the capacity.
    pub(crate) fn insert(&mut self, key: u64, value: V) {
        if self.capacity == 0 {
            return;
        }
        self.remove(key);
        self.tick += 1;
        self.entries.insert(key, (value, self.tick));
        self.order.insert(self.tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.entries.remove(&oldest);
        }
    }

    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        let (value, used) = self.entries.remove(&key)?;
        self.order.remove(&used);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.insert(1, "a");
        lru.insert(2, "b");
        assert_eq!(lru.get_mut(1).copied(), Some("a"));
        lru.insert(3, "c");
        assert!(lru.contains(1) && lru.contains(3) && !lru.contains(2));
        assert_eq!(lru.entries.len(), 2);
        let mut off: Lru<&str> = Lru::new(0);
        off.insert(1, "a");
        assert!(!off.enabled() && off.get_mut(1).is_none());
    }
}
