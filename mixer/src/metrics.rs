//! Mixer's metrics on the monitoring port, with 1.4's names: dispatches per handler and template
//! and how long they took, destinations and instances per request, and what the current config
//! holds and got wrong. 1.4.6 exported its config gauges as `mixer_config_*_total`, while its
//! Mixer dashboard queries `mixer_config_*_count`; both names are served. The handler gauges
//! (`mixer_handler_*_total`) hold the last config change's figures, as 1.4's did.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::table::{BuiltHandler, Table};
use crate::template::{Template, Variety};

/// 1.4's label names, `meshFunction` (the template's name) included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct DispatchLabels {
    pub adapter: &'static str,
    pub handler: String,
    pub meshFunction: &'static str,
    pub error: &'static str,
}

/// A template variety as 1.4 named it (`TEMPLATE_VARIETY_CHECK`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VarietyLabel {
    pub variety: &'static str,
}

/// 1.4's enum names for a variety.
fn variety_name(variety: Variety) -> &'static str {
    match variety {
        Variety::Check => "TEMPLATE_VARIETY_CHECK",
        Variety::Quota => "TEMPLATE_VARIETY_QUOTA",
        Variety::Report => "TEMPLATE_VARIETY_REPORT",
        Variety::AttributeGenerator => "TEMPLATE_VARIETY_ATTRIBUTE_GENERATOR",
    }
}

/// Every metric Mixer keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub dispatches: Family<DispatchLabels, Counter>,
    pub dispatch_durations: Family<DispatchLabels, Histogram, fn() -> Histogram>,
    /// Handlers dispatched to, and instances built, per Check, Report or generation.
    pub destinations_per_request: Histogram,
    pub instances_per_request: Histogram,
    pub rules: Gauge,
    pub handlers: Gauge,
    pub instances: Gauge,
    pub attributes: Gauge,
    pub config_errors: Gauge,
    pub rule_errors: Gauge,
    pub instance_errors: Gauge,
    pub handler_validation_errors: Gauge,
    /// Dynamic templates and adapters (`template`, `adapter` kinds): none are supported, so
    /// these stay 0 as a 1.4 Mixer with only compiled-in ones had them.
    pub dynamic_configs: Gauge,
    pub match_errors: Gauge,
    pub unsatisfied_actions: Gauge,
    pub new_handlers: Gauge,
    pub reused_handlers: Gauge,
    pub closed_handlers: Gauge,
    pub build_failures: Gauge,
    pub close_failures: Gauge,
    pub destinations_per_variety: Family<VarietyLabel, Gauge>,
    pub checks: Counter,
    pub reports: Counter,
}

/// 1.4's buckets for destinations and instances per request.
fn count_histogram() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0])
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
            destinations_per_request: count_histogram(),
            instances_per_request: count_histogram(),
            rules: Gauge::default(),
            handlers: Gauge::default(),
            instances: Gauge::default(),
            attributes: Gauge::default(),
            config_errors: Gauge::default(),
            rule_errors: Gauge::default(),
            instance_errors: Gauge::default(),
            handler_validation_errors: Gauge::default(),
            dynamic_configs: Gauge::default(),
            match_errors: Gauge::default(),
            unsatisfied_actions: Gauge::default(),
            new_handlers: Gauge::default(),
            reused_handlers: Gauge::default(),
            closed_handlers: Gauge::default(),
            build_failures: Gauge::default(),
            close_failures: Gauge::default(),
            destinations_per_variety: Family::default(),
            checks: Counter::default(),
            reports: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mixer_runtime_dispatch_duration_seconds",
            "Duration in seconds for adapter dispatches handled by Mixer",
            self.dispatch_durations.clone(),
        );
        registry.register(
            "mixer_runtime_dispatches",
            "Total number of adapter dispatches handled by Mixer",
            self.dispatches.clone(),
        );
        registry.register(
            "mixer_dispatcher_destinations_per_request",
            "Number of handlers dispatched per request by Mixer",
            self.destinations_per_request.clone(),
        );
        registry.register(
            "mixer_dispatcher_instances_per_request",
            "Number of instances created per request by Mixer",
            self.instances_per_request.clone(),
        );
        // (1.4.6's exported name, the 1.4 dashboard's name where it differs, help, gauge)
        let config: [(&str, Option<&str>, &str, &Gauge); 13] = [
            (
                "mixer_config_attributes_total",
                Some("mixer_config_attribute_count"),
                "The number of known attributes in the current config",
                &self.attributes,
            ),
            (
                "mixer_config_handler_configs_total",
                Some("mixer_config_handler_config_count"),
                "The number of known handlers in the current config",
                &self.handlers,
            ),
            (
                "mixer_config_instance_configs_total",
                Some("mixer_config_instance_config_count"),
                "The number of known instances in the current config",
                &self.instances,
            ),
            (
                "mixer_config_instance_config_errors_total",
                None,
                "The number of errors encountered during processing of the instance configuration",
                &self.instance_errors,
            ),
            (
                "mixer_config_rule_configs_total",
                Some("mixer_config_rule_config_count"),
                "The number of known rules in the current config",
                &self.rules,
            ),
            (
                "mixer_config_rule_config_errors_total",
                None,
                "The number of errors encountered during processing of the rule configuration",
                &self.rule_errors,
            ),
            (
                "mixer_config_adapter_info_configs_total",
                None,
                "The number of known adapters in the current config",
                &self.dynamic_configs,
            ),
            (
                "mixer_config_adapter_info_config_errors_total",
                None,
                "The number of errors encountered during processing of the adapter info configuration",
                &self.dynamic_configs,
            ),
            (
                "mixer_config_template_configs_total",
                None,
                "The number of known templates in the current config",
                &self.dynamic_configs,
            ),
            (
                "mixer_config_template_config_errors_total",
                None,
                "The number of errors encountered during processing of the template configuration",
                &self.dynamic_configs,
            ),
            (
                "mixer_config_rule_config_match_error_total",
                Some("mixer_config_rule_config_match_error_count"),
                "The number of rule conditions that was not parseable",
                &self.match_errors,
            ),
            (
                "mixer_config_unsatisfied_action_handler_total",
                Some("mixer_config_unsatisfied_action_handler_count"),
                "The number of actions that failed due to handlers being unavailable",
                &self.unsatisfied_actions,
            ),
            (
                "mixer_config_handler_validation_error_total",
                None,
                "The number of errors encountered because handler validation returned error",
                &self.handler_validation_errors,
            ),
        ];
        for (name, dashboard_name, help, gauge) in config {
            registry.register(name, help, gauge.clone());
            if let Some(dashboard_name) = dashboard_name {
                registry.register(dashboard_name, help, gauge.clone());
            }
        }
        // The dashboard's error count covers every config error, as it always has here.
        registry.register(
            "mixer_config_rule_config_error_count",
            "The number of errors encountered while processing the current config",
            self.config_errors.clone(),
        );
        let handler: [(&str, &str, &Gauge); 5] = [
            (
                "mixer_handler_new_handlers_total",
                "The number of handlers that were newly created during config transition",
                &self.new_handlers,
            ),
            (
                "mixer_handler_reused_handlers_total",
                "The number of handlers that were re-used during config transition",
                &self.reused_handlers,
            ),
            (
                "mixer_handler_closed_handlers_total",
                "The number of handlers that were closed during config transition",
                &self.closed_handlers,
            ),
            (
                "mixer_handler_handler_build_failures_total",
                "The number of handlers that failed creation during config transition",
                &self.build_failures,
            ),
            (
                "mixer_handler_handler_close_failures_total",
                "The number of errors encountered while closing handlers during config transition",
                &self.close_failures,
            ),
        ];
        for (name, help, gauge) in handler {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "mixer_dispatcher_destinations_per_variety_total",
            "The number of Mixer dispatch destinations per template variety type",
            self.destinations_per_variety.clone(),
        );
        registry.register("mixer_api_check_requests", "Check requests served", self.checks.clone());
        registry.register("mixer_api_report_attribute_sets", "Attribute sets reported", self.reports.clone());
    }

    /// A dispatch of `template`'s instances to `handler` that began at `started`.
    pub fn dispatched(&self, handler: &BuiltHandler, template: Template, failed: bool, started: std::time::Instant) {
        let labels = DispatchLabels {
            adapter: handler.adapter.name(),
            handler: handler.name.clone(),
            meshFunction: template.name(),
            error: if failed { "true" } else { "false" },
        };
        self.dispatch_durations.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        self.dispatches.get_or_create(&labels).inc();
    }

    /// One request's dispatch: how many handlers it reached and instances it built.
    pub fn per_request(&self, destinations: usize, instances: usize) {
        self.destinations_per_request.observe(destinations as f64);
        self.instances_per_request.observe(instances as f64);
    }

    /// A newly compiled table: its figures, and what changed since `previous`.
    pub fn table_installed(&self, table: &Table, previous: &Table) {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        let errors_on = |prefix: &str| table.errors.iter().filter(|error| error.field.starts_with(prefix)).count();
        self.rules.set(gauge(table.counts.rules));
        self.handlers.set(gauge(table.counts.handlers));
        self.instances.set(gauge(table.counts.instances));
        self.attributes.set(gauge(table.counts.attributes));
        self.config_errors.set(gauge(table.errors.len()));
        self.rule_errors.set(gauge(errors_on("rule=") + errors_on("action=")));
        self.instance_errors.set(gauge(errors_on("instance=")));
        // A handler's params that fail to build count as build failures, the rest as validation.
        let invalid_handlers = table
            .errors
            .iter()
            .filter(|error| error.field.starts_with("handler=") && !error.field.ends_with(".params"));
        self.handler_validation_errors.set(gauge(invalid_handlers.count()));
        self.match_errors.set(gauge(table.errors.iter().filter(|error| error.field.ends_with(".Match")).count()));
        self.unsatisfied_actions
            .set(gauge(table.errors.iter().filter(|error| error.message.starts_with("Handler not found")).count()));
        self.new_handlers.set(gauge(table.counts.new_handlers));
        self.reused_handlers.set(gauge(table.counts.reused_handlers));
        self.build_failures.set(gauge(table.counts.handler_build_failures));
        self.closed_handlers.set(gauge(table.closed_since(previous)));
        for (variety, count) in table.destinations_per_variety() {
            self.destinations_per_variety
                .get_or_create(&VarietyLabel { variety: variety_name(variety) })
                .set(gauge(count));
        }
    }
}
