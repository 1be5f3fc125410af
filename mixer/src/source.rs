//! Where Mixer's config comes from (`--configStoreURL`): a directory (`fs://DIR`), Galley over
//! MCP (`mcp://HOST:PORT`), or the Kubernetes API (`k8s://`). Each becomes a stream of store
//! events for the same pipeline.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use istio_api::kinds;
use istio_api::pb::istio::mcp::v1alpha1::Resources;
use istio_config::object::TypeKey;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::kubernetes::KubernetesStore;
use istio_config::store::{Event, Store};
use istio_mcp::sink::{ObjectChange, ObjectCollections, Rejected, Sink, Subscription};
use tokio::sync::mpsc;

/// A parsed `--configStoreURL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigStore {
    Directory(PathBuf),
    Mcp(String),
    Kubernetes,
}

/// A `--configStoreURL` that is none of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--configStoreURL {0:?}: expected fs://DIRECTORY, mcp://HOST:PORT or k8s://")]
pub struct StoreUrlError(pub String);

impl ConfigStore {
    pub fn parse(url: &str) -> Result<ConfigStore, StoreUrlError> {
        if let Some(path) = url.strip_prefix("fs://") {
            if path.is_empty() {
                return Err(StoreUrlError(url.to_string()));
            }
            return Ok(ConfigStore::Directory(PathBuf::from(path)));
        }
        if let Some(address) = url.strip_prefix("mcp://").or_else(|| url.strip_prefix("mcps://")) {
            if address.is_empty() {
                return Err(StoreUrlError(url.to_string()));
            }
            return Ok(ConfigStore::Mcp(address.to_string()));
        }
        if url.starts_with("k8s://") {
            return Ok(ConfigStore::Kubernetes);
        }
        Err(StoreUrlError(url.to_string()))
    }

    /// Whether objects need validating here (MCP's arrive validated by Galley).
    pub fn validates(&self) -> bool {
        !matches!(self, ConfigStore::Mcp(_))
    }
}

/// The kinds Mixer reads: `config.istio.io` (with the legacy per-adapter and per-template kinds
/// when asked for).
pub fn mixer_kinds(legacy: bool) -> Vec<&'static kinds::Kind> {
    kinds::all().iter().filter(|kind| kind.group == "config.istio.io" && (legacy || !kind.legacy)).collect()
}

/// A followed config source: its events, and the store behind them (kept alive while read).
pub struct Followed {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub store: Option<Arc<dyn Store>>,
}

/// Starts following a store; the events of every kind Mixer reads.
pub async fn follow(
    store: &ConfigStore,
    legacy: bool,
    kubernetes: Option<kube::Client>,
    sink_metrics: istio_mcp::sink::SinkMetrics,
) -> anyhow::Result<Followed> {
    match store {
        ConfigStore::Directory(path) => {
            let store: Arc<dyn Store> = Arc::new(DirectoryStore::open(path.clone())?);
            Ok(Followed { events: store.watch(), store: Some(store) })
        }
        ConfigStore::Kubernetes => {
            let client = kubernetes
                .ok_or_else(|| anyhow::anyhow!("k8s:// needs a cluster: --kubeconfig FILE, or run inside one"))?;
            let watched = mixer_kinds(false).into_iter().map(|kind| TypeKey::new(kind.group, kind.kind)).collect();
            let store: Arc<dyn Store> = Arc::new(KubernetesStore::new(client, watched)?);
            Ok(Followed { events: store.watch(), store: Some(store) })
        }
        ConfigStore::Mcp(address) => {
            let (sender, receiver) = mpsc::unbounded_channel();
            let collections: Vec<String> =
                mixer_kinds(legacy).into_iter().map(|kind| kind.collection.to_string()).collect();
            let sink = McpSink {
                events: sender,
                held: ObjectCollections::default(),
                waiting: collections.iter().cloned().collect(),
            };
            let subscription = Subscription { sink_id: "mixer".to_string(), collections, incremental: false };
            tokio::spawn(istio_mcp::sink::run(address.clone(), subscription, sink, sink_metrics));
            Ok(Followed { events: receiver, store: None })
        }
    }
}

/// Turns MCP responses into store events; `Synced` once every collection has answered.
struct McpSink {
    events: mpsc::UnboundedSender<Event>,
    held: ObjectCollections,
    waiting: HashSet<String>,
}

impl Sink for McpSink {
    fn apply(&mut self, response: &Resources) -> Result<(), Rejected> {
        let mut applied = self.held.apply(response);
        for change in std::mem::take(&mut applied.changes) {
            let event = match change {
                ObjectChange::Added(object) => Event::Added(object),
                ObjectChange::Modified(object) => Event::Modified(object),
                ObjectChange::Removed(object) => Event::Deleted(object),
            };
            let _ = self.events.send(event);
        }
        if self.waiting.remove(&response.collection) && self.waiting.is_empty() {
            let _ = self.events.send(Event::Synced);
        }
        applied.outcome()
    }

    fn wants_updates(&self) -> bool {
        !self.events.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(ConfigStore::parse("fs:///etc/mixer"), Ok(ConfigStore::Directory("/etc/mixer".into())));
        assert_eq!(
            ConfigStore::parse("mcp://istio-galley.istio-system.svc:9901"),
            Ok(ConfigStore::Mcp("istio-galley.istio-system.svc:9901".into()))
        );
        assert_eq!(ConfigStore::parse("k8s://"), Ok(ConfigStore::Kubernetes));
        assert!(ConfigStore::parse("http://x").is_err());
        assert!(ConfigStore::parse("fs://").is_err());
    }

    #[test]
    fn reads_the_config_kinds() {
        let kinds: Vec<&str> = mixer_kinds(false).iter().map(|kind| kind.kind).collect();
        for kind in ["rule", "handler", "instance", "attributemanifest"] {
            assert!(kinds.contains(&kind), "{kind}");
        }
        assert!(!kinds.contains(&"memquota"));
        assert!(mixer_kinds(true).iter().any(|kind| kind.kind == "memquota"));
    }
}
