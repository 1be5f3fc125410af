//! `kubernetesenv`: the attribute generator that tells Mixer who is talking. Given a source and a
//! destination (a pod uid such as `kubernetes://reviews-v3-xyz.default`, or an address), it looks
//! the pods up in the platform's pods and answers their labels, names, namespaces, service
//! accounts, addresses and workloads (the Deployment behind a ReplicaSet).
//!
//! Pods come from the shared pod cache ([`crate::pods`]).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use istio_attribute::value::{canonical_ip, ip_from_bytes, ip_to_16_bytes};
use istio_attribute::{MapBag, Value};

use crate::pods::{PodCache, PodInfo};

use super::api::{AdapterError, BuildContext, BuildError, Handler};
use crate::template::Instance;

#[derive(Debug)]
pub struct KubernetesEnv {
    pods: Arc<PodCache>,
}

pub(super) async fn build(context: &BuildContext<'_>) -> Result<KubernetesEnv, BuildError> {
    let (pods, mut synced) = context.environment.pods().ok_or_else(|| {
        BuildError::Instantiation(
            "no source of pods (give --kubeconfig, run in a cluster, or set ISTIO_LOCAL_STORE)".to_string(),
        )
    })?;
    if tokio::time::timeout(Duration::from_secs(30), synced.wait_for(|synced| *synced)).await.is_err() {
        return Err(BuildError::Instantiation("cache sync failure".to_string()));
    }
    Ok(KubernetesEnv { pods })
}

fn ip_value(address: IpAddr) -> Value<'static> {
    Value::IpAddress(Cow::Owned(ip_to_16_bytes(address).to_vec()))
}

impl KubernetesEnv {
    fn fill(&self, outputs: &mut MapBag, prefix: &str, pod: &PodInfo, port: Option<i64>) {
        let mut set_text = |field: &str, text: String| {
            if !text.is_empty() {
                outputs.set(format!("{prefix}{field}"), Value::String(Cow::Owned(text)));
            }
        };
        set_text("pod_name", pod.name.clone());
        set_text("namespace", pod.namespace.clone());
        set_text("pod_uid", format!("kubernetes://{}.{}", pod.name, pod.namespace));
        set_text("service_account_name", pod.service_account.clone());
        let workload = self.pods.workload(pod);
        let workload_name = workload.as_ref().map_or_else(|| pod.name.clone(), |(_, _, name)| name.clone());
        set_text("workload_name", workload_name.clone());
        set_text("workload_namespace", pod.namespace.clone());
        set_text("workload_uid", format!("istio://{}/workloads/{workload_name}", pod.namespace));
        let owner = match &workload {
            Some((api_version, kind, name)) => {
                format!("kubernetes://apis/{api_version}/namespaces/{}/{}s/{name}", pod.namespace, kind.to_lowercase())
            }
            None => format!("kubernetes://api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name),
        };
        set_text("owner", owner);
        if let Some(port) = port.filter(|port| *port > 0) {
            if let Some((container, _)) = pod.containers.iter().find(|(_, ports)| ports.contains(&port)) {
                set_text("container_name", container.clone());
            }
        }
        if !pod.labels.is_empty() {
            outputs.set(format!("{prefix}labels"), Value::StringMap(Cow::Owned(pod.labels.clone())));
        }
        if let Some(ip) = pod.ip {
            outputs.set(format!("{prefix}pod_ip"), ip_value(ip));
        }
        if let Some(ip) = pod.host_ip {
            outputs.set(format!("{prefix}host_ip"), ip_value(ip));
        }
    }

    fn find(&self, uid: Option<&Value<'_>>, address: Option<&Value<'_>>) -> Option<PodInfo> {
        if let Some(uid) = uid.and_then(Value::as_str).filter(|uid| !uid.is_empty()) {
            return self.pods.by_uid(uid);
        }
        let address = match address? {
            Value::IpAddress(bytes) | Value::Bytes(bytes) => ip_from_bytes(bytes)?,
            _ => return None,
        };
        if address.is_unspecified() || canonical_ip(address).is_unspecified() {
            return None;
        }
        self.pods.by_ip(address)
    }
}

#[async_trait]
impl Handler for KubernetesEnv {
    async fn generate(&self, instance: &Instance) -> Result<MapBag, AdapterError> {
        let mut outputs = MapBag::new();
        if let Some(pod) = self.find(instance.field("source_uid"), instance.field("source_ip")) {
            self.fill(&mut outputs, "source_", &pod, None);
        }
        let port = match instance.field("destination_port") {
            Some(Value::Int64(port)) => Some(*port),
            _ => None,
        };
        if let Some(pod) = self.find(instance.field("destination_uid"), instance.field("destination_ip")) {
            self.fill(&mut outputs, "destination_", &pod, port);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use istio_config::object::Object;

    use super::*;
    use crate::template::Template;

    fn pod(name: &str, ip: &str, owner: &str, hash: &str) -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"app": "reviews", "version": "v3", "pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "controller": true}]},
            "spec": {"serviceAccountName": "bookinfo-reviews",
                     "containers": [{"name": "reviews", "ports": [{"containerPort": 9080}]}, {"name": "istio-proxy"}]},
            "status": {"podIP": ip, "hostIP": "10.0.0.1"}
        }))
        .expect("pod")
    }

    #[tokio::test]
    async fn finds_pods_by_uid_and_address_and_names_their_workload() {
        let cache = Arc::new(PodCache::default());
        cache.upsert(&pod("reviews-v3-5d8f7c9b6d-x2x", "10.1.0.7", "reviews-v3-5d8f7c9b6d", "5d8f7c9b6d"));
        let env = KubernetesEnv { pods: cache };
        let instance = Instance {
            name: "attributes.instance.istio-system".into(),
            template: Template::Kubernetes,
            fields: BTreeMap::from([
                ("source_uid".into(), Value::String("kubernetes://reviews-v3-5d8f7c9b6d-x2x.default".into())),
                ("destination_ip".into(), ip_value("10.1.0.7".parse().unwrap())),
                ("destination_port".into(), Value::Int64(9080)),
            ]),
        };
        let outputs = env.generate(&instance).await.expect("generates");
        let text = |name: &str| outputs.get_value(name).and_then(|v| v.as_str()).map(str::to_string);
        assert_eq!(text("source_pod_name").as_deref(), Some("reviews-v3-5d8f7c9b6d-x2x"));
        assert_eq!(text("source_workload_name").as_deref(), Some("reviews-v3"));
        assert_eq!(text("source_workload_uid").as_deref(), Some("istio://default/workloads/reviews-v3"));
        assert_eq!(
            text("source_owner").as_deref(),
            Some("kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v3")
        );
        assert_eq!(text("source_service_account_name").as_deref(), Some("bookinfo-reviews"));
        assert_eq!(text("destination_container_name").as_deref(), Some("reviews"));
        assert_eq!(text("destination_pod_uid").as_deref(), Some("kubernetes://reviews-v3-5d8f7c9b6d-x2x.default"));
        assert!(
            matches!(outputs.get_value("destination_labels"), Some(Value::StringMap(labels)) if labels["version"] == "v3")
        );
        // Unknown pods leave the outputs unset.
        let nobody = Instance {
            fields: BTreeMap::from([("source_ip".into(), ip_value("0.0.0.0".parse().unwrap()))]),
            ..instance
        };
        assert!(env.generate(&nobody).await.expect("generates").is_empty());
    }
}
