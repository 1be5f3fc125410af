//! EnvoyFilter in Istio 1.4's insert-filter form (`filters:` with `listenerMatch`,
//! `insertPosition`, `filterType`, `filterName`, `filterConfig`): extra HTTP or network filters
//! put into the listeners of the proxies an EnvoyFilter selects.
//!
//! An EnvoyFilter applies to proxies in its namespace whose labels match its `workloadSelector`
//! (or the older `workloadLabels`; none selects all of them), and to every proxy when it lives
//! in the root namespace. `filterConfig` becomes the filter's typed config: either it names its
//! type in `@type`, or the filter name is one of the well-known filters whose v3 type is known
//! (`envoy.lua`, `envoy.ext_authz`, …). Filters are inserted before the terminal filter (router,
//! HTTP connection manager, TCP proxy) at the latest, so a chain stays valid; a filter whose
//! config cannot be typed is logged and left out.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::google::protobuf::Any;
use istio_api::pb::istio::networking::v1alpha3 as net;
use istio_xds::type_url;
use net::envoy_filter::deprecated_listener_match::{ListenerProtocol, ListenerType};
use net::envoy_filter::filter::FilterType;
use net::envoy_filter::insert_position::Index;
use net::envoy_filter::DeprecatedListenerMatch;
use prost::Message;

use super::{any, VIRTUAL_INBOUND, VIRTUAL_OUTBOUND};
use crate::model::{Named, PushContext};
use crate::node::{Proxy, ProxyKind};

/// EnvoyFilters (insert-filter form) that apply to a proxy, in name order.
pub(crate) fn applicable<'a>(push: &'a PushContext, proxy: &Proxy) -> Vec<&'a Named<net::EnvoyFilter>> {
    push.envoy_filters
        .iter()
        .filter(|ef| !ef.spec.filters.is_empty())
        .filter(|ef| {
            let selector = ef.spec.workload_selector.as_ref().map(|s| &s.labels).unwrap_or(&ef.spec.workload_labels);
            (ef.namespace == proxy.namespace || ef.namespace == push.mesh.root_namespace) && proxy.matches(selector)
        })
        .collect()
}

/// A key naming the EnvoyFilters that apply (for caching: equal keys, equal patches).
pub(crate) fn key(filters: &[&Named<net::EnvoyFilter>]) -> String {
    filters.iter().map(|ef| ef.key()).collect::<Vec<_>>().join(",")
}

/// Why an EnvoyFilter's filter cannot be inserted (it is skipped, as 1.4 skipped bad patches).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("filter {filter:?}: filterConfig: {source}")]
    Struct { filter: String, source: istio_api::json::JsonError },
    #[error("filter {0:?}: filterConfig has no @type and the filter's v3 type is not known")]
    UnknownType(String),
    #[error("filter {filter:?}: {source}")]
    Config { filter: String, source: istio_xds::json::Error },
}

/// The typed config of one inserted filter.
fn typed_config(entry: &net::envoy_filter::Filter) -> Result<Any, FilterError> {
    let filter = || entry.filter_name.clone();
    let mut config = match &entry.filter_config {
        Some(config) => istio_api::json::encode("google.protobuf.Struct", config)
            .map_err(|source| FilterError::Struct { filter: filter(), source })?,
        None => serde_json::json!({}),
    };
    if config.get("@type").is_none() {
        let Some(type_name) = istio_xds::patch_value::known_filter_type(&entry.filter_name) else {
            return Err(FilterError::UnknownType(filter()));
        };
        if let Some(map) = config.as_object_mut() {
            map.insert("@type".into(), format!("type.googleapis.com/{type_name}").into());
        }
    }
    istio_xds::json::any_from_json(&config).map_err(|source| FilterError::Config { filter: filter(), source })
}

fn is_hcm(filter: &Filter) -> bool {
    matches!(&filter.config_type, Some(filter::ConfigType::TypedConfig(config)) if config.type_url == type_url::HTTP_CONNECTION_MANAGER)
}

/// Where to insert among `names` (the last one terminal): the index for the position.
fn insert_index(names: &[&str], position: Option<&net::envoy_filter::InsertPosition>) -> usize {
    let before_terminal = names.len().saturating_sub(1);
    // No position means FIRST, as in 1.4.
    let Some(position) = position else { return 0 };
    let relative = names.iter().position(|name| *name == position.relative_to);
    match Index::try_from(position.index).unwrap_or(Index::First) {
        Index::First => 0,
        Index::Last => before_terminal,
        Index::Before => relative.unwrap_or(before_terminal),
        Index::After => relative.map_or(before_terminal, |i| (i + 1).min(before_terminal)),
    }
}

/// What a deprecated `listenerMatch` is compared with, for one filter chain.
#[derive(Debug)]
struct ChainView<'a> {
    listener_type: ListenerType,
    /// The chain's destination port, or the listener's.
    port: u32,
    /// The names that port goes by: those of the services' ports of that number.
    port_names: Vec<&'a str>,
    /// The listener's IP, `::` read as 0.0.0.0 as 1.4 did.
    ip: Option<IpAddr>,
}

/// 1.4's `deprecatedListenerMatch`: the port, a port-name prefix (any case), the listener
/// type, and addresses (an IP, or a CIDR range holding the listener's IP). The protocol is
/// compared per chain by [`chain_matches`].
fn listener_match(view: &ChainView<'_>, matcher: &DeprecatedListenerMatch) -> bool {
    if matcher.port_number > 0 && matcher.port_number != view.port {
        return false;
    }
    if !matcher.port_name_prefix.is_empty() {
        let prefix = matcher.port_name_prefix.to_lowercase();
        if !view.port_names.iter().any(|name| name.to_lowercase().starts_with(&prefix)) {
            return false;
        }
    }
    let wanted_type = ListenerType::try_from(matcher.listener_type).unwrap_or(ListenerType::Any);
    if wanted_type != ListenerType::Any && wanted_type != view.listener_type {
        return false;
    }
    if matcher.address.is_empty() {
        return true;
    }
    let Some(ip) = view.ip else { return false };
    matcher.address.iter().any(|address| address_holds(address, ip))
}

/// Whether `address` (an IP, or a CIDR range) is or holds `ip`; a range that does not parse
/// holds nothing, as in 1.4.
fn address_holds(address: &str, ip: IpAddr) -> bool {
    if !address.contains('/') {
        return address.parse::<IpAddr>().is_ok_and(|address| address == ip);
    }
    match address.parse::<ipnet::IpNet>() {
        Ok(range) => range.contains(&ip),
        Err(error) => {
            tracing::warn!(%address, %error, "EnvoyFilter listenerMatch address is not a CIDR range");
            false
        }
    }
}

fn chain_matches(
    push: &PushContext,
    proxy: &Proxy,
    listener: &Listener,
    chain: &FilterChain,
    matcher: Option<&DeprecatedListenerMatch>,
) -> bool {
    let Some(matcher) = matcher else { return true };
    let inbound = listener.name == VIRTUAL_INBOUND;
    let listener_type = match proxy.kind {
        ProxyKind::Router => ListenerType::Gateway,
        ProxyKind::Sidecar if inbound => ListenerType::SidecarInbound,
        ProxyKind::Sidecar => ListenerType::SidecarOutbound,
    };
    let address = listener.address.as_ref().and_then(|a| match &a.address {
        Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(socket)) => Some(socket),
        _ => None,
    });
    let port = chain
        .filter_chain_match
        .as_ref()
        .and_then(|m| m.destination_port.as_ref().map(|p| p.value))
        .or_else(|| {
            address.and_then(|s| match s.port_specifier {
                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port)) => {
                    Some(port)
                }
                _ => None,
            })
        })
        .unwrap_or(0);
    // Every service is looked at only when a prefix asks for the port's names.
    let port_names = if matcher.port_name_prefix.is_empty() {
        Vec::new()
    } else {
        push.services
            .values()
            .flat_map(|service| service.ports.iter())
            .filter(|service_port| service_port.number == port)
            .map(|service_port| service_port.name.as_str())
            .collect()
    };
    let ip = address.and_then(|socket| match socket.address.as_str() {
        "::" => Some(IpAddr::from([0, 0, 0, 0])),
        other => other.parse().ok(),
    });
    if !listener_match(&ChainView { listener_type, port, port_names, ip }, matcher) {
        return false;
    }
    let http = chain.filters.iter().any(is_hcm);
    match ListenerProtocol::try_from(matcher.listener_protocol).unwrap_or(ListenerProtocol::All) {
        ListenerProtocol::Http => http,
        ListenerProtocol::Tcp => !http,
        ListenerProtocol::All => true,
    }
}

fn insert_http_filter(chain: &mut FilterChain, entry: &net::envoy_filter::Filter, config: &Any) {
    for network_filter in chain.filters.iter_mut().filter(|f| is_hcm(f)) {
        let Some(filter::ConfigType::TypedConfig(typed)) = &mut network_filter.config_type else { continue };
        let Ok(mut manager) = HttpConnectionManager::decode(typed.value.as_slice()) else { continue };
        let names: Vec<&str> = manager.http_filters.iter().map(|f| f.name.as_str()).collect();
        let index = insert_index(&names, entry.insert_position.as_ref());
        manager.http_filters.insert(
            index,
            HttpFilter {
                name: entry.filter_name.clone(),
                config_type: Some(http_filter::ConfigType::TypedConfig(config.clone())),
                ..Default::default()
            },
        );
        *typed = any(manager);
    }
}

fn insert_network_filter(chain: &mut FilterChain, entry: &net::envoy_filter::Filter, config: &Any) {
    let names: Vec<&str> = chain.filters.iter().map(|f| f.name.as_str()).collect();
    let index = insert_index(&names, entry.insert_position.as_ref());
    chain.filters.insert(
        index,
        Filter { name: entry.filter_name.clone(), config_type: Some(filter::ConfigType::TypedConfig(config.clone())) },
    );
}

/// Applies the EnvoyFilters that select `proxy` to its listeners.
pub(crate) fn apply(
    push: &PushContext,
    proxy: &Proxy,
    filters: &[&Named<net::EnvoyFilter>],
    listeners: &mut [Listener],
) {
    for envoy_filter in filters {
        for entry in &envoy_filter.spec.filters {
            let config = match typed_config(entry) {
                Ok(config) => config,
                Err(error) => {
                    tracing::warn!(envoy_filter = %envoy_filter.key(), %error, "EnvoyFilter entry skipped");
                    continue;
                }
            };
            let filter_type = FilterType::try_from(entry.filter_type).unwrap_or(FilterType::Invalid);
            // As in 1.4, not the virtual outbound listener nor the inbound passthrough chain:
            // they carry only traffic that no service port takes.
            for listener in listeners.iter_mut().filter(|listener| listener.name != VIRTUAL_OUTBOUND) {
                let snapshot = listener.clone();
                for chain in listener.filter_chains.iter_mut() {
                    if !chain_matches(push, proxy, &snapshot, chain, entry.listener_match.as_ref()) {
                        continue;
                    }
                    match filter_type {
                        FilterType::Http => insert_http_filter(chain, entry, &config),
                        FilterType::Network => insert_network_filter(chain, entry, &config),
                        FilterType::Invalid => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_filters_never_land_after_the_terminal_one() {
        let names = ["envoy.filters.http.cors", "envoy.filters.http.fault", "envoy.filters.http.router"];
        let at = |index: Index, relative: &str| {
            insert_index(
                &names,
                Some(&net::envoy_filter::InsertPosition { index: index as i32, relative_to: relative.into() }),
            )
        };
        assert_eq!(at(Index::First, ""), 0);
        assert_eq!(at(Index::Last, ""), 2);
        assert_eq!(at(Index::Before, "envoy.filters.http.fault"), 1);
        assert_eq!(at(Index::After, "envoy.filters.http.fault"), 2);
        assert_eq!(at(Index::After, "envoy.filters.http.router"), 2);
        assert_eq!(insert_index(&names, None), 0);
        assert_eq!(at(Index::Before, "no.such.filter"), 2);
    }

    /// 1.4.6's deprecated listener match table: a sidecar's outbound HTTP port `http-foo:80`
    /// on 10.10.10.10 (the protocol is compared per chain, not here).
    #[test]
    fn deprecated_listener_matches() {
        let view = |listener_type: ListenerType, ip: Option<&str>| ChainView {
            listener_type,
            port: 80,
            port_names: vec!["http-foo"],
            ip: ip.map(|ip| ip.parse().expect("an IP")),
        };
        let outbound = view(ListenerType::SidecarOutbound, Some("10.10.10.10"));
        let matcher =
            |port_number: u32, prefix: &str, listener_type: ListenerType, address: &[&str]| DeprecatedListenerMatch {
                port_number,
                port_name_prefix: prefix.into(),
                listener_type: listener_type as i32,
                listener_protocol: ListenerProtocol::Http as i32,
                address: address.iter().map(|a| a.to_string()).collect(),
            };
        let any = ListenerType::Any;
        let cases = [
            ("empty match", DeprecatedListenerMatch::default(), true),
            ("match by port", matcher(80, "", any, &[]), true),
            ("match by port name prefix", matcher(0, "http", any, &[]), true),
            ("match by port name prefix, any case", matcher(0, "HTTP-F", any, &[]), true),
            ("match by listener type", matcher(0, "", ListenerType::SidecarOutbound, &[]), true),
            ("match by listener protocol", matcher(0, "", any, &[]), true),
            ("match by address with CIDR", matcher(0, "", any, &["10.10.10.10/24", "192.168.0.1/24"]), true),
            ("match by a plain address", matcher(0, "", any, &["10.10.10.10"]), true),
            (
                "outbound sidecar HTTP listeners on 10.10.10.0/24:80, port name prefix http",
                matcher(80, "http", ListenerType::SidecarOutbound, &["10.10.10.0/24"]),
                true,
            ),
            ("not: port name prefix tcp", matcher(80, "tcp", ListenerType::SidecarOutbound, &["10.10.10.0/24"]), false),
            ("not: inbound listeners", matcher(0, "http", ListenerType::SidecarInbound, &[]), false),
            ("not: gateway listeners", matcher(80, "http", ListenerType::Gateway, &["10.10.10.0/24"]), false),
            (
                "not: listeners on 172.16.0.1/16",
                matcher(80, "http", ListenerType::SidecarOutbound, &["172.16.0.1/16"]),
                false,
            ),
            ("not: another port", matcher(8080, "", any, &[]), false),
            ("not: a range that does not parse", matcher(0, "", any, &["10.10.10.0/99"]), false),
        ];
        for (name, matcher, expected) in cases {
            assert_eq!(listener_match(&outbound, &matcher), expected, "{name}");
        }
        // A listener on `::` is on 0.0.0.0, as 1.4 read it.
        let wildcard = view(ListenerType::SidecarOutbound, Some("0.0.0.0"));
        assert!(listener_match(&wildcard, &matcher(0, "", any, &["0.0.0.0/0"])));
        assert!(!listener_match(&view(ListenerType::SidecarOutbound, None), &matcher(0, "", any, &["0.0.0.0/0"])));
    }

    /// 1.4.6's LDS test of an EnvoyFilter selecting by `workloadLabels`: of three sidecars in
    /// its namespace, only the one carrying the labels gets the filter; one with other labels
    /// and one with none do not.
    #[test]
    fn workload_labels_select_the_sidecars_that_carry_them() {
        let spec = istio_api::json::decode(
            "istio.networking.v1alpha3.EnvoyFilter",
            &serde_json::json!({
                "workloadLabels": {"app": "envoyfilter-test-app"},
                "filters": [{
                    "listenerMatch": {"portNumber": 8081, "listenerType": "SIDECAR_OUTBOUND"},
                    "filterName": "envoy.buffer",
                    "filterType": "HTTP",
                    "filterConfig": {"maxRequestBytes": 1024}
                }]
            }),
        )
        .expect("an EnvoyFilter");
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.envoy_filters = vec![Named { name: "buffer".into(), namespace: "consumerns".into(), spec }];
        let manager = HttpConnectionManager {
            http_filters: vec![HttpFilter { name: "envoy.filters.http.router".into(), ..Default::default() }],
            ..Default::default()
        };
        let listener = Listener {
            name: "0.0.0.0_8081".into(),
            address: Some(crate::xds::socket_address("0.0.0.0", 8081)),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(any(manager))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let sidecars = [
            ("98.1.1.1", vec![("app", "envoyfilter-test-app"), ("some", "otherlabel")], true),
            ("98.1.1.2", vec![("app", "no-envoyfilter-test-app")], false),
            ("98.1.1.3", vec![], false),
        ];
        for (ip, labels, expected) in sidecars {
            let proxy = crate::testing::sidecar("consumerns", ip, &labels);
            let filters = applicable(&push, &proxy);
            let mut listeners = vec![listener.clone()];
            apply(&push, &proxy, &filters, &mut listeners);
            let Some(filter::ConfigType::TypedConfig(typed)) = &listeners[0].filter_chains[0].filters[0].config_type
            else {
                panic!("the connection manager lost its config")
            };
            let manager = HttpConnectionManager::decode(typed.value.as_slice()).expect("a connection manager");
            let names: Vec<&str> = manager.http_filters.iter().map(|f| f.name.as_str()).collect();
            let has_buffer = names.contains(&"envoy.buffer");
            assert_eq!(has_buffer, expected, "{ip}: {names:?}");
        }
    }

    #[test]
    fn legacy_filter_names_get_their_v3_type() {
        let entry = net::envoy_filter::Filter {
            filter_name: "envoy.lua".into(),
            filter_type: FilterType::Http as i32,
            filter_config: Some(prost_types::Struct {
                fields: [(
                    "inlineCode".to_string(),
                    prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("-- lua".into())) },
                )]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        };
        // `inlineCode` is the v2 field; v3's Lua still reads it (deprecated) or rejects it by name.
        match typed_config(&entry) {
            Ok(config) => assert_eq!(config.type_url, "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"),
            Err(error) => {
                let error = error.to_string();
                assert!(error.contains("inlineCode") || error.contains("inline_code"), "{error}")
            }
        }
        let unknown = net::envoy_filter::Filter { filter_name: "com.example.custom".into(), ..entry };
        assert!(typed_config(&unknown).unwrap_err().to_string().contains("no @type"));
    }

    #[test]
    fn istio_proxys_sni_filters_are_typed_as_structs() {
        // The wildcard-egress task's filters: `filterConfig: {}`, known to istio-proxy by name.
        for name in ["forward_downstream_sni", "sni_verifier"] {
            let entry = net::envoy_filter::Filter {
                filter_name: name.into(),
                filter_type: FilterType::Network as i32,
                filter_config: Some(prost_types::Struct::default()),
                ..Default::default()
            };
            let config = typed_config(&entry).expect("typed");
            assert_eq!(config.type_url, "type.googleapis.com/google.protobuf.Struct");
            assert!(config.value.is_empty());
        }
    }
}
