//! Galley's Prometheus metrics, named after Istio 1.4's (`galley_validation_*`, `istio_mcp_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use istio_mcp::source::{CollectionLabel, SourceMetrics};
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
    pub validation_passed: Family<ResourceLabels, Counter>,
    pub validation_failed: Family<RejectionLabels, Counter>,
    pub invalid_source_objects: Family<CollectionLabel, Counter>,
    pub source_errors: Counter,
    pub snapshots_published: Counter,
    pub mcp: SourceMetrics,
}

impl Metrics {
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let mut registry = istio_runtime::sync::lock(registry);
        let metrics = Metrics { mcp: SourceMetrics::register(&mut registry), ..Metrics::default() };
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
}
