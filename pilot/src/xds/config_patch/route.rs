//! Patches to route configurations (RDS, and the inline ones of inbound HTTP listeners), their
//! virtual hosts and routes, as 1.4.6 applied them: for each EnvoyFilter in turn, MERGE into
//! the route configuration; then per virtual host REMOVE or MERGE, per route REMOVE or MERGE,
//! and new routes (ADD) at the end of each matching virtual host; then new virtual hosts (ADD).

use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use istio_api::pb::istio::networking::v1alpha3::envoy_filter::{patch::Operation, ApplyTo, PatchContext};
use istio_xds::patch_value::PatchValue;

use super::matching::{common_match, route_configuration_match, route_match, virtual_host_match};
use super::merge::merge;
use super::prepared::{PreparedEnvoyFilter, PreparedPatch};
use crate::node::Proxy;

/// Applies the route-class patches of `filters` to one route configuration.
pub(crate) fn apply(
    context: PatchContext,
    proxy: &Proxy,
    filters: &[&PreparedEnvoyFilter],
    configuration: &mut RouteConfiguration,
) {
    for filter in filters {
        let applies = |patch: &&PreparedPatch, configuration: &RouteConfiguration| {
            common_match(proxy, context, patch) && route_configuration_match(context, configuration, patch)
        };
        for patch in filter.patches(ApplyTo::RouteConfiguration) {
            if let (Operation::Merge, Some(PatchValue::RouteConfiguration(value))) = (patch.operation, &patch.value) {
                if applies(&patch, configuration) {
                    merge(configuration, value.as_ref());
                }
            }
        }
        let snapshot = RouteConfiguration { virtual_hosts: Vec::new(), ..configuration.clone() };
        configuration.virtual_hosts.retain_mut(|host| {
            for patch in filter.patches(ApplyTo::VirtualHost) {
                if !applies(&patch, &snapshot) || !virtual_host_match(host, patch) {
                    continue;
                }
                match (patch.operation, &patch.value) {
                    (Operation::Remove, _) => return false,
                    (Operation::Merge, Some(PatchValue::VirtualHost(value))) => merge(host, value.as_ref()),
                    _ => {}
                }
            }
            patch_routes(filter, host, |patch| applies(patch, &snapshot));
            true
        });
        for patch in filter.patches(ApplyTo::VirtualHost) {
            if let (Operation::Add, Some(PatchValue::VirtualHost(value))) = (patch.operation, &patch.value) {
                if applies(&patch, configuration) {
                    configuration.virtual_hosts.push(value.as_ref().clone());
                }
            }
        }
    }
}

/// Route REMOVE and MERGE, then ADD, in one virtual host.
fn patch_routes(filter: &PreparedEnvoyFilter, host: &mut VirtualHost, applies: impl Fn(&&PreparedPatch) -> bool) {
    let host_matches = |patch: &&PreparedPatch, host: &VirtualHost| applies(patch) && virtual_host_match(host, patch);
    let snapshot = VirtualHost { routes: Vec::new(), ..host.clone() };
    host.routes.retain_mut(|route| {
        for patch in filter.patches(ApplyTo::HttpRoute) {
            if !host_matches(&patch, &snapshot) || !route_match(route, patch) {
                continue;
            }
            match (patch.operation, &patch.value) {
                (Operation::Remove, _) => return false,
                (Operation::Merge, Some(PatchValue::HttpRoute(value))) => merge(route, value.as_ref()),
                _ => {}
            }
        }
        true
    });
    for patch in filter.patches(ApplyTo::HttpRoute) {
        if let (Operation::Add, Some(PatchValue::HttpRoute(value))) = (patch.operation, &patch.value) {
            if host_matches(&patch, host) {
                host.routes.push(value.as_ref().clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::config_patch::prepared::tests::envoy_filter;
    use envoy_types::pb::envoy::config::route::v3::{route, RedirectAction, Route, RouteAction};

    fn routes(names: &[(&str, bool)]) -> Vec<Route> {
        names
            .iter()
            .map(|(name, redirect)| Route {
                name: name.to_string(),
                action: Some(if *redirect {
                    route::Action::Redirect(RedirectAction::default())
                } else {
                    route::Action::Route(RouteAction::default())
                }),
                ..Default::default()
            })
            .collect()
    }

    fn configuration(name: &str) -> RouteConfiguration {
        RouteConfiguration {
            name: name.into(),
            virtual_hosts: vec![
                VirtualHost {
                    name: "vhost1".into(),
                    domains: vec!["a".into()],
                    routes: routes(&[("r1", false), ("r2", true)]),
                    ..Default::default()
                },
                VirtualHost { name: "vhost2".into(), ..Default::default() },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn sidecar_outbound_patches_by_port_vhost_and_route() {
        let filter = envoy_filter(
            "default",
            &[
                "{applyTo: ROUTE_CONFIGURATION, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 80}},
                  patch: {operation: MERGE, value: {validate_clusters: false}}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {vhost: {name: vhost2}}},
                  patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_OUTBOUND},
                  patch: {operation: MERGE, value: {domains: [b]}}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 80}},
                  patch: {operation: ADD, value: {name: added, domains: ['*']}}}",
                "{applyTo: HTTP_ROUTE, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {vhost: {name: vhost1, route: {action: REDIRECT}}}},
                  patch: {operation: REMOVE}}",
                "{applyTo: HTTP_ROUTE, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {vhost: {name: vhost1}}},
                  patch: {operation: ADD, value: {name: r3, match: {prefix: /}, direct_response: {status: 418}}}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_INBOUND}, patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 9999}},
                  patch: {operation: REMOVE}}",
            ],
        );
        let proxy = crate::testing::sidecar("default", "10.1.0.1", &[]);
        let mut rc = configuration("80");
        apply(PatchContext::SidecarOutbound, &proxy, &[&filter], &mut rc);
        assert_eq!(rc.validate_clusters, Some(envoy_types::pb::google::protobuf::BoolValue { value: false }));
        let names: Vec<&str> = rc.virtual_hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["vhost1", "added"]);
        assert_eq!(rc.virtual_hosts[0].domains, ["a", "b"], "repeated fields append on MERGE");
        let routes: Vec<&str> = rc.virtual_hosts[0].routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(routes, ["r1", "r3"]);

        // On another port only the unmatched patches apply.
        let mut other = configuration("8080");
        apply(PatchContext::SidecarOutbound, &proxy, &[&filter], &mut other);
        assert_eq!(other.virtual_hosts.len(), 1, "vhost2 removed, no vhost added");
        assert_eq!(other.validate_clusters, None);
    }

    #[test]
    fn inbound_names_give_their_port_and_gateways_match_port_name_and_gateway() {
        let filter = envoy_filter(
            "default",
            &[
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_INBOUND, routeConfiguration: {portNumber: 9080}},
                  patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, match: {context: GATEWAY, routeConfiguration: {portNumber: 443, portName: https, gateway: istio-system/gw}},
                  patch: {operation: MERGE, value: {domains: [merged]}}}",
            ],
        );
        let proxy = crate::testing::sidecar("default", "10.1.0.1", &[]);
        let mut inbound = configuration("inbound|9080|http|reviews.default.svc.cluster.local");
        apply(PatchContext::SidecarInbound, &proxy, &[&filter], &mut inbound);
        assert!(inbound.virtual_hosts.is_empty());
        let mut gateway = configuration("https.443.https.gw.istio-system");
        apply(PatchContext::Gateway, &proxy, &[&filter], &mut gateway);
        assert!(gateway.virtual_hosts.iter().all(|h| h.domains.last().map(String::as_str) == Some("merged")));
        let mut other = configuration("https.443.https.gw.default");
        apply(PatchContext::Gateway, &proxy, &[&filter], &mut other);
        assert!(other.virtual_hosts.iter().all(|h| !h.domains.contains(&"merged".to_string())));
    }
}
