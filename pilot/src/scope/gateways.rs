//! Which Gateways and servers apply, Istio 1.4's way: the Gateways that select a router proxy
//! by label, how each server handles its traffic (from its port protocol and TLS mode), which
//! servers a route configuration name stands for, and which VirtualService hosts a server's
//! hosts (`host`, `ns/host`, `./host`) let bind through it. Building the listeners and routes
//! from the answers is the xDS generators' job.

use istio_api::pb::istio::networking::v1alpha3 as net;
use net::server::tls_options::TlSmode;

use crate::model::{Named, Protocol, PushContext};
use crate::node::Proxy;

/// How a gateway server's traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerMode {
    /// HTTP in the clear, routed by `http.PORT`.
    PlainHttp,
    /// HTTPS terminated here, routed by `https.PORT.NAME.GATEWAY.NS`.
    TerminatedHttps,
    /// TLS terminated here, then the VirtualServices' `tcp` routes.
    TerminatedTcp,
    /// TLS passed through by SNI to the VirtualServices' `tls` routes.
    Passthrough,
    /// TLS passed through by SNI to the cluster the SNI names.
    AutoPassthrough,
    /// Plain TCP to the `tcp` routes.
    Tcp,
}

/// The mode of a server, from its port protocol and TLS settings.
pub(crate) fn server_mode(server: &net::Server) -> ServerMode {
    let protocol = Protocol::parse(server.port.as_ref().map_or("", |p| p.protocol.as_str()));
    let tls_mode = server.tls.as_ref().map(|tls| TlSmode::try_from(tls.mode).unwrap_or(TlSmode::Passthrough));
    let terminates = matches!(tls_mode, Some(TlSmode::Simple | TlSmode::Mutual | TlSmode::IstioMutual));
    match protocol {
        Protocol::Https if terminates => ServerMode::TerminatedHttps,
        Protocol::Https | Protocol::Tls if tls_mode == Some(TlSmode::AutoPassthrough) => ServerMode::AutoPassthrough,
        Protocol::Https => ServerMode::Passthrough,
        Protocol::Tls if terminates => ServerMode::TerminatedTcp,
        Protocol::Tls => ServerMode::Passthrough,
        protocol if protocol.is_http() => ServerMode::PlainHttp,
        _ => ServerMode::Tcp,
    }
}

/// RDS name of a terminated HTTPS server: `https.PORT.PORTNAME.GATEWAY.NAMESPACE`.
pub(crate) fn https_route_name(gateway: &Named<net::Gateway>, server: &net::Server) -> String {
    let port = server.port.clone().unwrap_or_default();
    format!("https.{}.{}.{}.{}", port.number, port.name, gateway.name, gateway.namespace)
}

/// Gateways that select this proxy by label.
pub(crate) fn gateways_for<'a>(push: &'a PushContext, proxy: &Proxy) -> impl Iterator<Item = &'a Named<net::Gateway>> {
    let proxy = proxy.clone();
    push.gateways.iter().filter(move |gateway| proxy.matches(&gateway.spec.selector))
}

/// The servers (with their gateway) that a route configuration name stands for: every plain
/// HTTP server on the port for `http.PORT`, the one named server for `https.…`.
pub(crate) fn servers_for_route<'a>(
    push: &'a PushContext,
    proxy: &Proxy,
    route_name: &str,
) -> Vec<(&'a Named<net::Gateway>, &'a net::Server)> {
    let plain_port: Option<u32> = route_name.strip_prefix("http.").and_then(|port| port.parse().ok());
    let mut servers = Vec::new();
    for gateway in gateways_for(push, proxy) {
        for server in &gateway.spec.servers {
            let Some(port) = &server.port else { continue };
            let wanted = match (plain_port, server_mode(server)) {
                (Some(number), ServerMode::PlainHttp) => port.number == number,
                (None, ServerMode::TerminatedHttps) => https_route_name(gateway, server) == route_name,
                _ => false,
            };
            if wanted {
                servers.push((gateway, server));
            }
        }
    }
    servers
}

/// Whether a server host (`host`, `ns/host`, `./host`, `*/host`; the host may be `*` or a
/// `*.suffix` wildcard) lets a VirtualService host from `vs_namespace` bind through it.
pub(crate) fn server_host_admits(
    gateway_namespace: &str,
    server_host: &str,
    vs_namespace: &str,
    vs_host: &str,
) -> bool {
    let (namespace, host) = server_host.split_once('/').unwrap_or(("*", server_host));
    let namespace_ok = match namespace {
        "*" => true,
        "." => vs_namespace == gateway_namespace,
        namespace => vs_namespace == namespace,
    };
    namespace_ok && istio_config::validation::host_matches(host, vs_host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(protocol: &str, mode: Option<TlSmode>) -> net::Server {
        net::Server {
            port: Some(net::Port { number: 443, name: "https".into(), protocol: protocol.into() }),
            hosts: vec!["*".into()],
            tls: mode.map(|mode| net::server::TlsOptions { mode: mode as i32, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn server_modes_follow_protocol_and_tls_mode() {
        assert_eq!(server_mode(&server("HTTP", None)), ServerMode::PlainHttp);
        assert_eq!(server_mode(&server("HTTP", Some(TlSmode::Passthrough))), ServerMode::PlainHttp);
        assert_eq!(server_mode(&server("HTTPS", Some(TlSmode::Simple))), ServerMode::TerminatedHttps);
        assert_eq!(server_mode(&server("HTTPS", Some(TlSmode::Mutual))), ServerMode::TerminatedHttps);
        assert_eq!(server_mode(&server("HTTPS", Some(TlSmode::Passthrough))), ServerMode::Passthrough);
        assert_eq!(server_mode(&server("TLS", Some(TlSmode::AutoPassthrough))), ServerMode::AutoPassthrough);
        assert_eq!(server_mode(&server("TLS", Some(TlSmode::Simple))), ServerMode::TerminatedTcp);
        assert_eq!(server_mode(&server("TCP", None)), ServerMode::Tcp);
    }

    #[test]
    fn namespaced_server_hosts_admit_only_their_namespace() {
        assert!(server_host_admits("istio-system", "*", "default", "bookinfo.com"));
        assert!(server_host_admits("istio-system", "*/bookinfo.com", "default", "bookinfo.com"));
        assert!(server_host_admits("istio-system", "default/*.example.com", "default", "a.example.com"));
        assert!(!server_host_admits("istio-system", "prod/*.example.com", "default", "a.example.com"));
        assert!(server_host_admits("istio-system", "./uk.example.com", "istio-system", "uk.example.com"));
        assert!(!server_host_admits("istio-system", "./uk.example.com", "default", "uk.example.com"));
        assert!(!server_host_admits("istio-system", "bookinfo.com", "default", "other.com"));
    }

    #[test]
    fn https_routes_are_named_like_istio() {
        let gateway =
            Named { name: "mygateway".into(), namespace: "istio-system".into(), spec: net::Gateway::default() };
        assert_eq!(
            https_route_name(&gateway, &server("HTTPS", Some(TlSmode::Simple))),
            "https.443.https.mygateway.istio-system"
        );
    }
}
