//! A cluster at run time: its compiled config and stats, its current hosts (from its own load
//! assignment, EDS, DNS re-resolved in the background, or connections' original destinations)
//! with the hash ring over them, and outlier detection ejecting hosts that keep failing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::host::Host;
use super::ring::Ring;
use super::stats::ClusterStats;
use crate::dataplane::config::cluster::{ClusterConfig, Discovery, EndpointConfig, OutlierConfig};
use crate::dataplane::stats::Stats;

/// A cluster at run time.
#[derive(Debug)]
pub(crate) struct UpstreamCluster {
    pub config: ClusterConfig,
    pub stats: ClusterStats,
    pub(super) hosts: ArcSwap<HostSet>,
    pub round_robin: AtomicUsize,
    /// Retries in flight, for the `max_retries` circuit breaker.
    pub retries_active: AtomicU32,
    /// Woken when a connection of this cluster becomes free or closes.
    pub connection_freed: tokio::sync::Notify,
    original_dst_hosts: Mutex<HashMap<SocketAddr, Arc<Host>>>,
    dns_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where the cluster's TLS config (`config.tls`) is built, for each new connection.
    pub tls: Option<Arc<crate::dataplane::tls::TlsConfigs>>,
}

/// The hosts of a cluster and the hash ring over them.
#[derive(Debug, Default)]
pub(crate) struct HostSet {
    pub hosts: Vec<Arc<Host>>,
    pub ring: Ring,
}

impl Drop for UpstreamCluster {
    fn drop(&mut self) {
        if let Some(task) = istio_runtime::sync::lock(&self.dns_task).take() {
            task.abort();
        }
    }
}

impl UpstreamCluster {
    pub(super) fn new(
        config: ClusterConfig,
        stats: &Stats,
        tls: Option<Arc<crate::dataplane::tls::TlsConfigs>>,
    ) -> Arc<UpstreamCluster> {
        let cluster = Arc::new(UpstreamCluster {
            stats: ClusterStats::new(stats, &config.name),
            config,
            hosts: ArcSwap::from_pointee(HostSet::default()),
            round_robin: AtomicUsize::new(0),
            retries_active: AtomicU32::new(0),
            connection_freed: tokio::sync::Notify::new(),
            original_dst_hosts: Mutex::new(HashMap::new()),
            dns_task: Mutex::new(None),
            tls,
        });
        match &cluster.config.discovery {
            Discovery::Static => cluster.set_endpoints(&cluster.config.load_assignment.clone()),
            Discovery::StrictDns { refresh } => {
                let refresh = *refresh;
                let weak = Arc::downgrade(&cluster);
                let task = tokio::spawn(async move { resolve_forever(weak, refresh).await });
                *istio_runtime::sync::lock(&cluster.dns_task) = Some(task);
            }
            Discovery::Eds(_) | Discovery::OriginalDst => {}
        }
        cluster
    }

    pub(crate) fn hosts(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.hosts.load()
    }

    /// Replaces the host list, keeping the state of hosts that stay.
    pub(crate) fn set_endpoints(&self, endpoints: &[EndpointConfig]) {
        let resolved: Vec<(EndpointConfig, SocketAddr)> = endpoints
            .iter()
            .filter_map(|endpoint| endpoint.socket_address().map(|address| (endpoint.clone(), address)))
            .collect();
        self.set_resolved(&resolved);
    }

    fn set_resolved(&self, endpoints: &[(EndpointConfig, SocketAddr)]) {
        let current = self.hosts.load();
        let hosts: Vec<Arc<Host>> = endpoints
            .iter()
            .map(|(endpoint, address)| {
                current
                    .hosts
                    .iter()
                    .find(|host| {
                        host.address == *address
                            && host.weight == endpoint.weight
                            && host.eds_healthy == endpoint.healthy
                            && host.priority == endpoint.priority
                            && host.socket_match == endpoint.socket_match
                            && host.locality == endpoint.locality
                            && host.locality_weight == endpoint.locality_weight
                    })
                    .cloned()
                    .unwrap_or_else(|| Host::new(endpoint, *address))
            })
            .collect();
        self.stats.membership_total.set(hosts.len() as i64);
        self.stats.membership_healthy.set(hosts.iter().filter(|host| host.eds_healthy).count() as i64);
        self.stats.update_success.inc();
        let ring = Ring::for_policy(self.config.lb_policy, &hosts);
        self.hosts.store(Arc::new(HostSet { hosts, ring }));
        self.connection_freed.notify_waiters();
    }

    /// The TLS a connection to `host` uses: the first transport socket match whose labels the
    /// host's metadata carries, else the cluster's own (`None`: plaintext).
    pub(crate) fn tls_for(&self, host: &Host) -> Option<&crate::dataplane::config::cluster::UpstreamTls> {
        let matched =
            self.config.tls_matches.iter().find(|candidate| {
                candidate.labels.iter().all(|(key, value)| host.socket_match.get(key) == Some(value))
            });
        match matched {
            Some(matched) => matched.tls.as_ref(),
            None => self.config.tls.as_ref(),
        }
    }

    /// For ORIGINAL_DST clusters: the host for a connection's original destination.
    pub(crate) fn original_dst_host(&self, destination: SocketAddr) -> Arc<Host> {
        let mut hosts = istio_runtime::sync::lock(&self.original_dst_hosts);
        // Forget hosts nobody is using any more, so the map does not grow without bound.
        if hosts.len() > 1024 {
            hosts.retain(|_, host| Arc::strong_count(host) > 1 || host.pool.has_idle());
        }
        hosts
            .entry(destination)
            .or_insert_with(|| {
                Host::new(
                    &EndpointConfig {
                        host: destination.ip().to_string(),
                        port: destination.port(),
                        weight: 1,
                        healthy: true,
                        priority: 0,
                        socket_match: Default::default(),
                        locality: String::new(),
                        locality_weight: 0,
                    },
                    destination,
                )
            })
            .clone()
    }

    /// Outlier detection: records a response (or a connection failure, as a gateway error)
    /// from `host`, ejecting it when it crosses a consecutive-error threshold.
    pub(crate) fn record_outcome(&self, host: &Host, status: Option<u16>) {
        let Some(outlier) = &self.config.outlier else { return };
        let now = Instant::now();
        let mut state = istio_runtime::sync::lock(&host.outlier);
        let is_5xx = status.is_none_or(|status| status >= 500);
        let is_gateway = status.is_none_or(|status| matches!(status, 502..=504));
        if !is_5xx {
            state.consecutive_5xx = 0;
            state.consecutive_gateway_failure = 0;
            // Like Envoy, a host that stays healthy for an interval after its ejection ended
            // earns back one step of its ejection multiplier.
            if state.ejected_until.is_some_and(|until| until + outlier.interval <= now) {
                state.times_ejected = state.times_ejected.saturating_sub(1);
                state.ejected_until = if state.times_ejected == 0 { None } else { Some(now) };
            }
            return;
        }
        state.consecutive_5xx += 1;
        if is_gateway {
            state.consecutive_gateway_failure += 1;
        } else {
            state.consecutive_gateway_failure = 0;
        }
        let trip_5xx = outlier.consecutive_5xx.is_some_and(|limit| state.consecutive_5xx >= limit)
            && crate::dataplane::config::matcher::roll(f64::from(outlier.enforcing_consecutive_5xx) / 100.0);
        let trip_gateway =
            outlier.consecutive_gateway_failure.is_some_and(|limit| state.consecutive_gateway_failure >= limit)
                && crate::dataplane::config::matcher::roll(
                    f64::from(outlier.enforcing_consecutive_gateway_failure) / 100.0,
                );
        if !(trip_5xx || trip_gateway) || state.ejected_until.is_some_and(|until| until > now) {
            return;
        }
        // Counting ejected hosts takes every host's lock, this one's included.
        drop(state);
        if !self.may_eject(outlier, now) {
            return;
        }
        let mut state = istio_runtime::sync::lock(&host.outlier);
        state.times_ejected += 1;
        let ejection = outlier.base_ejection_time * state.times_ejected;
        state.ejected_until = Some(now + ejection);
        state.consecutive_5xx = 0;
        state.consecutive_gateway_failure = 0;
        drop(state);
        self.stats.ejections_total.inc();
        self.stats.ejections_enforced_total.inc();
        tracing::info!(cluster = %self.config.name, host = %host.address, "outlier detection ejected the host for {ejection:?}");
        self.refresh_ejection_gauge(now);
    }

    /// `max_ejection_percent`: at least one host may always be ejected, as in Envoy.
    fn may_eject(&self, outlier: &OutlierConfig, now: Instant) -> bool {
        let hosts = self.hosts.load();
        let total = hosts.hosts.len().max(1);
        let ejected = hosts.hosts.iter().filter(|host| host.ejected(now)).count();
        ejected == 0 || (ejected + 1) * 100 <= total * outlier.max_ejection_percent as usize
    }

    pub(crate) fn refresh_ejection_gauge(&self, now: Instant) {
        let hosts = self.hosts.load();
        let ejected = hosts.hosts.iter().filter(|host| host.ejected(now)).count();
        self.stats.ejections_active.set(ejected as i64);
        self.stats.membership_healthy.set(hosts.hosts.iter().filter(|host| host.healthy(now)).count() as i64);
    }
}

/// Re-resolves a STRICT_DNS cluster's host names every `refresh` while the cluster exists.
async fn resolve_forever(cluster: std::sync::Weak<UpstreamCluster>, refresh: Duration) {
    loop {
        let Some(strong) = cluster.upgrade() else { return };
        let endpoints = strong.config.load_assignment.clone();
        drop(strong);
        let mut resolved = Vec::new();
        for endpoint in &endpoints {
            match tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await {
                Ok(addresses) => {
                    resolved.extend(addresses.filter(SocketAddr::is_ipv4).map(|address| (endpoint.clone(), address)));
                }
                Err(error) => tracing::warn!("resolving {}: {error}", endpoint.host),
            }
        }
        let Some(strong) = cluster.upgrade() else { return };
        if !resolved.is_empty() || strong.hosts.load().hosts.is_empty() {
            strong.set_resolved(&resolved);
        }
        drop(strong);
        tokio::time::sleep(refresh.max(Duration::from_millis(500))).await;
    }
}
