//! State-of-the-world decisions shared within one push context.
//!
//! Thousands of streams are in the same state for a type: proxies that get the same resources
//! for the same names, subscribed to the same names (interned, so equal lists are one `Arc`) and
//! last sent the same resources (interned too). What such a stream is sent next is worked out
//! once per push context and reused by every stream in that state, so a push costs each of them
//! a lookup instead of a pass over every name it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::intern::{Names, Sent};

/// What a stream is sent for one type: the chosen resources' shared encodings, and what the
/// proxy holds once it has them.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) entries: Vec<Bytes>,
    pub(crate) holds: Holds,
}

/// What a proxy holds of one type, as far as the next push needs to know.
#[derive(Debug, Clone)]
pub(crate) enum Holds {
    /// Each resource's hash, by name: EDS and RDS responses may carry only what changed.
    Each(Sent),
    /// The fingerprint of the whole set: a CDS or LDS response always carries all of it.
    Whole(u64),
}

/// A stream's state for one type. The lists are named by address, which stays theirs while the
/// entry holding them lives.
#[derive(PartialEq, Eq, Hash)]
struct StateKey {
    type_url: String,
    /// What the proxy's resources depend on besides the names (its locality, its routes' scope).
    context: String,
    /// Everything is sent (the proxy asked), not only what changed.
    everything: bool,
    names: usize,
    sent: usize,
}

struct Entry {
    _names: Names,
    _sent: Sent,
    decision: Arc<Option<Decision>>,
}

/// The decisions taken so far in one push context.
#[derive(Default)]
pub(crate) struct SotwMemo {
    entries: Mutex<HashMap<StateKey, Entry>>,
}

impl std::fmt::Debug for SotwMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SotwMemo({} states)", istio_runtime::sync::lock(&self.entries).len())
    }
}

impl SotwMemo {
    /// The decision for a stream in this state, taking it with `decide` the first time.
    pub(crate) fn get_or_decide(
        &self,
        type_url: &str,
        context: String,
        everything: bool,
        (names, sent): (&Names, &Sent),
        decide: impl FnOnce() -> Option<Decision>,
    ) -> Arc<Option<Decision>> {
        let key = StateKey {
            type_url: type_url.to_string(),
            context,
            everything,
            names: Arc::as_ptr(names) as usize,
            sent: Arc::as_ptr(sent) as usize,
        };
        if let Some(entry) = istio_runtime::sync::lock(&self.entries).get(&key) {
            return entry.decision.clone();
        }
        // Decided outside the lock; two streams racing may both decide, and either is right.
        let decision = Arc::new(decide());
        let entry = Entry { _names: names.clone(), _sent: sent.clone(), decision };
        istio_runtime::sync::lock(&self.entries).entry(key).or_insert(entry).decision.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_in_one_state_share_a_decision_and_other_states_do_not() {
        let memo = SotwMemo::default();
        let names = super::super::intern::names(vec!["outbound|80||a".into()]);
        let other_names = super::super::intern::names(vec!["outbound|80||b".into()]);
        let sent = super::super::intern::sent(HashMap::new());
        let decided = std::cell::Cell::new(0);
        let decide = || {
            decided.set(decided.get() + 1);
            Some(Decision { entries: vec![Bytes::from_static(b"x")], holds: Holds::Each(sent.clone()) })
        };
        let first = memo.get_or_decide("eds", String::new(), false, (&names, &sent), decide);
        let again = memo.get_or_decide("eds", String::new(), false, (&names, &sent), decide);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(decided.get(), 1);
        memo.get_or_decide("eds", String::new(), false, (&other_names, &sent), decide);
        memo.get_or_decide("eds", "region1/zone1|default".into(), false, (&names, &sent), decide);
        memo.get_or_decide("eds", String::new(), true, (&names, &sent), decide);
        memo.get_or_decide("rds", String::new(), false, (&names, &sent), decide);
        assert_eq!(decided.get(), 5, "names, context, reason and type each make another state");
    }
}
