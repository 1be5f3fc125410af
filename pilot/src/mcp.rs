//! Pilot as an MCP sink of Galley: subscribes to the networking and authentication collections (and the synthetic
//! ServiceEntries Galley builds from Kubernetes) and turns what arrives into store events for the
//! same pipeline the directory source feeds. The sink itself (ACKs, NACKs, reconnecting with
//! backoff while the last config keeps serving) is `istio-mcp`'s.

use std::collections::HashSet;

use istio_api::kinds;
use istio_api::pb::istio::mcp::v1alpha1::Resources;
use istio_config::store::Event;
use istio_mcp::sink::{ObjectChange, ObjectCollections, Rejected, Sink, Subscription};
use tokio::sync::mpsc;

/// The collections Pilot consumes.
pub(crate) fn collections() -> Vec<&'static str> {
    let mut collections: Vec<&'static str> = [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "Sidecar",
        "EnvoyFilter",
        "Policy",
        "MeshPolicy",
        "AuthorizationPolicy",
        "ServiceRole",
        "ServiceRoleBinding",
        "ClusterRbacConfig",
        "RbacConfig",
        "QuotaSpec",
        "QuotaSpecBinding",
    ]
    .iter()
    .filter_map(|kind| kinds::by_name(kind))
    .map(|kind| kind.collection)
    .collect();
    collections.push(kinds::SYNTHETIC_SERVICE_ENTRIES);
    collections
}

/// Feeds MCP responses to Pilot's config pipeline as store events; `Synced` once every
/// collection has answered.
struct StoreEventSink {
    events: mpsc::UnboundedSender<Event>,
    held: ObjectCollections,
    waiting: HashSet<String>,
}

impl Sink for StoreEventSink {
    fn apply(&mut self, response: &Resources) -> Result<(), Rejected> {
        let mut applied = self.held.apply(response);
        for change in std::mem::take(&mut applied.changes) {
            let event = match change {
                ObjectChange::Added(object) => Event::Added(object),
                ObjectChange::Modified(object) => Event::Modified(object),
                ObjectChange::Removed(object) => Event::Deleted(object),
            };
            let _ = self.events.send(event);
        }
        if self.waiting.remove(&response.collection) && self.waiting.is_empty() {
            let _ = self.events.send(Event::Synced);
        }
        applied.outcome()
    }

    fn wants_updates(&self) -> bool {
        !self.events.is_closed()
    }
}

/// Runs the sink until `events` is closed.
pub(crate) async fn run(address: String, events: mpsc::UnboundedSender<Event>, metrics: istio_mcp::sink::SinkMetrics) {
    let wanted: Vec<String> = collections().into_iter().map(str::to_string).collect();
    let sink = StoreEventSink { events, held: ObjectCollections::default(), waiting: wanted.iter().cloned().collect() };
    let subscription = Subscription { sink_id: "pilot".to_string(), collections: wanted, incremental: false };
    istio_mcp::sink::run(address, subscription, sink, metrics).await;
}
