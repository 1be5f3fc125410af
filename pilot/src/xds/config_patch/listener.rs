//! Patches to listeners, their filter chains, network filters and HTTP filters, as 1.4.6
//! applied them. For each EnvoyFilter in turn and each listener: listener REMOVE or MERGE; per
//! filter chain REMOVE or MERGE; per network filter REMOVE or MERGE (and, in an HTTP connection
//! manager, per HTTP filter REMOVE or MERGE, then HTTP filters ADDed at the end or INSERTed
//! before or after the one matched, or first or last without a match); then network filters
//! ADDed or INSERTed the same way; then filter chains ADDed; then, unless adds are skipped (the
//! virtual listeners), listeners ADDed. Inline route configurations of inbound HTTP listeners
//! get the route patches of the inbound context first, as 1.4 built them.
//!
//! One departure: 1.4 put an ADDed filter after the chain's terminal filter (the router, the
//! HTTP connection manager, the TCP proxy), where Envoy of its day never ran it and Envoy today
//! refuses the whole listener update. Such a filter goes just before the terminal one here, as
//! the deprecated insert form has always done.

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use istio_api::pb::istio::networking::v1alpha3::envoy_filter::{patch::Operation, ApplyTo, PatchContext};
use istio_xds::patch_value::PatchValue;
use istio_xds::type_url;
use prost::Message;

use super::matching::{
    common_match, filter_chain_match, has_http_filter_match, has_network_filter_match, http_filter_match,
    listener_match, network_filter_match, whole_listener_match,
};
use super::merge::{merge, merge_http_filter, merge_network_filter};
use super::prepared::{PreparedEnvoyFilter, PreparedPatch};
use crate::node::Proxy;

/// Applies the listener-class patches of `filters` to listeners generated in `context`.
/// `skip_adds` leaves out new listeners (1.4 did so for the virtual listeners).
pub(crate) fn apply(
    context: PatchContext,
    proxy: &Proxy,
    filters: &[&PreparedEnvoyFilter],
    listeners: &mut Vec<Listener>,
    skip_adds: bool,
) {
    for filter in filters {
        let patching = Patching { context, proxy, filter };
        listeners.retain_mut(|listener| patching.listener(listener));
        if skip_adds {
            continue;
        }
        for patch in filter.patches(ApplyTo::Listener) {
            if let (Operation::Add, Some(PatchValue::Listener(value))) = (patch.operation, &patch.value) {
                if common_match(proxy, context, patch) {
                    listeners.push(value.as_ref().clone());
                }
            }
        }
    }
}

/// One EnvoyFilter's patches being applied in one context.
struct Patching<'a> {
    context: PatchContext,
    proxy: &'a Proxy,
    filter: &'a PreparedEnvoyFilter,
}

impl Patching<'_> {
    fn patches(&self, apply_to: ApplyTo) -> impl Iterator<Item = &PreparedPatch> {
        self.filter.patches(apply_to).filter(|patch| common_match(self.proxy, self.context, patch))
    }

    /// Patches one listener; false when it is removed.
    fn listener(&self, listener: &mut Listener) -> bool {
        for patch in self.patches(ApplyTo::Listener) {
            if !whole_listener_match(listener, patch) {
                continue;
            }
            match (patch.operation, &patch.value) {
                (Operation::Remove, _) => return false,
                (Operation::Merge, Some(PatchValue::Listener(value))) => merge(listener, value.as_ref()),
                _ => {}
            }
        }
        let snapshot = listener.clone();
        listener.filter_chains.retain_mut(|chain| self.filter_chain(&snapshot, chain));
        for patch in self.patches(ApplyTo::FilterChain) {
            if let (Operation::Add, Some(PatchValue::FilterChain(value))) = (patch.operation, &patch.value) {
                if listener_match(&snapshot, patch) {
                    listener.filter_chains.push(value.as_ref().clone());
                }
            }
        }
        true
    }

    /// Patches one filter chain; false when it is removed.
    fn filter_chain(&self, listener: &Listener, chain: &mut FilterChain) -> bool {
        if !listener_match_any(self, listener) {
            return true;
        }
        for patch in self.patches(ApplyTo::FilterChain) {
            if !listener_match(listener, patch) || !filter_chain_match(listener, chain, patch) {
                continue;
            }
            match (patch.operation, &patch.value) {
                (Operation::Remove, _) => return false,
                (Operation::Merge, Some(PatchValue::FilterChain(value))) => merge(chain, value.as_ref()),
                _ => {}
            }
        }
        self.network_filters(listener, chain);
        true
    }

    fn network_filters(&self, listener: &Listener, chain: &mut FilterChain) {
        let chain_snapshot = FilterChain { filters: Vec::new(), ..chain.clone() };
        let in_chain = |patch: &&PreparedPatch| {
            listener_match(listener, patch) && filter_chain_match(listener, &chain_snapshot, patch)
        };
        chain.filters.retain_mut(|network_filter| {
            for patch in self.patches(ApplyTo::NetworkFilter).filter(in_chain) {
                if !network_filter_match(network_filter, patch) {
                    continue;
                }
                match (patch.operation, &patch.value) {
                    (Operation::Remove, _) => return false,
                    (Operation::Merge, Some(PatchValue::NetworkFilter(value))) => {
                        merge_network_filter(network_filter, value)
                    }
                    _ => {}
                }
            }
            self.http_filters(listener, &chain_snapshot, network_filter);
            true
        });
        for patch in self.patches(ApplyTo::NetworkFilter).filter(in_chain) {
            let Some(PatchValue::NetworkFilter(value)) = &patch.value else { continue };
            let terminal = chain.filters.last().is_some_and(|last| is_terminal_network_filter(&last.name));
            let position =
                insert_position(patch, &chain.filters, has_network_filter_match(patch), network_filter_match, terminal);
            if let Some(position) = position {
                chain.filters.insert(position, value.filter.clone());
            }
        }
    }

    /// HTTP filter patches (and the inbound inline routes' patches) inside an HTTP connection
    /// manager.
    fn http_filters(&self, listener: &Listener, chain: &FilterChain, network_filter: &mut Filter) {
        let Some(filter::ConfigType::TypedConfig(typed)) = &network_filter.config_type else { return };
        if typed.type_url != type_url::HTTP_CONNECTION_MANAGER {
            return;
        }
        let applies = |patch: &&PreparedPatch| {
            listener_match(listener, patch)
                && filter_chain_match(listener, chain, patch)
                && network_filter_match(network_filter, patch)
        };
        let http_patches: Vec<&PreparedPatch> = self.patches(ApplyTo::HttpFilter).filter(applies).collect();
        let inline_routes = self.context == PatchContext::SidecarInbound
            && [ApplyTo::RouteConfiguration, ApplyTo::VirtualHost, ApplyTo::HttpRoute]
                .iter()
                .any(|apply_to| self.patches(*apply_to).next().is_some());
        if http_patches.is_empty() && !inline_routes {
            return;
        }
        let Ok(mut manager) = HttpConnectionManager::decode(typed.value.as_slice()) else { return };
        if inline_routes {
            if let Some(RouteSpecifier::RouteConfig(configuration)) = &mut manager.route_specifier {
                super::route::apply(self.context, self.proxy, &[self.filter], configuration);
            }
        }
        manager.http_filters.retain_mut(|http_filter| {
            for patch in &http_patches {
                if !http_filter_match(http_filter, patch) {
                    continue;
                }
                match (patch.operation, &patch.value) {
                    (Operation::Remove, _) => return false,
                    (Operation::Merge, Some(PatchValue::HttpFilter(value))) => merge_http_filter(http_filter, value),
                    _ => {}
                }
            }
            true
        });
        for patch in &http_patches {
            let Some(PatchValue::HttpFilter(value)) = &patch.value else { continue };
            let terminal = manager.http_filters.last().is_some_and(|last| {
                istio_xds::patch_value::canonical_filter_name(&last.name) == "envoy.filters.http.router"
            });
            let position = insert_position(
                patch,
                &manager.http_filters,
                has_http_filter_match(patch),
                http_filter_match,
                terminal,
            );
            if let Some(position) = position {
                manager.http_filters.insert(position, value.filter.clone());
            }
        }
        network_filter.config_type = Some(filter::ConfigType::TypedConfig(crate::xds::any(manager)));
    }
}

/// Whether any listener-class patch of this filter could touch the listener at all (saves
/// walking chains that nothing matches).
fn listener_match_any(patching: &Patching<'_>, listener: &Listener) -> bool {
    [
        ApplyTo::FilterChain,
        ApplyTo::NetworkFilter,
        ApplyTo::HttpFilter,
        ApplyTo::RouteConfiguration,
        ApplyTo::VirtualHost,
        ApplyTo::HttpRoute,
    ]
    .iter()
    .any(|apply_to| patching.patches(*apply_to).any(|patch| listener_match(listener, patch)))
}

/// Network filters that end a chain: nothing after them would run.
fn is_terminal_network_filter(name: &str) -> bool {
    matches!(
        istio_xds::patch_value::canonical_filter_name(name),
        "envoy.filters.network.http_connection_manager"
            | "envoy.filters.network.tcp_proxy"
            | "envoy.filters.network.redis_proxy"
            | "envoy.filters.network.thrift_proxy"
            | "envoy.filters.network.dubbo_proxy"
            | "envoy.filters.network.direct_response"
            | "envoy.filters.network.echo"
    )
}

/// Where an ADD or INSERT puts its filter among `filters`: ADD at the end; INSERT_AFTER after the
/// first filter the patch matches (at the end without a filter match); INSERT_BEFORE before it
/// (first without a filter match). `None` when the patch is no insert or its filter is absent.
/// When the last filter is `terminal`, "the end" is just before it.
fn insert_position<F>(
    patch: &PreparedPatch,
    filters: &[F],
    has_match: bool,
    matches: impl Fn(&F, &PreparedPatch) -> bool,
    terminal: bool,
) -> Option<usize> {
    let end = if terminal { filters.len().saturating_sub(1) } else { filters.len() };
    let found = || filters.iter().position(|filter| matches(filter, patch));
    match patch.operation {
        Operation::Add => Some(end),
        Operation::InsertAfter if !has_match => Some(end),
        Operation::InsertAfter => found().map(|index| (index + 1).min(end)),
        Operation::InsertBefore if !has_match => Some(0),
        Operation::InsertBefore => found(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
