//! Injection as one operation on a pod (template): decide, render the sidecar, and add it with
//! the `sidecar.istio.io/status` annotation, the effective traffic annotations, the configured
//! injected annotations and (when asked) rewritten app probes. The webhook turns the same
//! result into a JSONPatch (`patch.rs`); `istioctl kube-inject` applies it to whole objects
//! (Deployments, Jobs, CronJobs, Lists, …) with `inject_object`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::{InjectorConfig, MeshDefaultsError, ProxyDefaults};
use crate::policy::{injection_required, string_map, Decision, STATUS_ANNOTATION};
use crate::template::{render, RenderError, Sidecar, Workload, PROXY_CONTAINER};

/// The pod label that says how the pod's endpoints take TLS, and its value for a sidecar.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
pub const ISTIO_MUTUAL_TLS_MODE: &str = "istio";

/// Name of the env var that carries rewritten probes to the proxy's status server.
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// Why an object could not be injected; each names the object.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{kind} {name}: no pod template at {pointer}")]
    NoPodTemplate { kind: String, name: String, pointer: &'static str },
    #[error("{kind} {name}: {source}")]
    Render { kind: String, name: String, source: Box<RenderError> },
}

/// Why a YAML stream could not be injected; each names the input.
#[derive(Debug, thiserror::Error)]
pub enum KubeInjectError {
    #[error("{origin}: document {document}: invalid YAML: {source}")]
    Yaml { origin: String, document: usize, source: serde_yaml::Error },
    #[error("{origin}: {source}")]
    Inject { origin: String, source: InjectError },
    #[error("{origin}: {source}")]
    Write { origin: String, source: serde_yaml::Error },
}

/// Everything injection reads: the ConfigMap's config and values, and the mesh config.
#[derive(Debug, Clone)]
pub struct Injector {
    pub config: InjectorConfig,
    pub values: Value,
    pub proxy: ProxyDefaults,
}

/// What injection changes in a pod, computed once and applied or turned into a patch.
#[derive(Debug, Clone)]
pub struct Injection {
    pub sidecar: Sidecar,
    /// Annotations to set (status, traffic settings, injected annotations).
    pub annotations: BTreeMap<String, String>,
    /// Labels to set: `security.istio.io/tlsMode: istio`, which tells Pilot (automatic mutual
    /// TLS) that the pod's proxy accepts Istio mutual TLS.
    pub labels: BTreeMap<String, String>,
    /// Rewritten probes: (container index, probe field, new probe).
    pub probe_rewrites: Vec<(usize, &'static str, Value)>,
}

impl Injector {
    pub fn new(config: InjectorConfig, values: Value, mesh: &Value) -> Result<Self, MeshDefaultsError> {
        Ok(Self { config, values, proxy: ProxyDefaults::from_mesh(mesh)? })
    }

    /// Decides whether a pod (template) gets a sidecar.
    pub fn decide(&self, namespace: &str, meta: &Value, spec: &Value) -> Decision {
        injection_required(&self.config, namespace, meta, spec)
    }

    /// Computes the injection for a workload that `decide` accepted.
    pub fn injection(&self, workload: &Workload<'_>) -> Result<Injection, RenderError> {
        let mut sidecar = render(workload, &self.values, &self.proxy)?;
        let mut annotations = sidecar.redirect_annotations.clone();
        annotations.extend(self.config.injected_annotations.clone());
        annotations.insert(STATUS_ANNOTATION.to_string(), self.status(&sidecar));
        let mut probe_rewrites = Vec::new();
        if sidecar.rewrite_app_probes {
            let mut probers = serde_json::Map::new();
            for (index, container) in
                workload.spec.get("containers").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
                if name == PROXY_CONTAINER {
                    continue;
                }
                for (field, suffix) in [("readinessProbe", "readyz"), ("livenessProbe", "livez")] {
                    let Some(probe) = container.get(field).filter(|probe| probe.get("httpGet").is_some()) else {
                        continue;
                    };
                    let mut http_get = probe["httpGet"].clone();
                    // As in 1.4, a probe whose port cannot be resolved is left as it is.
                    let Some(port) = resolve_port(container, &http_get["port"]) else { continue };
                    http_get["port"] = json!(port);
                    let path = format!("/app-health/{name}/{suffix}");
                    // 1.4's form: each path maps to the probe's HTTPGetAction.
                    probers.insert(path.clone(), http_get);
                    // The probe keeps its host and headers; the agent serves it over HTTP.
                    let mut rewritten = probe.clone();
                    rewritten["httpGet"]["path"] = json!(path);
                    rewritten["httpGet"]["port"] = json!(sidecar.status_port);
                    if rewritten["httpGet"]["scheme"] == "HTTPS" {
                        rewritten["httpGet"]["scheme"] = json!("HTTP");
                    }
                    probe_rewrites.push((index, field, rewritten));
                }
            }
            if !probers.is_empty() {
                if let Some(env) = sidecar.containers[0]["env"].as_array_mut() {
                    env.push(json!({"name": APP_PROBERS_ENV, "value": Value::Object(probers).to_string()}));
                }
            }
        }
        let labels = BTreeMap::from([(TLS_MODE_LABEL.to_string(), ISTIO_MUTUAL_TLS_MODE.to_string())]);
        Ok(Injection { sidecar, annotations, labels, probe_rewrites })
    }

    /// The `sidecar.istio.io/status` annotation: the template's version and what was added.
    fn status(&self, sidecar: &Sidecar) -> String {
        let names = |items: &[Value]| -> Vec<Value> { items.iter().map(|item| item["name"].clone()).collect() };
        let secrets = if sidecar.image_pull_secrets.is_empty() {
            Value::Null
        } else {
            Value::Array(names(&sidecar.image_pull_secrets))
        };
        json!({
            "version": self.template_version(),
            "initContainers": names(&sidecar.init_containers),
            "containers": names(&sidecar.containers),
            "volumes": names(&sidecar.volumes),
            "imagePullSecrets": secrets,
        })
        .to_string()
    }

    /// SHA-256 of the configured template text, or of the built-in template's identity.
    pub fn template_version(&self) -> String {
        let text = if self.config.template.is_empty() {
            concat!("istio-rs built-in injection template ", env!("CARGO_PKG_VERSION"))
        } else {
            self.config.template.as_str()
        };
        ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Injects a whole Kubernetes object in place (kube-inject). Objects without a pod
    /// template, pods on the host network and pods already injected are left as they are.
    /// Returns whether anything was injected.
    pub fn inject_object(&self, object: &mut Value) -> Result<bool, InjectError> {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if kind == "List" {
            let mut any = false;
            for item in object.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
                any |= self.inject_object(item)?;
            }
            return Ok(any);
        }
        let Some(template_pointer) = pod_template_pointer(&kind) else { return Ok(false) };
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(template) = object.pointer_mut(template_pointer) else {
            return Err(InjectError::NoPodTemplate { kind, name, pointer: template_pointer });
        };
        let meta = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        if !kube_inject_wanted(&meta, &spec) {
            return Ok(false);
        }
        let workload = Workload { meta: &meta, spec: &spec, name, namespace, api_version, kind };
        let injection = self.injection(&workload).map_err(|source| InjectError::Render {
            kind: workload.kind.clone(),
            name: workload.name.clone(),
            source: Box::new(source),
        })?;
        apply(template, &injection);
        Ok(true)
    }
}

/// Whether `istioctl kube-inject` injects a pod template. As 1.4's, it is an explicit request:
/// the namespace's label, the injection policy and the `sidecar.istio.io/inject` annotation do
/// not apply; only pods on the host network and pods that already have a sidecar are skipped.
fn kube_inject_wanted(meta: &Value, spec: &Value) -> bool {
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    let has_proxy = spec.get("containers").and_then(Value::as_array).is_some_and(|containers| {
        containers.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER))
    });
    !has_proxy && !string_map(meta.get("annotations")).contains_key(STATUS_ANNOTATION)
}

/// Applies an injection to a pod (or pod template) object.
pub fn apply(pod: &mut Value, injection: &Injection) {
    if !pod.get("spec").is_some_and(Value::is_object) {
        pod["spec"] = json!({});
    }
    let spec = &mut pod["spec"];
    for (index, field, probe) in &injection.probe_rewrites {
        spec["containers"][*index][*field] = probe.clone();
    }
    let append = |spec: &mut Value, field: &str, items: &[Value]| {
        if items.is_empty() {
            return;
        }
        if !spec.get(field).is_some_and(Value::is_array) {
            spec[field] = json!([]);
        }
        if let Some(list) = spec[field].as_array_mut() {
            list.extend(items.iter().cloned());
        }
    };
    append(spec, "initContainers", &injection.sidecar.init_containers);
    append(spec, "containers", &injection.sidecar.containers);
    append(spec, "volumes", &injection.sidecar.volumes);
    append(spec, "imagePullSecrets", &injection.sidecar.image_pull_secrets);
    if let Some(dns_config) = &injection.sidecar.dns_config {
        spec["dnsConfig"] = dns_config.clone();
    }
    if !pod.get("metadata").is_some_and(Value::is_object) {
        pod["metadata"] = json!({});
    }
    let mut annotations = string_map(pod["metadata"].get("annotations"));
    annotations.extend(injection.annotations.clone());
    pod["metadata"]["annotations"] = json!(annotations);
    // A label the pod already has is kept, as 1.4's kube-inject kept it.
    let mut labels = string_map(pod["metadata"].get("labels"));
    for (key, value) in &injection.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    pod["metadata"]["labels"] = json!(labels);
}

/// A probe's port as a number, resolving a named port against the container's ports; `None`
/// when it is neither a number nor the name of one of the container's ports.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => {
            if let Ok(number) = name.parse() {
                return Some(number);
            }
            container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|candidate| candidate.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|candidate| candidate.get("containerPort").and_then(Value::as_u64))
        }
        _ => None,
    }
}

/// Where a kind keeps its pod template (`""` for a Pod itself), for the kinds 1.4 injected.
pub fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "DaemonSet"
        | "ReplicaSet"
        | "StatefulSet"
        | "Job"
        | "ReplicationController"
        | "DeploymentConfig" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// `istioctl kube-inject` on a YAML stream: every document is injected where it has a pod
/// template and written back; `origin` names the input in errors.
pub fn kube_inject_yaml(injector: &Injector, text: &str, origin: &str) -> Result<String, KubeInjectError> {
    let documents = rewrite_documents(text, origin, |object| {
        injector
            .inject_object(object)
            .map(|_| ())
            .map_err(|source| KubeInjectError::Inject { origin: origin.to_string(), source })
    })?;
    Ok(documents.join("---\n"))
}

/// Each non-empty document of a YAML stream, changed by `change` and written back as YAML.
pub(crate) fn rewrite_documents(
    text: &str,
    origin: &str,
    mut change: impl FnMut(&mut Value) -> Result<(), KubeInjectError>,
) -> Result<Vec<String>, KubeInjectError> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut object = Value::deserialize(document).map_err(|source| KubeInjectError::Yaml {
            origin: origin.to_string(),
            document: index + 1,
            source,
        })?;
        if object.is_null() {
            continue;
        }
        change(&mut object)?;
        documents.push(
            serde_yaml::to_string(&object)
                .map_err(|source| KubeInjectError::Write { origin: origin.to_string(), source })?,
        );
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_values;

    fn injector(values: Value) -> Injector {
        Injector::new(InjectorConfig::default(), values, &json!({})).expect("injector")
    }

    #[test]
    fn deployments_get_a_sidecar_and_a_status_annotation() {
        let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ratings-v1"},
            "spec": {"template": {"metadata": {"labels": {"app": "ratings"}},
                "spec": {"containers": [{"name": "ratings", "image": "ratings", "ports": [{"containerPort": 9080}]}]}}}});
        assert!(injector(default_values()).inject_object(&mut deployment).expect("inject"));
        let template = &deployment["spec"]["template"];
        assert_eq!(template["spec"]["initContainers"][0]["name"], "istio-init");
        assert_eq!(template["spec"]["containers"][1]["name"], "istio-proxy");
        let status: Value =
            serde_json::from_str(template["metadata"]["annotations"][STATUS_ANNOTATION].as_str().expect("status"))
                .expect("json");
        assert_eq!(status["containers"], json!(["istio-proxy"]));
        assert_eq!(status["volumes"], json!(["istio-envoy", "istio-certs"]));
        assert_eq!(status["imagePullSecrets"], Value::Null);
        assert_eq!(status["version"].as_str().expect("version").len(), 64);
        // Injecting again changes nothing.
        let before = deployment.clone();
        assert!(!injector(default_values()).inject_object(&mut deployment).expect("again"));
        assert_eq!(before, deployment);
    }

    #[test]
    fn probes_are_rewritten_to_the_status_port_when_asked() {
        let mut values = default_values();
        values["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"] = json!(true);
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "timeoutSeconds": 2}}]}});
        assert!(injector(values).inject_object(&mut pod).expect("inject"));
        assert_eq!(
            pod["spec"]["containers"][0]["readinessProbe"]["httpGet"],
            json!({"path": "/app-health/web/readyz", "port": 15020})
        );
        let env = pod["spec"]["containers"][1]["env"].as_array().expect("env");
        let probers = env.iter().find(|e| e["name"] == APP_PROBERS_ENV).expect("probers");
        let probers: Value = serde_json::from_str(probers["value"].as_str().expect("text")).expect("json");
        assert_eq!(probers["/app-health/web/readyz"], json!({"path": "/ready", "port": 8080}));
    }

    #[test]
    fn objects_without_pod_templates_pass_through() {
        let mut service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {}});
        let before = service.clone();
        assert!(!injector(default_values()).inject_object(&mut service).expect("service"));
        assert_eq!(service, before);
        let mut host_network = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h"},
            "spec": {"hostNetwork": true, "containers": [{"name": "h"}]}});
        assert!(!injector(default_values()).inject_object(&mut host_network).expect("host network"));
    }
}
