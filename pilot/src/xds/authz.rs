//! Authorization (`security.istio.io/v1beta1` AuthorizationPolicy) as Envoy RBAC, for a
//! sidecar's inbound ports, following Istio 1.4's builder with the pinned difference that only
//! standard Envoy filters are used (no `istio_authn` metadata):
//!
//! - the policies that apply are those of the mesh's root namespace and the workload's own whose
//!   selector's labels the workload has (no selector: every workload);
//! - each rule `i` of policy `NAME` in `NS` becomes the policy `ns[NS]-policy[NAME]-rule[i]` of
//!   an ALLOW engine; no rules (`spec: {}`) means no policy, so everything is denied;
//! - a rule's permissions are its `to` operations (hosts on `:authority`, methods, paths on
//!   `:path`, ports, each a list of alternatives; the `when` conditions on the destination
//!   added to each), its principals the `from` sources (principals and namespaces as the peer
//!   certificate's SPIFFE name, IP blocks as the source address; the `when` conditions on the
//!   source added to each); an empty side allows anything;
//! - `*` in a value is a wildcard at its start or end; `*` alone matches any non-empty value;
//! - HTTP ports get `envoy.filters.http.rbac`; TCP ports `envoy.filters.network.rbac`
//!   (`stat_prefix: tcp.`), where operations and sources that need HTTP (hosts, methods,
//!   paths, request headers, request principals) are dropped, and a rule left with no
//!   operation or no source is dropped with them, as 1.4 did;
//! - principals are expanded over the mesh's trust domain and its `trustDomainAliases`
//!   ([`super::trust_domain`]);
//! - request principals and `request.auth.*` conditions (end-user identity) match the payload
//!   origin authentication verified ([`super::authz_end_user`]).

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::config::route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::UInt32Value;
use istio_api::pb::istio::security::v1beta1 as security;

use super::any;
use crate::model::{Named, PushContext};
use crate::node::Proxy;

/// The HTTP and network RBAC filters' names.
pub(crate) const HTTP_RBAC: &str = "envoy.filters.http.rbac";
pub(crate) const NETWORK_RBAC: &str = "envoy.filters.network.rbac";

/// The AuthorizationPolicies that apply to `proxy`: the root namespace's and its own
/// namespace's whose selector it matches. None: authorization is off for it.
pub(crate) fn applicable<'a>(push: &'a PushContext, proxy: &Proxy) -> Vec<&'a Named<security::AuthorizationPolicy>> {
    let root = &push.mesh.root_namespace;
    push.authorization_policies
        .iter()
        .filter(|policy| policy.namespace == proxy.namespace || (!root.is_empty() && policy.namespace == *root))
        .filter(|policy| {
            policy.spec.selector.as_ref().is_none_or(|selector| {
                selector.match_labels.iter().all(|(key, value)| proxy.labels.get(key) == Some(value))
            })
        })
        .collect()
}

/// The RBAC filters for a proxy's ports: none when no policy applies.
#[derive(Debug, Default)]
pub(crate) struct RbacFilters {
    /// For HTTP connection managers.
    pub http: Option<HttpFilter>,
    /// For TCP proxies (`stat_prefix: tcp.`).
    pub network: Option<Filter>,
}

impl RbacFilters {
    /// The filters of the policies that apply to `proxy`, built once for all its ports.
    pub(crate) fn for_proxy(push: &PushContext, proxy: &Proxy) -> RbacFilters {
        let policies = applicable(push, proxy);
        if policies.is_empty() {
            return RbacFilters::default();
        }
        let identities = Identities::of(push, crate::scope::authn::binds_origin(push, proxy));
        let http = HttpRbac { rules: Some(rules(&policies, false, &identities)), ..Default::default() };
        let network = NetworkRbac {
            rules: Some(rules(&policies, true, &identities)),
            stat_prefix: "tcp.".to_string(),
            ..Default::default()
        };
        RbacFilters::new(http, network)
    }

    /// The two filters of these configs.
    pub(crate) fn new(http: HttpRbac, network: NetworkRbac) -> RbacFilters {
        RbacFilters {
            http: Some(HttpFilter {
                name: HTTP_RBAC.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(http))),
                ..Default::default()
            }),
            network: Some(Filter {
                name: NETWORK_RBAC.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(network))),
            }),
        }
    }

    /// Whether no policy applies (then v1alpha1 authorization may).
    pub(crate) fn is_empty(&self) -> bool {
        self.http.is_none() && self.network.is_none()
    }

    /// The HTTP filters a connection manager starts with.
    pub(crate) fn http_plugins(&self) -> Vec<HttpFilter> {
        self.http.iter().cloned().collect()
    }

    /// `tcp_proxy` with the network filter before it.
    pub(crate) fn before(&self, tcp_proxy: Filter) -> Vec<Filter> {
        self.network.iter().cloned().chain([tcp_proxy]).collect()
    }
}

/// Who principals can name: the mesh's trust domains (peers) and the issuers its
/// authentication policies accept (end users).
pub(crate) struct Identities {
    trust_domains: Vec<String>,
    issuers: Vec<String>,
    /// Whether the request principal is the token's (`principalBinding: USE_ORIGIN`) rather
    /// than the peer's (`USE_PEER`, 1.4's default).
    origin_bound: bool,
}

impl Identities {
    /// For a workload whose authentication policy binds the principal to the origin or not.
    pub(crate) fn of(push: &PushContext, origin_bound: bool) -> Identities {
        Identities { trust_domains: trust_domains(push), issuers: super::authz_end_user::issuers(push), origin_bound }
    }
}

/// The mesh's trust domain, then its aliases.
fn trust_domains(push: &PushContext) -> Vec<String> {
    std::iter::once(push.mesh.trust_domain.clone()).chain(push.mesh.trust_domain_aliases.iter().cloned()).collect()
}

/// The ALLOW engine of `policies`' rules.
fn rules(policies: &[&Named<security::AuthorizationPolicy>], tcp: bool, identities: &Identities) -> rbac::Rbac {
    let mut engine = rbac::Rbac { action: rbac::rbac::Action::Allow as i32, ..Default::default() };
    for policy in policies {
        for (index, rule) in policy.spec.rules.iter().enumerate() {
            let name = format!("ns[{}]-policy[{}]-rule[{index}]", policy.namespace, policy.name);
            match rule_policy(rule, tcp, identities) {
                Some(compiled) => {
                    engine.policies.insert(name, compiled);
                }
                None => tracing::debug!("{name}: skipped on a TCP port (it needs HTTP)"),
            }
        }
    }
    super::stable_map::stabilize(&mut engine.policies);
    engine
}

/// The conditions of a rule on the source (principals) and on the destination (permissions).
fn split_conditions(rule: &security::Rule) -> (Vec<&security::Condition>, Vec<&security::Condition>) {
    rule.when.iter().partition(|condition| {
        matches!(condition.key.as_str(), "source.ip" | "source.namespace" | "source.principal")
            || condition.key.starts_with("request.headers[")
            || condition.key.starts_with("request.auth.")
    })
}

fn rule_policy(rule: &security::Rule, tcp: bool, identities: &Identities) -> Option<rbac::Policy> {
    let (source_conditions, destination_conditions) = split_conditions(rule);
    let operations: Vec<Option<&security::Operation>> = if rule.to.is_empty() {
        vec![None]
    } else {
        rule.to.iter().filter_map(|to| to.operation.as_ref()).map(Some).collect()
    };
    let permissions: Vec<rbac::Permission> = operations
        .into_iter()
        .filter(|operation| !tcp || operation.is_none_or(|operation| !needs_http_operation(operation)))
        .map(|operation| permission(operation, &destination_conditions))
        .collect();
    let sources: Vec<Option<&security::Source>> = if rule.from.is_empty() {
        vec![None]
    } else {
        rule.from.iter().filter_map(|from| from.source.as_ref()).map(Some).collect()
    };
    let principals: Vec<rbac::Principal> = sources
        .into_iter()
        .filter(|source| {
            !tcp || source
                .is_none_or(|source| source.request_principals.is_empty() && source.not_request_principals.is_empty())
        })
        .filter(|_| !tcp || source_conditions.iter().all(|condition| !condition.key.starts_with("request.")))
        .map(|source| principal(source, &source_conditions, tcp, identities))
        .collect();
    (!permissions.is_empty() && !principals.is_empty()).then_some(rbac::Policy {
        permissions,
        principals,
        ..Default::default()
    })
}

fn needs_http_operation(operation: &security::Operation) -> bool {
    !(operation.hosts.is_empty()
        && operation.not_hosts.is_empty()
        && operation.methods.is_empty()
        && operation.not_methods.is_empty()
        && operation.paths.is_empty()
        && operation.not_paths.is_empty())
}

/// An Istio value with `*` wildcards as a string matcher: `*` alone is any non-empty value.
/// `prefix` (`spiffe://` for principals) goes before the value, except for a suffix match:
/// `*/ns/foo/sa/bar` matches the end of the name, as 1.4's HTTP filter matched it (its TCP
/// filter wrote `spiffe:///ns/foo/sa/bar`, which matched nothing).
fn string_matcher(value: &str, prefix: &str) -> StringMatcher {
    let pattern = if value == "*" {
        MatchPattern::SafeRegex(RegexMatcher { regex: ".+".to_string(), ..Default::default() })
    } else if let Some(rest) = value.strip_prefix('*') {
        MatchPattern::Suffix(rest.to_string())
    } else if let Some(rest) = value.strip_suffix('*') {
        MatchPattern::Prefix(format!("{prefix}{rest}"))
    } else {
        MatchPattern::Exact(format!("{prefix}{value}"))
    };
    StringMatcher { match_pattern: Some(pattern), ..Default::default() }
}

/// A header matcher: `*` is presence, else a wildcard string match.
fn header(name: &str, value: &str) -> HeaderMatcher {
    let specifier = if value == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else {
        HeaderMatchSpecifier::StringMatch(string_matcher(value, ""))
    };
    HeaderMatcher { name: name.to_string(), header_match_specifier: Some(specifier), ..Default::default() }
}

fn cidr(value: &str) -> Option<CidrRange> {
    let (address, length) = match value.split_once('/') {
        Some((address, length)) => (address, length.parse::<u32>().ok()?),
        None => (value, if value.contains(':') { 128 } else { 32 }),
    };
    address.parse::<std::net::IpAddr>().ok()?;
    Some(CidrRange { address_prefix: address.to_string(), prefix_len: Some(UInt32Value { value: length }) })
}

fn any_permission() -> rbac::Permission {
    rbac::Permission { rule: Some(rbac::permission::Rule::Any(true)) }
}

fn permission_or(rules: Vec<rbac::Permission>) -> rbac::Permission {
    rbac::Permission { rule: Some(rbac::permission::Rule::OrRules(rbac::permission::Set { rules })) }
}

fn header_permission(name: &str, value: &str) -> rbac::Permission {
    rbac::Permission { rule: Some(rbac::permission::Rule::Header(header(name, value))) }
}

fn port_permission(value: &str) -> Option<rbac::Permission> {
    let port = value.parse::<u16>().ok()?;
    Some(rbac::Permission { rule: Some(rbac::permission::Rule::DestinationPort(u32::from(port))) })
}

fn not_permission(rule: rbac::Permission) -> rbac::Permission {
    rbac::Permission { rule: Some(rbac::permission::Rule::NotRule(Box::new(rule))) }
}

/// One operation (or none: anything) with the destination conditions, all of which must hold.
pub(crate) fn permission(
    operation: Option<&security::Operation>,
    conditions: &[&security::Condition],
) -> rbac::Permission {
    let mut parts = Vec::new();
    let mut list = |values: &[String], negate: bool, make: &dyn Fn(&str) -> Option<rbac::Permission>| {
        let alternatives: Vec<rbac::Permission> = values.iter().filter_map(|value| make(value)).collect();
        if !alternatives.is_empty() {
            let either = permission_or(alternatives);
            parts.push(if negate { not_permission(either) } else { either });
        }
    };
    if let Some(operation) = operation {
        list(&operation.hosts, false, &|value| Some(header_permission(":authority", value)));
        list(&operation.not_hosts, true, &|value| Some(header_permission(":authority", value)));
        list(&operation.methods, false, &|value| Some(header_permission(":method", value)));
        list(&operation.not_methods, true, &|value| Some(header_permission(":method", value)));
        list(&operation.paths, false, &|value| Some(header_permission(":path", value)));
        list(&operation.not_paths, true, &|value| Some(header_permission(":path", value)));
        list(&operation.ports, false, &port_permission);
        list(&operation.not_ports, true, &port_permission);
    }
    for condition in conditions {
        let make: &dyn Fn(&str) -> Option<rbac::Permission> = match condition.key.as_str() {
            "destination.ip" => &|value| {
                cidr(value).map(|range| rbac::Permission { rule: Some(rbac::permission::Rule::DestinationIp(range)) })
            },
            "destination.port" => &port_permission,
            "connection.sni" => &|value| {
                Some(rbac::Permission {
                    rule: Some(rbac::permission::Rule::RequestedServerName(string_matcher(value, ""))),
                })
            },
            other => {
                tracing::warn!("AuthorizationPolicy condition {other} is not supported; it matches nothing");
                &|_| Some(not_permission(any_permission()))
            }
        };
        list(&condition.values, false, make);
        list(&condition.not_values, true, make);
    }
    match parts.len() {
        0 => any_permission(),
        _ => rbac::Permission { rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set { rules: parts })) },
    }
}

pub(crate) fn any_principal() -> rbac::Principal {
    rbac::Principal { identifier: Some(rbac::principal::Identifier::Any(true)) }
}

fn nobody() -> rbac::Principal {
    rbac::Principal { identifier: Some(rbac::principal::Identifier::NotId(Box::new(any_principal()))) }
}

fn principal_or(ids: Vec<rbac::Principal>) -> rbac::Principal {
    rbac::Principal { identifier: Some(rbac::principal::Identifier::OrIds(rbac::principal::Set { ids })) }
}

fn not_principal(id: rbac::Principal) -> rbac::Principal {
    rbac::Principal { identifier: Some(rbac::principal::Identifier::NotId(Box::new(id))) }
}

/// The peer certificate's SPIFFE name matched as Istio writes principals (`td/ns/N/sa/S`).
fn spiffe_principal(value: &str) -> Option<rbac::Principal> {
    Some(authenticated(string_matcher(value, "spiffe://")))
}

fn authenticated(matcher: StringMatcher) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Authenticated(rbac::principal::Authenticated {
            principal_name: Some(matcher),
        })),
    }
}

/// A namespace as the peer's SPIFFE name (`…/ns/NS/…`).
fn namespace_principal(value: &str) -> Option<rbac::Principal> {
    let pattern = format!(".*/ns/{}/.*", regex_syntax_escape(value).replace("\\*", ".*"));
    Some(authenticated(StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher { regex: pattern, ..Default::default() })),
        ..Default::default()
    }))
}

/// `value` with regex metacharacters escaped (namespaces are DNS labels, so only `*` and `.`
/// can appear in practice).
pub(crate) fn regex_syntax_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if "\\.+*?()|[]{}^$".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn ip_principal(value: &str) -> Option<rbac::Principal> {
    cidr(value).map(|range| rbac::Principal { identifier: Some(rbac::principal::Identifier::DirectRemoteIp(range)) })
}

/// One source (or none: anyone) with the source conditions, all of which must hold.
pub(crate) fn principal(
    source: Option<&security::Source>,
    conditions: &[&security::Condition],
    tcp: bool,
    identities: &Identities,
) -> rbac::Principal {
    let expand = |principals: &[String]| super::trust_domain::expand(principals, &identities.trust_domains);
    let issuers = &identities.issuers;
    let mut parts = Vec::new();
    let mut list = |values: &[String], negate: bool, make: &dyn Fn(&str) -> Option<rbac::Principal>| {
        let alternatives: Vec<rbac::Principal> = values.iter().filter_map(|value| make(value)).collect();
        if !alternatives.is_empty() {
            let either = principal_or(alternatives);
            parts.push(if negate { not_principal(either) } else { either });
        }
    };
    // The request principal, as 1.4 bound it: the token's `iss/sub` under USE_ORIGIN (what
    // origin authentication verified, [`super::authz_end_user`]), else the peer's identity.
    let end_user: &dyn Fn(&str) -> Option<rbac::Principal> = &|value| {
        if identities.origin_bound {
            Some(super::authz_end_user::request_principal(value, issuers))
        } else {
            spiffe_principal(value)
        }
    };
    if let Some(source) = source {
        list(&expand(&source.principals), false, &spiffe_principal);
        list(&expand(&source.not_principals), true, &spiffe_principal);
        list(&source.request_principals, false, end_user);
        list(&source.not_request_principals, true, end_user);
        list(&source.namespaces, false, &namespace_principal);
        list(&source.not_namespaces, true, &namespace_principal);
        list(&source.ip_blocks, false, &ip_principal);
        list(&source.not_ip_blocks, true, &ip_principal);
    }
    for condition in conditions {
        let key = condition.key.as_str();
        let header_name = key.strip_prefix("request.headers[").and_then(|rest| rest.strip_suffix(']'));
        let header_make = |value: &str| {
            header_name.map(|name| rbac::Principal {
                identifier: Some(rbac::principal::Identifier::Header(header(name, value))),
            })
        };
        let end_user_condition = |value: &str| {
            if key == "request.auth.principal" {
                end_user(value)
            } else {
                super::authz_end_user::condition(key, value, issuers)
            }
        };
        let make: &dyn Fn(&str) -> Option<rbac::Principal> = match key {
            "source.ip" => &ip_principal,
            "source.namespace" => &namespace_principal,
            "source.principal" => &spiffe_principal,
            _ if header_name.is_some() && !tcp => &header_make,
            _ if key.starts_with("request.auth.") && !tcp => &end_user_condition,
            other => {
                tracing::warn!("AuthorizationPolicy condition {other} is not supported; it matches nobody");
                &|_| Some(nobody())
            }
        };
        let (values, not_values) = if key == "source.principal" {
            (expand(&condition.values), expand(&condition.not_values))
        } else {
            (condition.values.clone(), condition.not_values.clone())
        };
        list(&values, false, make);
        list(&not_values, true, make);
    }
    match parts.len() {
        0 => any_principal(),
        _ => rbac::Principal {
            identifier: Some(rbac::principal::Identifier::AndIds(rbac::principal::Set { ids: parts })),
        },
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serde_json::json;

    use super::*;

    fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> Named<security::AuthorizationPolicy> {
        Named {
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec: istio_api::json::decode("istio.security.v1beta1.AuthorizationPolicy", &spec).expect("policy"),
        }
    }

    fn context(policies: Vec<Named<security::AuthorizationPolicy>>) -> PushContext {
        let mut push = crate::testing::push(Vec::new(), Vec::new());
        push.mesh.root_namespace = "istio-system".into();
        push.authorization_policies = policies;
        push
    }

    fn productpage() -> Proxy {
        crate::testing::sidecar("default", "10.1.0.31", &[("app", "productpage"), ("version", "v1")])
    }

    fn http_rules(push: &PushContext, proxy: &Proxy) -> Option<rbac::Rbac> {
        let filter = RbacFilters::for_proxy(push, proxy).http?;
        let Some(http_filter::ConfigType::TypedConfig(any)) = filter.config_type else { panic!("typed") };
        HttpRbac::decode(any.value.as_slice()).expect("RBAC").rules
    }

    fn tcp_rules(push: &PushContext, proxy: &Proxy) -> Option<rbac::Rbac> {
        let filter = RbacFilters::for_proxy(push, proxy).network?;
        let Some(filter::ConfigType::TypedConfig(any)) = filter.config_type else { panic!("typed") };
        let config = NetworkRbac::decode(any.value.as_slice()).expect("RBAC");
        assert_eq!(config.stat_prefix, "tcp.");
        config.rules
    }

    fn json_of<M: prost::Name + Default + Message>(message: &M) -> serde_json::Value {
        istio_xds::json::message_to_json(message).expect("JSON")
    }

    #[test]
    fn no_policy_no_filter_and_an_empty_policy_denies_all() {
        assert!(http_rules(&context(Vec::new()), &productpage()).is_none());
        let deny_all = context(vec![policy("default", "deny-all", json!({}))]);
        let rules = http_rules(&deny_all, &productpage()).expect("a filter");
        assert_eq!(rules.action, rbac::rbac::Action::Allow as i32);
        assert!(rules.policies.is_empty(), "no rule allows anything");
        // The root namespace's policies apply everywhere; other namespaces' do not.
        assert!(http_rules(&context(vec![policy("istio-system", "root", json!({}))]), &productpage()).is_some());
        assert!(http_rules(&context(vec![policy("foo", "elsewhere", json!({}))]), &productpage()).is_none());
        // A selector the workload's labels do not satisfy leaves it alone.
        let other = context(vec![policy("default", "d", json!({"selector": {"matchLabels": {"app": "details"}}}))]);
        assert!(http_rules(&other, &productpage()).is_none());
    }

    #[test]
    fn operations_and_sources_become_permissions_and_principals() {
        let push = context(vec![policy(
            "default",
            "reviews-viewer",
            json!({
                "selector": {"matchLabels": {"app": "productpage"}},
                "rules": [{
                    "from": [{"source": {"principals": ["cluster.local/ns/default/sa/bookinfo-productpage"]}},
                             {"source": {"namespaces": ["foo"], "ipBlocks": ["10.0.0.0/8"]}}],
                    "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"], "hosts": ["*.example.com"]}}],
                    "when": [{"key": "destination.port", "values": ["9080"]},
                             {"key": "request.headers[version]", "values": ["v1", "v2"]}]
                }, {}]
            }),
        )]);
        let rules = http_rules(&push, &productpage()).expect("a filter");
        let first = json_of(&rules.policies["ns[default]-policy[reviews-viewer]-rule[0]"]);
        assert_eq!(
            first["permissions"][0]["and_rules"]["rules"],
            json!([
                {"or_rules": {"rules": [{"header": {"name": ":authority", "string_match": {"suffix": ".example.com"}}}]}},
                {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}},
                {"or_rules": {"rules": [{"header": {"name": ":path", "string_match": {"prefix": "/api/"}}}]}},
                {"or_rules": {"rules": [{"destination_port": 9080}]}}
            ])
        );
        let headers = json!({"or_ids": {"ids": [
            {"header": {"name": "version", "string_match": {"exact": "v1"}}},
            {"header": {"name": "version", "string_match": {"exact": "v2"}}}]}});
        assert_eq!(
            first["principals"],
            json!([
                {"and_ids": {"ids": [
                    {"or_ids": {"ids": [{"authenticated": {"principal_name":
                        {"exact": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}}}]}},
                    headers]}},
                {"and_ids": {"ids": [
                    {"or_ids": {"ids": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/foo/.*"}}}}]}},
                    {"or_ids": {"ids": [{"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}]}},
                    headers]}}
            ])
        );
        let allow_all = json_of(&rules.policies["ns[default]-policy[reviews-viewer]-rule[1]"]);
        assert_eq!(allow_all, json!({"permissions": [{"any": true}], "principals": [{"any": true}]}));
    }

    #[test]
    fn on_tcp_ports_rules_that_need_http_are_dropped() {
        let push = context(vec![policy(
            "default",
            "tcp",
            json!({"rules": [
                {"to": [{"operation": {"methods": ["GET"]}}]},
                {"to": [{"operation": {"ports": ["9000"]}}],
                 "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep", "*", "*/ns/foo/sa/bar"]}}]},
                {"from": [{"source": {"requestPrincipals": ["*"]}}]},
                {"when": [{"key": "request.auth.claims[groups]", "values": ["group1"]}]}
            ]}),
        )]);
        let rules = tcp_rules(&push, &productpage()).expect("a filter");
        let names: Vec<&String> = rules.policies.keys().collect();
        assert_eq!(names, ["ns[default]-policy[tcp]-rule[1]"], "only the rule TCP can evaluate");
        let kept = json_of(&rules.policies["ns[default]-policy[tcp]-rule[1]"]);
        assert_eq!(
            kept["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"],
            json!([
                {"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/default/sa/sleep"}}},
                {"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}},
                {"authenticated": {"principal_name": {"suffix": "/ns/foo/sa/bar"}}}
            ])
        );
        // On HTTP ports the same policy keeps every rule. Without USE_ORIGIN the request
        // principal is the peer's, as in 1.4.
        let http = http_rules(&push, &productpage()).expect("a filter");
        assert_eq!(http.policies.len(), 4);
        let end_user = json_of(&http.policies["ns[default]-policy[tcp]-rule[2]"]);
        assert_eq!(
            end_user["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"][0],
            json!({"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}})
        );
    }

    #[test]
    fn principals_cover_the_trust_domain_aliases() {
        let mut push = context(vec![policy(
            "default",
            "migrated",
            json!({"rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}],
                "when": [{"key": "source.principal", "values": ["old-td/ns/foo/sa/sleep"]}]
            }]}),
        )]);
        push.mesh.trust_domain = "new-td".into();
        push.mesh.trust_domain_aliases = vec!["old-td".into()];
        let rules = http_rules(&push, &productpage()).expect("a filter");
        let ids =
            json_of(&rules.policies["ns[default]-policy[migrated]-rule[0]"])["principals"][0]["and_ids"]["ids"].clone();
        let names = |part: &serde_json::Value| -> Vec<String> {
            part["or_ids"]["ids"]
                .as_array()
                .expect("alternatives")
                .iter()
                .map(|id| id["authenticated"]["principal_name"]["exact"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let both = ["spiffe://new-td/ns/foo/sa/sleep", "spiffe://old-td/ns/foo/sa/sleep"];
        assert_eq!(names(&ids[0]), both, "cluster.local stands for every trust domain of the mesh");
        assert_eq!(names(&ids[1]), both, "so does an alias, in a condition too");
    }
}
