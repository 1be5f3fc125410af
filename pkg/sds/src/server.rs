//! The SDS gRPC server on a Unix socket. Each `StreamSecrets` stream names the secrets it wants
//! (`default`, `ROOTCA`, a gateway's credential); the server answers once any of them exists and
//! again whenever what they hold changes, and ignores acknowledgements of what it sent. Names it
//! does not serve (yet) are left unanswered, as a missing secret is in Envoy. `FetchSecrets` answers once with what there
//! is; delta streams are not offered (Envoy asks for state-of-the-world SDS).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use istio_xds::type_url;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::{SecretProvider, SecretSet};

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("SDS socket {}: {source}", path.display())]
    Socket { path: PathBuf, source: std::io::Error },
}

/// The SDS service over `provider`.
pub struct SdsService<P> {
    provider: Arc<P>,
}

impl<P: SecretProvider> SdsService<P> {
    pub fn new(provider: P) -> Self {
        SdsService { provider: Arc::new(provider) }
    }
}

/// Serves SDS on the Unix socket `path` (replacing a stale socket file; mode 0666 so proxies
/// running as any user can connect) until `shutdown` resolves.
pub async fn serve_unix<P: SecretProvider>(
    path: &Path,
    provider: P,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let socket_error = |source| ServeError::Socket { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(socket_error)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(socket_error(error)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(socket_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(socket_error)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = SecretDiscoveryServiceServer::new(SdsService::new(provider));
    let shown = path.display().to_string();
    Ok(tokio::spawn(async move {
        let router = tonic::transport::Server::builder().add_service(service);
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!("SDS server on {shown}: {error}");
        }
    }))
}

/// The secrets of `names` that `secrets` has, encoded.
fn resources(names: &[String], secrets: &impl SecretSet) -> Vec<Any> {
    names
        .iter()
        .filter_map(|name| secrets.secret(name))
        .map(|secret| Any { type_url: type_url::SECRET.to_string(), value: secret.encode_to_vec() })
        .collect()
}

/// A response carrying `resources`, at the set's version.
fn response(resources: Vec<Any>, secrets: &impl SecretSet, nonce: u64) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: secrets.version().to_string(),
        resources,
        type_url: type_url::SECRET.to_string(),
        nonce: nonce.to_string(),
        ..Default::default()
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<P: SecretProvider> SecretDiscoveryService for SdsService<P> {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented("delta SDS is not served; use StreamSecrets"))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut secrets = self.provider.secrets_for(request.metadata()).await?;
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut names: Vec<String> = Vec::new();
            // What was last sent for `names`; a change elsewhere in the set is not re-sent.
            let mut sent: Option<Vec<Any>> = None;
            let mut nonce = 0;
            loop {
                tokio::select! {
                    request = requests.message() => match request {
                        Ok(Some(request)) => {
                            if let Some(error) = &request.error_detail {
                                tracing::warn!(names = ?request.resource_names, "the proxy rejected secrets: {}", error.message);
                            }
                            if request.resource_names != names {
                                names = request.resource_names;
                                sent = None;
                            }
                        }
                        Ok(None) | Err(_) => return,
                    },
                    changed = secrets.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                }
                let current = secrets.borrow_and_update().clone();
                let Some(current) = current else { continue };
                let found = resources(&names, current.as_ref());
                if found.is_empty() || sent.as_ref() == Some(&found) {
                    continue;
                }
                nonce += 1;
                if sender.send(Ok(response(found.clone(), current.as_ref(), nonce))).await.is_err() {
                    return;
                }
                sent = Some(found);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn fetch_secrets(&self, request: Request<DiscoveryRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        let secrets = self.provider.secrets_for(request.metadata()).await?;
        let current = secrets.borrow().clone();
        let current = current.ok_or_else(|| Status::unavailable("no secrets yet"))?;
        let names = &request.get_ref().resource_names;
        let found = resources(names, current.as_ref());
        if found.is_empty() {
            return Err(Status::not_found(format!("no secret among {names:?}")));
        }
        Ok(Response::new(response(found, current.as_ref(), 1)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    use hyper_util::rt::TokioIo;
    use istio_pki::ca::{CertificateAuthority, LeafRequest};
    use istio_pki::files::KeyCertBundle;
    use tokio::sync::watch;

    use super::*;
    use crate::{SharedSecrets, WorkloadSecrets};

    fn secrets(ca: &CertificateAuthority, version: u64) -> Option<Arc<WorkloadSecrets>> {
        let issued = ca.issue(&LeafRequest::for_names(["spiffe://cluster.local/ns/foo/sa/sleep"])).expect("leaf");
        let bundle = KeyCertBundle {
            cert_chain_pem: issued.cert_chain_pem.into_bytes(),
            key_pem: issued.key_pem.into_bytes(),
            root_cert_pem: ca.root_pem().as_bytes().to_vec(),
        };
        Some(Arc::new(WorkloadSecrets { bundle, version }))
    }

    async fn client(path: PathBuf) -> SecretDiscoveryServiceClient<tonic::transport::Channel> {
        let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        });
        let channel = tonic::transport::Endpoint::from_static("http://sds")
            .connect_with_connector(connector)
            .await
            .expect("connect");
        SecretDiscoveryServiceClient::new(channel)
    }

    fn decode(response: &DiscoveryResponse) -> Vec<Secret> {
        response.resources.iter().map(|any| Secret::decode(any.value.as_slice()).expect("a Secret")).collect()
    }

    #[tokio::test]
    async fn streams_answer_when_there_are_secrets_and_at_every_new_version() {
        let ca = CertificateAuthority::self_signed("SDS server CA").expect("CA");
        let (publish, watch) = watch::channel(None);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sds/uds_path");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = serve_unix(&path, SharedSecrets(watch), async move {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
        let mut client = client(path.clone()).await;

        let (requests, outgoing) = mpsc::channel(4);
        let mut responses = client.stream_secrets(ReceiverStream::new(outgoing)).await.expect("stream").into_inner();
        let ask = |names: &[&str], version: &str, nonce: &str| DiscoveryRequest {
            resource_names: names.iter().map(|name| name.to_string()).collect(),
            type_url: type_url::SECRET.to_string(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        };
        requests.send(ask(&["default"], "", "")).await.expect("send");
        let early = tokio::time::timeout(Duration::from_millis(200), responses.message()).await;
        assert!(early.is_err(), "no answer before there is a certificate");

        publish.send_replace(secrets(&ca, 1));
        let first = responses.message().await.expect("stream").expect("a response");
        assert_eq!((first.version_info.as_str(), first.type_url.as_str()), ("1", type_url::SECRET));
        let secret = &decode(&first)[0];
        assert_eq!(secret.name, "default");
        assert!(matches!(&secret.r#type, Some(secret::Type::TlsCertificate(tls)) if tls.private_key.is_some()));

        // An acknowledgement is not answered; a new version is pushed.
        requests.send(ask(&["default"], "1", &first.nonce)).await.expect("ack");
        let quiet = tokio::time::timeout(Duration::from_millis(200), responses.message()).await;
        assert!(quiet.is_err(), "an ACK gets no answer");
        publish.send_replace(secrets(&ca, 2));
        let second = responses.message().await.expect("stream").expect("a response");
        assert_eq!(second.version_info, "2");
        assert_ne!(second.nonce, first.nonce);

        // ROOTCA on a fetch; unknown names are not served.
        let fetched = client.fetch_secrets(ask(&["ROOTCA"], "", "")).await.expect("fetch").into_inner();
        let root = &decode(&fetched)[0];
        assert!(matches!(&root.r#type, Some(secret::Type::ValidationContext(context)) if context.trusted_ca.is_some()));
        let unknown = client.fetch_secrets(ask(&["gateway-cert"], "", "")).await.expect_err("unknown");
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        // The server stops once its clients have gone.
        drop((responses, requests, client));
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server stops").expect("join");
    }
}
