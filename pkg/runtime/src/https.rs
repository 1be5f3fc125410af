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
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
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

/// POSTs a JSON document over HTTPS to `address`, verifying the server's certificate against
/// `ca_pem` under `server_name`, and returns the JSON answer. This is how an API server calls
/// an admission webhook; the local platform and the tests use it.
pub async fn post_json(
    address: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.context("reading the CA bundle")?).context("adding a CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name:?} is not a server name"))?;
    let tls =
        connector.connect(name, tcp).await.with_context(|| format!("TLS handshake with {server_name} at {address}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", server_name)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(body)?)))?;
    let response = sender.send_request(request).await.with_context(|| format!("POST {path} to {server_name}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!("POST {path} to {server_name}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).with_context(|| format!("POST {path} to {server_name}: the answer is not JSON"))
}
