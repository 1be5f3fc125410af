//! Per-stream xDS state that most proxies share, kept once. Thousands of sidecars subscribe to
//! the same endpoint and route names and were last sent the same resources; each stream holds an
//! `Arc` to the one interned copy instead of its own. Entries live as long as some stream uses
//! them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use istio_config::hash::fnv1a64;

/// Interned values of one kind, found by a content hash and confirmed by equality.
pub(crate) struct Pool<T> {
    entries: Mutex<HashMap<u64, Weak<T>>>,
}

impl<T: PartialEq> Pool<T> {
    fn new() -> Self {
        Pool { entries: Mutex::new(HashMap::new()) }
    }

    /// The shared copy of `value` (whose content hash is `key`), adding it when new.
    pub(crate) fn intern(&self, key: u64, value: T) -> Arc<T> {
        let mut entries = istio_runtime::sync::lock(&self.entries);
        if let Some(existing) = entries.get(&key).and_then(Weak::upgrade) {
            if *existing == value {
                return existing;
            }
        }
        let shared = Arc::new(value);
        entries.insert(key, Arc::downgrade(&shared));
        // Forget values no stream holds any more, now and then.
        if entries.len().is_power_of_two() && entries.len() >= 1024 {
            entries.retain(|_, weak| weak.strong_count() > 0);
        }
        shared
    }
}

/// The hash of a resource name, as the sent-state maps key them.
pub(crate) fn name_key(name: &str) -> u64 {
    fnv1a64(name.bytes())
}

/// Resource names a stream subscribed to.
pub(crate) type Names = Arc<Vec<String>>;
/// Content hash of every resource last sent to a stream, by name key.
pub(crate) type Sent = Arc<HashMap<u64, u64>>;

static NAME_LISTS: LazyLock<Pool<Vec<String>>> = LazyLock::new(Pool::new);
static SENT_STATES: LazyLock<Pool<HashMap<u64, u64>>> = LazyLock::new(Pool::new);

/// The shared copy of a subscription's names.
pub(crate) fn names(names: Vec<String>) -> Names {
    let key = fnv1a64(names.iter().flat_map(|name| name.bytes().chain([0])));
    NAME_LISTS.intern(key, names)
}

/// The shared copy of a sent state.
pub(crate) fn sent(state: HashMap<u64, u64>) -> Sent {
    // Order-independent: a map iterates in no fixed order.
    let key = state.iter().fold(0_u64, |acc, (name, hash)| {
        acc.wrapping_add(fnv1a64(name.to_le_bytes().into_iter().chain(hash.to_le_bytes())))
    });
    SENT_STATES.intern(key, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_and_different_ones_do_not() {
        let a = names(vec!["outbound|9080||reviews".into(), "outbound|9080|v1|reviews".into()]);
        let b = names(vec!["outbound|9080||reviews".into(), "outbound|9080|v1|reviews".into()]);
        let c = names(vec!["outbound|9080||ratings".into()]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));

        let first = sent(HashMap::from([(name_key("x"), 1), (name_key("y"), 2)]));
        let same = sent(HashMap::from([(name_key("y"), 2), (name_key("x"), 1)]));
        let changed = sent(HashMap::from([(name_key("x"), 1), (name_key("y"), 3)]));
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(changed[&name_key("y")], 3);
    }
}
