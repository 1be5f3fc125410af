//! Load balancing over a cluster's hosts: Envoy's policies (round robin, least request as
//! power of two choices, random, ring hash) over the healthy hosts of the best priority, with
//! Envoy's panic mode (all hosts of the priority) when fewer than half are healthy, and
//! retries steering away from hosts already tried.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::cluster::UpstreamCluster;
use super::host::Host;
use crate::dataplane::config::cluster::LbPolicy;

/// Envoy's default healthy panic threshold.
const PANIC_THRESHOLD_PERCENT: usize = 50;

impl UpstreamCluster {
    /// Picks a host for a request: `hash` for ring hash, `tried` hosts avoided when another
    /// will do.
    pub(crate) fn choose_host(&self, hash: Option<u64>, tried: &[SocketAddr]) -> Option<Arc<Host>> {
        let set = self.hosts();
        let now = Instant::now();
        if set.hosts.is_empty() {
            return None;
        }
        let healthy: Vec<bool> = set.hosts.iter().map(|host| host.healthy(now)).collect();
        let ejected = set.hosts.iter().filter(|host| host.ejected(now)).count();
        self.stats.ejections_active.set(ejected as i64);
        let best_priority = (0..set.hosts.len()).filter(|&i| healthy[i]).map(|i| set.hosts[i].priority).min();
        let mut eligible: Vec<usize> = match best_priority {
            Some(priority) => {
                let in_priority: Vec<usize> =
                    (0..set.hosts.len()).filter(|&i| set.hosts[i].priority == priority).collect();
                let healthy_here: Vec<usize> = in_priority.iter().copied().filter(|&i| healthy[i]).collect();
                // Envoy's panic threshold: below 50 % healthy, balance over every host of the
                // priority rather than overload the few healthy ones.
                if healthy_here.len() * 100 < in_priority.len() * PANIC_THRESHOLD_PERCENT {
                    in_priority
                } else {
                    healthy_here
                }
            }
            // Panic mode: with no healthy host, Envoy balances over all of them.
            None => (0..set.hosts.len()).collect(),
        };
        if eligible.len() > 1 {
            let untried: Vec<usize> =
                eligible.iter().copied().filter(|&i| !tried.contains(&set.hosts[i].address)).collect();
            if !untried.is_empty() {
                eligible = untried;
            }
        }
        let index = match (self.config.lb_policy, hash) {
            (LbPolicy::RingHash, Some(hash)) => {
                set.ring.walk(hash).find(|index| eligible.contains(index)).unwrap_or(eligible[0])
            }
            (LbPolicy::Random, _) | (LbPolicy::RingHash, None) => eligible[rand::random_range(0..eligible.len())],
            (LbPolicy::LeastRequest, _) if eligible.len() > 1 => {
                let first = eligible[rand::random_range(0..eligible.len())];
                let second = eligible[rand::random_range(0..eligible.len())];
                let load = |i: usize| set.hosts[i].active_requests.load(Ordering::Relaxed);
                if load(second) < load(first) {
                    second
                } else {
                    first
                }
            }
            _ => {
                let total_weight: u64 = eligible.iter().map(|&i| u64::from(set.hosts[i].weight.max(1))).sum();
                let mut ticket = (self.round_robin.fetch_add(1, Ordering::Relaxed) as u64) % total_weight;
                *eligible
                    .iter()
                    .find(|&&i| {
                        let weight = u64::from(set.hosts[i].weight.max(1));
                        if ticket < weight {
                            true
                        } else {
                            ticket -= weight;
                            false
                        }
                    })
                    .unwrap_or(&eligible[0])
            }
        };
        Some(set.hosts[index].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::config::cluster::{ClusterConfig, Discovery, EndpointConfig, Limits};
    use crate::dataplane::stats::Stats;
    use crate::dataplane::upstream::ring::hash_of;
    use std::time::Duration;

    /// One endpoint of a test cluster: address, weight, EDS health and priority.
    struct Endpoint(&'static str, u32, bool, u32);

    fn cluster(policy: LbPolicy, hosts: &[&'static str]) -> Arc<UpstreamCluster> {
        let endpoints: Vec<Endpoint> = hosts.iter().map(|&host| Endpoint(host, 1, true, 0)).collect();
        cluster_of(policy, &endpoints)
    }

    fn cluster_of(policy: LbPolicy, endpoints: &[Endpoint]) -> Arc<UpstreamCluster> {
        let config = ClusterConfig {
            name: "c".into(),
            discovery: Discovery::Eds("c".into()),
            lb_policy: policy,
            connect_timeout: Duration::from_secs(1),
            limits: Limits::default(),
            outlier: None,
            http2: false,
            max_requests_per_connection: None,
            idle_timeout: None,
            tls: None,
            tls_matches: Vec::new(),
            bind_address: None,
            load_assignment: Vec::new(),
        };
        let cluster = UpstreamCluster::new(config, &Stats::default(), None);
        let endpoints: Vec<EndpointConfig> = endpoints
            .iter()
            .map(|&Endpoint(host, weight, healthy, priority)| {
                let address: SocketAddr = host.parse().expect("addr");
                EndpointConfig {
                    host: address.ip().to_string(),
                    port: address.port(),
                    weight,
                    healthy,
                    priority,
                    socket_match: Default::default(),
                }
            })
            .collect();
        cluster.set_endpoints(&endpoints);
        cluster
    }

    /// How often each address was chosen over `picks` choices.
    fn tally(cluster: &UpstreamCluster, picks: usize) -> std::collections::BTreeMap<SocketAddr, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..picks {
            let host = cluster.choose_host(None, &[]).expect("host");
            *counts.entry(host.address).or_insert(0) += 1;
        }
        counts
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    #[tokio::test]
    async fn round_robin_visits_every_host() {
        let cluster = cluster(LbPolicy::RoundRobin, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let mut seen: Vec<SocketAddr> =
            (0..3).filter_map(|_| cluster.choose_host(None, &[])).map(|host| host.address).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn ring_hash_is_sticky_and_retries_avoid_tried_hosts() {
        let cluster = cluster(LbPolicy::RingHash, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let hash = hash_of("user-42");
        let first = cluster.choose_host(Some(hash), &[]).expect("host").address;
        for _ in 0..10 {
            assert_eq!(cluster.choose_host(Some(hash), &[]).expect("host").address, first);
        }
        assert_ne!(cluster.choose_host(Some(hash), &[first]).expect("host").address, first);
    }

    #[tokio::test]
    async fn ejected_hosts_are_skipped_until_all_are_ejected() {
        let cluster = cluster(LbPolicy::RoundRobin, &["10.0.0.1:80", "10.0.0.2:80"]);
        let bad = cluster.hosts().hosts[0].clone();
        bad.outlier.lock().expect("lock").ejected_until = Some(Instant::now() + Duration::from_secs(30));
        for _ in 0..4 {
            assert_ne!(cluster.choose_host(None, &[]).expect("host").address, bad.address);
        }
        cluster.hosts().hosts[1].outlier.lock().expect("lock").ejected_until =
            Some(Instant::now() + Duration::from_secs(30));
        assert!(cluster.choose_host(None, &[]).is_some(), "panic mode uses ejected hosts");
    }

    #[tokio::test]
    async fn round_robin_follows_endpoint_weights() {
        let cluster = cluster_of(
            LbPolicy::RoundRobin,
            &[Endpoint("10.0.0.1:80", 3, true, 0), Endpoint("10.0.0.2:80", 1, true, 0)],
        );
        let counts = tally(&cluster, 40);
        assert_eq!(counts[&addr("10.0.0.1:80")], 30);
        assert_eq!(counts[&addr("10.0.0.2:80")], 10);
    }

    #[tokio::test]
    async fn traffic_fails_over_to_the_next_priority() {
        let local = [Endpoint("10.0.0.1:80", 1, true, 0), Endpoint("10.0.1.1:80", 1, true, 1)];
        let counts = tally(&cluster_of(LbPolicy::RoundRobin, &local), 10);
        assert_eq!(counts.get(&addr("10.0.0.1:80")), Some(&10), "the best priority takes everything");
        let failed = [Endpoint("10.0.0.1:80", 1, false, 0), Endpoint("10.0.1.1:80", 1, true, 1)];
        let counts = tally(&cluster_of(LbPolicy::RoundRobin, &failed), 10);
        assert_eq!(counts.get(&addr("10.0.1.1:80")), Some(&10), "an unhealthy priority is skipped");
    }

    #[tokio::test]
    async fn below_half_healthy_a_priority_panics_and_uses_every_host() {
        let mostly_down = [
            Endpoint("10.0.0.1:80", 1, true, 0),
            Endpoint("10.0.0.2:80", 1, false, 0),
            Endpoint("10.0.0.3:80", 1, false, 0),
        ];
        let counts = tally(&cluster_of(LbPolicy::RoundRobin, &mostly_down), 30);
        assert_eq!(counts.len(), 3, "panic mode spreads over unhealthy hosts too: {counts:?}");
        let half_up = [Endpoint("10.0.0.1:80", 1, true, 0), Endpoint("10.0.0.2:80", 1, false, 0)];
        let counts = tally(&cluster_of(LbPolicy::RoundRobin, &half_up), 10);
        assert_eq!(counts.get(&addr("10.0.0.1:80")), Some(&10), "at 50 % only healthy hosts serve");
    }

    #[tokio::test]
    async fn least_request_prefers_the_idler_host() {
        let cluster = cluster(LbPolicy::LeastRequest, &["10.0.0.1:80", "10.0.0.2:80"]);
        cluster.hosts().hosts[0].active_requests.store(100, Ordering::Relaxed);
        let counts = tally(&cluster, 400);
        // Two random choices pick the busy host only when both land on it: a quarter of the time.
        let idle = counts[&addr("10.0.0.2:80")];
        assert!(idle > 240, "the idle host took {idle} of 400");
    }

    #[tokio::test]
    async fn random_reaches_every_host_and_retries_avoid_tried_ones() {
        let cluster = cluster(LbPolicy::Random, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        assert_eq!(tally(&cluster, 200).len(), 3);
        let tried = [addr("10.0.0.1:80"), addr("10.0.0.2:80")];
        for _ in 0..20 {
            assert_eq!(cluster.choose_host(None, &tried).expect("host").address, addr("10.0.0.3:80"));
        }
    }

    #[tokio::test]
    async fn an_empty_cluster_has_no_host() {
        assert!(cluster(LbPolicy::RoundRobin, &[]).choose_host(None, &[]).is_none());
    }
}
