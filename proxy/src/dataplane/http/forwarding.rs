//! The headers the connection manager adds before routing, as Envoy does: a request id when
//! the manager generates them, `x-forwarded-for` and `x-envoy-external-address` when it uses the
//! remote address, and `x-forwarded-proto` when the client did not say.

use http::header::HeaderValue;
use http::HeaderMap;

use super::super::config::listener::HttpManagerConfig;
use super::downstream::Downstream;

/// Adds the forwarding headers to a request's `headers`.
pub(crate) fn add_request_headers(headers: &mut HeaderMap, manager: &HttpManagerConfig, downstream: &Downstream) {
    if manager.generate_request_id && !headers.contains_key("x-request-id") {
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            headers.insert("x-request-id", id);
        }
    }
    if manager.use_remote_address {
        let remote = downstream.remote.ip().to_string();
        let forwarded = match headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
            Some(existing) => format!("{existing},{remote}"),
            None => remote.clone(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert("x-forwarded-for", value);
        }
        if let Ok(value) = HeaderValue::from_str(&remote) {
            headers.insert("x-envoy-external-address", value);
        }
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static(downstream.scheme()));
    }
}
