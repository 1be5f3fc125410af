//! The request body on its way upstream: counted as it is read from the client (for the access
//! log), and kept in memory when the route may send it more than once (retries, mirrors) and it
//! is known to be small — an empty body or a small `content-length`. Streams (gRPC streaming,
//! chunked uploads) go through as they come and cannot be retried once sent, as in Envoy.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::super::body::{self, Body};
use super::super::config::route::Forward;
use super::router::RequestBody;

/// Request bodies up to this size are kept in memory so the request can be retried or mirrored.
pub(crate) const BUFFER_LIMIT: u64 = 1024 * 1024;

/// A request body that adds the bytes read from the client to `total`.
pub(crate) fn counted(incoming: Incoming, total: Arc<AtomicU64>) -> Body {
    body::boxed(Counted { inner: incoming, total })
}

struct Counted {
    inner: Incoming,
    total: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.total.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the body should be read into memory first.
pub(crate) fn should_buffer(forward: &Forward, parts: &Parts, body: &Body) -> bool {
    let wants_copy = forward.retry.is_some() || !forward.mirrors.is_empty();
    let length =
        parts.headers.get(http::header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let is_upgrade = parts.headers.contains_key(http::header::UPGRADE);
    let known_small = http_body::Body::is_end_stream(body) || length.is_some_and(|length| length <= BUFFER_LIMIT);
    wants_copy && !is_upgrade && known_small
}

/// The body as the router will send it; `Err` when a body to be kept cannot be read whole.
pub(crate) async fn prepare(forward: &Forward, parts: &Parts, body: Body) -> Result<RequestBody, ()> {
    if !should_buffer(forward, parts, &body) {
        return Ok(RequestBody::Streamed(Some(body)));
    }
    match http_body_util::Limited::new(body, BUFFER_LIMIT as usize).collect().await {
        Ok(collected) => Ok(RequestBody::Buffered(collected.to_bytes())),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::config::route::{Action, RouteTable};
    use crate::dataplane::http::testing::{parts, route_table};
    use serde_json::json;

    fn table(retries: bool) -> std::sync::Arc<RouteTable> {
        let mut route = json!({"cluster": "c"});
        if retries {
            route["retry_policy"] = json!({"retry_on": "5xx", "num_retries": 2});
        }
        route_table(json!({"name": "80", "virtual_hosts": [{"name": "h", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": route}]}]}))
    }

    fn forward(table: &RouteTable) -> &Forward {
        match &table.virtual_hosts[0].routes[0].action {
            Action::Forward(forward) => forward,
            _ => panic!("not forwarded"),
        }
    }

    /// Bodies are kept only when they may be sent again and are known to be small.
    #[test]
    fn small_bodies_of_retried_routes_are_kept() {
        let empty = body::empty();
        let small = parts("POST", "/", &[("content-length", "10")]);
        let large = parts("POST", "/", &[("content-length", &(BUFFER_LIMIT + 1).to_string())]);
        let chunked = parts("POST", "/", &[("transfer-encoding", "chunked")]);
        let upgrade = parts("GET", "/", &[("upgrade", "websocket")]);
        let streamed = body::full(b"0123456789".to_vec());
        let (retried, once) = (table(true), table(false));
        assert!(should_buffer(forward(&retried), &small, &streamed));
        assert!(should_buffer(forward(&retried), &chunked, &empty), "an empty body is known small");
        assert!(!should_buffer(forward(&once), &small, &streamed), "sent once: streamed");
        assert!(!should_buffer(forward(&retried), &large, &streamed));
        assert!(!should_buffer(forward(&retried), &upgrade, &empty));
    }
}
