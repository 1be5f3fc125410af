//! Galley's Prometheus metrics, named as Istio 1.4's (`galley_validation_passed` and
//! `galley_validation_failed` without a `_total` suffix, as 1.4's Galley dashboard queries them;
//! the runtime's debounce strategy and processor counters; `istio_mcp_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use istio_mcp::source::{CollectionLabel, SourceMetrics};
use istio_runtime::metrics::ExactCounter;
use istio_runtime::monitoring::SharedRegistry;

/// The resource an admission decision was about.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResourceLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl ResourceLabels {
    pub(crate) fn with_reason(self, reason: &str) -> RejectionLabels {
        RejectionLabels {
            group: self.group,
            version: self.version,
            resource: self.resource,
            reason: reason.to_string(),
        }
    }
}

/// An HTTP-level refusal by the webhook.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpErrorLabels {
    pub status: String,
}

/// A refused admission: the resource and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectionLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub reason: String,
}

/// Why a webhook configuration load, update or delete failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabel {
    pub error: String,
}

/// Every metric Galley reports.
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Where per-collection gauges are registered as collections first appear.
    registry: SharedRegistry,
    /// `galley_istio_networking_virtualservices` and the like: objects served, per collection.
    collection_sizes: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Gauge>>>,
    pub validation_passed: Family<ResourceLabels, ExactCounter>,
    pub validation_failed: Family<RejectionLabels, ExactCounter>,
    pub validation_http_error: Family<HttpErrorLabels, ExactCounter>,
    /// The ValidatingWebhookConfiguration's (re)loads from its template and CA, and their failures.
    pub validation_config_load: ExactCounter,
    pub validation_config_load_error: Family<ErrorLabel, ExactCounter>,
    /// Writes of the configuration to the cluster, and failed writes and deletes.
    pub validation_config_updates: ExactCounter,
    pub validation_config_update_error: Family<ErrorLabel, ExactCounter>,
    pub validation_config_delete_error: Family<ErrorLabel, ExactCounter>,
    pub invalid_source_objects: Family<CollectionLabel, Counter>,
    pub source_errors: Counter,
    /// The Kubernetes source: events taken, failed watches, objects converted or not.
    pub kube_event_success: Counter,
    pub kube_event_error: Counter,
    pub kube_converter_success: Counter,
    pub kube_converter_failure: Counter,
    pub snapshots_published: Counter,
    /// Objects per collection of the last snapshot (`galley_runtime_state_type_instances_total`).
    pub state_type_instances: Family<CollectionLabel, Gauge>,
    pub events_processed: Counter,
    /// Events folded into each published snapshot.
    pub snapshot_events: Histogram,
    pub strategy_on_change: Counter,
    pub strategy_timer_resets: Counter,
    pub strategy_quiesce_reached: Counter,
    pub strategy_max_time_reached: Counter,
    pub mcp: SourceMetrics,
}

/// 1.4's buckets for events per snapshot: 0, 1, 2, 4, … 256.
fn snapshot_events_histogram() -> Histogram {
    Histogram::new(std::iter::once(0.0).chain((0..=8).map(|power| f64::from(1u32 << power))))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registry: SharedRegistry::default(),
            collection_sizes: Default::default(),
            validation_passed: Family::default(),
            validation_failed: Family::default(),
            validation_http_error: Family::default(),
            validation_config_load: ExactCounter::default(),
            validation_config_load_error: Family::default(),
            validation_config_updates: ExactCounter::default(),
            validation_config_update_error: Family::default(),
            validation_config_delete_error: Family::default(),
            invalid_source_objects: Family::default(),
            source_errors: Counter::default(),
            kube_event_success: Counter::default(),
            kube_event_error: Counter::default(),
            kube_converter_success: Counter::default(),
            kube_converter_failure: Counter::default(),
            snapshots_published: Counter::default(),
            state_type_instances: Family::default(),
            events_processed: Counter::default(),
            snapshot_events: snapshot_events_histogram(),
            strategy_on_change: Counter::default(),
            strategy_timer_resets: Counter::default(),
            strategy_quiesce_reached: Counter::default(),
            strategy_max_time_reached: Counter::default(),
            mcp: SourceMetrics::default(),
        }
    }
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
            "galley_validation_http_error",
            "Requests the validation webhook refused before reading them, by HTTP status",
            metrics.validation_http_error.clone(),
        );
        registry.register(
            "galley_validation_config_load",
            "k8s webhook configuration (re)loads",
            metrics.validation_config_load.clone(),
        );
        registry.register(
            "galley_validation_config_load_error",
            "k8s webhook configuration (re)load error",
            metrics.validation_config_load_error.clone(),
        );
        registry.register(
            "galley_validation_config_updates",
            "k8s webhook configuration updates",
            metrics.validation_config_updates.clone(),
        );
        registry.register(
            "galley_validation_config_update_error",
            "k8s webhook configuration update error",
            metrics.validation_config_update_error.clone(),
        );
        registry.register(
            "galley_validation_config_delete_error",
            "k8s webhook configuration delete error",
            metrics.validation_config_delete_error.clone(),
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
        let kube: [(&str, &str, &Counter); 4] = [
            (
                "galley_source_kube_event_success",
                "Events taken from the Kubernetes source",
                &metrics.kube_event_success,
            ),
            (
                "galley_source_kube_event_error",
                "Failures of the Kubernetes source's watches",
                &metrics.kube_event_error,
            ),
            (
                "galley_source_kube_dynamic_converter_success",
                "Kubernetes objects converted",
                &metrics.kube_converter_success,
            ),
            (
                "galley_source_kube_dynamic_converter_failure",
                "Kubernetes objects that could not be converted",
                &metrics.kube_converter_failure,
            ),
        ];
        for (name, help, counter) in kube {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "galley_runtime_processor_snapshots_published",
            "MCP snapshots published",
            metrics.snapshots_published.clone(),
        );
        let runtime: [(&str, &str, &Counter); 5] = [
            ("galley_runtime_processor_events_processed", "The number of events processed", &metrics.events_processed),
            ("galley_runtime_strategy_on_change", "The number of change events processed", &metrics.strategy_on_change),
            (
                "galley_runtime_strategy_timer_resets",
                "The number of times the debounce timer was reset by a new event",
                &metrics.strategy_timer_resets,
            ),
            (
                "galley_runtime_strategy_timer_quiesce_reached",
                "The number of times a snapshot was published after a quiet period",
                &metrics.strategy_quiesce_reached,
            ),
            (
                "galley_runtime_strategy_timer_max_time_reached",
                "The number of times a snapshot was published when the maximum debounce time passed",
                &metrics.strategy_max_time_reached,
            ),
        ];
        for (name, help, counter) in runtime {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "galley_runtime_processor_snapshot_events_total",
            "The number of events that have been processed for a snapshot",
            metrics.snapshot_events.clone(),
        );
        registry.register(
            "galley_runtime_state_type_instances_total",
            "The number of instances of each collection in the last snapshot",
            metrics.state_type_instances.clone(),
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
            self.state_type_instances
                .get_or_create(&CollectionLabel { collection: name.clone() })
                .set(collection.resources.len() as i64);
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

impl Metrics {
    /// Counts one event of the Kubernetes source, as 1.4's `galley_source_kube_*` did.
    pub(crate) fn count_kube_event(&self, event: &istio_config::store::Event) {
        use istio_config::store::Event;
        match event {
            Event::Added(_) | Event::Modified(_) | Event::Deleted(_) => {
                self.kube_event_success.inc();
                self.kube_converter_success.inc();
            }
            Event::SourceError { message, .. }
                if message.starts_with(istio_config::store::kubernetes::CONVERSION_FAILED) =>
            {
                self.kube_converter_failure.inc();
            }
            Event::SourceError { .. } => {
                self.kube_event_error.inc();
            }
            Event::Synced => {}
        }
    }
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
