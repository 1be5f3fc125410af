//! Mixer's metrics on the monitoring port, with 1.4's names: dispatches per handler, and what
//! the current config holds and got wrong.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub dispatches: Family<DispatchLabels, Counter>,
    pub rules: Gauge,
    pub handlers: Gauge,
    pub instances: Gauge,
    pub attributes: Gauge,
    pub config_errors: Gauge,
    pub new_handlers: Counter,
    pub reused_handlers: Counter,
    pub build_failures: Counter,
    pub checks: Counter,
    pub reports: Counter,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
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
            "mixer_config_attributes_total",
            "Number of known attributes in the current config.",
            self.attributes.clone(),
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

    pub fn dispatched(&self, handler: &BuiltHandler, function: &str, failed: bool) {
        self.dispatches
            .get_or_create(&DispatchLabels {
                adapter: handler.adapter.name().to_string(),
                handler: handler.name.clone(),
                meshFunction: function.to_string(),
                error: failed.to_string(),
            })
            .inc();
    }

    pub fn table_installed(&self, table: &Table) {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.rules.set(gauge(table.counts.rules));
        self.handlers.set(gauge(table.counts.handlers));
        self.instances.set(gauge(table.counts.instances));
        self.attributes.set(gauge(table.counts.attributes));
        self.config_errors.set(gauge(table.errors.len()));
        self.new_handlers.inc_by(table.counts.new_handlers as u64);
        self.reused_handlers.inc_by(table.counts.reused_handlers as u64);
        self.build_failures.inc_by(table.counts.handler_build_failures as u64);
    }
}
