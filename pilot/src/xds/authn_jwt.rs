//! Origin (end-user) authentication of an authentication `Policy` as Envoy's standard
//! `jwt_authn` filter, the pinned translation of Istio 1.4's `jwt_authn` + `istio_authn` pair:
//!
//! - each Jwt of the policy (origins, then peers) is a provider `origins-I` with its issuer,
//!   audiences, header and query locations (1.4's `jwtHeaders`/`jwtParams`; the default
//!   `Authorization: Bearer` and `access_token` otherwise), the token forwarded, the payload
//!   kept in the dynamic metadata under the issuer, and the keys inlined (Pilot fetched the
//!   `jwksUri`; keys it could not fetch are an empty set, so tokens fail, never pass);
//! - 1.4 required a valid token from any origin whose trigger rules select the request's path
//!   (no rules: every path; a rule selects a path its `excludedPaths` do not match and its
//!   `includedPaths`, if any, match), and let requests through that no origin selects. That
//!   is written as requirement rules, first match wins: for each set S of origins, largest
//!   first, the paths every origin of S selects require a token from any origin of S; a last
//!   rule verifies whatever tokens come (`allow_missing_or_failed`) so authorization can see
//!   their claims. Paths are matched without their query, as 1.4 did (a regex that a `:path`
//!   header matcher would hold, and that could match a `?`, makes the rules fall back to
//!   stricter ones: per origin its own paths, such exclusions dropped; an unusable regex is
//!   dropped from exclusions and matches everything as an inclusion);
//! - `originIsOptional` turns each requirement into "a valid token, or none, or a bad one";
//! - peer Jwt methods count only when the policy has no mutual-TLS peer method: then one of
//!   them is required too (unless `peerIsOptional`).

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route_match::PathSpecifier, HeaderMatcher, RouteMatch,
};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_requirement::RequiresType, requirement_rule::RequirementType, JwtAuthentication, JwtHeader, JwtProvider,
    JwtRequirement, JwtRequirementAndList, JwtRequirementOrList, RequirementRule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::Empty;
use istio_api::pb::istio::authentication::v1alpha1 as authn;
use istio_api::pb::istio::authentication::v1alpha1::string_match::MatchType;

use super::any;
use crate::model::PushContext;

/// The filter's name.
pub(crate) const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// The header 1.4 read exchanged tokens from, and their prefix.
const EXCHANGED_TOKEN_HEADER: &str = "ingress-authorization";
const EXCHANGED_TOKEN_PREFIX: &str = "Istio ";
/// More rules than this (many origins with many trigger rules) fall back to
/// [`stricter_rules`].
const MAX_RULES: usize = 256;

/// A path condition of a trigger rule.
#[derive(Debug, Clone)]
struct PathCondition {
    matcher: MatchType,
    negated: bool,
}

/// A conjunction of path conditions (empty: every path).
type Term = Vec<PathCondition>;

/// The paths an origin selects, as alternatives (each a conjunction).
fn selected_paths(jwt: &authn::Jwt) -> Vec<Term> {
    if jwt.trigger_rules.is_empty() {
        return vec![Vec::new()];
    }
    let mut alternatives = Vec::new();
    for rule in &jwt.trigger_rules {
        // A regex that cannot be compiled is dropped from the exclusions and matches every
        // path as an inclusion: a token is then asked for more often, never less.
        let excluded: Vec<PathCondition> = rule
            .excluded_paths
            .iter()
            .filter_map(|path| path.match_type.clone())
            .filter(|matcher| usable(matcher, &jwt.issuer))
            .map(|matcher| PathCondition { matcher, negated: true })
            .collect();
        let included: Vec<MatchType> = rule
            .included_paths
            .iter()
            .filter_map(|path| path.match_type.clone())
            .map(|matcher| if usable(&matcher, &jwt.issuer) { matcher } else { MatchType::Prefix("/".to_string()) })
            .collect();
        if included.is_empty() {
            alternatives.push(excluded);
        } else {
            for matcher in included {
                let mut term = vec![PathCondition { matcher, negated: false }];
                term.extend(excluded.iter().cloned());
                alternatives.push(term);
            }
        }
    }
    alternatives
}

/// Whether a path matcher can be used: a regex must parse (RE2's syntax, which the `regex`
/// crate's parser shares for what trigger rules use).
fn usable(matcher: &MatchType, issuer: &str) -> bool {
    let MatchType::Regex(regex) = matcher else { return true };
    let parsed = regex_syntax::Parser::new().parse(regex);
    if let Err(error) = &parsed {
        tracing::warn!("trigger rule of the Jwt for {issuer}: regex {regex:?} is not usable ({error}); it is ignored");
    }
    parsed.is_ok()
}

/// Whether a regex can only match text without `?`: then, matched against `:path` (which
/// holds the query after the first `?`), it cannot reach into the query.
fn stays_in_path(regex: &str) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn walk(hir: &Hir) -> bool {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => true,
            HirKind::Literal(literal) => !literal.0.contains(&b'?'),
            HirKind::Class(Class::Unicode(class)) => {
                !class.ranges().iter().any(|range| range.start() <= '?' && '?' <= range.end())
            }
            HirKind::Class(Class::Bytes(class)) => {
                !class.ranges().iter().any(|range| range.start() <= b'?' && b'?' <= range.end())
            }
            HirKind::Repetition(repetition) => walk(&repetition.sub),
            HirKind::Capture(capture) => walk(&capture.sub),
            HirKind::Concat(parts) | HirKind::Alternation(parts) => parts.iter().all(walk),
        }
    }
    regex_syntax::Parser::new().parse(regex).is_ok_and(|hir| walk(&hir))
}

/// Whether a term can be written as one route match without a regex header matcher that
/// could match into the query.
fn expressible(term: &[PathCondition]) -> bool {
    let first_positive = term.iter().position(|condition| !condition.negated);
    term.iter().enumerate().all(|(index, condition)| match &condition.matcher {
        MatchType::Regex(regex) if Some(index) != first_positive => stays_in_path(regex),
        _ => true,
    })
}

/// `value` with regex metacharacters escaped.
fn escape(value: &str) -> String {
    super::authz::regex_syntax_escape(value)
}

fn safe_regex(regex: String) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher { regex, ..Default::default() })),
        ..Default::default()
    }
}

/// A condition on `:path` as a header matcher (the header holds the query too, so exact and
/// suffix matches allow one after the path).
fn path_header(condition: &PathCondition) -> HeaderMatcher {
    let matcher = match &condition.matcher {
        MatchType::Exact(exact) => safe_regex(format!("{}(\\?.*)?", escape(exact))),
        MatchType::Prefix(prefix) => {
            StringMatcher { match_pattern: Some(MatchPattern::Prefix(prefix.clone())), ..Default::default() }
        }
        MatchType::Suffix(suffix) => safe_regex(format!("[^?]*{}(\\?.*)?", escape(suffix))),
        MatchType::Regex(regex) => safe_regex(format!("({regex})(\\?.*)?")),
    };
    HeaderMatcher {
        name: ":path".to_string(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(matcher)),
        invert_match: condition.negated,
        ..Default::default()
    }
}

/// The route match of a conjunction: its first positive condition as the path specifier
/// (which ignores the query), the rest as `:path` header matchers.
fn route_match(term: &[PathCondition]) -> RouteMatch {
    let first_positive = term.iter().position(|condition| !condition.negated);
    let path_specifier = match first_positive.map(|index| &term[index].matcher) {
        Some(MatchType::Exact(exact)) => PathSpecifier::Path(exact.clone()),
        Some(MatchType::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(MatchType::Suffix(suffix)) => {
            PathSpecifier::SafeRegex(RegexMatcher { regex: format!(".*{}", escape(suffix)), ..Default::default() })
        }
        Some(MatchType::Regex(regex)) => {
            PathSpecifier::SafeRegex(RegexMatcher { regex: regex.clone(), ..Default::default() })
        }
        None => PathSpecifier::Prefix("/".to_string()),
    };
    let headers = term
        .iter()
        .enumerate()
        .filter(|(index, _)| Some(*index) != first_positive)
        .map(|(_, condition)| path_header(condition))
        .collect();
    RouteMatch { path_specifier: Some(path_specifier), headers, ..Default::default() }
}

fn provider_name(index: usize) -> String {
    format!("origins-{index}")
}

fn requirement(requires_type: RequiresType) -> JwtRequirement {
    JwtRequirement { requires_type: Some(requires_type) }
}

/// A valid token from any of `providers` (and, when optional, also none or a bad one).
fn any_of(providers: &[usize], optional: bool) -> JwtRequirement {
    let mut alternatives: Vec<JwtRequirement> =
        providers.iter().map(|index| requirement(RequiresType::ProviderName(provider_name(*index)))).collect();
    if optional {
        alternatives.push(requirement(RequiresType::AllowMissingOrFailed(Empty {})));
    }
    if alternatives.len() == 1 {
        return alternatives.remove(0);
    }
    requirement(RequiresType::RequiresAny(JwtRequirementOrList { requirements: alternatives }))
}

fn provider(push: &PushContext, jwt: &authn::Jwt) -> JwtProvider {
    let keys = match crate::jwks::source(jwt) {
        None => jwt.jwks.clone(),
        Some(source) => push.jwks.get(&source).cloned().unwrap_or_else(|| crate::jwks::NO_KEYS.to_string()),
    };
    let from_headers = jwt
        .jwt_headers
        .iter()
        .map(|name| JwtHeader {
            name: name.clone(),
            value_prefix: if name == EXCHANGED_TOKEN_HEADER {
                EXCHANGED_TOKEN_PREFIX.to_string()
            } else {
                String::new()
            },
        })
        .collect();
    JwtProvider {
        issuer: jwt.issuer.clone(),
        audiences: jwt.audiences.clone(),
        forward: true,
        payload_in_metadata: jwt.issuer.clone(),
        from_headers,
        from_params: jwt.jwt_params.clone(),
        jwks_source_specifier: Some(
            envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::jwt_provider::JwksSourceSpecifier::LocalJwks(
                DataSource { specifier: Some(data_source::Specifier::InlineString(keys)), ..Default::default() },
            ),
        ),
        ..Default::default()
    }
}

/// The rules that require a token from the origins `indices` (providers numbered from
/// `first`): per set of origins, largest first, the paths all of them select.
fn origin_rules(jwts: &[&authn::Jwt], first: usize, optional: bool) -> Option<Vec<(RouteMatch, JwtRequirement)>> {
    let count = jwts.len();
    if count == 0 {
        return Some(Vec::new());
    }
    if count > 8 {
        return None;
    }
    let selections: Vec<Vec<Term>> = jwts.iter().map(|jwt| selected_paths(jwt)).collect();
    let mut subsets: Vec<Vec<usize>> =
        (1..(1_u32 << count)).map(|bits| (0..count).filter(|index| bits & (1 << index) != 0).collect()).collect();
    subsets.sort_by_key(|subset| std::cmp::Reverse(subset.len()));
    let mut rules = Vec::new();
    for subset in subsets {
        // Every combination of one alternative per origin of the set.
        let mut terms: Vec<Term> = vec![Vec::new()];
        for index in &subset {
            terms = terms
                .iter()
                .flat_map(|term| {
                    selections[*index].iter().map(move |alternative| {
                        let mut combined = term.clone();
                        combined.extend(alternative.iter().cloned());
                        combined
                    })
                })
                .collect();
            if terms.len() > MAX_RULES {
                return None;
            }
        }
        let providers: Vec<usize> = subset.iter().map(|index| first + index).collect();
        for term in terms {
            if !expressible(&term) {
                return None;
            }
            rules.push((route_match(&term), any_of(&providers, optional)));
            if rules.len() > MAX_RULES {
                return None;
            }
        }
    }
    Some(rules)
}

/// The fallback when the exact rules cannot be written (too many combinations, or a regex that
/// could reach into the query where a header matcher would hold it): per origin, in order, the
/// paths it selects require its own token (a path several origins select takes the first's,
/// where 1.4 took any of them), exclusions that cannot be matched safely are dropped (their
/// paths need the token too). Stricter than 1.4, never looser.
fn stricter_rules(origins: &[&authn::Jwt], optional: bool) -> Vec<(RouteMatch, JwtRequirement)> {
    let mut rules = Vec::new();
    for (index, jwt) in origins.iter().enumerate() {
        for term in selected_paths(jwt) {
            let first_positive = term.iter().position(|condition| !condition.negated);
            let safe: Term = term
                .iter()
                .enumerate()
                .filter(|(position, condition)| match &condition.matcher {
                    MatchType::Regex(regex) if Some(*position) != first_positive => stays_in_path(regex),
                    _ => true,
                })
                .map(|(_, condition)| condition.clone())
                .collect();
            rules.push((route_match(&safe), any_of(&[index], optional)));
        }
        if rules.len() > MAX_RULES {
            // Too many still: every origin's token on every path.
            let all: Vec<JwtRequirement> =
                (0..origins.len()).map(|index| requirement(RequiresType::ProviderName(provider_name(index)))).collect();
            let every = requirement(RequiresType::RequiresAll(JwtRequirementAndList { requirements: all }));
            return vec![(route_match(&[]), every)];
        }
    }
    rules
}

/// The `jwt_authn` filter for a policy; `None` when it names no Jwt.
pub(crate) fn jwt_filter(push: &PushContext, policy: &authn::Policy, policy_name: &str) -> Option<HttpFilter> {
    use authn::peer_authentication_method::Params;
    let origins: Vec<&authn::Jwt> = policy.origins.iter().filter_map(|origin| origin.jwt.as_ref()).collect();
    let peers: Vec<&authn::Jwt> = policy
        .peers
        .iter()
        .filter_map(|peer| match &peer.params {
            Some(Params::Jwt(jwt)) => Some(jwt),
            _ => None,
        })
        .collect();
    if origins.is_empty() && peers.is_empty() {
        return None;
    }
    let providers = origins.iter().chain(peers.iter()).enumerate();
    let mut config = JwtAuthentication {
        providers: super::stable_map::stable_map(
            providers.map(|(index, jwt)| (provider_name(index), provider(push, jwt))),
        ),
        ..Default::default()
    };
    let rules = origin_rules(&origins, 0, policy.origin_is_optional).unwrap_or_else(|| {
        tracing::warn!(
            "authentication policy {policy_name}: its origins' trigger rules cannot all be written as \
             requirement rules; each path asks for the token of the first origin that selects it"
        );
        stricter_rules(&origins, policy.origin_is_optional)
    });
    let has_mtls_peer = policy.peers.iter().any(|peer| matches!(peer.params, Some(Params::Mtls(_))));
    let peer_requirement = (!peers.is_empty() && !has_mtls_peer).then(|| {
        let indices: Vec<usize> = (origins.len()..origins.len() + peers.len()).collect();
        any_of(&indices, policy.peer_is_optional)
    });
    let mut requirement_rules: Vec<RequirementRule> = rules
        .into_iter()
        .map(|(route, origin)| {
            let requires = match &peer_requirement {
                None => origin,
                Some(peer) => requirement(RequiresType::RequiresAll(JwtRequirementAndList {
                    requirements: vec![peer.clone(), origin],
                })),
            };
            RequirementRule { r#match: Some(route), requirement_type: Some(RequirementType::Requires(requires)) }
        })
        .collect();
    // Paths no origin selects: the peer requirement, or just the claims of whatever comes.
    let rest = peer_requirement.unwrap_or_else(|| requirement(RequiresType::AllowMissingOrFailed(Empty {})));
    requirement_rules.push(RequirementRule {
        r#match: Some(route_match(&[])),
        requirement_type: Some(RequirementType::Requires(rest)),
    });
    config.rules = requirement_rules;
    // CORS preflights carry no token; 1.4's authentication filter let them through.
    config.bypass_cors_preflight = true;
    Some(HttpFilter {
        name: JWT_AUTHN.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> authn::Policy {
        istio_api::json::decode("istio.authentication.v1alpha1.Policy", &spec).expect("policy")
    }

    fn config(filter: &HttpFilter) -> serde_json::Value {
        let Some(http_filter::ConfigType::TypedConfig(typed)) = &filter.config_type else { panic!("typed") };
        let decoded: JwtAuthentication = prost::Message::decode(typed.value.as_slice()).expect("decode");
        istio_xds::json::message_to_json(&decoded).expect("json")
    }

    fn push() -> PushContext {
        let mut push = crate::testing::push(vec![], vec![]);
        push.jwks.insert(crate::jwks::JwksSource::Uri("https://example.com/jwks".into()), r#"{"keys":[1]}"#.into());
        push
    }

    #[test]
    fn a_policy_without_jwt_gets_no_filter() {
        assert!(jwt_filter(&push(), &policy(json!({"peers": [{"mtls": {}}]})), "p").is_none());
    }

    #[test]
    fn one_origin_requires_its_token_everywhere_and_inlines_the_fetched_keys() {
        let spec = policy(json!({"origins": [{"jwt": {"issuer": "testing@secure.istio.io",
            "jwksUri": "https://example.com/jwks", "audiences": ["a"]}}], "principalBinding": "USE_ORIGIN"}));
        let config = config(&jwt_filter(&push(), &spec, "p").expect("filter"));
        let provider = &config["providers"]["origins-0"];
        assert_eq!(provider["issuer"], "testing@secure.istio.io");
        assert_eq!(provider["payload_in_metadata"], "testing@secure.istio.io");
        assert_eq!(provider["forward"], true);
        assert_eq!(provider["local_jwks"]["inline_string"], r#"{"keys":[1]}"#);
        assert_eq!(config["rules"][0]["match"]["prefix"], "/");
        assert_eq!(config["rules"][0]["requires"]["provider_name"], "origins-0");
        assert!(config["rules"][1]["requires"]["allow_missing_or_failed"].is_object(), "{config}");
    }

    #[test]
    fn keys_not_fetched_are_an_empty_set_and_headers_and_params_are_kept() {
        let spec = policy(json!({"origins": [{"jwt": {"issuer": "i", "jwksUri": "https://unreachable/jwks",
            "jwtHeaders": ["x-jwt", "ingress-authorization"], "jwtParams": ["token"]}}]}));
        let config = config(&jwt_filter(&push(), &spec, "p").expect("filter"));
        let provider = &config["providers"]["origins-0"];
        assert_eq!(provider["local_jwks"]["inline_string"], crate::jwks::NO_KEYS);
        assert_eq!(provider["from_headers"][0], json!({"name": "x-jwt"}));
        assert_eq!(provider["from_headers"][1], json!({"name": "ingress-authorization", "value_prefix": "Istio "}));
        assert_eq!(provider["from_params"], json!(["token"]));
    }

    #[test]
    fn trigger_rules_become_requirement_rules() {
        // The 1.4 task: /user-agent excluded, and a second origin only for /ip.
        let spec = policy(json!({"origins": [
            {"jwt": {"issuer": "a", "jwks": "{}", "triggerRules": [{"excludedPaths": [{"exact": "/user-agent"}]}]}},
            {"jwt": {"issuer": "b", "jwks": "{}", "triggerRules": [{"includedPaths": [{"prefix": "/ip"}]}]}},
        ], "originIsOptional": false}));
        let config = config(&jwt_filter(&push(), &spec, "p").expect("filter"));
        let rules = config["rules"].as_array().expect("rules");
        // {a, b}, {a}, {b}, then the rest.
        assert_eq!(rules.len(), 4, "{config}");
        assert_eq!(rules[0]["match"]["prefix"], "/ip");
        assert_eq!(rules[0]["match"]["headers"][0]["invert_match"], true);
        assert_eq!(rules[0]["match"]["headers"][0]["string_match"]["safe_regex"]["regex"], "/user-agent(\\?.*)?");
        let any = &rules[0]["requires"]["requires_any"]["requirements"];
        assert_eq!(any, &json!([{"provider_name": "origins-0"}, {"provider_name": "origins-1"}]));
        assert_eq!(rules[1]["match"]["prefix"], "/");
        assert_eq!(rules[1]["requires"]["provider_name"], "origins-0");
        assert_eq!(rules[2]["match"]["prefix"], "/ip");
        assert_eq!(rules[2]["requires"]["provider_name"], "origins-1");
    }

    #[test]
    fn regexes_that_could_reach_into_the_query_make_the_rules_stricter() {
        let rules = |excluded: &str| {
            let spec = policy(json!({"origins": [{"jwt": {"issuer": "a", "jwks": "{}",
                "triggerRules": [{"excludedPaths": [{"regex": excluded}]}]}}]}));
            config(&jwt_filter(&push(), &spec, "p").expect("filter"))["rules"].clone()
        };
        // `/health[0-9]*` cannot match a `?`: kept as an inverted `:path` matcher.
        let safe = rules("/health[0-9]*");
        assert_eq!(safe[0]["match"]["headers"][0]["invert_match"], true, "{safe}");
        assert_eq!(safe[0]["match"]["headers"][0]["string_match"]["safe_regex"]["regex"], "(/health[0-9]*)(\\?.*)?");
        // `.*/health` could match `/secret?x=/health`: the exclusion is dropped, so every
        // path needs the token (stricter than 1.4, never looser).
        let unsafe_exclusion = rules(".*/health");
        assert_eq!(unsafe_exclusion[0]["match"], json!({"prefix": "/"}), "{unsafe_exclusion}");
        assert_eq!(unsafe_exclusion[0]["requires"]["provider_name"], "origins-0");
        // A regex that does not compile is dropped too.
        let broken = rules("(unclosed");
        assert_eq!(broken[0]["match"], json!({"prefix": "/"}), "{broken}");
        assert!(stays_in_path("/a/[a-z]+") && !stays_in_path("/a.b") && !stays_in_path("/a[^/]"));
    }

    #[test]
    fn optional_origins_and_required_peer_jwts_combine() {
        let spec = policy(json!({"origins": [{"jwt": {"issuer": "a", "jwks": "{}"}}], "originIsOptional": true,
            "peers": [{"jwt": {"issuer": "p", "jwks": "{}"}}]}));
        let config = config(&jwt_filter(&push(), &spec, "p").expect("filter"));
        let all = &config["rules"][0]["requires"]["requires_all"]["requirements"];
        assert_eq!(all[0], json!({"provider_name": "origins-1"}), "the peer's token is required");
        assert!(all[1]["requires_any"]["requirements"][1]["allow_missing_or_failed"].is_object(), "{config}");
        let with_mtls = policy(json!({"peers": [{"mtls": {}}, {"jwt": {"issuer": "p", "jwks": "{}"}}]}));
        let config = super::tests::config(&jwt_filter(&push(), &with_mtls, "p").expect("filter"));
        assert!(config["rules"][0]["requires"]["allow_missing_or_failed"].is_object(), "mTLS satisfies the peer");
    }
}
