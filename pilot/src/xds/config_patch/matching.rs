//! Which proxies an EnvoyFilter's patches are for, and which objects each patch's `match`
//! picks: contexts, proxy version and metadata, listeners (by port, also the port of a
//! virtual listener's filter chain), filter chains (name, SNI, transport and application
//! protocols), network and HTTP filters (1.4's deprecated names match their v3 names), route
//! configurations (sidecar port or gateway port, port name and gateway), virtual hosts, routes
//! (name, action) and clusters (name, or service, subset and port).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use istio_api::pb::istio::networking::v1alpha3::envoy_filter::{
    envoy_config_object_match::ObjectTypes, listener_match, route_configuration_match::route_match::Action,
    ClusterMatch, ListenerMatch, PatchContext, RouteConfigurationMatch,
};
use istio_xds::patch_value::canonical_filter_name;
use istio_xds::ClusterName;

use super::prepared::{PreparedEnvoyFilter, PreparedPatch};
use crate::node::Proxy;

/// The EnvoyFilters (with config patches) for a proxy: the root namespace's first, then its own
/// namespace's, each oldest first, as 1.4 ordered them.
pub(crate) fn applicable<'a>(
    filters: &'a [std::sync::Arc<PreparedEnvoyFilter>],
    root_namespace: &str,
    proxy: &Proxy,
) -> Vec<&'a PreparedEnvoyFilter> {
    let selected = |filter: &&std::sync::Arc<PreparedEnvoyFilter>| proxy.matches(&filter.selector);
    let root = filters.iter().filter(|f| f.namespace == root_namespace).filter(selected);
    let own = filters.iter().filter(|f| f.namespace == proxy.namespace && proxy.namespace != root_namespace);
    root.chain(own.filter(selected)).map(|filter| filter.as_ref()).collect()
}

/// What makes two proxies get the same patched objects: the EnvoyFilters that apply, and how
/// each patch's proxy match came out for this proxy.
pub(crate) fn cache_key(filters: &[&PreparedEnvoyFilter], proxy: &Proxy) -> String {
    let mut key = String::new();
    for filter in filters {
        key.push_str(&filter.key);
        for patch in
            filter.patches.iter().filter(|patch| patch.matcher.proxy.is_some() || patch.requires_plugin.is_some())
        {
            key.push(if proxy_match(proxy, patch) { '+' } else { '-' });
        }
        key.push(',');
    }
    key
}

fn proxy_match(proxy: &Proxy, patch: &PreparedPatch) -> bool {
    if patch.requires_plugin.as_ref().is_some_and(|plugin| !proxy.null_vm_plugins.contains(plugin)) {
        return false;
    }
    let Some(wanted) = &patch.matcher.proxy else { return true };
    if let Some(version) = &patch.proxy_version {
        if proxy.istio_version.is_empty() || !version.is_match(&proxy.istio_version) {
            return false;
        }
    }
    wanted.metadata.iter().all(|(key, value)| proxy.metadata.get(key) == Some(value))
}

/// Whether some EnvoyFilter would run null-VM `plugin` in this proxy's filters but the proxy
/// does not have it (a stock Envoy given 1.4's telemetry v2 filters).
pub(crate) fn withholds_plugin(filters: &[&PreparedEnvoyFilter], proxy: &Proxy, plugin: &str) -> bool {
    !proxy.null_vm_plugins.contains(plugin)
        && filters
            .iter()
            .flat_map(|filter| &filter.patches)
            .any(|patch| patch.requires_plugin.as_deref() == Some(plugin))
}

/// The patch is for this context (or any) and this proxy.
pub(crate) fn common_match(proxy: &Proxy, context: PatchContext, patch: &PreparedPatch) -> bool {
    let wanted = patch.matcher.context;
    (wanted == PatchContext::Any as i32 || wanted == context as i32) && proxy_match(proxy, patch)
}

fn listener_match_of(patch: &PreparedPatch) -> Option<&ListenerMatch> {
    match &patch.matcher.object_types {
        Some(ObjectTypes::Listener(listener)) => Some(listener),
        _ => None,
    }
}

fn route_match_of(patch: &PreparedPatch) -> Option<&RouteConfigurationMatch> {
    match &patch.matcher.object_types {
        Some(ObjectTypes::RouteConfiguration(route)) => Some(route),
        _ => None,
    }
}

fn cluster_match_of(patch: &PreparedPatch) -> Option<&ClusterMatch> {
    match &patch.matcher.object_types {
        Some(ObjectTypes::Cluster(cluster)) => Some(cluster),
        _ => None,
    }
}

fn listener_port(listener: &Listener) -> Option<u32> {
    match listener.address.as_ref()?.address.as_ref()? {
        address::Address::SocketAddress(socket) => match socket.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(port)) => Some(port),
            _ => None,
        },
        _ => None,
    }
}

fn chain_port(chain: &FilterChain) -> Option<u32> {
    chain.filter_chain_match.as_ref()?.destination_port.as_ref().map(|port| port.value)
}

/// The listener is the one named, on the port named: its own port, or (for `virtualInbound`
/// and other listeners that sort connections by original port) a port one of its filter
/// chains takes — for patches below the listener, which then reach only those chains.
pub(crate) fn listener_match(listener: &Listener, patch: &PreparedPatch) -> bool {
    let Some(wanted) = listener_match_of(patch) else { return true };
    if wanted.port_number != 0
        && listener_port(listener) != Some(wanted.port_number)
        && !listener.filter_chains.iter().any(|chain| chain_port(chain) == Some(wanted.port_number))
    {
        return false;
    }
    wanted.name.is_empty() || wanted.name == listener.name
}

/// For a patch of the listener itself (LISTENER MERGE or REMOVE): the listener is the one on
/// the port named, by its own port only. A port one of `virtualInbound`'s chains takes is not
/// the listener's: removing "the listener on 9080" must not take all inbound traffic with it.
pub(crate) fn whole_listener_match(listener: &Listener, patch: &PreparedPatch) -> bool {
    let Some(wanted) = listener_match_of(patch) else { return true };
    if wanted.port_number != 0 && listener_port(listener) != Some(wanted.port_number) {
        return false;
    }
    wanted.name.is_empty() || wanted.name == listener.name
}

fn chain_match_of(patch: &PreparedPatch) -> Option<&listener_match::FilterChainMatch> {
    listener_match_of(patch)?.filter_chain.as_ref()
}

/// The filter chain matches, its listener having matched already.
pub(crate) fn filter_chain_match(listener: &Listener, chain: &FilterChain, patch: &PreparedPatch) -> bool {
    if let Some(wanted) = listener_match_of(patch) {
        // On a listener that took the port through its chains, only those chains are the port's.
        if wanted.port_number != 0
            && listener_port(listener) != Some(wanted.port_number)
            && chain_port(chain) != Some(wanted.port_number)
        {
            return false;
        }
    }
    let Some(wanted) = chain_match_of(patch) else { return true };
    let chain_match = chain.filter_chain_match.as_ref();
    if !wanted.name.is_empty() && wanted.name != chain.name {
        return false;
    }
    if !wanted.sni.is_empty() && !chain_match.is_some_and(|m| m.server_names.contains(&wanted.sni)) {
        return false;
    }
    if !wanted.transport_protocol.is_empty()
        && chain_match.map(|m| m.transport_protocol.as_str()) != Some(wanted.transport_protocol.as_str())
    {
        return false;
    }
    if !wanted.application_protocols.is_empty() {
        let offered: BTreeSet<&str> =
            chain_match.map(|m| m.application_protocols.iter().map(String::as_str).collect()).unwrap_or_default();
        if !wanted.application_protocols.split(',').all(|protocol| offered.contains(protocol.trim())) {
            return false;
        }
    }
    true
}

/// The patch names a network filter to match.
pub(crate) fn has_network_filter_match(patch: &PreparedPatch) -> bool {
    chain_match_of(patch).is_some_and(|chain| chain.filter.is_some())
}

pub(crate) fn network_filter_match(filter: &Filter, patch: &PreparedPatch) -> bool {
    match chain_match_of(patch).and_then(|chain| chain.filter.as_ref()) {
        None => true,
        Some(wanted) => canonical_filter_name(&wanted.name) == canonical_filter_name(&filter.name),
    }
}

/// The patch names an HTTP filter to match.
pub(crate) fn has_http_filter_match(patch: &PreparedPatch) -> bool {
    chain_match_of(patch).and_then(|chain| chain.filter.as_ref()).is_some_and(|filter| filter.sub_filter.is_some())
}

pub(crate) fn http_filter_match(filter: &HttpFilter, patch: &PreparedPatch) -> bool {
    match chain_match_of(patch).and_then(|chain| chain.filter.as_ref()).and_then(|f| f.sub_filter.as_ref()) {
        None => true,
        Some(wanted) => canonical_filter_name(&wanted.name) == canonical_filter_name(&filter.name),
    }
}

/// A gateway's RDS name, `http.PORT` or `https.PORT.PORT-NAME.GATEWAY.NAMESPACE`, as port, port
/// name and `namespace/gateway`.
fn gateway_route_name(name: &str) -> (u32, &str, String) {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["http", port] => (port.parse().unwrap_or(0), "", String::new()),
        ["https", port, port_name, gateway, namespace] => {
            (port.parse().unwrap_or(0), port_name, format!("{namespace}/{gateway}"))
        }
        _ => (0, "", String::new()),
    }
}

/// The route configuration matches: for sidecars by port (the name of an outbound one, the
/// port of an inbound `inbound|PORT|…` one) and name; for gateways also by port name and
/// gateway.
pub(crate) fn route_configuration_match(
    context: PatchContext,
    configuration: &RouteConfiguration,
    patch: &PreparedPatch,
) -> bool {
    let Some(wanted) = route_match_of(patch) else { return true };
    if !wanted.name.is_empty() && wanted.name != configuration.name {
        return false;
    }
    if context != PatchContext::Gateway {
        let port = match configuration.name.parse::<ClusterName>() {
            Ok(cluster) => cluster.port,
            Err(_) => configuration.name.parse().unwrap_or(0),
        };
        return wanted.port_number == 0 || wanted.port_number == port;
    }
    let (port, port_name, gateway) = gateway_route_name(&configuration.name);
    (wanted.port_number == 0 || wanted.port_number == port)
        && (wanted.port_name.is_empty() || wanted.port_name == port_name)
        && (wanted.gateway.is_empty() || wanted.gateway == gateway)
}

pub(crate) fn virtual_host_match(host: &VirtualHost, patch: &PreparedPatch) -> bool {
    match route_match_of(patch).and_then(|m| m.vhost.as_ref()) {
        None => true,
        Some(wanted) => wanted.name.is_empty() || wanted.name == host.name,
    }
}

pub(crate) fn route_match(route: &Route, patch: &PreparedPatch) -> bool {
    let Some(wanted) = route_match_of(patch).and_then(|m| m.vhost.as_ref()).and_then(|v| v.route.as_ref()) else {
        return true;
    };
    if !wanted.name.is_empty() && wanted.name != route.name {
        return false;
    }
    match Action::try_from(wanted.action).unwrap_or(Action::Any) {
        Action::Any => true,
        Action::Route => matches!(route.action, Some(route::Action::Route(_))),
        Action::Redirect => matches!(route.action, Some(route::Action::Redirect(_))),
        Action::DirectResponse => matches!(route.action, Some(route::Action::DirectResponse(_))),
    }
}

/// The cluster matches by name, or by the service, subset and port of its Istio name (in
/// either form: an SNI-DNAT gateway's clusters are named `outbound_.PORT_.SUBSET_.HOST`).
pub(crate) fn cluster_match(cluster: &Cluster, patch: &PreparedPatch) -> bool {
    let Some(wanted) = cluster_match_of(patch) else { return true };
    if !wanted.name.is_empty() {
        return wanted.name == cluster.name;
    }
    let parsed = ClusterName::parse_any_form(&cluster.name).ok();
    let (port, subset, host) =
        parsed.as_ref().map_or((0, "", ""), |name| (name.port, name.subset.as_str(), name.host.as_str()));
    (wanted.subset.is_empty() || wanted.subset == subset)
        && (wanted.service.is_empty() || wanted.service == host)
        && (wanted.port_number == 0 || wanted.port_number == port)
}
