//! istio-rs's sidecar injector, Istio 1.4's `sidecar-injector`: a mutating admission webhook
//! that adds the `istio-init` and `istio-proxy` containers to pods, configured like 1.4's
//! (`config` and `values` of the `istio-sidecar-injector` ConfigMap, plus the mesh config).
//! `istioctl kube-inject` uses the same library offline.

pub mod config;
pub mod inject;
pub mod patch;
pub mod policy;
pub mod template;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;

pub use config::{InjectorConfig, ProxyDefaults};
pub use inject::Injector;

/// Where the injector reads its configuration.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    /// The ConfigMap's `config` key (policy, selectors, template).
    pub inject_config: PathBuf,
    /// The ConfigMap's `values` key (Helm values); optional.
    pub values: Option<PathBuf>,
    /// The mesh config; optional.
    pub mesh_config: Option<PathBuf>,
}

impl ConfigFiles {
    /// Reads and checks every file; errors name the file and the field.
    pub fn load(&self) -> anyhow::Result<Injector> {
        let config = InjectorConfig::load(&self.inject_config)?;
        let values = match &self.values {
            Some(path) => config::load_values(path)?,
            None => config::default_values(),
        };
        let mesh = match &self.mesh_config {
            Some(path) => istio_config::mesh::load(path)?,
            None => serde_json::json!({}),
        };
        Injector::new(config, values, &mesh).map_err(|error| {
            anyhow::anyhow!(
                "{}: {error}",
                self.mesh_config.as_ref().map_or("mesh config".into(), |p| p.display().to_string())
            )
        })
    }

    /// The files' contents, to notice changes.
    fn fingerprint(&self) -> Vec<Option<Vec<u8>>> {
        [Some(&self.inject_config), self.values.as_ref(), self.mesh_config.as_ref()]
            .into_iter()
            .map(|path| path.and_then(|path| std::fs::read(path).ok()))
            .collect()
    }
}

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

/// Loads the configuration (failing at once if it is invalid) and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let injector = Arc::new(ArcSwap::from_pointee(settings.files.load()?));
    let registry = istio_runtime::monitoring::registry();
    let metrics = webhook::Metrics::register(&registry);
    let shutdown = istio_runtime::Shutdown::default();
    let tls = istio_runtime::tls::server_config(&settings.cert_chain, &settings.key, &[b"h2", b"http/1.1"])
        .context("loading the webhook's TLS certificate")?;
    let state = webhook::WebhookState { injector: injector.clone(), metrics };
    let webhook_address =
        istio_runtime::https::serve_tls(settings.webhook_address, tls, webhook::router(state), shutdown.wait())
            .await
            .with_context(|| format!("binding the webhook on {}", settings.webhook_address))?;
    let monitoring_address = istio_runtime::monitoring::serve(
        settings.monitoring_address,
        istio_runtime::monitoring::router(registry, "sidecar-injector"),
        shutdown.wait(),
    )
    .await
    .with_context(|| format!("binding the monitoring server on {}", settings.monitoring_address))?;
    tokio::spawn(reload(settings.files.clone(), settings.reload_interval, injector, shutdown.wait()));
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
