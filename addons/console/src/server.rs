//! The console's HTTP server: `/graph`, `/dashboards` (mesh), `/dashboards/service?service=`,
//! `/dashboards/workload?workload=&namespace=`, `/traces`, `/traces/{id}`, `/config` and
//! `/health`; `/` and 1.4's `/kiali` lead to the graph, `/grafana` to the dashboards. Every
//! page is rendered here (HTML and SVG, no scripts), from the sources at the time of the request.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::dashboards::{self, valid_name, Subject};
use crate::graph::{self, Graph};
use crate::page::{frame, no_data, notice};
use crate::sources::Sources;

type Params = Query<HashMap<String, String>>;

/// The Prometheus range of a page's `window` parameter (`1m` unless it is one offered).
fn window(params: &HashMap<String, String>, default: &'static str) -> &'static str {
    match params.get("window").map(String::as_str) {
        Some("1m") => "1m",
        Some("5m") => "5m",
        Some("15m") => "15m",
        _ => default,
    }
}

fn bad_name(what: &str, value: &str) -> Response {
    let body = notice(&format!("{what} {value:?} is not a name (letters, digits, '.', '-', '_')"));
    (StatusCode::BAD_REQUEST, Html(frame("Bad request", "", &body))).into_response()
}

async fn graph_page(State(sources): State<Arc<Sources>>, Query(params): Params) -> Html<String> {
    let window = window(&params, "5m");
    let queries = graph::queries(window);
    let (destination, source, p99, tcp) = tokio::join!(
        sources.query(&queries.http_destination),
        sources.query(&queries.http_source),
        sources.query(&queries.p99),
        sources.query(&queries.tcp)
    );
    let mut body = String::new();
    let _ = write!(body, "<p>Traffic between workloads over the last {window} ");
    for option in ["1m", "5m", "15m"] {
        if option != window {
            let _ = write!(body, "(<a href=\"/graph?window={option}\">{option}</a>) ");
        }
    }
    body.push_str("· edges: requests per second, share of 5xx answers, p99 latency; dashed: TCP bytes per second.</p>");
    match (destination, source, p99, tcp) {
        (Ok(destination), Ok(source), Ok(p99), Ok(tcp)) => {
            let graph = Graph::build(&destination, &source, &p99, &tcp);
            if graph.edges.is_empty() {
                body.push_str(&no_data(
                    "No traffic between workloads in this window: send requests through the mesh (Prometheus scrapes every 15 s).",
                ));
            } else {
                body.push_str(&graph.render());
            }
        }
        (destination, source, p99, tcp) => {
            let error = [destination.err(), source.err(), p99.err(), tcp.err()].into_iter().flatten().next();
            body.push_str(&notice(&error.map(|error| error.to_string()).unwrap_or_default()));
        }
    }
    Html(frame("Service graph", "/graph", &body))
}

async fn mesh_dashboard(State(sources): State<Arc<Sources>>, Query(params): Params) -> Html<String> {
    Html(dashboards::render(&sources, &Subject::Mesh, window(&params, "1m")).await)
}

async fn service_dashboard(State(sources): State<Arc<Sources>>, Query(params): Params) -> Response {
    let service = params.get("service").cloned().unwrap_or_default();
    if !valid_name(&service) {
        return bad_name("service", &service);
    }
    Html(dashboards::render(&sources, &Subject::Service(service), window(&params, "1m")).await).into_response()
}

async fn workload_dashboard(State(sources): State<Arc<Sources>>, Query(params): Params) -> Response {
    let name = params.get("workload").cloned().unwrap_or_default();
    let namespace = params.get("namespace").cloned().unwrap_or_else(|| "default".into());
    for (what, value) in [("workload", &name), ("namespace", &namespace)] {
        if !valid_name(value) {
            return bad_name(what, value);
        }
    }
    let subject = Subject::Workload { name, namespace };
    Html(dashboards::render(&sources, &subject, window(&params, "1m")).await).into_response()
}

async fn trace_list(State(sources): State<Arc<Sources>>, Query(params): Params) -> Html<String> {
    let service = params.get("service").map(String::as_str).filter(|service| !service.is_empty());
    Html(crate::traces::list(&sources, service).await)
}

async fn trace_page(State(sources): State<Arc<Sources>>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return bad_name("trace id", &id);
    }
    Html(crate::traces::waterfall(&sources, &id).await).into_response()
}

async fn config_page(State(sources): State<Arc<Sources>>) -> Html<String> {
    Html(crate::config::render(&sources).await)
}

pub fn router(sources: Arc<Sources>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/graph") }))
        .route("/kiali", get(|| async { Redirect::to("/graph") }))
        .route("/grafana", get(|| async { Redirect::to("/dashboards") }))
        .route("/graph", get(graph_page))
        .route("/dashboards", get(mesh_dashboard))
        .route("/dashboards/service", get(service_dashboard))
        .route("/dashboards/workload", get(workload_dashboard))
        .route("/traces", get(trace_list))
        .route("/traces/{id}", get(trace_page))
        .route("/config", get(config_page))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(sources)
}
