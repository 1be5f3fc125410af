//! The kubectl verbs of the local platform: apply and delete objects (Istio objects pass
//! Galley's validating webhook and bare pods the injector first, as through an API server),
//! get them as a table or YAML/JSON, and find a pod and its container for logs and exec.

use std::fmt::Write;

use anyhow::{bail, Context};
use istio_config::object::{Object, TypeKey};
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;
use serde_json::{json, Value};

use crate::install::{Plan, GALLEY, INJECTOR};
use crate::layout::Layout;
use crate::objects::{self, injection_enabled, labels};

/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 6] =
    ["Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"];

/// The object store: the installation's, or before there is one, the objects created for it
/// (the cluster before Istio: a `cacerts` Secret made ahead of `istioctl install`).
pub fn open_store(layout: &Layout) -> anyhow::Result<DirectoryStore> {
    anyhow::ensure!(
        layout.install_file().exists() || layout.store().is_dir(),
        "no local installation at {} (run `istioctl install` or `istioctl demo` first)",
        layout.root().display()
    );
    DirectoryStore::open(layout.store()).context("opening the object store")
}

/// The store to write to; before an installation it is made, and the next `istioctl install`
/// keeps what it holds.
pub fn open_store_for_writes(layout: &Layout) -> anyhow::Result<DirectoryStore> {
    if !layout.install_file().exists() {
        std::fs::create_dir_all(layout.store()).with_context(|| format!("creating {}", layout.store().display()))?;
    }
    open_store(layout)
}

/// The installation, if there is one yet.
fn installed_plan(layout: &Layout) -> anyhow::Result<Option<Plan>> {
    layout.install_file().exists().then(|| Plan::load(layout)).transpose()
}

pub fn is_namespaced(object: &Object) -> bool {
    match istio_api::kinds::lookup_any_version(&object.api_version, &object.kind) {
        Some(kind) => kind.namespaced,
        None => !CLUSTER_SCOPED.contains(&object.kind.as_str()),
    }
}

/// `kind.group/name` as kubectl prints it.
pub fn display_name(object: &Object) -> String {
    let group = object.group();
    let kind = object.kind.to_lowercase();
    if group.is_empty() {
        format!("{kind}/{}", object.name())
    } else {
        format!("{kind}.{group}/{}", object.name())
    }
}

/// Parses YAML into objects with the default namespace filled in; errors name the source.
pub fn parse(text: &str, source: &str, namespace: &str) -> anyhow::Result<Vec<Object>> {
    let (objects, errors) = istio_config::yaml::parse_objects(source, text);
    if let Some(error) = errors.first() {
        bail!("{error}");
    }
    Ok(objects
        .into_iter()
        .map(|found| {
            let mut object = found.object;
            if is_namespaced(&object) && object.namespace().is_empty() {
                object.metadata.namespace = Some(namespace.to_string());
            }
            object
        })
        .collect())
}

/// Applies objects as the API server would; returns kubectl's lines (`… created`).
pub async fn apply(layout: &Layout, objects: Vec<Object>) -> anyhow::Result<Vec<String>> {
    let store = open_store_for_writes(layout)?;
    // Before an installation there are no webhooks to call, as on a cluster without Istio.
    let components = installed_plan(layout)?.map(|plan| plan.components()).unwrap_or_default();
    let galley = components.contains(&GALLEY).then(|| crate::install::webhook(layout, GALLEY)).transpose()?;
    let injector = components.contains(&INJECTOR).then(|| crate::install::webhook(layout, INJECTOR)).transpose()?;
    let namespaces = store.list(&objects::namespaces()).await?;
    let mut lines = Vec::new();
    for mut object in objects {
        objects::validate_identity(&object).map_err(|reason| anyhow::anyhow!("{}: {reason}", object.kind))?;
        let mut json = objects::to_json(&object);
        if object.istio_kind().is_some() {
            if let Some(galley) = &galley {
                crate::admission::validate(galley, &json)
                    .await
                    .with_context(|| format!("error when creating {}", display_name(&object)))?;
            }
        }
        let existing = store.get(&object.key()).await?;
        if object.kind == "Pod" && object.group().is_empty() {
            if let Some(injector) = injector.as_ref().filter(|_| injection_enabled(&namespaces, object.namespace())) {
                json = crate::admission::inject(injector, &json, object.namespace()).await?;
                object = objects::from_json(json)?;
            }
        }
        if object.kind == "Pod" && object.group().is_empty() {
            if let Some(current) = &existing {
                if current.spec() != object.spec() {
                    bail!(
                        "The Pod \"{}\" is invalid: spec: Forbidden: pod updates may not change fields other than labels and annotations (delete it and apply again)",
                        object.name()
                    );
                }
            }
        }
        let verb = match &existing {
            None => "created",
            Some(current) if same_content(current, &object) => "unchanged",
            Some(_) => "configured",
        };
        let name = display_name(&object);
        if verb != "unchanged" {
            if let Some(current) = existing {
                // Keep what the platform owns: a Service's ClusterIP, a Pod's status.
                if object.kind == "Service" && object.spec().get("clusterIP").is_none() {
                    if let Some(ip) = current.spec().get("clusterIP") {
                        if let Some(spec) = object.body.get_mut("spec").and_then(Value::as_object_mut) {
                            spec.insert("clusterIP".into(), ip.clone());
                        }
                    }
                }
                if object.kind == "Pod" {
                    if let Some(status) = current.body.get("status") {
                        object.body.insert("status".into(), status.clone());
                    }
                }
            }
            store.apply(object).await?;
        }
        lines.push(format!("{name} {verb}"));
    }
    Ok(lines)
}

fn same_content(current: &Object, desired: &Object) -> bool {
    let strip = |object: &Object| {
        let mut json = objects::to_json(object);
        if let Some(map) = json.as_object_mut() {
            map.remove("status");
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
        }
        if json["kind"] == "Service" && desired.spec().get("clusterIP").is_none() {
            if let Some(spec) = json.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
            }
        }
        json
    };
    strip(current) == strip(desired)
}

/// Deletes objects; returns kubectl's lines.
pub async fn delete(layout: &Layout, objects: Vec<Object>) -> anyhow::Result<Vec<String>> {
    let store = open_store(layout)?;
    let mut lines = Vec::new();
    for object in objects {
        let deleted = store.delete(&object.key()).await?;
        let name = display_name(&object);
        lines.push(if deleted { format!("{name} deleted") } else { format!("{name} not found") });
    }
    Ok(lines)
}

/// Labels a namespace (creating it if needed), as `kubectl label namespace NS k=v`.
pub async fn label_namespace(layout: &Layout, namespace: &str, pairs: &[(String, String)]) -> anyhow::Result<String> {
    let store = open_store(layout)?;
    let key = objects::key("", "Namespace", "", namespace);
    let mut object = match store.get(&key).await? {
        Some(object) => object,
        None => objects::from_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))?,
    };
    let mut current = object.metadata.labels.take().unwrap_or_default();
    for (key, value) in pairs {
        current.insert(key.clone(), value.clone());
    }
    object.metadata.labels = Some(current);
    store.apply(object).await?;
    Ok(format!("namespace/{namespace} labeled"))
}

/// Sets a Deployment's `spec.replicas`, as `kubectl scale deployment NAME --replicas N`; the
/// controller then starts or stops pods to match.
pub async fn scale_deployment(layout: &Layout, name: &str, namespace: &str, replicas: u64) -> anyhow::Result<String> {
    let store = open_store(layout)?;
    let key = objects::key("apps", "Deployment", namespace, name);
    let mut deployment = store
        .get(&key)
        .await?
        .with_context(|| format!("deployments.apps \"{name}\" not found in namespace {namespace}"))?;
    let spec = deployment
        .body
        .entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .with_context(|| format!("deployment {namespace}/{name}: spec is not an object"))?;
    spec.insert("replicas".to_string(), json!(replicas));
    store.apply(deployment).await?;
    Ok(format!("deployment.apps/{name} scaled"))
}

/// The kind a `get` argument names (`pods`, `po`, `svc`, `virtualservices`, `vs`, …).
pub fn kind_for(name: &str) -> anyhow::Result<TypeKey> {
    let lower = name.to_lowercase();
    let core = match lower.as_str() {
        "pod" | "pods" | "po" => Some(objects::pods()),
        "service" | "services" | "svc" => Some(objects::services()),
        "endpoints" | "ep" => Some(objects::endpoints()),
        "namespace" | "namespaces" | "ns" => Some(objects::namespaces()),
        "node" | "nodes" | "no" => Some(crate::nodes::nodes()),
        "deployment" | "deployments" | "deploy" => Some(objects::deployments()),
        "secret" | "secrets" => Some(objects::secrets()),
        "configmap" | "configmaps" | "cm" => Some(objects::config_maps()),
        "serviceaccount" | "serviceaccounts" | "sa" => Some(objects::kind("", "ServiceAccount")),
        "vs" => Some(objects::kind("networking.istio.io", "VirtualService")),
        "dr" => Some(objects::kind("networking.istio.io", "DestinationRule")),
        "gw" => Some(objects::kind("networking.istio.io", "Gateway")),
        "se" => Some(objects::kind("networking.istio.io", "ServiceEntry")),
        "ingress" | "ingresses" | "ing" => Some(objects::kind("networking.k8s.io", "Ingress")),
        _ => None,
    };
    if let Some(kind) = core {
        return Ok(kind);
    }
    istio_api::kinds::all()
        .iter()
        .find(|kind| kind.plural == lower || kind.kind.to_lowercase() == lower)
        .map(|kind| TypeKey::new(kind.group, kind.kind))
        .with_context(|| format!("the server doesn't have a resource type {name:?}"))
}

/// Objects of a kind in a namespace (or all of them).
pub async fn list(layout: &Layout, kind: &TypeKey, namespace: Option<&str>) -> anyhow::Result<Vec<Object>> {
    let store = open_store(layout)?;
    let mut found = store.list(kind).await?;
    // Ingresses are one kind served under two groups; both are listed.
    if *kind == objects::kind("networking.k8s.io", "Ingress") {
        found.extend(store.list(&objects::kind("extensions", "Ingress")).await?);
    }
    if let Some(namespace) = namespace {
        found.retain(|object| object.namespace() == namespace || object.namespace().is_empty());
    }
    Ok(found)
}

/// A kubectl-style table of objects.
pub fn table(kind: &TypeKey, objects: &[Object], all_namespaces: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let header: Vec<&str> = match kind.kind.as_str() {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "IP"],
        "Service" => vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)"],
        "Deployment" => vec!["NAME", "READY"],
        "Endpoints" => vec!["NAME", "ENDPOINTS"],
        "Namespace" => vec!["NAME", "LABELS"],
        _ => vec!["NAME"],
    };
    for object in objects {
        let mut row = Vec::new();
        if all_namespaces {
            row.push(object.namespace().to_string());
        }
        row.push(object.name().to_string());
        match kind.kind.as_str() {
            "Pod" => {
                let status_value = object.body.get("status").cloned().unwrap_or(Value::Null);
                let statuses =
                    status_value.pointer("/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
                let total = object.spec().get("containers").and_then(Value::as_array).map_or(0, Vec::len);
                let ready = statuses.iter().filter(|status| status["ready"] == true).count();
                let restarts: u64 = statuses.iter().filter_map(|status| status["restartCount"].as_u64()).sum();
                let waiting =
                    statuses.iter().find_map(|status| status.pointer("/state/waiting/reason").and_then(Value::as_str));
                let phase = status_value.pointer("/phase").and_then(Value::as_str).unwrap_or("Pending");
                let status = match (waiting, phase) {
                    (Some(reason), _) => reason.to_string(),
                    // Not yet scheduled: Pending, as kubectl shows it.
                    (None, "Pending") if status_value.pointer("/conditions/0/type") == Some(&json!("PodScheduled")) => {
                        "Pending".to_string()
                    }
                    (None, "Pending") if status_value.pointer("/conditions/0/status") != Some(&json!("True")) => {
                        "Init:0/1".to_string()
                    }
                    (None, phase) => phase.to_string(),
                };
                row.extend([
                    format!("{ready}/{total}"),
                    status,
                    restarts.to_string(),
                    status_value.pointer("/podIP").and_then(Value::as_str).unwrap_or("<none>").to_string(),
                ]);
            }
            "Service" => {
                let ports: Vec<String> = object
                    .spec()
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|port| format!("{}/{}", port["port"], port["protocol"].as_str().unwrap_or("TCP")))
                    .collect();
                row.extend([
                    object.spec().get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string(),
                    object.spec().get("clusterIP").and_then(Value::as_str).unwrap_or("<pending>").to_string(),
                    ports.join(","),
                ]);
            }
            "Deployment" => {
                let replicas = object.spec().get("replicas").and_then(Value::as_u64).unwrap_or(1);
                row.push(format!("-/{replicas}"));
            }
            "Endpoints" => {
                let addresses: Vec<String> = object
                    .body
                    .get("subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|subset| {
                        let port = subset.pointer("/ports/0/port").cloned().unwrap_or(Value::Null);
                        subset
                            .get("addresses")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |address| format!("{}:{port}", address["ip"].as_str().unwrap_or_default()))
                    })
                    .collect();
                row.push(if addresses.is_empty() { "<none>".into() } else { addresses.join(",") });
            }
            "Namespace" => {
                let labels: Vec<String> = labels(object).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                row.push(if labels.is_empty() { "<none>".into() } else { labels.join(",") });
            }
            _ => {}
        }
        rows.push(row);
    }
    let mut header: Vec<String> = header.into_iter().map(str::to_string).collect();
    if all_namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row.get(column).map_or(0, String::len))
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(i, cell)| format!("{cell:<width$}", width = widths[i])).collect();
        let _ = writeln!(out, "{}", cells.join("   ").trim_end());
    }
    out
}

/// A pod by exact name, or the only pod whose name starts with `name-` (a Deployment's name).
pub async fn find_pod(layout: &Layout, name: &str, namespace: &str) -> anyhow::Result<Object> {
    let pods = list(layout, &objects::pods(), Some(namespace)).await?;
    pick_pod(&pods, name, namespace)
}

/// `find_pod`'s choice among a namespace's pods, for callers that list pods elsewhere.
pub fn pick_pod(pods: &[Object], name: &str, namespace: &str) -> anyhow::Result<Object> {
    if let Some(pod) = pods.iter().find(|pod| pod.name() == name) {
        return Ok(pod.clone());
    }
    let prefix = format!("{name}-");
    let matching: Vec<&Object> = pods.iter().filter(|pod| pod.name().starts_with(&prefix)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("pods \"{name}\" not found in namespace {namespace}"),
        many => bail!(
            "{name} matches several pods: {}",
            many.iter().map(|pod| pod.name().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A pod's container by name, or its first container.
pub fn container_name(pod: &Object, container: Option<&str>) -> anyhow::Result<String> {
    let names: Vec<String> = pod
        .spec()
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(pod.spec().get("initContainers").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    match container {
        Some(name) if names.iter().any(|candidate| candidate == name) => Ok(name.to_string()),
        Some(name) => bail!("container {name} is not valid for pod {} (containers: {})", pod.name(), names.join(", ")),
        None => names.first().cloned().with_context(|| format!("pod {} has no containers", pod.name())),
    }
}
