//! istio-rs's sidecar injector, Istio 1.4's `sidecar-injector`: a mutating admission webhook
//! that adds the `istio-init` and `istio-proxy` containers to pods, configured like 1.4's
//! (`config` and `values` of the `istio-sidecar-injector` ConfigMap, plus the mesh config).
//! The injection itself is `istio-inject`'s, which `istioctl kube-inject` uses offline too. On
//! Kubernetes it also keeps its MutatingWebhookConfiguration's CA bundle (`ca_bundle`).

pub(crate) mod ca_bundle;
pub(crate) mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use istio_inject::{ConfigFiles, Injector};

pub use ca_bundle::CaBundlePatching;

/// How to run the injector.
#[derive(Debug, Clone)]
pub struct Settings {
    pub files: ConfigFiles,
    pub webhook_address: SocketAddr,
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    pub monitoring_address: SocketAddr,
    /// How often the config files are checked for changes.
    pub reload_interval: Duration,
    /// On Kubernetes: the MutatingWebhookConfiguration whose CA bundle the injector keeps.
    pub ca_bundle: Option<CaBundlePatching>,
    /// The kubeconfig for that (none: in the cluster, from the pod's service account).
    pub kubeconfig: Option<PathBuf>,
}

/// A running injector.
pub struct Running {
    pub webhook_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

/// Why the injector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] istio_inject::LoadError),
    #[error("loading the webhook's TLS certificate: {0}")]
    Tls(#[from] istio_runtime::tls::TlsError),
    #[error("{server}: {source}")]
    Bind { server: &'static str, source: istio_runtime::listen::BindError },
    #[error("the Kubernetes client for the webhook configuration: {0}")]
    Kube(String),
}

/// A client from `--kubeconfig`, or the pod's own service account.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, StartError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|error| StartError::Kube(format!("{}: {error}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|error| StartError::Kube(format!("{}: {error}", path.display())))?
        }
        None => kube::Config::incluster().map_err(|error| StartError::Kube(error.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|error| StartError::Kube(error.to_string()))
}

/// Loads the configuration (failing at once if it is invalid) and starts serving.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let injector = Arc::new(ArcSwap::from_pointee(settings.files.load()?));
    let registry = istio_runtime::monitoring::registry();
    let metrics = webhook::Metrics::register(&registry);
    let shutdown = istio_runtime::Shutdown::default();
    let tls = istio_runtime::tls::server_config(&settings.cert_chain, &settings.key, &[b"h2", b"http/1.1"])?;
    let state = webhook::WebhookState { injector: injector.clone(), metrics };
    let webhook_address =
        istio_runtime::https::serve_tls(settings.webhook_address, tls, webhook::router(state), shutdown.wait())
            .await
            .map_err(|source| StartError::Bind { server: "webhook", source })?;
    let monitoring_address = istio_runtime::monitoring::serve(
        settings.monitoring_address,
        istio_runtime::monitoring::router(registry, "sidecar-injector"),
        shutdown.wait(),
    )
    .await
    .map_err(|source| StartError::Bind { server: "monitoring server", source })?;
    tokio::spawn(reload(settings.files.clone(), settings.reload_interval, injector, shutdown.wait()));
    if let Some(patching) = settings.ca_bundle.clone() {
        let client = kube_client(settings.kubeconfig.as_deref()).await?;
        tokio::spawn(ca_bundle::run(client, patching, shutdown.wait()));
    }
    Ok(Running { webhook_address, monitoring_address, shutdown })
}

/// Re-reads the config files when they change; a bad change is logged and the last good
/// configuration stays in force.
async fn reload(
    files: ConfigFiles,
    interval: Duration,
    injector: Arc<ArcSwap<Injector>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut last = files.fingerprint();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut shutdown => return,
        }
        let current = files.fingerprint();
        if current == last {
            continue;
        }
        last = current;
        match files.load() {
            Ok(updated) => {
                tracing::info!("injector configuration reloaded");
                injector.store(Arc::new(updated));
            }
            Err(error) => tracing::warn!("keeping the previous injector configuration: {error:#}"),
        }
    }
}
