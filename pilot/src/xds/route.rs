//! RDS: route configurations. Sidecars get one per outbound HTTP port (named by the port,
//! e.g. `9080`) with a virtual host per service (domains: FQDN, short names, ClusterIP, each
//! with and without the port) and a last `allow_any` or `block_all` host. Gateways get
//! `http.PORT` with the hosts of the VirtualServices bound to the gateway. VirtualService HTTP
//! routes become Envoy routes: matches, weighted clusters, redirects, rewrites, timeouts,
//! retries (Istio's default policy when none is set), faults, mirroring, CORS and headers.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option, HeaderValue, HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, retry_policy, route, route_action, route_match,
    virtual_host, weighted_cluster, Decorator, HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy,
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, FaultAbort, HttpFault};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use istio_api::pb::istio::networking::v1alpha3 as net;

use istio_xds::ClusterName;

use super::{any, duration, seconds, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::model::{Named, PushContext, Service};
use crate::node::{Proxy, ProxyKind};
use crate::scope::virtual_services::{qualify_gateway, virtual_services_for};
use crate::scope::{gateways, traffic_policy, ProxyScope};

pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Route configurations for the requested names (all known ones when `names` is empty).
pub(crate) fn route_configurations(push: &PushContext, proxy: &Proxy, names: &[String]) -> Vec<RouteConfiguration> {
    names.iter().filter_map(|name| route_configuration(push, proxy, name)).collect()
}

fn route_configuration(push: &PushContext, proxy: &Proxy, name: &str) -> Option<RouteConfiguration> {
    let virtual_hosts = match proxy.kind {
        ProxyKind::Router => gateway_virtual_hosts(push, proxy, name)?,
        ProxyKind::Sidecar => sidecar_virtual_hosts(push, proxy, name.parse().ok()?),
    };
    Some(RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    })
}

fn short_names(service: &Service, proxy_namespace: &str, domain_suffix: &str) -> Vec<String> {
    let mut names = vec![service.hostname.clone()];
    let suffix = format!(".{}.svc.{domain_suffix}", service.namespace);
    if let Some(short) = service.hostname.strip_suffix(&suffix) {
        names.push(format!("{short}.{}", service.namespace));
        names.push(format!("{short}.{}.svc", service.namespace));
        if service.namespace == proxy_namespace {
            names.push(short.to_string());
        }
    }
    names
}

fn sidecar_virtual_hosts(push: &PushContext, proxy: &Proxy, port: u32) -> Vec<VirtualHost> {
    let mut hosts = Vec::new();
    let scope = ProxyScope::of(push, proxy);
    let mesh_services: Vec<&Named<net::VirtualService>> =
        virtual_services_for(push, None).filter(|vs| scope.sees_virtual_service(vs)).collect();
    for service in push.services.values().filter(|service| scope.sees_service_port(service, port)) {
        let Some(service_port) = service.port(port).filter(|p| p.protocol.is_http()) else { continue };
        let mut domains = Vec::new();
        for name in short_names(service, &proxy.namespace, &push.mesh.domain_suffix) {
            domains.push(format!("{name}:{port}"));
            domains.push(name);
        }
        if let Some(address) = &service.address {
            domains.push(format!("{address}:{port}"));
            domains.push(address.clone());
        }
        let virtual_service = mesh_services
            .iter()
            .find(|vs| vs.spec.hosts.iter().any(|host| push.qualify(host, &vs.namespace) == service.hostname));
        let routes = match virtual_service {
            Some(vs) => http_routes(push, vs, Some(port), None, proxy),
            None => {
                let mut route =
                    default_route(push, &ClusterName::outbound(service_port.number, "", &service.hostname).to_string());
                route.decorator = decorator(format!("{}:{}/*", service.hostname, service_port.number));
                vec![route]
            }
        };
        hosts.push(VirtualHost { name: format!("{}:{port}", service.hostname), domains, routes, ..Default::default() });
    }
    let allow_any = scope.allow_any(push);
    let (name, cluster) = if allow_any { ("allow_any", PASSTHROUGH_CLUSTER) } else { ("block_all", BLACKHOLE_CLUSTER) };
    let fallback = if allow_any {
        default_route(push, cluster)
    } else {
        Route {
            r#match: Some(prefix_match("/")),
            action: Some(route::Action::DirectResponse(
                envoy_types::pb::envoy::config::route::v3::DirectResponseAction { status: 502, ..Default::default() },
            )),
            ..Default::default()
        }
    };
    hosts.push(VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![fallback],
        ..Default::default()
    });
    hosts
}

/// Virtual hosts of a gateway route configuration (`http.PORT` or `https.PORT.NAME.GW.NS`): the
/// hosts of the VirtualServices bound to the servers it stands for. `None` when the name is
/// neither form.
fn gateway_virtual_hosts(push: &PushContext, proxy: &Proxy, route_name: &str) -> Option<Vec<VirtualHost>> {
    let port: u32 = route_name.split('.').nth(1)?.parse().ok()?;
    if !(route_name.starts_with("http.") || route_name.starts_with("https.")) {
        return None;
    }
    let mut hosts: Vec<VirtualHost> = Vec::new();
    // (VirtualService, host) pairs already in: a VirtualService bound through several servers
    // on this route contributes its routes once.
    let mut merged: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    for (gateway, server) in gateways::servers_for_route(push, proxy, route_name) {
        let full = gateway.key();
        let redirect = server.tls.as_ref().is_some_and(|tls| tls.https_redirect);
        for vs in virtual_services_for(push, Some(&full)) {
            for host in &vs.spec.hosts {
                let admitted = server.hosts.iter().any(|server_host| {
                    gateways::server_host_admits(&gateway.namespace, server_host, &vs.namespace, host)
                });
                if !admitted || !merged.insert((vs.key(), host.clone())) {
                    continue;
                }
                let routes = http_routes(push, vs, Some(port), Some(&full), proxy);
                // Several VirtualServices for one host on a gateway: their routes are
                // concatenated in order, as 1.4 did.
                if let Some(existing) = hosts.iter_mut().find(|existing| existing.name == format!("{host}:{port}")) {
                    existing.routes.extend(routes);
                    continue;
                }
                let domains =
                    if host == "*" { vec!["*".to_string()] } else { vec![host.clone(), format!("{host}:{port}")] };
                // `httpsRedirect`: clients on this clear-text server are sent to HTTPS (301).
                let require_tls = if redirect {
                    virtual_host::TlsRequirementType::All
                } else {
                    virtual_host::TlsRequirementType::None
                };
                hosts.push(VirtualHost {
                    name: format!("{host}:{port}"),
                    domains,
                    routes,
                    require_tls: require_tls as i32,
                    ..Default::default()
                });
            }
        }
    }
    if hosts.is_empty() {
        hosts.push(VirtualHost {
            name: "blackhole:".to_string() + &port.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(prefix_match("/")),
                action: Some(route::Action::DirectResponse(
                    envoy_types::pb::envoy::config::route::v3::DirectResponseAction {
                        status: 404,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Some(hosts)
}

/// A route decorator naming the operation for tracing (span names, and the
/// `x-envoy-decorator-operation` header).
pub(crate) fn decorator(operation: String) -> Option<Decorator> {
    Some(Decorator { operation, ..Default::default() })
}

/// Istio 1.4's operation name for a VirtualService route: `host:port` and the matched path
/// (`prefix*`, the exact path or the regex; `/*` when it matches everything) when the route
/// goes to one cluster, else the VirtualService's name in place of the host.
fn route_operation(route: &Route, vs_name: &str, port: u32) -> String {
    let path = match route.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
        Some(route_match::PathSpecifier::Prefix(prefix)) => format!("{prefix}*"),
        Some(route_match::PathSpecifier::Path(path)) => path.clone(),
        Some(route_match::PathSpecifier::SafeRegex(regex)) => regex.regex.clone(),
        _ => "/*".to_string(),
    };
    let single_cluster = match &route.action {
        Some(route::Action::Route(action)) => match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(cluster)) => cluster.parse::<ClusterName>().ok(),
            _ => None,
        },
        _ => None,
    };
    match single_cluster {
        Some(cluster) => format!("{}:{}{path}", cluster.host, cluster.port),
        None => format!("{vs_name}:{port}{path}"),
    }
}

fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_string())), ..Default::default() }
}

/// Istio 1.4's default retry policy: 2 attempts on connect failures, refused streams,
/// unavailable/cancelled/resource-exhausted gRPC, and 503.
pub(crate) fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,resource-exhausted,retriable-status-codes"
            .to_string(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(any(
                PreviousHostsPredicate {},
            ))),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

fn default_route(push: &PushContext, cluster: &str) -> Route {
    Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            timeout: Some(seconds(0)),
            retry_policy: Some(default_retry_policy()),
            hash_policy: hash_policy(push, cluster),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The route hash policy that feeds a ring-hash cluster: the header, cookie or source IP its
/// DestinationRule's `consistentHash` names.
fn hash_policy(push: &PushContext, cluster: &str) -> Vec<route_action::HashPolicy> {
    use net::load_balancer_settings::consistent_hash_lb::HashKey;
    use route_action::hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier};
    let Some(hash) = traffic_policy::consistent_hash(push, cluster) else { return Vec::new() };
    let specifier = match hash.hash_key {
        Some(HashKey::HttpHeaderName(header_name)) => {
            PolicySpecifier::Header(Header { header_name, ..Default::default() })
        }
        Some(HashKey::HttpCookie(cookie)) => PolicySpecifier::Cookie(Cookie {
            name: cookie.name,
            path: cookie.path,
            ttl: cookie.ttl.as_ref().map(duration),
            ..Default::default()
        }),
        Some(HashKey::UseSourceIp(true)) => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
        Some(HashKey::UseSourceIp(false)) | None => return Vec::new(),
    };
    vec![route_action::HashPolicy { policy_specifier: Some(specifier), ..Default::default() }]
}

fn string_matcher(matcher: &net::StringMatch) -> Option<StringMatcher> {
    use net::string_match::MatchType;
    let pattern = match matcher.match_type.as_ref()? {
        MatchType::Exact(value) => string_matcher::MatchPattern::Exact(value.clone()),
        MatchType::Prefix(value) => string_matcher::MatchPattern::Prefix(value.clone()),
        MatchType::Regex(value) => {
            string_matcher::MatchPattern::SafeRegex(RegexMatcher { regex: value.clone(), ..Default::default() })
        }
    };
    Some(StringMatcher { match_pattern: Some(pattern), ..Default::default() })
}

fn header(name: &str, matcher: &net::StringMatch) -> Option<HeaderMatcher> {
    Some(HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(matcher)?)),
        ..Default::default()
    })
}

/// Whether an HTTPMatchRequest can apply on this port, gateway and source.
fn match_applies(
    matcher: &net::HttpMatchRequest,
    port: Option<u32>,
    gateway: Option<&str>,
    vs_namespace: &str,
    proxy: &Proxy,
) -> bool {
    if matcher.port != 0 && port.is_some_and(|port| port != matcher.port) {
        return false;
    }
    if !matcher.gateways.is_empty() {
        let wanted = gateway.map_or("mesh".to_string(), str::to_string);
        if !matcher.gateways.iter().any(|g| {
            if g == "mesh" {
                wanted == "mesh"
            } else {
                qualify_gateway(g, vs_namespace) == wanted
            }
        }) {
            return false;
        }
    }
    proxy.matches(&matcher.source_labels)
}

fn route_match(matcher: Option<&net::HttpMatchRequest>) -> RouteMatch {
    use net::string_match::MatchType;
    let Some(matcher) = matcher else { return prefix_match("/") };
    let mut result = RouteMatch {
        case_sensitive: matcher.ignore_uri_case.then_some(BoolValue { value: false }),
        ..Default::default()
    };
    result.path_specifier = Some(match matcher.uri.as_ref().and_then(|uri| uri.match_type.as_ref()) {
        Some(MatchType::Exact(path)) => route_match::PathSpecifier::Path(path.clone()),
        Some(MatchType::Prefix(prefix)) => route_match::PathSpecifier::Prefix(prefix.clone()),
        Some(MatchType::Regex(regex)) => {
            route_match::PathSpecifier::SafeRegex(RegexMatcher { regex: regex.clone(), ..Default::default() })
        }
        None => route_match::PathSpecifier::Prefix("/".to_string()),
    });
    let mut headers: Vec<(&String, &net::StringMatch)> = matcher.headers.iter().collect();
    headers.sort_by_key(|(name, _)| *name);
    result.headers = headers.into_iter().filter_map(|(name, value)| header(name, value)).collect();
    for (pseudo, value) in
        [(":method", &matcher.method), (":authority", &matcher.authority), (":scheme", &matcher.scheme)]
    {
        if let Some(matcher) = value.as_ref().and_then(|value| header(pseudo, value)) {
            result.headers.push(matcher);
        }
    }
    let mut params: Vec<(&String, &net::StringMatch)> = matcher.query_params.iter().collect();
    params.sort_by_key(|(name, _)| *name);
    result.query_parameters = params
        .into_iter()
        .filter_map(|(name, value)| {
            Some(QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(
                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(string_matcher(value)?),
                ),
            })
        })
        .collect();
    result
}

fn destination_cluster(
    push: &PushContext,
    destination: &net::Destination,
    vs_namespace: &str,
    default_port: Option<u32>,
) -> String {
    let host = push.qualify(&destination.host, vs_namespace);
    let port = destination
        .port
        .as_ref()
        .map(|port| port.number)
        .filter(|number| *number != 0)
        .or_else(|| {
            push.service(&host).filter(|service| service.ports.len() == 1).map(|service| service.ports[0].number)
        })
        .or(default_port)
        .unwrap_or(80);
    ClusterName::outbound(port, &destination.subset, &host).to_string()
}

fn header_options(set: &HashMap<String, String>, add: &HashMap<String, String>) -> Vec<HeaderValueOption> {
    let option =
        |(name, value): (&String, &String), append: header_value_option::HeaderAppendAction| HeaderValueOption {
            header: Some(HeaderValue { key: name.clone(), value: value.clone(), ..Default::default() }),
            append_action: append as i32,
            ..Default::default()
        };
    let mut options: Vec<HeaderValueOption> =
        set.iter().map(|pair| option(pair, header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd)).collect();
    options.extend(add.iter().map(|pair| option(pair, header_value_option::HeaderAppendAction::AppendIfExistsOrAdd)));
    options.sort_by(|a, b| a.header.as_ref().map(|h| &h.key).cmp(&b.header.as_ref().map(|h| &h.key)));
    options
}

fn fractional(percentage: Option<&net::Percent>, percent: i32) -> FractionalPercent {
    match percentage {
        Some(percentage) => {
            // Millionths keep Istio's precision (down to 0.0001 %).
            let numerator = (percentage.value * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32;
            FractionalPercent { numerator, denominator: fractional_percent::DenominatorType::Million as i32 }
        }
        None => FractionalPercent {
            numerator: u32::try_from(percent).unwrap_or(0),
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        },
    }
}

fn fault(fault: &net::HttpFaultInjection) -> HttpFault {
    use net::http_fault_injection::abort::ErrorType;
    use net::http_fault_injection::delay::HttpDelayType;
    let mut config = HttpFault::default();
    if let Some(delay) = &fault.delay {
        if let Some(HttpDelayType::FixedDelay(fixed)) = &delay.http_delay_type {
            config.delay = Some(FaultDelay {
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(fixed))),
                percentage: Some(fractional(delay.percentage.as_ref(), delay.percent)),
            });
        }
    }
    if let Some(abort) = &fault.abort {
        if let Some(ErrorType::HttpStatus(status)) = &abort.error_type {
            config.abort = Some(FaultAbort {
                error_type: Some(fault_abort::ErrorType::HttpStatus(u32::try_from(*status).unwrap_or(500))),
                percentage: Some(fractional(abort.percentage.as_ref(), abort.percent)),
                ..Default::default()
            });
        }
    }
    config
}

fn cors(policy: &net::CorsPolicy) -> envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
    envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
        allow_origin_string_match: policy
            .allow_origin
            .iter()
            .map(|origin| StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(origin.clone())),
                ..Default::default()
            })
            .collect(),
        allow_methods: policy.allow_methods.join(","),
        allow_headers: policy.allow_headers.join(","),
        expose_headers: policy.expose_headers.join(","),
        max_age: policy.max_age.as_ref().map(|age| age.seconds.to_string()).unwrap_or_default(),
        allow_credentials: policy.allow_credentials.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

/// Envoy routes for a VirtualService's HTTP routes that apply here.
pub(crate) fn http_routes(
    push: &PushContext,
    vs: &Named<net::VirtualService>,
    port: Option<u32>,
    gateway: Option<&str>,
    proxy: &Proxy,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for (index, http) in vs.spec.http.iter().enumerate() {
        let matches: Vec<Option<&net::HttpMatchRequest>> = if http.r#match.is_empty() {
            vec![None]
        } else {
            let applicable: Vec<_> = http
                .r#match
                .iter()
                .filter(|m| match_applies(m, port, gateway, &vs.namespace, proxy))
                .map(Some)
                .collect();
            if applicable.is_empty() {
                continue;
            }
            applicable
        };
        let route_name =
            if http.name.is_empty() { format!("{}.{}.{index}", vs.name, vs.namespace) } else { http.name.clone() };
        for matcher in matches {
            routes.push(http_route(push, vs, http, matcher, &route_name, port));
        }
        // A route without matches catches everything; later routes can never apply.
        if http.r#match.is_empty() {
            break;
        }
    }
    routes
}

fn http_route(
    push: &PushContext,
    vs: &Named<net::VirtualService>,
    http: &net::HttpRoute,
    matcher: Option<&net::HttpMatchRequest>,
    name: &str,
    port: Option<u32>,
) -> Route {
    let mut route = Route { name: name.to_string(), r#match: Some(route_match(matcher)), ..Default::default() };
    route.action = Some(match &http.redirect {
        Some(redirect) => route::Action::Redirect(redirect_action(redirect)),
        None => route::Action::Route(route_action(push, vs, http, port)),
    });
    route.typed_per_filter_config = per_filter_config(http);
    set_header_operations(&mut route, http);
    route.decorator = decorator(route_operation(&route, &vs.name, port.unwrap_or(0)));
    route.metadata = Some(super::istio_config_metadata("virtual-service", &vs.namespace, &vs.name));
    route
}

/// An HTTPRedirect as Envoy's redirect action.
fn redirect_action(redirect: &net::HttpRedirect) -> RedirectAction {
    RedirectAction {
        host_redirect: redirect.authority.clone(),
        path_rewrite_specifier: (!redirect.uri.is_empty())
            .then(|| redirect_action::PathRewriteSpecifier::PathRedirect(redirect.uri.clone())),
        response_code: match redirect.redirect_code {
            302 => redirect_action::RedirectResponseCode::Found as i32,
            303 => redirect_action::RedirectResponseCode::SeeOther as i32,
            307 => redirect_action::RedirectResponseCode::TemporaryRedirect as i32,
            308 => redirect_action::RedirectResponseCode::PermanentRedirect as i32,
            _ => redirect_action::RedirectResponseCode::MovedPermanently as i32,
        },
        ..Default::default()
    }
}

/// Forwarding to the route's destinations: the cluster (or weighted clusters), the timeout,
/// consistent hashing, retries, rewrites and the mirror.
fn route_action(
    push: &PushContext,
    vs: &Named<net::VirtualService>,
    http: &net::HttpRoute,
    port: Option<u32>,
) -> RouteAction {
    let mut action = RouteAction {
        timeout: Some(http.timeout.as_ref().map_or_else(|| seconds(0), duration)),
        cluster_specifier: Some(cluster_specifier(push, vs, &http.route, port)),
        ..Default::default()
    };
    // Consistent hashing follows the (first) destination's DestinationRule.
    let first_cluster = match &action.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(cluster)) => cluster.clone(),
        Some(route_action::ClusterSpecifier::WeightedClusters(weighted)) => {
            weighted.clusters.first().map(|c| c.name.clone()).unwrap_or_default()
        }
        _ => String::new(),
    };
    action.hash_policy = hash_policy(push, &first_cluster);
    action.retry_policy = Some(retry_policy(http.retries.as_ref()));
    if let Some(rewrite) = &http.rewrite {
        action.prefix_rewrite = rewrite.uri.clone();
        if !rewrite.authority.is_empty() {
            action.host_rewrite_specifier =
                Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(rewrite.authority.clone()));
        }
    }
    if let Some(mirror) = &http.mirror {
        action.request_mirror_policies = vec![route_action::RequestMirrorPolicy {
            cluster: destination_cluster(push, mirror, &vs.namespace, port),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: http.mirror_percent.unwrap_or(100),
                    denominator: fractional_percent::DenominatorType::Hundred as i32,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }];
    }
    action
}

/// One destination's cluster, or the weighted clusters of several (weight 0 left out), each
/// with its own header operations.
fn cluster_specifier(
    push: &PushContext,
    vs: &Named<net::VirtualService>,
    destinations: &[net::HttpRouteDestination],
    port: Option<u32>,
) -> route_action::ClusterSpecifier {
    let cluster_of = |weighted: &net::HttpRouteDestination| {
        destination_cluster(
            push,
            weighted.destination.as_ref().unwrap_or(&net::Destination::default()),
            &vs.namespace,
            port,
        )
    };
    if let [only] = destinations {
        return route_action::ClusterSpecifier::Cluster(cluster_of(only));
    }
    let clusters = destinations
        .iter()
        .filter(|weighted| weighted.weight > 0)
        .map(|weighted| {
            let operations = HeaderOperations::of(weighted.headers.as_ref());
            weighted_cluster::ClusterWeight {
                name: cluster_of(weighted),
                weight: Some(UInt32Value { value: u32::try_from(weighted.weight).unwrap_or(0) }),
                request_headers_to_add: operations.request_add,
                request_headers_to_remove: operations.request_remove,
                response_headers_to_add: operations.response_add,
                response_headers_to_remove: operations.response_remove,
                ..Default::default()
            }
        })
        .collect();
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster { clusters, ..Default::default() })
}

/// A route's retry policy: Istio's default when the route says nothing, none for 0 attempts.
fn retry_policy(retries: Option<&net::HttpRetry>) -> RetryPolicy {
    match retries {
        None => default_retry_policy(),
        Some(retries) if retries.attempts == 0 => RetryPolicy::default(),
        Some(retries) => RetryPolicy {
            retry_on: if retries.retry_on.is_empty() {
                "gateway-error,connect-failure,refused-stream".to_string()
            } else {
                retries.retry_on.clone()
            },
            num_retries: Some(UInt32Value { value: u32::try_from(retries.attempts).unwrap_or(0) }),
            per_try_timeout: retries.per_try_timeout.as_ref().map(duration),
            retry_host_predicate: default_retry_policy().retry_host_predicate,
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        },
    }
}

/// The fault and CORS filters' per-route config.
fn per_filter_config(http: &net::HttpRoute) -> HashMap<String, Any> {
    let fault = http.fault.as_ref().map(|injected| (FAULT_FILTER.to_string(), any(fault(injected))));
    let cors = http.cors_policy.as_ref().map(|policy| (CORS_FILTER.to_string(), any(cors(policy))));
    super::stable_map::stable_map(fault.into_iter().chain(cors))
}

/// Header operations (`headers.request`/`headers.response`) in Envoy's terms.
#[derive(Default)]
struct HeaderOperations {
    request_add: Vec<HeaderValueOption>,
    request_remove: Vec<String>,
    response_add: Vec<HeaderValueOption>,
    response_remove: Vec<String>,
}

impl HeaderOperations {
    fn of(headers: Option<&net::Headers>) -> HeaderOperations {
        let request = headers.and_then(|headers| headers.request.as_ref());
        let response = headers.and_then(|headers| headers.response.as_ref());
        HeaderOperations {
            request_add: request.map(|ops| header_options(&ops.set, &ops.add)).unwrap_or_default(),
            request_remove: request.map(|ops| ops.remove.clone()).unwrap_or_default(),
            response_add: response.map(|ops| header_options(&ops.set, &ops.add)).unwrap_or_default(),
            response_remove: response.map(|ops| ops.remove.clone()).unwrap_or_default(),
        }
    }
}

/// The route's header operations, with the deprecated `appendHeaders`/`removeResponseHeaders`
/// forms after the `headers` ones.
fn set_header_operations(route: &mut Route, http: &net::HttpRoute) {
    let operations = HeaderOperations::of(http.headers.as_ref());
    let appended = |headers: &HashMap<String, String>| header_options(&HashMap::new(), headers);
    route.request_headers_to_add = operations.request_add;
    route.request_headers_to_add.extend(appended(&http.append_request_headers));
    route.request_headers_to_add.extend(appended(&http.append_headers));
    route.request_headers_to_remove = operations.request_remove;
    route.request_headers_to_remove.extend(http.remove_request_headers.iter().cloned());
    route.response_headers_to_add = operations.response_add;
    route.response_headers_to_add.extend(appended(&http.append_response_headers));
    route.response_headers_to_remove = operations.response_remove;
    route.response_headers_to_remove.extend(http.remove_response_headers.iter().cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_to(path: route_match::PathSpecifier, cluster: route_action::ClusterSpecifier) -> Route {
        Route {
            r#match: Some(RouteMatch { path_specifier: Some(path), ..Default::default() }),
            action: Some(route::Action::Route(RouteAction { cluster_specifier: Some(cluster), ..Default::default() })),
            ..Default::default()
        }
    }

    /// 1.4's operation names: `host:port` of the one destination and the matched path, or the
    /// VirtualService's name when traffic is split.
    #[test]
    fn route_operations_name_the_destination_and_path() {
        let single =
            route_action::ClusterSpecifier::Cluster("outbound|9080|v2|reviews.default.svc.cluster.local".into());
        let prefix = route_to(route_match::PathSpecifier::Prefix("/api".into()), single.clone());
        assert_eq!(route_operation(&prefix, "reviews", 9080), "reviews.default.svc.cluster.local:9080/api*");
        let exact = route_to(route_match::PathSpecifier::Path("/login".into()), single);
        assert_eq!(route_operation(&exact, "reviews", 9080), "reviews.default.svc.cluster.local:9080/login");
        let split = route_to(
            route_match::PathSpecifier::Prefix("/".into()),
            route_action::ClusterSpecifier::WeightedClusters(WeightedCluster::default()),
        );
        assert_eq!(route_operation(&split, "reviews", 9080), "reviews:9080/*");
        let redirect = Route::default();
        assert_eq!(route_operation(&redirect, "bookinfo", 80), "bookinfo:80/*");
    }

    use crate::testing::{push, reviews, virtual_service};
    use envoy_types::pb::google::protobuf::Duration;
    use serde_json::json;

    const REVIEWS: &str = "reviews.default.svc.cluster.local";

    /// The single route `http_route` builds for the VirtualService's first HTTP route.
    fn first_route(spec: serde_json::Value) -> Route {
        let push = push(reviews(), Vec::new());
        let vs = virtual_service("default", "reviews", spec);
        http_route(&push, &vs, &vs.spec.http[0], vs.spec.http[0].r#match.first(), "reviews", Some(9080))
    }

    fn action(route: &Route) -> &RouteAction {
        match &route.action {
            Some(route::Action::Route(action)) => action,
            other => panic!("not a route action: {other:?}"),
        }
    }

    fn header_keys(options: &[HeaderValueOption]) -> Vec<(&str, i32)> {
        options
            .iter()
            .map(|option| (option.header.as_ref().map_or("", |header| header.key.as_str()), option.append_action))
            .collect()
    }

    #[test]
    fn one_destination_is_a_cluster_and_several_are_weighted_without_the_zero_ones() {
        let single = first_route(json!({"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v2"}}]}]}));
        assert_eq!(
            action(&single).cluster_specifier,
            Some(route_action::ClusterSpecifier::Cluster(format!("outbound|9080|v2|{REVIEWS}")))
        );
        assert_eq!(action(&single).timeout, Some(seconds(0)), "no timeout unless the route sets one");

        let split = first_route(json!({"hosts": ["reviews"], "http": [{"timeout": "0.5s", "route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80,
             "headers": {"request": {"set": {"x-canary": "no"}}, "response": {"remove": ["x-debug"]}}},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
            {"destination": {"host": "reviews", "subset": "v3"}, "weight": 0}]}]}));
        assert_eq!(action(&split).timeout, Some(Duration { seconds: 0, nanos: 500_000_000 }));
        let Some(route_action::ClusterSpecifier::WeightedClusters(weighted)) = &action(&split).cluster_specifier else {
            panic!("not weighted")
        };
        let weights: Vec<(&str, u32)> = weighted
            .clusters
            .iter()
            .map(|cluster| (cluster.name.as_str(), cluster.weight.as_ref().map_or(0, |weight| weight.value)))
            .collect();
        let (v1, v2) = (format!("outbound|9080|v1|{REVIEWS}"), format!("outbound|9080|v2|{REVIEWS}"));
        assert_eq!(weights, [(v1.as_str(), 80), (v2.as_str(), 20)]);
        let overwrite = header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        assert_eq!(header_keys(&weighted.clusters[0].request_headers_to_add), [("x-canary", overwrite)]);
        assert_eq!(weighted.clusters[0].response_headers_to_remove, ["x-debug"]);
        assert!(weighted.clusters[1].request_headers_to_add.is_empty());
    }

    /// No `retries` is Istio's default policy, 0 attempts none at all, and a policy as written
    /// keeps the previous-hosts predicate.
    #[test]
    fn retry_policies_follow_istio_defaults() {
        let route_with = |retries: serde_json::Value| {
            let mut http = json!({"route": [{"destination": {"host": "reviews"}}]});
            if !retries.is_null() {
                http["retries"] = retries;
            }
            first_route(json!({"hosts": ["reviews"], "http": [http]}))
        };
        assert_eq!(action(&route_with(serde_json::Value::Null)).retry_policy, Some(default_retry_policy()));
        assert_eq!(action(&route_with(json!({"attempts": 0}))).retry_policy, Some(RetryPolicy::default()));
        let custom = route_with(json!({"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}));
        let policy = action(&custom).retry_policy.clone().expect("policy");
        assert_eq!(policy.retry_on, "5xx");
        assert_eq!(policy.num_retries, Some(UInt32Value { value: 3 }));
        assert_eq!(policy.per_try_timeout, Some(seconds(2)));
        assert_eq!(policy.retry_host_predicate, default_retry_policy().retry_host_predicate);
        let unset_on = route_with(json!({"attempts": 1}));
        assert_eq!(
            action(&unset_on).retry_policy.as_ref().map(|p| p.retry_on.as_str()),
            Some("gateway-error,connect-failure,refused-stream")
        );
    }

    #[test]
    fn redirects_keep_their_code_and_target() {
        let redirect = |code: u32| {
            first_route(
                json!({"hosts": ["reviews"], "http": [{"redirect": {"uri": "/v1/reviews", "authority": "new.example",
                                                                            "redirectCode": code}}]}),
            )
        };
        let Some(route::Action::Redirect(moved)) = redirect(0).action else { panic!("not a redirect") };
        assert_eq!(moved.host_redirect, "new.example");
        assert_eq!(
            moved.path_rewrite_specifier,
            Some(redirect_action::PathRewriteSpecifier::PathRedirect("/v1/reviews".into()))
        );
        assert_eq!(moved.response_code, redirect_action::RedirectResponseCode::MovedPermanently as i32);
        for (code, expected) in [
            (302, redirect_action::RedirectResponseCode::Found),
            (303, redirect_action::RedirectResponseCode::SeeOther),
            (307, redirect_action::RedirectResponseCode::TemporaryRedirect),
            (308, redirect_action::RedirectResponseCode::PermanentRedirect),
        ] {
            let Some(route::Action::Redirect(action)) = redirect(code).action else { panic!("not a redirect") };
            assert_eq!(action.response_code, expected as i32, "{code}");
        }
    }

    #[test]
    fn rewrites_mirrors_faults_cors_and_header_operations_are_carried() {
        let route = first_route(json!({"hosts": ["reviews"], "http": [{
            "match": [{"uri": {"prefix": "/old"}}],
            "rewrite": {"uri": "/new", "authority": "reviews.internal"},
            "mirror": {"host": "reviews", "subset": "v3"},
            "mirrorPercent": 25,
            "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 10}}},
            "corsPolicy": {"allowOrigin": ["https://example.com"], "allowMethods": ["GET"]},
            "headers": {"request": {"add": {"x-added": "1"}, "remove": ["x-secret"]},
                        "response": {"set": {"x-served-by": "reviews"}}},
            "appendHeaders": {"x-legacy": "yes"},
            "removeResponseHeaders": ["x-old"],
            "route": [{"destination": {"host": "reviews"}}]}]}));
        let forward = action(&route);
        assert_eq!(forward.prefix_rewrite, "/new");
        assert_eq!(
            forward.host_rewrite_specifier,
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral("reviews.internal".into()))
        );
        let mirror = &forward.request_mirror_policies[0];
        assert_eq!(mirror.cluster, format!("outbound|9080|v3|{REVIEWS}"));
        let fraction = mirror.runtime_fraction.as_ref().and_then(|fraction| fraction.default_value.as_ref());
        assert_eq!(fraction.map(|fraction| fraction.numerator), Some(25));
        assert!(route.typed_per_filter_config.contains_key(FAULT_FILTER));
        assert!(route.typed_per_filter_config.contains_key(CORS_FILTER));
        let (append, overwrite) = (
            header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32,
            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        );
        assert_eq!(header_keys(&route.request_headers_to_add), [("x-added", append), ("x-legacy", append)]);
        assert_eq!(route.request_headers_to_remove, ["x-secret"]);
        assert_eq!(header_keys(&route.response_headers_to_add), [("x-served-by", overwrite)]);
        assert_eq!(route.response_headers_to_remove, ["x-old"]);
        let Some(RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix(prefix)), .. }) = &route.r#match
        else {
            panic!("no prefix match")
        };
        assert_eq!(prefix, "/old");
        assert_eq!(
            route.decorator.as_ref().map(|decorator| decorator.operation.as_str()),
            Some(format!("{REVIEWS}:9080/old*").as_str())
        );
    }
}
