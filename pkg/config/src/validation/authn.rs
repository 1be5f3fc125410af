//! Rules for `authentication.istio.io/v1alpha1` Policy and MeshPolicy: naming of mesh-wide and
//! namespace-wide policies, target names and ports, and JWT origins (issuer, audiences, JWKS URI,
//! header/param locations, trigger rules), as Istio 1.4 checked them.

use std::collections::HashSet;

use istio_api::json::JsonError;
use istio_api::kinds::Kind;
use istio_api::pb::istio::authentication::v1alpha1 as authn;

use super::common::*;
use super::report::{typed, Context, Report};
use crate::validation::invalid::Invalid;

const DEFAULT_POLICY_NAME: &str = "default";

pub(super) fn validate(
    kind: &Kind,
    context: &Context<'_>,
    spec: &serde_json::Value,
    report: &mut Report,
) -> Result<(), JsonError> {
    let policy: authn::Policy = typed(kind, spec)?;
    if kind.namespaced {
        if policy.targets.is_empty() && context.name != DEFAULT_POLICY_NAME {
            report.error(
                "metadata.name",
                format!(
                    "authentication policy with no target rules  must be named {DEFAULT_POLICY_NAME:?}, found {:?}",
                    context.name
                ),
            );
        }
        if !policy.targets.is_empty() && context.name == DEFAULT_POLICY_NAME {
            report.error(
                "spec.targets",
                format!("authentication policy with name {:?} must not have any target rules", context.name),
            );
        }
        for (index, target) in policy.targets.iter().enumerate() {
            target_selector(&format!("spec.targets[{index}]"), target, report);
        }
    } else {
        if context.name != DEFAULT_POLICY_NAME {
            report.error(
                "metadata.name",
                format!(
                    "cluster-scoped authentication policy name must be {DEFAULT_POLICY_NAME:?}, found {:?}",
                    context.name
                ),
            );
        }
        if !policy.targets.is_empty() {
            report.error("spec.targets", "cluster-scoped authentication policy must not have targets");
        }
    }
    let mut issuers = HashSet::new();
    for (index, peer) in policy.peers.iter().enumerate() {
        if let Some(authn::peer_authentication_method::Params::Jwt(jwt)) = &peer.params {
            let field = format!("spec.peers[{index}].jwt");
            if !issuers.insert(jwt.issuer.clone()) {
                report.error(&field, format!("jwt with issuer {:?} already defined", jwt.issuer));
            }
            validate_jwt(&field, jwt, report);
        }
    }
    for (index, origin) in policy.origins.iter().enumerate() {
        let field = format!("spec.origins[{index}]");
        let Some(jwt) = &origin.jwt else {
            report.error(format!("{field}.jwt"), "jwt cannot be empty");
            continue;
        };
        if !issuers.insert(jwt.issuer.clone()) {
            report.error(format!("{field}.jwt"), format!("jwt with issuer {:?} already defined", jwt.issuer));
        }
        validate_jwt(&format!("{field}.jwt"), jwt, report);
    }
    Ok(())
}

fn target_selector(field: &str, target: &authn::TargetSelector, report: &mut Report) {
    if !is_dns1123_label(&target.name) {
        report.error(format!("{field}.name"), format!("target name {:?} must be a valid label", target.name));
    }
    report.check(format!("{field}.labels"), validate_labels(&target.labels));
    for (index, port) in target.ports.iter().enumerate() {
        let field = format!("{field}.ports[{index}]");
        match &port.port {
            Some(authn::port_selector::Port::Number(number)) => {
                report.check(format!("{field}.number"), validate_port(i64::from(*number)))
            }
            Some(authn::port_selector::Port::Name(name)) => {
                report.check(format!("{field}.name"), validate_port_name(name))
            }
            None => report.error(field, "port must be set with number or name"),
        }
    }
}

fn validate_jwt(field: &str, jwt: &authn::Jwt, report: &mut Report) {
    if jwt.issuer.is_empty() {
        report.error(format!("{field}.issuer"), "issuer must be set");
    }
    if jwt.audiences.iter().any(String::is_empty) {
        report.error(format!("{field}.audiences"), "audience must be non-empty string");
    }
    if !jwt.jwks_uri.is_empty() {
        report.check(format!("{field}.jwksUri"), jwks_uri(&jwt.jwks_uri));
    }
    if jwt.jwt_headers.iter().any(String::is_empty) {
        report.error(format!("{field}.jwtHeaders"), "location header must be non-empty string");
    }
    if jwt.jwt_params.iter().any(String::is_empty) {
        report.error(format!("{field}.jwtParams"), "location query must be non-empty string");
    }
    for (index, rule) in jwt.trigger_rules.iter().enumerate() {
        let field = format!("{field}.triggerRules[{index}]");
        if rule.excluded_paths.is_empty() && rule.included_paths.is_empty() {
            report.error(&field, "at least one of excludedPaths or includedPaths must be set");
        }
        for (list, matchers) in [("excludedPaths", &rule.excluded_paths), ("includedPaths", &rule.included_paths)] {
            for (position, matcher) in matchers.iter().enumerate() {
                report.check(format!("{field}.{list}[{position}]"), path_match(matcher));
            }
        }
    }
}

fn path_match(matcher: &authn::StringMatch) -> Result<(), Invalid> {
    use authn::string_match::MatchType;
    match &matcher.match_type {
        None => Err(Invalid::StringMatchUnset),
        Some(MatchType::Regex(pattern)) => validate_regex(pattern),
        Some(MatchType::Exact(value) | MatchType::Prefix(value) | MatchType::Suffix(value)) if value.is_empty() => {
            Err(Invalid::StringMatchEmpty)
        }
        Some(_) => Ok(()),
    }
}

/// A JWKS URI must be an absolute http or https URL with a host; the port, when given, a number.
fn jwks_uri(uri: &str) -> Result<(), Invalid> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(Invalid::JwksNotAbsolute(uri.to_string()));
    };
    if scheme != "http" && scheme != "https" {
        return Err(Invalid::UriScheme(scheme.to_string()));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host_port.starts_with('[') => (host, Some(port)),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Err(Invalid::JwksNoHost(uri.to_string()));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(Invalid::JwksPort { uri: uri.to_string(), port: port.to_string() });
        }
    }
    Ok(())
}
