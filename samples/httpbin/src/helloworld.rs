//! Istio's helloworld sample (`helloworld:app`): `GET /hello` answers
//! `Hello version: $SERVICE_VERSION, instance: $HOSTNAME`, so a client sees which version and
//! which pod served it, and `GET /health` says it is healthy. The images
//! `istio/examples-helloworld-v1`/`-v2` run it with `SERVICE_VERSION` set to their version.

use axum::routing::get;
use axum::Router;

/// The greeting for a version and an instance (pod) name.
pub(crate) fn greeting(version: &str, instance: &str) -> String {
    format!("Hello version: {version}, instance: {instance}\n")
}

/// The sample's routes.
pub(crate) fn router() -> Router {
    let version = std::env::var("SERVICE_VERSION").unwrap_or_else(|_| "None".to_string());
    let instance = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|name| name.trim().to_string()))
        .unwrap_or_default();
    let hello = greeting(&version, &instance);
    Router::new()
        .route("/hello", get(move || async move { hello }))
        .route("/health", get(|| async { "Helloworld is healthy" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_names_version_and_instance() {
        assert_eq!(greeting("v1", "helloworld-v1-abc"), "Hello version: v1, instance: helloworld-v1-abc\n");
    }
}
