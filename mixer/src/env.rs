//! What adapters may need from the platform: where pods are, and where the `prometheus`
//! adapter serves its metrics.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use istio_config::store::Store;
use tokio::sync::watch;

use crate::pods::PodCache;

/// What adapters may need from the platform: where pods are.
#[derive(Clone, Default)]
pub struct Environment {
    pod_store: Option<Arc<dyn Store>>,
    pods: Arc<OnceLock<(Arc<PodCache>, watch::Receiver<bool>)>>,
    /// Where `prometheus` handlers' metrics are served (`:42422`); none: not served.
    prometheus_address: Option<SocketAddr>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("pods", &self.pod_store.is_some()).finish()
    }
}

impl Environment {
    /// Pods are read from `store` (the Kubernetes API, or the local platform's store).
    pub fn with_pods(store: Arc<dyn Store>) -> Environment {
        Environment { pod_store: Some(store), pods: Arc::default(), prometheus_address: None }
    }

    /// Serves the `prometheus` adapter's metrics on `address`.
    pub fn serving_prometheus_on(mut self, address: SocketAddr) -> Environment {
        self.prometheus_address = Some(address);
        self
    }

    pub fn prometheus_address(&self) -> Option<SocketAddr> {
        self.prometheus_address
    }

    /// The shared pod cache, started on first use; `None` without a source of pods.
    pub fn pods(&self) -> Option<(Arc<PodCache>, watch::Receiver<bool>)> {
        let store = self.pod_store.clone()?;
        Some(self.pods.get_or_init(|| PodCache::follow(store)).clone())
    }
}
