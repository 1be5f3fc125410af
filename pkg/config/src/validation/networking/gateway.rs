//! Gateway rules: servers, ports and protocols, host forms (`ns/host`), bind addresses and the
//! TLS modes with the files each requires.

use std::collections::HashSet;

use crate::validation::common::*;
use crate::validation::invalid::Invalid;
use crate::validation::report::Report;
use istio_api::pb::istio::networking::v1alpha3 as net;

pub(super) fn gateway(gw: &net::Gateway, report: &mut Report) {
    if gw.servers.is_empty() {
        report.error("spec.servers", "gateway must have at least one server");
    }
    for (index, server) in gw.servers.iter().enumerate() {
        gateway_server(&format!("spec.servers[{index}]"), server, report);
    }
    let mut port_names = HashSet::new();
    for server in &gw.servers {
        if let Some(port) = &server.port {
            if !port_names.insert(port.name.as_str()) {
                report.error(
                    "spec.servers",
                    format!("port names in servers must be unique: duplicate name {}", port.name),
                );
            }
        }
    }
    report.check("spec.selector", validate_labels(&gw.selector));
}

pub(super) fn gateway_server(field: &str, server: &net::Server, report: &mut Report) {
    use net::server::tls_options::TlSmode;
    if server.hosts.is_empty() {
        report.error(format!("{field}.hosts"), "server config must contain at least one host");
    }
    for host in &server.hosts {
        report.check(format!("{field}.hosts"), namespace_slash_host(host, true));
    }
    let port_ok = match &server.port {
        None => {
            report.error(format!("{field}.port"), "port is required");
            false
        }
        Some(port) => {
            let mut ok = true;
            if !protocol_is_known(&port.protocol) {
                report.error(
                    format!("{field}.port.protocol"),
                    format!(
                        "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, MONGO, REDIS, MYSQL, TCP",
                        port.protocol
                    ),
                );
                ok = false;
            }
            if port.number > 0 {
                report.check(format!("{field}.port.number"), validate_port(i64::from(port.number)));
            }
            if port.name.is_empty() {
                report.error(format!("{field}.port.name"), "port name must be set");
                ok = false;
            }
            ok
        }
    };
    if !server.bind.is_empty() && !server.bind.starts_with("unix://") {
        report.check(format!("{field}.bind"), validate_ip(&server.bind));
    }
    if let Some(tls) = &server.tls {
        let field = format!("{field}.tls");
        let mode = tls.mode;
        if mode == TlSmode::IstioMutual as i32 {
            if !tls.server_certificate.is_empty() {
                report.error(&field, "ISTIO_MUTUAL TLS cannot have associated server certificate");
            }
            if !tls.private_key.is_empty() {
                report.error(&field, "ISTIO_MUTUAL TLS cannot have associated private key");
            }
            if !tls.ca_certificates.is_empty() {
                report.error(&field, "ISTIO_MUTUAL TLS cannot have associated CA bundle");
            }
        } else if (mode == TlSmode::Simple as i32 || mode == TlSmode::Mutual as i32) && !tls.credential_name.is_empty()
        {
            // credentials come from a secret; no files are needed
        } else if mode == TlSmode::Simple as i32 {
            if tls.server_certificate.is_empty() {
                report.error(format!("{field}.serverCertificate"), "SIMPLE TLS requires a server certificate");
            }
            if tls.private_key.is_empty() {
                report.error(format!("{field}.privateKey"), "SIMPLE TLS requires a private key");
            }
        } else if mode == TlSmode::Mutual as i32 {
            if tls.server_certificate.is_empty() {
                report.error(format!("{field}.serverCertificate"), "MUTUAL TLS requires a server certificate");
            }
            if tls.private_key.is_empty() {
                report.error(format!("{field}.privateKey"), "MUTUAL TLS requires a private key");
            }
            if tls.ca_certificates.is_empty() {
                report.error(format!("{field}.caCertificates"), "MUTUAL TLS requires a client CA bundle");
            }
        }
    }
    if port_ok {
        let protocol = server.port.as_ref().map(|port| port.protocol.as_str()).unwrap_or_default();
        match &server.tls {
            None if protocol_is_tls(protocol) => {
                report.error(format!("{field}.tls"), "server must have TLS settings for HTTPS/TLS protocols")
            }
            Some(tls) if !protocol_is_tls(protocol) => {
                let only_redirect = tls.https_redirect
                    && tls.server_certificate.is_empty()
                    && tls.private_key.is_empty()
                    && tls.credential_name.is_empty();
                if !(protocol_is_http(protocol) && only_redirect) {
                    report.error(format!("{field}.tls"), "server cannot have TLS settings for non HTTPS/TLS ports");
                }
            }
            _ => {}
        }
    }
}

/// `ns/host` (sidecars and gateways) or a bare host (gateways only, deprecated form).
pub(super) fn namespace_slash_host(host: &str, is_gateway: bool) -> Result<(), Invalid> {
    let Some((namespace, name)) = host.split_once('/') else {
        return if is_gateway {
            validate_wildcard_domain(host)
        } else {
            Err(Invalid::NotNamespaceSlashHost(host.to_string()))
        };
    };
    if namespace.is_empty() || name.is_empty() {
        return Err(Invalid::EmptyNamespaceOrHost);
    }
    let special: &[&str] = if is_gateway { &["*", "."] } else { &["*", ".", "~"] };
    if !special.contains(&namespace) && !is_dns1123_label(namespace) {
        let place = if is_gateway { "gateway" } else { "sidecar" };
        return Err(Invalid::HostNamespace { namespace: namespace.to_string(), place });
    }
    validate_wildcard_domain(name)
}
