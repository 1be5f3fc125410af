//! The admin API (127.0.0.1:15000 in a pod) with Envoy's paths and shapes where tools read
//! them: `/ready`, `/server_info`, `/stats` (text, `?filter=`, `?usedonly`),
//! `/stats/prometheus`, `/config_dump` (`?resource=`, `?include_eds`), `/clusters`,
//! `/listeners` (`?format=json`), `/certs`, `/logging` (runtime log levels), `/drain_listeners` and
//! `/quitquitquit`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::listener::Stopped;
use super::shared::{ServerState, Shared};

type Params = Query<HashMap<String, String>>;

/// Serves the admin API on `address`; returns the bound address and the server's task.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    address: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), istio_runtime::listen::BindError> {
    let (listener, bound) = istio_runtime::listen::bind(address).await?;
    let router = Router::new()
        .route("/ready", get(ready))
        .route("/server_info", get(server_info))
        .route("/stats", get(stats))
        .route("/stats/prometheus", get(prometheus))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/certs", get(certs))
        .route("/listeners", get(listeners))
        .route("/drain_listeners", post(drain_listeners))
        .route("/logging", get(logging).post(set_logging))
        .route("/quitquitquit", post(quit))
        .with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!("admin API: {error}");
        }
    });
    Ok((bound, task))
}

fn json_response(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string_pretty(&value).unwrap_or_default())
        .into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.state();
    let status = if state == ServerState::Live { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("{}\n", state.as_str())).into_response()
}

async fn certs(State(shared): State<Arc<Shared>>) -> Response {
    let materials = shared.tls_materials();
    let tls = shared.traffic.tls.clone();
    let render = move || super::certs::report(&materials, &tls, std::time::SystemTime::now());
    match tokio::task::spawn_blocking(render).await {
        Ok(report) => json_response(report),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

async fn server_info(State(shared): State<Arc<Shared>>) -> Response {
    let node =
        shared.bootstrap.node.clone().map(|node| {
            move || super::config_dump::with_descriptors(move || istio_xds::json::message_to_json(&node).ok())
        });
    let node = match node {
        Some(render) => tokio::task::spawn_blocking(render).await.ok().flatten(),
        None => None,
    };
    json_response(json!({
        "version": format!("istio-rs/{}", istio_runtime::VERSION),
        "state": shared.state().as_str(),
        "uptime_current_epoch": format!("{}s", shared.started.elapsed().as_secs()),
        "uptime_all_epochs": format!("{}s", shared.started.elapsed().as_secs()),
        "node": node,
    }))
}

async fn stats(State(shared): State<Arc<Shared>>, Query(params): Params) -> Response {
    if params.get("format").map(String::as_str) == Some("prometheus") {
        return prometheus(State(shared)).await;
    }
    let filter = match params.get("filter").filter(|filter| !filter.is_empty()) {
        Some(pattern) => match regex::Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(error) => return (StatusCode::BAD_REQUEST, format!("Invalid regex: {error}\n")).into_response(),
        },
        None => None,
    };
    let text = shared.traffic.stats.render_text(filter.as_ref(), params.contains_key("usedonly"));
    if params.get("format").map(String::as_str) == Some("json") {
        let stats: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| json!({"name": name, "value": value.parse::<i64>().unwrap_or_default()}))
            .collect();
        return json_response(json!({"stats": stats}));
    }
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.traffic.stats.render_prometheus() + &shared.traffic.istio_metrics.render_prometheus(),
    )
        .into_response()
}

/// Rendering reads Envoy's API descriptors, so it runs off the workers that carry traffic.
async fn config_dump(State(shared): State<Arc<Shared>>, Query(params): Params) -> Response {
    let render = move || {
        super::config_dump::with_descriptors(|| {
            let bootstrap = istio_xds::json::message_to_json(&shared.bootstrap).unwrap_or_default();
            let dump = istio_runtime::sync::lock(&shared.dump).render(
                bootstrap,
                params.get("resource").map(String::as_str),
                params.contains_key("include_eds"),
            );
            serde_json::to_string_pretty(&dump).unwrap_or_default()
        })
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the config dump: {error}\n")).into_response()
        }
    }
}

async fn clusters(State(shared): State<Arc<Shared>>, Query(params): Params) -> Response {
    let now = std::time::Instant::now();
    let mut clusters: Vec<_> = shared.traffic.clusters.all().values().cloned().collect();
    clusters.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    if params.get("format").map(String::as_str) == Some("json") {
        let statuses: Vec<serde_json::Value> = clusters
            .iter()
            .map(|cluster| {
                let hosts: Vec<serde_json::Value> = cluster
                    .hosts()
                    .hosts
                    .iter()
                    .map(|host| {
                        let mut status = json!({
                            "address": {"socket_address": {"address": host.address.ip().to_string(), "port_value": host.address.port()}},
                            "weight": host.weight,
                            "health_status": {
                                "eds_health_status": if host.eds_healthy { "HEALTHY" } else { "UNHEALTHY" },
                                "failed_outlier_check": host.ejected(now),
                            },
                        });
                        // As Envoy's proto JSON: fields at their defaults are left out.
                        let found = istio_xds::locality::parse(&host.locality).unwrap_or_default();
                        let locality: serde_json::Map<String, serde_json::Value> =
                            [("region", &found.region), ("zone", &found.zone), ("sub_zone", &found.sub_zone)]
                                .into_iter()
                                .filter(|(_, value)| !value.is_empty())
                                .map(|(key, value)| (key.to_string(), json!(value)))
                                .collect();
                        if !locality.is_empty() {
                            status["locality"] = serde_json::Value::Object(locality);
                        }
                        if host.priority > 0 {
                            status["priority"] = json!(host.priority);
                        }
                        status
                    })
                    .collect();
                json!({"name": cluster.config.name, "host_statuses": hosts})
            })
            .collect();
        return json_response(json!({"cluster_statuses": statuses}));
    }
    let mut text = String::new();
    for cluster in clusters {
        let name = &cluster.config.name;
        let limits = cluster.config.limits;
        text.push_str(&format!(
            "{name}::default_priority::max_connections::{}\n{name}::default_priority::max_pending_requests::{}\n\
             {name}::default_priority::max_requests::{}\n{name}::default_priority::max_retries::{}\n",
            limits.max_connections, limits.max_pending_requests, limits.max_requests, limits.max_retries
        ));
        for host in cluster.hosts().hosts.iter() {
            let address = host.address;
            let health = match (host.eds_healthy, host.ejected(now)) {
                (true, false) => "healthy".to_string(),
                (false, _) => "/failed_eds_health".to_string(),
                (true, true) => "/failed_outlier_check".to_string(),
            };
            let found = istio_xds::locality::parse(&host.locality).unwrap_or_default();
            let (region, zone, sub_zone) = (&found.region, &found.zone, &found.sub_zone);
            text.push_str(&format!(
                "{name}::{address}::rq_active::{}\n{name}::{address}::health_flags::{health}\n{name}::{address}::weight::{}\n\
                 {name}::{address}::region::{region}\n{name}::{address}::zone::{zone}\n{name}::{address}::sub_zone::{sub_zone}\n\
                 {name}::{address}::priority::{}\n",
                host.active_requests.load(std::sync::atomic::Ordering::Relaxed),
                host.weight,
                host.priority
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

async fn listeners(State(shared): State<Arc<Shared>>, Query(params): Params) -> Response {
    let table = shared.traffic.listeners.load_full();
    let mut listeners: Vec<_> = table.by_name.values().cloned().collect();
    listeners.sort_by(|a, b| a.name.cmp(&b.name));
    if params.get("format").map(String::as_str) == Some("json") {
        let statuses: Vec<serde_json::Value> = listeners
            .iter()
            .map(|listener| {
                json!({"name": listener.name, "local_address": {"socket_address": {
                    "address": listener.address.ip().to_string(), "port_value": listener.address.port()}}})
            })
            .collect();
        return json_response(json!({"listener_statuses": statuses}));
    }
    let text: String = listeners.iter().map(|listener| format!("{}::{}\n", listener.name, listener.address)).collect();
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// Envoy's logger names and the data-plane modules they stand for.
const LOGGERS: &[(&str, &str)] = &[
    ("admin", "proxy::dataplane::admin"),
    ("config", "proxy::dataplane::xds"),
    ("connection", "proxy::dataplane::listener"),
    ("http", "proxy::dataplane::http"),
    ("router", "proxy::dataplane::http::router"),
    ("upstream", "proxy::dataplane::upstream"),
    ("pool", "proxy::dataplane::upstream::pool"),
    ("tracing", "proxy::dataplane::trace"),
    ("main", "proxy::agent"),
];

fn level_name(level: &str) -> Option<&'static str> {
    Some(match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        _ => return None,
    })
}

/// `GET /logging`: the levels in force.
async fn logging() -> Response {
    let current = istio_runtime::log_levels().unwrap_or_default();
    let mut text = format!("active loggers (RUST_LOG: {current}):\n");
    for (name, module) in LOGGERS {
        text.push_str(&format!("  {name}: {module}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// `POST /logging?level=debug` sets every logger; `POST /logging?http=debug` one of them.
async fn set_logging(Query(params): Params) -> Response {
    let mut directives = istio_runtime::log_levels().unwrap_or_else(|| "info".into());
    for (key, value) in &params {
        let Some(level) = level_name(value) else {
            return (StatusCode::BAD_REQUEST, format!("error: unknown level {value:?}\n")).into_response();
        };
        if key == "level" {
            directives = level.to_string();
        } else if let Some((_, module)) = LOGGERS.iter().find(|(name, _)| name == key) {
            directives = format!("{directives},{module}={level}");
        } else {
            return (StatusCode::NOT_FOUND, format!("error: unknown logger {key:?}\n")).into_response();
        }
    }
    match istio_runtime::set_log_levels(&directives) {
        Ok(()) => logging().await,
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {error}\n")).into_response(),
    }
}

/// Envoy's `drain_listeners`: stops accepting on every listener (`?inboundonly`: the inbound
/// ones) at once, or with `?graceful` after asking connections to close for Envoy's default
/// drain time. The server stays live (only a failed health check would change that).
async fn drain_listeners(State(shared): State<Arc<Shared>>, Query(params): Query<HashMap<String, String>>) -> Response {
    let scope = if params.contains_key("inboundonly") { Stopped::Inbound } else { Stopped::All };
    if params.contains_key("graceful") {
        shared.traffic.draining.send_replace(true);
        let shared = Arc::downgrade(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(DEFAULT_DRAIN_TIME).await;
            if let Some(shared) = shared.upgrade() {
                shared.listeners.stop(&shared.traffic, scope);
            }
        });
    } else {
        shared.listeners.stop(&shared.traffic, scope);
    }
    (StatusCode::OK, "OK\n").into_response()
}

/// Envoy's default `--drain-time-s`.
const DEFAULT_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(600);

async fn quit(State(shared): State<Arc<Shared>>) -> Response {
    shared.quit.notify_waiters();
    shared.quit.notify_one();
    (StatusCode::OK, "OK\n").into_response()
}
