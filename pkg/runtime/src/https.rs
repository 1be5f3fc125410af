//! An axum router served over HTTPS (rustls): the admission webhooks of Galley and the sidecar
//! injector both use it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Serves `router` over TLS on `address` until `shutdown` resolves; returns the bound address.
pub async fn serve_tls(
    address: SocketAddr,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, crate::listen::BindError> {
    let (listener, bound) = crate::listen::bind(address).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let (stream, peer) = match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "https accept failed");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let stream = match acceptor.accept(stream).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "https TLS handshake failed");
                        return;
                    }
                };
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(%peer, %error, "https connection ended with an error");
                }
            });
        }
    });
    Ok(bound)
}

/// Why a JSON POST got no usable answer; each names the server and what failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("reading the CA bundle: {0}")]
    CaBundle(#[source] rustls::pki_types::pem::Error),
    #[error("adding a CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    #[error("TLS versions: {0}")]
    TlsVersions(#[source] rustls::Error),
    #[error("connecting to {address}: {source}")]
    Connect { address: SocketAddr, source: std::io::Error },
    #[error("{0:?} is not a server name")]
    ServerName(String),
    #[error("TLS handshake with {server_name} at {address}: {source}")]
    Tls { server_name: String, address: SocketAddr, source: std::io::Error },
    #[error("HTTP with {server_name}: {source}")]
    Http { server_name: String, source: hyper::Error },
    #[error("encoding the request: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("POST {path} to {server_name}: {status}: {body}")]
    Status { path: String, server_name: String, status: hyper::StatusCode, body: String },
    #[error("POST {path} to {server_name}: the answer is not JSON: {source}")]
    NotJson { path: String, server_name: String, source: serde_json::Error },
}

/// A TLS client config (ring, the safe protocol versions, no client certificate) trusting
/// `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// POSTs a JSON document over HTTPS to `address`, verifying the server's certificate against
/// `ca_pem` under `server_name`, and returns the JSON answer. This is how an API server calls
/// an admission webhook; the local platform and the tests use it.
pub async fn post_json(
    address: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, PostError> {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.map_err(PostError::CaBundle)?).map_err(PostError::CaCertificate)?;
    }
    let config = client_config(roots).map_err(PostError::TlsVersions)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|source| PostError::Connect { address, source })?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|_| PostError::ServerName(server_name.to_string()))?;
    let tls = connector.connect(name, tcp).await.map_err(|source| PostError::Tls {
        server_name: server_name.to_string(),
        address,
        source,
    })?;
    let http_error = |source| PostError::Http { server_name: server_name.to_string(), source };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(http_error)?;
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", server_name)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(body)?)))?;
    let response = sender.send_request(request).await.map_err(http_error)?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(http_error)?.to_bytes();
    if !status.is_success() {
        return Err(PostError::Status {
            path: path.to_string(),
            server_name: server_name.to_string(),
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| PostError::NotJson {
        path: path.to_string(),
        server_name: server_name.to_string(),
        source,
    })
}
