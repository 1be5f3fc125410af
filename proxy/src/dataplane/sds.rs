//! SDS: certificates and CA bundles fetched over gRPC from the server a TLS context names —
//! in Istio's SDS mode the node agent on a Unix socket, through the bootstrap's `sds-grpc`
//! cluster. A supervisor keeps one stream per server the config wants secrets from; each stream
//! asks for every secret of its server. Each response is checked (certificates and keys must
//! parse) and ACKed, or NACKed with the reason while the previous version stays in use. New
//! connections use a new version at once. What is stored and wanted is `secrets`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status;
use hyper_util::rt::TokioIo;
use istio_runtime::backoff::Backoff;
use istio_xds::type_url;
use tokio::sync::mpsc;

use super::ads::{decode_all, ResponseError, StreamError};
use super::config::tls_source::{FileCredentials, SdsSecret, SdsServer};
use super::secrets::{material_of, redacted, MaterialError};
use super::shared::{ServerState, Shared};
use super::upstream::pool::BoxStream;

/// Why an SDS stream could not run, or a response was rejected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SdsError {
    #[error("the SDS cluster {0} is not a static cluster of the bootstrap")]
    NotStatic(String),
    #[error("the SDS cluster {0} has no endpoint")]
    NoEndpoint(String),
    #[error("the SDS cluster {0} needs a pipe or socket address")]
    BadAddress(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error("secret {name}: {source}")]
    Secret { name: String, source: MaterialError },
    #[error("call credentials {}: {reason}", path.display())]
    Credentials { path: std::path::PathBuf, reason: String },
}

/// The streams of a supervisor, stopped when it stops.
#[derive(Default)]
struct Streams(HashMap<SdsServer, tokio::task::JoinHandle<()>>);

impl Drop for Streams {
    fn drop(&mut self) {
        for (_, stream) in self.0.drain() {
            stream.abort();
        }
    }
}

/// Keeps one stream per server the config wants secrets from (started for new servers, stopped
/// for servers no longer used) for as long as the data plane lives.
pub(crate) async fn supervise(shared: Weak<Shared>) {
    let Some(live) = shared.upgrade() else { return };
    let mut wanted = live.traffic.tls.secrets.wanted();
    drop(live);
    let mut streams = Streams::default();
    loop {
        let servers: BTreeSet<SdsServer> = wanted.borrow_and_update().keys().cloned().collect();
        streams.0.retain(|server, stream| {
            let keep = servers.contains(server) && !stream.is_finished();
            if !keep {
                stream.abort();
            }
            keep
        });
        for server in servers {
            streams.0.entry(server).or_insert_with_key(|server| tokio::spawn(run(shared.clone(), server.clone())));
        }
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps a stream to `server` for as long as the data plane lives, reconnecting with backoff.
async fn run(shared: Weak<Shared>, server: SdsServer) {
    let mut version = String::new();
    let mut backoff = Backoff::reconnect();
    loop {
        let Some(live) = shared.upgrade() else { return };
        match stream_once(&live, &server, &mut version).await {
            Ok(()) => tracing::warn!("the SDS stream to {server} closed"),
            Err(error) => tracing::warn!("SDS from {server}: {error}"),
        }
        drop(live);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Where a server is: a Unix socket path or a TCP address.
#[derive(Debug, Clone, PartialEq)]
enum Endpoint {
    Unix(String),
    Tcp(String),
}

fn endpoint_of(shared: &Shared, server: &SdsServer) -> Result<Endpoint, SdsError> {
    match server {
        SdsServer::Target { uri, .. } => Ok(match uri.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.trim_start_matches("//").to_string()),
            None => Endpoint::Tcp(uri.clone()),
        }),
        SdsServer::Cluster(name) => {
            let cluster = shared
                .bootstrap
                .static_resources
                .as_ref()
                .and_then(|resources| resources.clusters.iter().find(|cluster| &cluster.name == name))
                .ok_or_else(|| SdsError::NotStatic(name.clone()))?;
            let address = cluster
                .load_assignment
                .as_ref()
                .and_then(|assignment| assignment.endpoints.first())
                .and_then(|locality| locality.lb_endpoints.first())
                .and_then(|endpoint| match &endpoint.host_identifier {
                    Some(HostIdentifier::Endpoint(endpoint)) => endpoint.address.as_ref(),
                    _ => None,
                })
                .and_then(|address| address.address.as_ref())
                .ok_or_else(|| SdsError::NoEndpoint(name.clone()))?;
            match address {
                address::Address::Pipe(pipe) => Ok(Endpoint::Unix(pipe.path.clone())),
                _ => super::config::cluster::socket_of(Some(&envoy_types::pb::envoy::config::core::v3::Address {
                    address: Some(address.clone()),
                }))
                .map(|(host, port)| Endpoint::Tcp(format!("{host}:{port}")))
                .ok_or_else(|| SdsError::BadAddress(name.clone())),
            }
        }
    }
}

async fn channel(endpoint: Endpoint) -> Result<tonic::transport::Channel, StreamError> {
    let connector = tower::service_fn(move |_: http::Uri| {
        let endpoint = endpoint.clone();
        async move {
            let stream: BoxStream = match endpoint {
                Endpoint::Unix(path) => Box::pin(tokio::net::UnixStream::connect(&path).await?),
                Endpoint::Tcp(address) => Box::pin(tokio::net::TcpStream::connect(&address).await?),
            };
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://sds-grpc")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(StreamError::Connect)
}

/// Sends the credentials file's content (re-read for every stream, as the kubelet renews a
/// projected token) as the configured header.
fn add_call_credentials(
    metadata: &mut tonic::metadata::MetadataMap,
    credentials: &FileCredentials,
) -> Result<(), SdsError> {
    let content = std::fs::read(&credentials.path)
        .map_err(|source| SdsError::Credentials { path: credentials.path.clone(), reason: source.to_string() })?;
    let bad = |reason: &str| SdsError::Credentials { path: credentials.path.clone(), reason: reason.to_string() };
    if credentials.header.ends_with("-bin") {
        let key = tonic::metadata::BinaryMetadataKey::from_bytes(credentials.header.as_bytes())
            .map_err(|_| bad("not a metadata key"))?;
        let mut value = credentials.prefix.as_bytes().to_vec();
        value.extend_from_slice(&content);
        metadata.insert_bin(key, tonic::metadata::MetadataValue::from_bytes(&value));
    } else {
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(credentials.header.as_bytes())
            .map_err(|_| bad("not a metadata key"))?;
        let text = format!("{}{}", credentials.prefix, String::from_utf8_lossy(&content).trim());
        metadata.insert(key, text.parse().map_err(|_| bad("not a metadata value"))?);
    }
    Ok(())
}

async fn stream_once(shared: &Arc<Shared>, server: &SdsServer, version: &mut String) -> Result<(), SdsError> {
    let endpoint = endpoint_of(shared, server)?;
    let mut client = SecretDiscoveryServiceClient::new(channel(endpoint).await?);
    let mut wanted = shared.traffic.tls.secrets.wanted();
    let names_of = |wanted: &BTreeMap<SdsServer, BTreeSet<String>>| -> Vec<String> {
        wanted.get(server).map(|names| names.iter().cloned().collect()).unwrap_or_default()
    };
    let mut names = names_of(&wanted.borrow_and_update());
    let node = shared.bootstrap.node.clone();
    let request = |names: &[String], version: &str, nonce: &str, error: Option<String>| DiscoveryRequest {
        version_info: version.to_string(),
        node: node.clone(),
        resource_names: names.to_vec(),
        type_url: type_url::SECRET.to_string(),
        response_nonce: nonce.to_string(),
        error_detail: error.map(|message| Status { code: 3, message, details: Vec::new() }),
        ..Default::default()
    };
    let (sender, receiver) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let _ = sender.send(request(&names, version, "", None));
    let mut stream_request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver));
    if let SdsServer::Target { credentials: Some(credentials), .. } = server {
        add_call_credentials(stream_request.metadata_mut(), credentials)?;
    }
    let mut responses = client.stream_secrets(stream_request).await.map_err(StreamError::Open)?.into_inner();
    tracing::info!("SDS connected to {server}");
    let mut nonce = String::new();
    loop {
        tokio::select! {
            response = responses.message() => {
                let Some(response) = response.map_err(StreamError::Broken)? else { return Ok(()) };
                nonce = response.nonce.clone();
                match apply(shared, server, &names, &response) {
                    Ok(()) => {
                        *version = response.version_info.clone();
                        let _ = sender.send(request(&names, version, &nonce, None));
                        if shared.state() == ServerState::PreInitializing {
                            shared.check_initialized();
                        }
                    }
                    Err(reason) => {
                        tracing::warn!("rejected secrets version {} from {server}: {reason}", response.version_info);
                        let _ = sender.send(request(&names, version, &nonce, Some(reason.to_string())));
                    }
                }
            }
            changed = wanted.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let next = names_of(&wanted.borrow_and_update());
                if next.is_empty() {
                    return Ok(());
                }
                if next != names {
                    names = next;
                    let _ = sender.send(request(&names, version, &nonce, None));
                }
            }
        }
    }
}

/// Checks every secret of a response, then stores those the config uses (all or nothing).
fn apply(shared: &Shared, server: &SdsServer, wanted: &[String], response: &DiscoveryResponse) -> Result<(), SdsError> {
    let mut checked = Vec::new();
    for secret in decode_all::<Secret>(&response.resources, type_url::SECRET)? {
        if !wanted.contains(&secret.name) {
            continue;
        }
        shared.traffic.stats.counter(&format!("sds.{}.update_attempt", secret.name)).inc();
        match material_of(&secret) {
            Ok(stored) => checked.push((secret, stored)),
            Err(source) => {
                shared.traffic.stats.counter(&format!("sds.{}.update_rejected", secret.name)).inc();
                return Err(SdsError::Secret { name: secret.name, source });
            }
        }
    }
    for (secret, mut stored) in checked {
        stored.version = response.version_info.clone();
        shared.traffic.stats.counter(&format!("sds.{}.update_success", secret.name)).inc();
        istio_runtime::sync::lock(&shared.dump).set_secret(&redacted(&secret), &stored.version);
        shared.traffic.tls.secrets.store(SdsSecret { name: secret.name, server: server.clone() }, stored);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_credentials_send_the_files_content_binary_or_as_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("istio-token");
        std::fs::write(&token, "header.payload.signature\n").expect("write");
        let mut metadata = tonic::metadata::MetadataMap::new();
        let binary = FileCredentials {
            path: token.clone(),
            header: "istio_sds_credentials_header-bin".into(),
            prefix: String::new(),
        };
        add_call_credentials(&mut metadata, &binary).expect("binary");
        let value = metadata.get_bin("istio_sds_credentials_header-bin").expect("header").to_bytes().expect("bytes");
        assert_eq!(value.as_ref(), b"header.payload.signature\n");
        let bearer = FileCredentials { path: token.clone(), header: "authorization".into(), prefix: "Bearer ".into() };
        add_call_credentials(&mut metadata, &bearer).expect("text");
        assert_eq!(
            metadata.get("authorization").and_then(|value| value.to_str().ok()),
            Some("Bearer header.payload.signature")
        );
        let missing = FileCredentials { path: dir.path().join("absent"), ..bearer };
        let error = add_call_credentials(&mut metadata, &missing).expect_err("no file").to_string();
        assert!(error.starts_with("call credentials ") && error.contains("absent"), "{error}");
    }
}
