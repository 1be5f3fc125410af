//! Sidecar rules: workload selector, ingress listeners and default endpoints, egress listeners
//! and their `namespace/host` forms.

use std::collections::HashSet;

use super::gateway::namespace_slash_host;
use crate::validation::common::*;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn sidecar(sidecar: &net::Sidecar, report: &mut Report) {
    if let Some(selector) = &sidecar.workload_selector {
        if selector.labels.is_empty() {
            report.error("spec.workloadSelector", "sidecar: workloadSelector must have one or more labels");
        }
        report.check("spec.workloadSelector.labels", validate_labels(&selector.labels));
    }
    if sidecar.egress.is_empty() {
        report.error("spec.egress", "sidecar: missing egress");
    }
    let mut ports = HashSet::new();
    for (index, ingress) in sidecar.ingress.iter().enumerate() {
        let field = format!("spec.ingress[{index}]");
        let Some(port) = &ingress.port else {
            report.error(&field, "sidecar: port is required for ingress listeners");
            continue;
        };
        port_bind_capture(&field, port, &ingress.bind, ingress.capture_mode, report);
        if !ports.insert(port.number) {
            report.error(&field, "sidecar: ports on IP bound listeners must be unique");
        }
        let endpoint_field = format!("{field}.defaultEndpoint");
        if ingress.default_endpoint.is_empty() {
            report.error(endpoint_field, "sidecar: default endpoint must be set for all ingress listeners");
        } else if let Some(path) = ingress.default_endpoint.strip_prefix("unix://") {
            report.check(endpoint_field, validate_unix_address(path));
        } else {
            match ingress.default_endpoint.split_once(':') {
                Some((host, port)) if host.is_empty() || host == "127.0.0.1" => match port.parse::<i64>() {
                    Ok(number) => report.check(endpoint_field, validate_port(number)),
                    Err(error) => report.error(
                        endpoint_field,
                        format!("sidecar: defaultEndpoint port ({port}) is not a number: {error}"),
                    ),
                },
                _ => report.error(endpoint_field, "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>"),
            }
        }
    }
    let mut ports = HashSet::new();
    let mut sockets = HashSet::new();
    let mut catch_all_found = false;
    for (index, egress) in sidecar.egress.iter().enumerate() {
        let field = format!("spec.egress[{index}]");
        match &egress.port {
            None => {
                if catch_all_found {
                    report.error(&field, "sidecar: egress can have only one listener with empty port");
                    continue;
                }
                if index == sidecar.egress.len() - 1 {
                    catch_all_found = true;
                } else {
                    report.error(
                        &field,
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    );
                }
            }
            Some(port) => {
                port_bind_capture(&field, port, &egress.bind, egress.capture_mode, report);
                if port.number == 0 {
                    if !sockets.insert(egress.bind.as_str()) {
                        report.error(&field, "sidecar: unix domain socket values for listeners must be unique");
                    }
                } else if !ports.insert(port.number) {
                    report.error(&field, "sidecar: ports on IP bound listeners must be unique");
                }
            }
        }
        if egress.hosts.is_empty() {
            report.error(format!("{field}.hosts"), "sidecar: egress listener must contain at least one host");
        }
        for host in &egress.hosts {
            report.check(format!("{field}.hosts"), namespace_slash_host(host, false));
        }
    }
}

pub(super) fn port_bind_capture(field: &str, port: &net::Port, bind: &str, capture_mode: i32, report: &mut Report) {
    use net::CaptureMode;
    if let Some(path) = bind.strip_prefix("unix://") {
        if port.number != 0 {
            report.error(format!("{field}.port"), "sidecar: ports on unix bound listeners must be 0");
        }
        report.check(format!("{field}.bind"), validate_unix_address(path));
        if capture_mode != CaptureMode::Default as i32 && capture_mode != CaptureMode::None as i32 {
            report.error(
                format!("{field}.captureMode"),
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            );
        }
    } else {
        if !bind.is_empty() {
            report.check(format!("{field}.bind"), validate_ip(bind));
        }
        report.check(format!("{field}.port.protocol"), validate_protocol(&port.protocol));
        report.check(format!("{field}.port.name"), validate_port_name(&port.name));
        report.check(format!("{field}.port.number"), validate_port(i64::from(port.number)));
    }
}
