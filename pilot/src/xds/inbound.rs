//! What a sidecar receives traffic for: one target per inbound port, with the cluster that
//! carries it to the application and the protocol it speaks. Without a Sidecar resource the
//! targets are the ports of the services whose endpoints are this proxy's IPs (traffic arrives on
//! the endpoint's port and goes to the application on 127.0.0.1 at that port). A Sidecar with
//! `ingress` listeners replaces them: each names the port traffic arrives on and, in
//! `defaultEndpoint`, where the application listens (`127.0.0.1:PORT`, `:PORT` or
//! `unix:///path`).

use crate::push_status::Conflict;
use envoy_types::pb::envoy::config::core::v3::{address, Address, Pipe};

use istio_xds::ClusterName;

use super::socket_address;
use crate::model::{Protocol, PushContext};
use crate::node::Proxy;

/// One inbound port of a sidecar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InboundTarget {
    /// The port traffic arrives on (matched as the original destination port).
    pub listen_port: u32,
    /// `inbound|PORT|PORTNAME|HOST`.
    pub cluster: String,
    pub protocol: Protocol,
    /// Where the application listens.
    pub endpoint: Address,
}

/// `defaultEndpoint` as an address; `None` when it is not one of the accepted forms.
pub(crate) fn default_endpoint(text: &str) -> Option<Address> {
    if let Some(path) = text.strip_prefix("unix://") {
        return Some(Address {
            address: Some(address::Address::Pipe(Pipe { path: path.to_string(), ..Default::default() })),
        });
    }
    let (host, port) = text.rsplit_once(':')?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Some(socket_address(host, port.parse().ok()?))
}

/// The inbound targets of a sidecar, one per listen port (the first service wins a port).
pub(crate) fn inbound_targets(push: &PushContext, proxy: &Proxy) -> Vec<InboundTarget> {
    let mut targets: Vec<InboundTarget> = Vec::new();
    let mut served: Vec<(u32, u32, &str, &str)> = Vec::new(); // (service port, target port, port name, host)
    for service in push.services_at(&proxy.ips) {
        for endpoint in service.endpoints.iter().filter(|endpoint| proxy.ips.contains(&endpoint.address)) {
            for port in &service.ports {
                served.push((port.number, endpoint.port_for(port), &port.name, &service.hostname));
                let listen_port = endpoint.port_for(port);
                if targets.iter().any(|t| t.listen_port == listen_port) {
                    if let Some((_, _, _, existing)) =
                        served.iter().find(|(_, target, _, host)| *target == listen_port && *host != service.hostname)
                    {
                        push.status.conflict(
                            Conflict::InboundListener,
                            &proxy.id,
                            &format!(
                                "Conflicting inbound listener:{}:{listen_port}. existing: {existing}, incoming: {}",
                                endpoint.address, service.hostname
                            ),
                        );
                    }
                    continue;
                }
                targets.push(InboundTarget {
                    listen_port,
                    cluster: ClusterName::inbound(port.number, &port.name, &service.hostname).to_string(),
                    protocol: port.protocol.inbound(),
                    endpoint: socket_address("127.0.0.1", listen_port),
                });
            }
        }
    }
    let Some(sidecar) = crate::scope::applied_sidecar(push, proxy).filter(|s| !s.spec.ingress.is_empty()) else {
        return targets;
    };
    let mut ingress_targets = Vec::new();
    for ingress in &sidecar.spec.ingress {
        let Some(port) = &ingress.port else { continue };
        let Some(endpoint) = default_endpoint(&ingress.default_endpoint) else {
            tracing::warn!(sidecar = %sidecar.key(), endpoint = %ingress.default_endpoint, "ingress defaultEndpoint is not HOST:PORT, :PORT or unix://PATH; skipped");
            continue;
        };
        // The service this port belongs to, if the registry knows one; else the Sidecar itself.
        let host = served
            .iter()
            .find(|(number, target, _, _)| *number == port.number || *target == port.number)
            .map(|(_, _, _, host)| host.to_string())
            .unwrap_or_else(|| format!("{}.{}", sidecar.name, sidecar.namespace));
        ingress_targets.push(InboundTarget {
            listen_port: port.number,
            cluster: ClusterName::inbound(port.number, &port.name, &host).to_string(),
            protocol: Protocol::parse(&port.protocol).inbound(),
            endpoint,
        });
    }
    ingress_targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints_accept_the_1_4_forms() {
        assert_eq!(default_endpoint("127.0.0.1:8080"), Some(socket_address("127.0.0.1", 8080)));
        assert_eq!(default_endpoint(":8080"), Some(socket_address("127.0.0.1", 8080)));
        let unix = default_endpoint("unix:///var/run/app.sock").expect("unix");
        assert!(matches!(unix.address, Some(address::Address::Pipe(ref pipe)) if pipe.path == "/var/run/app.sock"));
        assert_eq!(default_endpoint("nonsense"), None);
    }
}
