//! What adapters may need from the platform: where pods are.

use std::sync::{Arc, OnceLock};

use istio_config::store::Store;
use tokio::sync::watch;

use crate::pods::PodCache;

/// What adapters may need from the platform: where pods are.
#[derive(Clone, Default)]
pub struct Environment {
    pod_store: Option<Arc<dyn Store>>,
    pods: Arc<OnceLock<(Arc<PodCache>, watch::Receiver<bool>)>>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("pods", &self.pod_store.is_some()).finish()
    }
}

impl Environment {
    /// Pods are read from `store` (the Kubernetes API, or the local platform's store).
    pub fn with_pods(store: Arc<dyn Store>) -> Environment {
        Environment { pod_store: Some(store), pods: Arc::default() }
    }

    /// The shared pod cache, started on first use; `None` without a source of pods.
    pub fn pods(&self) -> Option<(Arc<PodCache>, watch::Receiver<bool>)> {
        let store = self.pod_store.clone()?;
        Some(self.pods.get_or_init(|| PodCache::follow(store)).clone())
    }
}
