//! Clusters (CDS, or static in a config file) and their endpoints (EDS or `load_assignment`)
//! compiled into what the upstream side needs: how endpoints are found, the load-balancing
//! policy, circuit-breaker thresholds, outlier detection, the HTTP protocol to speak upstream,
//! connection limits and timeouts, and upstream TLS.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, HealthStatus};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{http_protocol_options, HttpProtocolOptions};
use prost::Message;

use super::tls_source::{self, TlsMaterial};
use super::{duration, ConfigError};

const HTTP_OPTIONS_EXTENSION: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TLS_TRANSPORT: &str = "envoy.transport_sockets.tls";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClusterConfig {
    pub name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    pub connect_timeout: Duration,
    pub limits: Limits,
    pub outlier: Option<OutlierConfig>,
    /// Speak HTTP/2 to the endpoints (gRPC, h2c).
    pub http2: bool,
    pub max_requests_per_connection: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub tls: Option<UpstreamTls>,
    /// `transport_socket_matches`: the first whose labels an endpoint's
    /// `envoy.transport_socket_match` metadata has decides that endpoint's TLS (Istio's
    /// automatic mutual TLS); endpoints none matches use `tls`.
    pub tls_matches: Vec<TlsMatch>,
    /// The source address of upstream connections (`upstream_bind_config`).
    pub bind_address: Option<IpAddr>,
    /// Endpoints given in the cluster itself (STATIC, STRICT_DNS).
    pub load_assignment: Vec<EndpointConfig>,
    /// `common_lb_config.healthy_panic_threshold` (percent; Envoy's default 50): below it, a
    /// priority balances over all its hosts, healthy or not; 0 never does.
    pub healthy_panic_threshold: f64,
    /// `common_lb_config.locality_weighted_lb_config`: a locality is picked by its weight
    /// first, then a host in it.
    pub locality_weighted: bool,
}

/// Envoy's default `healthy_panic_threshold`.
pub(crate) const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

/// One `transport_socket_matches` entry: the labels an endpoint must carry, and its TLS
/// (`None`: plaintext).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsMatch {
    pub labels: BTreeMap<String, String>,
    pub tls: Option<UpstreamTls>,
}

/// The metadata filter whose fields endpoints match transport sockets with.
pub(crate) const SOCKET_MATCH_METADATA: &str = "envoy.transport_socket_match";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Discovery {
    /// Endpoints arrive over EDS under this name.
    Eds(String),
    Static,
    /// Re-resolve the load assignment's host names every `refresh`.
    StrictDns {
        refresh: Duration,
    },
    /// Connect to where the downstream connection was originally going.
    OriginalDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    ClusterProvided,
}

/// Circuit-breaker thresholds (Envoy's defaults: 1024 connections, pending and requests, 3 retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutlierConfig {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub enforcing_consecutive_5xx: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// One endpoint: where it is, its weight and whether EDS marked it healthy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointConfig {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
    pub priority: u32,
    /// The `envoy.transport_socket_match` metadata (Istio's `tlsMode`).
    pub socket_match: BTreeMap<String, String>,
    /// Its locality (`region/zone/subzone`) and that locality's weight (0: none given).
    pub locality: String,
    pub locality_weight: u32,
}

impl EndpointConfig {
    /// The socket address when the host is an IP.
    pub(crate) fn socket_address(&self) -> Option<SocketAddr> {
        self.host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, self.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamTls {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The client certificate (optional), the CA that checks the server's certificate and the
    /// subject alternative names it must carry (any of them).
    pub material: TlsMaterial,
}

impl ClusterConfig {
    pub(crate) fn compile(cluster: &Cluster) -> Result<ClusterConfig, ConfigError> {
        let at = format!("cluster {}", cluster.name);
        let discovery_type = match &cluster.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(kind)) => cluster::DiscoveryType::try_from(*kind)
                .map_err(|_| ConfigError::new(&at, format!("unknown discovery type {kind}")))?,
            Some(cluster::ClusterDiscoveryType::ClusterType(custom)) => {
                return Err(ConfigError::new(&at, format!("custom cluster type {} is not supported", custom.name)))
            }
            None => cluster::DiscoveryType::Static,
        };
        let discovery = match discovery_type {
            cluster::DiscoveryType::Eds => Discovery::Eds(
                cluster
                    .eds_cluster_config
                    .as_ref()
                    .map(|eds| eds.service_name.clone())
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| cluster.name.clone()),
            ),
            cluster::DiscoveryType::Static => Discovery::Static,
            #[allow(deprecated)]
            cluster::DiscoveryType::StrictDns | cluster::DiscoveryType::LogicalDns => Discovery::StrictDns {
                refresh: cluster.dns_refresh_rate.as_ref().map(duration).unwrap_or(Duration::from_secs(5)),
            },
            cluster::DiscoveryType::OriginalDst => Discovery::OriginalDst,
        };
        let lb_policy = match cluster::LbPolicy::try_from(cluster.lb_policy).unwrap_or(cluster::LbPolicy::RoundRobin) {
            cluster::LbPolicy::RoundRobin => LbPolicy::RoundRobin,
            cluster::LbPolicy::LeastRequest => LbPolicy::LeastRequest,
            cluster::LbPolicy::Random => LbPolicy::Random,
            cluster::LbPolicy::RingHash | cluster::LbPolicy::Maglev => LbPolicy::RingHash,
            cluster::LbPolicy::ClusterProvided => LbPolicy::ClusterProvided,
            other => return Err(ConfigError::new(&at, format!("lb_policy {} is not supported", other.as_str_name()))),
        };
        let mut limits = Limits::default();
        if let Some(thresholds) = cluster.circuit_breakers.as_ref().and_then(|breakers| breakers.thresholds.first()) {
            let value = |field: &Option<envoy_types::pb::google::protobuf::UInt32Value>, default: u32| {
                field.as_ref().map_or(default, |value| value.value)
            };
            limits = Limits {
                max_connections: value(&thresholds.max_connections, limits.max_connections),
                max_pending_requests: value(&thresholds.max_pending_requests, limits.max_pending_requests),
                max_requests: value(&thresholds.max_requests, limits.max_requests),
                max_retries: value(&thresholds.max_retries, limits.max_retries),
            };
        }
        let outlier = cluster.outlier_detection.as_ref().map(|detection| {
            let value = |field: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
                field.as_ref().map(|value| value.value)
            };
            OutlierConfig {
                // Envoy's default is 5 consecutive 5xx, enforced 100%.
                consecutive_5xx: value(&detection.consecutive_5xx).or(Some(5)).filter(|count| *count > 0),
                consecutive_gateway_failure: value(&detection.consecutive_gateway_failure).filter(|count| *count > 0),
                enforcing_consecutive_5xx: value(&detection.enforcing_consecutive_5xx).unwrap_or(100),
                enforcing_consecutive_gateway_failure: value(&detection.enforcing_consecutive_gateway_failure)
                    .unwrap_or(0),
                interval: detection.interval.as_ref().map(duration).unwrap_or(Duration::from_secs(10)),
                base_ejection_time: detection
                    .base_ejection_time
                    .as_ref()
                    .map(duration)
                    .unwrap_or(Duration::from_secs(30)),
                max_ejection_percent: value(&detection.max_ejection_percent).unwrap_or(10).min(100),
            }
        });
        let mut http2 = false;
        let mut max_requests_per_connection = None;
        let mut idle_timeout = None;
        if let Some(options) = cluster.typed_extension_protocol_options.get(HTTP_OPTIONS_EXTENSION) {
            let options = HttpProtocolOptions::decode(options.value.as_slice()).map_err(|error| {
                ConfigError::new(&format!("{at}: typed_extension_protocol_options"), error.to_string())
            })?;
            if let Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) =
                &options.upstream_protocol_options
            {
                http2 = matches!(
                    explicit.protocol_config,
                    Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(_))
                );
            }
            if let Some(common) = &options.common_http_protocol_options {
                max_requests_per_connection =
                    common.max_requests_per_connection.as_ref().map(|value| value.value).filter(|v| *v > 0);
                idle_timeout = common.idle_timeout.as_ref().map(duration).filter(|timeout| !timeout.is_zero());
            }
        }
        #[allow(deprecated)]
        if cluster.http2_protocol_options.is_some() {
            http2 = true;
        }
        let tls = transport_tls(cluster.transport_socket.as_ref(), &format!("{at}: transport_socket"))?;
        let mut tls_matches = Vec::new();
        for (index, entry) in cluster.transport_socket_matches.iter().enumerate() {
            let field = format!("{at}: transport_socket_matches[{index}]");
            tls_matches.push(TlsMatch {
                labels: string_fields(entry.r#match.as_ref()),
                tls: transport_tls(entry.transport_socket.as_ref(), &field)?,
            });
        }
        let bind_address = match cluster.upstream_bind_config.as_ref().and_then(|bind| bind.source_address.as_ref()) {
            Some(source) => Some(source.address.parse::<IpAddr>().map_err(|_| {
                ConfigError::new(&at, format!("upstream_bind_config: {:?} is not an IP", source.address))
            })?),
            None => None,
        };
        let load_assignment = match &cluster.load_assignment {
            Some(assignment) => endpoints(assignment, &at)?,
            None => Vec::new(),
        };
        if matches!(discovery, Discovery::Static) {
            if let Some(bad) = load_assignment.iter().find(|endpoint| endpoint.socket_address().is_none()) {
                return Err(ConfigError::new(&at, format!("a STATIC cluster needs IP addresses, not {:?}", bad.host)));
            }
        }
        let common = cluster.common_lb_config.as_ref();
        let healthy_panic_threshold = common
            .and_then(|common| common.healthy_panic_threshold.as_ref())
            .map_or(DEFAULT_PANIC_THRESHOLD, |percent| percent.value.clamp(0.0, 100.0));
        let locality_weighted = common.is_some_and(|common| {
            matches!(
                common.locality_config_specifier,
                Some(cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
            )
        });
        Ok(ClusterConfig {
            name: cluster.name.clone(),
            discovery,
            lb_policy,
            connect_timeout: cluster.connect_timeout.as_ref().map(duration).unwrap_or(Duration::from_secs(5)),
            limits,
            outlier,
            http2,
            max_requests_per_connection,
            idle_timeout,
            tls,
            tls_matches,
            bind_address,
            load_assignment,
            healthy_panic_threshold,
            locality_weighted,
        })
    }
}

/// A transport socket's upstream TLS (`None`: plaintext, or no socket).
fn transport_tls(
    socket: Option<&envoy_types::pb::envoy::config::core::v3::TransportSocket>,
    at: &str,
) -> Result<Option<UpstreamTls>, ConfigError> {
    match socket {
        Some(socket) if socket.name == TLS_TRANSPORT || socket.name.ends_with(".tls") => {
            let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(config)) =
                &socket.config_type
            else {
                return Err(ConfigError::new(at, "the TLS socket needs a typed_config"));
            };
            let context = UpstreamTlsContext::decode(config.value.as_slice())
                .map_err(|error| ConfigError::new(at, error.to_string()))?;
            Ok(Some(upstream_tls(&context, at)?))
        }
        Some(socket) if socket.name == "envoy.transport_sockets.raw_buffer" => Ok(None),
        Some(socket) => Err(ConfigError::new(at, format!("transport_socket {} is not supported", socket.name))),
        None => Ok(None),
    }
}

/// The string fields of a protobuf Struct (transport socket match labels, endpoint metadata).
fn string_fields(fields: Option<&envoy_types::pb::google::protobuf::Struct>) -> BTreeMap<String, String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    fields
        .into_iter()
        .flat_map(|fields| fields.fields.iter())
        .filter_map(|(key, value)| match &value.kind {
            Some(Kind::StringValue(text)) => Some((key.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

/// The endpoints of a load assignment (EDS or inline), with their priority.
pub(crate) fn endpoints(assignment: &ClusterLoadAssignment, at: &str) -> Result<Vec<EndpointConfig>, ConfigError> {
    let mut found = Vec::new();
    for (locality_index, locality) in assignment.endpoints.iter().enumerate() {
        for (index, lb_endpoint) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("{at}: endpoints[{locality_index}].lb_endpoints[{index}]");
            let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb_endpoint.host_identifier else {
                return Err(ConfigError::new(&field, "named endpoints are not supported"));
            };
            let is_pipe = matches!(
                endpoint.address.as_ref().and_then(|address| address.address.as_ref()),
                Some(address::Address::Pipe(_))
            );
            if is_pipe {
                // A Unix socket (the node agent's SDS socket): not a destination for proxied
                // traffic here; the cluster stays, without this endpoint.
                tracing::debug!("{field}: skipping a pipe endpoint");
                continue;
            }
            let (host, port) = socket_of(endpoint.address.as_ref())
                .ok_or_else(|| ConfigError::new(&field, "needs a socket address"))?;
            let status = HealthStatus::try_from(lb_endpoint.health_status).unwrap_or(HealthStatus::Unknown);
            found.push(EndpointConfig {
                host,
                port,
                weight: lb_endpoint.load_balancing_weight.as_ref().map_or(1, |weight| weight.value.max(1)),
                healthy: matches!(status, HealthStatus::Unknown | HealthStatus::Healthy | HealthStatus::Degraded),
                priority: locality.priority,
                locality: locality.locality.as_ref().map(istio_xds::locality::name).unwrap_or_default(),
                locality_weight: locality.load_balancing_weight.as_ref().map_or(0, |weight| weight.value),
                socket_match: string_fields(
                    lb_endpoint
                        .metadata
                        .as_ref()
                        .and_then(|metadata| metadata.filter_metadata.get(SOCKET_MATCH_METADATA)),
                ),
            });
        }
    }
    Ok(found)
}

/// `host` and port of a socket address (`None` for pipes and named ports).
pub(crate) fn socket_of(address: Option<&Address>) -> Option<(String, u16)> {
    match address?.address.as_ref()? {
        address::Address::SocketAddress(socket) => match socket.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(port)) => {
                Some((socket.address.clone(), u16::try_from(port).ok()?))
            }
            _ => None,
        },
        _ => None,
    }
}

fn upstream_tls(context: &UpstreamTlsContext, at: &str) -> Result<UpstreamTls, ConfigError> {
    let common = context.common_tls_context.clone().unwrap_or_default();
    Ok(UpstreamTls {
        sni: Some(context.sni.clone()).filter(|sni| !sni.is_empty()),
        alpn: common.alpn_protocols.clone(),
        material: tls_source::material(&common, &format!("{at}: transport_socket"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, CircuitBreakers};
    use envoy_types::pb::envoy::config::core::v3::SocketAddress;
    use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};
    use envoy_types::pb::google::protobuf::UInt32Value;

    /// Istio's automatic mutual TLS: `tlsMode: istio` endpoints take the TLS socket, the
    /// others the plaintext one.
    #[test]
    fn transport_socket_matches_follow_the_endpoints_metadata() {
        use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
        use envoy_types::pb::envoy::config::core::v3::{transport_socket, Metadata, TransportSocket};
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        let labels = |mode: Option<&str>| Struct {
            fields: mode
                .map(|mode| ("tlsMode".to_string(), Value { kind: Some(Kind::StringValue(mode.to_string())) }))
                .into_iter()
                .collect(),
        };
        let tls_socket = TransportSocket {
            name: TLS_TRANSPORT.to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(envoy_types::util::pack_any(
                UpstreamTlsContext {
                    sni: "outbound_.8000_._.httpbin.foo.svc.cluster.local".into(),
                    ..Default::default()
                },
            ))),
        };
        let raw = TransportSocket { name: "envoy.transport_sockets.raw_buffer".into(), ..Default::default() };
        let mut load_assignment = assignment(&[("10.1.0.1", 80), ("10.1.0.2", 80)]);
        load_assignment.endpoints[0].lb_endpoints[0].metadata = Some(Metadata {
            filter_metadata: [(SOCKET_MATCH_METADATA.to_string(), labels(Some("istio")))].into_iter().collect(),
            ..Default::default()
        });
        let cluster = Cluster {
            name: "outbound|8000||httpbin.foo.svc.cluster.local".into(),
            transport_socket_matches: vec![
                TransportSocketMatch {
                    name: "tlsMode-istio".into(),
                    r#match: Some(labels(Some("istio"))),
                    transport_socket: Some(tls_socket),
                },
                TransportSocketMatch {
                    name: "tlsMode-disabled".into(),
                    r#match: Some(labels(None)),
                    transport_socket: Some(raw),
                },
            ],
            load_assignment: Some(load_assignment),
            ..Default::default()
        };
        let compiled = ClusterConfig::compile(&cluster).expect("compiles");
        assert_eq!(compiled.tls_matches.len(), 2);
        assert_eq!(compiled.tls_matches[0].labels.get("tlsMode").map(String::as_str), Some("istio"));
        assert!(compiled.tls_matches[0].tls.as_ref().is_some_and(|tls| tls.sni.is_some()));
        assert!(compiled.tls_matches[1].labels.is_empty() && compiled.tls_matches[1].tls.is_none());
        assert_eq!(compiled.load_assignment[0].socket_match.get("tlsMode").map(String::as_str), Some("istio"));
        assert!(compiled.load_assignment[1].socket_match.is_empty());
    }

    fn assignment(hosts: &[(&str, u32)]) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: hosts
                    .iter()
                    .map(|(host, port)| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(Address {
                                address: Some(address::Address::SocketAddress(SocketAddress {
                                    address: host.to_string(),
                                    port_specifier: Some(socket_address::PortSpecifier::PortValue(*port)),
                                    ..Default::default()
                                })),
                            }),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn eds_cluster_with_istio_connection_pool() {
        let cluster = Cluster {
            name: "outbound|8000||httpbin.default.svc.cluster.local".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
            circuit_breakers: Some(CircuitBreakers {
                thresholds: vec![circuit_breakers::Thresholds {
                    max_connections: Some(UInt32Value { value: 1 }),
                    max_pending_requests: Some(UInt32Value { value: 1 }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let compiled = ClusterConfig::compile(&cluster).expect("compile");
        assert_eq!(compiled.discovery, Discovery::Eds("outbound|8000||httpbin.default.svc.cluster.local".into()));
        assert_eq!(
            compiled.limits,
            Limits { max_connections: 1, max_pending_requests: 1, max_requests: 1024, max_retries: 3 }
        );
        assert_eq!(compiled.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn static_clusters_need_ips() {
        let cluster = Cluster {
            name: "inbound|9080||".into(),
            load_assignment: Some(assignment(&[("localhost", 9080)])),
            ..Default::default()
        };
        let error = ClusterConfig::compile(&cluster).expect_err("a name in a STATIC cluster");
        assert!(error.to_string().contains("cluster inbound|9080||"), "{error}");
        let cluster = Cluster { load_assignment: Some(assignment(&[("127.0.0.1", 9080)])), ..cluster };
        let compiled = ClusterConfig::compile(&cluster).expect("compile");
        assert_eq!(compiled.load_assignment[0].socket_address(), Some("127.0.0.1:9080".parse().expect("addr")));
    }
}
