//! The status server (`--statusPort`, 15020 in injected pods), as 1.4's pilot-agent served it:
//! `GET /healthz/ready` (the data plane is live and has its first clusters and listeners from
//! Pilot), `GET /app-health/<container>/livez|readyz` (the application's own HTTP probes, which
//! the injector rewrote to go through here, described by `ISTIO_KUBE_APP_PROBERS`), and
//! `POST /quitquitquit` (shut the proxy down).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::agent::node::Role;
use crate::http_client::{self, Admin, ClientError};

/// The environment variable carrying the rewritten application probes.
pub(crate) const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// One rewritten probe, keyed by its status-port path: the probe's `HTTPGetAction` as 1.4's
/// injector wrote it, or `{"httpGet": {...}, "timeoutSeconds": 1}` as later injectors did.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(from = "ProberForm")]
pub(crate) struct AppProber {
    pub http_get: HttpGetAction,
    pub timeout_seconds: Option<u64>,
}

/// The two shapes of a prober entry.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProberForm {
    Wrapped {
        #[serde(rename = "httpGet")]
        http_get: HttpGetAction,
        #[serde(default, rename = "timeoutSeconds")]
        timeout_seconds: Option<u64>,
    },
    Action(HttpGetAction),
}

impl From<ProberForm> for AppProber {
    fn from(form: ProberForm) -> Self {
        match form {
            ProberForm::Wrapped { http_get, timeout_seconds } => Self { http_get, timeout_seconds },
            ProberForm::Action(http_get) => Self { http_get, timeout_seconds: None },
        }
    }
}

/// Kubernetes' `HTTPGetAction`, the parts a prober uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpGetAction {
    #[serde(default)]
    pub path: String,
    pub port: serde_json::Value,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// Parses `ISTIO_KUBE_APP_PROBERS`; an empty value means no probes.
/// A prober map (`ISTIO_KUBE_APP_PROBERS`) the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProberError {
    #[error("{APP_PROBERS_ENV} is not a valid prober map: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{APP_PROBERS_ENV}: {0:?} does not start with /app-health/")]
    Path(String),
    #[error("{APP_PROBERS_ENV}: {path}: scheme {scheme} is not HTTP or HTTPS")]
    Scheme { path: String, scheme: String },
    #[error("{APP_PROBERS_ENV}: {0}: port must be a number (named ports are resolved by the injector)")]
    Port(String),
}

pub(crate) fn parse_app_probers(text: &str) -> Result<HashMap<String, AppProber>, ProberError> {
    if text.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let probers: HashMap<String, AppProber> = serde_json::from_str(text)?;
    for (path, prober) in &probers {
        if !path.starts_with("/app-health/") {
            return Err(ProberError::Path(path.clone()));
        }
        if let Some(scheme) = &prober.http_get.scheme {
            if !scheme.eq_ignore_ascii_case("HTTP") && !scheme.eq_ignore_ascii_case("HTTPS") {
                return Err(ProberError::Scheme { path: path.clone(), scheme: scheme.clone() });
            }
        }
        if prober.http_get.port.as_u64().filter(|port| *port <= u16::MAX as u64).is_none() {
            return Err(ProberError::Port(path.clone()));
        }
    }
    Ok(probers)
}

/// Why the proxy is not ready, as `/healthz/ready` says it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotReady {
    #[error("the data plane's admin API is not answering: {0}")]
    AdminUnreachable(#[source] ClientError),
    #[error(
        "config not received from Pilot (is Pilot running?): cds updates: {cds_ok} successful, {cds_rejected} \
         rejected; lds updates: {lds_ok} successful, {lds_rejected} rejected"
    )]
    NoConfig { cds_ok: u64, cds_rejected: u64, lds_ok: u64, lds_rejected: u64 },
    #[error(transparent)]
    Admin(#[from] ClientError),
    #[error("server is not live, current state is: {0}")]
    NotLive(String),
    #[error("inbound listener not configured yet for application ports {0:?}")]
    NoInbound(Vec<u16>),
}

/// What the readiness check needs to know.
#[derive(Debug, Clone)]
pub(crate) struct StatusConfig {
    pub role: Role,
    pub admin: Admin,
    pub application_ports: Vec<u16>,
    pub app_probers: HashMap<String, AppProber>,
}

struct StatusState {
    config: StatusConfig,
    quit: Box<dyn Fn() + Send + Sync>,
}

/// Binds the status server and serves it until `stop` resolves. `quit` is called on
/// `POST /quitquitquit`.
pub(crate) async fn serve(
    address: SocketAddr,
    config: StatusConfig,
    quit: impl Fn() + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (listener, bound) =
        istio_runtime::listen::bind(address).await.map_err(|error| anyhow::anyhow!("status server: {error}"))?;
    let state = Arc::new(StatusState { config, quit: Box::new(quit) });
    let router = Router::new()
        .route("/healthz/ready", get(ready))
        .route("/quitquitquit", post(quit_handler))
        .route("/app-health/{container}/{probe}", get(app_health))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("status server: {error}");
        }
    });
    Ok((bound, task))
}

async fn ready(State(state): State<Arc<StatusState>>) -> Response {
    match check_readiness(&state.config).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(reason) => {
            tracing::debug!("not ready: {reason}");
            (StatusCode::SERVICE_UNAVAILABLE, reason.to_string()).into_response()
        }
    }
}

/// 1.4's readiness rules, asked of the admin API (ours or Envoy's, they answer alike).
pub(crate) async fn check_readiness(config: &StatusConfig) -> Result<(), NotReady> {
    let admin = config.admin;
    let stats = admin
        .stats(r"^(cluster_manager\.cds|listener_manager\.lds)\.update_(success|rejected)$")
        .await
        .map_err(NotReady::AdminUnreachable)?;
    let value = |name: &str| stats.iter().find(|(stat, _)| stat == name).map_or(0, |(_, value)| *value);
    let (cds_ok, cds_rejected) =
        (value("cluster_manager.cds.update_success"), value("cluster_manager.cds.update_rejected"));
    let (lds_ok, lds_rejected) =
        (value("listener_manager.lds.update_success"), value("listener_manager.lds.update_rejected"));
    if cds_ok + cds_rejected == 0 || lds_ok + lds_rejected == 0 {
        return Err(NotReady::NoConfig { cds_ok, cds_rejected, lds_ok, lds_rejected });
    }
    let server_info = admin.get("/server_info").await?;
    let state = serde_json::from_slice::<serde_json::Value>(&server_info.body)
        .ok()
        .and_then(|info| info.get("state").and_then(|state| state.as_str()).map(str::to_string))
        .unwrap_or_else(|| "UNKNOWN".to_string());
    if state != "LIVE" {
        return Err(NotReady::NotLive(state));
    }
    if config.role == Role::Sidecar && !config.application_ports.is_empty() {
        // Inbound traffic for every port goes through `virtualInbound` (one chain per service
        // port, a passthrough chain for the rest), so its presence means the ports are configured.
        let listeners = admin.get("/listeners?format=json").await?;
        let listeners: serde_json::Value = serde_json::from_slice(&listeners.body).unwrap_or_default();
        let has_inbound = listeners["listener_statuses"]
            .as_array()
            .is_some_and(|all| all.iter().any(|listener| listener["name"] == "virtualInbound"));
        if !has_inbound {
            return Err(NotReady::NoInbound(config.application_ports.clone()));
        }
    }
    Ok(())
}

async fn quit_handler(State(state): State<Arc<StatusState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    // Only the pod itself may stop its proxy: 1.4 refused requests not from loopback.
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "only allowed from localhost").into_response();
    }
    (state.quit)();
    (StatusCode::OK, "OK").into_response()
}

async fn app_health(
    State(state): State<Arc<StatusState>>,
    axum::extract::Path((container, probe)): axum::extract::Path<(String, String)>,
) -> Response {
    let key = format!("/app-health/{container}/{probe}");
    let Some(prober) = state.config.app_probers.get(&key) else {
        return (StatusCode::NOT_FOUND, format!("app prober config does not exist for {key}")).into_response();
    };
    let action = &prober.http_get;
    let port = action.port.as_u64().unwrap_or_default();
    let host = action.host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
    let path = if action.path.starts_with('/') { action.path.clone() } else { format!("/{}", action.path) };
    let headers: Vec<(String, String)> =
        action.http_headers.iter().map(|header| (header.name.clone(), header.value.clone())).collect();
    let timeout = Duration::from_secs(prober.timeout_seconds.unwrap_or(1).max(1));
    let tls = action.scheme.as_deref().is_some_and(|scheme| scheme.eq_ignore_ascii_case("HTTPS"));
    match http_client::send(tls, Method::GET, &format!("{host}:{port}"), &path, &headers, timeout).await {
        // Kubernetes counts 200–399 as success; pass failures through with the app's status.
        Ok(response) if response.status.is_success() || response.status.is_redirection() => {
            StatusCode::OK.into_response()
        }
        Ok(response) => response.status.into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("probe {key}: {error}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_injectors_prober_map() {
        let probers = parse_app_probers(
            r#"{"/app-health/details/livez":{"httpGet":{"path":"/health","port":9080,"scheme":"HTTP",
                "httpHeaders":[{"name":"X-Probe","value":"1"}]},"timeoutSeconds":3}}"#,
        )
        .expect("probers");
        let prober = &probers["/app-health/details/livez"];
        assert_eq!(prober.timeout_seconds, Some(3));
        assert_eq!(prober.http_get.path, "/health");
        assert_eq!(prober.http_get.http_headers[0].name, "X-Probe");
        assert!(parse_app_probers("").expect("empty").is_empty());
        // 1.4's injector wrote the HTTPGetAction itself.
        let probers =
            parse_app_probers(r#"{"/app-health/hello/readyz":{"path":"/ready","port":3333,"scheme":"HTTPS"}}"#)
                .expect("1.4 form");
        let prober = &probers["/app-health/hello/readyz"];
        assert_eq!((prober.http_get.path.as_str(), prober.http_get.port.as_u64()), ("/ready", Some(3333)));
        assert_eq!(prober.http_get.scheme.as_deref(), Some("HTTPS"));
        assert_eq!(prober.timeout_seconds, None);
    }

    #[test]
    fn rejects_probers_it_cannot_run() {
        let error =
            parse_app_probers(r#"{"/app-health/a/livez":{"httpGet":{"port":"http"}}}"#).expect_err("named").to_string();
        assert!(error.contains("/app-health/a/livez") && error.contains("port"), "{error}");
        let error = parse_app_probers(r#"{"/app-health/a/readyz":{"httpGet":{"port":1,"scheme":"TCP"}}}"#)
            .expect_err("scheme")
            .to_string();
        assert!(error.contains("TCP"), "{error}");
        let error = parse_app_probers(r#"{"/x":{"httpGet":{"port":1}}}"#).expect_err("path").to_string();
        assert!(error.contains("\"/x\""), "{error}");
        let error = parse_app_probers("[").expect_err("json").to_string();
        assert!(error.contains(APP_PROBERS_ENV), "{error}");
    }
}
