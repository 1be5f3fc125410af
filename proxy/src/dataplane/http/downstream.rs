//! Facts about the downstream connection a request arrived on, as the listener found them.

use std::net::SocketAddr;

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    pub remote: SocketAddr,
    /// Where the client was going: the original destination when captured, else the listener.
    pub local: SocketAddr,
    pub tls: bool,
    /// On a TLS connection, the names the client's certificate gives it (empty without one).
    pub peer: Option<std::sync::Arc<PeerIdentity>>,
    pub server_name: Option<String>,
    /// The listener serves inbound traffic (the workload's own ports).
    pub inbound: bool,
}

/// The names of a TLS client, from its certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerIdentity(pub istio_pki::certificate::PeerNames);

impl PeerIdentity {
    /// From the certificates a TLS client presented (the first is its own).
    pub(crate) fn from_certificates(certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> PeerIdentity {
        PeerIdentity(certificates.and_then(<[_]>::first).map(istio_pki::certificate::peer_names).unwrap_or_default())
    }

    /// The names RBAC's `authenticated.principal_name` is matched against, in Envoy's order:
    /// URI SANs, then DNS SANs, then the subject.
    pub(crate) fn principal_names(&self) -> impl Iterator<Item = &str> {
        self.0.uris.iter().chain(&self.0.dns).map(String::as_str).chain(std::iter::once(self.0.subject.as_str()))
    }
}

impl Downstream {
    /// `https` on a TLS connection, else `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}
