//! Where `describe` reads from: this host's mesh (its store, the pods' admin APIs inside their
//! network namespaces, Pilot's debug port, the container logs) or a cluster (the API server,
//! with pods' ports reached through port-forwarding and logs through the log subresource).

use anyhow::{bail, Context as _};
use istio_config::object::{Object, TypeKey};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use serde_json::Value;

use crate::authn::AuthenticationDebug;

pub(crate) enum Access {
    Local { layout: istio_local::Layout, runtime: tokio::runtime::Runtime },
    Cluster { client: kube::Client, runtime: tokio::runtime::Runtime, istio_namespace: String },
}

impl Access {
    pub(crate) fn new(kube_args: &crate::kube::KubeArgs) -> anyhow::Result<Access> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let layout = istio_local::Layout::from_env();
        if kube_args.wants_cluster(&layout) {
            let client = runtime.block_on(kube_args.client())?;
            return Ok(Access::Cluster { client, runtime, istio_namespace: kube_args.istio_namespace.clone() });
        }
        if !layout.install_file().exists() {
            bail!("no mesh is installed on this host and no kubeconfig was given");
        }
        Ok(Access::Local { layout, runtime })
    }

    pub(crate) fn istio_namespace(&self) -> String {
        match self {
            Access::Local { .. } => "istio-system".to_string(),
            Access::Cluster { istio_namespace, .. } => istio_namespace.clone(),
        }
    }

    /// Objects of a kind in a namespace.
    pub(crate) fn list(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespace: &str,
    ) -> anyhow::Result<Vec<Object>> {
        match self {
            Access::Local { layout, runtime } => {
                let mut found = runtime.block_on(istio_local::kubectl::list(
                    layout,
                    &TypeKey::new(group, kind),
                    Some(namespace),
                ))?;
                found.retain(|object| object.namespace() == namespace);
                Ok(found)
            }
            Access::Cluster { client, runtime, .. } => runtime.block_on(async {
                let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
                let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client.clone(), namespace, &resource);
                let list = match api.list(&ListParams::default()).await {
                    Ok(list) => list,
                    Err(kube::Error::Api(response)) if response.code == 404 => return Ok(Vec::new()),
                    Err(error) => return Err(error).with_context(|| format!("listing {plural} in {namespace}")),
                };
                Ok(list
                    .items
                    .into_iter()
                    .map(|item| {
                        let mut object = Object::new(&resource.api_version, kind, None, "");
                        object.metadata = item.metadata;
                        if let Value::Object(body) = item.data {
                            object.body = body;
                        }
                        object
                    })
                    .collect())
            }),
        }
    }

    /// A pod by name, or the only pod of a Deployment of that name.
    pub(crate) fn pod(&self, name: &str, namespace: &str) -> anyhow::Result<Object> {
        istio_local::kubectl::pick_pod(&self.list("", "v1", "Pod", "pods", namespace)?, name, namespace)
    }

    /// A GET on a pod's proxy admin port.
    pub(crate) fn admin(&self, pod: &Object, path: &str) -> anyhow::Result<String> {
        match self {
            Access::Local { .. } => {
                crate::proxy_config::admin_text(&format!("{}.{}", pod.name(), pod.namespace()), path)
            }
            Access::Cluster { client, runtime, .. } => runtime.block_on(crate::kube::pod_http(
                client,
                pod.namespace(),
                pod.name(),
                15000,
                "GET",
                &format!("/{path}"),
            )),
        }
    }

    pub(crate) fn config_dump(&self, pod: &Object) -> anyhow::Result<Value> {
        serde_json::from_str(&self.admin(pod, "config_dump")?).context("the config dump is not JSON")
    }

    /// Pilot's view of the pod's mutual TLS, per service and port.
    pub(crate) fn authenticationz(&self, pod: &Object) -> anyhow::Result<Vec<AuthenticationDebug>> {
        let path = format!("/debug/authenticationz?proxyID={}.{}", pod.name(), pod.namespace());
        let body = match self {
            Access::Local { .. } => {
                crate::proxy_status::http_get(&crate::proxy_status::pilot_debug_address(None), &path)
            }
            Access::Cluster { client, runtime, istio_namespace } => runtime.block_on(async {
                let pilot = crate::kube::first_pod(client, istio_namespace, "istio=pilot", "Pilot").await?;
                crate::kube::pod_http(client, istio_namespace, &pilot, 8080, "GET", &path).await
            }),
        }
        .with_context(|| {
            format!(
                "checked 1 pilot instances and found no authentication info for {}.{}, check proxy status",
                pod.name(),
                pod.namespace()
            )
        })?;
        serde_json::from_str(&body).context("Pilot's /debug/authenticationz is not a JSON list")
    }

    /// The last lines of a container's log.
    pub(crate) fn logs(&self, pod: &Object, container: &str) -> anyhow::Result<String> {
        match self {
            Access::Local { layout, .. } => {
                let path = layout.container_log(pod.namespace(), pod.name(), container);
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
            }
            Access::Cluster { client, runtime, .. } => runtime.block_on(async {
                let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), pod.namespace());
                let params = LogParams {
                    container: Some(container.to_string()),
                    tail_lines: Some(2000),
                    ..LogParams::default()
                };
                pods.logs(pod.name(), &params)
                    .await
                    .with_context(|| format!("logs of {}.{}", pod.name(), pod.namespace()))
            }),
        }
    }
}
