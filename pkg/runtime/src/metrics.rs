//! Metric pieces every component's monitoring port shares, so that Istio 1.4's dashboards'
//! queries work unchanged: a counter exposed under exactly the name 1.4 gave it (1.4's
//! OpenCensus and Go-client counters often had no `_total` suffix, which prometheus-client
//! would add), `istio_build{component, tag}`, and the process's `process_*` metrics (CPU
//! seconds, resident and virtual memory, open file descriptors) from the `prometheus` crate's
//! process collector.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A counter exposed as `name value`, without the `_total` suffix prometheus-client would add.
#[derive(Debug, Clone, Default)]
pub struct ExactCounter(Counter);

impl ExactCounter {
    /// Adds one; returns the value before.
    pub fn inc(&self) -> u64 {
        self.0.inc()
    }

    /// Adds `amount`; returns the value before.
    pub fn inc_by(&self, amount: u64) -> u64 {
        self.0.inc_by(amount)
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for ExactCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ExactCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // A gauge's encoding writes the name as it is; the type line still says counter.
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The process's own metrics in the Prometheus text format (empty where /proc is missing).
pub fn process_metrics() -> String {
    use prometheus::core::Collector;
    use prometheus::Encoder;
    let families = prometheus::process_collector::ProcessCollector::for_self().collect();
    let mut text = Vec::new();
    if let Err(error) = prometheus::TextEncoder::new().encode(&families, &mut text) {
        tracing::debug!(%error, "cannot encode process metrics");
    }
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[test]
    fn exact_counters_keep_their_names() {
        let mut registry = Registry::default();
        let plain = ExactCounter::default();
        let family: Family<Vec<(String, String)>, ExactCounter> = Family::default();
        registry.register("citadel_server_csr_count", "CSRs", plain.clone());
        registry.register("galley_validation_passed", "admitted", family.clone());
        plain.inc_by(3);
        family.get_or_create(&vec![("resource".into(), "gateways".into())]).inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("# TYPE citadel_server_csr_count counter\ncitadel_server_csr_count 3\n"), "{text}");
        assert!(text.contains("galley_validation_passed{resource=\"gateways\"} 1\n"), "{text}");
        assert!(!text.contains("_total"), "{text}");
    }

    #[test]
    fn the_process_reports_its_resources() {
        let text = process_metrics();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(&format!("\n{name} ")) || text.starts_with(&format!("{name} ")), "{name}:\n{text}");
        }
    }
}
