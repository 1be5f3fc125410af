//! Turns the config source's events into published MCP snapshots. Every Istio object is
//! validated as it arrives: a valid one replaces the previous version; an invalid one is logged
//! with its reason, counted, and not served, while the last good version of that object stays.
//! Changes are debounced (100 ms of quiet, at most 1 s) before a new snapshot is published.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use istio_api::kinds;
use istio_config::object::{Object, ObjectKey};
use istio_config::store::Event;
use istio_config::validation::object_violations;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::metrics::{labels, Metrics};
use crate::snapshot::{self, Collection, Snapshot};
use crate::synthetic;

/// How snapshots are built.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub domain_suffix: String,
    pub trust_domain: String,
    /// The mesh config served under `istio/mesh/v1alpha1/MeshConfig`, as JSON.
    pub mesh_config: serde_json::Value,
    /// Quiet time before publishing.
    pub debounce_after: Duration,
    /// Longest a change waits while more keep arriving.
    pub debounce_max: Duration,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        SnapshotSettings {
            domain_suffix: "cluster.local".to_string(),
            trust_domain: "cluster.local".to_string(),
            mesh_config: serde_json::json!({}),
            debounce_after: Duration::from_millis(100),
            debounce_max: Duration::from_secs(1),
        }
    }
}

/// The accepted view of the source.
#[derive(Default)]
struct Accepted {
    objects: BTreeMap<ObjectKey, Object>,
    synced: bool,
}

impl Accepted {
    /// Applies one event; returns whether the accepted view changed.
    fn apply(&mut self, event: Event, metrics: &Metrics) -> bool {
        match event {
            Event::Added(mut object) | Event::Modified(mut object) => {
                object.default_namespace("default");
                let key = object.key();
                if let Some(kind) = object.istio_kind() {
                    let violations = object_violations(&object);
                    if !violations.is_empty() {
                        let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
                        tracing::warn!(object = %object.display_name(), reasons = %reasons.join("; "), "invalid config not served; keeping the last good version");
                        metrics.invalid_source_objects.get_or_create(&labels(&[("collection", kind.collection)])).inc();
                        return false;
                    }
                } else if !synthetic::is_core_input(&key) {
                    return false;
                }
                self.objects.insert(key, object);
                true
            }
            Event::Deleted(mut object) => {
                object.default_namespace("default");
                self.objects.remove(&object.key()).is_some()
            }
            Event::SourceError { source, line, message } => {
                tracing::warn!(%source, line, %message, "config source cannot be read; its objects keep their last good version");
                metrics.source_errors.inc();
                false
            }
            Event::Synced => {
                let first = !self.synced;
                self.synced = true;
                first
            }
        }
    }

    fn snapshot(&self, generation: u64, settings: &SnapshotSettings) -> Snapshot {
        let mut collections = snapshot::istio_collections(self.objects.values());
        collections.insert(
            kinds::SYNTHETIC_SERVICE_ENTRIES.to_string(),
            Arc::new(synthetic::collection(self.objects.values(), &settings.domain_suffix, &settings.trust_domain)),
        );
        let mut mesh = BTreeMap::new();
        match snapshot::encode_body(kinds::MESH_CONFIG_PROTO, &settings.mesh_config) {
            Ok(body) => {
                let metadata = istio_api::pb::istio::mcp::v1alpha1::Metadata {
                    name: "istio-system/meshconfig".to_string(),
                    version: snapshot::content_hash(body.value.iter().copied()),
                    ..Default::default()
                };
                mesh.insert(
                    metadata.name.clone(),
                    istio_api::pb::istio::mcp::v1alpha1::Resource { metadata: Some(metadata), body: Some(body) },
                );
            }
            Err(error) => tracing::warn!(%error, "mesh config cannot be encoded; not served"),
        }
        collections.insert(kinds::MESH_CONFIG.to_string(), Arc::new(Collection::new(mesh)));
        Snapshot { generation, collections }
    }
}

/// Consumes `events` until the channel closes, publishing snapshots on `publish`. Nothing is
/// published before the source has delivered its initial state.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    publish: watch::Sender<Arc<Snapshot>>,
    settings: SnapshotSettings,
    metrics: Metrics,
) {
    let mut accepted = Accepted::default();
    let mut generation = 0;
    while let Some(event) = events.recv().await {
        let mut changed = accepted.apply(event, &metrics);
        let first_change = Instant::now();
        // Debounce: keep absorbing events until things are quiet or the change is old enough.
        loop {
            let deadline = (Instant::now() + settings.debounce_after).min(first_change + settings.debounce_max);
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => changed |= accepted.apply(event, &metrics),
                Ok(None) | Err(_) => break,
            }
        }
        if changed && accepted.synced {
            generation += 1;
            let snapshot = accepted.snapshot(generation, &settings);
            tracing::debug!(generation, "publishing MCP snapshot");
            metrics.snapshots_published.inc();
            publish.send_replace(Arc::new(snapshot));
        }
    }
}
