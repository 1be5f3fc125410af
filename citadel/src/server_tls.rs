//! The CA API's TLS: Citadel serves with a certificate its own CA issues for the host names
//! clients dial (`istio-ca`, `istio-citadel`, `istio-citadel.NS.svc.cluster.local`), and asks
//! for a client certificate without requiring one (a workload may authenticate with the
//! certificate it already has, or with a token). The certificate is renewed before it expires
//! and whenever the CA changes, as Istio 1.4 did when a handshake found it near expiry; every
//! new connection gets the current one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use istio_pki::ca::{CertificateAuthority, LeafRequest};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// A certificate is renewed this long before it expires (Istio 1.4: one minute).
const EXPIRY_BUFFER: Duration = Duration::from_secs(60);
/// How often the serving certificate is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("issuing the server certificate for {names:?}: {source}")]
    Issue { names: Vec<String>, source: istio_pki::ca::CaError },
    #[error("reading the CA's PEM: {0}")]
    Pem(#[from] istio_pki::pem::PemError),
    #[error("the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The serving certificate and the TLS configuration built around it.
struct Current {
    config: Arc<rustls::ServerConfig>,
    ca: Arc<CertificateAuthority>,
    renew_at: SystemTime,
}

/// Keeps the CA server's TLS configuration current.
pub(crate) struct ServerTls {
    ca: Arc<ArcSwap<CertificateAuthority>>,
    names: Vec<String>,
    ttl: Duration,
    current: ArcSwap<Current>,
}

impl ServerTls {
    /// Issues the first serving certificate for `names`, valid for `ttl`.
    pub(crate) fn new(
        ca: Arc<ArcSwap<CertificateAuthority>>,
        names: Vec<String>,
        ttl: Duration,
    ) -> Result<ServerTls, ServerTlsError> {
        let current = build(&ca.load_full(), &names, ttl)?;
        Ok(ServerTls { ca, names, ttl, current: ArcSwap::from_pointee(current) })
    }

    /// The configuration new connections get.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load().config.clone()
    }

    /// Renews the certificate when it is near expiry or the CA changed; keeps the old one
    /// (and says so) when renewal fails.
    pub(crate) fn refresh(&self) {
        let ca = self.ca.load_full();
        let current = self.current.load();
        if Arc::ptr_eq(&current.ca, &ca) && SystemTime::now() < current.renew_at {
            return;
        }
        match build(&ca, &self.names, self.ttl) {
            Ok(renewed) => {
                tracing::info!(names = ?self.names, "CA server certificate renewed");
                self.current.store(Arc::new(renewed));
            }
            Err(error) => tracing::error!(%error, "renewing the CA server certificate failed; the current one stays"),
        }
    }
}

fn build(ca: &Arc<CertificateAuthority>, names: &[String], ttl: Duration) -> Result<Current, ServerTlsError> {
    let request = LeafRequest { names: names.to_vec(), ttl, common_name: None };
    let issued = ca.issue(&request).map_err(|source| ServerTlsError::Issue { names: names.to_vec(), source })?;
    let chain = istio_pki::pem::certificates(issued.cert_chain_pem.as_bytes())?;
    let key = istio_pki::pem::private_key(issued.key_pem.as_bytes())?;
    let mut roots = rustls::RootCertStore::empty();
    for root in istio_pki::pem::certificates(ca.root_pem().as_bytes())? {
        roots.add(root)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let not_after = SystemTime::now() + ttl;
    // Renew at half the lifetime, and no later than the buffer before expiry.
    let renew_at = (SystemTime::now() + ttl / 2).min(not_after.checked_sub(EXPIRY_BUFFER).unwrap_or(not_after));
    Ok(Current { config: Arc::new(config), ca: ca.clone(), renew_at })
}

/// Accepted TLS connections for the gRPC server, handshakes done off the accept loop.
pub(crate) struct Incoming {
    receiver: mpsc::Receiver<TlsStream<TcpStream>>,
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(context).map(|stream| stream.map(Ok))
    }
}

/// Accepts connections on `listener` until `shutdown`, completing each handshake with the
/// configuration current at that moment; refreshes the certificate as time passes.
pub(crate) fn accept(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Incoming {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut refresh = tokio::time::interval(CHECK_INTERVAL);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                _ = refresh.tick() => {
                    tls.refresh();
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "CA server accept failed");
                    continue;
                }
            };
            // Small gRPC frames must not wait for delayed ACKs (40 ms a request otherwise).
            let _ = stream.set_nodelay(true);
            tls.refresh();
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(stream).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "CA server TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "CA server TLS handshake timed out"),
                }
            });
        }
    });
    Incoming { receiver }
}
