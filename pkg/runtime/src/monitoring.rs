//! The monitoring server every control-plane component runs on 15014: `/metrics` in the
//! Prometheus text format from a prometheus-client registry, with 1.4's `istio_build` and the
//! process's `process_*` metrics, and `/version`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// A shared metrics registry; components register their metrics at start-up.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// A new registry.
pub fn registry() -> SharedRegistry {
    Arc::new(Mutex::new(Registry::default()))
}

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &SharedRegistry) -> String {
    let mut text = String::new();
    let registry = crate::sync::lock(registry);
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    text
}

/// A component's exposition: its registry, then the process's metrics, before the end marker.
fn render_with_process(registry: &SharedRegistry) -> String {
    let text = render(registry);
    let body = text.strip_suffix("# EOF\n").unwrap_or(&text);
    format!("{body}{}# EOF\n", crate::metrics::process_metrics())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct BuildLabels {
    component: String,
    tag: String,
}

/// Routes `/metrics` and `/version`, and registers 1.4's `istio_build{component, tag}`;
/// components may merge more routes in.
pub fn router(registry: SharedRegistry, component: &'static str) -> Router {
    let build: prometheus_client::metrics::family::Family<BuildLabels, prometheus_client::metrics::gauge::Gauge> =
        Default::default();
    // 1.4 labelled pilot-discovery's build `pilot`.
    let label = component.strip_suffix("-discovery").unwrap_or(component);
    build.get_or_create(&BuildLabels { component: label.to_string(), tag: crate::VERSION.to_string() }).set(1);
    crate::sync::lock(&registry).register("istio_build", "Istio component build info", build);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_with_process(&registry))
                        .into_response()
                }
            }),
        )
        .route("/version", get(move || async move { format!("{component} {}\n", crate::VERSION) }))
}

/// Binds `address` and serves `router` until `shutdown` resolves. Returns the bound address.
pub async fn serve(
    address: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, crate::listen::BindError> {
    let (listener, bound) = crate::listen::bind(address).await?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::warn!(%error, "monitoring server stopped");
        }
    });
    Ok(bound)
}
