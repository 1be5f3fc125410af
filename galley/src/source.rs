//! Turns the config source's events into published MCP snapshots. Every Istio object is
//! validated as it arrives: a valid one replaces the previous version; an invalid one is logged
//! with its reason, counted, and not served, while the last good version of that object stays.
//! Changes are debounced (100 ms of quiet, at most 1 s) before a new snapshot is published.
//! Kubernetes Ingresses the mesh config takes are served as the Gateways and VirtualServices
//! 1.4 converted them to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use istio_api::kinds;
use istio_config::accepted::{next_batch_observed, AcceptedObjects, Applied, Debounce};
use istio_config::kube_ingress::IngressSettings;
use istio_config::store::Event;
use tokio::sync::{mpsc, watch};

use istio_mcp::collection::{Collection, Snapshot};
use istio_mcp::source::CollectionLabel;

use crate::analysis::Analysis;
use crate::metrics::Metrics;
use crate::snapshot;
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

/// Applies an event to the accepted view, counting what was refused.
fn apply(accepted: &mut AcceptedObjects, event: Event, metrics: &Metrics) -> bool {
    match accepted.apply(event) {
        Applied::Changed => true,
        Applied::Unchanged => false,
        Applied::Invalid { collection } => {
            metrics.invalid_source_objects.get_or_create(&CollectionLabel { collection: collection.to_string() }).inc();
            false
        }
        Applied::SourceUnreadable => {
            metrics.source_errors.inc();
            false
        }
    }
}

/// What the mesh config says of Kubernetes Ingresses.
pub(crate) fn ingress_settings(settings: &SnapshotSettings) -> IngressSettings {
    IngressSettings::from_mesh_config(&settings.mesh_config, &settings.domain_suffix)
}

/// Kubernetes objects kept beside Istio's: synthetic service entries' inputs, Ingresses, and
/// Namespaces (which analysis reads).
fn kept_kubernetes_input(key: &istio_config::object::ObjectKey) -> bool {
    synthetic::is_core_input(key)
        || istio_config::kube_ingress::is_ingress(key)
        || (key.group.is_empty() && key.kind == "Namespace")
}

/// The MCP snapshot of an accepted view.
fn build_snapshot(accepted: &AcceptedObjects, generation: u64, settings: &SnapshotSettings) -> Snapshot {
    let objects = accepted.objects();
    let from_ingresses = istio_config::kube_ingress::convert(objects.values(), &ingress_settings(settings));
    // Converted objects first, so a user's object of the same name wins.
    let mut collections = snapshot::istio_collections(from_ingresses.iter().chain(objects.values()));
    collections.insert(
        kinds::SYNTHETIC_SERVICE_ENTRIES.to_string(),
        Arc::new(synthetic::collection(objects.values(), &settings.domain_suffix, &settings.trust_domain)),
    );
    let mut mesh = BTreeMap::new();
    match istio_mcp::resource::encode_body(kinds::MESH_CONFIG_PROTO, &settings.mesh_config) {
        Ok(body) => {
            let metadata = istio_api::pb::istio::mcp::v1alpha1::Metadata {
                name: "istio-system/meshconfig".to_string(),
                version: istio_config::hash::fnv1a64_hex(body.value.iter().copied()),
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

/// Consumes `events` until the channel closes, publishing snapshots on `publish`. Nothing is
/// published before the source has delivered its initial state. With `analysis`, each
/// published state is also analysed.
pub(crate) async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    publish: watch::Sender<Arc<Snapshot>>,
    settings: SnapshotSettings,
    metrics: Metrics,
    analysis: Option<Arc<Analysis>>,
) {
    let mut accepted = AcceptedObjects::new(true, kept_kubernetes_input);
    let mut generation = 0;
    // Events taken since the last published snapshot.
    let mut pending_events = 0u64;
    while let Some(changed) = next_batch_observed(
        &mut events,
        settings.debounce_after,
        settings.debounce_max,
        |event| {
            metrics.events_processed.inc();
            pending_events += 1;
            apply(&mut accepted, event, &metrics)
        },
        |debounce| {
            match debounce {
                Debounce::Change => &metrics.strategy_on_change,
                Debounce::TimerReset => &metrics.strategy_timer_resets,
                Debounce::QuiesceReached => &metrics.strategy_quiesce_reached,
                Debounce::MaxTimeReached => &metrics.strategy_max_time_reached,
            }
            .inc();
        },
    )
    .await
    {
        if changed && accepted.synced() {
            generation += 1;
            tracing::debug!(generation, "publishing MCP snapshot");
            metrics.snapshots_published.inc();
            metrics.snapshot_events.observe(pending_events as f64);
            pending_events = 0;
            let snapshot = build_snapshot(&accepted, generation, &settings);
            metrics.record_snapshot(&snapshot);
            publish.send_replace(Arc::new(snapshot));
            if let Some(analysis) = &analysis {
                analysis.run(accepted.objects().values());
            }
        }
    }
}
