//! Galley's validating admission webhook over HTTPS: `/admitpilot` and `/admitmixer` take an
//! AdmissionReview (`admission.k8s.io/v1` or `v1beta1`) and answer whether the object is valid,
//! with the validation messages when it is not; `/ready` reports readiness. Each webhook admits
//! only the kinds Istio 1.4 routed to it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use istio_api::kinds::{self, Webhook};
use istio_config::object::Object;
use istio_config::validation::object_violations;
use serde_json::{json, Value};

use crate::metrics::{Metrics, RejectionLabels, ResourceLabels};

/// The webhook's routes.
pub(crate) fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/admitpilot", post(admit_pilot))
        .route("/admitmixer", post(admit_mixer))
        .route("/ready", get(|| async { "ready\n" }))
        .with_state(metrics)
}

async fn admit_pilot(State(metrics): State<Metrics>, Json(review): Json<Value>) -> impl IntoResponse {
    admit(Webhook::Pilot, &metrics, &review)
}

async fn admit_mixer(State(metrics): State<Metrics>, Json(review): Json<Value>) -> impl IntoResponse {
    admit(Webhook::Mixer, &metrics, &review)
}

fn admit(webhook: Webhook, metrics: &Metrics, review: &Value) -> (StatusCode, Json<Value>) {
    let api_version = review.get("apiVersion").and_then(Value::as_str).unwrap_or("admission.k8s.io/v1beta1");
    if !matches!(api_version, "admission.k8s.io/v1" | "admission.k8s.io/v1beta1") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("unsupported AdmissionReview apiVersion {api_version:?}")})),
        );
    }
    let Some(request) = review.get("request") else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "AdmissionReview has no request"})));
    };
    let uid = request.get("uid").cloned().unwrap_or(Value::String(String::new()));
    let decision = decide(webhook, metrics, request);
    let mut response = json!({"uid": uid, "allowed": decision.is_ok()});
    if let Err(denied) = decision {
        let message = denied.to_string();
        response["status"] = json!({"status": "Failure", "message": message, "reason": "BadRequest", "code": 400});
    }
    (StatusCode::OK, Json(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})))
}

/// Why an admission request is denied.
#[derive(Debug, thiserror::Error)]
enum Denied {
    #[error("the admission request carries no object")]
    NoObject,
    #[error("cannot decode the object: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("unrecognized type {type_key} for the {path} webhook")]
    UnknownType { type_key: String, path: &'static str },
    #[error("configuration is invalid: {object}: {}", reasons.join("; "))]
    Invalid { object: String, reasons: Vec<String> },
}

/// `Ok` to admit, `Err` with the reason to deny.
fn decide(webhook: Webhook, metrics: &Metrics, request: &Value) -> Result<(), Denied> {
    let operation = request.get("operation").and_then(Value::as_str).unwrap_or("CREATE");
    if !matches!(operation, "CREATE" | "UPDATE") {
        return Ok(());
    }
    let Some(raw) = request.get("object").filter(|object| !object.is_null()) else {
        return Err(Denied::NoObject);
    };
    let mut object: Object = serde_json::from_value(raw.clone())?;
    let found = kinds::lookup(&object.api_version, &object.kind);
    // The request's namespace belongs to namespaced kinds only; a cluster-scoped object
    // (MeshPolicy, ClusterRbacConfig) stays without one, as the API server keeps it.
    if object.namespace().is_empty() && found.is_some_and(|kind| kind.namespaced) {
        if let Some(namespace) = request.get("namespace").and_then(Value::as_str).filter(|ns| !ns.is_empty()) {
            object.metadata.namespace = Some(namespace.to_string());
        }
    }
    let Some(kind) = found.filter(|kind| kind.webhook == webhook) else {
        let denied = Denied::UnknownType { type_key: object.type_key().to_string(), path: webhook.path() };
        metrics
            .validation_failed
            .get_or_create(&RejectionLabels {
                group: object.group().to_string(),
                version: object.version().to_string(),
                resource: object.kind.clone(),
                reason: "unknown_kind".to_string(),
            })
            .inc();
        return Err(denied);
    };
    let violations = object_violations(&object);
    if violations.is_empty() {
        let resource = ResourceLabels {
            group: kind.group.to_string(),
            version: kind.version.to_string(),
            resource: kind.plural.to_string(),
        };
        metrics.validation_passed.get_or_create(&resource).inc();
        return Ok(());
    }
    let failed = RejectionLabels {
        group: kind.group.to_string(),
        version: kind.version.to_string(),
        resource: kind.plural.to_string(),
        reason: "invalid".to_string(),
    };
    metrics.validation_failed.get_or_create(&failed).inc();
    let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(Denied::Invalid { object: object.display_name(), reasons })
}
