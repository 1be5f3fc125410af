//! The upstream side: every cluster the data plane knows, its hosts (from EDS, the cluster's
//! own load assignment, DNS, or the connection's original destination), host health from
//! outlier detection, load balancing, and per-host connection pools under the cluster's
//! circuit breakers. Cluster and host objects survive config updates that do not change them,
//! so pools, counters and ejections carry over.

pub mod lb;
pub mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::config::cluster::{ClusterConfig, Discovery, EndpointConfig, OutlierConfig};
use super::stats::{Counter, Gauge, Stats};
use lb::Ring;
use pool::HostPool;

/// Envoy's per-cluster stats this data plane keeps.
#[derive(Debug, Clone)]
pub struct ClusterStats {
    prefix: String,
    stats: Stats,
    pub upstream_cx_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_rq_total: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_pending_active: Gauge,
    pub upstream_rq_pending_total: Counter,
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_retry: Counter,
    pub upstream_rq_retry_overflow: Counter,
    pub upstream_rq_timeout: Counter,
    pub upstream_rq_per_try_timeout: Counter,
    pub upstream_cx_destroy_remote: Counter,
    pub membership_total: Gauge,
    pub membership_healthy: Gauge,
    pub ejections_active: Gauge,
    pub ejections_total: Counter,
    /// Envoy's non-deprecated name for ejections that were carried out.
    pub ejections_enforced_total: Counter,
    pub update_success: Counter,
    /// `upstream_rq_1xx` … `upstream_rq_5xx`.
    rq_by_class: [Counter; 5],
    /// `upstream_rq_<code>`, found once per code.
    rq_by_code: Arc<Mutex<HashMap<u16, Counter>>>,
}

impl ClusterStats {
    fn new(stats: &Stats, name: &str) -> ClusterStats {
        let prefix = format!("cluster.{name}.");
        let counter = |suffix: &str| stats.counter(&format!("{prefix}{suffix}"));
        let gauge = |suffix: &str| stats.gauge(&format!("{prefix}{suffix}"));
        ClusterStats {
            upstream_cx_total: counter("upstream_cx_total"),
            upstream_cx_active: gauge("upstream_cx_active"),
            upstream_cx_connect_fail: counter("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: counter("upstream_cx_connect_timeout"),
            upstream_rq_total: counter("upstream_rq_total"),
            upstream_rq_active: gauge("upstream_rq_active"),
            upstream_rq_pending_active: gauge("upstream_rq_pending_active"),
            upstream_rq_pending_total: counter("upstream_rq_pending_total"),
            upstream_rq_pending_overflow: counter("upstream_rq_pending_overflow"),
            upstream_rq_retry: counter("upstream_rq_retry"),
            upstream_rq_retry_overflow: counter("upstream_rq_retry_overflow"),
            upstream_rq_timeout: counter("upstream_rq_timeout"),
            upstream_rq_per_try_timeout: counter("upstream_rq_per_try_timeout"),
            upstream_cx_destroy_remote: counter("upstream_cx_destroy_remote"),
            membership_total: gauge("membership_total"),
            membership_healthy: gauge("membership_healthy"),
            ejections_active: gauge("outlier_detection.ejections_active"),
            ejections_total: counter("outlier_detection.ejections_total"),
            ejections_enforced_total: counter("outlier_detection.ejections_enforced_total"),
            update_success: counter("update_success"),
            rq_by_class: [1, 2, 3, 4, 5].map(|class| counter(&format!("upstream_rq_{class}xx"))),
            rq_by_code: Arc::default(),
            prefix,
            stats: stats.clone(),
        }
    }

    /// `upstream_rq_<code>` and `upstream_rq_<class>xx` for a response.
    pub fn record_response(&self, status: u16) {
        let code = {
            let mut codes = self.rq_by_code.lock().unwrap_or_else(|poison| poison.into_inner());
            codes
                .entry(status)
                .or_insert_with(|| self.stats.counter(&format!("{}upstream_rq_{status}", self.prefix)))
                .clone()
        };
        code.inc();
        if let Some(class) = self.rq_by_class.get(usize::from(status / 100).saturating_sub(1)) {
            class.inc();
        }
    }
}

/// One upstream host and what the data plane tracks about it.
#[derive(Debug)]
pub struct Host {
    pub address: SocketAddr,
    pub weight: u32,
    pub priority: u32,
    /// Health as EDS reported it.
    pub eds_healthy: bool,
    pub outlier: Mutex<OutlierState>,
    pub active_requests: AtomicUsize,
    pub pool: HostPool,
}

#[derive(Debug, Default)]
pub struct OutlierState {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub ejected_until: Option<Instant>,
    pub times_ejected: u32,
}

impl Host {
    fn new(endpoint: &EndpointConfig, address: SocketAddr) -> Arc<Host> {
        Arc::new(Host {
            address,
            weight: endpoint.weight,
            priority: endpoint.priority,
            eds_healthy: endpoint.healthy,
            outlier: Mutex::new(OutlierState::default()),
            active_requests: AtomicUsize::new(0),
            pool: HostPool::default(),
        })
    }

    pub fn ejected(&self, now: Instant) -> bool {
        self.outlier.lock().unwrap_or_else(|poison| poison.into_inner()).ejected_until.is_some_and(|until| until > now)
    }

    pub fn healthy(&self, now: Instant) -> bool {
        self.eds_healthy && !self.ejected(now)
    }
}

/// A cluster at run time.
#[derive(Debug)]
pub struct UpstreamCluster {
    pub config: ClusterConfig,
    pub stats: ClusterStats,
    hosts: ArcSwap<HostSet>,
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
pub struct HostSet {
    pub hosts: Vec<Arc<Host>>,
    pub ring: Ring,
}

impl Drop for UpstreamCluster {
    fn drop(&mut self) {
        if let Some(task) = self.dns_task.lock().unwrap_or_else(|poison| poison.into_inner()).take() {
            task.abort();
        }
    }
}

impl UpstreamCluster {
    fn new(
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
                *cluster.dns_task.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(task);
            }
            Discovery::Eds(_) | Discovery::OriginalDst => {}
        }
        cluster
    }

    pub fn hosts(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.hosts.load()
    }

    /// Replaces the host list, keeping the state of hosts that stay.
    pub fn set_endpoints(&self, endpoints: &[EndpointConfig]) {
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
                    })
                    .cloned()
                    .unwrap_or_else(|| Host::new(endpoint, *address))
            })
            .collect();
        self.stats.membership_total.set(hosts.len() as i64);
        self.stats.membership_healthy.set(hosts.iter().filter(|host| host.eds_healthy).count() as i64);
        self.stats.update_success.inc();
        let ring = Ring::build(&hosts);
        self.hosts.store(Arc::new(HostSet { hosts, ring }));
        self.connection_freed.notify_waiters();
    }

    /// For ORIGINAL_DST clusters: the host for a connection's original destination.
    pub fn original_dst_host(&self, destination: SocketAddr) -> Arc<Host> {
        let mut hosts = self.original_dst_hosts.lock().unwrap_or_else(|poison| poison.into_inner());
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
                    },
                    destination,
                )
            })
            .clone()
    }

    /// Outlier detection: records a response (or a connection failure, as a gateway error)
    /// from `host`, ejecting it when it crosses a consecutive-error threshold.
    pub fn record_outcome(&self, host: &Host, status: Option<u16>) {
        let Some(outlier) = &self.config.outlier else { return };
        let now = Instant::now();
        let mut state = host.outlier.lock().unwrap_or_else(|poison| poison.into_inner());
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
            && super::config::matcher::roll(f64::from(outlier.enforcing_consecutive_5xx) / 100.0);
        let trip_gateway =
            outlier.consecutive_gateway_failure.is_some_and(|limit| state.consecutive_gateway_failure >= limit)
                && super::config::matcher::roll(f64::from(outlier.enforcing_consecutive_gateway_failure) / 100.0);
        if !(trip_5xx || trip_gateway) || state.ejected_until.is_some_and(|until| until > now) {
            return;
        }
        // Counting ejected hosts takes every host's lock, this one's included.
        drop(state);
        if !self.may_eject(outlier, now) {
            return;
        }
        let mut state = host.outlier.lock().unwrap_or_else(|poison| poison.into_inner());
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

    pub fn refresh_ejection_gauge(&self, now: Instant) {
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

/// A compiled cluster and, if it speaks TLS upstream, where its TLS config is built.
pub type CompiledCluster = (ClusterConfig, Option<Arc<crate::dataplane::tls::TlsConfigs>>);

/// Every cluster, swapped atomically on CDS updates.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<UpstreamCluster>>>,
    /// EDS assignments by service name, kept even before their cluster arrives.
    assignments: Mutex<HashMap<String, Vec<EndpointConfig>>>,
    stats: Stats,
}

impl ClusterManager {
    pub fn new(stats: Stats) -> ClusterManager {
        ClusterManager { clusters: ArcSwap::default(), assignments: Mutex::default(), stats }
    }

    pub fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.clusters.load().get(name).cloned()
    }

    pub fn all(&self) -> Arc<HashMap<String, Arc<UpstreamCluster>>> {
        self.clusters.load_full()
    }

    /// Installs `configs`, keeping those current clusters `keep` names (CDS replaces the
    /// dynamic clusters and keeps the static ones). Unchanged clusters keep their state.
    pub fn update(&self, configs: Vec<CompiledCluster>, keep: impl Fn(&str) -> bool) {
        let current = self.clusters.load_full();
        let assignments = self.assignments.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut next: HashMap<String, Arc<UpstreamCluster>> = current
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, cluster)| (name.clone(), cluster.clone()))
            .collect();
        for (config, tls) in configs {
            let unchanged = current.get(&config.name).filter(|existing| existing.config == config);
            let cluster = match unchanged {
                Some(existing) => existing.clone(),
                None => {
                    let cluster = UpstreamCluster::new(config, &self.stats, tls);
                    if let Discovery::Eds(service) = &cluster.config.discovery {
                        if let Some(endpoints) = assignments.get(service) {
                            cluster.set_endpoints(endpoints);
                        } else if let Some(previous) = current.get(&cluster.config.name) {
                            // Keep serving the old endpoints until EDS says otherwise.
                            let previous_hosts = previous.hosts();
                            cluster.hosts.store(Arc::new(HostSet {
                                hosts: previous_hosts.hosts.clone(),
                                ring: Ring::build(&previous_hosts.hosts),
                            }));
                        }
                    }
                    cluster
                }
            };
            next.insert(cluster.config.name.clone(), cluster);
        }
        self.stats.gauge("cluster_manager.active_clusters").set(next.len() as i64);
        self.clusters.store(Arc::new(next));
    }

    /// Applies an EDS assignment for `service`.
    pub fn set_assignment(&self, service: &str, endpoints: Vec<EndpointConfig>) {
        for cluster in self.clusters.load().values() {
            if matches!(&cluster.config.discovery, Discovery::Eds(name) if name == service) {
                cluster.set_endpoints(&endpoints);
            }
        }
        self.assignments.lock().unwrap_or_else(|poison| poison.into_inner()).insert(service.to_string(), endpoints);
    }

    /// Forgets assignments no EDS cluster refers to any more.
    pub fn retain_assignments(&self, names: &std::collections::HashSet<String>) {
        self.assignments.lock().unwrap_or_else(|poison| poison.into_inner()).retain(|name, _| names.contains(name));
    }

    /// The EDS service names clusters are waiting on.
    pub fn eds_services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .clusters
            .load()
            .values()
            .filter_map(|cluster| match &cluster.config.discovery {
                Discovery::Eds(service) => Some(service.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether an EDS assignment has arrived for `service`.
    pub fn has_assignment(&self, service: &str) -> bool {
        self.assignments.lock().unwrap_or_else(|poison| poison.into_inner()).contains_key(service)
    }
}
