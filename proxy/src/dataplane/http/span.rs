//! Tracing a request, as Envoy's HTTP tracing does: a span started (or joined, from the B3
//! headers) when tracing is on, named `authority/path` unless the route has a decorator; the
//! decorator's operation name passed on in `x-envoy-decorator-operation` — to the upstream on
//! the way out, back to the caller on the way in — and a name the other side sent taking over.
//! The span is finished with the response's status, flags and cluster.

use std::sync::Arc;

use http::header::HeaderValue;
use http::request::Parts;
use http::HeaderMap;

use super::super::access_log::LogEntry;
use super::super::config::route::{Decorator, Route};
use super::super::trace::{Span, SpanTags, Tracer};
use super::downstream::Downstream;

/// Carries a route decorator's operation name between proxies.
pub(crate) const DECORATOR_OPERATION: &str = "x-envoy-decorator-operation";

/// A request's span while the request is in flight.
pub(crate) struct RequestSpan {
    tracer: Arc<Tracer>,
    span: Span,
    tags: SpanTags,
    /// The route's decorator, while this proxy is the one naming the span.
    decorated: Option<Decorator>,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
}

impl RequestSpan {
    /// Starts a span when the manager traces (`sampling`) and the bootstrap has a tracer.
    /// `authority` and `original_path` are the request's as the client sent them.
    pub(crate) fn start(
        tracer: Option<&Arc<Tracer>>,
        sampling: Option<f64>,
        parts: &mut Parts,
        downstream: &Downstream,
        (authority, original_path): (&str, &str),
    ) -> Option<RequestSpan> {
        let (tracer, sampling) = (tracer?, sampling?);
        let span = tracer.start_span(&mut parts.headers, sampling, downstream.inbound);
        let tags = SpanTags {
            name: format!("{authority}{}", parts.uri.path()),
            method: parts.method.to_string(),
            url: format!("{}://{authority}{original_path}", downstream.scheme()),
            protocol: format!("{:?}", parts.version),
            request_id: header_text(&parts.headers, "x-request-id"),
            user_agent: header_text(&parts.headers, "user-agent"),
            ..Default::default()
        };
        Some(RequestSpan { tracer: tracer.clone(), span, tags, decorated: None })
    }

    /// Names the span after the route's decorator, then either takes the name the caller sent
    /// (inbound) or sends ours on (outbound).
    pub(crate) fn name_after_route(&mut self, route: Option<&Route>, headers: &mut HeaderMap, inbound: bool) {
        if let Some(decorator) = route.and_then(|route| route.decorator.as_ref()) {
            self.tags.name = decorator.operation.clone();
            self.decorated = Some(decorator.clone());
        }
        if inbound {
            if let Some(value) = headers.remove(DECORATOR_OPERATION) {
                if let Some(operation) = value.to_str().ok().filter(|operation| !operation.is_empty()) {
                    self.tags.name = operation.to_string();
                    self.decorated = None;
                }
            }
        } else if let Some(decorator) = self.decorated.as_ref().filter(|decorator| decorator.propagate) {
            if let Ok(value) = HeaderValue::from_str(&decorator.operation) {
                headers.insert(DECORATOR_OPERATION, value);
            }
        }
    }

    /// On the response: tells the caller our name (inbound) or takes the name the upstream
    /// sent back (outbound).
    pub(crate) fn on_response(&mut self, headers: &mut HeaderMap, inbound: bool) {
        if inbound {
            if let Some(decorator) = self.decorated.as_ref().filter(|decorator| decorator.propagate) {
                if let Ok(value) = HeaderValue::from_str(&decorator.operation) {
                    headers.insert(DECORATOR_OPERATION, value);
                }
            }
        } else if let Some(value) = headers.remove(DECORATOR_OPERATION) {
            if let Some(operation) = value.to_str().ok().filter(|operation| !operation.is_empty()) {
                self.tags.name = operation.to_string();
            }
        }
    }

    /// Finishes the span with what the access-log entry recorded.
    pub(crate) fn finish(mut self, entry: &LogEntry) {
        self.tags.status = entry.response_code;
        self.tags.response_flags = entry.flags_text();
        self.tags.upstream_cluster = entry.upstream_cluster.clone();
        self.tracer.finish(&self.span, self.tags);
    }
}
