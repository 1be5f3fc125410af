//! The headers the connection manager adds before routing, as Envoy does: a request id when
//! the manager generates them, `x-forwarded-for` and `x-envoy-external-address` when it uses the
//! remote address, and `x-forwarded-proto` when the client did not say.

use http::header::HeaderValue;
use http::HeaderMap;

use super::super::config::listener::HttpManagerConfig;
use super::downstream::Downstream;

/// A new random (version 4) UUID, from the thread's random generator: `Uuid::new_v4` asks the
/// kernel for every one, a system call per request.
fn request_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_bytes(uuid.hyphenated().encode_lower(&mut text).as_bytes())
        .expect("a UUID is a valid header value")
}

/// Adds the forwarding headers to a request's `headers`.
pub(crate) fn add_request_headers(headers: &mut HeaderMap, manager: &HttpManagerConfig, downstream: &Downstream) {
    if manager.generate_request_id && !headers.contains_key("x-request-id") {
        headers.insert("x-request-id", request_id());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::http::testing::{downstream, manager, parts, route_table};

    #[test]
    fn forwarding_headers_are_added_as_envoy_adds_them() {
        let mut manager = manager(route_table(serde_json::json!({"name": "t"})));
        let mut request = parts("GET", "/", &[("x-forwarded-for", "192.0.2.1")]);
        add_request_headers(&mut request.headers, &manager, &downstream());
        let id = request.headers["x-request-id"].clone();
        assert_eq!(id.len(), 36, "a UUID");
        assert_eq!(request.headers["x-forwarded-for"], "192.0.2.1", "not this proxy's to extend");
        assert_eq!(request.headers["x-forwarded-proto"], "http");

        manager.use_remote_address = true;
        add_request_headers(&mut request.headers, &manager, &downstream());
        assert_eq!(request.headers["x-request-id"], id, "an existing id stays");
        assert_eq!(request.headers["x-forwarded-for"], "192.0.2.1,10.0.0.1");
        assert_eq!(request.headers["x-envoy-external-address"], "10.0.0.1");

        manager.generate_request_id = false;
        let mut bare = parts("GET", "/", &[("x-forwarded-proto", "https")]);
        add_request_headers(&mut bare.headers, &manager, &downstream());
        assert!(!bare.headers.contains_key("x-request-id"));
        assert_eq!(bare.headers["x-forwarded-proto"], "https", "the client's scheme stays");
    }

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| request_id().to_str().expect("ascii").to_string()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id, &id.to_lowercase());
        }
    }
}
