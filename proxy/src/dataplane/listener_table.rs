//! The listeners in service, as one immutable table swapped whole on every update: by name, by
//! address (for the original-destination hand-off), and the stats handles of each listener and
//! of the connection managers and TCP proxies on its filter chains.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::config::listener::{HttpManagerConfig, ListenerConfig, NetworkFilter, TcpProxyConfig};
use super::connection_stats::{HttpManagerStats, ListenerStats, TcpProxyStats};
use super::stats::Stats;

/// Listeners by name, and by address for the original-destination hand-off.
#[derive(Debug, Default)]
pub(crate) struct ListenerTable {
    pub by_name: HashMap<String, Arc<ListenerConfig>>,
    pub by_address: HashMap<SocketAddr, Arc<ListenerConfig>>,
    /// Stats handles, resolved when the table is built.
    listener_stats: HashMap<SocketAddr, Arc<ListenerStats>>,
    http_stats: HashMap<String, Arc<HttpManagerStats>>,
    tcp_stats: HashMap<String, Arc<TcpProxyStats>>,
    stats: Stats,
}

impl ListenerTable {
    pub(crate) fn new(listeners: Vec<Arc<ListenerConfig>>, stats: &Stats) -> ListenerTable {
        let mut table = ListenerTable { stats: stats.clone(), ..ListenerTable::default() };
        for listener in listeners {
            table.listener_stats.insert(listener.address, Arc::new(ListenerStats::new(stats, listener.address)));
            for chain in listener.all_chains() {
                match &chain.filter {
                    NetworkFilter::Http(manager) => {
                        table.http_stats.entry(manager.stat_prefix.clone()).or_insert_with(|| {
                            Arc::new(HttpManagerStats::new(stats, &manager.stat_prefix, manager.fault_filter))
                        });
                    }
                    NetworkFilter::Tcp(proxy) => {
                        table
                            .tcp_stats
                            .entry(proxy.stat_prefix.clone())
                            .or_insert_with(|| Arc::new(TcpProxyStats::new(stats, &proxy.stat_prefix)));
                    }
                }
            }
            table.by_address.insert(listener.address, listener.clone());
            table.by_name.insert(listener.name.clone(), listener);
        }
        table
    }

    /// The stats of the listener at `address`.
    pub(crate) fn listener_stats(&self, address: SocketAddr) -> Arc<ListenerStats> {
        self.listener_stats.get(&address).cloned().unwrap_or_else(|| Arc::new(ListenerStats::new(&self.stats, address)))
    }

    /// The stats of an HTTP connection manager of this table's listeners.
    pub(crate) fn http_stats(&self, manager: &HttpManagerConfig) -> Arc<HttpManagerStats> {
        self.http_stats
            .get(&manager.stat_prefix)
            .cloned()
            .unwrap_or_else(|| Arc::new(HttpManagerStats::new(&self.stats, &manager.stat_prefix, manager.fault_filter)))
    }

    /// The stats of a TCP proxy of this table's listeners.
    pub(crate) fn tcp_stats(&self, proxy: &TcpProxyConfig) -> Arc<TcpProxyStats> {
        self.tcp_stats
            .get(&proxy.stat_prefix)
            .cloned()
            .unwrap_or_else(|| Arc::new(TcpProxyStats::new(&self.stats, &proxy.stat_prefix)))
    }

    /// The listener for a captured connection's original destination: exact address first,
    /// then the wildcard address on that port.
    pub(crate) fn for_destination(&self, destination: SocketAddr) -> Option<&Arc<ListenerConfig>> {
        let wildcard = match destination.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.by_address
            .get(&destination)
            .or_else(|| self.by_address.get(&SocketAddr::new(wildcard, destination.port())))
    }
}
