//! How an LDS update treats the filter chains of the listeners it replaces (Envoy's in-place
//! listener update). A chain the update leaves as it was is kept: the new listener is compiled
//! with the compiled chain it already had (`ListenerConfig::compile_reusing`), so the chain's
//! connections, its Mixer client and caches, and its retirement signal all carry on. Every
//! other chain of a replaced listener is retired here, and its connections drain.
//!
//! Keeping the same compiled chain matters beyond saving work: a connection holds the chain it
//! was accepted on, and only that chain's retirement closes it. Were an unchanged chain
//! recompiled, its connections would hold a chain no later update could retire, and serve on
//! with its config (policy included) after the chain did change.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::listener::{FilterChainConfig, ListenerConfig};

/// Retires every chain of the `current` listeners (by name) that `next` does not carry: the
/// same compiled chain under the same listener name.
pub(crate) fn retire_dropped_chains(current: &HashMap<String, Arc<ListenerConfig>>, next: &[Arc<ListenerConfig>]) {
    for (name, old) in current {
        let kept: Vec<&Arc<FilterChainConfig>> =
            next.iter().filter(|listener| &listener.name == name).flat_map(|listener| listener.all_chains()).collect();
        for chain in old.all_chains() {
            if !kept.iter().any(|next_chain| Arc::ptr_eq(next_chain, chain)) {
                chain.retire();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener};
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
    use envoy_types::pb::google::protobuf::{Any, UInt32Value};
    use prost::Message;

    use super::*;

    /// A chain for connections to `port`, proxied to `cluster`.
    fn chain(port: u32, cluster: &str) -> FilterChain {
        let tcp = TcpProxy {
            stat_prefix: cluster.into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
            ..TcpProxy::default()
        };
        FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                destination_port: Some(UInt32Value { value: port }),
                ..FilterChainMatch::default()
            }),
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy".into(),
                    value: tcp.encode_to_vec(),
                })),
            }],
            ..FilterChain::default()
        }
    }

    fn listener(chains: Vec<FilterChain>) -> Listener {
        Listener {
            name: "virtualInbound".into(),
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "0.0.0.0".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(15006)),
                    ..SocketAddress::default()
                })),
            }),
            filter_chains: chains,
            ..Listener::default()
        }
    }

    /// An LDS update of one listener, as `Shared::apply_listeners` makes it.
    fn install(current: &mut HashMap<String, Arc<ListenerConfig>>, next: Listener) -> Arc<ListenerConfig> {
        let previous = current.get(&next.name).map(|listener| &**listener);
        let installed = Arc::new(ListenerConfig::compile_reusing(&next, previous).expect("listener compiles"));
        retire_dropped_chains(current, std::slice::from_ref(&installed));
        current.insert(installed.name.clone(), installed.clone());
        installed
    }

    #[test]
    fn an_unchanged_chain_is_the_same_chain_and_a_changed_one_retires() {
        let mut current = HashMap::new();
        let first = install(&mut current, listener(vec![chain(9080, "a"), chain(9081, "b")]));
        let (accepted_a, accepted_b) = (first.chains[0].clone(), first.chains[1].clone());

        // An update that changes neither chain keeps both, retiring nothing.
        let second = install(&mut current, listener(vec![chain(9080, "a"), chain(9081, "b")]));
        assert!(Arc::ptr_eq(&second.chains[0], &accepted_a) && Arc::ptr_eq(&second.chains[1], &accepted_b));
        assert!(!*accepted_a.retired.borrow() && !*accepted_b.retired.borrow());

        // A later change to one chain retires the chain its connections were accepted on,
        // though an update came between; the other chain carries on.
        let third = install(&mut current, listener(vec![chain(9080, "a-changed"), chain(9081, "b")]));
        assert!(*accepted_a.retired.borrow(), "the changed chain's connections drain");
        assert!(!*accepted_b.retired.borrow());
        assert!(!Arc::ptr_eq(&third.chains[0], &accepted_a));
        assert!(Arc::ptr_eq(&third.chains[1], &accepted_b));
    }

    #[test]
    fn a_removed_listener_or_chain_retires() {
        let mut current = HashMap::new();
        let first = install(&mut current, listener(vec![chain(9080, "a"), chain(9081, "b")]));
        install(&mut current, listener(vec![chain(9080, "a")]));
        assert!(!*first.chains[0].retired.borrow());
        assert!(*first.chains[1].retired.borrow(), "a chain the update dropped drains");

        retire_dropped_chains(&current, &[]);
        assert!(*first.chains[0].retired.borrow(), "a removed listener's chains drain");
    }
}
