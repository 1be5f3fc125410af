//! LDS. Gateways (`router` proxies whose labels a Gateway selects) get a listener per server
//! port: HTTP servers share the route configuration `http.PORT`; TCP servers proxy to the
//! destinations of the bound VirtualServices' TCP routes. Sidecars get `virtualOutbound`
//! (:15001, original-destination hand-off to the per-port outbound listeners, which do not bind),
//! outbound listeners per service port (`0.0.0.0_PORT` for HTTP with RDS `PORT`,
//! `ADDRESS_PORT` for TCP); `virtualInbound` is `inbound_listener`'s.
//!
//! The HTTP filter chain is Istio's order: plugin filters (authn, authz, Mixer: later issues fill
//! `HttpPlugins`), then CORS, fault and the router.

use crate::push_status::Conflict;
use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use istio_api::pb::istio::networking::v1alpha3 as net;

use istio_xds::ClusterName;

use super::route::{CORS_FILTER, FAULT_FILTER};
use super::{ads_source, any, socket_address, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, VIRTUAL_OUTBOUND};
use crate::model::{Named, Protocol, PushContext, Service, ServicePort};
use crate::node::ProxyKind;
use crate::scope::virtual_services::{qualify_gateway, virtual_services_for};
use crate::scope::ProxyScope;

/// Filters inserted before CORS, fault and router; empty until authn/authz/Mixer exist.
pub(crate) type HttpPlugins = Vec<HttpFilter>;

/// What the mesh config adds to every listener: access logs and tracing.
pub(crate) fn decorate(listeners: &mut [Listener], push: &PushContext, kind: ProxyKind) {
    super::access_log::add_access_logs(listeners, &push.mesh);
    super::tracing::add_tracing(listeners, &push.mesh, kind);
}

fn http_filters(plugins: HttpPlugins) -> Vec<HttpFilter> {
    let mut filters = plugins;
    filters.push(HttpFilter {
        name: CORS_FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(Cors::default()))),
        ..Default::default()
    });
    filters.push(HttpFilter {
        name: FAULT_FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(HttpFault::default()))),
        ..Default::default()
    });
    filters.push(HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(Router::default()))),
        ..Default::default()
    });
    filters
}

pub(super) fn connection_manager(stat_prefix: &str, routes: http_connection_manager::RouteSpecifier) -> Filter {
    connection_manager_with(stat_prefix, routes, Vec::new())
}

/// A connection manager whose HTTP filters start with `plugins` (authorization), before CORS,
/// fault and the router.
pub(super) fn connection_manager_with(
    stat_prefix: &str,
    routes: http_connection_manager::RouteSpecifier,
    plugins: HttpPlugins,
) -> Filter {
    let manager = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(routes),
        http_filters: http_filters(plugins),
        use_remote_address: Some(BoolValue { value: false }),
        generate_request_id: Some(BoolValue { value: true }),
        // As in 1.4, WebSocket upgrades are allowed on every HTTP listener.
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(manager))),
    }
}

pub(super) fn rds(route_name: &str) -> http_connection_manager::RouteSpecifier {
    http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads_source()),
        route_config_name: route_name.to_string(),
    })
}

pub(super) fn tcp_proxy_filter(stat_prefix: &str, clusters: &[(String, u32)]) -> Filter {
    let specifier = match clusters {
        [(cluster, _)] => tcp_proxy::ClusterSpecifier::Cluster(cluster.clone()),
        _ => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: name.clone(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let proxy =
        TcpProxy { stat_prefix: stat_prefix.to_string(), cluster_specifier: Some(specifier), ..Default::default() };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(proxy))),
    }
}

pub(super) fn listener(name: String, ip: &str, port: u32, chains: Vec<FilterChain>, bind: bool) -> Listener {
    Listener {
        name,
        address: Some(socket_address(ip, port)),
        filter_chains: chains,
        bind_to_port: (!bind).then_some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Whether a TCP or TLS route match applies on `port` for a gateway (`ns/name`) or, for `None`,
/// the mesh: its `port` (0 for any) and its `gateways` (none: the VirtualService's own).
fn l4_match_applies(
    match_port: u32,
    gateways: &[String],
    port: u32,
    gateway: Option<&str>,
    vs_namespace: &str,
) -> bool {
    if match_port != 0 && match_port != port {
        return false;
    }
    if gateways.is_empty() {
        return true;
    }
    let wanted = gateway.unwrap_or("mesh");
    gateways.iter().any(|g| if g == "mesh" { wanted == "mesh" } else { qualify_gateway(g, vs_namespace) == wanted })
}

/// Weighted clusters of one TCP or TLS route's destinations, resolved from `vs_namespace`.
/// A lone destination gets all the traffic whatever its weight; among several, a weight of 0
/// means none (the destination is left out), as in Istio.
fn route_clusters(
    push: &PushContext,
    routes: &[net::RouteDestination],
    vs_namespace: &str,
    port: u32,
) -> Vec<(String, u32)> {
    let single = routes.len() == 1;
    routes
        .iter()
        .filter(|route| single || route.weight > 0)
        .map(|route| {
            let destination = route.destination.clone().unwrap_or_default();
            let host = push.qualify(&destination.host, vs_namespace);
            let target = destination
                .port
                .map(|p| p.number)
                .filter(|n| *n != 0)
                .or_else(|| push.service(&host).and_then(|s| s.ports.first()).map(|p| p.number))
                .unwrap_or(port);
            (
                ClusterName::outbound(target, &destination.subset, &host).to_string(),
                if single { 100 } else { u32::try_from(route.weight).unwrap_or(0) },
            )
        })
        .collect()
}

/// The `tls` routes of a VirtualService that apply on `port`: per route match, the SNI hosts
/// (those `sni_allowed` lets through) and the weighted clusters they go to.
pub(super) fn tls_routes(
    push: &PushContext,
    vs: &Named<net::VirtualService>,
    port: u32,
    gateway: Option<&str>,
    sni_allowed: impl Fn(&str) -> bool,
) -> TlsChains {
    let mut routes = Vec::new();
    for tls in &vs.spec.tls {
        let clusters = route_clusters(push, &tls.route, &vs.namespace, port);
        if clusters.is_empty() {
            continue;
        }
        for matcher in
            tls.r#match.iter().filter(|m| l4_match_applies(m.port, &m.gateways, port, gateway, &vs.namespace))
        {
            let sni: Vec<String> = matcher.sni_hosts.iter().filter(|host| sni_allowed(host)).cloned().collect();
            if !sni.is_empty() {
                routes.push((sni, clusters.clone()));
            }
        }
    }
    routes
}

/// Clusters (with weights) of the TCP routes a VirtualService set sends a port to.
pub(super) fn tcp_destinations<'a>(
    push: &PushContext,
    services: impl Iterator<Item = &'a Named<net::VirtualService>>,
    port: u32,
    gateway: Option<&str>,
    host_filter: impl Fn(&str, &str) -> bool,
) -> Option<Vec<(String, u32)>> {
    for vs in services {
        if !vs.spec.hosts.iter().any(|host| host_filter(host, &vs.namespace)) {
            continue;
        }
        for tcp in &vs.spec.tcp {
            let applies = tcp.r#match.is_empty()
                || tcp.r#match.iter().any(|m| l4_match_applies(m.port, &m.gateways, port, gateway, &vs.namespace));
            if !applies {
                continue;
            }
            let clusters = route_clusters(push, &tcp.route, &vs.namespace, port);
            if !clusters.is_empty() {
                return Some(clusters);
            }
        }
    }
    None
}

/// The listeners of a sidecar that only depend on the mesh: `virtualOutbound` and the per-port
/// outbound listeners.
pub(crate) fn sidecar_outbound_listeners(push: &PushContext, scope: &ProxyScope) -> Vec<Listener> {
    let passthrough = if scope.allow_any(push) { PASSTHROUGH_CLUSTER } else { BLACKHOLE_CLUSTER };
    let mesh_services: Vec<&Named<net::VirtualService>> =
        virtual_services_for(push, None).filter(|vs| scope.sees_virtual_service(vs)).collect();
    let OutboundPorts { http_ports, tls_chains, mut tcp_listeners } =
        OutboundPorts::collect(push, scope, &mesh_services);
    for (name, (ip, port, routes)) in tls_chains {
        if !tcp_listeners.contains_key(&name) {
            tcp_listeners.insert(name.clone(), tls_listener(name, &ip, port, routes, passthrough));
        }
    }
    let sniffed = sniffed_ports(push);
    let mut listeners = vec![virtual_outbound(push, passthrough)];
    for (port, tcp_fallbacks) in http_ports {
        // TLS services without a VIP on this port keep their SNI chains inside the HTTP listener.
        let displaced = tcp_listeners.remove(&format!("0.0.0.0_{port}"));
        if displaced.as_ref().is_some_and(|listener| !only_sni_chains(listener)) {
            push.status.conflict(
                Conflict::OutboundHttpOverCurrentTcp,
                &format!("0.0.0.0_{port}"),
                &format!("Conflicting wildcard listener:0.0.0.0_{port}; an HTTP service takes the port from a TCP one"),
            );
        }
        let sni_chains = sni_chains_of(displaced);
        let http = if sniffed.contains(&port) {
            sniffing_http_listener(port, &tcp_fallbacks, passthrough)
        } else {
            listener(format!("0.0.0.0_{port}"), "0.0.0.0", port, vec![http_chain(port, None, false)], false)
        };
        listeners.push(with_sni_chains(http, sni_chains));
    }
    listeners.extend(tcp_listeners.into_values());
    listeners
}

/// `virtualOutbound`: where iptables sends every outbound connection. It hands each to the
/// listener for its original destination; what none takes passes through (or is black-holed,
/// per outboundTrafficPolicy).
fn virtual_outbound(push: &PushContext, passthrough: &str) -> Listener {
    let mut outbound = listener(
        VIRTUAL_OUTBOUND.to_string(),
        "0.0.0.0",
        push.mesh.proxy_listen_port,
        vec![FilterChain {
            name: VIRTUAL_OUTBOUND.to_string(),
            filters: vec![tcp_proxy_filter(passthrough, &[(passthrough.to_string(), 100)])],
            ..Default::default()
        }],
        true,
    );
    outbound.use_original_dst = Some(BoolValue { value: true });
    outbound
}

/// The port 1.4 kept for HTTPS: an HTTP service there would take all external TLS traffic.
const HTTPS_PORT: u32 = 443;

/// Whether HTTP services on port 443 are left out (`PILOT_BLOCK_HTTP_ON_443`, on by default).
fn block_http_on_https_port() -> bool {
    static BLOCK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BLOCK.get_or_init(|| std::env::var("PILOT_BLOCK_HTTP_ON_443").map_or(true, |value| value != "false"))
}

/// Ports where some service leaves its protocol undeclared: their listeners sniff it.
fn sniffed_ports(push: &PushContext) -> BTreeSet<u32> {
    push.services
        .values()
        .flat_map(|service| service.ports.iter())
        .filter(|port| port.protocol == Protocol::Unsupported)
        .map(|port| port.number)
        .collect()
}

/// What a sidecar's visible services ask of its outbound listeners, port by port.
#[derive(Default)]
struct OutboundPorts {
    /// HTTP ports, with the (VIP, cluster) of services whose protocol there is undeclared.
    http_ports: BTreeMap<u32, Vec<(String, String)>>,
    /// TLS listeners by name: address, port and (SNI hosts, clusters) per chain, in order.
    tls_chains: BTreeMap<String, (String, u32, TlsChains)>,
    /// TCP listeners by name (`ADDRESS_PORT`), one per service address and port.
    tcp_listeners: BTreeMap<String, Listener>,
}

impl OutboundPorts {
    fn collect(push: &PushContext, scope: &ProxyScope, mesh_services: &[&Named<net::VirtualService>]) -> Self {
        let mut ports = OutboundPorts::default();
        for service in push.services.values().filter(|service| scope.sees_service(service)) {
            for port in service.ports.iter().filter(|port| scope.sees_service_port(service, port.number)) {
                if port.protocol == Protocol::Http && port.number == HTTPS_PORT && block_http_on_https_port() {
                    push.status.conflict(
                        Conflict::OutboundHttpOverHttps,
                        &service.hostname,
                        &format!(
                            "listener conflict detected: service {} specifies an HTTP service on HTTPS only port {HTTPS_PORT}.",
                            service.hostname
                        ),
                    );
                    continue;
                }
                if port.protocol.is_http() {
                    ports.add_http(service, port);
                } else if matches!(port.protocol, Protocol::Https | Protocol::Tls) {
                    ports.add_tls(push, mesh_services, service, port.number);
                } else if matches!(port.protocol, Protocol::Tcp | Protocol::Mongo | Protocol::Redis | Protocol::Mysql) {
                    ports.add_tcp(push, mesh_services, service, port.number);
                }
            }
        }
        ports
    }

    /// An HTTP port. Undeclared protocols are sniffed: remember which services (VIP, cluster)
    /// may get plain TCP on it.
    fn add_http(&mut self, service: &Service, port: &ServicePort) {
        let sniffed = self.http_ports.entry(port.number).or_default();
        if port.protocol == Protocol::Unsupported {
            if let Some(vip) = &service.address {
                sniffed.push((vip.clone(), ClusterName::outbound(port.number, "", &service.hostname).to_string()));
            }
        }
    }

    /// A TLS port: the TLS routes of the VirtualServices for the service, then the service
    /// itself.
    fn add_tls(
        &mut self,
        push: &PushContext,
        mesh_services: &[&Named<net::VirtualService>],
        service: &Service,
        port: u32,
    ) {
        let ip = service.address.clone().unwrap_or_else(|| "0.0.0.0".to_string());
        let chains = self.tls_chains.entry(format!("{ip}_{port}")).or_insert_with(|| (ip, port, Vec::new()));
        let service_cluster = ClusterName::outbound(port, "", &service.hostname).to_string();
        // The VirtualServices whose hosts match the service's, wildcards included (1.4's
        // `getConfigsForHost`): `*.wikipedia.org` routes on `www.wikipedia.org`'s port.
        let mut routed = false;
        for vs in mesh_services.iter().copied() {
            if !vs
                .spec
                .hosts
                .iter()
                .any(|host| crate::host::hosts_match(&push.qualify(host, &vs.namespace), &service.hostname))
            {
                continue;
            }
            for (sni, clusters) in tls_routes(push, vs, port, None, |_| true) {
                chains.2.push((sni, clusters));
                routed = true;
            }
        }
        if routed {
            // As 1.4: a port its VirtualServices route gets no chain of the service's own.
            return;
        }
        // Without a VIP of its own the port is shared, so the service is told apart by SNI (its
        // hostname); with one, the whole address:port is the service's.
        let sni = if chains.0 == "0.0.0.0" { vec![service.hostname.clone()] } else { Vec::new() };
        chains.2.push((sni, vec![(service_cluster, 100)]));
    }

    /// A TCP port: the first service on an address and port takes it, split as its
    /// VirtualServices' TCP routes say.
    fn add_tcp(
        &mut self,
        push: &PushContext,
        mesh_services: &[&Named<net::VirtualService>],
        service: &Service,
        port: u32,
    ) {
        let ip = service.address.clone().unwrap_or_else(|| "0.0.0.0".to_string());
        let name = format!("{ip}_{port}");
        if self.tcp_listeners.contains_key(&name) {
            push.status.conflict(
                Conflict::OutboundTcpOverCurrentTcp,
                &name,
                &format!("Conflicting tcp listener:{name}; {} left out", service.hostname),
            );
            return;
        }
        let service_cluster = ClusterName::outbound(port, "", &service.hostname).to_string();
        // A VirtualService's short host names a service of its own namespace.
        let clusters = tcp_destinations(push, mesh_services.iter().copied(), port, None, |host, namespace| {
            crate::host::hosts_match(&push.qualify(host, namespace), &service.hostname)
        })
        .unwrap_or_else(|| vec![(service_cluster.clone(), 100)]);
        let chain = FilterChain { filters: vec![tcp_proxy_filter(&service_cluster, &clusters)], ..Default::default() };
        self.tcp_listeners.insert(name.clone(), listener(name, &ip, port, vec![chain], false));
    }
}

/// Whether every chain of a listener matches on SNI (TLS services, which an HTTP listener on
/// the same port keeps rather than displaces).
fn only_sni_chains(listener: &Listener) -> bool {
    listener
        .filter_chains
        .iter()
        .all(|chain| chain.filter_chain_match.as_ref().is_some_and(|m| !m.server_names.is_empty()))
}

/// The SNI chains of a TLS listener an HTTP listener displaces from its address and port.
fn sni_chains_of(displaced: Option<Listener>) -> Vec<FilterChain> {
    displaced
        .map(|listener| {
            listener
                .filter_chains
                .into_iter()
                .filter(|chain| chain.filter_chain_match.as_ref().is_some_and(|m| !m.server_names.is_empty()))
                .collect()
        })
        .unwrap_or_default()
}

/// Puts SNI chains ahead of an HTTP listener's own, with the TLS inspector to read the SNI.
fn with_sni_chains(mut http: Listener, mut sni_chains: Vec<FilterChain>) -> Listener {
    if !sni_chains.is_empty() {
        sni_chains.append(&mut http.filter_chains);
        http.filter_chains = sni_chains;
        http.listener_filters.push(tls_inspector());
    }
    http
}

/// The HTTP chain of an outbound port: the port's routes, for traffic to `prefix` when given,
/// and only for what the HTTP inspector recognised when `sniff` is set.
fn http_chain(port: u32, prefix: Option<&str>, sniff: bool) -> FilterChain {
    FilterChain {
        filter_chain_match: (sniff || prefix.is_some()).then(|| FilterChainMatch {
            prefix_ranges: prefix.map(cidr).into_iter().collect(),
            application_protocols: if sniff {
                SNIFFED_HTTP.iter().map(|p| (*p).to_string()).collect()
            } else {
                Vec::new()
            },
            ..Default::default()
        }),
        filters: vec![connection_manager(&format!("outbound_0.0.0.0_{port}"), rds(&port.to_string()))],
        ..Default::default()
    }
}

/// Protocol sniffing (1.4's default for outbound): the HTTP inspector tells HTTP/1.x and h2c
/// apart from anything else. HTTP goes to the port's routes; other traffic to a service's VIP
/// is proxied to that service, and the rest passes through (or not, per outboundTrafficPolicy).
fn sniffing_http_listener(port: u32, tcp_fallbacks: &[(String, String)], passthrough: &str) -> Listener {
    let mut chains = Vec::new();
    for (vip, cluster) in tcp_fallbacks {
        chains.push(http_chain(port, Some(vip), true));
        chains.push(FilterChain {
            filter_chain_match: Some(FilterChainMatch { prefix_ranges: vec![cidr(vip)], ..Default::default() }),
            filters: vec![tcp_proxy_filter(cluster, &[(cluster.clone(), 100)])],
            ..Default::default()
        });
    }
    chains.push(http_chain(port, None, true));
    chains.push(FilterChain {
        filters: vec![tcp_proxy_filter(passthrough, &[(passthrough.to_string(), 100)])],
        ..Default::default()
    });
    let mut http = listener(format!("0.0.0.0_{port}"), "0.0.0.0", port, chains, false);
    http.listener_filters =
        vec![listener_filter_of("envoy.filters.listener.http_inspector", any(HttpInspector::default()))];
    http
}

/// A listener filter with its typed config.
pub(super) fn listener_filter_of(name: &str, config: envoy_types::pb::google::protobuf::Any) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The TLS inspector, which reads SNI (and ALPN) for filter-chain matching.
pub(super) fn tls_inspector() -> ListenerFilter {
    listener_filter_of("envoy.filters.listener.tls_inspector", any(TlsInspector::default()))
}

/// What the HTTP inspector reports for HTTP traffic.
const SNIFFED_HTTP: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// A single address as a CIDR range.
fn cidr(ip: &str) -> CidrRange {
    let prefix_len = if ip.contains(':') { 128 } else { 32 };
    CidrRange { address_prefix: ip.to_string(), prefix_len: Some(UInt32Value { value: prefix_len }) }
}

/// Filter chains Envoy will accept together: SNI names are sorted and de-duplicated (a bare `*`
/// means any name), and a chain only keeps the names no earlier chain with the same other match
/// fields claimed; a chain left with nothing of its own is dropped (the first one wins, as in
/// Istio). Envoy rejects a whole listener whose chains overlap.
pub(super) fn unique_chains(chains: Vec<FilterChain>, context: &str) -> Vec<FilterChain> {
    let mut claimed: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for mut chain in chains {
        let mut matcher = chain.filter_chain_match.take().unwrap_or_default();
        let mut names = std::mem::take(&mut matcher.server_names);
        if names.iter().any(|name| name == "*") {
            names.clear();
        }
        names.sort();
        names.dedup();
        // Everything but the names identifies the match "slot" the names are claimed in.
        let slot = format!("{matcher:?}");
        let fresh: Vec<String> = if names.is_empty() {
            if !claimed.insert((slot, String::new())) {
                tracing::warn!(context, ?matcher, "overlapping filter chain ignored");
                continue;
            }
            Vec::new()
        } else {
            let fresh: Vec<String> =
                names.into_iter().filter(|name| claimed.insert((slot.clone(), name.clone()))).collect();
            if fresh.is_empty() {
                tracing::warn!(context, ?matcher, "filter chain whose SNI names are all taken ignored");
                continue;
            }
            fresh
        };
        matcher.server_names = fresh;
        chain.filter_chain_match = (matcher != FilterChainMatch::default()).then_some(matcher);
        kept.push(chain);
    }
    kept
}

/// SNI hosts and the weighted clusters they go to, one entry per filter chain.
type TlsChains = Vec<(Vec<String>, Vec<(String, u32)>)>;

/// An outbound listener for TLS traffic, told apart by SNI (TLS inspector). Chains are kept in
/// order and a chain matching what an earlier one matches is dropped. A listener on 0.0.0.0
/// also gets a last chain for SNI names it does not know: passthrough or blackhole, per
/// `outboundTrafficPolicy`.
fn tls_listener(name: String, ip: &str, port: u32, routes: TlsChains, fallback: &str) -> Listener {
    let chains: Vec<FilterChain> = routes
        .into_iter()
        .map(|(sni, clusters)| FilterChain {
            filter_chain_match: Some(FilterChainMatch { server_names: sni, ..Default::default() }),
            filters: vec![tcp_proxy_filter(&format!("outbound_{ip}_{port}"), &clusters)],
            ..Default::default()
        })
        .collect();
    let mut chains = unique_chains(chains, &name);
    let matches_any = |chain: &FilterChain| chain.filter_chain_match.as_ref().is_none_or(|m| m.server_names.is_empty());
    if ip == "0.0.0.0" && !chains.iter().any(matches_any) {
        chains.push(FilterChain {
            filters: vec![tcp_proxy_filter(fallback, &[(fallback.to_string(), 100)])],
            ..Default::default()
        });
    }
    let mut tls = listener(name, ip, port, chains, false);
    tls.listener_filters = vec![tls_inspector()];
    tls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_weights_leave_destinations_out_unless_alone() {
        let push = PushContext::default();
        let destination = |subset: &str, weight: i32| net::RouteDestination {
            destination: Some(net::Destination {
                host: "tcp-echo.default.svc.cluster.local".into(),
                subset: subset.into(),
                port: Some(net::PortSelector { number: 9000 }),
            }),
            weight,
        };
        assert_eq!(
            route_clusters(&push, &[destination("v1", 100), destination("v2", 0)], "default", 9000),
            vec![("outbound|9000|v1|tcp-echo.default.svc.cluster.local".to_string(), 100)]
        );
        assert_eq!(route_clusters(&push, &[destination("v1", 0)], "default", 9000)[0].1, 100);
        let split = route_clusters(&push, &[destination("v1", 80), destination("v2", 20)], "default", 9000);
        assert_eq!(split.iter().map(|(_, weight)| *weight).collect::<Vec<_>>(), [80, 20]);
    }

    #[test]
    fn l4_matches_honour_port_and_gateways() {
        let gateways = |list: &[&str]| list.iter().map(|g| g.to_string()).collect::<Vec<_>>();
        assert!(l4_match_applies(0, &[], 31400, None, "default"));
        assert!(!l4_match_applies(9000, &[], 31400, None, "default"));
        assert!(l4_match_applies(31400, &gateways(&["mesh"]), 31400, None, "default"));
        assert!(!l4_match_applies(31400, &gateways(&["mesh"]), 31400, Some("default/tcp-gateway"), "default"));
        assert!(l4_match_applies(0, &gateways(&["tcp-gateway"]), 31400, Some("default/tcp-gateway"), "default"));
        assert!(!l4_match_applies(0, &gateways(&["tcp-gateway"]), 31400, None, "default"));
    }
}
