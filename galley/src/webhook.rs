//! Galley's validating admission webhook over HTTPS: `/admitpilot` and `/admitmixer` take an
//! AdmissionReview (`admission.k8s.io/v1` or `v1beta1`) and answer whether the object is valid,
//! with the validation messages when it is not; `/ready` reports readiness. Each webhook admits
//! only the kinds Istio 1.4 routed to it. As 1.4's: a request without a body is a 400 and one
//! that is not `application/json` a 415 (both counted in `galley_validation_http_error`); a
//! body that does not decode is answered with a denial that says so; operations other than
//! CREATE and UPDATE are allowed (the Mixer webhook admits named DELETEs); every decision is
//! counted with the request's resource and 1.4's reason.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use istio_api::kinds::{self, Webhook};
use istio_config::object::Object;
use istio_config::validation::object_violations;
use serde_json::{json, Value};

use crate::metrics::{HttpErrorLabels, Metrics, ResourceLabels};

/// The webhook's routes.
pub(crate) fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/admitpilot", post(admit_pilot))
        .route("/admitmixer", post(admit_mixer))
        .route("/ready", get(|| async { "ready\n" }))
        .with_state(metrics)
}

async fn admit_pilot(State(metrics): State<Metrics>, headers: HeaderMap, body: Bytes) -> Response {
    serve(Webhook::Pilot, &metrics, &headers, &body)
}

async fn admit_mixer(State(metrics): State<Metrics>, headers: HeaderMap, body: Bytes) -> Response {
    serve(Webhook::Mixer, &metrics, &headers, &body)
}

/// An HTTP-level refusal, counted by status as 1.4 did.
fn http_error(metrics: &Metrics, status: StatusCode, message: &str) -> Response {
    metrics.validation_http_error.get_or_create(&HttpErrorLabels { status: status.as_u16().to_string() }).inc();
    (status, format!("{message}\n")).into_response()
}

fn serve(webhook: Webhook, metrics: &Metrics, headers: &HeaderMap, body: &[u8]) -> Response {
    if body.is_empty() {
        return http_error(metrics, StatusCode::BAD_REQUEST, "no body found");
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if content_type != Some("application/json") {
        return http_error(
            metrics,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid Content-Type, want `application/json`",
        );
    }
    let review: Value = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(error) => return undecodable(&format!("could not decode body: {error}")),
    };
    let api_version = review.get("apiVersion").and_then(Value::as_str).unwrap_or("admission.k8s.io/v1beta1");
    if !matches!(api_version, "admission.k8s.io/v1" | "admission.k8s.io/v1beta1") {
        return http_error(
            metrics,
            StatusCode::BAD_REQUEST,
            &format!("unsupported AdmissionReview apiVersion {api_version:?}"),
        );
    }
    let Some(request) = review.get("request").filter(|request| request.is_object()) else {
        return undecodable("could not decode body: the AdmissionReview has no request");
    };
    let uid = request.get("uid").cloned().unwrap_or(Value::String(String::new()));
    let decision = decide(webhook, metrics, request);
    let mut response = json!({"uid": uid, "allowed": decision.is_ok()});
    if let Err(denied) = decision {
        let message = denied.to_string();
        response["status"] = json!({"status": "Failure", "message": message, "reason": "BadRequest", "code": 400});
    }
    Json(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})).into_response()
}

/// A review that could not be read is still answered, as a denial with the reason.
fn undecodable(message: &str) -> Response {
    let response = json!({"uid": "", "allowed": false,
                          "status": {"status": "Failure", "message": message, "reason": "BadRequest", "code": 400}});
    Json(json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": response}))
        .into_response()
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
    #[error("unknown field {field:?} on {kind} resource {object}")]
    UnknownField { field: String, kind: String, object: String },
    #[error("illformed request: name not found on delete request")]
    NamelessDelete,
}

/// The fields 1.4 allowed at the top of an Istio object.
const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// The resource the request names (`request.resource`, as the API server sends it), or the
/// object's kind from the table when a caller left it out.
fn request_resource(request: &Value) -> Option<ResourceLabels> {
    let resource = request.get("resource")?;
    let field = |name: &str| resource.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    Some(ResourceLabels { group: field("group"), version: field("version"), resource: field("resource") })
}

fn labels_for(request: &Value, object: Option<&Object>) -> ResourceLabels {
    if let Some(resource) = request_resource(request) {
        return resource;
    }
    let Some(object) = object else { return ResourceLabels::default() };
    match kinds::lookup(&object.api_version, &object.kind) {
        Some(kind) => ResourceLabels {
            group: kind.group.to_string(),
            version: kind.version.to_string(),
            resource: kind.plural.to_string(),
        },
        None => ResourceLabels {
            group: object.group().to_string(),
            version: object.version().to_string(),
            resource: object.kind.to_lowercase(),
        },
    }
}

/// `Ok` to admit, `Err` with the reason to deny; the decision is counted as 1.4 did.
fn decide(webhook: Webhook, metrics: &Metrics, request: &Value) -> Result<(), Denied> {
    let object = request.get("object").filter(|object| !object.is_null());
    let parsed: Option<Result<Object, serde_json::Error>> = object.map(|raw| serde_json::from_value(raw.clone()));
    let resource = labels_for(request, parsed.as_ref().and_then(|parsed| parsed.as_ref().ok()));
    let fail = |reason: &str| {
        metrics.validation_failed.get_or_create(&resource.clone().with_reason(reason)).inc();
    };
    let operation = request.get("operation").and_then(Value::as_str).unwrap_or("CREATE");
    match operation {
        "CREATE" | "UPDATE" => {}
        // The Mixer webhook sees deletions, and passes any that names its object.
        "DELETE" if webhook == Webhook::Mixer => {
            if request.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
                fail("unknown_type");
                return Err(Denied::NamelessDelete);
            }
            metrics.validation_passed.get_or_create(&resource).inc();
            return Ok(());
        }
        _ => {
            fail("unsupported_operation");
            return Ok(());
        }
    }
    let (Some(raw), Some(parsed)) = (object, parsed) else {
        fail("yaml_decode_error");
        return Err(Denied::NoObject);
    };
    let mut object = match parsed {
        Ok(object) => object,
        Err(error) => {
            fail("yaml_decode_error");
            return Err(Denied::Decode(error));
        }
    };
    let found = kinds::lookup(&object.api_version, &object.kind);
    // The request's namespace belongs to namespaced kinds only; a cluster-scoped object
    // (MeshPolicy, ClusterRbacConfig) stays without one, as the API server keeps it.
    if object.namespace().is_empty() && found.is_some_and(|kind| kind.namespaced) {
        if let Some(namespace) = request.get("namespace").and_then(Value::as_str).filter(|ns| !ns.is_empty()) {
            object.metadata.namespace = Some(namespace.to_string());
        }
    }
    if found.filter(|kind| kind.webhook == webhook).is_none() {
        fail("unknown_type");
        return Err(Denied::UnknownType { type_key: object.type_key().to_string(), path: webhook.path() });
    }
    let violations = object_violations(&object);
    if !violations.is_empty() {
        fail("invalid_resource");
        let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(Denied::Invalid { object: object.display_name(), reasons });
    }
    let unknown_field =
        raw.as_object().and_then(|fields| fields.keys().find(|key| !TOP_LEVEL_FIELDS.contains(&key.as_str())));
    if let Some(field) = unknown_field {
        fail("invalid_resource");
        return Err(Denied::UnknownField {
            field: field.clone(),
            kind: object.kind.clone(),
            object: format!("{}/{}", object.namespace(), object.name()),
        });
    }
    metrics.validation_passed.get_or_create(&resource).inc();
    Ok(())
}
