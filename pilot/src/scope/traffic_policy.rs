//! The DestinationRule traffic policy that applies to one cluster: a subset's policy merged over
//! the rule's, then a port's settings over both — the load balancer, connection pool, outlier
//! detection and TLS that the cluster and route generators turn into Envoy config.

use istio_api::pb::istio::networking::v1alpha3 as net;
use istio_xds::{ClusterName, TrafficDirection};

use crate::model::PushContext;

/// The consistent-hash settings of the DestinationRule (subset and port level included) behind
/// an outbound cluster name, if it asks for consistent hashing.
pub(crate) fn consistent_hash(
    push: &PushContext,
    cluster: &str,
) -> Option<net::load_balancer_settings::ConsistentHashLb> {
    let ClusterName { direction: TrafficDirection::Outbound, port, subset, host } = cluster.parse().ok()? else {
        return None;
    };
    let rule = push.destination_rule(&host)?;
    let subset_policy = rule.spec.subsets.iter().find(|s| s.name == subset).and_then(|s| s.traffic_policy.as_ref());
    let merged = merge_policy(rule.spec.traffic_policy.as_ref(), subset_policy);
    match &port_policy(merged.as_ref(), port).load_balancer?.lb_policy {
        Some(net::load_balancer_settings::LbPolicy::ConsistentHash(hash)) => Some(hash.clone()),
        _ => None,
    }
}

/// A subset's policy on top of the rule's: a field the subset sets wins.
pub(crate) fn merge_policy(
    top: Option<&net::TrafficPolicy>,
    subset: Option<&net::TrafficPolicy>,
) -> Option<net::TrafficPolicy> {
    match (top, subset) {
        (None, None) => None,
        (Some(top), None) => Some(top.clone()),
        (None, Some(subset)) => Some(subset.clone()),
        (Some(top), Some(subset)) => Some(net::TrafficPolicy {
            load_balancer: subset.load_balancer.clone().or_else(|| top.load_balancer.clone()),
            connection_pool: subset.connection_pool.or(top.connection_pool),
            outlier_detection: subset.outlier_detection.or(top.outlier_detection),
            tls: subset.tls.clone().or_else(|| top.tls.clone()),
            port_level_settings: if subset.port_level_settings.is_empty() {
                top.port_level_settings.clone()
            } else {
                subset.port_level_settings.clone()
            },
        }),
    }
}

/// The policy fields that apply to one port (port-level settings override the rest).
pub(crate) struct PortPolicy<'a> {
    pub load_balancer: Option<&'a net::LoadBalancerSettings>,
    pub connection_pool: Option<&'a net::ConnectionPoolSettings>,
    pub outlier_detection: Option<&'a net::OutlierDetection>,
    pub tls: Option<&'a net::TlsSettings>,
}

pub(crate) fn port_policy(policy: Option<&net::TrafficPolicy>, port: u32) -> PortPolicy<'_> {
    let Some(policy) = policy else {
        return PortPolicy { load_balancer: None, connection_pool: None, outlier_detection: None, tls: None };
    };
    let level =
        policy.port_level_settings.iter().find(|setting| setting.port.as_ref().is_some_and(|p| p.number == port));
    PortPolicy {
        load_balancer: level.and_then(|l| l.load_balancer.as_ref()).or(policy.load_balancer.as_ref()),
        connection_pool: level.and_then(|l| l.connection_pool.as_ref()).or(policy.connection_pool.as_ref()),
        outlier_detection: level.and_then(|l| l.outlier_detection.as_ref()).or(policy.outlier_detection.as_ref()),
        tls: level.and_then(|l| l.tls.as_ref()).or(policy.tls.as_ref()),
    }
}
