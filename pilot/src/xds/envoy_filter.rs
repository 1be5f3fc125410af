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
use prost::Message;

use super::{any, VIRTUAL_INBOUND};
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

fn chain_matches(
    push: &PushContext,
    proxy: &Proxy,
    listener: &Listener,
    chain: &FilterChain,
    matcher: Option<&net::envoy_filter::DeprecatedListenerMatch>,
) -> bool {
    let Some(matcher) = matcher else { return true };
    let inbound = listener.name == VIRTUAL_INBOUND;
    let listener_type = match proxy.kind {
        ProxyKind::Router => ListenerType::Gateway,
        ProxyKind::Sidecar if inbound => ListenerType::SidecarInbound,
        ProxyKind::Sidecar => ListenerType::SidecarOutbound,
    };
    let wanted_type = ListenerType::try_from(matcher.listener_type).unwrap_or(ListenerType::Any);
    if wanted_type != ListenerType::Any && wanted_type != listener_type {
        return false;
    }
    let http = chain.filters.iter().any(is_hcm);
    match ListenerProtocol::try_from(matcher.listener_protocol).unwrap_or(ListenerProtocol::All) {
        ListenerProtocol::Http if !http => return false,
        ListenerProtocol::Tcp if http => return false,
        _ => {}
    }
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
    if matcher.port_number != 0 && matcher.port_number != port {
        return false;
    }
    if !matcher.port_name_prefix.is_empty() {
        let named = push.services.values().any(|service| {
            service.ports.iter().any(|p| p.number == port && p.name.starts_with(&matcher.port_name_prefix))
        });
        if !named {
            return false;
        }
    }
    if !matcher.address.is_empty() {
        let ip = address.map(|s| s.address.as_str()).unwrap_or_default();
        if !matcher.address.iter().any(|a| a.split('/').next() == Some(ip)) {
            return false;
        }
    }
    true
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
            for listener in listeners.iter_mut() {
                let snapshot = listener.clone();
                let chains = listener.filter_chains.iter_mut().chain(listener.default_filter_chain.iter_mut());
                for chain in chains {
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
}
