//! Load balancing over a cluster's hosts, as Envoy does it: a priority by the load its health
//! earns it (spilling over to the next as hosts fail), its healthy hosts, or all of them in
//! panic mode (below the cluster's `healthy_panic_threshold`, 50 % unless set), with locality
//! weighting a locality by weight and health, then Envoy's policies (round robin, least
//! request as power of two choices, random, ring hash), retries steering away from hosts
//! already tried.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::cluster::UpstreamCluster;
use super::host::Host;
use crate::dataplane::config::cluster::LbPolicy;

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
        let mut eligible = self.eligible_hosts(&set.hosts, &healthy)?;
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

    /// The hosts a request may go to, as Envoy picks them: a priority by the load its health
    /// earns it (a priority at 72 % healthy or more takes everything, with Envoy's
    /// overprovisioning factor of 1.4; the rest spills to the next), its healthy hosts unless
    /// it is below the panic threshold, and with locality weighting, one of its localities by
    /// weight times health. `None` when nothing may serve (no healthy host and no panic mode).
    fn eligible_hosts(&self, hosts: &[Arc<Host>], healthy: &[bool]) -> Option<Vec<usize>> {
        // Most clusters have one priority: it takes all the load.
        let single = hosts.iter().all(|host| host.priority == hosts[0].priority);
        let members = if single { (0..hosts.len()).collect() } else { choose_priority(hosts, healthy) };
        let healthy_members: Vec<usize> = members.iter().copied().filter(|&i| healthy[i]).collect();
        let panic = (healthy_members.len() as f64 * 100.0) < members.len() as f64 * self.config.healthy_panic_threshold;
        let candidates = if panic {
            members.clone()
        } else if healthy_members.is_empty() {
            return None;
        } else {
            healthy_members
        };
        if !self.config.locality_weighted {
            return Some(candidates);
        }
        Some(pick_locality(hosts, healthy, &members, candidates, panic))
    }
}

/// The hosts of the priority a request goes to: each priority's share of the load is its
/// health (overprovisioned), scaled up when all of them together fall short; with no health
/// anywhere, the first priority.
fn choose_priority(hosts: &[Arc<Host>], healthy: &[bool]) -> Vec<usize> {
    let mut priorities: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, host) in hosts.iter().enumerate() {
        priorities.entry(host.priority).or_default().push(index);
    }
    let health: Vec<f64> = priorities
        .values()
        .map(|members| {
            let up = members.iter().filter(|&&i| healthy[i]).count();
            (OVERPROVISIONING * up as f64 / members.len() as f64).min(100.0)
        })
        .collect();
    let total_health = health.iter().sum::<f64>().min(100.0);
    let mut chosen = 0;
    if total_health > 0.0 {
        // Each priority's share of the load, in order, until the whole is given out.
        let mut draw = rand::random_range(0.0..100.0);
        let mut left = 100.0;
        chosen = health.len() - 1;
        for (position, health) in health.iter().enumerate() {
            let load = (health * 100.0 / total_health).min(left);
            left -= load;
            if draw < load {
                chosen = position;
                break;
            }
            draw -= load;
        }
    }
    priorities.into_values().nth(chosen).unwrap_or_default()
}

/// Locality-weighted balancing: one of the priority's localities (`members` are its hosts) by
/// its weight scaled by how healthy it is (wholly, in panic mode); the candidates in it.
fn pick_locality(
    hosts: &[Arc<Host>],
    healthy: &[bool],
    members: &[usize],
    candidates: Vec<usize>,
    panic: bool,
) -> Vec<usize> {
    // Locality → (weight, hosts, healthy hosts).
    let mut localities: BTreeMap<&str, (u32, usize, usize)> = BTreeMap::new();
    for &index in members {
        let host = &hosts[index];
        let entry = localities.entry(host.locality.as_str()).or_insert((host.locality_weight, 0, 0));
        entry.1 += 1;
        entry.2 += usize::from(healthy[index]);
    }
    let weights: Vec<(&str, f64)> = localities
        .iter()
        .map(|(&name, &(weight, total, up))| {
            let availability = if panic { 1.0 } else { (OVERPROVISIONING * up as f64 / total as f64 / 100.0).min(1.0) };
            (name, f64::from(weight) * availability)
        })
        .filter(|(_, weight)| *weight > 0.0)
        .collect();
    let sum: f64 = weights.iter().map(|(_, weight)| weight).sum();
    if sum <= 0.0 {
        // No locality carries a weight: the hosts are balanced as one set, as Envoy does.
        return candidates;
    }
    let mut draw = rand::random_range(0.0..sum);
    let mut chosen = weights[weights.len() - 1].0;
    for &(name, weight) in &weights {
        if draw < weight {
            chosen = name;
            break;
        }
        draw -= weight;
    }
    let in_locality: Vec<usize> = candidates.iter().copied().filter(|&i| hosts[i].locality == chosen).collect();
    if in_locality.is_empty() {
        candidates
    } else {
        in_locality
    }
}

/// Envoy's default overprovisioning factor (1.4), in percent per healthy fraction.
const OVERPROVISIONING: f64 = 140.0;

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
        cluster_in_localities(policy, endpoints, &[], crate::dataplane::config::cluster::DEFAULT_PANIC_THRESHOLD)
    }

    /// A cluster whose `i`th endpoint is in `localities[i]` (name, locality weight); with any
    /// localities, balanced by locality weight.
    fn cluster_in_localities(
        policy: LbPolicy,
        endpoints: &[Endpoint],
        localities: &[(&str, u32)],
        healthy_panic_threshold: f64,
    ) -> Arc<UpstreamCluster> {
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
            healthy_panic_threshold,
            locality_weighted: !localities.is_empty(),
        };
        let cluster = UpstreamCluster::new(config, &Stats::default(), None);
        let endpoints: Vec<EndpointConfig> = endpoints
            .iter()
            .enumerate()
            .map(|(index, &Endpoint(host, weight, healthy, priority))| {
                let address: SocketAddr = host.parse().expect("addr");
                let (locality, locality_weight) = localities.get(index).copied().unwrap_or_default();
                EndpointConfig {
                    host: address.ip().to_string(),
                    port: address.port(),
                    weight,
                    healthy,
                    priority,
                    socket_match: Default::default(),
                    locality: locality.to_string(),
                    locality_weight,
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

    #[test]
    fn only_ring_hash_clusters_build_a_ring() {
        let hosts = ["10.0.0.1:80", "10.0.0.2:80"];
        assert!(cluster(LbPolicy::RingHash, &hosts).hosts().ring.walk(7).next().is_some());
        for policy in [LbPolicy::RoundRobin, LbPolicy::LeastRequest, LbPolicy::Random] {
            assert!(cluster(policy, &hosts).hosts().ring.walk(7).next().is_none(), "{policy:?}");
        }
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
    async fn a_partly_healthy_priority_spills_load_to_the_next() {
        // Envoy's overprovisioning: a priority at 1/2 healthy earns 70 % of the load; the
        // next priority takes the other 30 %.
        let half = [
            Endpoint("10.0.0.1:80", 1, true, 0),
            Endpoint("10.0.0.2:80", 1, false, 0),
            Endpoint("10.0.1.1:80", 1, true, 1),
        ];
        let counts = tally(&cluster_of(LbPolicy::RoundRobin, &half), 2000);
        let next = counts.get(&addr("10.0.1.1:80")).copied().unwrap_or(0);
        assert!((450..750).contains(&next), "the next priority took {next} of 2000");
        assert!(!counts.contains_key(&addr("10.0.0.2:80")), "no panic at 50 %: {counts:?}");
        // At 3/4 healthy a priority keeps everything.
        let mostly = [
            Endpoint("10.0.0.1:80", 1, true, 0),
            Endpoint("10.0.0.2:80", 1, true, 0),
            Endpoint("10.0.0.3:80", 1, true, 0),
            Endpoint("10.0.0.4:80", 1, false, 0),
            Endpoint("10.0.1.1:80", 1, true, 1),
        ];
        assert!(!tally(&cluster_of(LbPolicy::RoundRobin, &mostly), 500).contains_key(&addr("10.0.1.1:80")));
    }

    #[tokio::test]
    async fn without_a_panic_threshold_no_healthy_host_means_none() {
        let down = [Endpoint("10.0.0.1:80", 1, false, 0), Endpoint("10.0.0.2:80", 1, false, 1)];
        let cluster = cluster_in_localities(LbPolicy::RoundRobin, &down, &[], 0.0);
        assert!(cluster.choose_host(None, &[]).is_none(), "Istio's threshold 0: no healthy upstream");
    }

    #[tokio::test]
    async fn locality_weights_split_the_load_and_follow_health() {
        let endpoints = [
            Endpoint("10.0.0.1:80", 1, true, 0),
            Endpoint("10.0.0.2:80", 1, true, 0),
            Endpoint("10.0.0.3:80", 1, true, 0),
        ];
        let localities = [("r1/z1/", 70), ("r1/z2/", 20), ("r3/z4/", 10)];
        let cluster = cluster_in_localities(LbPolicy::RoundRobin, &endpoints, &localities, 0.0);
        let counts = tally(&cluster, 4000);
        let share = |host: &str| counts.get(&addr(host)).copied().unwrap_or(0) as f64 / 40.0;
        assert!((65.0..75.0).contains(&share("10.0.0.1:80")), "{counts:?}");
        assert!((16.0..24.0).contains(&share("10.0.0.2:80")), "{counts:?}");
        assert!((7.0..13.0).contains(&share("10.0.0.3:80")), "{counts:?}");
        // A locality without a healthy host takes nothing.
        cluster.hosts().hosts[0].outlier.lock().expect("lock").ejected_until =
            Some(Instant::now() + Duration::from_secs(30));
        assert!(!tally(&cluster, 200).contains_key(&addr("10.0.0.1:80")));
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
