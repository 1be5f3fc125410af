//! Istio 1.4's mixer plugin on the outbound side: the connection managers of a client sidecar's
//! outbound ports and of a gateway's servers, and the routes they serve.
//!
//! As in 1.4, client sidecars do not check by default (`enableClientSidePolicyCheck` turns it
//! on) but their `mixer` filter forwards `source.uid` and the route's `destination.service.*` to
//! the server sidecar in `x-istio-attributes`; gateways (routers) do check, with their own
//! identity as the source (`source.uid`, `context.reporter.kind: outbound`) and the route's
//! service as the destination, and ignore forwarded attributes from outside. A proxy that does
//! not announce the `mixer` filter (a stock Envoy) gets Envoy's `ext_authz` where checks are on,
//! with the same attributes as the route's (or virtual host's) context extension; it cannot
//! forward attributes, so there is nothing to give it where checks are off.

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::Any;
use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_api::pb::istio::mixer::v1::Attributes;
use istio_xds::ClusterName;
use prost::Message;

use super::mixer::{
    ext_authz_http_filter, ext_authz_route, ext_authz_tcp_filter, mixer_http_filter, mixer_tcp_filter,
    service_attributes, service_config_any, string, transport, uid, upstream_cluster, EXT_AUTHZ_HTTP,
};
use super::route::CORS_FILTER;
use super::stable_map::stabilize;
use super::{any, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::model::PushContext;
use crate::node::{Proxy, ProxyKind, MIXER_FILTER};

const CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// The sidecar's catch-all virtual host when outbound traffic is restricted.
const BLOCK_ALL_HOST: &str = "block_all";

/// What a proxy's outbound side gets from the mixer plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// No Mixer in the mesh, or a stock Envoy that does not check: nothing.
    Nothing,
    /// The `mixer` filter; `check` says whether it asks Mixer, `report` whether it reports HTTP
    /// requests (it always forwards attributes).
    Mixer { check: bool, report: bool },
    /// Envoy's `ext_authz`, for a stock Envoy whose outbound requests are checked.
    ExtAuthz,
}

/// Whether outbound checks are off: 1.4's `disableClientPolicyChecks` (gateways check, client
/// sidecars only with `enableClientSidePolicyCheck`), overridden by the proxy's `POLICY_CHECK`.
fn outbound_checks_disabled(push: &PushContext, proxy: &Proxy) -> bool {
    match proxy.policy_check.mode.as_str() {
        "disable" => true,
        "enable" | "allow-on-error" => false,
        _ => {
            let mixer = &push.mesh.mixer;
            mixer.disable_policy_checks || (proxy.kind == ProxyKind::Sidecar && !mixer.client_side_policy_check)
        }
    }
}

/// The outbound mode of `proxy`.
pub(crate) fn outbound(push: &PushContext, proxy: &Proxy) -> Outbound {
    let mixer = &push.mesh.mixer;
    if mixer.check_server.is_empty() && mixer.report_server.is_empty() {
        return Outbound::Nothing;
    }
    let check = !outbound_checks_disabled(push, proxy) && upstream_cluster(&mixer.check_server).is_some();
    match (proxy.mixer_filter, check) {
        (true, check) => Outbound::Mixer { check, report: !super::mixer::http_reports_disabled(push) },
        (false, true) => Outbound::ExtAuthz,
        (false, false) => Outbound::Nothing,
    }
}

/// What a cache key of outbound listeners and routes needs beyond the proxy's scope: the filter
/// names the proxy itself, so proxies with the mixer plugin's outbound part do not share them.
pub(crate) fn cache_key(push: &PushContext, proxy: &Proxy) -> String {
    match outbound(push, proxy) {
        Outbound::Nothing => String::new(),
        mode => format!("{mode:?}|{}|{:?}", proxy.workload, proxy.policy_check),
    }
}

/// 1.4's `createOutboundListenerAttributes`: what a client says of itself.
fn listener_attributes(proxy: &Proxy) -> Attributes {
    let mut attributes = std::collections::BTreeMap::from([
        ("source.uid".to_string(), string(&uid(proxy))),
        ("source.namespace".to_string(), string(&proxy.namespace)),
        ("context.reporter.uid".to_string(), string(&uid(proxy))),
        ("context.reporter.kind".to_string(), string("outbound")),
    ]);
    if !proxy.istio_version.is_empty() {
        attributes.insert("context.proxy_version".to_string(), string(&proxy.istio_version));
    }
    Attributes { attributes }
}

/// The destination attributes of a cluster: its service's, or the virtual service name of the
/// passthrough and blackhole clusters.
fn destination_attributes(push: &PushContext, cluster: &str) -> Attributes {
    let mut attributes = Attributes::default();
    if cluster == PASSTHROUGH_CLUSTER || cluster == BLACKHOLE_CLUSTER {
        attributes.attributes.insert("destination.service.name".to_string(), string(cluster));
        return attributes;
    }
    let host = cluster.parse::<ClusterName>().map(|name| name.host).unwrap_or_default();
    if let Some(service) = push.services.get(&host) {
        attributes.attributes.extend(service_attributes(service));
    }
    attributes
}

/// The route's `ServiceConfig` for a destination (none: the virtual host's default).
fn route_config(proxy: &Proxy, mode: Outbound, destination: Option<Attributes>) -> Option<(String, Any)> {
    match mode {
        Outbound::Nothing => None,
        Outbound::Mixer { check, report } => {
            let config = mcc::ServiceConfig {
                disable_check_calls: !check,
                disable_report_calls: !report,
                forward_attributes: destination.clone(),
                mixer_attributes: destination,
                ..Default::default()
            };
            Some((MIXER_FILTER.to_string(), service_config_any(&config)))
        }
        Outbound::ExtAuthz => {
            // ext_authz has no listener-wide attributes: each route carries the client's too.
            let mut attributes = listener_attributes(proxy);
            if let Some(destination) = destination {
                attributes.attributes.extend(destination.attributes);
            }
            let config = mcc::ServiceConfig {
                disable_report_calls: true,
                mixer_attributes: Some(attributes),
                ..Default::default()
            };
            Some((EXT_AUTHZ_HTTP.to_string(), ext_authz_route(&config)))
        }
    }
}

/// The one destination host of a route's clusters, when they all lead to the same service.
fn route_cluster(action: &route_action::ClusterSpecifier) -> Option<String> {
    match action {
        route_action::ClusterSpecifier::Cluster(cluster) => Some(cluster.clone()),
        route_action::ClusterSpecifier::WeightedClusters(weighted) => {
            let hosts: std::collections::BTreeSet<String> = weighted
                .clusters
                .iter()
                .map(|cluster| cluster.name.parse::<ClusterName>().map_or(cluster.name.clone(), |name| name.host))
                .collect();
            (hosts.len() == 1).then(|| weighted.clusters.first().map(|cluster| cluster.name.clone())).flatten()
        }
        _ => None,
    }
}

/// 1.4's `OnOutboundRouteConfiguration`: each route's `ServiceConfig` names its destination
/// service; virtual hosts carry the client's default.
pub(crate) fn decorate_routes(push: &PushContext, proxy: &Proxy, configuration: &mut RouteConfiguration) {
    let mode = outbound(push, proxy);
    if mode == Outbound::Nothing {
        return;
    }
    for host in &mut configuration.virtual_hosts {
        if let Some((name, config)) = route_config(proxy, mode, None) {
            host.typed_per_filter_config.insert(name, config);
            stabilize(&mut host.typed_per_filter_config);
        }
        let blackhole = host.name == BLOCK_ALL_HOST;
        for route in &mut host.routes {
            let destination = match &route.action {
                Some(route::Action::Route(action)) => action
                    .cluster_specifier
                    .as_ref()
                    .and_then(route_cluster)
                    .map(|cluster| destination_attributes(push, &cluster)),
                Some(route::Action::DirectResponse(_)) if blackhole => {
                    Some(destination_attributes(push, BLACKHOLE_CLUSTER))
                }
                _ => None,
            };
            if let Some((name, config)) = route_config(proxy, mode, destination) {
                route.typed_per_filter_config.insert(name, config);
                stabilize(&mut route.typed_per_filter_config);
            }
        }
    }
}

/// The HTTP filter of an outbound connection manager.
fn http_filter(push: &PushContext, proxy: &Proxy, mode: Outbound) -> Option<HttpFilter> {
    match mode {
        Outbound::Nothing => None,
        Outbound::Mixer { check, report } => {
            let config = mcc::HttpClientConfig {
                transport: Some(transport(push, proxy)),
                service_configs: [(
                    "default".to_string(),
                    mcc::ServiceConfig {
                        disable_check_calls: !check,
                        disable_report_calls: !report,
                        ..Default::default()
                    },
                )]
                .into(),
                default_destination_service: "default".to_string(),
                mixer_attributes: Some(listener_attributes(proxy)),
                forward_attributes: Some(Attributes {
                    attributes: [("source.uid".to_string(), string(&uid(proxy)))].into(),
                }),
                ignore_forwarded_attributes: proxy.kind == ProxyKind::Router,
            };
            Some(mixer_http_filter(&config))
        }
        Outbound::ExtAuthz => {
            let cluster = upstream_cluster(&push.mesh.mixer.check_server)?;
            Some(ext_authz_http_filter(push, proxy, &cluster))
        }
    }
}

/// The network filter of an outbound TCP chain proxying to `cluster`, where it checks or
/// reports.
fn tcp_filter(
    push: &PushContext,
    proxy: &Proxy,
    mode: Outbound,
    cluster: Option<&str>,
    stat_prefix: &str,
) -> Option<Filter> {
    let reports = super::mixer::report_cluster(push).is_some();
    match mode {
        Outbound::Mixer { check, .. } if check || reports => {
            let mut attributes = listener_attributes(proxy);
            if let Some(cluster) = cluster {
                attributes.attributes.extend(destination_attributes(push, cluster).attributes);
            }
            let config = mcc::TcpClientConfig {
                transport: Some(transport(push, proxy)),
                mixer_attributes: Some(attributes),
                disable_check_calls: !check,
                disable_report_calls: !reports,
                ..Default::default()
            };
            Some(mixer_tcp_filter(&config))
        }
        Outbound::ExtAuthz => {
            let check_cluster = upstream_cluster(&push.mesh.mixer.check_server)?;
            let mut attributes = listener_attributes(proxy);
            if let Some(cluster) = cluster {
                attributes.attributes.extend(destination_attributes(push, cluster).attributes);
            }
            Some(ext_authz_tcp_filter(push, proxy, &check_cluster, stat_prefix, attributes))
        }
        _ => None,
    }
}

/// The cluster a TCP proxy filter sends to, when it is one.
fn tcp_proxy_cluster(filter: &Filter) -> Option<(String, String)> {
    let Some(filter::ConfigType::TypedConfig(config)) = &filter.config_type else { return None };
    let proxy = TcpProxy::decode(config.value.as_slice()).ok()?;
    let cluster = match proxy.cluster_specifier? {
        tcp_proxy::ClusterSpecifier::Cluster(cluster) => cluster,
        tcp_proxy::ClusterSpecifier::WeightedClusters(weighted) => weighted.clusters.first()?.name.clone(),
    };
    Some((cluster, proxy.stat_prefix))
}

/// Inserts `mixer` before CORS (after authentication and authorization, as 1.4's plugin order).
fn with_http_filter(config: &Any, mixer: &HttpFilter) -> Option<Any> {
    let mut manager = HttpConnectionManager::decode(config.value.as_slice()).ok()?;
    let at = manager
        .http_filters
        .iter()
        .position(|filter| filter.name == CORS_FILTER)
        .unwrap_or(manager.http_filters.len().saturating_sub(1));
    manager.http_filters.insert(at, mixer.clone());
    Some(any(manager))
}

/// 1.4's `OnOutboundListener`: the mixer plugin's filters on outbound listeners (a gateway's,
/// or a sidecar's outbound ones; `virtualInbound` is the inbound side's).
pub(crate) fn decorate_listeners(listeners: &mut [Listener], push: &PushContext, proxy: &Proxy) {
    let mode = outbound(push, proxy);
    let Some(http) = http_filter(push, proxy, mode) else { return };
    for listener in listeners.iter_mut().filter(|listener| listener.name != super::VIRTUAL_INBOUND) {
        for chain in &mut listener.filter_chains {
            let mut tcp_at = None;
            for (index, filter) in chain.filters.iter_mut().enumerate() {
                match (filter.name.as_str(), &filter.config_type) {
                    (CONNECTION_MANAGER, Some(filter::ConfigType::TypedConfig(config))) => {
                        if let Some(config) = with_http_filter(config, &http) {
                            filter.config_type = Some(filter::ConfigType::TypedConfig(config));
                        }
                    }
                    (TCP_PROXY, _) => tcp_at = Some(index),
                    _ => {}
                }
            }
            if let Some(index) = tcp_at {
                let (cluster, stat_prefix) = tcp_proxy_cluster(&chain.filters[index]).unzip();
                let stat_prefix = stat_prefix.unwrap_or_else(|| listener.name.clone());
                if let Some(check) = tcp_filter(push, proxy, mode, cluster.as_deref(), &stat_prefix) {
                    chain.filters.insert(index, check);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MixerSettings;
    use crate::testing::{push, reviews, sidecar};
    use envoy_types::pb::envoy::config::route::v3::{RouteAction, VirtualHost};

    fn with_mixer(push: &mut PushContext) {
        push.mesh.mixer = MixerSettings {
            check_server: "istio-policy.istio-system.svc.cluster.local:9091".into(),
            report_server: "istio-telemetry.istio-system.svc.cluster.local:9091".into(),
            ..Default::default()
        };
    }

    fn gateway(mixer_filter: bool) -> Proxy {
        let mut proxy = sidecar("istio-system", "10.1.0.30", &[("istio", "ingressgateway")]);
        proxy.kind = ProxyKind::Router;
        proxy.mixer_filter = mixer_filter;
        proxy
    }

    fn routes_to(cluster: &str) -> RouteConfiguration {
        RouteConfiguration {
            name: "http.80".into(),
            virtual_hosts: vec![VirtualHost {
                name: "bookinfo".into(),
                routes: vec![envoy_types::pb::envoy::config::route::v3::Route {
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn who_checks_outbound_follows_1_4() {
        let mut push = push(reviews(), vec![]);
        let mut client = sidecar("default", "10.1.0.21", &[("app", "productpage")]);
        assert_eq!(outbound(&push, &client), Outbound::Nothing, "no Mixer in the mesh");
        with_mixer(&mut push);
        assert_eq!(outbound(&push, &client), Outbound::Nothing, "a stock Envoy sidecar neither checks nor forwards");
        client.mixer_filter = true;
        let reports = !super::super::mixer::http_reports_disabled(&push);
        assert_eq!(
            outbound(&push, &client),
            Outbound::Mixer { check: false, report: reports },
            "client sidecars forward (and report) only"
        );
        push.mesh.mixer.client_side_policy_check = true;
        assert_eq!(outbound(&push, &client), Outbound::Mixer { check: true, report: reports });
        push.mesh.mixer.client_side_policy_check = false;
        assert_eq!(outbound(&push, &gateway(true)), Outbound::Mixer { check: true, report: reports }, "gateways check");
        assert_eq!(outbound(&push, &gateway(false)), Outbound::ExtAuthz);
        push.mesh.mixer.disable_policy_checks = true;
        assert_eq!(outbound(&push, &gateway(false)), Outbound::Nothing);
        let mut enabled = gateway(false);
        enabled.policy_check.mode = "enable".into();
        assert_eq!(outbound(&push, &enabled), Outbound::ExtAuthz, "POLICY_CHECK=enable overrides the mesh");
    }

    #[test]
    fn gateway_routes_name_their_service_and_the_gateway_as_source() {
        let mut push = push(reviews(), vec![]);
        with_mixer(&mut push);
        let mut routes = routes_to("outbound|9080||reviews.default.svc.cluster.local");
        decorate_routes(&push, &gateway(true), &mut routes);
        let config = &routes.virtual_hosts[0].routes[0].typed_per_filter_config[MIXER_FILTER];
        let config = mcc::ServiceConfig::decode(config.value.as_slice()).expect("service config");
        assert!(!config.disable_check_calls);
        let attributes = config.mixer_attributes.expect("attributes").attributes;
        assert_eq!(attributes["destination.service.host"], string("reviews.default.svc.cluster.local"));
        assert_eq!(
            config.forward_attributes.expect("forwarded").attributes["destination.service.name"],
            string("reviews")
        );

        let mut routes = routes_to("outbound|9080|v1|reviews.default.svc.cluster.local");
        decorate_routes(&push, &gateway(false), &mut routes);
        let config = &routes.virtual_hosts[0].routes[0].typed_per_filter_config[EXT_AUTHZ_HTTP];
        let per_route = envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ExtAuthzPerRoute::decode(
            config.value.as_slice(),
        )
        .expect("per route");
        let Some(envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ext_authz_per_route::Override::CheckSettings(
            settings,
        )) = per_route.r#override
        else {
            panic!("check settings")
        };
        let carried = istio_attribute::ext_authz::decode_service_config(
            &settings.context_extensions[istio_attribute::ext_authz::SERVICE_CONFIG_EXTENSION],
        )
        .expect("service config");
        let attributes = carried.mixer_attributes.expect("attributes").attributes;
        assert_eq!(attributes["source.uid"], string("kubernetes://app-1.istio-system"));
        assert_eq!(attributes["context.reporter.kind"], string("outbound"));
        assert_eq!(attributes["destination.service.name"], string("reviews"));
        assert!(routes.virtual_hosts[0].typed_per_filter_config.contains_key(EXT_AUTHZ_HTTP), "virtual host default");
    }

    #[test]
    fn listeners_get_the_filter_before_cors_and_gateway_tcp_chains_a_check() {
        use envoy_types::pb::envoy::config::listener::v3::FilterChain;
        let mut push = push(reviews(), vec![]);
        with_mixer(&mut push);
        let http =
            super::super::listener::connection_manager("outbound_0.0.0.0_80", super::super::listener::rds("http.80"));
        let tcp = super::super::listener::tcp_proxy_filter(
            "outbound|31400||reviews.default.svc.cluster.local",
            &[("outbound|31400||reviews.default.svc.cluster.local".to_string(), 100)],
        );
        let listener = |filter: Filter| Listener {
            name: "0.0.0.0_80".into(),
            filter_chains: vec![FilterChain { filters: vec![filter], ..Default::default() }],
            ..Default::default()
        };
        let names = |listener: &Listener| -> Vec<String> {
            let Some(filter::ConfigType::TypedConfig(config)) = &listener.filter_chains[0].filters[0].config_type
            else {
                panic!("typed")
            };
            let manager = HttpConnectionManager::decode(config.value.as_slice()).expect("manager");
            manager.http_filters.iter().map(|f| f.name.clone()).collect()
        };
        let mut listeners = vec![listener(http.clone()), listener(tcp.clone())];
        decorate_listeners(&mut listeners, &push, &gateway(false));
        assert_eq!(names(&listeners[0])[..2], [EXT_AUTHZ_HTTP.to_string(), CORS_FILTER.to_string()]);
        assert_eq!(listeners[1].filter_chains[0].filters[0].name, super::super::mixer::EXT_AUTHZ_NETWORK);

        // A client sidecar of the built-in plane forwards but does not check; its TCP traffic is
        // reported, not checked.
        let mut client = sidecar("default", "10.1.0.21", &[("app", "productpage")]);
        client.mixer_filter = true;
        let mut listeners = vec![listener(http), listener(tcp)];
        decorate_listeners(&mut listeners, &push, &client);
        assert_eq!(names(&listeners[0])[0], MIXER_FILTER);
        let tcp_chain = &listeners[1].filter_chains[0].filters;
        assert_eq!(tcp_chain.len(), 2);
        let Some(filter::ConfigType::TypedConfig(tcp_config)) = &tcp_chain[0].config_type else { panic!("typed") };
        let tcp_config = mcc::TcpClientConfig::decode(tcp_config.value.as_slice()).expect("tcp client config");
        assert!(tcp_config.disable_check_calls && !tcp_config.disable_report_calls);
        assert_eq!(
            tcp_config.mixer_attributes.expect("attributes").attributes["destination.service.host"],
            string("reviews.default.svc.cluster.local")
        );
        let Some(filter::ConfigType::TypedConfig(config)) = &listeners[0].filter_chains[0].filters[0].config_type
        else {
            panic!("typed")
        };
        let manager = HttpConnectionManager::decode(config.value.as_slice()).expect("manager");
        let Some(envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(mixer)) =
            &manager.http_filters[0].config_type
        else {
            panic!("typed")
        };
        let mixer = mcc::HttpClientConfig::decode(mixer.value.as_slice()).expect("client config");
        assert!(mixer.service_configs["default"].disable_check_calls);
        assert_eq!(
            mixer.forward_attributes.expect("forwarded").attributes["source.uid"],
            string("kubernetes://app-1.default")
        );
        assert!(!mixer.ignore_forwarded_attributes);
    }

    #[test]
    fn passthrough_and_unknown_destinations() {
        let push = push(reviews(), vec![]);
        assert_eq!(
            destination_attributes(&push, PASSTHROUGH_CLUSTER).attributes["destination.service.name"],
            string(PASSTHROUGH_CLUSTER)
        );
        assert!(destination_attributes(&push, "outbound|80||nowhere.example").attributes.is_empty());
        let weighted = route_action::ClusterSpecifier::WeightedClusters(
            envoy_types::pb::envoy::config::route::v3::WeightedCluster {
                clusters: [
                    "outbound|9080|v1|reviews.default.svc.cluster.local",
                    "outbound|9080|v2|reviews.default.svc.cluster.local",
                ]
                .iter()
                .map(|name| envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight {
                    name: (*name).into(),
                    ..Default::default()
                })
                .collect(),
                ..Default::default()
            },
        );
        assert_eq!(route_cluster(&weighted).as_deref(), Some("outbound|9080|v1|reviews.default.svc.cluster.local"));
    }

    #[test]
    fn a_stock_envoy_gateways_tcp_check_says_whose_it_is() {
        use envoy_types::pb::envoy::config::listener::v3::FilterChain;
        use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz;
        let mut push = push(reviews(), vec![]);
        with_mixer(&mut push);
        let tcp = TcpProxy {
            stat_prefix: "outbound|8443||sni-proxy.local".into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("outbound|8443||sni-proxy.local".into())),
            ..Default::default()
        };
        let mut listeners = vec![Listener {
            name: "0.0.0.0_443".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: TCP_PROXY.into(),
                    config_type: Some(filter::ConfigType::TypedConfig(super::super::any(tcp))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        decorate_listeners(&mut listeners, &push, &gateway(false));
        let filters = &listeners[0].filter_chains[0].filters;
        assert_eq!(filters.len(), 2, "{filters:?}");
        let Some(filter::ConfigType::TypedConfig(config)) = &filters[0].config_type else { panic!("typed") };
        let ext_authz = ExtAuthz::decode(config.value.as_slice()).expect("ext_authz");
        assert!(ext_authz.include_tls_session, "the SNI goes to Mixer");
        let metadata = &ext_authz.grpc_service.expect("gRPC service").initial_metadata;
        let entry = metadata
            .iter()
            .find(|header| header.key == istio_attribute::ext_authz::SERVICE_CONFIG_METADATA)
            .expect("the service config as metadata");
        let service = istio_attribute::ext_authz::decode_service_config(&entry.value).expect("decodes");
        let attributes = service.mixer_attributes.expect("attributes").attributes;
        assert_eq!(attributes["context.reporter.kind"], string("outbound"));
        assert_eq!(attributes["source.uid"], string(&super::super::mixer::uid(&gateway(false))));
    }
}
