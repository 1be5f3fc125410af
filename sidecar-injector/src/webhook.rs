//! The mutating admission webhook: `POST /inject` takes an AdmissionReview
//! (`admission.k8s.io/v1` or `v1beta1`) for a Pod and answers in the same version, with a
//! base64 JSONPatch when the pod gets a sidecar. The pod's workload (its Deployment, through
//! the ReplicaSet that owns it) is found the way 1.4 did, for the node metadata. A pod that
//! cannot be injected (an invalid annotation) is refused with the reason.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use prometheus_client::metrics::counter::Counter;
use serde_json::{json, Value};

use istio_inject::patch::create_patch;
use istio_inject::policy::Decision;
use istio_inject::template::{RenderError, Workload};
use istio_inject::Injector;
use istio_runtime::monitoring::SharedRegistry;

/// The injector's metrics, named as in Istio 1.4.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub requests: Counter,
    pub successes: Counter,
    pub skips: Counter,
    pub failures: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let metrics = Self::default();
        let mut registry = istio_runtime::sync::lock(registry);
        registry.register("sidecar_injection_requests", "Injection requests received", metrics.requests.clone());
        registry.register("sidecar_injection_success", "Pods injected", metrics.successes.clone());
        registry.register("sidecar_injection_skip", "Pods left without a sidecar", metrics.skips.clone());
        registry.register("sidecar_injection_failure", "Injection requests that failed", metrics.failures.clone());
        metrics
    }
}

/// What the handlers share: the current injector (swapped on config reload) and the metrics.
#[derive(Clone)]
pub(crate) struct WebhookState {
    pub injector: Arc<ArcSwap<Injector>>,
    pub metrics: Metrics,
}

pub(crate) fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/inject", post(inject))
        .route("/ready", get(|| async { "ready\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn inject(State(state): State<WebhookState>, Json(review): Json<Value>) -> (StatusCode, Json<Value>) {
    state.metrics.requests.inc();
    let api_version =
        review.get("apiVersion").and_then(Value::as_str).unwrap_or("admission.k8s.io/v1beta1").to_string();
    if !matches!(api_version.as_str(), "admission.k8s.io/v1" | "admission.k8s.io/v1beta1") {
        state.metrics.failures.inc();
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("unsupported AdmissionReview apiVersion {api_version:?}")})),
        );
    }
    let Some(request) = review.get("request") else {
        state.metrics.failures.inc();
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "AdmissionReview has no request"})));
    };
    let uid = request.get("uid").cloned().unwrap_or_else(|| json!(""));
    let injector = state.injector.load();
    let response = match review_pod(&injector, request) {
        Ok(Some(patch)) => {
            state.metrics.successes.inc();
            let encoded = base64::engine::general_purpose::STANDARD.encode(Value::Array(patch).to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded})
        }
        Ok(None) => {
            state.metrics.skips.inc();
            json!({"uid": uid, "allowed": true})
        }
        Err(error) => {
            state.metrics.failures.inc();
            let message = error.to_string();
            tracing::warn!(%message, "injection failed");
            json!({"uid": uid, "allowed": false, "status": {"status": "Failure", "message": message, "code": 400}})
        }
    };
    (StatusCode::OK, Json(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})))
}

/// Why an admission request is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReviewError {
    #[error("the admission request carries no pod")]
    NoPod,
    #[error("the injector only takes Pods, not {0}")]
    NotAPod(String),
    #[error("injecting pod {pod} in {namespace}: {source}")]
    Inject { pod: String, namespace: String, source: RenderError },
}

/// The patch for the pod in `request`, or `None` when it is not to be injected.
pub(crate) fn review_pod(injector: &Injector, request: &Value) -> Result<Option<Vec<Value>>, ReviewError> {
    let pod = request.get("object").filter(|pod| pod.is_object()).ok_or(ReviewError::NoPod)?;
    if let Some(kind) = pod.get("kind").and_then(Value::as_str) {
        if kind != "Pod" {
            return Err(ReviewError::NotAPod(kind.to_string()));
        }
    }
    let meta = pod.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())
        .or_else(|| meta.get("namespace").and_then(Value::as_str))
        .unwrap_or("default")
        .to_string();
    let pod_name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .or_else(|| meta.get("generateName").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    if let Decision::Skip(reason) = injector.decide(&namespace, &meta, &spec) {
        tracing::debug!(pod = %pod_name, %namespace, reason, "not injecting");
        return Ok(None);
    }
    let (api_version, kind, name) = owning_workload(&meta);
    let workload = Workload { meta: &meta, spec: &spec, name, namespace: namespace.clone(), api_version, kind };
    let injection = injector.injection(&workload).map_err(|source| ReviewError::Inject {
        pod: pod_name.clone(),
        namespace: namespace.clone(),
        source,
    })?;
    tracing::info!(pod = %pod_name, %namespace, workload = %workload.name, "injecting a sidecar");
    Ok(Some(create_patch(pod, &injection)))
}

/// The workload a pod belongs to: its controller, with a ReplicaSet named
/// `<deployment>-<pod-template-hash>` taken as that Deployment (1.4's heuristic); the pod
/// itself when it has no controller.
fn owning_workload(meta: &Value) -> (String, String, String) {
    let pod_name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let generated = meta.get("generateName").and_then(Value::as_str).is_some_and(|name| !name.is_empty());
    let controller = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|reference| reference.get("controller").and_then(Value::as_bool) == Some(true));
    match controller {
        Some(owner) if generated => {
            let api_version = owner.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
            let kind = owner.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = owner.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let hash = meta.pointer("/labels/pod-template-hash").and_then(Value::as_str).unwrap_or_default();
            match name.strip_suffix(&format!("-{hash}")) {
                Some(deployment) if kind == "ReplicaSet" && !hash.is_empty() => {
                    (api_version, "Deployment".to_string(), deployment.to_string())
                }
                _ => (api_version, kind, name),
            }
        }
        _ => ("v1".to_string(), "Pod".to_string(), pod_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_inject::config::{default_values, InjectorConfig};

    #[test]
    fn deployment_pods_are_attributed_to_their_deployment() {
        let meta = json!({"generateName": "reviews-v1-7f6c9d-", "labels": {"pod-template-hash": "7f6c9d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v1-7f6c9d", "controller": true}]});
        assert_eq!(owning_workload(&meta), ("apps/v1".into(), "Deployment".into(), "reviews-v1".into()));
        let job = json!({"generateName": "pi-", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "controller": true}]});
        assert_eq!(owning_workload(&job), ("batch/v1".into(), "Job".into(), "pi".into()));
        assert_eq!(owning_workload(&json!({"name": "solo"})), ("v1".into(), "Pod".into(), "solo".into()));
    }

    #[test]
    fn reviews_yield_a_patch_a_skip_or_a_refusal() {
        let injector = Injector::new(InjectorConfig::default(), default_values(), &json!({})).expect("injector");
        let request = json!({"uid": "1", "namespace": "default", "object": {"kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "p"}}, "spec": {"containers": [{"name": "p"}]}}});
        let patch = review_pod(&injector, &request).expect("ok").expect("patch");
        assert!(patch.iter().any(|op| op["path"] == "/spec/containers/-" && op["value"]["name"] == "istio-proxy"));
        let system = json!({"namespace": "kube-system", "object": {"metadata": {}, "spec": {}}});
        assert!(review_pod(&injector, &system).expect("ok").is_none());
        let bad = json!({"namespace": "default", "object": {"metadata": {"annotations":
            {"status.sidecar.istio.io/port": "99999"}}, "spec": {}}});
        assert!(review_pod(&injector, &bad).expect_err("refused").to_string().contains("status.sidecar.istio.io/port"));
    }
}
