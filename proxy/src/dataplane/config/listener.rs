//! Listeners (LDS, or static in a config file) compiled for serving: the address and whether
//! it binds, the listener filters (original destination, TLS inspector, HTTP inspector), the
//! filter chains with their match criteria, and each chain's terminal network filter — an HTTP
//! connection manager or a TCP proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::listener::v3::{filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use ipnet::IpNet;
use istio_xds::patch_value::{FORWARD_DOWNSTREAM_SNI, SNI_VERIFIER};
use prost::Message;

use super::cluster::socket_of;
use super::route::{ClusterChoice, RouteTable, CORS_FILTER, FAULT_FILTER};

/// Envoy's Wasm HTTP filter, which here runs 1.4's built-in null-VM plugins.
const WASM_FILTER: &str = "envoy.filters.http.wasm";
use super::tls_source::{self, TlsMaterial};
use super::{duration, ConfigError};

pub(crate) const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub(crate) const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";

#[derive(Debug)]
pub(crate) struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub bind_to_port: bool,
    /// Hand connections to the listener owning their original destination (`SO_ORIGINAL_DST`).
    pub use_original_dst: bool,
    /// Read the original destination for chain matching (the `original_dst` listener filter).
    pub original_dst_filter: bool,
    pub tls_inspector: bool,
    pub http_inspector: bool,
    pub chains: Vec<Arc<FilterChainConfig>>,
    pub default_chain: Option<Arc<FilterChainConfig>>,
    /// `traffic_direction: INBOUND`: requests here are served (SERVER spans), not sent.
    pub inbound: bool,
}

#[derive(Debug)]
pub(crate) struct FilterChainConfig {
    pub name: String,
    pub matcher: ChainMatch,
    pub tls: Option<DownstreamTls>,
    pub filter: NetworkFilter,
    /// RBAC network filters before the terminal one, with their stat prefixes
    /// (`<stat_prefix>.rbac.`).
    pub rbac: Vec<(Arc<crate::dataplane::rbac::Rules>, String)>,
    /// Istio 1.4's `mixer` network filter: a connection is checked with Mixer when it opens.
    pub mixer: Option<Arc<crate::dataplane::mixer::filter::TcpMixer>>,
    /// istio-proxy's `sni_verifier`: behind this chain's TLS, the connection must open with a
    /// ClientHello for the SNI the outer TLS was opened with, or it is closed.
    pub sni_verifier: bool,
    /// A hash of the chain as configured: an update that leaves it the same keeps its
    /// connections, one that changes or removes it drains them (Envoy's in-place update).
    pub fingerprint: u64,
    /// Flips to true when an update drops or changes this chain.
    pub retired: tokio::sync::watch::Sender<bool>,
}

impl FilterChainConfig {
    /// Tells the chain's connections to finish (HTTP connections close once their in-flight
    /// requests are answered), as Envoy drains the connections of a changed filter chain.
    pub(crate) fn retire(&self) {
        self.retired.send_replace(true);
    }
}

/// A stable hash of a filter chain's configuration.
fn fingerprint(chain: &FilterChain) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    prost::Message::encode_to_vec(chain).hash(&mut hasher);
    hasher.finish()
}

/// A chain's `filter_chain_match`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<IpNet>,
    pub server_names: Vec<String>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
    pub source_prefix_ranges: Vec<IpNet>,
}

#[derive(Debug)]
pub(crate) enum NetworkFilter {
    Http(Arc<HttpManagerConfig>),
    Tcp(TcpProxyConfig),
}

#[derive(Debug)]
pub(crate) struct HttpManagerConfig {
    pub stat_prefix: String,
    pub routes: RouteSource,
    pub fault_filter: bool,
    pub cors_filter: bool,
    pub codec: Codec,
    pub generate_request_id: bool,
    pub use_remote_address: bool,
    pub stream_idle_timeout: Option<Duration>,
    pub access_logs: Vec<AccessLogConfig>,
    pub websocket: bool,
    /// Tracing on, with the percentage of requests sampled.
    pub tracing: Option<f64>,
    /// The RBAC HTTP filters, in the manager's order (a request must pass every one).
    pub rbac: Vec<Arc<crate::dataplane::rbac::Rules>>,
    /// The `jwt_authn` filters, in order; they run before RBAC, as Pilot places them.
    pub jwt_authn: Vec<Arc<crate::dataplane::jwt::JwtAuthn>>,
    /// Istio 1.4's `mixer` HTTP filter: requests are checked with Mixer once routed.
    pub mixer: Option<Arc<crate::dataplane::mixer::filter::HttpMixer>>,
    /// 1.4's `envoy.wasm.metadata_exchange` plugin: peers swap node metadata in headers.
    pub peer_exchange: bool,
    /// 1.4's `envoy.wasm.stats` plugin: every request counted with 1.4's labels.
    pub istio_stats: Option<crate::dataplane::telemetry_v2::config::StatsConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Auto,
    Http1,
    Http2,
}

#[derive(Debug)]
pub(crate) enum RouteSource {
    Rds(String),
    Inline(Arc<RouteTable>),
}

#[derive(Debug)]
pub(crate) struct TcpProxyConfig {
    pub stat_prefix: String,
    pub clusters: ClusterChoice,
    pub idle_timeout: Option<Duration>,
    pub access_logs: Vec<AccessLogConfig>,
    /// istio-proxy's `forward_downstream_sni` is on the chain: the upstream TLS's SNI is the
    /// downstream's.
    pub forward_downstream_sni: bool,
}

/// A file access log: where, and Envoy's text format (`None`: Envoy's default format).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccessLogConfig {
    pub path: String,
    pub format: Option<String>,
}

/// Downstream TLS (a gateway terminating TLS).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DownstreamTls {
    /// The server certificate, and the CA (and names) client certificates are checked against.
    pub material: TlsMaterial,
    pub require_client_certificate: bool,
    pub alpn: Vec<String>,
}

impl ListenerConfig {
    pub(crate) fn compile(listener: &Listener) -> Result<ListenerConfig, ConfigError> {
        ListenerConfig::compile_reusing(listener, None)
    }

    /// [`ListenerConfig::compile`], taking each chain whose configuration `previous` (the
    /// listener of that name now serving) has too from `previous` as it is, compiled, with
    /// its connections and state: see `dataplane::chain_update`.
    pub(crate) fn compile_reusing(
        listener: &Listener,
        previous: Option<&ListenerConfig>,
    ) -> Result<ListenerConfig, ConfigError> {
        let at = format!("listener {}", listener.name);
        let (host, port) =
            socket_of(listener.address.as_ref()).ok_or_else(|| ConfigError::new(&at, "needs a socket address"))?;
        let ip: IpAddr = host.parse().map_err(|_| ConfigError::new(&at, format!("address {host:?} is not an IP")))?;
        let mut config = ListenerConfig {
            name: listener.name.clone(),
            address: SocketAddr::new(ip, port),
            bind_to_port: listener.bind_to_port.as_ref().is_none_or(|value| value.value),
            use_original_dst: listener.use_original_dst.as_ref().is_some_and(|value| value.value),
            original_dst_filter: false,
            tls_inspector: false,
            http_inspector: false,
            chains: Vec::new(),
            default_chain: None,
            inbound: listener.traffic_direction
                == envoy_types::pb::envoy::config::core::v3::TrafficDirection::Inbound as i32,
        };
        for listener_filter in &listener.listener_filters {
            match listener_filter.name.as_str() {
                "envoy.filters.listener.original_dst" | "envoy.listener.original_dst" => {
                    config.original_dst_filter = true
                }
                "envoy.filters.listener.tls_inspector" | "envoy.listener.tls_inspector" => config.tls_inspector = true,
                "envoy.filters.listener.http_inspector" | "envoy.listener.http_inspector" => {
                    config.http_inspector = true
                }
                other => return Err(ConfigError::new(&at, format!("listener filter {other} is not supported"))),
            }
        }
        let reuse_or_compile = |chain: &FilterChain, at: String| -> Result<Arc<FilterChainConfig>, ConfigError> {
            let print = fingerprint(chain);
            match previous.and_then(|previous| previous.chain_with(print)) {
                Some(kept) => Ok(kept),
                None => compile_chain(chain, print, &at).map(Arc::new),
            }
        };
        for (index, chain) in listener.filter_chains.iter().enumerate() {
            config.chains.push(reuse_or_compile(chain, format!("{at}: filter_chains[{index}]"))?);
        }
        if let Some(chain) = &listener.default_filter_chain {
            config.default_chain = Some(reuse_or_compile(chain, format!("{at}: default_filter_chain"))?);
        }
        if config.chains.is_empty() && config.default_chain.is_none() {
            return Err(ConfigError::new(&at, "a listener needs at least one filter chain"));
        }
        Ok(config)
    }

    /// Every filter chain of this listener, the default chain last.
    pub(crate) fn all_chains(&self) -> impl Iterator<Item = &Arc<FilterChainConfig>> {
        self.chains.iter().chain(self.default_chain.iter())
    }

    /// This listener's compiled chain with the fingerprint `print`, if it has one.
    fn chain_with(&self, print: u64) -> Option<Arc<FilterChainConfig>> {
        self.all_chains().find(|chain| chain.fingerprint == print).cloned()
    }

    /// The RDS route names this listener's connection managers use.
    pub(crate) fn route_names(&self) -> Vec<String> {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .filter_map(|chain| match &chain.filter {
                NetworkFilter::Http(manager) => match &manager.routes {
                    RouteSource::Rds(name) => Some(name.clone()),
                    RouteSource::Inline(_) => None,
                },
                NetworkFilter::Tcp(_) => None,
            })
            .collect()
    }
}

fn compile_chain(chain: &FilterChain, fingerprint: u64, at: &str) -> Result<FilterChainConfig, ConfigError> {
    let matcher = match &chain.filter_chain_match {
        Some(found) => {
            let ranges = |ranges: &[envoy_types::pb::envoy::config::core::v3::CidrRange]| {
                ranges
                    .iter()
                    .map(|range| {
                        let length = range
                            .prefix_len
                            .as_ref()
                            .map_or(if range.address_prefix.contains(':') { 128 } else { 32 }, |len| len.value);
                        format!("{}/{length}", range.address_prefix).parse::<IpNet>().map(|net| net.trunc()).map_err(
                            |_| ConfigError::new(at, format!("{:?} is not a CIDR range", range.address_prefix)),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            ChainMatch {
                destination_port: found.destination_port.as_ref().map(|port| port.value as u16),
                prefix_ranges: ranges(&found.prefix_ranges)?,
                server_names: found.server_names.iter().map(|name| name.to_lowercase()).collect(),
                transport_protocol: Some(found.transport_protocol.clone()).filter(|protocol| !protocol.is_empty()),
                application_protocols: found.application_protocols.clone(),
                source_prefix_ranges: ranges(&found.source_prefix_ranges)?,
            }
        }
        None => ChainMatch::default(),
    };
    let tls = match &chain.transport_socket {
        Some(socket) if socket.name.ends_with("tls") => {
            let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(config)) =
                &socket.config_type
            else {
                return Err(ConfigError::new(at, "transport_socket: the TLS socket needs a typed_config"));
            };
            let context = DownstreamTlsContext::decode(config.value.as_slice())
                .map_err(|error| ConfigError::new(&format!("{at}: transport_socket"), error.to_string()))?;
            Some(downstream_tls(&context, at)?)
        }
        Some(socket) if socket.name.ends_with("raw_buffer") => None,
        Some(socket) => return Err(ConfigError::new(at, format!("transport_socket {} is not supported", socket.name))),
        None => None,
    };
    let Some(terminal) = chain.filters.last() else {
        return Err(ConfigError::new(at, "a filter chain needs a terminal filter"));
    };
    let mut rbac = Vec::new();
    let mut mixer = None;
    let (mut forward_downstream_sni, mut sni_verifier) = (false, false);
    for (index, leading) in chain.filters[..chain.filters.len() - 1].iter().enumerate() {
        let field = format!("{at}: filters[{index}] {}", leading.name);
        match leading.name.as_str() {
            FORWARD_DOWNSTREAM_SNI => forward_downstream_sni = true,
            SNI_VERIFIER => sni_verifier = true,
            crate::dataplane::mixer::config::FILTER => {
                let config: istio_api::pb::istio::mixer::v1::config::client::TcpClientConfig = typed_istio(
                    leading.config_type.as_ref(),
                    crate::dataplane::mixer::config::TCP_CONFIG_TYPE,
                    &field,
                )?;
                mixer = Some(Arc::new(crate::dataplane::mixer::filter::TcpMixer::from_proto(&config)));
            }
            crate::dataplane::rbac::NETWORK_FILTER | "envoy.filters.network.rbac.v3" => {
                let Some(filter::ConfigType::TypedConfig(typed)) = &leading.config_type else {
                    return Err(ConfigError::new(&field, "needs a typed_config"));
                };
                let config = envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac::decode(
                    typed.value.as_slice(),
                )
                .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                let (rules, stat_prefix) = crate::dataplane::rbac::Rules::network(&config, &field)?;
                let joined = if stat_prefix.ends_with('.') { stat_prefix } else { format!("{stat_prefix}.") };
                rbac.push((Arc::new(rules), format!("{joined}rbac.")));
            }
            other => return Err(ConfigError::new(at, format!("network filter {other} is not supported"))),
        }
    }
    let Some(filter::ConfigType::TypedConfig(typed)) = &terminal.config_type else {
        return Err(ConfigError::new(at, format!("filter {} needs a typed_config", terminal.name)));
    };
    let filter = match terminal.name.as_str() {
        HCM_FILTER | "envoy.http_connection_manager" => {
            let manager = HttpConnectionManager::decode(typed.value.as_slice())
                .map_err(|error| ConfigError::new(&format!("{at}: {HCM_FILTER}"), error.to_string()))?;
            NetworkFilter::Http(Arc::new(compile_manager(&manager, &format!("{at}: {HCM_FILTER}"))?))
        }
        TCP_PROXY_FILTER | "envoy.tcp_proxy" => {
            let proxy = TcpProxy::decode(typed.value.as_slice())
                .map_err(|error| ConfigError::new(&format!("{at}: {TCP_PROXY_FILTER}"), error.to_string()))?;
            let clusters = match &proxy.cluster_specifier {
                Some(tcp_proxy::ClusterSpecifier::Cluster(name)) => ClusterChoice::Single(name.clone()),
                Some(tcp_proxy::ClusterSpecifier::WeightedClusters(weighted)) => {
                    let pairs: Vec<(String, u32)> =
                        weighted.clusters.iter().map(|c| (c.name.clone(), c.weight)).collect();
                    let total = pairs.iter().map(|(_, weight)| u64::from(*weight)).sum::<u64>();
                    let Some(total) = u32::try_from(total).ok().filter(|total| *total > 0) else {
                        return Err(ConfigError::new(
                            at,
                            "tcp_proxy weighted_clusters: the weights must add up to between 1 and 2^32-1",
                        ));
                    };
                    ClusterChoice::Weighted(pairs, total)
                }
                _ => return Err(ConfigError::new(at, "tcp_proxy needs a cluster")),
            };
            NetworkFilter::Tcp(TcpProxyConfig {
                stat_prefix: proxy.stat_prefix.clone(),
                clusters,
                idle_timeout: match &proxy.idle_timeout {
                    None => Some(Duration::from_secs(3600)),
                    Some(timeout) => Some(duration(timeout)).filter(|timeout| !timeout.is_zero()),
                },
                access_logs: access_logs(&proxy.access_log, at)?,
                forward_downstream_sni,
            })
        }
        other => return Err(ConfigError::new(at, format!("network filter {other} is not supported"))),
    };
    if forward_downstream_sni && matches!(filter, NetworkFilter::Http(_)) {
        return Err(ConfigError::new(
            at,
            format!("{FORWARD_DOWNSTREAM_SNI} is supported before {TCP_PROXY_FILTER} only"),
        ));
    }
    Ok(FilterChainConfig {
        name: chain.name.clone(),
        matcher,
        tls,
        filter,
        rbac,
        mixer,
        sni_verifier,
        fingerprint,
        retired: tokio::sync::watch::channel(false).0,
    })
}

fn compile_manager(manager: &HttpConnectionManager, at: &str) -> Result<HttpManagerConfig, ConfigError> {
    let routes = match &manager.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(rds)) => RouteSource::Rds(rds.route_config_name.clone()),
        Some(http_connection_manager::RouteSpecifier::RouteConfig(config)) => {
            RouteSource::Inline(Arc::new(RouteTable::compile(config)?))
        }
        _ => return Err(ConfigError::new(at, "needs rds or route_config")),
    };
    let (mut fault_filter, mut cors_filter, mut router) = (false, false, false);
    let mut rbac = Vec::new();
    let mut jwt_authn = Vec::new();
    let mut mixer = None;
    let (mut peer_exchange, mut istio_stats) = (false, None);
    for http_filter in &manager.http_filters {
        match http_filter.name.as_str() {
            crate::dataplane::mixer::config::FILTER => {
                let field = format!("{at}: {}", http_filter.name);
                let typed = match &http_filter.config_type {
                    Some(http_filter::ConfigType::TypedConfig(typed)) => {
                        Some(filter::ConfigType::TypedConfig(typed.clone()))
                    }
                    _ => None,
                };
                let config: istio_api::pb::istio::mixer::v1::config::client::HttpClientConfig =
                    typed_istio(typed.as_ref(), crate::dataplane::mixer::config::HTTP_CONFIG_TYPE, &field)?;
                mixer = Some(Arc::new(crate::dataplane::mixer::filter::HttpMixer::from_proto(&config)));
            }
            FAULT_FILTER | "envoy.fault" => fault_filter = true,
            crate::dataplane::rbac::HTTP_FILTER | "envoy.rbac" => {
                let field = format!("{at}: {}", http_filter.name);
                let Some(http_filter::ConfigType::TypedConfig(typed)) = &http_filter.config_type else {
                    return Err(ConfigError::new(&field, "needs a typed_config"));
                };
                let config =
                    envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac::decode(typed.value.as_slice())
                        .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                rbac.push(Arc::new(crate::dataplane::rbac::Rules::http(&config, &field)?));
            }
            crate::dataplane::jwt::FILTER | "envoy.filters.http.jwt_authn.v3" => {
                let field = format!("{at}: {}", http_filter.name);
                let Some(http_filter::ConfigType::TypedConfig(typed)) = &http_filter.config_type else {
                    return Err(ConfigError::new(&field, "needs a typed_config"));
                };
                let config =
                    envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication::decode(
                        typed.value.as_slice(),
                    )
                    .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                if !rbac.is_empty() {
                    return Err(ConfigError::new(&field, "jwt_authn must come before the RBAC filters"));
                }
                jwt_authn.push(Arc::new(crate::dataplane::jwt::JwtAuthn::compile(&config, &field)?));
            }
            CORS_FILTER | "envoy.cors" => cors_filter = true,
            WASM_FILTER => {
                use crate::dataplane::telemetry_v2::config::{plugin, Plugin};
                let field = format!("{at}: {}", http_filter.name);
                let Some(http_filter::ConfigType::TypedConfig(typed)) = &http_filter.config_type else {
                    return Err(ConfigError::new(&field, "needs a typed_config"));
                };
                match plugin(&typed.value).map_err(|error| ConfigError::new(&field, error.to_string()))? {
                    Plugin::MetadataExchange => peer_exchange = true,
                    Plugin::Stats(config) => istio_stats = Some(config),
                }
            }
            "envoy.filters.http.router" | "envoy.router" => router = true,
            other if http_filter.is_optional => {
                tracing::debug!("{at}: skipping optional HTTP filter {other}");
            }
            other => return Err(ConfigError::new(at, format!("HTTP filter {other} is not supported"))),
        }
    }
    if !router {
        return Err(ConfigError::new(at, "the HTTP filters must end with envoy.filters.http.router"));
    }
    let codec = match http_connection_manager::CodecType::try_from(manager.codec_type)
        .unwrap_or(http_connection_manager::CodecType::Auto)
    {
        http_connection_manager::CodecType::Http1 => Codec::Http1,
        http_connection_manager::CodecType::Http2 => Codec::Http2,
        http_connection_manager::CodecType::Auto => Codec::Auto,
        http_connection_manager::CodecType::Http3 => return Err(ConfigError::new(at, "HTTP/3 is not supported")),
    };
    Ok(HttpManagerConfig {
        stat_prefix: manager.stat_prefix.clone(),
        routes,
        fault_filter,
        cors_filter,
        codec,
        generate_request_id: manager.generate_request_id.as_ref().is_none_or(|value| value.value),
        use_remote_address: manager.use_remote_address.as_ref().is_some_and(|value| value.value),
        stream_idle_timeout: match &manager.stream_idle_timeout {
            None => Some(Duration::from_secs(300)),
            Some(timeout) => Some(duration(timeout)).filter(|timeout| !timeout.is_zero()),
        },
        access_logs: access_logs(&manager.access_log, at)?,
        websocket: manager.upgrade_configs.iter().any(|upgrade| upgrade.upgrade_type.eq_ignore_ascii_case("websocket")),
        tracing: manager
            .tracing
            .as_ref()
            .map(|tracing| tracing.random_sampling.as_ref().map_or(100.0, |percent| percent.value)),
        rbac,
        jwt_authn,
        mixer,
        peer_exchange,
        istio_stats,
    })
}

/// An Istio message in a filter's `typed_config`, of the expected type.
fn typed_istio<T: prost::Message + Default>(
    config: Option<&filter::ConfigType>,
    type_name: &str,
    field: &str,
) -> Result<T, ConfigError> {
    let Some(filter::ConfigType::TypedConfig(typed)) = config else {
        return Err(ConfigError::new(field, "needs a typed_config"));
    };
    if typed.type_url.rsplit('/').next() != Some(type_name) {
        return Err(ConfigError::new(field, format!("typed_config must be a {type_name}, not {}", typed.type_url)));
    }
    T::decode(typed.value.as_slice()).map_err(|error| ConfigError::new(field, error.to_string()))
}

fn access_logs(logs: &[AccessLog], at: &str) -> Result<Vec<AccessLogConfig>, ConfigError> {
    logs.iter()
        .map(|log| {
            let Some(access_log::ConfigType::TypedConfig(typed)) = &log.config_type else {
                return Err(ConfigError::new(at, format!("access log {} needs a typed_config", log.name)));
            };
            if !typed.type_url.ends_with("envoy.extensions.access_loggers.file.v3.FileAccessLog") {
                return Err(ConfigError::new(at, format!("access log type {} is not supported", typed.type_url)));
            }
            let file = FileAccessLog::decode(typed.value.as_slice())
                .map_err(|error| ConfigError::new(at, error.to_string()))?;
            #[allow(deprecated)]
            let format = match &file.access_log_format {
                Some(file_access_log::AccessLogFormat::Format(text)) => Some(text.clone()),
                Some(file_access_log::AccessLogFormat::LogFormat(format)) => match &format.format {
                    Some(envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::TextFormat(
                        text,
                    )) => Some(text.clone()),
                    Some(
                        envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::TextFormatSource(
                            source,
                        ),
                    ) => match &source.specifier {
                        Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(text)) => {
                            Some(text.clone())
                        }
                        _ => None,
                    },
                    _ => return Err(ConfigError::new(at, "only text access log formats are supported")),
                },
                _ => None,
            };
            Ok(AccessLogConfig { path: file.path.clone(), format })
        })
        .collect()
}

fn downstream_tls(context: &DownstreamTlsContext, at: &str) -> Result<DownstreamTls, ConfigError> {
    let common = context.common_tls_context.clone().unwrap_or_default();
    let material = tls_source::material(&common, &format!("{at}: transport_socket"))?;
    if !material.has_certificate() {
        return Err(ConfigError::new(
            at,
            "downstream TLS needs a certificate (tls_certificates or tls_certificate_sds_secret_configs)",
        ));
    }
    Ok(DownstreamTls {
        material,
        require_client_certificate: context.require_client_certificate.as_ref().is_some_and(|value| value.value),
        alpn: common.alpn_protocols.clone(),
    })
}

/// What is known about a connection when its filter chain is chosen.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionFacts {
    pub destination: Option<SocketAddr>,
    pub source: Option<SocketAddr>,
    pub server_name: Option<String>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: &'static str,
    /// From the TLS ALPN or the HTTP inspector (`http/1.1`, `h2c`).
    pub application_protocols: Vec<String>,
}

impl ListenerConfig {
    /// Envoy's filter-chain selection: narrow by destination port, then destination IP (longest
    /// prefix), server name (exact, then longest wildcard), transport protocol, application
    /// protocols, then source IP; a criterion a chain leaves empty matches anything but loses to
    /// a chain that names the value. Falls back to the default chain.
    pub(crate) fn select_chain(&self, facts: &ConnectionFacts) -> Option<Arc<FilterChainConfig>> {
        let mut candidates: Vec<&Arc<FilterChainConfig>> = self.chains.iter().collect();
        let port = facts.destination.map(|address| address.port());
        narrow(&mut candidates, |chain| match chain.matcher.destination_port {
            None => Some(0),
            Some(wanted) => (Some(wanted) == port).then_some(1),
        });
        let destination_ip = facts.destination.map(|address| address.ip());
        narrow(&mut candidates, |chain| prefix_score(&chain.matcher.prefix_ranges, destination_ip));
        let server_name = facts.server_name.as_deref().map(str::to_lowercase);
        narrow(&mut candidates, |chain| {
            if chain.matcher.server_names.is_empty() {
                return Some(0);
            }
            let name = server_name.as_deref()?;
            chain
                .matcher
                .server_names
                .iter()
                .filter_map(|pattern| {
                    if pattern == name {
                        Some(1000)
                    } else {
                        pattern
                            .strip_prefix('*')
                            .filter(|suffix| name.ends_with(suffix) && name.len() > suffix.len())
                            .map(|suffix| suffix.len())
                    }
                })
                .max()
        });
        narrow(&mut candidates, |chain| match &chain.matcher.transport_protocol {
            None => Some(0),
            Some(protocol) => (protocol == facts.transport_protocol).then_some(1),
        });
        narrow(&mut candidates, |chain| {
            if chain.matcher.application_protocols.is_empty() {
                Some(0)
            } else {
                chain.matcher.application_protocols.iter().any(|p| facts.application_protocols.contains(p)).then_some(1)
            }
        });
        let source_ip = facts.source.map(|address| address.ip());
        narrow(&mut candidates, |chain| prefix_score(&chain.matcher.source_prefix_ranges, source_ip));
        candidates.first().map(|chain| (*chain).clone()).or_else(|| self.default_chain.clone())
    }
}

/// Keeps the candidates with the best score; `None` means the chain does not match.
fn narrow<'a>(candidates: &mut Vec<&'a Arc<FilterChainConfig>>, score: impl Fn(&FilterChainConfig) -> Option<usize>) {
    let scored: Vec<(usize, &'a Arc<FilterChainConfig>)> =
        candidates.iter().filter_map(|chain| score(chain).map(|value| (value, *chain))).collect();
    let best = scored.iter().map(|(value, _)| *value).max();
    *candidates = scored.into_iter().filter(|(value, _)| Some(*value) == best).map(|(_, chain)| chain).collect();
}

/// 0 for "any address", 1 + prefix length for the longest matching range, `None` if no range matches.
fn prefix_score(ranges: &[IpNet], ip: Option<IpAddr>) -> Option<usize> {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = ip?;
    ranges.iter().filter(|range| range.contains(&ip)).map(|range| 1 + range.prefix_len() as usize).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str, matcher: ChainMatch) -> Arc<FilterChainConfig> {
        Arc::new(FilterChainConfig {
            name: name.into(),
            matcher,
            tls: None,
            filter: NetworkFilter::Tcp(TcpProxyConfig {
                stat_prefix: name.into(),
                clusters: ClusterChoice::Single(name.into()),
                idle_timeout: None,
                access_logs: Vec::new(),
                forward_downstream_sni: false,
            }),
            rbac: Vec::new(),
            mixer: None,
            sni_verifier: false,
            fingerprint: 0,
            retired: tokio::sync::watch::channel(false).0,
        })
    }

    fn listener(chains: Vec<Arc<FilterChainConfig>>) -> ListenerConfig {
        ListenerConfig {
            name: "l".into(),
            address: "0.0.0.0:15006".parse().expect("addr"),
            bind_to_port: true,
            use_original_dst: false,
            original_dst_filter: true,
            tls_inspector: false,
            http_inspector: false,
            chains,
            default_chain: Some(chain("default", ChainMatch::default())),
            inbound: true,
        }
    }

    fn facts(destination: &str, sni: Option<&str>, transport: &'static str) -> ConnectionFacts {
        ConnectionFacts {
            destination: Some(destination.parse().expect("addr")),
            source: Some("10.0.0.1:5555".parse().expect("addr")),
            server_name: sni.map(str::to_string),
            transport_protocol: transport,
            application_protocols: Vec::new(),
        }
    }

    #[test]
    fn chains_are_chosen_like_envoy() {
        let listener = listener(vec![
            chain("9080", ChainMatch { destination_port: Some(9080), ..Default::default() }),
            chain(
                "9080-tls",
                ChainMatch {
                    destination_port: Some(9080),
                    transport_protocol: Some("tls".into()),
                    ..Default::default()
                },
            ),
            chain(
                "exact-sni",
                ChainMatch {
                    destination_port: Some(443),
                    server_names: vec!["a.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "wild-sni",
                ChainMatch {
                    destination_port: Some(443),
                    server_names: vec!["*.example.com".into()],
                    ..Default::default()
                },
            ),
            chain("ip", ChainMatch { prefix_ranges: vec!["10.1.0.0/16".parse().expect("net")], ..Default::default() }),
        ]);
        let name = |facts: ConnectionFacts| listener.select_chain(&facts).map(|chain| chain.name.clone());
        assert_eq!(name(facts("10.0.0.2:9080", None, "raw_buffer")), Some("9080".into()));
        assert_eq!(name(facts("10.0.0.2:9080", Some("x"), "tls")), Some("9080-tls".into()));
        assert_eq!(name(facts("10.0.0.2:443", Some("a.example.com"), "tls")), Some("exact-sni".into()));
        assert_eq!(name(facts("10.0.0.2:443", Some("b.example.com"), "tls")), Some("wild-sni".into()));
        assert_eq!(name(facts("10.0.0.2:443", Some("other.org"), "tls")), Some("default".into()));
        assert_eq!(name(facts("10.1.2.3:7000", None, "raw_buffer")), Some("ip".into()));
        assert_eq!(name(facts("10.2.2.3:7000", None, "raw_buffer")), Some("default".into()));
    }

    /// A chain of `leading` filters (each with an empty Struct config, as Pilot types them)
    /// before `terminal`.
    fn chain_with(leading: &[&str], terminal: filter::ConfigType, terminal_name: &str) -> FilterChain {
        use envoy_types::pb::envoy::config::listener::v3::Filter;
        use envoy_types::pb::google::protobuf::Any;
        let mut filters: Vec<Filter> = leading
            .iter()
            .map(|name| Filter {
                name: name.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/google.protobuf.Struct".into(),
                    value: Vec::new(),
                })),
            })
            .collect();
        filters.push(Filter { name: terminal_name.into(), config_type: Some(terminal) });
        FilterChain { filters, ..FilterChain::default() }
    }

    fn typed(type_name: &str, message: &impl Message) -> filter::ConfigType {
        filter::ConfigType::TypedConfig(envoy_types::pb::google::protobuf::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: message.encode_to_vec(),
        })
    }

    #[test]
    fn istio_proxys_sni_filters_are_read_before_a_tcp_proxy_only() {
        let tcp = TcpProxy {
            stat_prefix: "wiki".into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("outbound|443||wiki".into())),
            ..TcpProxy::default()
        };
        let tcp = typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", &tcp);
        let plain = compile_chain(&chain_with(&[], tcp.clone(), TCP_PROXY_FILTER), 0, "c").expect("plain chain");
        let NetworkFilter::Tcp(proxy) = &plain.filter else { panic!("a TCP proxy") };
        assert!(!proxy.forward_downstream_sni && !plain.sni_verifier);

        let both = chain_with(&[SNI_VERIFIER, FORWARD_DOWNSTREAM_SNI], tcp, TCP_PROXY_FILTER);
        let compiled = compile_chain(&both, 0, "c").expect("chain with both filters");
        let NetworkFilter::Tcp(proxy) = &compiled.filter else { panic!("a TCP proxy") };
        assert!(proxy.forward_downstream_sni && compiled.sni_verifier);

        let manager = HttpConnectionManager {
            stat_prefix: "http".into(),
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Default::default())),
            http_filters: vec![
                envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter {
                    name: "envoy.filters.http.router".into(),
                    ..Default::default()
                },
            ],
            ..HttpConnectionManager::default()
        };
        let manager =
            typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", &manager);
        let error = compile_chain(&chain_with(&[FORWARD_DOWNSTREAM_SNI], manager, HCM_FILTER), 0, "c").unwrap_err();
        assert!(error.to_string().contains("forward_downstream_sni is supported before"), "{error}");
    }
}
