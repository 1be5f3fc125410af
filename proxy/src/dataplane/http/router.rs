//! The router filter: sends a request to its cluster the way Envoy's router does — host
//! choice by the cluster's load balancer (or the original destination), the route's timeout
//! over all attempts, per-try timeouts, retries on the `retry_on` conditions with jittered
//! backoff and the previous-hosts predicate, the retry circuit breaker, outlier detection
//! bookkeeping, and fire-and-forget mirroring to shadow clusters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::{Request, Response, Uri, Version};

use super::super::access_log::ResponseFlag;
use super::super::body::{self, Body};
use super::super::config::cluster::Discovery;
use super::super::config::matcher::roll;
use super::super::config::route::{Forward, RetryPolicy};
use super::super::upstream::cluster::UpstreamCluster;
use super::super::upstream::host::Host;
use super::super::upstream::pool::{checkout, PoolError, SendError};
use super::super::upstream::ClusterManager;

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// What the router knows about the request besides its parts.
pub(crate) struct Outbound<'a> {
    pub cluster: Arc<UpstreamCluster>,
    pub forward: &'a Forward,
    pub authority: String,
    pub original_destination: SocketAddr,
    pub hash: Option<u64>,
    pub started: Instant,
    /// The connection manager's stream idle timeout, applied to the response body.
    pub stream_idle_timeout: Option<Duration>,
}

/// The request body: kept in memory when it may be sent more than once, else streamed once.
pub(crate) enum RequestBody {
    Buffered(Bytes),
    Streamed(Option<Body>),
}

/// What happened upstream.
pub(crate) struct RouterResult {
    pub response: Response<Body>,
    /// The upstream side of a protocol upgrade (WebSocket) when the answer was 101.
    pub upstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    pub flags: Vec<ResponseFlag>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_failure: Option<String>,
}

fn local(flag: ResponseFlag, upstream_host: Option<SocketAddr>, failure: Option<String>) -> RouterResult {
    RouterResult {
        response: super::local::failure(flag),
        upstream_upgrade: None,
        flags: vec![flag],
        upstream_host,
        upstream_failure: failure,
    }
}

/// The outcome of one attempt.
enum Attempt {
    Response(Response<hyper::body::Incoming>),
    Failed(ResponseFlag, Option<String>),
}

/// Forwards the request, retrying as the route says.
pub(crate) async fn forward(out: Outbound<'_>, parts: Parts, mut body: RequestBody) -> RouterResult {
    let retry = out.forward.retry.as_ref();
    let deadline = out.forward.timeout.map(|timeout| out.started + timeout);
    let max_attempts = 1 + retry.map_or(0, |policy| policy.num_retries);
    let cluster = &out.cluster;
    let replayable = matches!(body, RequestBody::Buffered(_)) && idempotent(&parts.method);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut last: Option<RouterResult> = None;
    for attempt in 0..max_attempts {
        if attempt > 0 {
            if cluster.retries_active.load(Ordering::Relaxed) >= cluster.config.limits.max_retries {
                cluster.stats.upstream_rq_retry_overflow.inc();
                break;
            }
            cluster.stats.upstream_rq_retry.inc();
            // Envoy's backoff: base 25 ms, doubling, full jitter, capped at ten times the base.
            let ceiling = Duration::from_millis(25 * (1u64 << (attempt - 1).min(3))).min(Duration::from_millis(250));
            let backoff = Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64));
            if deadline.is_some_and(|deadline| Instant::now() + backoff >= deadline) {
                break;
            }
            tokio::time::sleep(backoff).await;
        }
        let host = match &cluster.config.discovery {
            Discovery::OriginalDst => Some(cluster.original_dst_host(out.original_destination)),
            _ => {
                let avoid =
                    if retry.is_some_and(|policy| policy.avoid_previous_hosts) { tried.as_slice() } else { &[] };
                cluster.choose_host(out.hash, avoid)
            }
        };
        let Some(host) = host else {
            return local(ResponseFlag::NoHealthyUpstream, None, None);
        };
        tried.push(host.address);
        let Some(request) = build_request(&parts, &mut body, &out, cluster.config.http2) else {
            break;
        };
        let retrying = (attempt > 0).then(|| RetryGuard::new(cluster));
        let per_try = retry.and_then(|policy| policy.per_try_timeout).map(|timeout| Instant::now() + timeout);
        let attempt_deadline = match (deadline, per_try) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let http2 = cluster.config.http2;
        let mut replay = || build_request(&parts, &mut body, &out, http2);
        let replay: Option<&mut Replay<'_>> = replayable.then_some(&mut replay);
        let outcome = send_once(cluster, &host, request, replay, attempt_deadline).await;
        drop(retrying);
        let global_timeout = deadline.is_some_and(|deadline| Instant::now() >= deadline);
        match outcome {
            Attempt::Response(mut response) => {
                let status = response.status().as_u16();
                let upstream_upgrade = (status == 101).then(|| hyper::upgrade::on(&mut response));
                cluster.record_outcome(&host, Some(status));
                let can_retry =
                    attempt + 1 < max_attempts && !global_timeout && matches!(body, RequestBody::Buffered(_));
                if can_retry && retry.is_some_and(|policy| retriable_status(policy, status)) {
                    // The failed attempt's body is dropped, which releases its connection for
                    // the next attempt (with `maxConnections: 1` it is the only one).
                    let (response_parts, _) = response.into_parts();
                    let mut response = Response::from_parts(response_parts, body::empty());
                    response.headers_mut().remove(http::header::CONTENT_LENGTH);
                    last = Some(RouterResult {
                        response,
                        upstream_upgrade: None,
                        flags: Vec::new(),
                        upstream_host: Some(host.address),
                        upstream_failure: None,
                    });
                    continue;
                }
                let mut response = convert(response);
                if upstream_upgrade.is_none() {
                    // The route timeout runs until the response ends, as Envoy's does.
                    let (parts, body) = response.into_parts();
                    response =
                        Response::from_parts(parts, body::with_timeouts(body, deadline, out.stream_idle_timeout));
                }
                return RouterResult {
                    response,
                    upstream_upgrade,
                    flags: Vec::new(),
                    upstream_host: Some(host.address),
                    upstream_failure: None,
                };
            }
            Attempt::Failed(flag, reason) => {
                if global_timeout
                    || flag == ResponseFlag::UpstreamRequestTimeout && deadline.is_some() && per_try.is_none()
                {
                    cluster.stats.upstream_rq_timeout.inc();
                    return local(ResponseFlag::UpstreamRequestTimeout, Some(host.address), reason);
                }
                if flag == ResponseFlag::UpstreamRequestTimeout {
                    cluster.stats.upstream_rq_per_try_timeout.inc();
                }
                if flag != ResponseFlag::UpstreamOverflow {
                    cluster.record_outcome(&host, None);
                }
                let can_retry = attempt + 1 < max_attempts && matches!(body, RequestBody::Buffered(_));
                if can_retry && retry.is_some_and(|policy| retriable_failure(policy, flag)) {
                    last = Some(local(flag, Some(host.address), reason));
                    continue;
                }
                return local(flag, Some(host.address), reason);
            }
        }
    }
    match last {
        Some(mut result) => {
            if !result.flags.is_empty() || result.response.status().is_server_error() {
                result.flags.push(ResponseFlag::UpstreamRetryLimitExceeded);
            }
            result
        }
        None => local(ResponseFlag::UpstreamRetryLimitExceeded, None, None),
    }
}

/// Counts a request in flight on a host (least-request balancing, `/clusters`), also when the
/// request is abandoned half way.
struct InFlight(Arc<Host>);

impl InFlight {
    fn new(host: &Arc<Host>) -> InFlight {
        host.active_requests.fetch_add(1, Ordering::Relaxed);
        InFlight(host.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a retry in flight for the `max_retries` circuit breaker.
struct RetryGuard(Arc<UpstreamCluster>);

impl RetryGuard {
    fn new(cluster: &Arc<UpstreamCluster>) -> RetryGuard {
        cluster.retries_active.fetch_add(1, Ordering::Relaxed);
        RetryGuard(cluster.clone())
    }
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.retries_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many connections one attempt may be tried on: a request that was never written, or an
/// idempotent one a pooled connection closed on before answering, goes to the next.
const CONNECTIONS_PER_ATTEMPT: u32 = 3;

/// Builds the request again, for sending it on another connection.
type Replay<'a> = dyn FnMut() -> Option<Request<Body>> + Send + 'a;

/// Methods a server can be asked again without changing the outcome (RFC 9110 §9.2.2).
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE, Method::PUT, Method::DELETE].contains(method)
}

/// Whether `error` says the connection ended before the server answered: it closed (the
/// server's side of the race with a keep-alive or drain close) or was reset.
fn closed_before_response(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// One attempt on `host`. A pooled connection can close under the request: the server closed
/// it as idle, or an update drained its listener, just as the request went out. A request
/// the connection never took is sent on another; so is one it took when `replay` can build
/// it again (an idempotent method and a body kept in memory), as HTTP clients do for a
/// reused connection the server closed without answering.
async fn send_once(
    cluster: &Arc<UpstreamCluster>,
    host: &Arc<Host>,
    request: Request<Body>,
    mut replay: Option<&mut Replay<'_>>,
    deadline: Option<Instant>,
) -> Attempt {
    let Some(_request_slot) = cluster.stats.upstream_rq_active.try_track(cluster.config.limits.max_requests) else {
        cluster.stats.upstream_rq_pending_overflow.inc();
        return Attempt::Failed(ResponseFlag::UpstreamOverflow, None);
    };
    cluster.stats.upstream_rq_total.inc();
    let _in_flight = InFlight::new(host);
    let exchange = async {
        let mut request = request;
        for attempt in 1..=CONNECTIONS_PER_ATTEMPT {
            let lease = match checkout(cluster, host, deadline).await {
                Ok(lease) => lease,
                Err(PoolError::Overflow) => return Attempt::Failed(ResponseFlag::UpstreamOverflow, None),
                Err(PoolError::Timeout) => return Attempt::Failed(ResponseFlag::UpstreamRequestTimeout, None),
                Err(PoolError::ConnectFailure(reason)) => {
                    return Attempt::Failed(ResponseFlag::UpstreamConnectionFailure, Some(reason))
                }
            };
            let reused = lease.reused();
            match lease.try_send(cluster, host, request).await {
                Ok(response) => return Attempt::Response(response),
                Err(SendError::Unsent(unsent, error)) if attempt < CONNECTIONS_PER_ATTEMPT => {
                    tracing::debug!(%error, "a pooled connection closed before taking the request; sending it on another");
                    cluster.stats.upstream_cx_destroy_remote.inc();
                    request = *unsent;
                }
                Err(SendError::Failed(error))
                    if reused
                        && replay.is_some()
                        && attempt < CONNECTIONS_PER_ATTEMPT
                        && closed_before_response(&error) =>
                {
                    cluster.stats.upstream_cx_destroy_remote.inc();
                    match replay.as_mut().and_then(|replay| replay()) {
                        Some(again) => {
                            tracing::debug!(%error, "a pooled connection closed before answering; sending the request again");
                            request = again;
                        }
                        None => {
                            return Attempt::Failed(
                                ResponseFlag::UpstreamConnectionTermination,
                                Some(error.to_string()),
                            )
                        }
                    }
                }
                Err(SendError::Unsent(_, error) | SendError::Failed(error)) => {
                    cluster.stats.upstream_cx_destroy_remote.inc();
                    return Attempt::Failed(ResponseFlag::UpstreamConnectionTermination, Some(error.to_string()));
                }
            }
        }
        Attempt::Failed(ResponseFlag::UpstreamConnectionTermination, None)
    };
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), exchange)
            .await
            .unwrap_or(Attempt::Failed(ResponseFlag::UpstreamRequestTimeout, None)),
        None => exchange.await,
    };
    if let Attempt::Response(response) = &outcome {
        cluster.stats.record_response(response.status().as_u16());
    }
    outcome
}

/// `retry_on` conditions that a response status satisfies.
fn retriable_status(policy: &RetryPolicy, status: u16) -> bool {
    policy.retry_on.iter().any(|condition| match condition.as_str() {
        "5xx" => status >= 500,
        "gateway-error" => matches!(status, 502..=504),
        "retriable-4xx" => status == 409,
        "retriable-status-codes" => policy.retriable_status_codes.contains(&status),
        _ => false,
    })
}

/// `retry_on` conditions that a failed attempt satisfies.
fn retriable_failure(policy: &RetryPolicy, flag: ResponseFlag) -> bool {
    policy.retry_on.iter().any(|condition| match condition.as_str() {
        "5xx" | "gateway-error" => {
            matches!(
                flag,
                ResponseFlag::UpstreamConnectionFailure
                    | ResponseFlag::UpstreamConnectionTermination
                    | ResponseFlag::UpstreamRequestTimeout
            )
        }
        "connect-failure" => flag == ResponseFlag::UpstreamConnectionFailure,
        "reset" => matches!(
            flag,
            ResponseFlag::UpstreamConnectionFailure
                | ResponseFlag::UpstreamConnectionTermination
                | ResponseFlag::UpstreamRequestTimeout
        ),
        // An HTTP/2 REFUSED_STREAM is not told apart from other resets here; resets after the
        // request was sent are not retried, so this condition retries nothing extra.
        "refused-stream" => false,
        _ => false,
    })
}

/// The upstream request for one attempt; `None` once a streamed body has been used.
fn build_request(parts: &Parts, body: &mut RequestBody, out: &Outbound<'_>, http2: bool) -> Option<Request<Body>> {
    let body = match body {
        RequestBody::Buffered(bytes) => {
            if bytes.is_empty() {
                body::empty()
            } else {
                body::full(bytes.clone())
            }
        }
        RequestBody::Streamed(slot) => slot.take()?,
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    let path_and_query = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let upgrade = parts.headers.get(http::header::UPGRADE).cloned();
    let mut headers = parts.headers.clone();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if http2 {
        *request.version_mut() = Version::HTTP_2;
        headers.remove(HOST);
        *request.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(out.authority.as_str())
            .path_and_query(path_and_query)
            .build()
            .unwrap_or_else(|_| parts.uri.clone());
        if parts.headers.get("te").is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers")) {
            headers.insert("te", HeaderValue::from_static("trailers"));
        }
    } else {
        *request.version_mut() = Version::HTTP_11;
        *request.uri_mut() = path_and_query.parse().unwrap_or_else(|_| Uri::from_static("/"));
        if let Ok(host) = HeaderValue::from_str(&out.authority) {
            headers.insert(HOST, host);
        }
        if let Some(upgrade) = upgrade {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(http::header::UPGRADE, upgrade);
        }
    }
    *request.headers_mut() = headers;
    Some(request)
}

/// Upstream response → downstream response: the body streams through; hop-by-hop headers stay behind.
fn convert(response: Response<hyper::body::Incoming>) -> Response<Body> {
    let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let (mut parts, incoming) = response.into_parts();
    // The downstream connection decides its own protocol version.
    parts.version = Version::HTTP_11;
    if !switching {
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
    }
    Response::from_parts(parts, body::boxed(incoming))
}

/// Sends a copy of the request to each mirror cluster the route names, without waiting.
pub(crate) fn mirror(
    clusters: &ClusterManager,
    forward: &Forward,
    parts: &Parts,
    body: &Bytes,
    authority: &str,
    hash: Option<u64>,
) {
    for mirror in &forward.mirrors {
        if !roll(mirror.fraction) {
            continue;
        }
        let Some(cluster) = clusters.get(&mirror.cluster) else { continue };
        let Some(host) = cluster.choose_host(hash, &[]) else { continue };
        let (name, port) = super::local::split_authority(authority);
        let shadow = match port {
            Some(port) => format!("{name}-shadow:{port}"),
            None => format!("{name}-shadow"),
        };
        let mut shadow_parts = Request::new(()).into_parts().0;
        shadow_parts.method = parts.method.clone();
        shadow_parts.uri = parts.uri.clone();
        shadow_parts.headers = parts.headers.clone();
        if let Ok(value) = HeaderValue::from_str(&shadow) {
            shadow_parts.headers.insert(HOST, value);
        }
        let out = Outbound {
            cluster: cluster.clone(),
            forward,
            authority: shadow,
            original_destination: host.address,
            hash,
            started: Instant::now(),
            stream_idle_timeout: None,
        };
        let Some(request) =
            build_request(&shadow_parts, &mut RequestBody::Buffered(body.clone()), &out, cluster.config.http2)
        else {
            continue;
        };
        let timeout = forward.timeout.unwrap_or(Duration::from_secs(15));
        tokio::spawn(async move {
            let deadline = Instant::now() + timeout;
            if let Attempt::Response(response) = send_once(&cluster, &host, request, None, Some(deadline)).await {
                // Read the shadow response to the end so the connection can be reused.
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
        });
    }
}

/// A header name known to be valid.
pub(crate) fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).ok()
}
