//! The HTTP connection manager: serves HTTP/1.1 and HTTP/2 (and h2c) on a connection a
//! listener handed over, and runs each request through Envoy's pipeline — request id and
//! forwarding headers, route selection, `require_tls`, CORS, fault injection, header edits
//! and rewrites, the router — then records stats and the access log when the response ends.
//! WebSocket upgrades are bridged once both sides agree.

pub mod local;
pub mod router;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::access_log::{LogEntry, ResponseFlag};
use super::body::{self, Body, BoxError};
use super::config::listener::{Codec, HttpManagerConfig, RouteSource};
use super::config::matcher::roll;
use super::config::route::{Action, Decorator, HashPolicy, HeaderEdits, PathMatch, Route, RouteTable, VirtualHost};
use super::stats::{Counter, Gauge, Stats};
use super::upstream::lb::hash_of;
use super::upstream::pool::BoxStream;
use super::Shared;
use router::{Outbound, RequestBody};

/// Request bodies up to this size are kept in memory so the request can be retried or mirrored.
const BUFFER_LIMIT: u64 = 1024 * 1024;
/// Carries a route decorator's operation name between proxies.
const DECORATOR_OPERATION: &str = "x-envoy-decorator-operation";

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub remote: SocketAddr,
    /// Where the client was going: the original destination when captured, else the listener.
    pub local: SocketAddr,
    pub tls: bool,
    pub server_name: Option<String>,
    /// The listener serves inbound traffic (the workload's own ports).
    pub inbound: bool,
}

/// A connection manager's stats (`http.<stat_prefix>.…`), looked up once per connection
/// rather than by name on every request.
struct ManagerStats {
    cx_total: Counter,
    cx_active: Gauge,
    rq_total: Counter,
    rq_active: Gauge,
    /// `downstream_rq_1xx` … `downstream_rq_5xx`.
    rq_by_class: [Counter; 5],
    no_route: Counter,
    ws_on_non_ws_route: Counter,
}

impl ManagerStats {
    fn new(stats: &Stats, stat_prefix: &str) -> ManagerStats {
        let counter = |suffix: &str| stats.counter(&format!("http.{stat_prefix}.{suffix}"));
        let gauge = |suffix: &str| stats.gauge(&format!("http.{stat_prefix}.{suffix}"));
        ManagerStats {
            cx_total: counter("downstream_cx_total"),
            cx_active: gauge("downstream_cx_active"),
            rq_total: counter("downstream_rq_total"),
            rq_active: gauge("downstream_rq_active"),
            rq_by_class: [1, 2, 3, 4, 5].map(|class| counter(&format!("downstream_rq_{class}xx"))),
            no_route: counter("no_route"),
            ws_on_non_ws_route: counter("downstream_rq_ws_on_non_ws_route"),
        }
    }
}

/// Serves one connection until it closes, or until draining lets in-flight requests finish.
pub async fn serve_connection(
    shared: Arc<Shared>,
    manager: Arc<HttpManagerConfig>,
    downstream: Arc<Downstream>,
    stream: BoxStream,
) {
    let stats = Arc::new(ManagerStats::new(&shared.stats, &manager.stat_prefix));
    stats.cx_total.inc();
    let _active = stats.cx_active.track();
    let codec = manager.codec;
    let service_shared = shared.clone();
    let http2_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let service_http2_seen = http2_seen.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (shared, manager, downstream) = (service_shared.clone(), manager.clone(), downstream.clone());
        let stats = stats.clone();
        if request.version() == http::Version::HTTP_2 {
            service_http2_seen.store(true, Ordering::Relaxed);
        }
        async move { Ok::<_, Infallible>(handle(shared, manager, &stats, downstream, request).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    match codec {
        Codec::Http1 => builder = builder.http1_only(),
        Codec::Http2 => builder = builder.http2_only(),
        Codec::Auto => {}
    }
    builder.http1().keep_alive(true);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Draining, as Envoy does it: HTTP/1.1 responses carry `connection: close` (see `handle`),
    // so idle keep-alive connections close after their next request; HTTP/2 gets a GOAWAY and
    // finishes its open streams.
    let mut draining = shared.draining.subscribe();
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = draining.wait_for(|draining| *draining) => {
            if http2_seen.load(Ordering::Relaxed) {
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    let _ = connection.await;
}

/// Runs one request through the pipeline.
async fn handle(
    shared: Arc<Shared>,
    manager: Arc<HttpManagerConfig>,
    stats: &ManagerStats,
    downstream: Arc<Downstream>,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let start_time = SystemTime::now();
    stats.rq_total.inc();
    let active = stats.rq_active.track();
    let downstream_upgrade =
        request.headers().contains_key(http::header::UPGRADE).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    let version = parts.version;

    let authority = parts
        .uri
        .authority()
        .map(|authority| authority.as_str().to_string())
        .or_else(|| parts.headers.get(HOST).and_then(|host| host.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    if manager.generate_request_id && !parts.headers.contains_key("x-request-id") {
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            parts.headers.insert("x-request-id", id);
        }
    }
    if manager.use_remote_address {
        let remote = downstream.remote.ip().to_string();
        let forwarded = match parts.headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
            Some(existing) => format!("{existing},{remote}"),
            None => remote.clone(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            parts.headers.insert("x-forwarded-for", value);
        }
        if let Ok(value) = HeaderValue::from_str(&remote) {
            parts.headers.insert("x-envoy-external-address", value);
        }
    }
    if !parts.headers.contains_key("x-forwarded-proto") {
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static(if downstream.tls { "https" } else { "http" }));
    }
    let original_path = parts.uri.path_and_query().map_or("/".to_string(), |path| path.as_str().to_string());
    let span = match (&shared.tracer, manager.tracing) {
        (Some(tracer), Some(sampling)) => Some(tracer.start_span(&mut parts.headers, sampling, downstream.inbound)),
        _ => None,
    };
    let mut span_tags = span.as_ref().map(|_| super::trace::SpanTags {
        name: format!("{authority}{}", parts.uri.path()),
        method: parts.method.to_string(),
        url: format!("{}://{authority}{original_path}", if downstream.tls { "https" } else { "http" }),
        protocol: format!("{:?}", parts.version),
        request_id: parts.headers.get("x-request-id").and_then(|value| value.to_str().ok()).map(str::to_string),
        user_agent: parts.headers.get("user-agent").and_then(|value| value.to_str().ok()).map(str::to_string),
        ..Default::default()
    });
    let mut entry = LogEntry {
        start: Some(start_time),
        protocol: format!("{:?}", parts.version),
        downstream_local: Some(downstream.local),
        downstream_remote: Some(downstream.remote),
        server_name: downstream.server_name.clone(),
        ..Default::default()
    };
    if !manager.access_logs.is_empty() {
        entry.request_headers = header_snapshot(&parts.headers);
        entry.request_headers.insert(":method".into(), parts.method.to_string());
        entry.request_headers.insert(":path".into(), original_path.clone());
        entry.request_headers.insert(":authority".into(), authority.clone());
    }

    // Upgrades the connection manager does not allow are refused, as Envoy does.
    let websocket_upgrade = parts
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket_upgrade && !manager.websocket {
        stats.ws_on_non_ws_route.inc();
        return local::reply(StatusCode::FORBIDDEN, "");
    }
    let table = match &manager.routes {
        RouteSource::Inline(table) => Some(table.clone()),
        RouteSource::Rds(name) => shared.routes.load().get(name).cloned(),
    };
    // Header matchers may name HTTP/2 pseudo-headers, which are not in the header map.
    let method = parts.method.to_string();
    let scheme = if downstream.tls { "https" } else { "http" };
    let header_value = |name: &str| -> Option<&str> {
        match name {
            ":method" => Some(method.as_str()),
            ":authority" => Some(authority.as_str()),
            ":scheme" => Some(scheme),
            ":path" => Some(original_path.as_str()),
            _ => parts.headers.get(name).and_then(|value| value.to_str().ok()),
        }
    };
    let selected = table.as_ref().and_then(|table| {
        let host = table.virtual_host(&authority)?;
        let route = host.routes.iter().find(|route| route.matcher.matches(&original_path, header_value))?;
        Some((table.clone(), host, route))
    });
    // Tracing names the span after the route's decorator, and passes the name on as Envoy
    // does: to the upstream on the way out, back to the caller on the way in.
    let mut decorated: Option<Decorator> = None;
    if let Some(tags) = span_tags.as_mut() {
        if let Some(decorator) = selected.as_ref().and_then(|(_, _, route)| route.decorator.as_ref()) {
            tags.name = decorator.operation.clone();
            decorated = Some(decorator.clone());
        }
        if downstream.inbound {
            if let Some(value) = parts.headers.remove(DECORATOR_OPERATION) {
                if let Some(operation) = value.to_str().ok().filter(|operation| !operation.is_empty()) {
                    tags.name = operation.to_string();
                    decorated = None;
                }
            }
        } else if let Some(decorator) = decorated.as_ref().filter(|decorator| decorator.propagate) {
            if let Ok(value) = HeaderValue::from_str(&decorator.operation) {
                parts.headers.insert(DECORATOR_OPERATION, value);
            }
        }
    }
    let bytes_received = Arc::new(AtomicU64::new(0));
    let (mut response, upgrades) = match selected {
        None => {
            stats.no_route.inc();
            entry.flags.push(ResponseFlag::NoRouteFound);
            (local::failure(ResponseFlag::NoRouteFound), None)
        }
        Some((table, host, route)) => {
            entry.route_name = Some(route.name.clone()).filter(|name| !name.is_empty());
            let request_body = counted(incoming, bytes_received.clone());
            let result = run_route(
                &shared,
                &manager,
                &downstream,
                &table,
                host,
                route,
                &authority,
                &original_path,
                parts,
                request_body,
                started,
                &mut entry,
            )
            .await;
            (result.0, result.1.zip(downstream_upgrade))
        }
    };
    if let Some((upstream, downstream)) = upgrades {
        tokio::spawn(bridge_upgrade(downstream, upstream));
    }
    if let Some(tags) = span_tags.as_mut() {
        if downstream.inbound {
            if let Some(decorator) = decorated.as_ref().filter(|decorator| decorator.propagate) {
                if let Ok(value) = HeaderValue::from_str(&decorator.operation) {
                    response.headers_mut().insert(DECORATOR_OPERATION, value);
                }
            }
        } else if let Some(value) = response.headers_mut().remove(DECORATOR_OPERATION) {
            if let Some(operation) = value.to_str().ok().filter(|operation| !operation.is_empty()) {
                tags.name = operation.to_string();
            }
        }
    }
    response.headers_mut().insert("server", HeaderValue::from_static("envoy"));
    if *shared.draining.borrow() && version < http::Version::HTTP_2 {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    entry.response_code = status;
    if let Some(class) = stats.rq_by_class.get(usize::from(status / 100).saturating_sub(1)) {
        class.inc();
    }
    if !manager.access_logs.is_empty() {
        entry.response_headers = header_snapshot(response.headers());
    }
    let (parts, body) = response.into_parts();
    let logs = manager.access_logs.clone();
    let writers = shared.access_logs.clone();
    let tracer = shared.tracer.clone();
    let finish = move |bytes_sent: u64| {
        drop(active);
        if let (Some(tracer), Some(span), Some(mut tags)) = (tracer, span, span_tags) {
            tags.status = entry.response_code;
            tags.response_flags = entry.flags_text();
            tags.upstream_cluster = entry.upstream_cluster.clone();
            tracer.finish(&span, tags);
        }
        if logs.is_empty() {
            return;
        }
        entry.bytes_sent = bytes_sent;
        entry.bytes_received = bytes_received.load(Ordering::Relaxed);
        entry.duration = started.elapsed();
        writers.write(&logs, &entry);
    };
    Response::from_parts(parts, body::boxed(Finished { inner: body, sent: 0, finish: Some(Box::new(finish)) }))
}

/// The part of the pipeline after routing. Returns the response and, for an accepted
/// upgrade, the upstream side to bridge.
#[allow(clippy::too_many_arguments)]
async fn run_route(
    shared: &Shared,
    manager: &HttpManagerConfig,
    downstream: &Downstream,
    table: &RouteTable,
    host: &VirtualHost,
    route: &Route,
    authority: &str,
    original_path: &str,
    mut parts: http::request::Parts,
    request_body: Body,
    started: Instant,
    entry: &mut LogEntry,
) -> (Response<Body>, Option<hyper::upgrade::OnUpgrade>) {
    if host.require_tls && !downstream.tls {
        let redirect = super::config::route::Redirect::to_https();
        return (local::redirect(&redirect, false, authority, original_path, None), None);
    }
    let forward = match &route.action {
        Action::Direct { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut response = local::reply(status, body.as_deref().unwrap_or(""));
            apply_response_edits(&mut response, [&route.headers, &host.headers, &table.headers]);
            return (response, None);
        }
        Action::Redirect(redirect) => {
            let matched = match &route.matcher.path {
                PathMatch::Prefix(prefix) | PathMatch::SeparatedPrefix(prefix) => Some(prefix.as_str()),
                _ => None,
            };
            return (local::redirect(redirect, downstream.tls, authority, original_path, matched), None);
        }
        Action::Forward(forward) => forward,
    };

    // CORS: the route's policy, else the virtual host's.
    let cors = if manager.cors_filter { route.filters.cors.as_ref().or(host.filters.cors.as_ref()) } else { None };
    let origin = parts.headers.get("origin").and_then(|value| value.to_str().ok()).map(str::to_string);
    if let (Some(cors), Some(origin)) = (cors, origin.as_deref()) {
        if local::is_preflight(&parts.method, &parts.headers) && cors.allows(origin) {
            return (cors.preflight(origin), None);
        }
    }

    // Fault injection: the route's, else the virtual host's.
    let fault = if manager.fault_filter { route.filters.fault.as_ref().or(host.filters.fault.as_ref()) } else { None };
    if let Some(fault) = fault {
        let prefix = format!("http.{}.fault.", manager.stat_prefix);
        if let Some((delay, probability)) = fault.delay {
            if roll(probability) {
                shared.stats.counter(&format!("{prefix}delays_injected")).inc();
                entry.flags.push(ResponseFlag::DelayInjected);
                tokio::time::sleep(delay).await;
            }
        }
        if let Some((status, probability)) = fault.abort {
            if roll(probability) {
                shared.stats.counter(&format!("{prefix}aborts_injected")).inc();
                entry.flags.push(ResponseFlag::FaultInjected);
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return (local::reply(status, "fault filter abort"), None);
            }
        }
    }

    // Header edits (the most specific level first, so the route table's win) and rewrites.
    for edits in [&route.headers, &host.headers, &table.headers] {
        apply_request_edits(&mut parts.headers, edits);
    }
    let mut upstream_authority = authority.to_string();
    if let Some(rewrite) = &forward.prefix_rewrite {
        let matched = match &route.matcher.path {
            PathMatch::Prefix(prefix) | PathMatch::SeparatedPrefix(prefix) => Some(prefix.as_str()),
            PathMatch::Exact(path) => Some(path.as_str()),
            PathMatch::Regex(_) => None,
        };
        if let Some(matched) = matched {
            let rest = original_path.get(matched.len()..).unwrap_or("");
            let rewritten = format!("{rewrite}{rest}");
            if let Ok(uri) = rewritten.parse() {
                parts.uri = uri;
                if let Ok(value) = HeaderValue::from_str(original_path) {
                    parts.headers.insert("x-envoy-original-path", value);
                }
            }
        }
    } else if let Some(path) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(path);
    }
    if let Some(host_rewrite) = &forward.host_rewrite {
        upstream_authority = host_rewrite.clone();
    }
    if let Ok(value) = HeaderValue::from_str(&upstream_authority) {
        parts.headers.insert(HOST, value);
    }

    let cluster_name =
        forward.pick_cluster(|name| parts.headers.get(name).and_then(|value| value.to_str().ok())).map(str::to_string);
    let Some(cluster) = cluster_name.as_deref().and_then(|name| shared.clusters.get(name)) else {
        entry.flags.push(ResponseFlag::NoClusterFound);
        entry.upstream_cluster = cluster_name;
        return (local::failure(ResponseFlag::NoClusterFound), None);
    };
    entry.upstream_cluster = Some(cluster.config.name.clone());
    let hash = request_hash(forward.hash_policy.as_slice(), &parts.headers, &parts.uri, downstream);

    // Keep the body in memory when it may be sent again (retries, mirrors) and is small.
    let wants_copy = forward.retry.is_some() || !forward.mirrors.is_empty();
    let length =
        parts.headers.get(http::header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let is_upgrade = parts.headers.contains_key(http::header::UPGRADE);
    // Only bodies whose end is known in advance are kept: an empty one, or one with a small
    // content-length. Streams (gRPC streaming, chunked uploads) go through as they come, and
    // cannot be retried once sent, as in Envoy.
    let known_small =
        http_body::Body::is_end_stream(&request_body) || length.is_some_and(|length| length <= BUFFER_LIMIT);
    let body = if wants_copy && !is_upgrade && known_small {
        match http_body_util::Limited::new(request_body, BUFFER_LIMIT as usize).collect().await {
            Ok(collected) => RequestBody::Buffered(collected.to_bytes()),
            Err(_) => {
                entry.flags.push(ResponseFlag::DownstreamConnectionTermination);
                return (local::reply(StatusCode::BAD_REQUEST, "request body could not be read"), None);
            }
        }
    } else {
        RequestBody::Streamed(Some(request_body))
    };
    if let RequestBody::Buffered(bytes) = &body {
        router::mirror(shared, forward, &parts, bytes, &upstream_authority, hash);
    }
    let out = Outbound {
        shared,
        cluster: cluster.clone(),
        forward,
        authority: upstream_authority,
        original_destination: downstream.local,
        hash,
        started,
        stream_idle_timeout: manager.stream_idle_timeout,
    };
    let result = router::forward(out, parts, body).await;
    entry.flags.extend(result.flags.iter().copied());
    entry.upstream_host = result.upstream_host;
    entry.upstream_failure = result.upstream_failure;
    let mut response = result.response;
    if entry.upstream_host.is_some() && !entry.flags.iter().any(|flag| *flag != ResponseFlag::DelayInjected) {
        let elapsed = started.elapsed().as_millis().to_string();
        if let Ok(value) = HeaderValue::from_str(&elapsed) {
            response.headers_mut().insert("x-envoy-upstream-service-time", value);
        }
    }
    apply_response_edits(&mut response, [&route.headers, &host.headers, &table.headers]);
    if let (Some(cors), Some(origin)) = (cors, origin.as_deref()) {
        if cors.allows(origin) {
            cors.decorate(origin, &mut response);
        }
    }
    (response, result.upstream_upgrade)
}

fn apply_request_edits(headers: &mut HeaderMap, edits: &HeaderEdits) {
    for name in &edits.request_remove {
        headers.remove(name.as_str());
    }
    apply_adds(headers, &edits.request_add);
}

fn apply_response_edits(response: &mut Response<Body>, levels: [&HeaderEdits; 3]) {
    for edits in levels {
        for name in &edits.response_remove {
            response.headers_mut().remove(name.as_str());
        }
        apply_adds(response.headers_mut(), &edits.response_add);
    }
}

fn apply_adds(headers: &mut HeaderMap, adds: &[super::config::route::HeaderAdd]) {
    for add in adds {
        let (Some(name), Ok(value)) = (router::header_name(&add.name), HeaderValue::from_str(&add.value)) else {
            continue;
        };
        if add.append {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}

/// The hash for ring-hash load balancing from the route's hash policies (first that applies).
fn request_hash(policies: &[HashPolicy], headers: &HeaderMap, uri: &http::Uri, downstream: &Downstream) -> Option<u64> {
    policies.iter().find_map(|policy| match policy {
        HashPolicy::Header(name) => headers.get(name.as_str()).map(|value| hash_of(value.as_bytes())),
        HashPolicy::Cookie { name, .. } => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|cookie| cookie.trim().split_once('='))
            .find(|(key, _)| key == name)
            .map(|(_, value)| hash_of(value)),
        HashPolicy::SourceIp => Some(hash_of(downstream.remote.ip())),
        HashPolicy::QueryParameter(name) => uri
            .query()
            .and_then(|query| query.split('&').find_map(|pair| pair.split_once('=').filter(|(key, _)| key == name)))
            .map(|(_, value)| hash_of(value)),
    })
}

fn header_snapshot(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str().to_string(), value.to_string())))
        .collect()
}

/// Bridges an accepted upgrade (WebSocket): bytes flow both ways until either side closes.
async fn bridge_upgrade(upstream: hyper::upgrade::OnUpgrade, downstream: hyper::upgrade::OnUpgrade) {
    let (Ok(upstream), Ok(downstream)) = (upstream.await, downstream.await) else { return };
    let mut upstream = TokioIo::new(upstream);
    let mut downstream = TokioIo::new(downstream);
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}

/// A request body that counts the bytes read from the client.
fn counted(incoming: Incoming, total: Arc<AtomicU64>) -> Body {
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
