//! Galley's Prometheus metrics, named as Istio 1.4's (`galley_validation_passed` and
//! `galley_validation_failed` without a `_total` suffix, as 1.4's Galley dashboard queries them;
//! `istio_mcp_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use istio_mcp::source::{CollectionLabel, SourceMetrics};
use istio_runtime::metrics::ExactCounter;
use istio_runtime::monitoring::SharedRegistry;

/// The resource an admission decision was about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResourceLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
}

/// A refused admission: the resource and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectionLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub reason: String,
}

/// Every metric Galley reports.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    /// Where per-collection gauges are registered as collections first appear.
    registry: SharedRegistry,
    /// `galley_istio_networking_virtualservices` and the like: objects served, per collection.
    collection_sizes: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Gauge>>>,
    pub validation_passed: Family<ResourceLabels, ExactCounter>,
    pub validation_failed: Family<RejectionLabels, ExactCounter>,
    pub invalid_source_objects: Family<CollectionLabel, Counter>,
    pub source_errors: Counter,
    pub snapshots_published: Counter,
    pub mcp: SourceMetrics,
}

impl Metrics {
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let shared = registry.clone();
        let mut registry = istio_runtime::sync::lock(registry);
        let metrics = Metrics { mcp: SourceMetrics::register(&mut registry), registry: shared, ..Metrics::default() };
        registry.register(
            "galley_validation_passed",
            "Objects the validation webhook admitted",
            metrics.validation_passed.clone(),
        );
        registry.register(
            "galley_validation_failed",
            "Objects the validation webhook rejected",
            metrics.validation_failed.clone(),
        );
        registry.register(
            "galley_source_invalid_objects",
            "Invalid objects found in the config source and not served",
            metrics.invalid_source_objects.clone(),
        );
        registry.register(
            "galley_source_errors",
            "Config source files that could not be read",
            metrics.source_errors.clone(),
        );
        registry.register(
            "galley_runtime_processor_snapshots_published",
            "MCP snapshots published",
            metrics.snapshots_published.clone(),
        );
        metrics
    }

    /// Records how many objects each collection of a published snapshot holds, under 1.4's
    /// names: `galley_` and the collection's path without its version
    /// (`istio/networking/v1alpha3/virtualservices` → `galley_istio_networking_virtualservices`).
    pub(crate) fn record_snapshot(&self, snapshot: &istio_mcp::collection::Snapshot) {
        let mut sizes = istio_runtime::sync::lock(&self.collection_sizes);
        for (name, collection) in &snapshot.collections {
            let gauge = sizes.entry(name.clone()).or_insert_with(|| {
                let gauge = Gauge::default();
                istio_runtime::sync::lock(&self.registry).register(
                    collection_metric(name),
                    format!("Objects Galley serves in {name}"),
                    gauge.clone(),
                );
                gauge
            });
            gauge.set(collection.resources.len() as i64);
        }
    }
}

/// 1.4's metric name for a collection's size.
fn collection_metric(collection: &str) -> String {
    let is_version =
        |segment: &&str| segment.starts_with('v') && segment[1..].chars().next().is_some_and(|c| c.is_ascii_digit());
    let parts: Vec<&str> = collection.split('/').filter(|segment| !is_version(segment)).collect();
    format!("galley_{}", parts.join("_").replace(['-', '.'], "_"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn collection_metric_names_are_1_4s() {
        assert_eq!(
            super::collection_metric("istio/networking/v1alpha3/virtualservices"),
            "galley_istio_networking_virtualservices"
        );
        assert_eq!(
            super::collection_metric("istio/authentication/v1alpha1/meshpolicies"),
            "galley_istio_authentication_meshpolicies"
        );
        assert_eq!(super::collection_metric("k8s/core/v1/endpoints"), "galley_k8s_core_endpoints");
    }
}
