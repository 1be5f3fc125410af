//! Route configurations (RDS, or inline in a connection manager) compiled for matching:
//! virtual hosts found by `:authority` with Envoy's precedence (exact, then the longest
//! `*.suffix`, then the longest `prefix.*`, then `*`), routes tried in order (matching is in
//! `route_match`), and each route's action — forward to a cluster or weighted clusters with
//! timeout, retries, mirroring and rewrites; redirect; or a direct response — plus header
//! edits, faults and CORS.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{header_value_option::HeaderAppendAction, HeaderValueOption};
use envoy_types::pb::envoy::config::route::v3 as envoy_route;
use envoy_types::pb::envoy::config::route::v3::{
    route::Action as EnvoyAction, route_action, virtual_host::TlsRequirementType,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, HttpFault};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::matcher::{fraction, StringMatcher};
pub(crate) use super::route_match::{PathMatch, RouteMatcher};
use super::{duration, ConfigError};

pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";

/// A compiled route configuration.
#[derive(Debug)]
pub(crate) struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// `*.suffix` domains (stored without the `*`), longest first.
    suffixes: Vec<(String, usize)>,
    /// `prefix.*` domains (stored without the `*`), longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    pub headers: HeaderEdits,
}

/// Request and response header edits at one level (route table, virtual host, route).
#[derive(Debug, Default, Clone)]
pub(crate) struct HeaderEdits {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderAdd {
    pub name: String,
    pub value: String,
    /// Append to an existing value instead of replacing it.
    pub append: bool,
}

#[derive(Debug)]
pub(crate) struct VirtualHost {
    pub routes: Vec<Route>,
    pub require_tls: bool,
    pub headers: HeaderEdits,
    pub filters: PerFilter,
}

/// Per-filter config (`typed_per_filter_config`) this data plane acts on.
#[derive(Debug, Default, Clone)]
pub(crate) struct PerFilter {
    pub fault: Option<Fault>,
    pub cors: Option<Cors>,
    /// The `mixer` filter's `ServiceConfig` for the route (its service and quotas).
    pub mixer: Option<std::sync::Arc<crate::dataplane::mixer::config::ServiceSettings>>,
}

#[derive(Debug)]
pub(crate) struct Route {
    pub name: String,
    pub matcher: RouteMatcher,
    pub action: Action,
    pub headers: HeaderEdits,
    pub filters: PerFilter,
    pub decorator: Option<Decorator>,
}

/// The route's name for tracing: the span's operation, and whether it is passed on in
/// `x-envoy-decorator-operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decorator {
    pub operation: String,
    pub propagate: bool,
}

#[derive(Debug)]
pub(crate) enum Action {
    Forward(Box<Forward>),
    Redirect(Redirect),
    Direct { status: u16, body: Option<String> },
}

#[derive(Debug)]
pub(crate) struct Forward {
    pub clusters: ClusterChoice,
    /// `None`: no timeout (Envoy's `0s`); Envoy's default is 15 s.
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub mirrors: Vec<Mirror>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite: Option<String>,
    pub hash_policy: Vec<HashPolicy>,
}

#[derive(Debug, Clone)]
pub(crate) enum ClusterChoice {
    Single(String),
    /// (cluster, weight) pairs and the total weight.
    Weighted(Vec<(String, u32)>, u32),
    /// The cluster named by a request header.
    FromHeader(String),
}

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub retry_on: Vec<String>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// `envoy.retry_host_predicates.previous_hosts`: retry on a host not tried yet.
    pub avoid_previous_hosts: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    pub cluster: String,
    pub fraction: f64,
}

#[derive(Debug, Clone)]
pub(crate) enum HashPolicy {
    Header(String),
    /// The cookie's value (generating a missing cookie, Envoy's `ttl`, is not done).
    Cookie {
        name: String,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub status: u16,
    pub strip_query: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(u16, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cors {
    pub allow_origins: Vec<StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: bool,
}

impl RouteTable {
    pub(crate) fn compile(config: &envoy_route::RouteConfiguration) -> Result<RouteTable, ConfigError> {
        let field = |path: String| format!("route {}: {path}", config.name);
        let mut table = RouteTable {
            name: config.name.clone(),
            virtual_hosts: Vec::new(),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            headers: header_edits(
                &config.request_headers_to_add,
                &config.request_headers_to_remove,
                &config.response_headers_to_add,
                &config.response_headers_to_remove,
            ),
        };
        for (index, host) in config.virtual_hosts.iter().enumerate() {
            let at = field(format!("virtual_hosts[{index}]"));
            table.virtual_hosts.push(VirtualHost::compile(host, &at)?);
            for domain in &host.domains {
                let domain = domain.to_lowercase();
                let duplicate = if domain == "*" {
                    table.any.replace(index).is_some()
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    let known = table.suffixes.iter().any(|(known, _)| known == suffix);
                    table.suffixes.push((suffix.to_string(), index));
                    known
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    let known = table.prefixes.iter().any(|(known, _)| known == prefix);
                    table.prefixes.push((prefix.to_string(), index));
                    known
                } else {
                    table.exact.insert(domain.clone(), index).is_some()
                };
                if duplicate {
                    return Err(ConfigError::new(
                        &at,
                        format!("domain {domain:?} appears in more than one virtual host"),
                    ));
                }
            }
        }
        table.suffixes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        table.prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(table)
    }

    /// The virtual host serving `authority` (the Host header, port included if sent).
    pub(crate) fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let host = authority.to_lowercase();
        let index = self
            .exact
            .get(&host)
            .copied()
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| host.len() > prefix.len() && host.starts_with(prefix.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        self.virtual_hosts.get(index)
    }
}

impl VirtualHost {
    fn compile(host: &envoy_route::VirtualHost, at: &str) -> Result<VirtualHost, ConfigError> {
        let routes = host
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| Route::compile(route, &format!("{at}.routes[{index}]")))
            .collect::<Result<_, _>>()?;
        Ok(VirtualHost {
            routes,
            require_tls: host.require_tls != TlsRequirementType::None as i32,
            headers: header_edits(
                &host.request_headers_to_add,
                &host.request_headers_to_remove,
                &host.response_headers_to_add,
                &host.response_headers_to_remove,
            ),
            filters: per_filter(&host.typed_per_filter_config, at)?,
        })
    }
}

impl Route {
    fn compile(route: &envoy_route::Route, at: &str) -> Result<Route, ConfigError> {
        let matcher = route.r#match.as_ref().ok_or_else(|| ConfigError::new(at, "a route needs a match"))?;
        let action = match &route.action {
            Some(EnvoyAction::Route(action)) => {
                Action::Forward(Box::new(Forward::compile(action, &format!("{at}.route"))?))
            }
            Some(EnvoyAction::Redirect(redirect)) => Action::Redirect(Redirect::compile(redirect)),
            Some(EnvoyAction::DirectResponse(direct)) => Action::Direct {
                status: u16::try_from(direct.status).ok().filter(|status| (200..600).contains(status)).ok_or_else(
                    || ConfigError::new(at, format!("direct_response status {} is not an HTTP status", direct.status)),
                )?,
                body: direct.body.as_ref().and_then(|body| match &body.specifier {
                    Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(text)) => {
                        Some(text.clone())
                    }
                    Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(bytes)) => {
                        Some(String::from_utf8_lossy(bytes).into_owned())
                    }
                    _ => None,
                }),
            },
            Some(_) => return Err(ConfigError::new(at, "this route action is not supported")),
            None => return Err(ConfigError::new(at, "a route needs an action")),
        };
        Ok(Route {
            name: route.name.clone(),
            matcher: RouteMatcher::compile(matcher, &format!("{at}.match"))?,
            action,
            headers: header_edits(
                &route.request_headers_to_add,
                &route.request_headers_to_remove,
                &route.response_headers_to_add,
                &route.response_headers_to_remove,
            ),
            filters: per_filter(&route.typed_per_filter_config, at)?,
            decorator: route.decorator.as_ref().filter(|decorator| !decorator.operation.is_empty()).map(|decorator| {
                Decorator {
                    operation: decorator.operation.clone(),
                    propagate: decorator.propagate.as_ref().is_none_or(|propagate| propagate.value),
                }
            }),
        })
    }
}

impl Forward {
    fn compile(action: &envoy_route::RouteAction, at: &str) -> Result<Forward, ConfigError> {
        let clusters = match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(name)) => ClusterChoice::Single(name.clone()),
            Some(route_action::ClusterSpecifier::ClusterHeader(header)) => {
                ClusterChoice::FromHeader(header.to_lowercase())
            }
            Some(route_action::ClusterSpecifier::WeightedClusters(weighted)) => {
                let pairs: Vec<(String, u32)> = weighted
                    .clusters
                    .iter()
                    .map(|cluster| (cluster.name.clone(), cluster.weight.as_ref().map_or(0, |weight| weight.value)))
                    .collect();
                let total = pairs.iter().map(|(_, weight)| u64::from(*weight)).sum::<u64>();
                let Some(total) = u32::try_from(total).ok().filter(|total| *total > 0) else {
                    return Err(ConfigError::new(
                        at,
                        "weighted_clusters: the weights must add up to between 1 and 2^32-1",
                    ));
                };
                ClusterChoice::Weighted(pairs, total)
            }
            Some(_) => return Err(ConfigError::new(at, "this cluster specifier is not supported")),
            None => return Err(ConfigError::new(at, "a route action needs a cluster")),
        };
        let timeout = match &action.timeout {
            None => Some(Duration::from_secs(15)),
            Some(value) => Some(duration(value)).filter(|timeout| !timeout.is_zero()),
        };
        let retry = action.retry_policy.as_ref().map(|policy| RetryPolicy {
            retry_on: policy
                .retry_on
                .split(',')
                .map(|condition| condition.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            num_retries: policy.num_retries.as_ref().map_or(1, |count| count.value),
            per_try_timeout: policy.per_try_timeout.as_ref().map(duration).filter(|timeout| !timeout.is_zero()),
            retriable_status_codes: policy
                .retriable_status_codes
                .iter()
                .filter_map(|code| u16::try_from(*code).ok())
                .collect(),
            avoid_previous_hosts: policy
                .retry_host_predicate
                .iter()
                .any(|predicate| predicate.name.ends_with("previous_hosts")),
        });
        let mirrors = action
            .request_mirror_policies
            .iter()
            .map(|mirror| Mirror {
                cluster: mirror.cluster.clone(),
                fraction: mirror
                    .runtime_fraction
                    .as_ref()
                    .map_or(1.0, |runtime| fraction(runtime.default_value.as_ref())),
            })
            .collect();
        let host_rewrite = match &action.host_rewrite_specifier {
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(host)) => Some(host.clone()),
            _ => None,
        };
        let hash_policy = action
            .hash_policy
            .iter()
            .filter_map(|policy| match &policy.policy_specifier {
                Some(route_action::hash_policy::PolicySpecifier::Header(header)) => {
                    Some(HashPolicy::Header(header.header_name.to_lowercase()))
                }
                Some(route_action::hash_policy::PolicySpecifier::Cookie(cookie)) => {
                    Some(HashPolicy::Cookie { name: cookie.name.clone() })
                }
                Some(route_action::hash_policy::PolicySpecifier::ConnectionProperties(properties))
                    if properties.source_ip =>
                {
                    Some(HashPolicy::SourceIp)
                }
                Some(route_action::hash_policy::PolicySpecifier::QueryParameter(query)) => {
                    Some(HashPolicy::QueryParameter(query.name.clone()))
                }
                _ => None,
            })
            .collect();
        Ok(Forward {
            clusters,
            timeout,
            idle_timeout: action.idle_timeout.as_ref().map(duration).filter(|timeout| !timeout.is_zero()),
            retry,
            mirrors,
            prefix_rewrite: Some(action.prefix_rewrite.clone()).filter(|rewrite| !rewrite.is_empty()),
            host_rewrite,
            hash_policy,
        })
    }

    /// Picks the cluster for one request (a weighted pick when weights are given).
    pub(crate) fn pick_cluster<'a>(&'a self, header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
        self.clusters.pick(header)
    }
}

impl ClusterChoice {
    /// The cluster for one request or connection: the named one, a weighted random pick, or
    /// the one a request header names.
    pub(crate) fn pick<'a>(&'a self, header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
        match self {
            ClusterChoice::Single(name) => Some(name),
            ClusterChoice::FromHeader(header_name) => header(header_name),
            ClusterChoice::Weighted(pairs, total) => {
                let mut ticket = rand::random_range(0..*total);
                pairs.iter().find_map(|(name, weight)| {
                    if ticket < *weight {
                        Some(name.as_str())
                    } else {
                        ticket -= weight;
                        None
                    }
                })
            }
        }
    }
}

impl Redirect {
    /// The redirect `require_tls` answers with: the same URL over HTTPS, 301.
    pub(crate) fn to_https() -> Redirect {
        Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: None,
            prefix_rewrite: None,
            status: 301,
            strip_query: false,
        }
    }

    fn compile(redirect: &envoy_route::RedirectAction) -> Redirect {
        use envoy_route::redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
        let status = match RedirectResponseCode::try_from(redirect.response_code)
            .unwrap_or(RedirectResponseCode::MovedPermanently)
        {
            RedirectResponseCode::MovedPermanently => 301,
            RedirectResponseCode::Found => 302,
            RedirectResponseCode::SeeOther => 303,
            RedirectResponseCode::TemporaryRedirect => 307,
            RedirectResponseCode::PermanentRedirect => 308,
        };
        Redirect {
            scheme: match &redirect.scheme_rewrite_specifier {
                Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
                Some(SchemeRewriteSpecifier::SchemeRedirect(scheme)) => Some(scheme.clone()),
                _ => None,
            },
            host: Some(redirect.host_redirect.clone()).filter(|host| !host.is_empty()),
            port: Some(redirect.port_redirect).filter(|port| *port != 0),
            path: match &redirect.path_rewrite_specifier {
                Some(PathRewriteSpecifier::PathRedirect(path)) => Some(path.clone()),
                _ => None,
            },
            prefix_rewrite: match &redirect.path_rewrite_specifier {
                Some(PathRewriteSpecifier::PrefixRewrite(prefix)) => Some(prefix.clone()),
                _ => None,
            },
            status,
            strip_query: redirect.strip_query,
        }
    }
}

fn header_edits(
    request_add: &[HeaderValueOption],
    request_remove: &[String],
    response_add: &[HeaderValueOption],
    response_remove: &[String],
) -> HeaderEdits {
    let adds = |options: &[HeaderValueOption]| {
        options
            .iter()
            .filter_map(|option| {
                let header = option.header.as_ref()?;
                #[allow(deprecated)]
                let append = match &option.append {
                    Some(append) => append.value,
                    None => option.append_action == HeaderAppendAction::AppendIfExistsOrAdd as i32,
                };
                let value = if header.value.is_empty() {
                    String::from_utf8_lossy(&header.raw_value).into_owned()
                } else {
                    header.value.clone()
                };
                Some(HeaderAdd { name: header.key.to_lowercase(), value, append })
            })
            .collect()
    };
    HeaderEdits {
        request_add: adds(request_add),
        request_remove: request_remove.iter().map(|name| name.to_lowercase()).collect(),
        response_add: adds(response_add),
        response_remove: response_remove.iter().map(|name| name.to_lowercase()).collect(),
    }
}

fn per_filter(configs: &HashMap<String, Any>, at: &str) -> Result<PerFilter, ConfigError> {
    let mut filters = PerFilter::default();
    for (name, config) in configs {
        let field = format!("{at}.typed_per_filter_config[{name}]");
        match name.as_str() {
            FAULT_FILTER | "envoy.fault" => {
                let fault = HttpFault::decode(config.value.as_slice())
                    .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                filters.fault = Some(Fault {
                    delay: fault.delay.as_ref().and_then(|delay| match &delay.fault_delay_secifier {
                        Some(fault_delay::FaultDelaySecifier::FixedDelay(fixed)) => {
                            Some((duration(fixed), fraction(delay.percentage.as_ref())))
                        }
                        _ => None,
                    }),
                    abort: fault.abort.as_ref().and_then(|abort| match &abort.error_type {
                        Some(fault_abort::ErrorType::HttpStatus(status)) => {
                            u16::try_from(*status).ok().map(|status| (status, fraction(abort.percentage.as_ref())))
                        }
                        _ => None,
                    }),
                });
            }
            CORS_FILTER | "envoy.cors" => {
                let policy = EnvoyCors::decode(config.value.as_slice())
                    .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                filters.cors = Some(Cors {
                    allow_origins: policy
                        .allow_origin_string_match
                        .iter()
                        .map(|matcher| StringMatcher::compile(matcher, &field))
                        .collect::<Result<_, _>>()?,
                    allow_methods: policy.allow_methods.clone(),
                    allow_headers: policy.allow_headers.clone(),
                    expose_headers: policy.expose_headers.clone(),
                    max_age: policy.max_age.clone(),
                    allow_credentials: policy.allow_credentials.as_ref().is_some_and(|value| value.value),
                });
            }
            crate::dataplane::mixer::config::FILTER => {
                if config.type_url.rsplit('/').next() != Some(crate::dataplane::mixer::config::SERVICE_CONFIG_TYPE) {
                    return Err(ConfigError::new(&field, format!("must be a ServiceConfig, not {}", config.type_url)));
                }
                let service =
                    istio_api::pb::istio::mixer::v1::config::client::ServiceConfig::decode(config.value.as_slice())
                        .map_err(|error| ConfigError::new(&field, error.to_string()))?;
                filters.mixer =
                    Some(std::sync::Arc::new(crate::dataplane::mixer::config::ServiceSettings::from_proto(&service)));
            }
            // Per-route config for filters that do not run here (Lua, RBAC overrides, …) has
            // no effect on this data plane; Envoy ignores config for absent filters too.
            _ => {}
        }
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::{header_matcher::HeaderMatchSpecifier, route_match::PathSpecifier};
    use envoy_types::pb::envoy::config::route::v3::{
        weighted_cluster::ClusterWeight, HeaderMatcher, RouteMatch, WeightedCluster,
    };
    use envoy_types::pb::google::protobuf::UInt32Value;

    fn route_to(name: &str, matcher: RouteMatch, cluster: &str) -> envoy_route::Route {
        envoy_route::Route {
            name: name.into(),
            r#match: Some(matcher),
            action: Some(EnvoyAction::Route(envoy_route::RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn prefix(prefix: &str) -> RouteMatch {
        RouteMatch { path_specifier: Some(PathSpecifier::Prefix(prefix.into())), ..Default::default() }
    }

    fn table() -> RouteTable {
        let jason = RouteMatch {
            headers: vec![HeaderMatcher {
                name: "end-user".into(),
                #[allow(deprecated)]
                header_match_specifier: Some(HeaderMatchSpecifier::ExactMatch("jason".into())),
                ..Default::default()
            }],
            ..prefix("/")
        };
        RouteTable::compile(&envoy_route::RouteConfiguration {
            name: "9080".into(),
            virtual_hosts: vec![
                envoy_route::VirtualHost {
                    name: "reviews.default.svc.cluster.local:9080".into(),
                    domains: vec!["reviews.default.svc.cluster.local".into(), "reviews".into(), "reviews:9080".into()],
                    routes: vec![route_to("jason", jason, "v2"), route_to("default", prefix("/"), "v1")],
                    ..Default::default()
                },
                envoy_route::VirtualHost {
                    name: "wild".into(),
                    domains: vec!["*.example.com".into()],
                    routes: vec![route_to("w", prefix("/"), "wild")],
                    ..Default::default()
                },
                envoy_route::VirtualHost {
                    name: "any".into(),
                    domains: vec!["*".into()],
                    routes: vec![route_to("a", prefix("/"), "any")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .expect("compile")
    }

    fn cluster_for(table: &RouteTable, authority: &str, path: &str, headers: &[(&str, &str)]) -> Option<String> {
        let host = table.virtual_host(authority)?;
        let route = host.routes.iter().find(|route| {
            route.matcher.matches(path, |name| headers.iter().find(|(key, _)| *key == name).map(|(_, value)| *value))
        })?;
        match &route.action {
            Action::Forward(forward) => forward.pick_cluster(|_| None).map(str::to_string),
            _ => None,
        }
    }

    #[test]
    fn virtual_hosts_and_routes_follow_envoy_order() {
        let table = table();
        assert_eq!(cluster_for(&table, "reviews:9080", "/reviews/0", &[]), Some("v1".into()));
        assert_eq!(cluster_for(&table, "Reviews:9080", "/reviews/0", &[("end-user", "jason")]), Some("v2".into()));
        assert_eq!(cluster_for(&table, "api.example.com", "/", &[]), Some("wild".into()));
        assert_eq!(cluster_for(&table, "example.com", "/", &[]), Some("any".into()), "*.example.com needs a label");
        assert_eq!(cluster_for(&table, "other", "/", &[]), Some("any".into()));
    }

    #[test]
    fn weighted_clusters_split_by_weight() {
        let forward = Forward::compile(
            &envoy_route::RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: vec![
                        ClusterWeight {
                            name: "a".into(),
                            weight: Some(UInt32Value { value: 80 }),
                            ..Default::default()
                        },
                        ClusterWeight {
                            name: "b".into(),
                            weight: Some(UInt32Value { value: 20 }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                })),
                timeout: Some(envoy_types::pb::google::protobuf::Duration { seconds: 0, nanos: 0 }),
                ..Default::default()
            },
            "r",
        )
        .expect("compile");
        assert_eq!(forward.timeout, None, "0s turns the timeout off");
        let picks_b = (0..10_000).filter(|_| forward.pick_cluster(|_| None) == Some("b")).count();
        assert!((1_500..2_500).contains(&picks_b), "about 20% to b, got {picks_b}");
    }

    #[test]
    fn duplicate_domains_are_rejected_with_their_place() {
        let host = |name: &str| envoy_route::VirtualHost {
            name: name.into(),
            domains: vec!["a".into()],
            ..Default::default()
        };
        let error = RouteTable::compile(&envoy_route::RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vec![host("x"), host("y")],
            ..Default::default()
        })
        .expect_err("duplicate");
        assert!(error.to_string().contains("route 80: virtual_hosts[1]"), "{error}");
    }
}
