//! EDS: the endpoints of an `outbound|PORT|SUBSET|HOST` cluster, filtered by the subset's labels
//! from the DestinationRule and grouped by locality (each locality weighing what its endpoints
//! do; `locality` reweighs or prioritises them for a proxy). An endpoint whose pod has a sidecar
//! (`security.istio.io/tlsMode: istio`) says so in its metadata, for automatic mutual TLS.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use istio_xds::{ClusterName, TrafficDirection};

use super::socket_address;
use crate::model::{PushContext, Resolution};

/// The pod label that says an endpoint's sidecar takes Istio mutual TLS.
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// An endpoint's `tlsMode`, where automatic mutual TLS's transport socket matches look.
fn tls_mode_metadata(mode: &str) -> Metadata {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let fields =
        [(super::cluster::TLS_MODE_MATCH_KEY.to_string(), Value { kind: Some(Kind::StringValue(mode.to_string())) })];
    Metadata {
        filter_metadata: [(
            "envoy.transport_socket_match".to_string(),
            Struct { fields: fields.into_iter().collect() },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// The load assignment for one cluster name; `None` when it is not an EDS cluster Pilot knows.
pub(crate) fn load_assignment(push: &PushContext, cluster: &str) -> Option<ClusterLoadAssignment> {
    let ClusterName { direction, port: port_number, subset, host } = cluster.parse().ok()?;
    if direction != TrafficDirection::Outbound {
        return None;
    }
    let service = push.service(&host)?;
    if service.resolution != Resolution::Static {
        return None;
    }
    let port = service.port(port_number)?;
    let labels = if subset.is_empty() {
        None
    } else {
        let rule = push.destination_rule(&host)?;
        Some(rule.spec.subsets.iter().find(|candidate| candidate.name == subset)?.labels.clone())
    };
    let mut by_locality: BTreeMap<&str, Vec<LbEndpoint>> = BTreeMap::new();
    for endpoint in &service.endpoints {
        if let Some(labels) = &labels {
            if !labels.iter().all(|(key, value)| endpoint.labels.get(key) == Some(value)) {
                continue;
            }
        }
        by_locality.entry(endpoint.locality.as_str()).or_default().push(LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(socket_address(&endpoint.address, endpoint.port_for(port))),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: endpoint.weight.max(1) }),
            metadata: endpoint.labels.get(TLS_MODE_LABEL).map(|mode| tls_mode_metadata(mode)),
            ..Default::default()
        });
    }
    let endpoints = by_locality
        .into_iter()
        .map(|(locality, lb_endpoints)| {
            // A locality weighs what its endpoints weigh together, as 1.4 sent it.
            let weight = lb_endpoints.iter().map(|e| e.load_balancing_weight.as_ref().map_or(1, |w| w.value)).sum();
            LocalityLbEndpoints {
                locality: Some(istio_xds::locality::parse(locality).unwrap_or_default()),
                load_balancing_weight: Some(UInt32Value { value: weight }),
                lb_endpoints,
                ..Default::default()
            }
        })
        .collect();
    Some(ClusterLoadAssignment { cluster_name: cluster.to_string(), endpoints, ..Default::default() })
}

/// Whether the cluster a proxy in `namespace` gets for `cluster` has outlier detection (the
/// rule's, its subset's or its port's, as CDS builds it; 1.4's `hasOutlierDetection`):
/// locality failover needs it.
pub(crate) fn has_outlier_detection(push: &PushContext, namespace: &str, cluster: &str) -> bool {
    use crate::scope::traffic_policy::{merge_policy, port_policy};
    let Ok(ClusterName { port, subset, host, .. }) = cluster.parse::<ClusterName>() else { return false };
    let Some(rule) = push.destination_rule_for(&host, namespace) else { return false };
    let subset_policy =
        rule.spec.subsets.iter().find(|candidate| candidate.name == subset).and_then(|s| s.traffic_policy.as_ref());
    let policy = merge_policy(rule.spec.traffic_policy.as_ref(), subset_policy);
    port_policy(policy.as_ref(), port).outlier_detection.is_some()
}
