//! End-user identity in authorization rules, read from what origin authentication verified:
//! `jwt_authn` keeps each verified token's payload in the dynamic metadata under its issuer
//! ([`super::authn_jwt`]), so RBAC metadata matchers on `envoy.filters.http.jwt_authn` stand in
//! for 1.4's `request.auth.*` attributes:
//!
//! - a request principal `ISS/SUB` (`requestPrincipals`, `request.auth.principal`) is the
//!   payload under a known issuer ISS with `sub` SUB; `*` is any verified token; a `*` at the
//!   start or end of the value matches as 1.4's wildcards did, over the issuers the mesh's
//!   policies name (only their tokens are ever verified);
//! - a claim (`request.auth.claims[NAME]`, `audiences` = `aud`, `presenter` = `azp`) matches
//!   a string claim equal to the value or a list claim holding it.

use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher,
    metadata_matcher::{path_segment, PathSegment},
    string_matcher::MatchPattern,
    value_matcher, ListMatcher, MetadataMatcher, StringMatcher, ValueMatcher,
};

use crate::model::PushContext;

/// The filter whose metadata holds the payloads.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

/// The issuers of every Jwt in the mesh's authentication policies, sorted, without repeats.
pub(crate) fn issuers(push: &PushContext) -> Vec<String> {
    let mut issuers: Vec<String> = push.jwts().map(|jwt| jwt.issuer.clone()).collect();
    issuers.sort();
    issuers.dedup();
    issuers
}

fn string(pattern: MatchPattern) -> StringMatcher {
    StringMatcher { match_pattern: Some(pattern), ..Default::default() }
}

/// `payload[issuer][claim]` matching `value`. (`metadata` is deprecated for `sourced_metadata`,
/// and still what Envoy and Istio use for dynamic metadata.)
#[allow(deprecated)]
fn metadata(issuer: &str, claim: &str, value: value_matcher::MatchPattern) -> rbac::Principal {
    let key = |key: &str| PathSegment { segment: Some(path_segment::Segment::Key(key.to_string())) };
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Metadata(MetadataMatcher {
            filter: JWT_AUTHN.to_string(),
            path: vec![key(issuer), key(claim)],
            value: Some(ValueMatcher { match_pattern: Some(value) }),
            ..Default::default()
        })),
    }
}

fn present(issuer: &str, claim: &str) -> rbac::Principal {
    metadata(issuer, claim, value_matcher::MatchPattern::PresentMatch(true))
}

fn any_of(ids: Vec<rbac::Principal>) -> rbac::Principal {
    match ids.len() {
        // No issuer can give this identity: nobody has it.
        0 => rbac::Principal {
            identifier: Some(rbac::principal::Identifier::NotId(Box::new(rbac::Principal {
                identifier: Some(rbac::principal::Identifier::Any(true)),
            }))),
        },
        _ => rbac::Principal { identifier: Some(rbac::principal::Identifier::OrIds(rbac::principal::Set { ids })) },
    }
}

/// `sub` of the payload under `issuer` matching `pattern`.
fn subject(issuer: &str, pattern: MatchPattern) -> rbac::Principal {
    metadata(issuer, "sub", value_matcher::MatchPattern::StringMatch(string(pattern)))
}

/// A request principal (`ISS/SUB`, with 1.4's wildcards).
pub(crate) fn request_principal(value: &str, issuers: &[String]) -> rbac::Principal {
    let mut ids = Vec::new();
    for issuer in issuers {
        let with_slash = format!("{issuer}/");
        if value == "*" {
            ids.push(present(issuer, "sub"));
        } else if let Some(prefix) = value.strip_suffix('*') {
            if let Some(sub_prefix) = prefix.strip_prefix(&with_slash) {
                ids.push(subject(issuer, MatchPattern::Prefix(sub_prefix.to_string())));
            } else if with_slash.starts_with(prefix) {
                ids.push(present(issuer, "sub"));
            }
        } else if let Some(suffix) = value.strip_prefix('*') {
            // The suffix lies in the subject, or reaches back over the `/` into the issuer.
            ids.push(subject(issuer, MatchPattern::Suffix(suffix.to_string())));
            for (at, _) in suffix.match_indices('/') {
                if issuer.ends_with(&suffix[..at]) {
                    ids.push(subject(issuer, MatchPattern::Exact(suffix[at + 1..].to_string())));
                }
            }
        } else if let Some(sub) = value.strip_prefix(&with_slash) {
            ids.push(subject(issuer, MatchPattern::Exact(sub.to_string())));
        }
    }
    any_of(ids)
}

/// A claim (a string equal to the value, or a list holding it; `*` wildcards as 1.4's).
pub(crate) fn claim(name: &str, value: &str, issuers: &[String]) -> rbac::Principal {
    let pattern = if value == "*" {
        None
    } else if let Some(rest) = value.strip_prefix('*') {
        Some(MatchPattern::Suffix(rest.to_string()))
    } else if let Some(rest) = value.strip_suffix('*') {
        Some(MatchPattern::Prefix(rest.to_string()))
    } else {
        Some(MatchPattern::Exact(value.to_string()))
    };
    let mut ids = Vec::new();
    for issuer in issuers {
        let Some(pattern) = &pattern else {
            ids.push(present(issuer, name));
            continue;
        };
        let text = value_matcher::MatchPattern::StringMatch(string(pattern.clone()));
        ids.push(metadata(issuer, name, text.clone()));
        let one_of = ValueMatcher { match_pattern: Some(text) };
        let list = ListMatcher { match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(one_of))) };
        ids.push(metadata(issuer, name, value_matcher::MatchPattern::ListMatch(Box::new(list))));
    }
    any_of(ids)
}

/// The principal for a `request.auth.*` condition key and value; `None` for keys 1.4 did not
/// have.
pub(crate) fn condition(key: &str, value: &str, issuers: &[String]) -> Option<rbac::Principal> {
    match key {
        "request.auth.principal" => Some(request_principal(value, issuers)),
        "request.auth.audiences" => Some(claim("aud", value, issuers)),
        "request.auth.presenter" => Some(claim("azp", value, issuers)),
        _ => {
            let name = key.strip_prefix("request.auth.claims[")?.strip_suffix(']')?;
            Some(claim(name, value, issuers))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(principal: &rbac::Principal) -> serde_json::Value {
        istio_xds::json::message_to_json(principal).expect("json")
    }

    fn issuers() -> Vec<String> {
        vec!["testing@secure.istio.io".to_string(), "https://accounts.example.com/a".to_string()]
    }

    #[test]
    fn request_principals_split_at_a_known_issuer() {
        let exact = json(&request_principal("testing@secure.istio.io/alice", &issuers()));
        let ids = &exact["or_ids"]["ids"];
        assert_eq!(ids.as_array().map(Vec::len), Some(1), "{exact}");
        assert_eq!(ids[0]["metadata"]["path"][0]["key"], "testing@secure.istio.io");
        assert_eq!(ids[0]["metadata"]["path"][1]["key"], "sub");
        assert_eq!(ids[0]["metadata"]["value"]["string_match"]["exact"], "alice");
        // An issuer with `/` in it.
        let url = json(&request_principal("https://accounts.example.com/a/bob", &issuers()));
        assert_eq!(url["or_ids"]["ids"][0]["metadata"]["value"]["string_match"]["exact"], "bob");
        // Unknown issuer: nobody.
        assert!(json(&request_principal("other/alice", &issuers()))["not_id"]["any"].as_bool().unwrap_or(false));
        let any = json(&request_principal("*", &issuers()));
        assert_eq!(any["or_ids"]["ids"][1]["metadata"]["value"]["present_match"], true);
        let prefix = json(&request_principal("testing@secure.istio.io/al*", &issuers()));
        assert_eq!(prefix["or_ids"]["ids"][0]["metadata"]["value"]["string_match"]["prefix"], "al");
        let whole_issuer = json(&request_principal("testing@*", &issuers()));
        assert_eq!(whole_issuer["or_ids"]["ids"][0]["metadata"]["value"]["present_match"], true);
        let suffix = json(&request_principal("*.io/alice", &issuers()));
        let ids = suffix["or_ids"]["ids"].as_array().expect("ids").clone();
        assert!(ids.iter().any(|id| id["metadata"]["value"]["string_match"]["exact"] == "alice"), "{suffix}");
    }

    #[test]
    fn claims_match_strings_and_lists() {
        let groups = json(&claim("groups", "group1", &issuers()[..1]));
        let ids = &groups["or_ids"]["ids"];
        assert_eq!(ids[0]["metadata"]["path"][1]["key"], "groups");
        assert_eq!(ids[0]["metadata"]["value"]["string_match"]["exact"], "group1");
        assert_eq!(ids[1]["metadata"]["value"]["list_match"]["one_of"]["string_match"]["exact"], "group1");
        let audience = json(&condition("request.auth.audiences", "bookstore", &issuers()[..1]).expect("known"));
        assert_eq!(audience["or_ids"]["ids"][0]["metadata"]["path"][1]["key"], "aud");
        assert!(condition("request.auth.unknown", "x", &issuers()).is_none());
    }
}
