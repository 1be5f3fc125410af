//! The pods Mixer knows, for `kubernetesenv`: followed from the store Mixer was given for them
//! (the Kubernetes API, or the local platform's store), indexed by name and by address, with
//! the ReplicaSets that tell a pod's workload. One cache serves every handler.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use istio_attribute::value::canonical_ip;
use istio_config::object::Object;
use istio_config::store::{Event, Store};
use tokio::sync::watch;

/// What Mixer needs to know of a pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub labels: HashMap<String, String>,
    pub ip: Option<IpAddr>,
    pub host_ip: Option<IpAddr>,
    pub service_account: String,
    /// Container name → ports it exposes.
    pub containers: Vec<(String, Vec<i64>)>,
    /// The controlling owner: (apiVersion, kind, name).
    pub owner: Option<(String, String, String)>,
    pub template_hash: Option<String>,
}

/// Pods by `namespace/name` and by address, and ReplicaSets' owners, kept current by a watch.
#[derive(Debug, Default)]
pub struct PodCache {
    pods: RwLock<HashMap<String, PodInfo>>,
    /// `namespace/name` of a ReplicaSet → its controlling owner (apiVersion, kind, name).
    replica_sets: RwLock<HashMap<String, (String, String, String)>>,
}

fn pod_info(object: &Object) -> PodInfo {
    let value = serde_json::to_value(object).unwrap_or_default();
    let text = |pointer: &str| value.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let labels = value
        .pointer("/metadata/labels")
        .and_then(|labels| labels.as_object())
        .map(|labels| labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let containers = value
        .pointer("/spec/containers")
        .and_then(|c| c.as_array())
        .map(|containers| {
            containers
                .iter()
                .map(|container| {
                    let ports = container["ports"]
                        .as_array()
                        .map(|ports| ports.iter().filter_map(|port| port["containerPort"].as_i64()).collect())
                        .unwrap_or_default();
                    (container["name"].as_str().unwrap_or_default().to_string(), ports)
                })
                .collect()
        })
        .unwrap_or_default();
    let owner = controller(&value);
    PodInfo {
        name: object.name().to_string(),
        namespace: object.namespace().to_string(),
        labels,
        ip: text("/status/podIP").parse().ok(),
        host_ip: text("/status/hostIP").parse().ok(),
        service_account: {
            let account = text("/spec/serviceAccountName");
            if account.is_empty() {
                text("/spec/serviceAccount")
            } else {
                account
            }
        },
        containers,
        owner,
        template_hash: value.pointer("/metadata/labels/pod-template-hash").and_then(|v| v.as_str()).map(str::to_string),
    }
}

fn controller(value: &serde_json::Value) -> Option<(String, String, String)> {
    value.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|owner| owner["controller"] == true).map(
        |owner| {
            (
                owner["apiVersion"].as_str().unwrap_or_default().to_string(),
                owner["kind"].as_str().unwrap_or_default().to_string(),
                owner["name"].as_str().unwrap_or_default().to_string(),
            )
        },
    )
}

impl PodCache {
    /// Starts following `store`'s pods; the receiver turns true once every pod has been read.
    pub fn follow(store: Arc<dyn Store>) -> (Arc<PodCache>, watch::Receiver<bool>) {
        let cache = Arc::new(PodCache::default());
        let (synced, receiver) = watch::channel(false);
        let mut events = store.watch();
        let following = cache.clone();
        tokio::spawn(async move {
            // The store stays alive as long as its watch is read.
            let _store = store;
            while let Some(event) = events.recv().await {
                match event {
                    Event::Added(object) | Event::Modified(object) => following.upsert(&object),
                    Event::Deleted(object) => following.remove(&object),
                    Event::Synced => {
                        let _ = synced.send(true);
                    }
                    Event::SourceError { .. } => {}
                }
            }
        });
        (cache, receiver)
    }

    pub fn upsert(&self, object: &Object) {
        let key = format!("{}/{}", object.namespace(), object.name());
        match object.kind.as_str() {
            "Pod" => {
                self.pods.write().unwrap_or_else(|p| p.into_inner()).insert(key, pod_info(object));
            }
            "ReplicaSet" => {
                let value = serde_json::to_value(object).unwrap_or_default();
                if let Some(owner) = controller(&value) {
                    self.replica_sets.write().unwrap_or_else(|p| p.into_inner()).insert(key, owner);
                }
            }
            _ => {}
        }
    }

    pub fn remove(&self, object: &Object) {
        let key = format!("{}/{}", object.namespace(), object.name());
        self.pods.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
        self.replica_sets.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    /// A pod by uid (`kubernetes://name.namespace`, or an address).
    pub fn by_uid(&self, uid: &str) -> Option<PodInfo> {
        if let Ok(address) = uid.parse::<IpAddr>() {
            return self.by_ip(address);
        }
        let name = uid.strip_prefix("kubernetes://").unwrap_or(uid);
        let (pod, namespace) = name.rsplit_once('.')?;
        self.pods.read().unwrap_or_else(|p| p.into_inner()).get(&format!("{namespace}/{pod}")).cloned()
    }

    pub fn by_ip(&self, address: IpAddr) -> Option<PodInfo> {
        let address = canonical_ip(address);
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        let mut matches: Vec<&PodInfo> =
            pods.values().filter(|pod| pod.ip.map(canonical_ip) == Some(address)).collect();
        matches.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        matches.first().map(|pod| (*pod).clone())
    }

    /// The workload (root controller) of a pod: (apiVersion, kind, name).
    pub fn workload(&self, pod: &PodInfo) -> Option<(String, String, String)> {
        let owner = pod.owner.clone()?;
        if owner.1 != "ReplicaSet" {
            return Some(owner);
        }
        let key = format!("{}/{}", pod.namespace, owner.2);
        if let Some(parent) = self.replica_sets.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Some(parent.clone());
        }
        // Without the ReplicaSet object, its name is the Deployment's and the template hash.
        match &pod.template_hash {
            Some(hash) => owner
                .2
                .strip_suffix(&format!("-{hash}"))
                .map(|name| ("apps/v1".to_string(), "Deployment".to_string(), name.to_string())),
            None => Some(owner),
        }
    }
}
