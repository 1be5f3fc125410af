//! Patches to clusters, as 1.4.6 applied them: for each EnvoyFilter in turn, REMOVE or MERGE
//! every matching cluster, then append its new clusters (ADD).

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use istio_api::pb::istio::networking::v1alpha3::envoy_filter::{patch::Operation, ApplyTo, PatchContext};
use istio_xds::patch_value::PatchValue;

use super::matching::{cluster_match, common_match};
use super::merge::merge;
use super::prepared::PreparedEnvoyFilter;
use crate::node::Proxy;

/// Applies the cluster patches of `filters` to clusters generated in `context`.
pub(crate) fn apply(
    context: PatchContext,
    proxy: &Proxy,
    filters: &[&PreparedEnvoyFilter],
    clusters: &mut Vec<Cluster>,
) {
    for filter in filters {
        clusters.retain_mut(|cluster| {
            for patch in filter.patches(ApplyTo::Cluster) {
                if !common_match(proxy, context, patch) || !cluster_match(cluster, patch) {
                    continue;
                }
                match (patch.operation, &patch.value) {
                    (Operation::Remove, _) => return false,
                    (Operation::Merge, Some(PatchValue::Cluster(value))) => merge(cluster, value.as_ref()),
                    _ => {}
                }
            }
            true
        });
        for patch in filter.patches(ApplyTo::Cluster) {
            if let (Operation::Add, Some(PatchValue::Cluster(value))) = (patch.operation, &patch.value) {
                if common_match(proxy, context, patch) {
                    clusters.push(value.as_ref().clone());
                }
            }
        }
    }
    dedupe(clusters);
}

/// Clusters of one name after patching: the first stays, as 1.4's `normalizeClusters` kept
/// it (an ADD of a name that exists would otherwise make Envoy refuse the whole update).
pub(crate) fn dedupe(clusters: &mut Vec<Cluster>) {
    let mut seen = std::collections::HashSet::new();
    clusters.retain(|cluster| {
        let first = seen.insert(cluster.name.clone());
        if !first {
            tracing::warn!(cluster = %cluster.name, "an EnvoyFilter added a cluster of a name that exists; the first stays");
        }
        first
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::config_patch::prepared::tests::{envoy_filter, one_per_patch};
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{DnsLookupFamily, LbPolicy};

    fn cluster(name: &str) -> Cluster {
        Cluster { name: name.into(), ..Default::default() }
    }

    fn names(clusters: &[Cluster]) -> Vec<&str> {
        clusters.iter().map(|c| c.name.as_str()).collect()
    }

    /// 1.4.6's cluster match table: by name, or by subset, service and port of the Istio name.
    #[test]
    fn clusters_match_by_name_or_by_service_subset_and_port() {
        let matching = |matcher: &str, name: &str| {
            let filter = envoy_filter(
                "default",
                &[&format!("{{applyTo: CLUSTER, match: {{cluster: {matcher}}}, patch: {{operation: REMOVE}}}}")],
            );
            cluster_match(&cluster(name), &filter.patches[0])
        };
        assert!(!matching("{name: scooby}", "scrappy"), "name mismatch");
        let full = "{portNumber: 80, service: foo.bar, subset: v1}";
        assert!(!matching(full, "outbound|80|v2|foo.bar"), "subset mismatch");
        assert!(!matching(full, "outbound|80|v1|google.com"), "service mismatch");
        assert!(!matching(full, "outbound|90|v1|foo.bar"), "port mismatch");
        assert!(matching(full, "outbound|80|v1|foo.bar"), "full match");
        // An SNI-DNAT gateway's clusters, named in the DNS-SRV form, match the same way.
        assert!(matching(full, "outbound_.80_.v1_.foo.bar"), "full match, DNS-SRV form");
        assert!(!matching(full, "outbound_.80_.v2_.foo.bar"), "subset mismatch, DNS-SRV form");
        assert!(matching("{service: foo.bar}", "outbound_.443_._.foo.bar"), "service only, DNS-SRV form");
    }

    /// 1.4.6's cluster patch test (one EnvoyFilter per patch): adds in the outbound context,
    /// removes by service (gateway) and port (inbound), merges everywhere, added clusters too.
    #[test]
    fn adds_removes_and_merges_by_context() {
        let filters = one_per_patch(
            "default",
            &[
                "{applyTo: CLUSTER, match: {context: SIDECAR_OUTBOUND}, patch: {operation: ADD, value: {name: new-cluster1}}}",
                "{applyTo: CLUSTER, match: {context: SIDECAR_OUTBOUND}, patch: {operation: ADD, value: {name: new-cluster2}}}",
                "{applyTo: CLUSTER, match: {context: GATEWAY, cluster: {service: gateway.com}}, patch: {operation: REMOVE}}",
                "{applyTo: CLUSTER, match: {context: SIDECAR_INBOUND, cluster: {portNumber: 9999}}, patch: {operation: REMOVE}}",
                "{applyTo: CLUSTER, match: {context: ANY}, patch: {operation: MERGE, value: {dns_lookup_family: V6_ONLY}}}",
                "{applyTo: CLUSTER, match: {context: ANY}, patch: {operation: MERGE, value: {lb_policy: RING_HASH}}}",
            ],
        );
        let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
        let proxy = crate::testing::sidecar("default", "10.1.0.1", &[]);
        let input = || {
            vec![
                Cluster {
                    dns_lookup_family: DnsLookupFamily::V4Only as i32,
                    lb_policy: LbPolicy::RoundRobin as i32,
                    ..cluster("cluster1")
                },
                Cluster { lb_policy: LbPolicy::Maglev as i32, ..cluster("cluster2") },
            ]
        };
        let merged = |c: &Cluster| {
            c.lb_policy == LbPolicy::RingHash as i32 && c.dns_lookup_family == DnsLookupFamily::V6Only as i32
        };
        let mut outbound = input();
        apply(PatchContext::SidecarOutbound, &proxy, &filters, &mut outbound);
        assert_eq!(names(&outbound), ["cluster1", "cluster2", "new-cluster1", "new-cluster2"]);
        assert!(outbound.iter().all(merged), "{outbound:?}");

        let mut inbound = vec![input().remove(0), cluster("inbound|9999||mgmtCluster")];
        apply(PatchContext::SidecarInbound, &proxy, &filters, &mut inbound);
        assert_eq!(names(&inbound), ["cluster1"]);
        assert!(merged(&inbound[0]));

        let mut gateway = input();
        gateway.push(cluster("outbound|443||gateway.com"));
        apply(PatchContext::Gateway, &proxy, &filters, &mut gateway);
        assert_eq!(names(&gateway), ["cluster1", "cluster2"]);
        assert!(gateway.iter().all(merged));
    }

    /// An ADD of a cluster name that exists keeps the first, as 1.4's `normalizeClusters`.
    #[test]
    fn an_added_cluster_of_an_existing_name_is_dropped() {
        let filters = one_per_patch(
            "default",
            &["{applyTo: CLUSTER, match: {context: SIDECAR_OUTBOUND}, patch: {operation: ADD, value: {name: existing, connect_timeout: 5s}}}"],
        );
        let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
        let mut clusters = vec![cluster("existing"), cluster("other")];
        let proxy = crate::testing::sidecar("default", "10.1.0.9", &[]);
        apply(PatchContext::SidecarOutbound, &proxy, &filters, &mut clusters);
        assert_eq!(names(&clusters), ["existing", "other"]);
        assert_eq!(clusters[0].connect_timeout, None, "the first one stays");
    }
}
