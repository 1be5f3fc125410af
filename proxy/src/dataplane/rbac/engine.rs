//! Envoy's RBAC engine (`envoy.config.rbac.v3.RBAC`), compiled once and evaluated per request
//! or connection: a policy matches when any of its permissions and any of its principals
//! match; an ALLOW engine allows what some policy matches, a DENY engine denies it.
//!
//! Permissions look at what is asked for (headers, path, destination address and port, SNI,
//! dynamic metadata); principals at who asks (the peer certificate's names, the source address,
//! headers, metadata). Both nest with and/or/not. What only a request has (headers, paths)
//! never matches on a connection, as in Envoy's network filter. Rules this data plane cannot
//! evaluate (CEL conditions, extension matchers, filter state) are refused when compiled, so a
//! policy is never silently weaker than configured.

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    double_matcher, list_matcher, metadata_matcher::path_segment::Segment, path_matcher, value_matcher,
    MetadataMatcher, PathMatcher, ValueMatcher,
};
use ipnet::IpNet;

use crate::dataplane::config::matcher::StringMatcher;
use crate::dataplane::config::route_match::HeaderMatch;
use crate::dataplane::config::ConfigError;
use crate::dataplane::http::downstream::PeerIdentity;

/// What an engine does with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
    /// Matches are logged (dynamic metadata in Envoy); everything is let through.
    Log,
}

/// A compiled RBAC engine: its action and its policies, in name order.
#[derive(Debug)]
pub(crate) struct Engine {
    pub action: Action,
    pub policies: Vec<(String, Policy)>,
}

#[derive(Debug)]
pub(crate) struct Policy {
    permissions: Vec<Permission>,
    principals: Vec<Principal>,
}

#[derive(Debug)]
enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatch),
    UrlPath(StringMatcher),
    DestinationIp(IpNet),
    DestinationPort(u32),
    DestinationPortRange(i32, i32),
    Metadata(Metadata),
    RequestedServerName(StringMatcher),
}

#[derive(Debug)]
enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A TLS peer with a certificate; with a matcher, one of its names must match.
    Authenticated(Option<StringMatcher>),
    /// The connection's source address (`source_ip`, `direct_remote_ip`, `remote_ip`: this
    /// data plane does not take the client address from forwarded headers).
    SourceIp(IpNet),
    Header(HeaderMatch),
    UrlPath(StringMatcher),
    Metadata(Metadata),
}

/// A compiled `MetadataMatcher`: a value under a filter's dynamic metadata.
#[derive(Debug)]
struct Metadata {
    filter: String,
    path: Vec<String>,
    value: Value,
    invert: bool,
}

#[derive(Debug)]
enum Value {
    Null,
    Double(DoubleMatch),
    String(StringMatcher),
    Bool(bool),
    Present(bool),
    /// The value is a list and one of its elements matches.
    ListOneOf(Box<Value>),
    Or(Vec<Value>),
}

#[derive(Debug)]
enum DoubleMatch {
    Exact(f64),
    /// `[start, end)`.
    Range(f64, f64),
}

/// Looks up a request header by its lower-case name.
pub(crate) type HeaderLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a request or connection shows the engine.
pub(crate) struct Subject<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub peer: Option<&'a PeerIdentity>,
    pub server_name: Option<&'a str>,
    /// A request's headers (pseudo-headers `:path`, `:method`, `:authority` included), values
    /// of a repeated header joined by `,`; `None` on a connection.
    pub header: Option<HeaderLookup<'a>>,
    /// A request's path without its query; `None` on a connection.
    pub path: Option<&'a str>,
    /// Dynamic metadata by filter name.
    pub metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The outcome of evaluating an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    /// The first policy (by name) that matched, if any.
    pub policy: Option<String>,
}

impl Engine {
    pub(crate) fn compile(config: &rbac::Rbac, at: &str) -> Result<Engine, ConfigError> {
        let action = match rbac::rbac::Action::try_from(config.action) {
            Ok(rbac::rbac::Action::Allow) => Action::Allow,
            Ok(rbac::rbac::Action::Deny) => Action::Deny,
            Ok(rbac::rbac::Action::Log) => Action::Log,
            Err(_) => return Err(ConfigError::new(at, format!("unknown RBAC action {}", config.action))),
        };
        if config.audit_logging_options.is_some() {
            return Err(ConfigError::new(at, "RBAC audit logging is not supported"));
        }
        let mut names: Vec<&String> = config.policies.keys().collect();
        names.sort();
        let policies = names
            .into_iter()
            .map(|name| {
                let policy = &config.policies[name];
                let field = format!("{at}.policies[{name}]");
                if policy.condition.is_some() || policy.checked_condition.is_some() {
                    return Err(ConfigError::new(&field, "CEL conditions are not supported"));
                }
                let permissions = policy
                    .permissions
                    .iter()
                    .enumerate()
                    .map(|(index, permission)| compile_permission(permission, &format!("{field}.permissions[{index}]")))
                    .collect::<Result<_, _>>()?;
                let principals = policy
                    .principals
                    .iter()
                    .enumerate()
                    .map(|(index, principal)| compile_principal(principal, &format!("{field}.principals[{index}]")))
                    .collect::<Result<_, _>>()?;
                Ok((name.clone(), Policy { permissions, principals }))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Engine { action, policies })
    }

    /// Evaluates the engine for `subject`.
    pub(crate) fn decide(&self, subject: &Subject<'_>) -> Decision {
        let matched = self
            .policies
            .iter()
            .find(|(_, policy)| {
                policy.permissions.iter().any(|permission| permission.matches(subject))
                    && policy.principals.iter().any(|principal| principal.matches(subject))
            })
            .map(|(name, _)| name.clone());
        let allowed = match self.action {
            Action::Allow => matched.is_some(),
            Action::Deny => matched.is_none(),
            Action::Log => true,
        };
        Decision { allowed, policy: matched }
    }
}

fn cidr(range: &CidrRange, field: &str) -> Result<IpNet, ConfigError> {
    let address: IpAddr = range
        .address_prefix
        .parse()
        .map_err(|_| ConfigError::new(field, format!("{:?} is not an IP address", range.address_prefix)))?;
    // As in Envoy, an unset prefix length is 0: the range is every address.
    let length = range.prefix_len.as_ref().map_or(0, |len| len.value);
    let length = u8::try_from(length).map_err(|_| ConfigError::new(field, format!("prefix length {length}")))?;
    IpNet::new(address, length)
        .map(|net| net.trunc())
        .map_err(|_| ConfigError::new(field, format!("prefix length {length} for {address}")))
}

fn path_matcher(matcher: &PathMatcher, field: &str) -> Result<StringMatcher, ConfigError> {
    match &matcher.rule {
        Some(path_matcher::Rule::Path(path)) => StringMatcher::compile(path, field),
        None => Err(ConfigError::new(field, "a path matcher needs a rule")),
    }
}

fn compile_permission(permission: &rbac::Permission, at: &str) -> Result<Permission, ConfigError> {
    use rbac::permission::Rule;
    let set = |rules: &[rbac::Permission], kind: &str| {
        rules
            .iter()
            .enumerate()
            .map(|(index, rule)| compile_permission(rule, &format!("{at}.{kind}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &permission.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::Any(false)) => Permission::Or(Vec::new()),
        Some(Rule::AndRules(rules)) => Permission::And(set(&rules.rules, "and_rules.rules")?),
        Some(Rule::OrRules(rules)) => Permission::Or(set(&rules.rules, "or_rules.rules")?),
        Some(Rule::NotRule(rule)) => Permission::Not(Box::new(compile_permission(rule, &format!("{at}.not_rule"))?)),
        Some(Rule::Header(header)) => Permission::Header(HeaderMatch::compile(header, &format!("{at}.header"))?),
        Some(Rule::UrlPath(path)) => Permission::UrlPath(path_matcher(path, &format!("{at}.url_path"))?),
        Some(Rule::DestinationIp(range)) => Permission::DestinationIp(cidr(range, &format!("{at}.destination_ip"))?),
        Some(Rule::DestinationPort(port)) => Permission::DestinationPort(*port),
        Some(Rule::DestinationPortRange(range)) => Permission::DestinationPortRange(range.start, range.end),
        // Deprecated in favour of `sourced_metadata`, and still what control planes send.
        #[allow(deprecated)]
        Some(Rule::Metadata(matcher)) => Permission::Metadata(metadata(matcher, &format!("{at}.metadata"))?),
        Some(Rule::RequestedServerName(name)) => {
            Permission::RequestedServerName(StringMatcher::compile(name, &format!("{at}.requested_server_name"))?)
        }
        Some(_) => return Err(ConfigError::new(at, "this permission rule is not supported")),
        None => return Err(ConfigError::new(at, "a permission needs a rule")),
    })
}

fn compile_principal(principal: &rbac::Principal, at: &str) -> Result<Principal, ConfigError> {
    use rbac::principal::Identifier;
    let set = |ids: &[rbac::Principal], kind: &str| {
        ids.iter()
            .enumerate()
            .map(|(index, id)| compile_principal(id, &format!("{at}.{kind}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    #[allow(deprecated)]
    Ok(match &principal.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::Any(false)) => Principal::Or(Vec::new()),
        Some(Identifier::AndIds(ids)) => Principal::And(set(&ids.ids, "and_ids.ids")?),
        Some(Identifier::OrIds(ids)) => Principal::Or(set(&ids.ids, "or_ids.ids")?),
        Some(Identifier::NotId(id)) => Principal::Not(Box::new(compile_principal(id, &format!("{at}.not_id"))?)),
        Some(Identifier::Authenticated(authenticated)) => Principal::Authenticated(
            authenticated
                .principal_name
                .as_ref()
                .map(|name| StringMatcher::compile(name, &format!("{at}.authenticated.principal_name")))
                .transpose()?,
        ),
        Some(Identifier::SourceIp(range)) => Principal::SourceIp(cidr(range, &format!("{at}.source_ip"))?),
        Some(Identifier::DirectRemoteIp(range)) => Principal::SourceIp(cidr(range, &format!("{at}.direct_remote_ip"))?),
        Some(Identifier::RemoteIp(range)) => Principal::SourceIp(cidr(range, &format!("{at}.remote_ip"))?),
        Some(Identifier::Header(header)) => Principal::Header(HeaderMatch::compile(header, &format!("{at}.header"))?),
        Some(Identifier::UrlPath(path)) => Principal::UrlPath(path_matcher(path, &format!("{at}.url_path"))?),
        Some(Identifier::Metadata(matcher)) => Principal::Metadata(metadata(matcher, &format!("{at}.metadata"))?),
        Some(_) => return Err(ConfigError::new(at, "this principal identifier is not supported")),
        None => return Err(ConfigError::new(at, "a principal needs an identifier")),
    })
}

fn metadata(matcher: &MetadataMatcher, at: &str) -> Result<Metadata, ConfigError> {
    let path = matcher
        .path
        .iter()
        .map(|segment| match &segment.segment {
            Some(Segment::Key(key)) => Ok(key.clone()),
            None => Err(ConfigError::new(at, "a metadata path segment needs a key")),
        })
        .collect::<Result<_, _>>()?;
    let value =
        value_matcher(matcher.value.as_ref().ok_or_else(|| ConfigError::new(at, "needs a value matcher"))?, at)?;
    Ok(Metadata { filter: matcher.filter.clone(), path, value, invert: matcher.invert })
}

fn value_matcher(matcher: &ValueMatcher, at: &str) -> Result<Value, ConfigError> {
    use value_matcher::MatchPattern;
    Ok(match &matcher.match_pattern {
        Some(MatchPattern::NullMatch(_)) => Value::Null,
        Some(MatchPattern::DoubleMatch(double)) => Value::Double(match &double.match_pattern {
            Some(double_matcher::MatchPattern::Exact(exact)) => DoubleMatch::Exact(*exact),
            Some(double_matcher::MatchPattern::Range(range)) => DoubleMatch::Range(range.start, range.end),
            None => return Err(ConfigError::new(at, "a double matcher needs a pattern")),
        }),
        Some(MatchPattern::StringMatch(string)) => Value::String(StringMatcher::compile(string, at)?),
        Some(MatchPattern::BoolMatch(value)) => Value::Bool(*value),
        Some(MatchPattern::PresentMatch(present)) => Value::Present(*present),
        Some(MatchPattern::ListMatch(list)) => match &list.match_pattern {
            Some(list_matcher::MatchPattern::OneOf(inner)) => Value::ListOneOf(Box::new(value_matcher(inner, at)?)),
            None => return Err(ConfigError::new(at, "a list matcher needs one_of")),
        },
        Some(MatchPattern::OrMatch(or)) => {
            Value::Or(or.value_matchers.iter().map(|inner| value_matcher(inner, at)).collect::<Result<_, _>>()?)
        }
        None => return Err(ConfigError::new(at, "a value matcher needs a pattern")),
    })
}

impl Value {
    fn matches(&self, value: Option<&serde_json::Value>) -> bool {
        use serde_json::Value as Json;
        match (self, value) {
            (Value::Present(present), found) => found.is_some() == *present,
            (Value::Null, Some(Json::Null)) => true,
            (Value::Double(DoubleMatch::Exact(exact)), Some(Json::Number(number))) => number.as_f64() == Some(*exact),
            (Value::Double(DoubleMatch::Range(start, end)), Some(Json::Number(number))) => {
                number.as_f64().is_some_and(|number| number >= *start && number < *end)
            }
            (Value::String(matcher), Some(Json::String(text))) => matcher.matches(text),
            (Value::Bool(expected), Some(Json::Bool(actual))) => expected == actual,
            (Value::ListOneOf(inner), Some(Json::Array(items))) => items.iter().any(|item| inner.matches(Some(item))),
            (Value::Or(matchers), found) => matchers.iter().any(|matcher| matcher.matches(found)),
            _ => false,
        }
    }
}

impl Metadata {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        let mut found = subject.metadata.and_then(|metadata| metadata.get(&self.filter));
        for key in &self.path {
            found = found.and_then(|value| value.get(key));
        }
        self.value.matches(found) != self.invert
    }
}

fn header_matches(header: &HeaderMatch, subject: &Subject<'_>) -> bool {
    subject.header.is_some_and(|lookup| header.matches(lookup(&header.name).as_deref()))
}

impl Permission {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(rules) => rules.iter().all(|rule| rule.matches(subject)),
            Permission::Or(rules) => rules.iter().any(|rule| rule.matches(subject)),
            Permission::Not(rule) => !rule.matches(subject),
            Permission::Header(header) => header_matches(header, subject),
            Permission::UrlPath(matcher) => subject.path.is_some_and(|path| matcher.matches(path)),
            Permission::DestinationIp(net) => net.contains(&subject.destination.ip()),
            Permission::DestinationPort(port) => u32::from(subject.destination.port()) == *port,
            Permission::DestinationPortRange(start, end) => {
                let port = i32::from(subject.destination.port());
                port >= *start && port < *end
            }
            Permission::Metadata(metadata) => metadata.matches(subject),
            Permission::RequestedServerName(matcher) => matcher.matches(subject.server_name.unwrap_or_default()),
        }
    }
}

impl Principal {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(ids) => ids.iter().all(|id| id.matches(subject)),
            Principal::Or(ids) => ids.iter().any(|id| id.matches(subject)),
            Principal::Not(id) => !id.matches(subject),
            Principal::Authenticated(name) => match (subject.peer, name) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(peer), Some(matcher)) => peer.principal_names().any(|candidate| matcher.matches(candidate)),
            },
            Principal::SourceIp(net) => net.contains(&subject.source.ip()),
            Principal::Header(header) => header_matches(header, subject),
            Principal::UrlPath(matcher) => subject.path.is_some_and(|path| matcher.matches(path)),
            Principal::Metadata(metadata) => metadata.matches(subject),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn engine(config: serde_json::Value) -> Engine {
        let config: rbac::Rbac = istio_xds::json::message_from_json(&config).expect("an RBAC config");
        Engine::compile(&config, "test").expect("compiles")
    }

    fn peer(uri: &str) -> PeerIdentity {
        PeerIdentity(istio_pki::certificate::PeerNames {
            uris: vec![uri.to_string()],
            dns: Vec::new(),
            subject: String::new(),
        })
    }

    /// A request from 10.0.0.1 to 10.0.0.2:9080 with these headers, path and metadata.
    fn decide(
        engine: &Engine,
        peer: Option<&PeerIdentity>,
        headers: &[(&str, &str)],
        metadata: Option<serde_json::Value>,
    ) -> bool {
        let lookup = |name: &str| headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
        let path =
            headers.iter().find(|(key, _)| *key == ":path").map(|(_, value)| value.split('?').next().unwrap_or(""));
        let metadata = metadata.and_then(|value| value.as_object().cloned());
        engine
            .decide(&Subject {
                source: "10.0.0.1:40000".parse().expect("address"),
                destination: "10.0.0.2:9080".parse().expect("address"),
                peer,
                server_name: Some("outbound_.9080_._.reviews.default.svc.cluster.local"),
                header: Some(&lookup),
                path,
                metadata: metadata.as_ref(),
            })
            .allowed
    }

    #[test]
    fn allow_needs_a_matching_permission_and_principal() {
        let allow = engine(json!({"action": "ALLOW", "policies": {
            "ns[default]-policy[reviews-viewer]-rule[0]": {
                "permissions": [{"and_rules": {"rules": [
                    {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}},
                    {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/reviews"}}}]}}
                ]}}],
                "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": [{"authenticated": {"principal_name":
                    {"exact": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}}}]}}]}}]
            }
        }}));
        let productpage = peer("spiffe://cluster.local/ns/default/sa/bookinfo-productpage");
        let other = peer("spiffe://cluster.local/ns/default/sa/sleep");
        let get = [(":method", "GET"), (":path", "/reviews/0?x=1")];
        assert!(decide(&allow, Some(&productpage), &get, None));
        assert!(!decide(&allow, Some(&other), &get, None), "another principal");
        assert!(!decide(&allow, None, &get, None), "plaintext has no principal");
        assert!(!decide(&allow, Some(&productpage), &[(":method", "POST"), (":path", "/reviews/0")], None));
        assert!(!decide(&allow, Some(&productpage), &[(":method", "GET"), (":path", "/ratings/0")], None));

        // No policies: ALLOW denies everything (Istio's deny-all), DENY allows everything.
        let none = engine(json!({"action": "ALLOW"}));
        assert!(!decide(&none, Some(&productpage), &get, None));
        let deny_none = engine(json!({"action": "DENY"}));
        assert!(decide(&deny_none, Some(&productpage), &get, None));
    }

    #[test]
    fn deny_denies_what_matches_and_reports_the_policy() {
        let deny = engine(json!({"action": "DENY", "policies": {
            "b-deny-post": {"permissions": [{"header": {"name": ":method", "exact_match": "POST"}}],
                            "principals": [{"any": true}]},
            "a-deny-admin": {"permissions": [{"url_path": {"path": {"exact": "/admin"}}}],
                             "principals": [{"not_id": {"source_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}}]}
        }}));
        assert!(!decide(&deny, None, &[(":method", "POST"), (":path", "/")], None));
        assert!(decide(&deny, None, &[(":method", "GET"), (":path", "/admin")], None), "10.0.0.1 is inside 10/8");
        let decision = deny.decide(&Subject {
            source: "192.168.1.1:1".parse().expect("address"),
            destination: "10.0.0.2:9080".parse().expect("address"),
            peer: None,
            server_name: None,
            header: Some(&|name: &str| (name == ":method").then(|| "POST".to_string())),
            path: Some("/admin"),
            metadata: None,
        });
        assert_eq!(decision, Decision { allowed: false, policy: Some("a-deny-admin".into()) }, "name order");
    }

    #[test]
    fn connection_facts_ports_addresses_and_server_names() {
        let ports = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"and_rules": {"rules": [
                {"destination_port": 9080},
                {"destination_ip": {"address_prefix": "10.0.0.0", "prefix_len": 24}},
                {"destination_port_range": {"start": 9000, "end": 9100}},
                {"requested_server_name": {"suffix": ".svc.cluster.local"}}
            ]}}],
            "principals": [{"authenticated": {}}]
        }}}));
        let anyone = peer("spiffe://cluster.local/ns/x/sa/y");
        assert!(decide(&ports, Some(&anyone), &[], None), "any authenticated peer");
        assert!(!decide(&ports, None, &[], None), "but not plaintext");
        let other_port = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"destination_port": 27017}], "principals": [{"any": true}]}}}));
        assert!(!decide(&other_port, None, &[], None));
    }

    #[test]
    fn request_fields_never_match_on_a_connection() {
        let by_path = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"url_path": {"path": {"prefix": "/"}}}], "principals": [{"any": true}]}}}));
        let by_header = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"any": true}],
            "principals": [{"header": {"name": ":method", "present_match": true}}]}}}));
        let connection = |engine: &Engine| {
            engine
                .decide(&Subject {
                    source: "10.0.0.1:1".parse().expect("address"),
                    destination: "10.0.0.2:9000".parse().expect("address"),
                    peer: None,
                    server_name: None,
                    header: None,
                    path: None,
                    metadata: None,
                })
                .allowed
        };
        assert!(!connection(&by_path));
        assert!(!connection(&by_header));
    }

    #[test]
    fn jwt_claims_in_metadata_match_strings_and_lists() {
        let claims = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"any": true}],
            "principals": [{"and_ids": {"ids": [
                {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "iss"}],
                              "value": {"string_match": {"exact": "testing@secure.istio.io"}}}},
                {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "groups"}],
                              "value": {"list_match": {"one_of": {"string_match": {"exact": "group1"}}}}}}
            ]}}]
        }}}));
        let payload = |groups: serde_json::Value| {
            Some(
                json!({"envoy.filters.http.jwt_authn": {"payload": {"iss": "testing@secure.istio.io", "groups": groups}}}),
            )
        };
        assert!(decide(&claims, None, &[], payload(json!(["group1", "group2"]))));
        assert!(!decide(&claims, None, &[], payload(json!(["group2"]))));
        assert!(!decide(&claims, None, &[], payload(json!("group1"))), "a string is not a list");
        assert!(!decide(&claims, None, &[], None), "no token, no claims");
        let invert = engine(json!({"action": "ALLOW", "policies": {"p": {
            "permissions": [{"any": true}],
            "principals": [{"metadata": {"filter": "f", "path": [{"key": "k"}], "value": {"present_match": true},
                                         "invert": true}}]
        }}}));
        assert!(decide(&invert, None, &[], None), "inverted presence: absent matches");
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused() {
        let refuse = |config: serde_json::Value| {
            let config: rbac::Rbac = istio_xds::json::message_from_json(&config).expect("an RBAC config");
            Engine::compile(&config, "rbac").expect_err("refused").to_string()
        };
        let condition =
            refuse(json!({"policies": {"p": {"permissions": [{"any": true}], "principals": [{"any": true}],
            "condition": {"const_expr": {"bool_value": true}}}}}));
        assert!(condition.contains("rbac.policies[p]") && condition.contains("CEL"), "{condition}");
        let everyone = engine(json!({"action": "ALLOW", "policies": {"p": {"permissions": [{"any": true}],
            "principals": [{"remote_ip": {"address_prefix": "192.168.0.1"}}]}}}));
        assert!(decide(&everyone, None, &[], None), "no prefix length: every address, as in Envoy");
        let bad_cidr = refuse(json!({"policies": {"p": {"permissions": [{"any": true}],
            "principals": [{"remote_ip": {"address_prefix": "not-an-ip"}}]}}}));
        assert!(bad_cidr.contains("principals[0].remote_ip"), "{bad_cidr}");
        let bad_regex =
            refuse(json!({"policies": {"p": {"permissions": [{"url_path": {"path": {"safe_regex": {"regex": "("}}}}],
            "principals": [{"any": true}]}}}));
        assert!(bad_regex.contains("permissions[0].url_path"), "{bad_regex}");
    }
}
