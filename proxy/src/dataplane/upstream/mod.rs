//! The upstream side: every cluster the data plane knows, its hosts (from EDS, the cluster's
//! own load assignment, DNS, or the connection's original destination), host health from
//! outlier detection, load balancing, and per-host connection pools under the cluster's
//! circuit breakers. Cluster and host objects survive config updates that do not change them,
//! so pools, counters and ejections carry over.

pub(crate) mod cluster;
pub(crate) mod host;
pub(crate) mod host_pool;
pub(crate) mod lb;
pub(crate) mod pool;
pub(crate) mod ring;
pub(crate) mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::dataplane::config::cluster::{ClusterConfig, Discovery, EndpointConfig};
use crate::dataplane::stats::Stats;
use cluster::{HostSet, UpstreamCluster};
use ring::Ring;

/// A compiled cluster and, if it speaks TLS upstream, where its TLS config is built.
pub(crate) type CompiledCluster = (ClusterConfig, Option<Arc<crate::dataplane::tls::TlsConfigs>>);

/// Every cluster, swapped atomically on CDS updates.
#[derive(Debug, Default)]
pub(crate) struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<UpstreamCluster>>>,
    /// EDS assignments by service name, kept even before their cluster arrives.
    assignments: Mutex<HashMap<String, Vec<EndpointConfig>>>,
    stats: Stats,
}

impl ClusterManager {
    pub(crate) fn new(stats: Stats) -> ClusterManager {
        ClusterManager { clusters: ArcSwap::default(), assignments: Mutex::default(), stats }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.clusters.load().get(name).cloned()
    }

    pub(crate) fn all(&self) -> Arc<HashMap<String, Arc<UpstreamCluster>>> {
        self.clusters.load_full()
    }

    /// Installs `configs`, keeping those current clusters `keep` names (CDS replaces the
    /// dynamic clusters and keeps the static ones). Unchanged clusters keep their state.
    pub(crate) fn update(&self, configs: Vec<CompiledCluster>, keep: impl Fn(&str) -> bool) {
        let current = self.clusters.load_full();
        let assignments = istio_runtime::sync::lock(&self.assignments);
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
                                ring: Ring::for_policy(cluster.config.lb_policy, &previous_hosts.hosts),
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
    pub(crate) fn set_assignment(&self, service: &str, endpoints: Vec<EndpointConfig>) {
        for cluster in self.clusters.load().values() {
            if matches!(&cluster.config.discovery, Discovery::Eds(name) if name == service) {
                cluster.set_endpoints(&endpoints);
            }
        }
        istio_runtime::sync::lock(&self.assignments).insert(service.to_string(), endpoints);
    }

    /// Forgets assignments no EDS cluster refers to any more.
    pub(crate) fn retain_assignments(&self, names: &std::collections::HashSet<String>) {
        istio_runtime::sync::lock(&self.assignments).retain(|name, _| names.contains(name));
    }

    /// The EDS service names clusters are waiting on.
    pub(crate) fn eds_services(&self) -> Vec<String> {
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
    pub(crate) fn has_assignment(&self, service: &str) -> bool {
        istio_runtime::sync::lock(&self.assignments).contains_key(service)
    }
}
