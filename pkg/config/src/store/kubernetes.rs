//! The Kubernetes backend of the store, through kube-rs: Istio CRDs and the core kinds the mesh
//! reads (Services, Endpoints, Pods, Nodes, …) as `DynamicObject`s. Writes use server-side apply
//! with the `istio-rs` field manager. A watch runs one kube-runtime watcher per kind (with
//! backoff on errors) and reports `Synced` once every kind has been listed.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::mpsc;

use super::{Event, Store, StoreError};
use crate::object::{Object, ObjectKey, TypeKey};

const FIELD_MANAGER: &str = "istio-rs";

/// Core and apps kinds the store can address: (group, version, kind, plural, namespaced).
const CORE_KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Service", "services", true),
    ("", "v1", "Endpoints", "endpoints", true),
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Node", "nodes", false),
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
];

/// How to address a kind on the API server, and whether it is namespaced.
pub fn api_resource(kind: &TypeKey) -> Option<(ApiResource, bool)> {
    let make = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
        kind: kind.to_string(),
        plural: plural.to_string(),
    };
    if let Some(istio) = istio_api::kinds::all().iter().find(|k| k.group == kind.group && k.kind == kind.kind) {
        return Some((make(istio.group, istio.version, istio.kind, istio.plural), istio.namespaced));
    }
    CORE_KINDS
        .iter()
        .find(|(group, _, name, _, _)| *group == kind.group && *name == kind.kind)
        .map(|(group, version, name, plural, namespaced)| (make(group, version, name, plural), *namespaced))
}

/// Kubernetes Ingresses, read when the mesh config's `ingressControllerMode` is not `OFF`
/// (through `networking.k8s.io/v1`, which every supported cluster serves).
pub fn ingress_kind() -> TypeKey {
    TypeKey::new("networking.k8s.io", "Ingress")
}

/// `kinds`, with Ingresses when the mesh takes them (`ingressControllerMode` not OFF).
pub fn with_ingress(mut kinds: Vec<TypeKey>, mode: crate::kube_ingress::ControllerMode) -> Vec<TypeKey> {
    if mode != crate::kube_ingress::ControllerMode::Off {
        kinds.push(ingress_kind());
    }
    kinds
}

/// The kinds Galley reads: the 1.4 Istio CRDs (not the legacy per-adapter kinds, which 1.4
/// did not install) and the inputs of synthetic service entries.
pub fn galley_kinds() -> Vec<TypeKey> {
    let mut kinds: Vec<TypeKey> = istio_api::kinds::all()
        .iter()
        .filter(|kind| !kind.legacy)
        .map(|kind| TypeKey::new(kind.group, kind.kind))
        .collect();
    kinds.extend(["Service", "Endpoints", "Pod", "Node", "Namespace"].map(|kind| TypeKey::new("", kind)));
    kinds
}

/// The kinds Pilot reads when it takes config straight from Kubernetes (the `minimal` profile,
/// no Galley): the networking, authentication and RBAC CRDs, the Mixer client's quota specs,
/// and the inputs of its Kubernetes service registry.
pub fn pilot_kinds() -> Vec<TypeKey> {
    let mut kinds: Vec<TypeKey> = istio_api::kinds::all()
        .iter()
        .filter(|kind| {
            !kind.legacy
                && (matches!(
                    kind.group,
                    "networking.istio.io" | "authentication.istio.io" | "rbac.istio.io" | "security.istio.io"
                ) || matches!(kind.kind, "QuotaSpec" | "QuotaSpecBinding"))
        })
        .map(|kind| TypeKey::new(kind.group, kind.kind))
        .collect();
    kinds.extend(["Service", "Endpoints", "Pod", "Node"].map(|kind| TypeKey::new("", kind)));
    kinds
}

/// Why no Kubernetes client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no --kubeconfig given and not running inside a cluster (KUBERNETES_SERVICE_HOST unset)")]
    NoCluster,
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// The Kubernetes client for an explicit kubeconfig, or the in-cluster account. Never a
/// kubeconfig found lying around on the machine.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let failed = |message: String| ClientError::Kubeconfig { path: path.display().to_string(), message };
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| failed(e.to_string()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().map_err(|e| ClientError::Client(e.to_string()))?
        }
        None => return Err(ClientError::NoCluster),
    };
    kube::Client::try_from(config).map_err(|e| ClientError::Client(e.to_string()))
}

/// A store backed by a Kubernetes API server.
#[derive(Clone)]
pub struct KubernetesStore {
    client: kube::Client,
    watched: Vec<TypeKey>,
}

fn to_object(dynamic: DynamicObject, resource: &ApiResource) -> Result<Object, StoreError> {
    let mut value = serde_json::to_value(dynamic).map_err(|error| StoreError::Encode(error.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| resource.api_version.clone().into());
        map.entry("kind").or_insert_with(|| resource.kind.clone().into());
    }
    serde_json::from_value(value).map_err(|error| StoreError::Encode(error.to_string()))
}

fn to_dynamic(object: &Object) -> Result<DynamicObject, StoreError> {
    let value = serde_json::to_value(object).map_err(|error| StoreError::Encode(error.to_string()))?;
    serde_json::from_value(value).map_err(|error| StoreError::Encode(error.to_string()))
}

impl KubernetesStore {
    /// A store over `client` whose watches cover `watched` kinds.
    pub fn new(client: kube::Client, watched: Vec<TypeKey>) -> Result<Self, StoreError> {
        for kind in &watched {
            if api_resource(kind).is_none() {
                return Err(StoreError::UnknownKind { kind: kind.to_string() });
            }
        }
        Ok(KubernetesStore { client, watched })
    }

    fn resolve(&self, kind: &TypeKey) -> Result<(ApiResource, bool), StoreError> {
        api_resource(kind).ok_or_else(|| StoreError::UnknownKind { kind: kind.to_string() })
    }

    fn api(&self, resource: &ApiResource, namespaced: bool, namespace: &str) -> Api<DynamicObject> {
        if namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        }
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

#[async_trait]
impl Store for KubernetesStore {
    async fn list(&self, kind: &TypeKey) -> Result<Vec<Object>, StoreError> {
        let (resource, _) = self.resolve(kind)?;
        let list = Api::<DynamicObject>::all_with(self.client.clone(), &resource).list(&ListParams::default()).await?;
        let mut objects =
            list.items.into_iter().map(|item| to_object(item, &resource)).collect::<Result<Vec<_>, _>>()?;
        objects.sort_by_key(Object::key);
        Ok(objects)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let (resource, namespaced) = self.resolve(&key.type_key())?;
        let found = self.api(&resource, namespaced, &key.namespace).get_opt(&key.name).await?;
        found.map(|object| to_object(object, &resource)).transpose()
    }

    async fn apply(&self, object: Object) -> Result<Object, StoreError> {
        if object.name().is_empty() {
            return Err(StoreError::MissingName(object.kind.clone()));
        }
        let (resource, namespaced) = self.resolve(&object.type_key())?;
        let mut object = object;
        object.metadata.resource_version = None;
        object.metadata.managed_fields = None;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = self
            .api(&resource, namespaced, object.namespace())
            .patch(object.name(), &params, &Patch::Apply(&to_dynamic(&object)?))
            .await?;
        to_object(applied, &resource)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let (resource, namespaced) = self.resolve(&key.type_key())?;
        match self.api(&resource, namespaced, &key.namespace).delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    fn watch(&self) -> mpsc::UnboundedReceiver<Event> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<()>();
        let kinds = self.watched.len();
        for kind in &self.watched {
            let Ok((resource, _)) = self.resolve(kind) else { continue };
            let api = Api::<DynamicObject>::all_with(self.client.clone(), &resource);
            tokio::spawn(watch_kind(api, resource, sender.clone(), synced_tx.clone()));
        }
        let synced_sender = sender;
        tokio::spawn(async move {
            for _ in 0..kinds {
                if synced_rx.recv().await.is_none() {
                    return;
                }
            }
            let _ = synced_sender.send(Event::Synced);
        });
        receiver
    }
}

/// The message a consumer gets for an object it cannot read; it starts with
/// [`CONVERSION_FAILED`] so that counters can tell it from a failed watch.
fn unconvertible(resource: &ApiResource, error: &StoreError) -> Event {
    Event::SourceError {
        source: format!("a Kubernetes {}", resource.kind),
        line: 0,
        message: format!("{CONVERSION_FAILED}{error}"),
    }
}

/// The watched object as a store object; `Ok(None)` after telling the consumer it could not be
/// read, `Err` when the consumer has gone.
fn readable(
    object: DynamicObject,
    resource: &ApiResource,
    sender: &mpsc::UnboundedSender<Event>,
) -> Result<Option<Object>, ()> {
    match to_object(object, resource) {
        Ok(object) => Ok(Some(object)),
        Err(error) => sender.send(unconvertible(resource, &error)).map(|()| None).map_err(|_| ()),
    }
}

/// How the message of an object that could not be converted starts.
pub const CONVERSION_FAILED: &str = "cannot convert the object: ";

/// Watches one kind until the receiver goes away, turning watcher events into store events.
async fn watch_kind(
    api: Api<DynamicObject>,
    resource: ApiResource,
    sender: mpsc::UnboundedSender<Event>,
    synced: mpsc::UnboundedSender<()>,
) {
    let mut known: HashMap<ObjectKey, Object> = HashMap::new();
    let mut relisted: Option<HashMap<ObjectKey, Object>> = None;
    let mut first_sync = true;
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // The watcher retries with backoff; what it had stays as it was meanwhile.
                let failed = Event::SourceError {
                    source: format!("the Kubernetes watch of {}", resource.plural),
                    line: 0,
                    message: error.to_string(),
                };
                if sender.send(failed).is_err() {
                    return;
                }
                continue;
            }
        };
        let mut out = Vec::new();
        match event {
            watcher::Event::Init => relisted = Some(HashMap::new()),
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Ok(converted) = readable(object, &resource, &sender) else { return };
                let Some(object) = converted else { continue };
                let key = object.key();
                match known.insert(key.clone(), object.clone()) {
                    None => out.push(Event::Added(object.clone())),
                    Some(old) if old.resource_version() != object.resource_version() => {
                        out.push(Event::Modified(object.clone()))
                    }
                    Some(_) => {}
                }
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key, object);
                }
            }
            watcher::Event::Delete(object) => {
                let Ok(converted) = readable(object, &resource, &sender) else { return };
                let Some(object) = converted else { continue };
                if known.remove(&object.key()).is_some() {
                    out.push(Event::Deleted(object));
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    let gone: Vec<ObjectKey> = known.keys().filter(|key| !seen.contains_key(*key)).cloned().collect();
                    for key in gone {
                        if let Some(object) = known.remove(&key) {
                            out.push(Event::Deleted(object));
                        }
                    }
                }
                if first_sync {
                    first_sync = false;
                    let _ = synced.send(());
                }
            }
        }
        for event in out {
            if sender.send(event).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
