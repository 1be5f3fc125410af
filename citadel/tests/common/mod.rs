//! Helpers the Citadel tests (and its benchmark) share.

#![allow(dead_code)]

use std::time::Duration;

use citadel::authenticate::Authenticator;
use citadel::ca_server::CaServerSettings;
use citadel::dns_names::DnsNames;
use citadel::targeting::Targeting;
use citadel::workload_secret::Rotation;
use citadel::{CaSource, Config, ControllerSettings, StoreSource};
use istio_pki::token::{TokenVerifier, CITADEL_AUDIENCE, LOCAL_ISSUER};

/// Citadel serving only the CA API on loopback, over a directory store at `store`, with `ca`:
/// callers authenticate with a client certificate or a token signed by `token_public_key`;
/// lifetimes default to an hour and may go up to `max_ttl`.
pub(crate) fn ca_api_only(store: &std::path::Path, ca: CaSource, token_public_key: &str, max_ttl: Duration) -> Config {
    let verifier = TokenVerifier::new(token_public_key, LOCAL_ISSUER, CITADEL_AUDIENCE).expect("verifier");
    Config {
        store: StoreSource::Directory(store.to_path_buf()),
        ca,
        controller: ControllerSettings {
            targeting: Targeting {
                storage_namespace: "istio-system".into(),
                enabled_by_default: true,
                listened: vec![],
            },
            dns_names: DnsNames::none(),
            trust_domain: "cluster.local".into(),
            rotation: Rotation { ttl: Duration::from_secs(3600), grace_ratio: 0.5, min_grace: Duration::ZERO },
            self_signed: true,
            extra_roots: None,
        },
        monitoring_address: "127.0.0.1:0".parse().expect("address"),
        ca_server: Some(CaServerSettings {
            address: "127.0.0.1:0".parse().expect("address"),
            hostnames: vec![
                "istio-ca".to_string(),
                "istio-citadel".to_string(),
                "istio-citadel.istio-system.svc.cluster.local".to_string(),
            ],
            default_ttl: Duration::from_secs(3600),
            max_ttl,
            authenticators: vec![
                Authenticator::ClientCertificate,
                Authenticator::LocalToken { verifier, trust_domain: "cluster.local".to_string() },
            ],
        }),
        server_only: true,
    }
}

/// `GET /metrics` on Citadel's monitoring server: the whole HTTP response.
pub(crate) async fn metrics(address: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: citadel\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
