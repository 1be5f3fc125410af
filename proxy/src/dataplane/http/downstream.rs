//! Facts about the downstream connection a request arrived on, as the listener found them.

use std::net::SocketAddr;

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    pub remote: SocketAddr,
    /// Where the client was going: the original destination when captured, else the listener.
    pub local: SocketAddr,
    pub tls: bool,
    pub server_name: Option<String>,
    /// The listener serves inbound traffic (the workload's own ports).
    pub inbound: bool,
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
