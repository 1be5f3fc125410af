//! Locality load balancing (the mesh config's `localityLbSetting`), applied to one proxy's copy
//! of a load assignment as 1.4's `ApplyLocalityLBSetting` did: `distribute` rewrites the
//! localities' weights for proxies in a `from` locality (localities no `to` names lose their
//! endpoints); otherwise, when the cluster has outlier detection (without it a proxy never sees
//! an endpoint fail and would never move on), each locality gets a failover priority by how
//! much of it matches the proxy's locality: 0 all, 1 region and zone, 2 region, 3 none, and 4
//! for a region other than the one `failover` names for the proxy's; priorities then close up
//! their gaps, as Envoy needs them to.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Locality;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::google::protobuf::UInt32Value;
use istio_api::pb::istio::networking::v1alpha3 as net;

use crate::model::PushContext;
use crate::node::Proxy;

/// Whether `locality` is in the locality a rule names (`*` and left-out parts match anything;
/// 1.4's `LocalityMatch`).
fn matches(locality: Option<&Locality>, rule: &str) -> bool {
    let mut parts = rule.splitn(3, '/');
    let (region, zone, sub_zone) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let field = |get: fn(&Locality) -> &str| locality.map(get).unwrap_or_default();
    (region == "*" || field(|l| &l.region) == region)
        && (zone == "*" || zone.is_empty() || field(|l| &l.zone) == zone)
        && (sub_zone == "*" || sub_zone.is_empty() || field(|l| &l.sub_zone) == sub_zone)
}

/// 1.4's `LbPriority`: how far an endpoint's locality is from the proxy's.
fn priority(proxy: &Locality, endpoints: Option<&Locality>) -> u32 {
    let field = |get: fn(&Locality) -> &str| endpoints.map(get).unwrap_or_default();
    if proxy.region != field(|l| &l.region) {
        3
    } else if proxy.zone != field(|l| &l.zone) {
        2
    } else if proxy.sub_zone != field(|l| &l.sub_zone) {
        1
    } else {
        0
    }
}

/// Applies `setting` to `assignment` for a proxy in `proxy_locality`; `failover_enabled` when
/// the cluster has outlier detection.
pub(crate) fn apply(
    proxy_locality: Option<&Locality>,
    assignment: &mut ClusterLoadAssignment,
    setting: &net::LocalityLoadBalancerSetting,
    failover_enabled: bool,
) {
    let Some(locality) = proxy_locality.filter(|locality| !locality.region.is_empty()) else { return };
    if !setting.distribute.is_empty() {
        distribute(locality, assignment, &setting.distribute);
    } else if failover_enabled {
        failover(locality, assignment, &setting.failover);
    }
}

fn distribute(
    locality: &Locality,
    assignment: &mut ClusterLoadAssignment,
    rules: &[net::locality_load_balancer_setting::Distribute],
) {
    let Some(rule) = rules.iter().find(|rule| matches(Some(locality), &rule.from)) else { return };
    // In name order, so that overlapping wildcards give the same answer on every push.
    let targets: BTreeMap<&String, &u32> = rule.to.iter().collect();
    // A cluster none of whose localities the rule names (a ServiceEntry's endpoints, the
    // control plane's, which have no locality) keeps its endpoints: 1.4 emptied it, which made
    // the service unreachable from every proxy the rule applies to.
    let named = |endpoints: &envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints| {
        targets.keys().any(|target| matches(endpoints.locality.as_ref(), target))
    };
    if !assignment.endpoints.iter().any(named) {
        return;
    }
    let mut unmatched: BTreeSet<usize> = (0..assignment.endpoints.len()).collect();
    for (target, weight) in targets {
        let taken: Vec<(usize, u32)> = unmatched
            .iter()
            .filter(|&&index| matches(assignment.endpoints[index].locality.as_ref(), target))
            .map(|&index| {
                let original = assignment.endpoints[index].load_balancing_weight.as_ref().map_or(1, |w| w.value);
                (index, original)
            })
            .collect();
        let total: u32 = taken.iter().map(|(_, original)| original).sum();
        for (index, original) in taken {
            unmatched.remove(&index);
            // A wildcard target spreads its weight over the localities it matches.
            let share = f64::from(original) * f64::from(*weight) / f64::from(total.max(1));
            assignment.endpoints[index].load_balancing_weight = Some(UInt32Value { value: share.ceil() as u32 });
        }
    }
    for index in unmatched {
        assignment.endpoints[index].lb_endpoints.clear();
    }
}

fn failover(
    locality: &Locality,
    assignment: &mut ClusterLoadAssignment,
    rules: &[net::locality_load_balancer_setting::Failover],
) {
    let mut used = BTreeSet::new();
    for endpoints in &mut assignment.endpoints {
        let mut level = priority(locality, endpoints.locality.as_ref());
        if level == 3 {
            if let Some(rule) = rules.iter().find(|rule| rule.from == locality.region) {
                if endpoints.locality.as_ref().is_none_or(|l| l.region != rule.to) {
                    level = 4;
                }
            }
        }
        endpoints.priority = level;
        used.insert(level);
    }
    // Priorities run from 0 without gaps.
    let rank: BTreeMap<u32, u32> = used.into_iter().zip(0..).collect();
    for endpoints in &mut assignment.endpoints {
        endpoints.priority = rank[&endpoints.priority];
    }
}

/// Where a proxy is, as 1.4 decided: the locality the registry gives its own endpoints (all of
/// a pod's instances share one), else what the proxy said in its node.
pub(crate) fn of_proxy(push: &PushContext, proxy: &Proxy) -> Option<Locality> {
    let registry = push
        .services_at(&proxy.ips)
        .flat_map(|service| service.endpoints.iter())
        .find(|endpoint| proxy.ips.contains(&endpoint.address))
        .and_then(|endpoint| istio_xds::locality::parse(&endpoint.locality));
    registry.filter(|locality| !locality.region.is_empty()).or_else(|| proxy.locality.clone())
}

/// The key a proxy's load assignments are shared under: proxies in one locality get the same.
pub(crate) fn key(locality: Option<&Locality>) -> String {
    locality.map(istio_xds::locality::name).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::endpoint::v3::{LbEndpoint, LocalityLbEndpoints};

    use istio_xds::locality::parse;

    use super::*;

    fn proxy() -> Locality {
        parse("region1/zone1/subzone1").expect("locality")
    }

    fn assignment(localities: &[Option<&str>]) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: "outbound|8080||test.example.org".into(),
            endpoints: localities
                .iter()
                .map(|locality| LocalityLbEndpoints {
                    locality: locality.and_then(parse),
                    lb_endpoints: vec![LbEndpoint::default()],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// 1.4.6's fake cluster: two localities in the proxy's subzone, two more subzones of its
    /// zone, another zone of its region, and two other regions.
    fn large() -> ClusterLoadAssignment {
        assignment(&[
            Some("region1/zone1/subzone1"),
            Some("region1/zone1/subzone1"),
            Some("region1/zone1/subzone2"),
            Some("region1/zone1/subzone3"),
            Some("region1/zone2"),
            Some("region2"),
            Some("region3"),
        ])
    }

    fn failover_to_region2() -> net::LocalityLoadBalancerSetting {
        net::LocalityLoadBalancerSetting {
            failover: vec![net::locality_load_balancer_setting::Failover {
                from: "region1".into(),
                to: "region2".into(),
            }],
            ..Default::default()
        }
    }

    fn priorities(assignment: &ClusterLoadAssignment) -> Vec<u32> {
        assignment.endpoints.iter().map(|e| e.priority).collect()
    }

    #[test]
    fn distribution_between_subzones_splits_a_shared_weight_and_empties_the_rest() {
        let setting = net::LocalityLoadBalancerSetting {
            distribute: vec![net::locality_load_balancer_setting::Distribute {
                from: "region1/zone1/subzone1".into(),
                to: [("region1/zone1/subzone1", 80), ("region1/zone1/subzone2", 15), ("region1/zone1/subzone3", 5)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            }],
            ..Default::default()
        };
        let mut cla = large();
        apply(Some(&proxy()), &mut cla, &setting, true);
        let weights: Vec<u32> =
            cla.endpoints.iter().map(|e| e.load_balancing_weight.as_ref().map_or(0, |w| w.value)).collect();
        assert_eq!(weights, vec![40, 40, 15, 5, 0, 0, 0]);
        let emptied: Vec<bool> = cla.endpoints.iter().map(|e| e.lb_endpoints.is_empty()).collect();
        assert_eq!(emptied, vec![false, false, false, false, true, true, true]);
    }

    #[test]
    fn a_proxy_outside_every_from_keeps_the_assignment() {
        let setting = net::LocalityLoadBalancerSetting {
            distribute: vec![net::locality_load_balancer_setting::Distribute {
                from: "region9/*".into(),
                to: [("region1/*".to_string(), 100)].into_iter().collect(),
            }],
            ..Default::default()
        };
        let mut cla = large();
        apply(Some(&proxy()), &mut cla, &setting, true);
        assert_eq!(cla, large());
    }

    #[test]
    fn a_cluster_outside_every_target_keeps_its_endpoints() {
        let setting = net::LocalityLoadBalancerSetting {
            distribute: vec![net::locality_load_balancer_setting::Distribute {
                from: "region1/*".into(),
                to: [("region1/*".to_string(), 80), ("region2/*".to_string(), 20)].into_iter().collect(),
            }],
            ..Default::default()
        };
        let mut without_locality = assignment(&[None, None]);
        apply(Some(&proxy()), &mut without_locality, &setting, true);
        assert_eq!(without_locality, assignment(&[None, None]), "nothing named, nothing dropped");
        let mut mixed = assignment(&[Some("region1/zone1"), None, Some("region3")]);
        apply(Some(&proxy()), &mut mixed, &setting, true);
        let kept: Vec<bool> = mixed.endpoints.iter().map(|e| !e.lb_endpoints.is_empty()).collect();
        assert_eq!(kept, vec![true, false, false], "once one locality is named, the rest go, as in 1.4");
    }

    #[test]
    fn failover_gives_every_priority_in_order_of_distance() {
        let mut cla = large();
        apply(Some(&proxy()), &mut cla, &failover_to_region2(), true);
        assert_eq!(priorities(&cla), vec![0, 0, 1, 1, 2, 3, 4]);
    }

    #[test]
    fn failover_priorities_close_their_gaps() {
        let mut cla = assignment(&[
            Some("region1/zone1/subzone2"),
            Some("region2/zone1/subzone2"),
            Some("region2/zone1/subzone2"),
        ]);
        apply(Some(&proxy()), &mut cla, &failover_to_region2(), true);
        assert_eq!(priorities(&cla), vec![0, 1, 1]);
    }

    #[test]
    fn endpoints_without_a_locality_come_last() {
        let mut cla = assignment(&[Some("region1/zone1/subzone2"), None, Some("region2/zone1/subzone2")]);
        apply(Some(&proxy()), &mut cla, &failover_to_region2(), true);
        assert_eq!(priorities(&cla), vec![0, 2, 1]);
    }

    #[test]
    fn without_outlier_detection_or_a_locality_nothing_changes() {
        let mut cla = large();
        apply(Some(&proxy()), &mut cla, &failover_to_region2(), false);
        assert_eq!(cla, large());
        apply(None, &mut cla, &failover_to_region2(), true);
        assert_eq!(cla, large());
        apply(Some(&Locality::default()), &mut cla, &failover_to_region2(), true);
        assert_eq!(cla, large());
    }

    /// Through the EDS generator: two clients in different zones get their own priorities
    /// once the rule has outlier detection, and share the plain assignment before.
    #[test]
    fn each_proxy_gets_priorities_from_where_it_is() {
        use crate::testing::{push, service_entry, sidecar};
        use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as Cla;
        use prost::Message;
        let entry = |host: &str, endpoints: serde_json::Value| {
            service_entry(
                "default",
                serde_json::json!({"hosts": [host], "ports": [{"number": 5000, "name": "http", "protocol": "HTTP"}],
                    "location": "MESH_INTERNAL", "resolution": "STATIC", "endpoints": endpoints}),
            )
        };
        let mut services = entry(
            "hello.default.svc.cluster.local",
            serde_json::json!([{"address": "10.1.0.1", "locality": "region1/zone1"},
                               {"address": "10.1.0.2", "locality": "region1/zone2"},
                               {"address": "10.1.0.3", "locality": "region2/zone3"}]),
        );
        services.extend(entry(
            "client-a.default.svc.cluster.local",
            serde_json::json!([{"address": "10.1.0.8", "locality": "region1/zone1"}]),
        ));
        services.extend(entry(
            "client-b.default.svc.cluster.local",
            serde_json::json!([{"address": "10.1.0.9", "locality": "region2/zone3"}]),
        ));
        let cluster = "outbound|5000||hello.default.svc.cluster.local".to_string();
        let priorities = |push: &PushContext, ip: &str| -> Vec<(String, u32)> {
            let generated = crate::xds::generate::generate(
                push,
                &sidecar("default", ip, &[]),
                istio_xds::type_url::ENDPOINT,
                std::slice::from_ref(&cluster),
            );
            let cla = Cla::decode(generated[0].resource.value.as_slice()).expect("a load assignment");
            cla.endpoints
                .iter()
                .map(|e| (e.locality.as_ref().map(|l| l.zone.clone()).unwrap_or_default(), e.priority))
                .collect()
        };
        let mut context = push(services.clone(), Vec::new());
        context.mesh.locality_lb_setting = Some(net::LocalityLoadBalancerSetting::default());
        let flat = vec![("zone1".to_string(), 0), ("zone2".to_string(), 0), ("zone3".to_string(), 0)];
        assert_eq!(priorities(&context, "10.1.0.8"), flat, "no outlier detection: no failover");
        let rule = crate::testing::destination_rule(
            "default",
            "hello",
            serde_json::json!({"host": "hello", "trafficPolicy": {"outlierDetection": {"consecutiveErrors": 1}}}),
        );
        let mut context = push(services, vec![rule]);
        context.mesh.locality_lb_setting = Some(net::LocalityLoadBalancerSetting::default());
        assert_eq!(
            priorities(&context, "10.1.0.8"),
            vec![("zone1".to_string(), 0), ("zone2".to_string(), 1), ("zone3".to_string(), 2)]
        );
        assert_eq!(
            priorities(&context, "10.1.0.9"),
            vec![("zone1".to_string(), 1), ("zone2".to_string(), 1), ("zone3".to_string(), 0)]
        );
    }
}
