//! The authentication and authorization analyzers: JWT policies whose target Services have
//! ports JWT cannot work on (`injection.JwtAnalyzer`, as 1.4 named it), ServiceRoleBindings
//! whose role does not exist, and ServiceRoles naming services that do not exist.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde_json::Value;

use super::analyzer::Analyzer;
use super::messages::Message;
use super::messages::{jwt_failure_due_to_invalid_service_port_prefix, referenced_resource_not_found};
use super::snapshot::{
    array, host_fqdn, string, Entry, AUTHENTICATION_POLICIES, SERVICES, SERVICE_ROLES, SERVICE_ROLE_BINDINGS,
};

pub(super) fn jwt_analyzer() -> Analyzer {
    Analyzer::new("injection.JwtAnalyzer", &[AUTHENTICATION_POLICIES, SERVICES], |snapshot, messages| {
        let services: HashMap<String, &Entry> = snapshot
            .entries(SERVICES)
            .iter()
            .map(|service| (host_fqdn(service.namespace(), service.name()), service))
            .collect();
        let supported = Regex::new("^http(2|s)?(-.*)?$").expect("valid regex");
        for policy in snapshot.entries(AUTHENTICATION_POLICIES) {
            let jwt_origins =
                array(policy.spec(), "origins").iter().filter(|origin| origin.get("jwt").is_some()).count();
            for _ in 0..jwt_origins {
                for target in array(policy.spec(), "targets") {
                    let fqdn = host_fqdn(policy.namespace(), string(target, "name"));
                    let Some(service) = services.get(&fqdn) else { continue };
                    let ports = array(service.spec(), "ports");
                    let check = |port: &Value, messages: &mut Vec<Message>| {
                        if !supported.is_match(string(port, "name")) {
                            messages.push(port_message(policy, port));
                        }
                    };
                    let target_ports = array(target, "ports");
                    if target_ports.is_empty() {
                        for port in ports {
                            if !is_tcp(port) || !supported.is_match(string(port, "name")) {
                                messages.push(port_message(policy, port));
                            }
                        }
                        continue;
                    }
                    for wanted in target_ports {
                        let wanted_name = string(wanted, "name");
                        if wanted_name.is_empty() {
                            let number = wanted.get("number").and_then(Value::as_i64).unwrap_or(0);
                            let found =
                                ports.iter().filter(|port| is_tcp(port)).find(|port| port_number(port) == number);
                            if let Some(port) = found {
                                check(port, messages);
                            }
                        } else if let Some(port) = ports.iter().find(|port| string(port, "name") == wanted_name) {
                            if is_tcp(port) {
                                check(port, messages);
                            } else {
                                messages.push(port_message(policy, port));
                            }
                        }
                    }
                }
            }
        }
    })
}

fn port_number(port: &Value) -> i64 {
    port.get("port").and_then(Value::as_i64).unwrap_or(0)
}

/// TCP, or no protocol given (Kubernetes' default).
fn is_tcp(port: &Value) -> bool {
    matches!(string(port, "protocol"), "" | "TCP")
}

fn port_message(policy: &Entry, port: &Value) -> Message {
    let target_port = match port.get("targetPort") {
        Some(Value::String(name)) => name.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "0".to_string(),
    };
    jwt_failure_due_to_invalid_service_port_prefix(
        &policy.origin,
        port_number(port),
        string(port, "name"),
        string(port, "protocol"),
        &target_port,
    )
}

pub(super) fn service_role_binding_analyzer() -> Analyzer {
    Analyzer::new("auth.ServiceRoleBindingAnalyzer", &[SERVICE_ROLES, SERVICE_ROLE_BINDINGS], |snapshot, messages| {
        for binding in snapshot.entries(SERVICE_ROLE_BINDINGS) {
            let Some(role_ref) = binding.spec().get("roleRef") else { continue };
            let role = string(role_ref, "name");
            if !snapshot.exists(SERVICE_ROLES, binding.namespace(), role) {
                messages.push(referenced_resource_not_found(&binding.origin, "service role", role));
            }
        }
    })
}

pub(super) fn service_role_services_analyzer() -> Analyzer {
    Analyzer::new("auth.ServiceRoleServicesAnalyzer", &[SERVICE_ROLES, SERVICES], |snapshot, messages| {
        let mut fqdns_by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for service in snapshot.entries(SERVICES) {
            fqdns_by_namespace
                .entry(service.namespace())
                .or_default()
                .push(host_fqdn(service.namespace(), service.name()));
        }
        for role in snapshot.entries(SERVICE_ROLES) {
            let fqdns = fqdns_by_namespace.get(role.namespace()).map(Vec::as_slice).unwrap_or_default();
            for rule in array(role.spec(), "rules") {
                for service in array(rule, "services").iter().filter_map(Value::as_str) {
                    if service != "*" && !fqdns.iter().any(|fqdn| service_matches(service, fqdn)) {
                        messages.push(referenced_resource_not_found(&role.origin, "service", service));
                    }
                }
            }
        }
    })
}

/// Whether a ServiceRole's service names an FQDN: equal, a prefix or a suffix of it (1.4's
/// analyzer), or a match of its `prefix*` / `*suffix` wildcard (1.4's RBAC rule).
fn service_matches(service: &str, fqdn: &str) -> bool {
    let literal = |text: &str| !text.is_empty() && (fqdn == text || fqdn.starts_with(text) || fqdn.ends_with(text));
    if let Some(prefix) = service.strip_suffix('*') {
        return fqdn.starts_with(prefix);
    }
    if let Some(suffix) = service.strip_prefix('*') {
        return fqdn.ends_with(suffix);
    }
    literal(service)
}
