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
    use crate::xds::config_patch::prepared::tests::{envoy_filter, one_per_patch};
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

    /// 1.4.6's route configuration patch test, one EnvoyFilter per patch: a later EnvoyFilter's
    /// MERGE reaches the virtual host an earlier one added, `inbound|http|80` is port 0 (so the
    /// port-80 patches miss it), and a gateway's vhost goes by name.
    #[test]
    fn the_route_configuration_patches_of_1_4_6() {
        let filters = one_per_patch(
            "not-default",
            &[
                "{applyTo: ROUTE_CONFIGURATION, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 80}},
                  patch: {operation: MERGE, value: {request_headers_to_remove: [h3, h4]}}}",
                "{applyTo: HTTP_ROUTE, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 80,
                    vhost: {route: {action: ROUTE}}}},
                  patch: {operation: MERGE, value: {route: {prefix_rewrite: /foo}}}}",
                "{applyTo: HTTP_ROUTE, match: {context: SIDECAR_OUTBOUND, routeConfiguration: {portNumber: 80,
                    vhost: {route: {name: bar}}}},
                  patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, patch: {operation: ADD, value: {name: new-vhost}}}",
                "{applyTo: VIRTUAL_HOST, match: {context: GATEWAY, routeConfiguration: {vhost: {name: vhost1}}},
                  patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, match: {context: SIDECAR_INBOUND, routeConfiguration: {vhost: {name: vhost2}}},
                  patch: {operation: REMOVE}}",
                "{applyTo: VIRTUAL_HOST, match: {context: ANY}, patch: {operation: MERGE, value: {domains: ['domain:80']}}}",
            ],
        );
        let filters: Vec<&PreparedEnvoyFilter> = filters.iter().collect();
        let vhost = |name: &str, domains: &[&str], routes: Vec<Route>| VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
            ..Default::default()
        };
        let rewrite = |prefix: &str| Route {
            name: "foo".into(),
            action: Some(route::Action::Route(RouteAction { prefix_rewrite: prefix.into(), ..Default::default() })),
            ..Default::default()
        };
        let redirect = Route {
            name: "bar".into(),
            action: Some(route::Action::Redirect(RedirectAction { response_code: 301, ..Default::default() })),
            ..Default::default()
        };
        let sidecar = crate::testing::sidecar("not-default", "10.1.0.1", &[]);
        let mut outbound = RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vec![vhost("foo.com", &["domain"], vec![rewrite("/"), redirect])],
            request_headers_to_remove: vec!["h1".into(), "h2".into()],
            ..Default::default()
        };
        apply(PatchContext::SidecarOutbound, &sidecar, &filters, &mut outbound);
        let expected = RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vec![
                vhost("foo.com", &["domain", "domain:80"], vec![rewrite("/foo")]),
                vhost("new-vhost", &["domain:80"], vec![]),
            ],
            request_headers_to_remove: ["h1", "h2", "h3", "h4"].map(String::from).to_vec(),
            ..Default::default()
        };
        assert_eq!(outbound, expected, "sidecar outbound");

        let mut inbound = RouteConfiguration {
            name: "inbound|http|80".into(),
            virtual_hosts: vec![vhost("vhost2", &["domain"], vec![])],
            ..Default::default()
        };
        apply(PatchContext::SidecarInbound, &sidecar, &filters, &mut inbound);
        assert_eq!(inbound.virtual_hosts, [vhost("new-vhost", &["domain:80"], vec![])], "sidecar inbound");

        let mut gateway_proxy = crate::testing::sidecar("not-default", "10.1.0.2", &[]);
        gateway_proxy.kind = crate::node::ProxyKind::Router;
        let mut gateway = RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vec![vhost("vhost1", &["domain"], vec![]), vhost("gateway", &["gateway"], vec![])],
            ..Default::default()
        };
        apply(PatchContext::Gateway, &gateway_proxy, &filters, &mut gateway);
        assert_eq!(
            gateway.virtual_hosts,
            [vhost("gateway", &["gateway", "domain:80"], vec![]), vhost("new-vhost", &["domain:80"], vec![])],
            "gateway"
        );
    }

    /// 1.4.6's match tables for route configurations, virtual hosts and routes, the cases the
    /// tests above do not cover.
    #[test]
    fn route_configuration_virtual_host_and_route_matches() {
        let patch = |matcher: &str| {
            envoy_filter(
                "default",
                &[&format!("{{applyTo: HTTP_ROUTE, match: {matcher}, patch: {{operation: REMOVE}}}}")],
            )
        };
        let rc = |name: &str| RouteConfiguration { name: name.into(), ..Default::default() };
        let rc_match = |context: PatchContext, matcher: &str, name: &str| {
            route_configuration_match(context, &rc(name), &patch(matcher).patches[0])
        };
        let outbound = PatchContext::SidecarOutbound;
        assert!(!rc_match(outbound, "{routeConfiguration: {name: scooby.80}}", "scooby.90"), "rc name mismatch");
        assert!(rc_match(outbound, "{routeConfiguration: {name: scooby.80}}", "scooby.80"), "rc name match");
        let gateway_fields = "{routeConfiguration: {portNumber: 443, portName: app1, gateway: ns1/gw1}}";
        assert!(rc_match(PatchContext::Gateway, gateway_fields, "https.443.app1.gw1.ns1"), "gateway fields match");
        assert!(!rc_match(PatchContext::Gateway, gateway_fields, "http.80"), "gateway fields mismatch");

        let host = |name: &str| VirtualHost { name: name.into(), ..Default::default() };
        let vhost_patch = patch("{routeConfiguration: {vhost: {name: scooby}}}");
        assert!(virtual_host_match(&host("scooby"), &vhost_patch.patches[0]), "full match");
        assert!(!virtual_host_match(&host("scoobydoo"), &vhost_patch.patches[0]), "mismatch");

        let [named, redirect] = routes(&[("scooby", false), ("r", true)]).try_into().expect("two routes");
        let by_name = patch("{routeConfiguration: {vhost: {route: {name: scooby}}}}");
        assert!(route_match(&named, &by_name.patches[0]), "full match by name");
        assert!(!route_match(&redirect, &by_name.patches[0]), "name mismatch");
        let by_route_action = patch("{routeConfiguration: {vhost: {route: {action: ROUTE}}}}");
        assert!(!route_match(&redirect, &by_route_action.patches[0]), "mismatch by action");
        assert!(route_match(&named, &by_route_action.patches[0]), "match by action");
    }
}
