//! The collector's servers. On the Zipkin port (9411): `POST /api/v2/spans` (Zipkin v2 JSON,
//! what Envoy's Zipkin tracer sends) and Zipkin's v2 query API (`/api/v2/services`,
//! `/api/v2/spans`, `/api/v2/remoteServices`, `/api/v2/traces`, `/api/v2/trace/{id}`), open to
//! browsers on other origins as Zipkin's is, plus `/health` and a front page of recent traces. OTLP on its two ports: gRPC's
//! `TraceService/Export` (4317) and HTTP's `POST /v1/traces` in protobuf or JSON (4318).
//! A refused batch gets a 400 that says why; what the store holds is untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::otlp;
use crate::query::TraceQuery;
use crate::span;
use crate::store::Store;

/// Largest body accepted from a tracer.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The store every server shares.
pub type SharedStore = Arc<Mutex<Store>>;

fn lock(store: &SharedStore) -> std::sync::MutexGuard<'_, Store> {
    istio_runtime::sync::lock(store)
}

fn refused(status: StatusCode, message: String) -> Response {
    tracing::warn!("refused spans: {message}");
    (status, format!("{message}\n")).into_response()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

/// `POST /api/v2/spans`: a JSON list of Zipkin v2 spans.
async fn collect_zipkin(State(store): State<SharedStore>, headers: HeaderMap, body: Bytes) -> Response {
    if content_type(&headers).starts_with("application/x-protobuf") {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Zipkin proto3 spans are not taken here: send Zipkin v2 JSON (Envoy: collector_endpoint_version HTTP_JSON)"
                .into(),
        );
    }
    match span::decode_json(&body) {
        Ok(spans) => {
            lock(&store).insert(spans);
            StatusCode::ACCEPTED.into_response()
        }
        Err(error) => refused(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

/// Keeps an OTLP request's good spans; the answer says how many were rejected and why.
fn export(store: &SharedStore, request: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
    let converted = otlp::convert(request);
    if converted.rejected > 0 {
        tracing::warn!(
            rejected = converted.rejected,
            "refused OTLP spans: {}",
            converted.first_error.as_deref().unwrap_or("")
        );
    }
    lock(store).insert(converted.spans);
    ExportTraceServiceResponse {
        partial_success: (converted.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: converted.rejected,
            error_message: converted.first_error.unwrap_or_default(),
        }),
    }
}

/// `POST /v1/traces`: OTLP/HTTP, answered in the encoding it came in.
async fn collect_otlp_http(State(store): State<SharedStore>, headers: HeaderMap, body: Bytes) -> Response {
    let json = content_type(&headers).starts_with("application/json");
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map_err(|error| format!("malformed OTLP JSON: {error}"))
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|error| format!("malformed OTLP protobuf: {error}"))
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => return refused(StatusCode::BAD_REQUEST, message),
    };
    let response = export(&store, &request);
    if json {
        Json(response).into_response()
    } else {
        ([(CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
    }
}

async fn services(State(store): State<SharedStore>) -> Json<Vec<String>> {
    Json(lock(&store).services())
}

/// Answers with what `lookup` finds for the required `serviceName` parameter.
fn for_service(
    store: &SharedStore,
    params: &HashMap<String, String>,
    lookup: fn(&Store, &str) -> Vec<String>,
) -> Response {
    match params.get("serviceName").map(|name| name.trim().to_lowercase()).filter(|name| !name.is_empty()) {
        Some(service) => Json(lookup(&lock(store), &service)).into_response(),
        None => refused(StatusCode::BAD_REQUEST, "serviceName is required".into()),
    }
}

async fn span_names(State(store): State<SharedStore>, Query(params): Query<HashMap<String, String>>) -> Response {
    for_service(&store, &params, Store::span_names)
}

async fn remote_services(State(store): State<SharedStore>, Query(params): Query<HashMap<String, String>>) -> Response {
    for_service(&store, &params, Store::remote_services)
}

async fn traces(State(store): State<SharedStore>, Query(params): Query<HashMap<String, String>>) -> Response {
    match TraceQuery::parse(&params) {
        Ok(query) => Json(lock(&store).find(&query)).into_response(),
        Err(error) => refused(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

async fn trace(State(store): State<SharedStore>, Path(id): Path<String>) -> Response {
    let normalised = match span::normalise_id(&id, 0, "traceId", true) {
        Ok(id) => id,
        Err(_) => return refused(StatusCode::BAD_REQUEST, format!("trace id {id:?} is not 1 to 32 hex characters")),
    };
    match lock(&store).trace(&normalised) {
        Some(spans) => Json(spans).into_response(),
        None => (StatusCode::NOT_FOUND, format!("Cannot find trace {normalised}\n")).into_response(),
    }
}

async fn front_page(
    State(store): State<SharedStore>,
    Query(params): Query<HashMap<String, String>>,
) -> axum::response::Html<String> {
    axum::response::Html(crate::index::render(&lock(&store), &params))
}

async fn health(State(store): State<SharedStore>) -> Json<serde_json::Value> {
    let spans = lock(&store).span_count();
    Json(serde_json::json!({"status": "UP", "zipkin": {"status": "UP", "details": {"spans": spans}}}))
}

async fn allow_any_origin(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The Zipkin port's routes: collection and the query API.
pub fn zipkin_router(store: SharedStore) -> Router {
    Router::new()
        .route("/api/v2/spans", post(collect_zipkin).get(span_names))
        .route("/api/v2/services", get(services))
        .route("/api/v2/remoteServices", get(remote_services))
        .route("/api/v2/traces", get(traces))
        .route("/api/v2/trace/{id}", get(trace))
        .route("/health", get(health))
        .route("/", get(front_page))
        .layer(axum::middleware::from_fn(allow_any_origin))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(store)
}

/// OTLP/HTTP's route.
pub fn otlp_http_router(store: SharedStore) -> Router {
    Router::new().route("/v1/traces", post(collect_otlp_http)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(store)
}

/// OTLP/gRPC's trace service.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    store: SharedStore,
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(export(&self.store, request.get_ref())))
    }
}

/// Serves OTLP/gRPC on `address` until `shutdown` resolves; returns the bound address.
pub async fn serve_otlp_grpc(
    address: SocketAddr,
    store: SharedStore,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, istio_runtime::listen::BindError> {
    let (listener, bound) = istio_runtime::listen::bind(address).await?;
    let service = TraceServiceServer::new(OtlpGrpc { store }).max_decoding_message_size(MAX_BODY);
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "OTLP gRPC server stopped");
        }
    });
    Ok(bound)
}
