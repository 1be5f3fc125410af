//! What one push context found wrong while config was generated from it, as 1.4's
//! `PushContext.ProxyStatus` kept it for the Pilot dashboard: listeners that conflict (by
//! listener or by proxy) and how many endpoints each EDS cluster had. An HTTP listener always
//! takes a wildcard port from a plain TCP one here, so 1.4's
//! `pilot_conflict_outbound_listener_tcp_over_current_http` (the TCP side losing) is the same
//! event as `…_http_over_current_tcp` and is exported as zero. The metrics read it after
//! each response is built (`pilot_conflict_*`, `pilot_xds_eds_instances`,
//! `pilot_eds_no_instances`); a new push context starts empty, as 1.4's did. Services that share
//! a hostname (`pilot_duplicate_envoy_clusters`) are found when the context is built.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// A conflict 1.4 counted, named by its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Conflict {
    /// Two services claim one inbound port of a proxy (keyed by proxy).
    InboundListener,
    /// A TCP listener for an address and port another TCP service already has.
    OutboundTcpOverCurrentTcp,
    /// An HTTP listener on a port a plain TCP service already has.
    OutboundHttpOverCurrentTcp,
    /// An HTTP service on the HTTPS port 443.
    OutboundHttpOverHttps,
    /// Two services (Kubernetes Services or ServiceEntries) with one hostname: one cluster name.
    DuplicateEnvoyClusters,
}

impl Conflict {
    pub(crate) const ALL: [Conflict; 5] = [
        Conflict::InboundListener,
        Conflict::OutboundTcpOverCurrentTcp,
        Conflict::OutboundHttpOverCurrentTcp,
        Conflict::OutboundHttpOverHttps,
        Conflict::DuplicateEnvoyClusters,
    ];

    /// 1.4's gauge name and help.
    pub(crate) fn metric(self) -> (&'static str, &'static str) {
        match self {
            Conflict::InboundListener => {
                ("pilot_conflict_inbound_listener", "Number of conflicting inbound listeners.")
            }
            Conflict::OutboundTcpOverCurrentTcp => (
                "pilot_conflict_outbound_listener_tcp_over_current_tcp",
                "Number of conflicting tcp listeners with current tcp listener.",
            ),
            Conflict::OutboundHttpOverCurrentTcp => (
                "pilot_conflict_outbound_listener_http_over_current_tcp",
                "Number of conflicting wildcard http listeners with current wildcard tcp listener.",
            ),
            Conflict::OutboundHttpOverHttps => (
                "pilot_conflict_outbound_listener_http_over_https",
                "Number of conflicting HTTP listeners with well known HTTPS ports",
            ),
            Conflict::DuplicateEnvoyClusters => (
                "pilot_duplicate_envoy_clusters",
                "Duplicate envoy clusters caused by service entries with same hostname",
            ),
        }
    }
}

/// The push status of one push context.
#[derive(Debug, Default)]
pub(crate) struct PushStatus {
    conflicts: Mutex<BTreeMap<Conflict, BTreeSet<String>>>,
    endpoints: Mutex<Endpoints>,
}

/// Endpoint counts of the EDS clusters generated from a context.
#[derive(Debug, Default)]
struct Endpoints {
    /// Clusters generated with no endpoint.
    empty: BTreeSet<String>,
    /// Counts not yet handed to the metrics.
    unreported: Vec<(String, usize)>,
}

impl PushStatus {
    /// Notes a conflict under `key` (a listener name, a proxy id), with the message 1.4 logged.
    pub(crate) fn conflict(&self, conflict: Conflict, key: &str, message: &str) {
        let fresh = istio_runtime::sync::lock(&self.conflicts).entry(conflict).or_default().insert(key.to_string());
        if fresh {
            tracing::debug!(conflict = conflict.metric().0, key, "{message}");
        }
    }

    /// How many distinct keys each conflict has.
    pub(crate) fn conflict_counts(&self) -> [(Conflict, usize); 5] {
        let conflicts = istio_runtime::sync::lock(&self.conflicts);
        Conflict::ALL.map(|conflict| (conflict, conflicts.get(&conflict).map_or(0, BTreeSet::len)))
    }

    /// Notes how many endpoints `cluster` was sent.
    pub(crate) fn endpoints(&self, cluster: &str, count: usize) {
        let mut endpoints = istio_runtime::sync::lock(&self.endpoints);
        if count == 0 {
            endpoints.empty.insert(cluster.to_string());
        } else {
            endpoints.empty.remove(cluster);
        }
        endpoints.unreported.push((cluster.to_string(), count));
    }

    /// The endpoint counts noted since the last call, and how many clusters have none.
    pub(crate) fn take_endpoint_counts(&self) -> (Vec<(String, usize)>, usize) {
        let mut endpoints = istio_runtime::sync::lock(&self.endpoints);
        (std::mem::take(&mut endpoints.unreported), endpoints.empty.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_count_distinct_keys() {
        let status = PushStatus::default();
        status.conflict(Conflict::OutboundTcpOverCurrentTcp, "0.0.0.0_3306", "a");
        status.conflict(Conflict::OutboundTcpOverCurrentTcp, "0.0.0.0_3306", "again");
        status.conflict(Conflict::InboundListener, "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "b");
        let counts = status.conflict_counts();
        assert_eq!(counts[0], (Conflict::InboundListener, 1));
        assert_eq!(counts[1], (Conflict::OutboundTcpOverCurrentTcp, 1));
        assert_eq!(counts[3], (Conflict::OutboundHttpOverHttps, 0));
        assert_eq!(counts[4], (Conflict::DuplicateEnvoyClusters, 0));
        status.endpoints("outbound|9080||reviews.default.svc.cluster.local", 3);
        status.endpoints("outbound|9080||gone.default.svc.cluster.local", 0);
        let (counts, empty) = status.take_endpoint_counts();
        assert_eq!((counts.len(), empty), (2, 1));
        assert_eq!(status.take_endpoint_counts(), (Vec::new(), 1));
    }
}
