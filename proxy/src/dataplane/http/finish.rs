//! The end of a request: the `server` header, `connection: close` on HTTP/1 while draining, the
//! status counted by class, and — when the response body has been sent or the client went away
//! — the access log written, the span finished, the Mixer report sent and the request counted by
//! 1.4's in-proxy stats plugin; the metadata exchange takes the server's headers off first.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;
use http_body::Frame;

use super::super::access_log::LogEntry;
use super::super::body::{self, Body, BoxError};
use super::super::config::listener::HttpManagerConfig;
use super::super::connection_stats::HttpManagerStats;
use super::super::context::TrafficContext;
use super::super::mixer::attributes;
use super::super::telemetry_v2::config::StatsConfig;
use super::super::telemetry_v2::dimensions::{dimensions, RequestFacts};
use super::super::telemetry_v2::metrics::{IstioMetrics, Measures};
use super::super::telemetry_v2::node_info::LocalNode;
use super::super::telemetry_v2::peer_exchange::{self, Peer};
use super::downstream::{Downstream, PeerIdentity};
use super::exchange::{header_snapshot, Exchange, TelemetryRequest};
use std::sync::Arc;

/// Completes the response and arranges for the exchange to be logged when its body ends.
pub(crate) fn complete(
    context: &TrafficContext,
    manager: &HttpManagerConfig,
    stats: &HttpManagerStats,
    mut exchange: Exchange,
    mut response: Response<Body>,
) -> Response<Body> {
    if manager.peer_exchange {
        let inbound = exchange.downstream.inbound;
        exchange.upstream_peer = peer_exchange::on_response(&context.local_node, response.headers_mut(), inbound);
    }
    response.headers_mut().insert("server", HeaderValue::from_static("envoy"));
    if context.draining() && exchange.version < http::Version::HTTP_2 {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    exchange.entry.response_code = status;
    stats.record_status(status);
    if !manager.access_logs.is_empty() {
        exchange.entry.response_headers = header_snapshot(response.headers());
    }
    let response_headers = exchange.report.as_ref().map(|_| response.headers().clone());
    let istio_stats = manager.istio_stats.clone().map(|config| IstioStats {
        config,
        metrics: context.istio_metrics.clone(),
        local: context.local_node.clone(),
        response_header_bytes: attributes::header_bytes(response.headers()),
    });
    let (parts, body) = response.into_parts();
    let logs = manager.access_logs.clone();
    let writers = context.access_logs.clone();
    let finish = move |bytes_sent: u64| {
        let Exchange {
            mut entry,
            span,
            active,
            bytes_received,
            started,
            report,
            downstream,
            authority,
            downstream_peer,
            upstream_peer,
            telemetry,
            ..
        } = exchange;
        drop(active);
        if let Some(span) = span {
            span.finish(&entry);
        }
        entry.bytes_sent = bytes_sent;
        entry.bytes_received = bytes_received.load(Ordering::Relaxed);
        entry.duration = started.elapsed();
        if let (Some(mut report), Some(headers)) = (report, response_headers) {
            let outcome = attributes::Outcome {
                code: entry.response_code,
                headers: &headers,
                request_header_bytes: report.request_header_bytes,
                request_body_bytes: entry.bytes_received,
                response_body_bytes: entry.bytes_sent,
                duration: entry.duration,
                flags: entry.flags_text(),
                upstream: entry.upstream_host,
            };
            attributes::response(&mut report.attributes, &outcome, report.outbound);
            report.reporter.report(report.attributes);
        }
        if let (Some(stats), Some(request)) = (istio_stats, telemetry) {
            let peer = if downstream.inbound { downstream_peer } else { upstream_peer };
            stats.record(&entry, &downstream, &authority, &request, peer.as_ref());
        }
        if !logs.is_empty() {
            writers.write(&logs, &entry);
        }
    };
    Response::from_parts(parts, body::boxed(Finished { inner: body, sent: 0, finish: Some(Box::new(finish)) }))
}

/// The stats plugin's share of a finished request: its config, where the series go, and who
/// this proxy is.
struct IstioStats {
    config: StatsConfig,
    metrics: IstioMetrics,
    local: Arc<LocalNode>,
    response_header_bytes: u64,
}

impl IstioStats {
    /// Counts the request under 1.4's labels.
    fn record(
        &self,
        entry: &LogEntry,
        downstream: &Downstream,
        authority: &str,
        request: &TelemetryRequest,
        peer: Option<&Peer>,
    ) {
        let client = downstream.peer.as_deref();
        let client_principal = client.and_then(|identity| identity.0.uris.first()).map(String::as_str);
        let flags = entry.flags_text();
        let facts = RequestFacts {
            inbound: downstream.inbound,
            local: &self.local.info,
            peer: peer.map(|peer| &peer.info),
            // A client's identity is known from its certificate; a server's (outbound) is not
            // kept by the upstream pool.
            source_principal: if downstream.inbound { client_principal } else { None },
            destination_principal: None,
            authority,
            grpc: request.grpc,
            cluster: entry.upstream_cluster.as_deref(),
            response_code: entry.response_code,
            response_flags: &flags,
            mutual_tls: downstream.tls && client.is_some_and(|identity| *identity != PeerIdentity::default()),
            host_header_fallback: self.config.host_header_fallback,
        };
        let measures = Measures {
            duration_ms: u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX),
            request_bytes: request.header_bytes + entry.bytes_received,
            response_bytes: self.response_header_bytes + entry.bytes_sent,
        };
        self.metrics.record(&self.config.stat_prefix, dimensions(&facts), measures);
    }
}

/// A response body that counts bytes sent and runs `finish` once, at its end or when dropped
/// (the client went away).
struct Finished {
    inner: Body,
    sent: u64,
    finish: Option<Box<dyn FnOnce(u64) + Send + Sync>>,
}

impl Finished {
    fn done(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish(self.sent);
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for Finished {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.done(),
            Poll::Pending => {}
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
