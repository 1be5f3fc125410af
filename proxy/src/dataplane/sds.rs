//! SDS: certificates and CA bundles fetched over gRPC from the server a TLS context names —
//! in Istio's SDS mode the node agent on a Unix socket, through the bootstrap's `sds-grpc`
//! cluster. One stream per server asks for every secret the current config uses. Each
//! response is checked (certificates and keys must parse) and ACKed, or NACKed with the reason
//! while the previous version stays in use. New connections use a new version at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status;
use hyper_util::rt::TokioIo;
use istio_xds::type_url;
use prost::Message;
use tokio::sync::{mpsc, watch};

use super::config::tls_source::{self, SdsSecret, SdsServer, SecretPart};
use super::upstream::pool::BoxStream;
use super::Shared;

/// One secret as it arrived.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    /// Increases with every update of any secret (0 means never received).
    pub generation: u64,
    pub version: String,
    pub certificate_chain: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub trusted_ca: Option<Vec<u8>>,
    pub updated: SystemTime,
}

/// The secrets the config uses, and what has arrived of them.
pub struct SecretStore {
    secrets: Mutex<HashMap<SdsSecret, StoredSecret>>,
    /// Wanted secret names by server; each server's stream follows its entry.
    wanted: watch::Sender<BTreeMap<SdsServer, BTreeSet<String>>>,
    streams: Mutex<HashMap<SdsServer, tokio::task::JoinHandle<()>>>,
    generation: AtomicU64,
}

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore {
            secrets: Mutex::default(),
            wanted: watch::channel(BTreeMap::new()).0,
            streams: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }
}

impl Drop for SecretStore {
    fn drop(&mut self) {
        for (_, stream) in self.streams.get_mut().unwrap_or_else(|poison| poison.into_inner()).drain() {
            stream.abort();
        }
    }
}

impl SecretStore {
    /// The generation of `secret`'s current version (0: none yet).
    pub fn generation(&self, secret: &SdsSecret) -> u64 {
        self.secrets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(secret)
            .map_or(0, |stored| stored.generation)
    }

    /// One part of a secret's current version.
    pub fn part(&self, secret: &SdsSecret, part: SecretPart) -> Result<Vec<u8>, String> {
        let secrets = self.secrets.lock().unwrap_or_else(|poison| poison.into_inner());
        let stored = secrets
            .get(secret)
            .ok_or_else(|| format!("secret {} has not arrived from {}", secret.name, secret.server))?;
        let (bytes, what) = match part {
            SecretPart::CertificateChain => (&stored.certificate_chain, "certificate chain"),
            SecretPart::PrivateKey => (&stored.private_key, "private key"),
            SecretPart::TrustedCa => (&stored.trusted_ca, "trusted CA"),
        };
        bytes.clone().ok_or_else(|| format!("secret {} has no {what}", secret.name))
    }

    /// Wanted secrets that have not arrived yet.
    pub fn missing(&self) -> Vec<String> {
        let secrets = self.secrets.lock().unwrap_or_else(|poison| poison.into_inner());
        self.wanted
            .borrow()
            .iter()
            .flat_map(|(server, names)| {
                names.iter().map(move |name| SdsSecret { name: name.clone(), server: server.clone() })
            })
            .filter(|secret| !secrets.contains_key(secret))
            .map(|secret| secret.name)
            .collect()
    }

    /// Every secret received, for `/config_dump`.
    pub fn all(&self) -> Vec<(SdsSecret, StoredSecret)> {
        let secrets = self.secrets.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut all: Vec<_> = secrets.iter().map(|(secret, stored)| (secret.clone(), stored.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn store(&self, secret: SdsSecret, mut stored: StoredSecret) {
        stored.generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.secrets.lock().unwrap_or_else(|poison| poison.into_inner()).insert(secret, stored);
    }
}

/// Subscribes to exactly `wanted`: streams start for new servers and stop for servers no
/// longer used; secrets nothing uses are forgotten.
pub fn follow(shared: &Arc<Shared>, wanted: BTreeSet<SdsSecret>) {
    let store = &shared.tls.secrets;
    let mut by_server: BTreeMap<SdsServer, BTreeSet<String>> = BTreeMap::new();
    for secret in &wanted {
        by_server.entry(secret.server.clone()).or_default().insert(secret.name.clone());
    }
    store.secrets.lock().unwrap_or_else(|poison| poison.into_inner()).retain(|secret, _| wanted.contains(secret));
    let mut streams = store.streams.lock().unwrap_or_else(|poison| poison.into_inner());
    streams.retain(|server, stream| {
        let keep = by_server.contains_key(server) && !stream.is_finished();
        if !keep {
            stream.abort();
        }
        keep
    });
    for server in by_server.keys() {
        if !streams.contains_key(server) {
            let stream = tokio::spawn(run(Arc::downgrade(shared), server.clone()));
            streams.insert(server.clone(), stream);
        }
    }
    store.wanted.send_if_modified(|current| {
        let changed = *current != by_server;
        *current = by_server;
        changed
    });
}

/// Keeps a stream to `server` for as long as the data plane lives, reconnecting with backoff.
async fn run(shared: std::sync::Weak<Shared>, server: SdsServer) {
    let mut version = String::new();
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(live) = shared.upgrade() else { return };
        match stream_once(&live, &server, &mut version).await {
            Ok(()) => tracing::warn!("the SDS stream to {server} closed"),
            Err(error) => tracing::warn!("SDS from {server}: {error}"),
        }
        drop(live);
        let jitter = Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Where a server is: a Unix socket path or a TCP address.
#[derive(Debug, Clone, PartialEq)]
enum Endpoint {
    Unix(String),
    Tcp(String),
}

fn endpoint_of(shared: &Shared, server: &SdsServer) -> Result<Endpoint, String> {
    match server {
        SdsServer::Target(target) => Ok(match target.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.trim_start_matches("//").to_string()),
            None => Endpoint::Tcp(target.clone()),
        }),
        SdsServer::Cluster(name) => {
            let cluster = shared
                .bootstrap
                .static_resources
                .as_ref()
                .and_then(|resources| resources.clusters.iter().find(|cluster| &cluster.name == name))
                .ok_or_else(|| format!("the SDS cluster {name} is not a static cluster of the bootstrap"))?;
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
                .ok_or_else(|| format!("the SDS cluster {name} has no endpoint"))?;
            match address {
                address::Address::Pipe(pipe) => Ok(Endpoint::Unix(pipe.path.clone())),
                _ => super::config::cluster::socket_of(Some(&envoy_types::pb::envoy::config::core::v3::Address {
                    address: Some(address.clone()),
                }))
                .map(|(host, port)| Endpoint::Tcp(format!("{host}:{port}")))
                .ok_or_else(|| format!("the SDS cluster {name} needs a pipe or socket address")),
            }
        }
    }
}

async fn channel(endpoint: Endpoint) -> Result<tonic::transport::Channel, String> {
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
        .map_err(|error| format!("connecting: {error}"))
}

async fn stream_once(shared: &Arc<Shared>, server: &SdsServer, version: &mut String) -> Result<(), String> {
    let endpoint = endpoint_of(shared, server)?;
    let mut client = SecretDiscoveryServiceClient::new(channel(endpoint).await?);
    let mut wanted = shared.tls.secrets.wanted.subscribe();
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
    let mut responses = client
        .stream_secrets(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .map_err(|status| format!("opening the stream: {status}"))?
        .into_inner();
    tracing::info!("SDS connected to {server}");
    let mut nonce = String::new();
    loop {
        tokio::select! {
            response = responses.message() => {
                let Some(response) = response.map_err(|status| format!("stream: {status}"))? else { return Ok(()) };
                nonce = response.nonce.clone();
                match apply(shared, server, &names, &response) {
                    Ok(()) => {
                        *version = response.version_info.clone();
                        let _ = sender.send(request(&names, version, &nonce, None));
                        if shared.state() == super::ServerState::PreInitializing {
                            super::xds::check_initialized(shared);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!("rejected secrets version {} from {server}: {reason}", response.version_info);
                        let _ = sender.send(request(&names, version, &nonce, Some(reason)));
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
fn apply(shared: &Shared, server: &SdsServer, wanted: &[String], response: &DiscoveryResponse) -> Result<(), String> {
    let mut checked = Vec::new();
    for (index, any) in response.resources.iter().enumerate() {
        if any.type_url != type_url::SECRET {
            return Err(format!("resource {index} has type {} instead of {}", any.type_url, type_url::SECRET));
        }
        let secret = Secret::decode(any.value.as_slice()).map_err(|error| format!("resource {index}: {error}"))?;
        if !wanted.contains(&secret.name) {
            continue;
        }
        shared.stats.counter(&format!("sds.{}.update_attempt", secret.name)).inc();
        match material_of(&secret) {
            Ok(stored) => checked.push((secret, stored)),
            Err(reason) => {
                shared.stats.counter(&format!("sds.{}.update_rejected", secret.name)).inc();
                return Err(format!("secret {}: {reason}", secret.name));
            }
        }
    }
    for (secret, mut stored) in checked {
        stored.version = response.version_info.clone();
        shared.stats.counter(&format!("sds.{}.update_success", secret.name)).inc();
        shared.dump.lock().unwrap_or_else(|poison| poison.into_inner()).set_secret(&redacted(&secret), &stored.version);
        shared.tls.secrets.store(SdsSecret { name: secret.name, server: server.clone() }, stored);
    }
    Ok(())
}

/// The PEM material of a certificate or validation-context secret, checked.
fn material_of(secret: &Secret) -> Result<StoredSecret, String> {
    let bytes =
        |source: Option<&envoy_types::pb::envoy::config::core::v3::DataSource>, field: &str| match tls_source::data(
            source, field,
        )
        .map_err(|error| error.to_string())?
        {
            Some(tls_source::TlsData::Inline(bytes)) => Ok(Some(bytes)),
            Some(tls_source::TlsData::File(path)) => {
                std::fs::read(&path).map(Some).map_err(|error| format!("{field}: {}: {error}", path.display()))
            }
            _ => Ok(None),
        };
    let mut stored = StoredSecret {
        generation: 0,
        version: String::new(),
        certificate_chain: None,
        private_key: None,
        trusted_ca: None,
        updated: SystemTime::now(),
    };
    match &secret.r#type {
        Some(secret::Type::TlsCertificate(certificate)) => {
            let chain = bytes(certificate.certificate_chain.as_ref(), "tls_certificate.certificate_chain")?
                .ok_or("tls_certificate: the certificate chain is missing")?;
            let key = bytes(certificate.private_key.as_ref(), "tls_certificate.private_key")?
                .ok_or("tls_certificate: the private key is missing")?;
            istio_pki::pem::certificates(&chain)
                .map_err(|error| format!("tls_certificate.certificate_chain: {error}"))?;
            istio_pki::pem::private_key(&key)
                .map(drop)
                .map_err(|error| format!("tls_certificate.private_key: {error}"))?;
            stored.certificate_chain = Some(chain);
            stored.private_key = Some(key);
        }
        Some(secret::Type::ValidationContext(validation)) => {
            let ca = bytes(validation.trusted_ca.as_ref(), "validation_context.trusted_ca")?
                .ok_or("validation_context: trusted_ca is missing")?;
            istio_pki::pem::certificates(&ca).map_err(|error| format!("validation_context.trusted_ca: {error}"))?;
            stored.trusted_ca = Some(ca);
        }
        Some(_) => return Err("only tls_certificate and validation_context secrets are supported".to_string()),
        None => return Err("the secret is empty".to_string()),
    }
    Ok(stored)
}

/// The secret as `/config_dump` shows it: private keys are never printed.
fn redacted(secret: &Secret) -> Secret {
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    let mut shown = secret.clone();
    if let Some(secret::Type::TlsCertificate(certificate)) = &mut shown.r#type {
        certificate.private_key = Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString("[redacted]".to_string())),
            ..Default::default()
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, TlsCertificate,
    };

    fn inline(text: &str) -> Option<DataSource> {
        Some(DataSource { specifier: Some(data_source::Specifier::InlineString(text.into())), ..Default::default() })
    }

    #[test]
    fn certificate_secrets_must_parse() {
        let ca = istio_pki::ca::CertificateAuthority::self_signed("sds test CA").unwrap();
        let issued = ca.issue(&istio_pki::ca::LeafRequest::for_names(["a.example"])).unwrap();
        let good = Secret {
            name: "default".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&issued.cert_chain_pem),
                private_key: inline(&issued.key_pem),
                ..Default::default()
            })),
        };
        let stored = material_of(&good).unwrap();
        assert!(stored.certificate_chain.is_some() && stored.private_key.is_some());
        let shown = redacted(&good);
        let Some(secret::Type::TlsCertificate(certificate)) = shown.r#type else { panic!("not a certificate") };
        assert_eq!(certificate.private_key, inline("[redacted]"));

        let mut bad = good.clone();
        if let Some(secret::Type::TlsCertificate(certificate)) = &mut bad.r#type {
            certificate.private_key = inline("not a key");
        }
        let error = material_of(&bad).unwrap_err();
        assert!(error.starts_with("tls_certificate.private_key: no usable private key"), "{error}");

        let empty_ca = Secret {
            name: "ROOTCA".into(),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline("nothing here"),
                ..Default::default()
            })),
        };
        let error = material_of(&empty_ca).unwrap_err();
        assert_eq!(error, "validation_context.trusted_ca: no PEM certificate found");
    }

    #[test]
    fn missing_secrets_are_reported_by_name() {
        let store = SecretStore::default();
        let server = SdsServer::Cluster("sds-grpc".into());
        store.wanted.send_replace(BTreeMap::from([(server.clone(), BTreeSet::from(["default".to_string()]))]));
        assert_eq!(store.missing(), vec!["default".to_string()]);
        let secret = SdsSecret { name: "default".into(), server };
        let error = store.part(&secret, SecretPart::CertificateChain).unwrap_err();
        assert_eq!(error, "secret default has not arrived from cluster sds-grpc");
        store.store(
            secret.clone(),
            StoredSecret {
                generation: 0,
                version: "1".into(),
                certificate_chain: Some(b"PEM".to_vec()),
                private_key: None,
                trusted_ca: None,
                updated: SystemTime::now(),
            },
        );
        assert!(store.missing().is_empty());
        assert_eq!(store.generation(&secret), 1);
        assert_eq!(store.part(&secret, SecretPart::PrivateKey).unwrap_err(), "secret default has no private key");
    }
}
