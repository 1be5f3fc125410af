//! CDS: one cluster per service port (`outbound|PORT||HOST`) and per DestinationRule subset
//! (`outbound|PORT|SUBSET|HOST`), with the rule's traffic policy applied (load balancer,
//! connection pool as circuit breakers, outlier detection, TLS); inbound clusters for the
//! sidecar's own service ports; and the special clusters (`BlackHoleCluster`,
//! `PassthroughCluster`, `InboundPassthroughClusterIpv4`).

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster, CircuitBreakers, Cluster, OutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::{
    transport_socket, BindConfig, Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions,
    TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{http_protocol_options, HttpProtocolOptions};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use istio_api::pb::istio::networking::v1alpha3 as net;

use istio_xds::{ClusterName, TrafficDirection};

use super::tls::{istio_mutual_tls, san_matcher};
use super::{
    ads_source, any, duration, file_source, socket_address, BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
};
use crate::model::{PushContext, Resolution, Service, ServicePort};
use crate::node::{Proxy, ProxyKind};
use crate::scope::traffic_policy::{merge_policy, port_policy};
use crate::scope::ProxyScope;

const HTTP_OPTIONS_EXTENSION: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The clusters that depend on the proxy itself: inbound ones for sidecars.
pub(crate) fn proxy_clusters(push: &PushContext, proxy: &Proxy) -> Vec<Cluster> {
    if proxy.kind == ProxyKind::Sidecar {
        let mut clusters = inbound_clusters(push, proxy);
        clusters.push(inbound_passthrough(push));
        clusters
    } else if proxy.sni_dnat {
        sni_dnat_clusters(shared_clusters(push, &ProxyScope::of(push, proxy)))
    } else {
        Vec::new()
    }
}

/// For a gateway in `sni-dnat` router mode (AUTO_PASSTHROUGH): each outbound cluster again,
/// named `outbound_.PORT_.SUBSET_.HOST` as the SNI of mesh mTLS names it, with the same
/// endpoints and no TLS of its own (the stream stays the client's).
pub(crate) fn sni_dnat_clusters(outbound: Vec<Cluster>) -> Vec<Cluster> {
    outbound
        .into_iter()
        .filter_map(|mut cluster| {
            let ClusterName { direction: TrafficDirection::Outbound, port, subset, host } =
                cluster.name.parse().ok()?
            else {
                return None;
            };
            let original = cluster.name.clone();
            cluster.name = format!("outbound_.{port}_.{subset}_.{host}");
            cluster.transport_socket = None;
            if let Some(eds) = cluster.eds_cluster_config.as_mut() {
                if eds.service_name.is_empty() {
                    eds.service_name = original;
                }
            }
            Some(cluster)
        })
        .collect()
}

/// The clusters every proxy gets: outbound services and subsets, and the special clusters.
pub(crate) fn shared_clusters(push: &PushContext, scope: &ProxyScope) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    for service in push.services.values() {
        for port in service.ports.iter().filter(|port| scope.sees_service_port(service, port.number)) {
            let rule = push.destination_rule_for(&service.hostname, scope.namespace());
            let top_policy = rule.and_then(|rule| rule.spec.traffic_policy.as_ref());
            clusters.push(outbound_cluster(push, service, port, "", top_policy, scope.sds));
            for subset in rule.map(|rule| rule.spec.subsets.as_slice()).unwrap_or_default() {
                let policy = merge_policy(top_policy, subset.traffic_policy.as_ref());
                clusters.push(outbound_cluster(push, service, port, &subset.name, policy.as_ref(), scope.sds));
            }
        }
    }
    clusters.push(Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        connect_timeout: Some(duration(&push.mesh.connect_timeout)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Static as i32)),
        ..Default::default()
    });
    clusters.push(Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        connect_timeout: Some(duration(&push.mesh.connect_timeout)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        ..Default::default()
    });
    clusters
}

fn outbound_cluster(
    push: &PushContext,
    service: &Service,
    port: &ServicePort,
    subset: &str,
    policy: Option<&net::TrafficPolicy>,
    sds: bool,
) -> Cluster {
    let name = ClusterName::outbound(port.number, subset, &service.hostname).to_string();
    let mut cluster = Cluster {
        name: name.clone(),
        connect_timeout: Some(duration(&push.mesh.connect_timeout)),
        ..Default::default()
    };
    match service.resolution {
        Resolution::Static => {
            cluster.cluster_discovery_type =
                Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32));
            cluster.eds_cluster_config =
                Some(cluster::EdsClusterConfig { eds_config: Some(ads_source()), service_name: String::new() });
        }
        Resolution::Dns => {
            cluster.cluster_discovery_type =
                Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::StrictDns as i32));
            cluster.load_assignment = Some(ClusterLoadAssignment {
                cluster_name: name.clone(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: service
                        .endpoints
                        .iter()
                        .map(|endpoint| LbEndpoint {
                            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                                address: Some(socket_address(&endpoint.address, endpoint.port_for(port))),
                                ..Default::default()
                            })),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        Resolution::Passthrough => {
            cluster.cluster_discovery_type =
                Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32));
            cluster.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        }
    }
    let policy = port_policy(policy, port.number);
    let mut common = CommonHttpOptions::default();
    if let Some(settings) = policy.load_balancer {
        apply_load_balancer(&mut cluster, settings);
    }
    if let Some(pool) = policy.connection_pool {
        apply_connection_pool(&mut cluster, &mut common, pool);
    }
    if let Some(outlier) = policy.outlier_detection {
        cluster.outlier_detection = Some(outlier_detection(outlier));
    }
    if let Some(tls) = policy.tls {
        cluster.transport_socket = upstream_tls(tls, service, port, subset, sds);
    }
    if port.protocol.is_http2() || common != CommonHttpOptions::default() {
        cluster.typed_extension_protocol_options = http_options(port.protocol.is_http2(), common);
    }
    cluster
}

fn http_options(http2: bool, common: CommonHttpOptions) -> HashMap<String, Any> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    let protocol = if http2 {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    let options = HttpProtocolOptions {
        common_http_protocol_options: (common != CommonHttpOptions::default()).then_some(common),
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig { protocol_config: Some(protocol) },
        )),
        ..Default::default()
    };
    HashMap::from([(HTTP_OPTIONS_EXTENSION.to_string(), any(options))])
}

fn apply_load_balancer(cluster: &mut Cluster, settings: &net::LoadBalancerSettings) {
    use net::load_balancer_settings::{LbPolicy, SimpleLb};
    match &settings.lb_policy {
        Some(LbPolicy::Simple(simple)) => match SimpleLb::try_from(*simple).unwrap_or(SimpleLb::RoundRobin) {
            SimpleLb::RoundRobin => cluster.lb_policy = cluster::LbPolicy::RoundRobin as i32,
            SimpleLb::LeastConn => cluster.lb_policy = cluster::LbPolicy::LeastRequest as i32,
            SimpleLb::Random => cluster.lb_policy = cluster::LbPolicy::Random as i32,
            SimpleLb::Passthrough => {
                cluster.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
                cluster.cluster_discovery_type =
                    Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32));
                cluster.eds_cluster_config = None;
                cluster.load_assignment = None;
            }
        },
        Some(LbPolicy::ConsistentHash(hash)) => {
            cluster.lb_policy = cluster::LbPolicy::RingHash as i32;
            let minimum = if hash.minimum_ring_size == 0 { 1024 } else { hash.minimum_ring_size };
            cluster.lb_config = Some(cluster::LbConfig::RingHashLbConfig(cluster::RingHashLbConfig {
                minimum_ring_size: Some(envoy_types::pb::google::protobuf::UInt64Value { value: minimum }),
                ..Default::default()
            }));
        }
        None => {}
    }
}

fn apply_connection_pool(cluster: &mut Cluster, common: &mut CommonHttpOptions, pool: &net::ConnectionPoolSettings) {
    let mut thresholds = circuit_breakers::Thresholds::default();
    let positive = |value: i32| u32::try_from(value).ok().filter(|v| *v > 0).map(|value| UInt32Value { value });
    if let Some(tcp) = &pool.tcp {
        thresholds.max_connections = positive(tcp.max_connections);
        if let Some(timeout) = &tcp.connect_timeout {
            cluster.connect_timeout = Some(duration(timeout));
        }
    }
    if let Some(http) = &pool.http {
        thresholds.max_pending_requests = positive(http.http1_max_pending_requests);
        thresholds.max_requests = positive(http.http2_max_requests);
        thresholds.max_retries = positive(http.max_retries);
        common.max_requests_per_connection = positive(http.max_requests_per_connection);
        common.idle_timeout = http.idle_timeout.as_ref().map(duration);
    }
    if thresholds != circuit_breakers::Thresholds::default() {
        cluster.circuit_breakers = Some(CircuitBreakers { thresholds: vec![thresholds], ..Default::default() });
    }
}

fn outlier_detection(outlier: &net::OutlierDetection) -> OutlierDetection {
    let mut detection = OutlierDetection::default();
    if outlier.consecutive_errors > 0 {
        // As in 1.4: only gateway errors (502, 503, 504) count; plain 5xx ejection is off.
        let errors = Some(UInt32Value { value: u32::try_from(outlier.consecutive_errors).unwrap_or(u32::MAX) });
        detection.consecutive_gateway_failure = errors;
        detection.enforcing_consecutive_gateway_failure = Some(UInt32Value { value: 100 });
        detection.enforcing_consecutive_5xx = Some(UInt32Value { value: 0 });
    }
    detection.interval = outlier.interval.as_ref().map(duration);
    detection.base_ejection_time = outlier.base_ejection_time.as_ref().map(duration);
    if outlier.max_ejection_percent > 0 {
        detection.max_ejection_percent =
            Some(UInt32Value { value: u32::try_from(outlier.max_ejection_percent).unwrap_or(100) });
    }
    detection
}

/// Upstream TLS for a DestinationRule's `tls`. ISTIO_MUTUAL uses the workload certificate:
/// the `/etc/certs` files of 1.4's default install, or SDS for a proxy in SDS mode.
fn upstream_tls(
    tls: &net::TlsSettings,
    service: &Service,
    port: &ServicePort,
    subset: &str,
    sds: bool,
) -> Option<TransportSocket> {
    use net::tls_settings::TlSmode;
    let mode = TlSmode::try_from(tls.mode).unwrap_or(TlSmode::Disable);
    let (common, sni) = match mode {
        TlSmode::Disable => return None,
        TlSmode::IstioMutual => (
            istio_mutual_tls(vec!["istio".to_string()], sds),
            format!("outbound_.{}_.{subset}_.{}", port.number, service.hostname),
        ),
        TlSmode::Simple | TlSmode::Mutual => {
            let mut common = CommonTlsContext::default();
            if mode == TlSmode::Mutual {
                if let (Some(chain), Some(key)) = (file_source(&tls.client_certificate), file_source(&tls.private_key))
                {
                    common.tls_certificates = vec![TlsCertificate {
                        certificate_chain: Some(chain),
                        private_key: Some(key),
                        ..Default::default()
                    }];
                }
            }
            if let Some(ca) = file_source(&tls.ca_certificates) {
                common.validation_context_type =
                    Some(common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
                        trusted_ca: Some(ca),
                        match_typed_subject_alt_names: tls
                            .subject_alt_names
                            .iter()
                            .map(|name| san_matcher(name))
                            .collect(),
                        ..Default::default()
                    }));
            }
            (common, tls.sni.clone())
        }
    };
    let context = UpstreamTlsContext { common_tls_context: Some(common), sni, ..Default::default() };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(context))),
    })
}

/// Inbound clusters: one per port of each service the sidecar's IP is an endpoint of, sending
/// to the application on 127.0.0.1.
fn inbound_clusters(push: &PushContext, proxy: &Proxy) -> Vec<Cluster> {
    let mut seen = std::collections::HashSet::new();
    super::inbound::inbound_targets(push, proxy)
        .into_iter()
        // One workload serving a port on several target ports still gets one cluster per name.
        .filter(|target| seen.insert(target.cluster.clone()))
        .map(|target| {
            let mut cluster = Cluster {
                name: target.cluster.clone(),
                connect_timeout: Some(duration(&push.mesh.connect_timeout)),
                cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                )),
                load_assignment: Some(ClusterLoadAssignment {
                    cluster_name: target.cluster,
                    endpoints: vec![LocalityLbEndpoints {
                        lb_endpoints: vec![LbEndpoint {
                            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                                address: Some(target.endpoint),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            if target.protocol.is_http2() {
                cluster.typed_extension_protocol_options = http_options(true, CommonHttpOptions::default());
            }
            cluster
        })
        .collect()
}

fn inbound_passthrough(push: &PushContext) -> Cluster {
    Cluster {
        name: INBOUND_PASSTHROUGH_CLUSTER.to_string(),
        connect_timeout: Some(duration(&push.mesh.connect_timeout)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        upstream_bind_config: Some(BindConfig {
            source_address: Some(socket_address_inner("127.0.0.6")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn socket_address_inner(ip: &str) -> envoy_types::pb::envoy::config::core::v3::SocketAddress {
    envoy_types::pb::envoy::config::core::v3::SocketAddress {
        address: ip.to_string(),
        port_specifier: Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(0)),
        ..Default::default()
    }
}
