//! ServiceEntry rules: hosts, addresses, ports, and how resolution (NONE/STATIC/DNS) constrains
//! endpoints and addresses.

use std::collections::{HashMap, HashSet};

use crate::validation::common::*;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn service_entry(entry: &net::ServiceEntry, report: &mut Report) {
    use net::service_entry::Resolution;
    if entry.hosts.is_empty() {
        report.error("spec.hosts", "service entry must have at least one host");
    }
    for host in &entry.hosts {
        if host == "*" {
            report.error("spec.hosts", format!("invalid host {host}"));
        } else {
            report.check("spec.hosts", validate_wildcard_domain(host));
        }
    }
    let mut cidr_found = false;
    for address in &entry.addresses {
        cidr_found |= address.contains('/');
        report.check("spec.addresses", validate_ip_subnet(address));
    }
    let resolution = Resolution::try_from(entry.resolution).unwrap_or(Resolution::None);
    if cidr_found && !matches!(resolution, Resolution::None | Resolution::Static) {
        report.error("spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types");
    }
    let mut port_names = HashSet::new();
    let mut port_numbers = HashSet::new();
    for (index, port) in entry.ports.iter().enumerate() {
        let field = format!("spec.ports[{index}]");
        if !port_names.insert(port.name.as_str()) {
            report.error(&field, format!("service entry port name {:?} already defined", port.name));
        }
        if !port_numbers.insert(port.number) {
            report.error(&field, format!("service entry port {} already defined", port.number));
        }
        report.check(format!("{field}.name"), validate_port_name(&port.name));
        report.check(format!("{field}.protocol"), validate_protocol(&port.protocol));
        report.check(format!("{field}.number"), validate_port(i64::from(port.number)));
    }
    let endpoint_ports = |report: &mut Report, field: &str, ports: &HashMap<String, u32>| {
        for (name, number) in ports {
            if !port_names.contains(name.as_str()) {
                report.error(
                    format!("{field}.ports"),
                    format!("endpoint port {number} is not defined by the service entry"),
                );
            }
            report.check(format!("{field}.ports"), validate_port_name(name));
            report.check(format!("{field}.ports"), validate_port(i64::from(*number)));
        }
    };
    match resolution {
        Resolution::None => {
            if !entry.endpoints.is_empty() {
                report.error("spec.endpoints", "no endpoints should be provided for resolution type none");
            }
        }
        Resolution::Static => {
            if entry.endpoints.is_empty() {
                report.error("spec.endpoints", "endpoints must be provided if service entry resolution mode is static");
            }
            let mut unix_endpoint = false;
            for (index, endpoint) in entry.endpoints.iter().enumerate() {
                let field = format!("spec.endpoints[{index}]");
                if let Some(path) = endpoint.address.strip_prefix("unix://") {
                    unix_endpoint = true;
                    report.check(format!("{field}.address"), validate_unix_address(path));
                    if !endpoint.ports.is_empty() {
                        report.error(
                            format!("{field}.ports"),
                            format!("unix endpoint {} must not include ports", endpoint.address),
                        );
                    }
                } else {
                    report.check(format!("{field}.address"), validate_ip(&endpoint.address));
                    endpoint_ports(report, &field, &endpoint.ports);
                }
                report.check(format!("{field}.labels"), validate_labels(&endpoint.labels));
            }
            if unix_endpoint && entry.ports.len() != 1 {
                report.error("spec.ports", "exactly 1 service port required for unix endpoints");
            }
        }
        Resolution::Dns => {
            if entry.endpoints.is_empty() {
                for host in &entry.hosts {
                    if validate_fqdn(host).is_err() {
                        report.error(
                            "spec.hosts",
                            "hosts must be FQDN if no endpoints are provided for resolution mode DNS",
                        );
                    }
                }
            }
            for (index, endpoint) in entry.endpoints.iter().enumerate() {
                let field = format!("spec.endpoints[{index}]");
                report.check(format!("{field}.address"), validate_fqdn(&endpoint.address));
                report.check(format!("{field}.labels"), validate_labels(&endpoint.labels));
                endpoint_ports(report, &field, &endpoint.ports);
            }
        }
    }
    let has_plain_tcp_port =
        entry.ports.iter().any(|port| !protocol_is_http(&port.protocol) && !protocol_is_tls(&port.protocol));
    if resolution != Resolution::None && entry.hosts.len() > 1 && has_plain_tcp_port {
        report.error("spec.hosts", "multiple hosts provided with non-HTTP, non-TLS ports");
    }
    report.check("spec.exportTo", validate_export_to(&entry.export_to));
}
