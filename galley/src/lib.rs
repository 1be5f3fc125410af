//! Galley: takes Istio config in from a source (a directory of YAML, or Kubernetes), rejects
//! what is invalid with a reason a person can act on, and serves the rest to Pilot and Mixer
//! over MCP. It also runs the validating admission webhook and a monitoring endpoint, and on
//! Kubernetes keeps the webhook's ValidatingWebhookConfiguration registered (`registration`).
//!
//! `start` runs everything in-process on the given addresses (port 0 works) and returns the
//! bound addresses with a handle that stops it; `main.rs` only parses flags and waits.

pub(crate) mod analysis;
pub(crate) mod metrics;
pub(crate) mod registration;
pub(crate) mod snapshot;
pub(crate) mod source;
pub(crate) mod status;
pub(crate) mod synthetic;
pub(crate) mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use istio_api::pb::istio::mcp::v1alpha1::resource_source_server::ResourceSourceServer;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::kubernetes::{galley_kinds, KubernetesStore};
use istio_config::store::Store;
use istio_mcp::source::McpServer;

use tokio::sync::watch;

pub use registration::Registration;
pub use source::SnapshotSettings;

/// TLS and address of the validation webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub address: SocketAddr,
    pub cert_chain: PathBuf,
    pub key: PathBuf,
}

/// Where Galley reads config from.
#[derive(Clone)]
pub enum Source {
    /// A directory of YAML files (`--configPath`).
    Directory(PathBuf),
    /// A Kubernetes API server: the Istio CRDs plus Services, Endpoints, Pods and Nodes.
    Kubernetes(kube::Client),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Directory(path) => write!(f, "directory {}", path.display()),
            Source::Kubernetes(_) => write!(f, "Kubernetes API"),
        }
    }
}

/// Everything Galley needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where config comes from.
    pub source: Source,
    pub mcp_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    /// `None` disables the webhook.
    pub webhook: Option<WebhookConfig>,
    pub snapshot: SnapshotSettings,
    /// On Kubernetes: keep the webhook's ValidatingWebhookConfiguration (or delete it when
    /// validation is off). Ignored with a directory source.
    pub registration: Option<Registration>,
    /// Analyse the config continuously (`--enableAnalysis`).
    pub enable_analysis: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GalleyError {
    #[error("config source {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("webhook TLS: {0}")]
    Tls(#[from] istio_runtime::tls::TlsError),
    #[error(transparent)]
    Bind(#[from] istio_runtime::listen::BindError),
}

/// A running Galley.
pub struct Running {
    pub mcp_address: SocketAddr,
    pub webhook_address: Option<SocketAddr>,
    pub monitoring_address: SocketAddr,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    /// Stops every server; in-flight streams end.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Resolves once `shutdown` has been called.
    pub async fn stopped(&self) {
        self.shutdown.wait().await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts Galley: the source, the MCP server, the webhook and the monitoring server.
pub async fn start(config: Config) -> Result<Running, GalleyError> {
    let shutdown = istio_runtime::Shutdown::default();
    let registry = istio_runtime::monitoring::registry();
    let metrics = metrics::Metrics::register(&registry);

    let store: Box<dyn Store> = match &config.source {
        Source::Directory(path) => Box::new(
            DirectoryStore::open(path)
                .map_err(|error| GalleyError::Source { path: path.display().to_string(), reason: error.to_string() })?,
        ),
        Source::Kubernetes(client) => Box::new(
            KubernetesStore::new(
                client.clone(),
                istio_config::store::kubernetes::with_ingress(
                    galley_kinds(),
                    source::ingress_settings(&config.snapshot).mode,
                ),
            )
            .map_err(|error| GalleyError::Source { path: "kubernetes".to_string(), reason: error.to_string() })?,
        ),
    };
    let (publish, snapshots) = watch::channel(Arc::new(istio_mcp::collection::Snapshot::default()));
    let events = match &config.source {
        Source::Kubernetes(_) => {
            let counting = metrics.clone();
            istio_config::store::tap(store.watch(), move |event| counting.count_kube_event(event))
        }
        Source::Directory(_) => store.watch(),
    };
    let analysis = config.enable_analysis.then(|| {
        analysis::Analysis::new(match &config.source {
            Source::Kubernetes(client) => Some(status::StatusWriter::start(client.clone())),
            Source::Directory(_) => None,
        })
    });
    tokio::spawn(source::run(events, publish, config.snapshot.clone(), metrics.clone(), analysis.clone()));
    // The store must outlive its watchers; keep it until shutdown.
    let store_guard = shutdown.wait();
    tokio::spawn(async move {
        let _store = store;
        store_guard.await;
    });

    let (mcp_listener, mcp_address) = istio_runtime::listen::bind(config.mcp_address).await?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ResourceSourceServer<McpServer>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(istio_api::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| GalleyError::Source { path: "reflection".to_string(), reason: error.to_string() })?;
    let mcp_service = ResourceSourceServer::new(McpServer::new(snapshots, metrics.mcp.clone()));
    let mcp_shutdown = shutdown.wait();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(mcp_service)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(mcp_listener), async move {
                mcp_shutdown.await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "MCP server stopped");
        }
    });

    let webhook_address = match &config.webhook {
        Some(webhook) => {
            let tls = istio_runtime::tls::server_config(&webhook.cert_chain, &webhook.key, &[b"h2", b"http/1.1"])?;
            let address = istio_runtime::https::serve_tls(
                webhook.address,
                tls,
                webhook::router(metrics.clone()),
                shutdown.wait(),
            )
            .await?;
            Some(address)
        }
        None => None,
    };

    // Registered only once the webhook answers, so the API server never calls an absent one.
    if let (Source::Kubernetes(client), Some(registration)) = (&config.source, &config.registration) {
        tokio::spawn(registration::run(client.clone(), registration.clone(), metrics.clone(), shutdown.wait()));
    }

    let monitoring_shutdown = shutdown.wait();
    let monitoring_address = istio_runtime::monitoring::serve(
        config.monitoring_address,
        match &analysis {
            Some(analysis) => istio_runtime::monitoring::router(registry, "galley").merge(analysis.router()),
            None => istio_runtime::monitoring::router(registry, "galley"),
        },
        async move {
            monitoring_shutdown.await;
        },
    )
    .await?;

    tracing::info!(%mcp_address, ?webhook_address, %monitoring_address, source = ?config.source, "galley started");
    Ok(Running { mcp_address, webhook_address, monitoring_address, shutdown })
}
