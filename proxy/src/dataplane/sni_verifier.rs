//! istio-proxy's `sni_verifier` network filter, for an egress gateway in front of an SNI proxy:
//! behind a chain that terminates the client's (mutual) TLS, the bytes that follow must open
//! with the application's own ClientHello, and its SNI must be the one the outer TLS was opened
//! with. The outer SNI is what the gateway matched, logged and showed Mixer; the inner one is
//! where the SNI proxy behind the gateway will connect. A client that gives two different names
//! is cut off, so it cannot be let through under one name and reach another.

use super::inspect::inspect;
use super::stats::Stats;
use super::upstream::pool::BoxStream;

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The decrypted bytes do not start with a TLS ClientHello.
    NotTls,
    /// The inner ClientHello names no server.
    NoInnerSni,
    /// The inner and outer SNIs differ.
    Mismatch { outer: Option<String>, inner: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotTls => write!(f, "no TLS ClientHello behind the outer TLS"),
            Refusal::NoInnerSni => write!(f, "the inner ClientHello has no SNI"),
            Refusal::Mismatch { outer, inner } => {
                write!(f, "inner SNI {inner:?} is not the outer SNI {:?}", outer.as_deref().unwrap_or(""))
            }
        }
    }
}

/// Reads the inner ClientHello of `stream` (the decrypted connection) and hands the stream back,
/// with those bytes still to be read, when its SNI is `outer_sni`. Counts istio-proxy's
/// `sni_verifier.*` stats.
pub(crate) async fn verify(stream: BoxStream, outer_sni: Option<&str>, stats: &Stats) -> Result<BoxStream, Refusal> {
    let (found, stream) = inspect(stream, true, false).await;
    let count = |name: &str| stats.counter(&format!("sni_verifier.{name}")).inc();
    if !found.tls {
        count("tls_not_found");
        return Err(Refusal::NotTls);
    }
    count("tls_found");
    let Some(inner) = found.server_name else {
        count("inner_sni_not_found");
        return Err(Refusal::NoInnerSni);
    };
    count("inner_sni_found");
    if outer_sni.is_some_and(|outer| outer.eq_ignore_ascii_case(&inner)) {
        Ok(stream)
    } else {
        count("snis_do_not_match");
        Err(Refusal::Mismatch { outer: outer_sni.map(str::to_string), inner })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn client_hello(server_name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("hello");
        hello
    }

    async fn verify_bytes(bytes: &[u8], outer: Option<&str>, stats: &Stats) -> Result<Vec<u8>, Refusal> {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        near.write_all(bytes).await.expect("send");
        drop(near);
        let mut stream = verify(Box::pin(far), outer, stats).await?;
        let mut replayed = Vec::new();
        stream.read_to_end(&mut replayed).await.expect("replay");
        Ok(replayed)
    }

    fn stat(stats: &Stats, name: &str) -> u64 {
        stats.counter(&format!("sni_verifier.{name}")).value()
    }

    #[tokio::test]
    async fn the_same_name_passes_with_the_hello_replayed() {
        let stats = Stats::default();
        let hello = client_hello("en.wikipedia.org");
        let replayed = verify_bytes(&hello, Some("EN.wikipedia.org"), &stats).await.expect("allowed");
        assert_eq!(replayed, hello);
        assert_eq!((stat(&stats, "tls_found"), stat(&stats, "inner_sni_found")), (1, 1));
        assert_eq!(stat(&stats, "snis_do_not_match"), 0);
    }

    #[tokio::test]
    async fn another_name_or_no_outer_name_is_refused() {
        let stats = Stats::default();
        let hello = client_hello("de.wikipedia.org");
        let refused = verify_bytes(&hello, Some("en.wikipedia.org"), &stats).await.unwrap_err();
        assert_eq!(
            refused,
            Refusal::Mismatch { outer: Some("en.wikipedia.org".into()), inner: "de.wikipedia.org".into() }
        );
        assert!(verify_bytes(&hello, None, &stats).await.is_err());
        assert_eq!(stat(&stats, "snis_do_not_match"), 2);
    }

    #[tokio::test]
    async fn plaintext_behind_the_tls_is_refused() {
        let stats = Stats::default();
        let refused = verify_bytes(b"GET / HTTP/1.1\r\n\r\n", Some("en.wikipedia.org"), &stats).await.unwrap_err();
        assert_eq!(refused, Refusal::NotTls);
        assert_eq!(stat(&stats, "tls_not_found"), 1);
    }
}
