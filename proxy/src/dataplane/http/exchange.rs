//! One request's facts and records as it passes through the layers: what the client asked for
//! (its authority and original path, before any rewrite), when it started, the connection it
//! came on, and the access-log entry the layers fill in.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::HOST;
use http::request::Parts;
use http::{HeaderMap, Version};

use super::super::access_log::LogEntry;
use super::super::mixer::report::PendingReport;
use super::super::stats::GaugeGuard;
use super::super::telemetry_v2::peer_exchange::Peer;
use super::downstream::Downstream;
use super::span::RequestSpan;

/// A request in flight.
pub(crate) struct Exchange {
    pub downstream: Arc<Downstream>,
    pub started: Instant,
    pub version: Version,
    /// `:authority`, or the `Host` header, as the client sent it.
    pub authority: String,
    /// Path and query as the client sent them.
    pub original_path: String,
    /// The access-log record, completed when the response ends.
    pub entry: LogEntry,
    /// Bytes of the request body read from the client so far.
    pub bytes_received: Arc<AtomicU64>,
    /// The request's span, when it is traced.
    pub span: Option<RequestSpan>,
    /// Holds the connection manager's `downstream_rq_active` up until the response ends.
    pub active: Option<GaugeGuard>,
    /// The request's Mixer report, completed when the response ends.
    pub report: Option<PendingReport>,
    /// The peers the metadata exchange learned: the client (from the request) and the server
    /// (from the response).
    pub downstream_peer: Option<Peer>,
    pub upstream_peer: Option<Peer>,
    /// What the stats plugin needs of the request, taken before it goes upstream.
    pub telemetry: Option<TelemetryRequest>,
}

/// The request facts the stats plugin reads when the response ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct TelemetryRequest {
    pub grpc: bool,
    pub header_bytes: u64,
}

impl Exchange {
    /// Starts the record of a request whose head is `parts`.
    pub(crate) fn begin(downstream: Arc<Downstream>, parts: &Parts) -> Exchange {
        let authority = parts
            .uri
            .authority()
            .map(|authority| authority.as_str().to_string())
            .or_else(|| parts.headers.get(HOST).and_then(|host| host.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        let original_path = parts.uri.path_and_query().map_or("/".to_string(), |path| path.as_str().to_string());
        let entry = LogEntry {
            start: Some(SystemTime::now()),
            protocol: format!("{:?}", parts.version),
            downstream_local: Some(downstream.local),
            downstream_remote: Some(downstream.remote),
            server_name: downstream.server_name.clone(),
            ..Default::default()
        };
        Exchange {
            downstream,
            started: Instant::now(),
            version: parts.version,
            authority,
            original_path,
            entry,
            bytes_received: Arc::default(),
            span: None,
            active: None,
            report: None,
            downstream_peer: None,
            upstream_peer: None,
            telemetry: None,
        }
    }

    /// Puts the request's headers (with `:method`, `:path` and `:authority`) in the access-log
    /// entry, for the log formats that print them.
    pub(crate) fn record_request_headers(&mut self, parts: &Parts) {
        self.entry.request_headers = header_snapshot(&parts.headers);
        self.entry.request_headers.insert(":method".into(), parts.method.to_string());
        self.entry.request_headers.insert(":path".into(), self.original_path.clone());
        self.entry.request_headers.insert(":authority".into(), self.authority.clone());
    }

    /// The value of a header a route matcher names, HTTP/2 pseudo-headers included (they are
    /// not in the header map).
    pub(crate) fn header_value<'a>(&'a self, parts: &'a Parts, name: &str) -> Option<&'a str> {
        match name {
            ":method" => Some(parts.method.as_str()),
            ":authority" => Some(self.authority.as_str()),
            ":scheme" => Some(self.downstream.scheme()),
            ":path" => Some(self.original_path.as_str()),
            _ => parts.headers.get(name).and_then(|value| value.to_str().ok()),
        }
    }
}

/// Headers as text, for the access log.
pub(crate) fn header_snapshot(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str().to_string(), value.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(tls: bool) -> Arc<Downstream> {
        Arc::new(Downstream {
            remote: "10.0.0.1:40000".parse().expect("address"),
            local: "10.0.0.2:9080".parse().expect("address"),
            tls,
            peer: None,
            server_name: None,
            inbound: false,
        })
    }

    #[test]
    fn the_authority_comes_from_the_uri_else_the_host_header() {
        let request = http::Request::get("/reviews/0?x=1").header("host", "reviews:9080").body(()).expect("request");
        let (parts, ()) = request.into_parts();
        let exchange = Exchange::begin(downstream(false), &parts);
        assert_eq!(exchange.authority, "reviews:9080");
        assert_eq!(exchange.original_path, "/reviews/0?x=1");
        assert_eq!(exchange.header_value(&parts, ":scheme"), Some("http"));
        assert_eq!(exchange.header_value(&parts, ":method"), Some("GET"));
        assert_eq!(exchange.header_value(&parts, ":path"), Some("/reviews/0?x=1"));
        assert_eq!(exchange.header_value(&parts, "host"), Some("reviews:9080"));

        let request = http::Request::get("https://ratings:9080/ratings/0").body(()).expect("request");
        let (parts, ()) = request.into_parts();
        let exchange = Exchange::begin(downstream(true), &parts);
        assert_eq!(exchange.authority, "ratings:9080");
        assert_eq!(exchange.original_path, "/ratings/0");
        assert_eq!(exchange.header_value(&parts, ":scheme"), Some("https"));
    }
}
