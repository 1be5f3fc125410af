//! Pilot (pilot-discovery): turns services and Istio traffic rules into Envoy xDS v3 for
//! sidecars and gateways, served over ADS, with 1.4's debug endpoints and metrics.
//!
//! `start` runs it in-process on the given addresses (port 0 works) and returns the bound
//! addresses and a handle that stops it; `main.rs` only parses flags.

pub(crate) mod debug;
pub(crate) mod host;
pub mod jwks;
pub(crate) mod mcp;
pub mod meshconfig;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod node;
pub(crate) mod push_status;
pub(crate) mod scope;
pub(crate) mod source;
pub(crate) mod spec_cache;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tls_check;
pub mod xds;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use istio_config::store::directory::DirectoryStore;
use istio_config::store::kubernetes::{pilot_kinds, KubernetesStore};
use istio_config::store::Store;
use tokio::sync::watch;

pub use source::SourceSettings;

/// Where Pilot reads Istio config from.
#[derive(Clone)]
pub enum ConfigSource {
    /// A directory of YAML (`--configDir`).
    Directory(PathBuf),
    /// Galley's MCP server (`configSources` in the mesh config), `HOST:PORT`.
    Mcp(String),
    /// A Kubernetes API server: Istio CRDs plus the Kubernetes service registry (Services,
    /// Endpoints, Pods, Nodes), read directly — the `minimal` profile, without Galley.
    Kubernetes(kube::Client),
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Directory(path) => write!(f, "Directory({})", path.display()),
            ConfigSource::Mcp(address) => write!(f, "Mcp({address})"),
            ConfigSource::Kubernetes(_) => write!(f, "Kubernetes"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: ConfigSource,
    pub grpc_address: SocketAddr,
    pub http_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    pub settings: SourceSettings,
    /// Responses built and queued at once across all proxies (`PILOT_PUSH_THROTTLE`).
    pub push_throttle: usize,
    /// `--secureGrpcAddr`: the same ADS over mutual TLS, with Pilot's certificates.
    pub secure_grpc: Option<SecureGrpc>,
}

/// Where and with which certificates to serve xDS over mutual TLS (1.4's 15011).
#[derive(Debug, Clone)]
pub struct SecureGrpc {
    pub address: SocketAddr,
    /// Holds `cert-chain.pem`, `key.pem` and `root-cert.pem` (Citadel's layout, `/etc/certs`).
    pub cert_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PilotError {
    #[error("config source {0}: {1}")]
    Source(String, String),
    #[error(transparent)]
    Bind(#[from] istio_runtime::listen::BindError),
    #[error("--secureGrpcAddr: {0}")]
    Certificate(#[from] istio_pki::pem::PemFileError),
    #[error("--secureGrpcAddr: TLS with the certificates in {dir}: {source}")]
    SecureGrpcTls { dir: String, source: tonic::transport::Error },
}

pub struct Running {
    pub grpc_address: SocketAddr,
    /// The mutual-TLS xDS address, when `--secureGrpcAddr` is set.
    pub secure_grpc_address: Option<SocketAddr>,
    pub http_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub async fn start(config: Config) -> Result<Running, PilotError> {
    let shutdown = istio_runtime::Shutdown::default();
    let registry = istio_runtime::monitoring::registry();
    let metrics = metrics::Metrics::register(&registry);
    let (publish, pushes) = watch::channel(Arc::new(model::PushContext::default()));

    // A store source (directory or Kubernetes) feeds the source loop and lives until shutdown.
    let run_store = |store: Box<dyn Store>, kubernetes: bool| {
        let events = if kubernetes {
            let counting = metrics.clone();
            istio_config::store::tap(store.watch(), move |event| counting.count_k8s_event(event))
        } else {
            store.watch()
        };
        tokio::spawn(source::run(events, publish.clone(), config.settings.clone(), metrics.clone()));
        let keep = shutdown.wait();
        tokio::spawn(async move {
            let _store = store;
            keep.await;
        });
    };
    match &config.source {
        ConfigSource::Directory(path) => run_store(
            Box::new(
                DirectoryStore::open(path)
                    .map_err(|error| PilotError::Source(path.display().to_string(), error.to_string()))?,
            ),
            false,
        ),
        ConfigSource::Kubernetes(client) => run_store(
            Box::new(
                KubernetesStore::new(
                    client.clone(),
                    istio_config::store::kubernetes::with_ingress(pilot_kinds(), config.settings.mesh.ingress.mode),
                )
                .map_err(|error| PilotError::Source("kubernetes".to_string(), error.to_string()))?,
            ),
            true,
        ),
        ConfigSource::Mcp(address) => {
            let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
            // Galley validated everything it serves; synthetic entries are not user config.
            let settings = SourceSettings { validate: false, ..config.settings.clone() };
            tokio::spawn(source::run(receiver, publish.clone(), settings, metrics.clone()));
            let sink_metrics =
                istio_mcp::sink::SinkMetrics::register(&mut istio_runtime::sync::lock(&registry), "pilot");
            let sink = tokio::spawn(mcp::run(address.clone(), events, sink_metrics));
            let stop = shutdown.wait();
            tokio::spawn(async move {
                stop.await;
                sink.abort();
            });
        }
    }
    drop(publish);

    let connections = Arc::new(xds::ads::Connections::default());
    let (listener, grpc_address) = istio_runtime::listen::bind(config.grpc_address).await?;
    let ads_server =
        xds::ads::AdsServer::new(pushes.clone(), connections.clone(), metrics.clone(), config.push_throttle);
    let ads = ads_service(ads_server.clone());
    let grpc_shutdown = shutdown.wait();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .max_frame_size(Some(xds::ads_service::MAX_FRAME_SIZE))
            .add_service(ads)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
                grpc_shutdown.await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "xDS server stopped");
        }
    });

    let secure_grpc_address = match &config.secure_grpc {
        Some(secure) => Some(serve_secure_grpc(secure, ads_server.clone(), shutdown.wait()).await?),
        None => None,
    };

    let debug_router = debug::router(debug::DebugState { pushes: pushes.clone(), connections });
    let debug_shutdown = shutdown.wait();
    let http_address = istio_runtime::monitoring::serve(config.http_address, debug_router, async move {
        debug_shutdown.await;
    })
    .await?;
    let monitoring_shutdown = shutdown.wait();
    let monitoring_address = istio_runtime::monitoring::serve(
        config.monitoring_address,
        istio_runtime::monitoring::router(registry, "pilot-discovery"),
        async move {
            monitoring_shutdown.await;
        },
    )
    .await?;
    tracing::info!(%grpc_address, %http_address, %monitoring_address, "pilot started");
    Ok(Running { grpc_address, secure_grpc_address, http_address, monitoring_address, shutdown })
}

fn ads_service(server: xds::ads::AdsServer) -> xds::ads_service::AdsService {
    xds::ads_service::AdsService::new(server)
}

/// Serves ADS over mutual TLS: Pilot presents `cert-chain.pem`/`key.pem` and accepts only
/// proxies whose certificate chains to `root-cert.pem`.
async fn serve_secure_grpc(
    secure: &SecureGrpc,
    server: xds::ads::AdsServer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, PilotError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let certificates = istio_pki::files::CertDir::new(&secure.cert_dir).read()?;
    let identity = Identity::from_pem(certificates.cert_chain_pem, certificates.key_pem);
    let root = Certificate::from_pem(certificates.root_cert_pem);
    let tls = ServerTlsConfig::new().identity(identity).client_ca_root(root);
    let (listener, address) = istio_runtime::listen::bind(secure.address).await?;
    let mut builder = tonic::transport::Server::builder()
        .max_frame_size(Some(xds::ads_service::MAX_FRAME_SIZE))
        .tls_config(tls)
        .map_err(|source| PilotError::SecureGrpcTls { dir: secure.cert_dir.display().to_string(), source })?;
    let router = builder.add_service(ads_service(server));
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(%error, "secure xDS server stopped");
        }
    });
    Ok(address)
}
