//! Rules for `rbac.istio.io/v1alpha1` (ServiceRole, ServiceRoleBinding, RbacConfig,
//! ClusterRbacConfig) and `security.istio.io/v1beta1` AuthorizationPolicy, as Istio 1.4 checked
//! them: rule and subject shapes, mutually exclusive positive/negative fields, role references,
//! the `default` name of the mesh RBAC config, and the condition keys and values authz accepts.

use istio_api::json::JsonError;
use istio_api::kinds::Kind;
use istio_api::pb::istio::rbac::v1alpha1 as rbac;
use istio_api::pb::istio::security::v1beta1 as security;

use super::common::*;
use super::report::{typed, Context, Report};
use crate::validation::invalid::Invalid;

pub(super) fn validate(
    kind: &Kind,
    context: &Context<'_>,
    spec: &serde_json::Value,
    report: &mut Report,
) -> Result<(), JsonError> {
    match kind.kind {
        "ServiceRole" => service_role(&typed(kind, spec)?, report),
        "ServiceRoleBinding" => service_role_binding(&typed(kind, spec)?, report),
        "RbacConfig" | "ClusterRbacConfig" => rbac_config(kind.kind, context.name, &typed(kind, spec)?, report),
        "AuthorizationPolicy" => authorization_policy(&typed(kind, spec)?, report),
        _ => {}
    }
    Ok(())
}

fn both(report: &mut Report, field: &str, positive: (&str, usize), negative: (&str, usize), rule: usize) {
    if positive.1 > 0 && negative.1 > 0 {
        report.error(field, format!("cannot define {} and {} for the same rule {rule}", positive.0, negative.0));
    }
}

fn access_rule(field: &str, index: usize, rule: &rbac::AccessRule, report: &mut Report) {
    both(report, field, ("methods", rule.methods.len()), ("not_methods", rule.not_methods.len()), index);
    both(report, field, ("paths", rule.paths.len()), ("not_paths", rule.not_paths.len()), index);
    both(report, field, ("ports", rule.ports.len()), ("not_ports", rule.not_ports.len()), index);
    both(report, field, ("hosts", rule.hosts.len()), ("not_hosts", rule.not_hosts.len()), index);
    if rule.ports.iter().chain(&rule.not_ports).any(|port| !(0..=65535).contains(port)) {
        report.error(format!("{field}.ports"), "at least one port is not in the range of [0, 65535]");
    }
    if rule.services.is_empty() {
        report.error(format!("{field}.services"), format!("at least 1 service must be specified for rule {index}"));
    }
    for (position, constraint) in rule.constraints.iter().enumerate() {
        let field = format!("{field}.constraints[{position}]");
        if constraint.key.is_empty() {
            report.error(
                format!("{field}.key"),
                format!("key cannot be empty for constraint {position} in rule {index}"),
            );
        }
        if constraint.values.is_empty() {
            report.error(
                format!("{field}.values"),
                format!("at least 1 value must be specified for constraint {position} in rule {index}"),
            );
        }
        if constraint.values.iter().any(String::is_empty) {
            report.error(
                format!("{field}.values"),
                format!("empty string is not allowed in constraint value for constraint {position} in rule {index}"),
            );
        }
    }
}

fn service_role(role: &rbac::ServiceRole, report: &mut Report) {
    if role.rules.is_empty() {
        report.error("spec.rules", "at least 1 rule must be specified");
    }
    for (index, rule) in role.rules.iter().enumerate() {
        access_rule(&format!("spec.rules[{index}]"), index, rule, report);
    }
}

fn subject_is_empty(subject: &rbac::Subject) -> bool {
    subject.user.is_empty()
        && subject.group.is_empty()
        && subject.properties.is_empty()
        && subject.names.is_empty()
        && subject.not_names.is_empty()
        && subject.groups.is_empty()
        && subject.not_groups.is_empty()
        && subject.namespaces.is_empty()
        && subject.not_namespaces.is_empty()
        && subject.ips.is_empty()
        && subject.not_ips.is_empty()
}

fn service_role_binding(binding: &rbac::ServiceRoleBinding, report: &mut Report) {
    if binding.subjects.is_empty() {
        report.error("spec.subjects", "at least 1 subject must be specified");
    }
    for (index, subject) in binding.subjects.iter().enumerate() {
        let field = format!("spec.subjects[{index}]");
        if subject_is_empty(subject) {
            report.error(&field, format!("empty subjects are not allowed. Found an empty subject at index {index}"));
        }
        both(report, &field, ("names", subject.names.len()), ("not_names", subject.not_names.len()), index);
        both(report, &field, ("groups", subject.groups.len()), ("not_groups", subject.not_groups.len()), index);
        both(
            report,
            &field,
            ("namespaces", subject.namespaces.len()),
            ("not_namespaces", subject.not_namespaces.len()),
            index,
        );
        both(report, &field, ("ips", subject.ips.len()), ("not_ips", subject.not_ips.len()), index);
        for ip in subject.ips.iter().chain(&subject.not_ips) {
            report.check(format!("{field}.ips"), validate_ip_subnet(ip));
        }
    }
    let has_inline_role = !binding.role.is_empty() || !binding.actions.is_empty();
    match &binding.role_ref {
        None if has_inline_role => {}
        None => report.error("spec.roleRef", "`roleRef` must be specified"),
        Some(role_ref) => {
            if role_ref.kind != "ServiceRole" {
                report.error(
                    "spec.roleRef.kind",
                    format!("kind set to {:?}, currently the only supported value is \"ServiceRole\"", role_ref.kind),
                );
            }
            if role_ref.name.is_empty() {
                report.error("spec.roleRef.name", "`name` in `roleRef` cannot be empty");
            }
        }
    }
    for (index, rule) in binding.actions.iter().enumerate() {
        access_rule(&format!("spec.actions[{index}]"), index, rule, report);
    }
}

fn rbac_config(kind: &str, name: &str, config: &rbac::RbacConfig, report: &mut Report) {
    if name != "default" {
        report.error("metadata.name", format!("{kind} has invalid name({name}), name must be \"default\""));
    }
    let mode = config.mode;
    if mode == rbac::rbac_config::Mode::OnWithInclusion as i32 && config.inclusion.is_none() {
        report.error("spec.inclusion", "inclusion cannot be null (use 'inclusion: {}' for none)");
    }
    if mode == rbac::rbac_config::Mode::OnWithExclusion as i32 && config.exclusion.is_none() {
        report.error("spec.exclusion", "exclusion cannot be null (use 'exclusion: {}' for none)");
    }
}

fn authorization_policy(policy: &security::AuthorizationPolicy, report: &mut Report) {
    if let Some(selector) = &policy.selector {
        report.check("spec.selector.matchLabels", validate_labels(&selector.match_labels));
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let field = format!("spec.rules[{index}]");
        for (position, from) in rule.from.iter().enumerate() {
            let field = format!("{field}.from[{position}].source");
            let Some(source) = &from.source else {
                report.error(field, format!("`from.source` must not be nil, found at rule {index}"));
                continue;
            };
            let lists = [
                &source.principals,
                &source.not_principals,
                &source.request_principals,
                &source.not_request_principals,
                &source.namespaces,
                &source.not_namespaces,
                &source.ip_blocks,
                &source.not_ip_blocks,
            ];
            if lists.iter().all(|list| list.is_empty()) {
                report.error(&field, format!("`from.source` must not be empty, found at rule {index}"));
            }
            for block in source.ip_blocks.iter().chain(&source.not_ip_blocks) {
                report.check(format!("{field}.ipBlocks"), validate_ip_subnet(block));
            }
        }
        for (position, to) in rule.to.iter().enumerate() {
            let field = format!("{field}.to[{position}].operation");
            let Some(operation) = &to.operation else {
                report.error(field, format!("`to.operation` must not be nil, found at rule {index}"));
                continue;
            };
            let lists = [
                &operation.hosts,
                &operation.not_hosts,
                &operation.ports,
                &operation.not_ports,
                &operation.methods,
                &operation.not_methods,
                &operation.paths,
                &operation.not_paths,
            ];
            if lists.iter().all(|list| list.is_empty()) {
                report.error(&field, format!("`to.operation` must not be empty, found at rule {index}"));
            }
            for port in operation.ports.iter().chain(&operation.not_ports) {
                let valid = port.parse::<i64>().is_ok_and(|number| validate_port(number).is_ok());
                if !valid {
                    report.error(format!("{field}.ports"), format!("invalid port {port:?}"));
                }
            }
        }
        for (position, condition) in rule.when.iter().enumerate() {
            let field = format!("{field}.when[{position}]");
            if condition.key.is_empty() {
                report.error(format!("{field}.key"), format!("`key` must not be empty, found at rule {index}"));
                continue;
            }
            if condition.values.is_empty() && condition.not_values.is_empty() {
                report.error(
                    format!("{field}.values"),
                    format!("`values` must not be empty for key {}, found at rule {index}", condition.key),
                );
            }
            for value in condition.values.iter().chain(&condition.not_values) {
                if let Err(message) = condition_value(&condition.key, value) {
                    report.error(
                        &field,
                        format!("invalid value for key {}: {message}, found at rule {index}", condition.key),
                    );
                }
            }
        }
    }
}

/// The condition keys AuthorizationPolicy understood in 1.4, and what their values must be.
fn condition_value(key: &str, value: &str) -> Result<(), Invalid> {
    let bracketed = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|inner| !inner.is_empty())
    };
    match key {
        "source.ip" | "destination.ip" => validate_ip_subnet(value),
        "destination.port" => {
            value.parse::<i64>().map_err(|_| Invalid::PortNotANumber(value.to_string())).and_then(validate_port)
        }
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        _ if bracketed("request.headers") || bracketed("request.auth.claims") => Ok(()),
        _ if key.starts_with("experimental.envoy.filters.") => Ok(()),
        _ => Err(Invalid::UnknownAttribute(key.to_string())),
    }
}
