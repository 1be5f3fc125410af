//! The accepted view of a config source, as Galley and Pilot both keep it: store events are
//! applied one by one, every Istio object is validated (an invalid one is logged and the last
//! good version of it stays), namespaced objects without a namespace land in `default`, and
//! changes are gathered into debounced batches. What a component builds from the view (MCP
//! snapshots, push contexts) is its own business.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::object::{Object, ObjectKey};
use crate::store::Event;
use crate::validation::object_violations;

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
    /// An Istio object failed validation and was not taken; its collection is given.
    Invalid {
        collection: &'static str,
    },
    /// A source could not be read; what it held before stays.
    SourceUnreadable,
}

/// The objects a component has accepted from its source.
pub struct AcceptedObjects {
    objects: BTreeMap<ObjectKey, Object>,
    synced: bool,
    validate: bool,
    keep_other: fn(&ObjectKey) -> bool,
}

impl AcceptedObjects {
    /// `validate`: check Istio objects (off when the source already did, like MCP from Galley).
    /// `keep_other`: which non-Istio objects to keep (Galley keeps synthetic-entry inputs).
    pub fn new(validate: bool, keep_other: fn(&ObjectKey) -> bool) -> Self {
        AcceptedObjects { objects: BTreeMap::new(), synced: false, validate, keep_other }
    }

    pub fn objects(&self) -> &BTreeMap<ObjectKey, Object> {
        &self.objects
    }

    /// Whether the source has delivered its initial state.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one event.
    pub fn apply(&mut self, event: Event) -> Applied {
        match event {
            Event::Added(mut object) | Event::Modified(mut object) => {
                object.default_namespace("default");
                let key = object.key();
                match object.istio_kind() {
                    Some(kind) => {
                        let violations = if self.validate { object_violations(&object) } else { Vec::new() };
                        if !violations.is_empty() {
                            let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
                            tracing::warn!(object = %object.display_name(), reasons = %reasons.join("; "), "invalid config not used; keeping the last good version");
                            return Applied::Invalid { collection: kind.collection };
                        }
                    }
                    None if !(self.keep_other)(&key) => return Applied::Unchanged,
                    None => {}
                }
                self.objects.insert(key, object);
                Applied::Changed
            }
            Event::Deleted(mut object) => {
                object.default_namespace("default");
                if self.objects.remove(&object.key()).is_some() {
                    Applied::Changed
                } else {
                    Applied::Unchanged
                }
            }
            Event::SourceError { source, line, message } => {
                tracing::warn!(%source, line, %message, "config source cannot be read; its objects keep their last good version");
                Applied::SourceUnreadable
            }
            Event::Synced if !self.synced => {
                self.synced = true;
                Applied::Changed
            }
            Event::Synced => Applied::Unchanged,
        }
    }
}

/// Waits for the next event and keeps taking events until `quiet` passes without one or `max`
/// has passed since the first; each goes to `apply`. Returns whether any of them changed
/// something, or `None` once the channel is closed.
pub async fn next_batch(
    events: &mut mpsc::UnboundedReceiver<Event>,
    quiet: Duration,
    max: Duration,
    apply: impl FnMut(Event) -> bool,
) -> Option<bool> {
    next_batch_observed(events, quiet, max, apply, |_| {}).await
}

/// What the debouncing of a batch did, as 1.4's Galley strategy counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debounce {
    /// An event arrived.
    Change,
    /// A later event pushed the quiet deadline back.
    TimerReset,
    /// The batch ended because nothing came for the quiet period.
    QuiesceReached,
    /// The batch ended because its maximum time passed.
    MaxTimeReached,
}

/// [`next_batch`], with the quiet period chosen by the batch's first event.
pub async fn next_batch_quiet_for(
    events: &mut mpsc::UnboundedReceiver<Event>,
    quiet_for: impl FnOnce(&Event) -> Duration,
    max: Duration,
    apply: impl FnMut(Event) -> bool,
) -> Option<bool> {
    let event = events.recv().await?;
    let quiet = quiet_for(&event);
    Some(rest_of_batch(event, events, quiet, max, apply, |_| {}).await)
}

/// [`next_batch`], telling `observe` what the debouncing did.
pub async fn next_batch_observed(
    events: &mut mpsc::UnboundedReceiver<Event>,
    quiet: Duration,
    max: Duration,
    apply: impl FnMut(Event) -> bool,
    observe: impl FnMut(Debounce),
) -> Option<bool> {
    let event = events.recv().await?;
    Some(rest_of_batch(event, events, quiet, max, apply, observe).await)
}

/// Applies `event` and the events after it until `quiet` passes without one or `max` has
/// passed; returns whether any of them changed something.
async fn rest_of_batch(
    event: Event,
    events: &mut mpsc::UnboundedReceiver<Event>,
    quiet: Duration,
    max: Duration,
    mut apply: impl FnMut(Event) -> bool,
    mut observe: impl FnMut(Debounce),
) -> bool {
    observe(Debounce::Change);
    let mut changed = apply(event);
    let first = Instant::now();
    loop {
        let quiet_until = Instant::now() + quiet;
        let deadline = quiet_until.min(first + max);
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                observe(Debounce::Change);
                if Instant::now() + quiet <= first + max {
                    observe(Debounce::TimerReset);
                }
                changed |= apply(event);
            }
            Ok(None) => return changed,
            Err(_) => {
                observe(if deadline < quiet_until { Debounce::MaxTimeReached } else { Debounce::QuiesceReached });
                return changed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(total_weight: i32) -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService", "metadata": {"name": "r"},
            "spec": {"hosts": ["r"], "http": [{"route": [
                {"destination": {"host": "r", "subset": "a"}, "weight": 50},
                {"destination": {"host": "r", "subset": "b"}, "weight": total_weight - 50}]}]}
        }))
        .expect("object")
    }

    #[test]
    fn keeps_the_last_good_version_and_defaults_the_namespace() {
        let mut accepted = AcceptedObjects::new(true, |_| false);
        assert_eq!(accepted.apply(Event::Added(vs(100))), Applied::Changed);
        assert_eq!(
            accepted.apply(Event::Modified(vs(90))),
            Applied::Invalid { collection: "istio/networking/v1alpha3/virtualservices" }
        );
        let (key, kept) = accepted.objects().iter().next().expect("kept");
        assert_eq!(key.namespace, "default");
        assert_eq!(kept.spec()["http"][0]["route"][1]["weight"], 50);
        assert_eq!(
            accepted.apply(Event::Added(Object::new("v1", "Service", Some("default"), "r"))),
            Applied::Unchanged
        );
        assert!(!accepted.synced());
        assert_eq!(accepted.apply(Event::Synced), Applied::Changed);
        assert_eq!(accepted.apply(Event::Synced), Applied::Unchanged);
        assert_eq!(accepted.apply(Event::Deleted(vs(100))), Applied::Changed);
        assert!(accepted.objects().is_empty());
    }

    #[tokio::test]
    async fn batches_end_when_quiet_or_closed() {
        let (sender, mut events) = mpsc::unbounded_channel();
        sender.send(Event::Synced).expect("send");
        sender.send(Event::Synced).expect("send");
        let mut seen = 0;
        let changed = next_batch(&mut events, Duration::from_millis(20), Duration::from_secs(1), |_| {
            seen += 1;
            seen == 1
        })
        .await;
        assert_eq!((changed, seen), (Some(true), 2));
        drop(sender);
        assert_eq!(next_batch(&mut events, Duration::from_millis(20), Duration::from_secs(1), |_| true).await, None);
    }
}
