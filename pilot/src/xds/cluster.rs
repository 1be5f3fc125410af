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

use super::tls::{istio_mutual_tls, san_matcher, CertSource};
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
            let name: ClusterName = cluster.name.parse().ok()?;
            if name.direction != TrafficDirection::Outbound {
                return None;
            }
            let original = std::mem::replace(&mut cluster.name, name.dns_srv());
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
            let first = clusters.len();
            clusters.push(outbound_cluster(push, service, port, "", top_policy, &scope.certs));
            for subset in rule.map(|rule| rule.spec.subsets.as_slice()).unwrap_or_default() {
                let policy = merge_policy(top_policy, subset.traffic_policy.as_ref());
                clusters.push(outbound_cluster(push, service, port, &subset.name, policy.as_ref(), &scope.certs));
            }
            if let Some(rule) = rule {
                for cluster in &mut clusters[first..] {
                    cluster.metadata =
                        Some(super::istio_config_metadata("destination-rule", &rule.namespace, &rule.name));
                }
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
    certs: &CertSource,
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
        // As 1.4: with outlier detection, the panic threshold is the rule's minHealthPercent
        // (0 unless set: with few pods per service, Envoy's 50 % would rarely help), and
        // localities are balanced by their weights (what `localityLbSetting` distributes).
        cluster.common_lb_config = Some(cluster::CommonLbConfig {
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: f64::from(outlier.min_health_percent.max(0)),
            }),
            locality_config_specifier: Some(
                cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    cluster::common_lb_config::LocalityWeightedLbConfig::default(),
                ),
            ),
            ..Default::default()
        });
    }
    match policy.tls {
        Some(tls) => cluster.transport_socket = upstream_tls(tls, service, port, subset, certs),
        None if auto_mtls_applies(push, service, port) => {
            cluster.transport_socket_matches = auto_mtls_matches(service, port, subset, certs);
        }
        None => {}
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

/// Automatic mutual TLS (`enableAutoMtls`), as 1.4 chose it: for a mesh service whose port
/// accepts mutual TLS (a PERMISSIVE or STRICT policy) when no DestinationRule says how to
/// talk to it.
fn auto_mtls_applies(push: &PushContext, service: &Service, port: &ServicePort) -> bool {
    push.mesh.auto_mtls
        && !service.mesh_external
        && crate::scope::authn::inbound_mode(push, service, port) != crate::scope::authn::MtlsMode::Disable
}

/// The endpoint label (`security.istio.io/tlsMode`, in EDS metadata under
/// `envoy.transport_socket_match`) that says an endpoint has a sidecar taking mutual TLS.
pub(crate) const TLS_MODE_MATCH_KEY: &str = "tlsMode";

/// 1.4's transport socket matches for automatic mutual TLS: Istio mutual TLS for endpoints
/// labelled `tlsMode: istio`, plaintext for the rest.
fn auto_mtls_matches(
    service: &Service,
    port: &ServicePort,
    subset: &str,
    certs: &CertSource,
) -> Vec<cluster::TransportSocketMatch> {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let istio_mutual = net::TlsSettings { mode: net::tls_settings::TlSmode::IstioMutual as i32, ..Default::default() };
    let labels = Struct {
        fields: [(TLS_MODE_MATCH_KEY.to_string(), Value { kind: Some(Kind::StringValue("istio".to_string())) })]
            .into_iter()
            .collect(),
    };
    vec![
        cluster::TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(labels),
            transport_socket: upstream_tls(&istio_mutual, service, port, subset, certs),
        },
        cluster::TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".to_string(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(any(
                    envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer::default(),
                ))),
            }),
        },
    ]
}

/// Upstream TLS for a DestinationRule's `tls`. ISTIO_MUTUAL uses the workload certificate:
/// the `/etc/certs` files of 1.4's default install, or SDS for a proxy in SDS mode.
fn upstream_tls(
    tls: &net::TlsSettings,
    service: &Service,
    port: &ServicePort,
    subset: &str,
    certs: &CertSource,
) -> Option<TransportSocket> {
    use net::tls_settings::TlSmode;
    let mode = TlSmode::try_from(tls.mode).unwrap_or(TlSmode::Disable);
    let (common, sni) = match mode {
        TlSmode::Disable => return None,
        TlSmode::IstioMutual => {
            // The mesh's ALPN (and h2 for HTTP/2 ports); the server must be one of the service's
            // accounts, unless the rule names others.
            let mut alpn = vec!["istio".to_string()];
            if port.protocol.is_http2() {
                alpn.push("h2".to_string());
            }
            let peers =
                if tls.subject_alt_names.is_empty() { &service.service_accounts } else { &tls.subject_alt_names };
            // The rule's SNI when it gives one (routing through a gateway by SNI), else the
            // cluster's own name, as 1.4 set it.
            let sni = if tls.sni.is_empty() {
                format!("outbound_.{}_.{subset}_.{}", port.number, service.hostname)
            } else {
                tls.sni.clone()
            };
            (istio_mutual_tls(alpn, certs, peers), sni)
        }
        TlSmode::Simple | TlSmode::Mutual => {
            let mut common = CommonTlsContext::default();
            if port.protocol.is_http2() {
                // An HTTP/2 upstream is offered h2 alone, as 1.4 did.
                common.alpn_protocols = vec!["h2".to_string()];
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{destination_rule, push, reviews, service_entry, sidecar};
    use envoy_types::pb::google::protobuf::Duration;
    use serde_json::json;

    fn named<'a>(clusters: &'a [Cluster], name: &str) -> &'a Cluster {
        clusters.iter().find(|cluster| cluster.name == name).unwrap_or_else(|| panic!("no cluster {name}"))
    }

    fn discovery(cluster: &Cluster) -> Option<cluster::DiscoveryType> {
        match cluster.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(value)) => cluster::DiscoveryType::try_from(value).ok(),
            _ => None,
        }
    }

    fn tls_context(cluster: &Cluster) -> UpstreamTlsContext {
        let Some(TransportSocket { config_type: Some(transport_socket::ConfigType::TypedConfig(any)), .. }) =
            &cluster.transport_socket
        else {
            panic!("{} has no TLS", cluster.name)
        };
        prost::Message::decode(any.value.as_slice()).expect("UpstreamTlsContext")
    }

    const REVIEWS: &str = "reviews.default.svc.cluster.local";

    /// A DestinationRule's subsets each get a cluster; its traffic policy becomes the load
    /// balancer, circuit breakers and outlier detection, a subset's own policy winning.
    #[test]
    fn subsets_and_their_traffic_policy_become_clusters() {
        let rule = destination_rule(
            "default",
            "reviews",
            json!({
                "host": "reviews",
                "trafficPolicy": {
                    "loadBalancer": {"simple": "LEAST_CONN"},
                    "connectionPool": {
                        "tcp": {"maxConnections": 10, "connectTimeout": "2s"},
                        "http": {"http1MaxPendingRequests": 5, "maxRequestsPerConnection": 1, "maxRetries": 3}
                    },
                    "outlierDetection": {"consecutiveErrors": 3, "interval": "10s", "baseEjectionTime": "30s",
                                         "maxEjectionPercent": 50}
                },
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}
                ]
            }),
        );
        let push = push(reviews(), vec![rule]);
        let clusters = shared_clusters(&push, &ProxyScope::of(&push, &sidecar("default", "10.1.0.9", &[])));
        let names: Vec<&str> = clusters.iter().map(|cluster| cluster.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "outbound|9080||reviews.default.svc.cluster.local",
                "outbound|9080|v1|reviews.default.svc.cluster.local",
                "outbound|9080|v2|reviews.default.svc.cluster.local",
                "BlackHoleCluster",
                "PassthroughCluster"
            ]
        );
        let whole = named(&clusters, &format!("outbound|9080||{REVIEWS}"));
        assert_eq!(discovery(whole), Some(cluster::DiscoveryType::Eds));
        assert_eq!(whole.lb_policy, cluster::LbPolicy::LeastRequest as i32);
        assert_eq!(whole.connect_timeout, Some(Duration { seconds: 2, nanos: 0 }));
        let thresholds = &whole.circuit_breakers.as_ref().expect("circuit breakers").thresholds[0];
        assert_eq!(thresholds.max_connections, Some(UInt32Value { value: 10 }));
        assert_eq!(thresholds.max_pending_requests, Some(UInt32Value { value: 5 }));
        assert_eq!(thresholds.max_retries, Some(UInt32Value { value: 3 }));
        assert_eq!(thresholds.max_requests, None, "0 means unset");
        let outlier = whole.outlier_detection.as_ref().expect("outlier detection");
        assert_eq!(outlier.consecutive_gateway_failure, Some(UInt32Value { value: 3 }));
        assert_eq!(outlier.enforcing_consecutive_5xx, Some(UInt32Value { value: 0 }), "only gateway errors count");
        assert_eq!(outlier.base_ejection_time, Some(Duration { seconds: 30, nanos: 0 }));
        assert_eq!(outlier.max_ejection_percent, Some(UInt32Value { value: 50 }));
        let common = whole.common_lb_config.as_ref().expect("common LB config with outlier detection");
        assert_eq!(common.healthy_panic_threshold.as_ref().map(|p| p.value), Some(0.0), "panic mode off, as 1.4");
        assert!(
            matches!(
                common.locality_config_specifier,
                Some(cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
            ),
            "localities weighted"
        );
        assert!(whole.typed_extension_protocol_options.contains_key(HTTP_OPTIONS_EXTENSION), "per-connection limit");

        assert_eq!(named(&clusters, &format!("outbound|9080|v1|{REVIEWS}")).lb_policy, whole.lb_policy);
        let v2 = named(&clusters, &format!("outbound|9080|v2|{REVIEWS}"));
        assert_eq!(v2.lb_policy, cluster::LbPolicy::Random as i32, "the subset's load balancer wins");
        assert_eq!(v2.outlier_detection, whole.outlier_detection, "the rest comes from the rule");
    }

    #[test]
    fn port_level_settings_override_the_rule_for_their_port() {
        let rule = destination_rule(
            "default",
            "reviews",
            json!({"host": "reviews", "trafficPolicy": {
                "loadBalancer": {"simple": "ROUND_ROBIN"},
                "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}]
            }}),
        );
        let push = push(reviews(), vec![rule]);
        let clusters = shared_clusters(&push, &ProxyScope::of(&push, &sidecar("default", "10.1.0.9", &[])));
        let whole = named(&clusters, &format!("outbound|9080||{REVIEWS}"));
        assert_eq!(whole.lb_policy, cluster::LbPolicy::RingHash as i32);
        let Some(cluster::LbConfig::RingHashLbConfig(ring)) = &whole.lb_config else { panic!("no ring config") };
        assert_eq!(ring.minimum_ring_size.as_ref().map(|size| size.value), Some(1024));
    }

    /// ISTIO_MUTUAL uses the workload certificate — files in 1.4's default install, SDS for a
    /// proxy in SDS mode — and the SNI Istio's gateways route by; SIMPLE checks the CA and names.
    /// Automatic mutual TLS: only with `enableAutoMtls`, for a port whose policy takes mutual
    /// TLS, and only where no DestinationRule sets TLS.
    #[test]
    fn auto_mtls_matches_sidecar_endpoints_where_no_rule_sets_tls() {
        let matches = |push: &PushContext| {
            let proxy = sidecar("default", "10.1.0.9", &[]);
            let clusters = shared_clusters(push, &ProxyScope::of(push, &proxy));
            let reviews = named(&clusters, &format!("outbound|9080||{REVIEWS}"));
            (
                reviews.transport_socket_matches.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
                reviews.transport_socket.is_some(),
            )
        };
        let mut context = push(reviews(), vec![]);
        context.mesh_policy = Some(crate::testing::authn_policy(
            "",
            "default",
            serde_json::json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}),
        ));
        assert_eq!(matches(&context), (vec![], false), "auto mTLS off");
        context.mesh.auto_mtls = true;
        assert_eq!(matches(&context), (vec!["tlsMode-istio".to_string(), "tlsMode-disabled".to_string()], false));
        context.mesh_policy = None;
        assert_eq!(matches(&context), (vec![], false), "the server takes no mutual TLS");
        context.mesh_policy =
            Some(crate::testing::authn_policy("", "default", serde_json::json!({"peers": [{"mtls": {}}]})));
        context.destination_rules = vec![destination_rule(
            "default",
            "reviews",
            serde_json::json!({"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
        )];
        assert_eq!(matches(&context), (vec![], true), "the rule's TLS wins");
    }

    #[test]
    fn tls_modes_give_the_right_contexts() {
        let rule = |mode: serde_json::Value| {
            destination_rule("default", "reviews", json!({"host": "reviews", "trafficPolicy": {"tls": mode}}))
        };
        let proxy = sidecar("default", "10.1.0.9", &[]);
        let mutual = push(reviews(), vec![rule(json!({"mode": "ISTIO_MUTUAL"}))]);
        let files = shared_clusters(&mutual, &ProxyScope::of(&mutual, &proxy));
        let context = tls_context(named(&files, &format!("outbound|9080||{REVIEWS}")));
        assert_eq!(context.sni, format!("outbound_.9080_._.{REVIEWS}"));
        let common = context.common_tls_context.expect("common context");
        assert_eq!(common.alpn_protocols, ["istio"]);
        // A rule's SNI wins over the cluster name (routing to a gateway by SNI).
        let by_sni = push(reviews(), vec![rule(json!({"mode": "ISTIO_MUTUAL", "sni": "edition.cnn.com"}))]);
        let clusters = shared_clusters(&by_sni, &ProxyScope::of(&by_sni, &proxy));
        assert_eq!(tls_context(named(&clusters, &format!("outbound|9080||{REVIEWS}"))).sni, "edition.cnn.com");
        assert_eq!(common.tls_certificates[0].certificate_chain, file_source(istio_pki::files::DEFAULT_CERT_CHAIN));

        let mut sds_proxy = proxy.clone();
        sds_proxy.sds = true;
        let over_sds = shared_clusters(&mutual, &ProxyScope::of(&mutual, &sds_proxy));
        let common = tls_context(named(&over_sds, &format!("outbound|9080||{REVIEWS}"))).common_tls_context.unwrap();
        assert!(common.tls_certificates.is_empty());
        assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
        let source = |common: &envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext| {
            use envoy_types::pb::envoy::config::core::v3::{config_source, grpc_service};
            let config = common.tls_certificate_sds_secret_configs[0].sds_config.clone().expect("sds config");
            let Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) = config.config_source_specifier
            else {
                panic!("not an API config source")
            };
            api.grpc_services[0].target_specifier.clone().map(|target| match target {
                grpc_service::TargetSpecifier::EnvoyGrpc(envoy) => format!("envoy_grpc {}", envoy.cluster_name),
                grpc_service::TargetSpecifier::GoogleGrpc(google) => format!(
                    "google_grpc {} {} {}",
                    google.target_uri, google.stat_prefix, google.credentials_factory_name
                ),
            })
        };
        assert_eq!(source(&common).as_deref(), Some("envoy_grpc sds-grpc"), "the agent's socket");

        // With a node agent (`sdsUdsPath`), 1.4's Google gRPC with the token as call credentials.
        let mut with_node_agent = push(reviews(), vec![rule(json!({"mode": "ISTIO_MUTUAL"}))]);
        with_node_agent.mesh.sds_uds_path = "unix:/var/run/sds/uds_path".to_string();
        let scope = ProxyScope::of(&with_node_agent, &sds_proxy);
        assert!(
            scope.key.ends_with("|sds:unix:/var/run/sds/uds_path:/var/run/secrets/tokens/istio-token"),
            "{}",
            scope.key
        );
        let clusters = shared_clusters(&with_node_agent, &scope);
        let common = tls_context(named(&clusters, &format!("outbound|9080||{REVIEWS}"))).common_tls_context.unwrap();
        assert_eq!(
            source(&common).as_deref(),
            Some("google_grpc unix:/var/run/sds/uds_path sdsstat envoy.grpc_credentials.file_based_metadata")
        );
        // A proxy whose own agent serves its mounted files keeps to `sds-grpc`.
        let mut agent_served = sds_proxy.clone();
        agent_served.agent_sds = true;
        let clusters = shared_clusters(&with_node_agent, &ProxyScope::of(&with_node_agent, &agent_served));
        let common = tls_context(named(&clusters, &format!("outbound|9080||{REVIEWS}"))).common_tls_context.unwrap();
        assert_eq!(source(&common).as_deref(), Some("envoy_grpc sds-grpc"));

        let simple = push(
            reviews(),
            vec![rule(json!({"mode": "SIMPLE", "caCertificates": "/etc/ca.pem", "sni": "reviews.example",
                             "subjectAltNames": ["spiffe://cluster.local/ns/default/sa/reviews"]}))],
        );
        let clusters = shared_clusters(&simple, &ProxyScope::of(&simple, &proxy));
        let context = tls_context(named(&clusters, &format!("outbound|9080||{REVIEWS}")));
        assert_eq!(context.sni, "reviews.example");
        let Some(common_tls_context::ValidationContextType::ValidationContext(validation)) =
            context.common_tls_context.and_then(|common| common.validation_context_type)
        else {
            panic!("no validation context")
        };
        assert_eq!(validation.trusted_ca, file_source("/etc/ca.pem"));
        assert_eq!(validation.match_typed_subject_alt_names.len(), 1);

        let disabled = push(reviews(), vec![rule(json!({"mode": "DISABLE"}))]);
        let clusters = shared_clusters(&disabled, &ProxyScope::of(&disabled, &proxy));
        assert!(named(&clusters, &format!("outbound|9080||{REVIEWS}")).transport_socket.is_none());
    }

    /// DNS services resolve in the proxy; services without resolution pass through.
    #[test]
    fn resolution_picks_the_discovery_type() {
        let mut services = service_entry(
            "default",
            json!({"hosts": ["httpbin.org"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                   "location": "MESH_EXTERNAL", "resolution": "DNS"}),
        );
        services.extend(service_entry(
            "default",
            json!({"hosts": ["*.wikipedia.org"], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                   "location": "MESH_EXTERNAL", "resolution": "NONE"}),
        ));
        services.extend(service_entry(
            "default",
            json!({"hosts": ["grpc.default.svc.cluster.local"], "ports": [{"number": 7070, "name": "grpc", "protocol": "GRPC"}],
                   "resolution": "STATIC", "endpoints": [{"address": "10.1.0.40"}]}),
        ));
        let push = push(services, Vec::new());
        let clusters = shared_clusters(&push, &ProxyScope::of(&push, &sidecar("default", "10.1.0.9", &[])));
        let dns = named(&clusters, "outbound|80||httpbin.org");
        assert_eq!(discovery(dns), Some(cluster::DiscoveryType::StrictDns));
        let endpoint = &dns.load_assignment.as_ref().expect("assignment").endpoints[0].lb_endpoints[0];
        let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &endpoint.host_identifier else { panic!() };
        assert_eq!(endpoint.address, Some(socket_address("httpbin.org", 80)));
        let passthrough = named(&clusters, "outbound|443||*.wikipedia.org");
        assert_eq!(discovery(passthrough), Some(cluster::DiscoveryType::OriginalDst));
        assert_eq!(passthrough.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
        let grpc = named(&clusters, "outbound|7070||grpc.default.svc.cluster.local");
        assert!(grpc.typed_extension_protocol_options.contains_key(HTTP_OPTIONS_EXTENSION), "gRPC is HTTP/2");
    }

    /// A sidecar gets an inbound cluster per port of the services it is an endpoint of, sending
    /// to the application on 127.0.0.1, and the inbound passthrough cluster.
    #[test]
    fn sidecars_get_inbound_clusters_for_their_own_service() {
        let push = push(reviews(), Vec::new());
        let proxy = sidecar("default", "10.1.0.22", &[("app", "reviews"), ("version", "v2")]);
        let clusters = proxy_clusters(&push, &proxy);
        let names: Vec<&str> = clusters.iter().map(|cluster| cluster.name.as_str()).collect();
        assert_eq!(names, [format!("inbound|9080|http|{REVIEWS}").as_str(), INBOUND_PASSTHROUGH_CLUSTER]);
        let inbound = &clusters[0];
        assert_eq!(discovery(inbound), Some(cluster::DiscoveryType::Static));
        let endpoint = &inbound.load_assignment.as_ref().expect("assignment").endpoints[0].lb_endpoints[0];
        let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &endpoint.host_identifier else { panic!() };
        assert_eq!(endpoint.address, Some(socket_address("127.0.0.1", 9080)));
        let bind = clusters[1].upstream_bind_config.as_ref().expect("bind config");
        assert_eq!(bind.source_address.as_ref().map(|address| address.address.as_str()), Some("127.0.0.6"));
        assert!(proxy_clusters(&push, &sidecar("default", "10.9.9.9", &[]))
            .iter()
            .all(|c| !c.name.starts_with("inbound|")));
    }

    /// An `sni-dnat` gateway also gets every outbound cluster under its SNI name, without TLS of
    /// its own and still fed by the original cluster's endpoints.
    #[test]
    fn sni_dnat_gateways_get_sni_named_clusters() {
        let rule = destination_rule(
            "default",
            "reviews",
            json!({"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                   "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}),
        );
        let push = push(reviews(), vec![rule]);
        let mut gateway = sidecar("istio-system", "10.1.0.50", &[("istio", "ingressgateway")]);
        gateway.kind = ProxyKind::Router;
        gateway.sni_dnat = true;
        let clusters = proxy_clusters(&push, &gateway);
        let names: Vec<&str> = clusters.iter().map(|cluster| cluster.name.as_str()).collect();
        assert_eq!(names, [format!("outbound_.9080_._.{REVIEWS}"), format!("outbound_.9080_.v1_.{REVIEWS}")]);
        assert!(clusters.iter().all(|cluster| cluster.transport_socket.is_none()));
        let eds = clusters[1].eds_cluster_config.as_ref().expect("EDS");
        assert_eq!(eds.service_name, format!("outbound|9080|v1|{REVIEWS}"));
        gateway.sni_dnat = false;
        assert!(proxy_clusters(&push, &gateway).is_empty());
    }
}
