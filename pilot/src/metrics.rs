//! Pilot's Prometheus metrics, named as in Istio 1.4 (`pilot_xds`, `pilot_xds_pushes`,
//! `pilot_total_xds_rejects`, `pilot_xds_{cds,eds,lds,rds}_reject`, `pilot_services`,
//! `pilot_virt_services`, `pilot_xds_push_time`, `pilot_proxy_convergence_time`, the
//! `pilot_conflict_*` gauges, `pilot_duplicate_envoy_clusters`, `pilot_xds_eds_instances`,
//! `pilot_eds_no_instances`, `pilot_inbound_updates`, `pilot_proxy_queue_time`). 1.4's Go
//! counters had no `_total` suffix; these keep their names exactly, so 1.4's Pilot dashboard
//! queries them as they are.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use istio_runtime::metrics::ExactCounter;
use istio_runtime::monitoring::SharedRegistry;

use crate::push_status::{Conflict, PushStatus};

/// The xDS type of a push or reject (`cds`, `eds`, `lds`, `rds`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: &'static str,
}

/// A rejected push: the proxy and its error, as 1.4's per-type reject gauges labelled them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub node: String,
    pub err: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub xds_clients: Gauge,
    pub pushes: Family<TypeLabel, ExactCounter>,
    /// `pilot_total_xds_rejects`: every NACK, of any type.
    pub rejects: ExactCounter,
    /// `pilot_rds_expired_nonce`: route requests answering a response already superseded.
    pub rds_expired_nonce: ExactCounter,
    /// `pilot_xds_cds_reject`, `…_eds_…`, `…_lds_…`, `…_rds_…`: 1 for each proxy's last rejection.
    pub type_rejects: [(&'static str, Family<RejectLabels, Gauge>); 4],
    pub services: Gauge,
    pub virtual_services: Gauge,
    /// `pilot_xds_push_time{type}`: from building a response until it is handed to the stream.
    pub push_time: Family<TypeLabel, Histogram, fn() -> Histogram>,
    pub convergence: Histogram,
    pub push_contexts: Counter,
    pub invalid_config: Counter,
    pub jwks_fetch_success: Counter,
    pub jwks_fetch_fail: Counter,
    /// `pilot_conflict_*`: conflicts found in the newest push context.
    pub(crate) conflicts: [(Conflict, Gauge); 5],
    /// `pilot_xds_eds_instances{cluster}`: endpoints each cluster was last sent.
    pub eds_instances: Family<ClusterLabel, Gauge>,
    /// `pilot_eds_no_instances`: clusters sent with no endpoint.
    pub eds_no_instances: Gauge,
    /// `pilot_inbound_updates{type}`: config (`config`), service (`svc`) and endpoint (`eds`)
    /// changes taken in.
    pub inbound_updates: Family<UpdateLabel, ExactCounter>,
    /// `pilot_proxy_queue_time`: seconds a proxy's push waited for the push throttle.
    pub proxy_queue_time: Histogram,
    /// `pilot_k8s_cfg_events{type,event}`: Istio config events from Kubernetes, by 1.4's type
    /// name (`virtual-service`).
    pub k8s_cfg_events: Family<K8sEventLabels, ExactCounter>,
    /// `pilot_k8s_reg_events{type,event}`: registry events from Kubernetes (`Services`,
    /// `Endpoints`, `Pod`, `Nodes`).
    pub k8s_reg_events: Family<K8sEventLabels, ExactCounter>,
}

/// What a Kubernetes event was about and what happened (`add`, `update`, `delete`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct K8sEventLabels {
    pub r#type: String,
    pub event: &'static str,
}

/// 1.4's config type name of a kind: `VirtualService` → `virtual-service`,
/// `HTTPAPISpecBinding` → `http-api-spec-binding`.
pub(crate) fn config_type_name(kind: &str) -> String {
    let kind = kind.replace("HTTPAPI", "HttpApi");
    let mut name = String::new();
    for (index, character) in kind.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            name.push('-');
        }
        name.push(character.to_ascii_lowercase());
    }
    name
}

impl Metrics {
    /// Counts one event of the Kubernetes source under 1.4's names.
    pub fn count_k8s_event(&self, event: &istio_config::store::Event) {
        use istio_config::store::Event;
        let (object, what) = match event {
            Event::Added(object) => (object, "add"),
            Event::Modified(object) => (object, "update"),
            Event::Deleted(object) => (object, "delete"),
            _ => return,
        };
        let registry = match (object.group(), object.kind.as_str()) {
            ("", "Service") => Some("Services"),
            ("", "Endpoints") => Some("Endpoints"),
            ("", "Pod") => Some("Pod"),
            ("", "Node") => Some("Nodes"),
            ("", _) => return,
            _ => None,
        };
        match registry {
            Some(kind) => self.k8s_reg_events.get_or_create(&K8sEventLabels { r#type: kind.to_string(), event: what }),
            None => self
                .k8s_cfg_events
                .get_or_create(&K8sEventLabels { r#type: config_type_name(&object.kind), event: what }),
        }
        .inc();
    }
}

/// The kind of an inbound update, as 1.4 labelled it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateLabel {
    pub r#type: &'static str,
}

/// The label of per-cluster metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

impl Metrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let metrics = Metrics {
            xds_clients: Gauge::default(),
            pushes: Family::default(),
            rejects: ExactCounter::default(),
            rds_expired_nonce: ExactCounter::default(),
            type_rejects: ["cds", "eds", "lds", "rds"].map(|kind| (kind, Family::default())),
            services: Gauge::default(),
            virtual_services: Gauge::default(),
            push_time: Family::new_with_constructor(push_time_histogram),
            convergence: Histogram::new([0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0]),
            push_contexts: Counter::default(),
            invalid_config: Counter::default(),
            jwks_fetch_success: Counter::default(),
            jwks_fetch_fail: Counter::default(),
            conflicts: Conflict::ALL.map(|conflict| (conflict, Gauge::default())),
            eds_instances: Family::default(),
            eds_no_instances: Gauge::default(),
            inbound_updates: Family::default(),
            proxy_queue_time: Histogram::new([0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0]),
            k8s_cfg_events: Family::default(),
            k8s_reg_events: Family::default(),
        };
        let mut registry = istio_runtime::sync::lock(registry);
        registry.register("pilot_xds", "Connected xDS clients", metrics.xds_clients.clone());
        registry.register("pilot_xds_pushes", "xDS responses sent, by type", metrics.pushes.clone());
        registry.register(
            "pilot_total_xds_rejects",
            "xDS responses proxies rejected (NACK), by type",
            metrics.rejects.clone(),
        );
        for (kind, family) in &metrics.type_rejects {
            registry.register(
                format!("pilot_xds_{kind}_reject"),
                format!("Pilot rejected {} configs", kind.to_uppercase()),
                family.clone(),
            );
        }
        registry.register("pilot_services", "Total services known to pilot", metrics.services.clone());
        registry.register(
            "pilot_virt_services",
            "Total virtual services known to pilot",
            metrics.virtual_services.clone(),
        );
        registry.register(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds",
            metrics.push_time.clone(),
        );
        registry.register(
            "pilot_rds_expired_nonce",
            "Total number of RDS messages with an expired nonce",
            metrics.rds_expired_nonce.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a config change being built into a push context until a proxy ACKs it",
            metrics.convergence.clone(),
        );
        registry.register("pilot_k8s_cfg_events", "Events from k8s config.", metrics.k8s_cfg_events.clone());
        registry.register("pilot_k8s_reg_events", "Events from k8s registry.", metrics.k8s_reg_events.clone());
        registry.register("pilot_push_contexts", "Config snapshots built after changes", metrics.push_contexts.clone());
        registry.register(
            "pilot_invalid_config",
            "Config objects rejected by validation and not used",
            metrics.invalid_config.clone(),
        );
        registry.register(
            "pilot_jwks_resolver_network_fetch_success",
            "Total number of successfully network fetch by pilot jwks resolver",
            metrics.jwks_fetch_success.clone(),
        );
        registry.register(
            "pilot_jwks_resolver_network_fetch_fail",
            "Total number of failed network fetch by pilot jwks resolver",
            metrics.jwks_fetch_fail.clone(),
        );
        for (conflict, gauge) in &metrics.conflicts {
            let (name, help) = conflict.metric();
            registry.register(name, help, gauge.clone());
        }
        // An HTTP listener always wins a wildcard port here (see `push_status`): never counted.
        registry.register(
            "pilot_conflict_outbound_listener_tcp_over_current_http",
            "Number of conflicting wildcard tcp listeners with current wildcard http listener",
            Gauge::<i64>::default(),
        );
        registry.register(
            "pilot_xds_eds_instances",
            "Instances for each cluster, as of last push",
            metrics.eds_instances.clone(),
        );
        registry.register(
            "pilot_eds_no_instances",
            "Number of clusters without instances",
            metrics.eds_no_instances.clone(),
        );
        registry.register(
            "pilot_inbound_updates",
            "Total number of updates received by pilot",
            metrics.inbound_updates.clone(),
        );
        registry.register(
            "pilot_proxy_queue_time",
            "Time a proxy is in the push queue before being dequeued",
            metrics.proxy_queue_time.clone(),
        );
        metrics
    }

    /// Brings the push-status gauges up to date with `push`'s findings.
    pub(crate) fn record_push_status(&self, status: &PushStatus) {
        for ((_, gauge), (_, count)) in self.conflicts.iter().zip(status.conflict_counts()) {
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let (counts, empty) = status.take_endpoint_counts();
        for (cluster, count) in counts {
            self.eds_instances.get_or_create(&ClusterLabel { cluster }).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.eds_no_instances.set(i64::try_from(empty).unwrap_or(i64::MAX));
    }

    /// A proxy rejected a push of `kind` (`cds`, …) with a status of `code`; the per-type
    /// gauge is labelled with the code's name, as 1.4's (`InvalidArgument`).
    pub fn record_reject(&self, kind: &'static str, node: &str, code: i32) {
        self.rejects.inc();
        if let Some((_, family)) = self.type_rejects.iter().find(|(known, _)| *known == kind) {
            let err = istio_runtime::grpc_metrics::go_code_name(code).to_string();
            family.get_or_create(&RejectLabels { node: node.to_string(), err }).set(1);
        }
    }

    /// A response of `kind` was handed to the stream (`sent`) or could not be (`{kind}_senderr`),
    /// `started` when it began to be built.
    pub fn record_push(&self, kind: &'static str, sent: bool, started: std::time::Instant) {
        let label = if sent {
            kind
        } else {
            match kind {
                "cds" => "cds_senderr",
                "eds" => "eds_senderr",
                "lds" => "lds_senderr",
                "rds" => "rds_senderr",
                _ => "unknown_senderr",
            }
        };
        self.pushes.get_or_create(&TypeLabel { r#type: label }).inc();
        if sent {
            self.push_time.get_or_create(&TypeLabel { r#type: kind }).observe(started.elapsed().as_secs_f64());
        }
    }
}

/// 1.4's push time buckets.
fn push_time_histogram() -> Histogram {
    Histogram::new([0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0])
}

#[cfg(test)]
mod tests {
    use super::config_type_name;

    #[test]
    fn kinds_get_1_4s_config_type_names() {
        for (kind, name) in [
            ("VirtualService", "virtual-service"),
            ("DestinationRule", "destination-rule"),
            ("Gateway", "gateway"),
            ("ServiceRoleBinding", "service-role-binding"),
            ("ClusterRbacConfig", "cluster-rbac-config"),
            ("HTTPAPISpecBinding", "http-api-spec-binding"),
            ("QuotaSpec", "quota-spec"),
        ] {
            assert_eq!(config_type_name(kind), name);
        }
    }
}
