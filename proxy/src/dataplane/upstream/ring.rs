//! The consistent-hash ring of a cluster's hosts (ring hash load balancing), and the hash the
//! router computes from a request's hash policy.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::host::Host;
use crate::dataplane::config::cluster::LbPolicy;

/// A consistent-hash ring: points on the ring and the host index at each.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
}

/// Points per host (Envoy's minimum ring size is 1024 in total; this keeps small clusters even).
const POINTS_PER_HOST: usize = 128;

pub(crate) fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Ring {
    /// The ring a cluster with `policy` walks: only ring hash has one. (A ring is 128 points
    /// per host; built for every cluster, it was 4 MB of the 24 MB heap that holds a
    /// 1000-cluster config.)
    pub(crate) fn for_policy(policy: LbPolicy, hosts: &[Arc<Host>]) -> Ring {
        match policy {
            LbPolicy::RingHash => Ring::build(hosts),
            LbPolicy::RoundRobin | LbPolicy::LeastRequest | LbPolicy::Random | LbPolicy::ClusterProvided => {
                Ring::default()
            }
        }
    }

    pub(crate) fn build(hosts: &[Arc<Host>]) -> Ring {
        let mut points = Vec::with_capacity(hosts.len() * POINTS_PER_HOST);
        for (index, host) in hosts.iter().enumerate() {
            for replica in 0..POINTS_PER_HOST * host.weight.clamp(1, 16) as usize {
                points.push((hash_of((host.address, replica)), index));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Host indexes in ring order starting at `hash`.
    pub(super) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(point, _)| *point < hash);
        self.points[start..].iter().chain(self.points[..start].iter()).map(|(_, index)| *index)
    }
}
