//! Galley's Prometheus metrics, named after Istio 1.4's (`galley_validation_*`, `istio_mcp_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use istio_runtime::monitoring::SharedRegistry;

type Labels = Vec<(String, String)>;

/// Every metric Galley reports.
#[derive(Clone, Default)]
pub struct Metrics {
    pub validation_passed: Family<Labels, Counter>,
    pub validation_failed: Family<Labels, Counter>,
    pub invalid_source_objects: Family<Labels, Counter>,
    pub source_errors: Counter,
    pub snapshots_published: Counter,
    pub mcp_clients: Gauge,
    pub mcp_acks: Family<Labels, Counter>,
    pub mcp_nacks: Family<Labels, Counter>,
}

impl Metrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let metrics = Metrics::default();
        let mut registry = registry.lock().unwrap_or_else(|poison| poison.into_inner());
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
        registry.register("istio_mcp_clients", "Connected MCP sinks", metrics.mcp_clients.clone());
        registry.register("istio_mcp_request_acks", "MCP responses sinks accepted", metrics.mcp_acks.clone());
        registry.register("istio_mcp_request_nacks", "MCP responses sinks rejected", metrics.mcp_nacks.clone());
        metrics
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(key, value)| ((*key).to_string(), (*value).to_string())).collect()
}
