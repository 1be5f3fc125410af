//! The VirtualService analyzers: hosts bound to the mesh gateway by more than one
//! VirtualService, destinations (and mirrors) whose host, port or subset does not exist, and
//! gateways that are not defined.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::analyzer::Analyzer;
use super::messages::{
    conflicting_mesh_gateway_virtual_service_hosts, referenced_resource_not_found,
    virtual_service_destination_port_selector_required,
};
use super::snapshot::{
    array, host_fqdn, host_resource_name, scope, string, Entry, Snapshot, DESTINATION_RULES, GATEWAYS, SERVICE_ENTRIES,
    SYNTHETIC_SERVICE_ENTRIES, VIRTUAL_SERVICES,
};

const MESH_GATEWAY: &str = "mesh";

/// Every destination of a VirtualService: TCP, TLS and HTTP routes, and HTTP mirrors.
fn destinations(spec: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for section in ["tcp", "tls", "http"] {
        for route in array(spec, section) {
            found.extend(array(route, "route").iter().filter_map(|weighted| weighted.get("destination")));
            if section == "http" {
                found.extend(route.get("mirror"));
            }
        }
    }
    found
}

fn destination_port(destination: &Value) -> Option<i64> {
    destination.get("port").and_then(|port| port.get("number")).and_then(Value::as_i64)
}

pub(super) fn conflicting_mesh_gateway_hosts_analyzer() -> Analyzer {
    Analyzer::new("virtualservice.ConflictingMeshGatewayHostsAnalyzer", &[VIRTUAL_SERVICES], |snapshot, messages| {
        let mut by_host: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
        for service in snapshot.entries(VIRTUAL_SERVICES) {
            let spec = service.spec();
            let gateways = array(spec, "gateways");
            if !gateways.is_empty() && !gateways.iter().any(|gateway| gateway.as_str() == Some(MESH_GATEWAY)) {
                continue;
            }
            let host_scope = scope(service.namespace(), array(spec, "exportTo"));
            for host in array(spec, "hosts").iter().filter_map(Value::as_str) {
                let scoped = format!("{host_scope}/{}", host_fqdn(service.namespace(), host));
                by_host.entry(scoped).or_default().push(service);
            }
        }
        for (scoped_host, services) in by_host {
            if services.len() < 2 {
                continue;
            }
            let names: Vec<String> =
                services.iter().map(|service| format!("{}/{}", service.namespace(), service.name())).collect();
            for service in services {
                messages.push(conflicting_mesh_gateway_virtual_service_hosts(
                    &service.origin,
                    &names.join(","),
                    &scoped_host,
                ));
            }
        }
    })
}

/// ServiceEntry hosts (explicit and synthetic) by `scope/fqdn`, with their ports.
fn service_entry_hosts(snapshot: &Snapshot) -> BTreeMap<String, Vec<i64>> {
    let mut hosts = BTreeMap::new();
    for entry in snapshot.entries(SERVICE_ENTRIES).iter().chain(snapshot.entries(SYNTHETIC_SERVICE_ENTRIES)) {
        let spec = entry.spec();
        let host_scope = scope(entry.namespace(), array(spec, "exportTo"));
        let ports: Vec<i64> =
            array(spec, "ports").iter().filter_map(|port| port.get("number").and_then(Value::as_i64)).collect();
        for host in array(spec, "hosts").iter().filter_map(Value::as_str) {
            hosts.insert(format!("{host_scope}/{}", host_fqdn(entry.namespace(), host)), ports.clone());
        }
    }
    hosts
}

/// The ports of the ServiceEntry a destination host resolves to, as 1.4 looked it up: this
/// namespace's hosts, then hosts exported everywhere, then visible wildcard hosts.
fn destination_ports<'a>(hosts: &'a BTreeMap<String, Vec<i64>>, namespace: &str, host: &str) -> Option<&'a Vec<i64>> {
    let fqdn = host_fqdn(namespace, host);
    if let Some(ports) = hosts.get(&format!("{namespace}/{fqdn}")).or_else(|| hosts.get(&format!("*/{fqdn}"))) {
        return Some(ports);
    }
    let bare_host = host.strip_prefix('*').unwrap_or(host);
    hosts.iter().find_map(|(scoped, ports)| {
        let (host_scope, entry_host) = scoped.split_once('/')?;
        let suffix = entry_host.strip_prefix('*')?;
        let visible = host_scope == "*" || host_scope == namespace;
        (visible && bare_host.ends_with(suffix)).then_some(ports)
    })
}

pub(super) fn destination_host_analyzer() -> Analyzer {
    Analyzer::new(
        "virtualservice.DestinationHostAnalyzer",
        &[SYNTHETIC_SERVICE_ENTRIES, SERVICE_ENTRIES, VIRTUAL_SERVICES],
        |snapshot, messages| {
            let hosts = service_entry_hosts(snapshot);
            for service in snapshot.entries(VIRTUAL_SERVICES) {
                for destination in destinations(service.spec()) {
                    let host = string(destination, "host");
                    let Some(ports) = destination_ports(&hosts, service.namespace(), host) else {
                        messages.push(referenced_resource_not_found(&service.origin, "host", host));
                        continue;
                    };
                    match destination_port(destination) {
                        None if ports.len() > 1 => messages.push(virtual_service_destination_port_selector_required(
                            &service.origin,
                            host,
                            ports,
                        )),
                        Some(port) if !ports.contains(&port) => messages.push(referenced_resource_not_found(
                            &service.origin,
                            "host:port",
                            &format!("{host}:{port}"),
                        )),
                        _ => {}
                    }
                }
            }
        },
    )
}

pub(super) fn destination_rule_analyzer() -> Analyzer {
    Analyzer::new(
        "virtualservice.DestionationRuleAnalyzer",
        &[VIRTUAL_SERVICES, DESTINATION_RULES],
        |snapshot, messages| {
            let mut subsets = BTreeSet::new();
            for rule in snapshot.entries(DESTINATION_RULES) {
                let host = host_resource_name(rule.namespace(), string(rule.spec(), "host"));
                for subset in array(rule.spec(), "subsets") {
                    subsets.insert((host.clone(), string(subset, "name").to_string()));
                }
            }
            for service in snapshot.entries(VIRTUAL_SERVICES) {
                for destination in destinations(service.spec()) {
                    let subset = string(destination, "subset");
                    if subset.is_empty() {
                        continue;
                    }
                    let host = string(destination, "host");
                    if !subsets.contains(&(host_resource_name(service.namespace(), host), subset.to_string())) {
                        messages.push(referenced_resource_not_found(
                            &service.origin,
                            "host+subset in destinationrule",
                            &format!("{host}+{subset}"),
                        ));
                    }
                }
            }
        },
    )
}

pub(super) fn gateway_analyzer() -> Analyzer {
    Analyzer::new("virtualservice.GatewayAnalyzer", &[GATEWAYS, VIRTUAL_SERVICES], |snapshot, messages| {
        for service in snapshot.entries(VIRTUAL_SERVICES) {
            for gateway in array(service.spec(), "gateways").iter().filter_map(Value::as_str) {
                if gateway == MESH_GATEWAY {
                    continue;
                }
                let (namespace, name) = match gateway.split_once('/') {
                    Some((namespace, name)) => (namespace, name),
                    None => (service.namespace(), gateway),
                };
                if !snapshot.exists(GATEWAYS, namespace, name) {
                    messages.push(referenced_resource_not_found(&service.origin, "gateway", gateway));
                }
            }
        }
    })
}
