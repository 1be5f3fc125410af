//! Mixer's metrics on the monitoring port, with 1.4's names: dispatches per handler and how long
//! they took, and what the current config holds and got wrong (1.4's Mixer dashboard queries
//! `mixer_runtime_dispatch_duration_seconds`, `mixer_config_attribute_count`,
//! `mixer_config_rule_config_match_error_count`, `mixer_config_unsatisfied_action_handler_count`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::table::{BuiltHandler, Table};

/// 1.4's label names, `meshFunction` included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct DispatchLabels {
    pub adapter: String,
    pub handler: String,
    pub meshFunction: String,
    pub error: String,
}

/// Every metric Mixer keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub dispatches: Family<DispatchLabels, Counter>,
    pub dispatch_durations: Family<DispatchLabels, Histogram, fn() -> Histogram>,
    pub rules: Gauge,
    pub handlers: Gauge,
    pub instances: Gauge,
    pub attributes: Gauge,
    pub config_errors: Gauge,
    pub match_errors: Gauge,
    pub unsatisfied_actions: Gauge,
    pub new_handlers: Counter,
    pub reused_handlers: Counter,
    pub build_failures: Counter,
    pub checks: Counter,
    pub reports: Counter,
}

/// 1.4's dispatch duration buckets (its OpenCensus view's bounds), in seconds.
fn dispatch_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            dispatches: Family::default(),
            dispatch_durations: Family::new_with_constructor(dispatch_histogram),
            rules: Gauge::default(),
            handlers: Gauge::default(),
            instances: Gauge::default(),
            attributes: Gauge::default(),
            config_errors: Gauge::default(),
            match_errors: Gauge::default(),
            unsatisfied_actions: Gauge::default(),
            new_handlers: Counter::default(),
            reused_handlers: Counter::default(),
            build_failures: Counter::default(),
            checks: Counter::default(),
            reports: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mixer_runtime_dispatch_duration_seconds",
            "Duration in seconds for adapter dispatches handled by Mixer.",
            self.dispatch_durations.clone(),
        );
        registry.register(
            "mixer_runtime_dispatches",
            "Total number of adapter dispatches handled by Mixer.",
            self.dispatches.clone(),
        );
        registry.register(
            "mixer_config_rule_config_count",
            "Number of rules in the current config.",
            self.rules.clone(),
        );
        registry.register(
            "mixer_config_handler_config_count",
            "Number of handlers in the current config.",
            self.handlers.clone(),
        );
        registry.register(
            "mixer_config_instance_config_count",
            "Number of instances in the current config.",
            self.instances.clone(),
        );
        registry.register(
            "mixer_config_attribute_count",
            "Number of known attributes in the current config.",
            self.attributes.clone(),
        );
        registry.register(
            "mixer_config_rule_config_match_error_count",
            "Number of rule conditions that could not be parsed or type-checked in the current config.",
            self.match_errors.clone(),
        );
        registry.register(
            "mixer_config_unsatisfied_action_handler_count",
            "Number of actions whose handler is missing or failed in the current config.",
            self.unsatisfied_actions.clone(),
        );
        registry.register(
            "mixer_config_rule_config_error_count",
            "Number of errors encountered while processing the current config.",
            self.config_errors.clone(),
        );
        registry.register(
            "mixer_handler_new_handlers",
            "Number of handlers that were newly created during config transition.",
            self.new_handlers.clone(),
        );
        registry.register(
            "mixer_handler_reused_handlers",
            "Number of handlers that were re-used during config transition.",
            self.reused_handlers.clone(),
        );
        registry.register(
            "mixer_handler_handler_build_failures",
            "The number of handlers that failed creation during config transition.",
            self.build_failures.clone(),
        );
        registry.register("mixer_api_check_requests", "Check requests served.", self.checks.clone());
        registry.register("mixer_api_report_attribute_sets", "Attribute sets reported.", self.reports.clone());
    }

    /// A dispatch to `handler` for `function` (`check`, `report`, …) that began at `started`.
    pub fn dispatched(&self, handler: &BuiltHandler, function: &str, failed: bool, started: std::time::Instant) {
        let labels = DispatchLabels {
            adapter: handler.adapter.name().to_string(),
            handler: handler.name.clone(),
            meshFunction: function.to_string(),
            error: failed.to_string(),
        };
        self.dispatch_durations.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        self.dispatches.get_or_create(&labels).inc();
    }

    pub fn table_installed(&self, table: &Table) {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.rules.set(gauge(table.counts.rules));
        self.handlers.set(gauge(table.counts.handlers));
        self.instances.set(gauge(table.counts.instances));
        self.attributes.set(gauge(table.counts.attributes));
        self.config_errors.set(gauge(table.errors.len()));
        self.match_errors.set(gauge(table.errors.iter().filter(|error| error.field.ends_with(".Match")).count()));
        self.unsatisfied_actions
            .set(gauge(table.errors.iter().filter(|error| error.message.starts_with("Handler not found")).count()));
        self.new_handlers.inc_by(table.counts.new_handlers as u64);
        self.reused_handlers.inc_by(table.counts.reused_handlers as u64);
        self.build_failures.inc_by(table.counts.handler_build_failures as u64);
    }
}
