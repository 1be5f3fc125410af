//! Citadel (Istio 1.4's `istio_ca`): the mesh's certificate authority. It establishes a CA
//! (a self-signed root kept in `istio-ca-secret`, or a plugged-in one from files) and keeps an
//! `istio.<service-account>` Secret with a workload certificate, key and root for every
//! service account of the namespaces it manages, renewing each before it expires. Pods mount
//! those Secrets at `/etc/certs`. It also serves the CA API (gRPC over TLS on 8060), where node
//! agents trade a CSR and a service-account token for a certificate.
//!
//! `start` runs it in-process; `main.rs` only parses flags.

pub mod authenticate;
pub mod ca_server;
pub mod ca_setup;
pub mod controller;
pub mod dns_names;
pub mod metrics;
mod server_tls;
pub mod targeting;
pub mod workload_secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::routing::get;
use istio_config::object::TypeKey;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::kubernetes::KubernetesStore;
use istio_config::store::{Store, StoreError};
use istio_pki::ca::CertificateAuthority;
use tokio::sync::watch;

pub use ca_setup::CaSource;
pub use controller::ControllerSettings;

/// Where Citadel reads service accounts and namespaces and writes Secrets.
#[derive(Clone)]
pub enum StoreSource {
    /// A directory store (the local platform's).
    Directory(PathBuf),
    /// The Kubernetes API.
    Kubernetes(kube::Client),
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSource::Directory(path) => write!(f, "Directory({})", path.display()),
            StoreSource::Kubernetes(_) => write!(f, "Kubernetes"),
        }
    }
}

/// Everything Citadel needs to start.
#[derive(Debug)]
pub struct Config {
    pub store: StoreSource,
    pub ca: CaSource,
    pub controller: ControllerSettings,
    pub monitoring_address: SocketAddr,
    /// The CA API; `None` serves none (`--grpc-port 0`).
    pub ca_server: Option<ca_server::CaServerSettings>,
    /// Serve the CA API only, without the secret controller (`--server-only`).
    pub server_only: bool,
}

/// Why Citadel could not start.
#[derive(Debug, thiserror::Error)]
pub enum CitadelError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bind(#[from] istio_runtime::listen::BindError),
    #[error(transparent)]
    CaServer(#[from] ca_server::CaServerError),
}

/// A running Citadel.
pub struct Running {
    pub monitoring_address: SocketAddr,
    /// Where the CA API listens, if it runs.
    pub grpc_address: Option<SocketAddr>,
    ca: Arc<ArcSwap<CertificateAuthority>>,
    ready: watch::Receiver<bool>,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    /// The CA Citadel signs with now.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        self.ca.load_full()
    }

    /// Resolves once every Secret of the first pass over the store has been written (at once
    /// when the secret controller does not run).
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Stops the controller and the servers.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The kinds Citadel reads from Kubernetes.
fn watched_kinds() -> Vec<TypeKey> {
    ["ServiceAccount", "Namespace", "Secret"].map(|kind| TypeKey::new("", kind)).to_vec()
}

/// Starts Citadel: the monitoring server (`/metrics`, `/version`, `/ready`), then the CA
/// (returning once it is established), the CA API and the secret controller.
pub async fn start(config: Config) -> Result<Running, CitadelError> {
    let store: Arc<dyn Store> = match &config.store {
        StoreSource::Directory(path) => Arc::new(DirectoryStore::open(path)?),
        StoreSource::Kubernetes(client) => Arc::new(KubernetesStore::new(client.clone(), watched_kinds())?),
    };
    let registry = istio_runtime::monitoring::registry();
    let metrics = metrics::Metrics::register(&registry);
    let namespace = config.controller.targeting.storage_namespace.clone();
    let shutdown = istio_runtime::Shutdown::default();

    // Monitoring first, so a Citadel still without a CA says why on /ready.
    let (ca_problem_sender, ca_problem) = watch::channel(Some("establishing the CA".to_string()));
    let (ready_sender, ready) = watch::channel(false);
    let readiness = (ready.clone(), ca_problem);
    let router = istio_runtime::monitoring::router(registry, "citadel").route(
        "/ready",
        get(move || {
            let problem = readiness.1.borrow().clone();
            let ready = *readiness.0.borrow();
            async move {
                match problem {
                    Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("no CA: {problem}\n")),
                    None if ready => (StatusCode::OK, "ready\n".to_string()),
                    None => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the first pass over the service accounts is not done\n".to_string(),
                    ),
                }
            }
        }),
    );
    let monitoring_address =
        istio_runtime::monitoring::serve(config.monitoring_address, router, shutdown.wait()).await?;

    let ca = establish_until_done(&config, store.as_ref(), &namespace, &ca_problem_sender).await;
    metrics.set_root_expiry(ca.root_pem());
    let ca = Arc::new(ArcSwap::from_pointee(ca));

    let grpc_address = match config.ca_server {
        Some(settings) => Some(ca_server::serve(ca.clone(), settings, metrics.clone(), shutdown.wait()).await?),
        None => None,
    };
    if config.server_only {
        ready_sender.send_replace(true);
    } else {
        let controller =
            controller::Controller::new(store, ca.clone(), config.controller.clone(), metrics, ready_sender);
        tokio::spawn(controller.run(shutdown.wait()));
    }
    tracing::info!(%monitoring_address, ?grpc_address, store = ?config.store, "citadel started");
    Ok(Running { monitoring_address, grpc_address, ca, ready, shutdown })
}

/// How long Citadel waits before trying again to establish its CA.
const CA_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Establishes the CA, trying again while it cannot: plug-in files not mounted yet or not
/// valid (a broken `cacerts` Secret), or a store that does not answer. Until then Citadel
/// issues nothing and changes no Secret, so what it issued before stays as it was, and
/// `/ready` names the problem.
async fn establish_until_done(
    config: &Config,
    store: &dyn Store,
    namespace: &str,
    problem: &watch::Sender<Option<String>>,
) -> CertificateAuthority {
    loop {
        match ca_setup::establish(&config.ca, store, namespace, &config.controller.trust_domain).await {
            Ok(ca) => {
                problem.send_replace(None);
                return ca;
            }
            Err(error) => {
                let reason = error.to_string();
                if problem.borrow().as_deref() != Some(reason.as_str()) {
                    tracing::error!("cannot establish the CA (trying again every {}s): {reason}", CA_RETRY.as_secs());
                }
                problem.send_replace(Some(reason));
                tokio::time::sleep(CA_RETRY).await;
            }
        }
    }
}
