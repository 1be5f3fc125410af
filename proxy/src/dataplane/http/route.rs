//! What a selected route does with a request: `require_tls` redirects, direct responses and
//! redirects answered here, CORS preflights, injected faults, header edits and rewrites, then
//! the cluster — the body kept for retries and mirrors, the ring hash computed, mirrors sent —
//! and the router. Returns the response and, for an accepted upgrade, the upstream side to
//! bridge.

use http::header::HeaderValue;
use http::request::Parts;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;

use super::super::access_log::ResponseFlag;
use super::super::body::Body;
use super::super::config::listener::HttpManagerConfig;
use super::super::config::route::{Action, Forward, PathMatch, Redirect};
use super::super::connection_stats::HttpManagerStats;
use super::super::context::TrafficContext;
use super::cors::CorsRequest;
use super::exchange::Exchange;
use super::router::{self, Outbound, RequestBody};
use super::routing::Selected;
use super::{fault, hash, local, request_body, rewrite};

/// Runs the request through its route.
pub(crate) async fn run(
    context: &TrafficContext,
    manager: &HttpManagerConfig,
    stats: &HttpManagerStats,
    exchange: &mut Exchange,
    selected: &Selected<'_>,
    mut parts: Parts,
    body: Body,
) -> (Response<Body>, Option<OnUpgrade>) {
    if selected.host.require_tls && !exchange.downstream.tls {
        let redirect = Redirect::to_https();
        return (local::redirect(&redirect, false, &exchange.authority, &exchange.original_path, None), None);
    }
    let forward = match &selected.route.action {
        Action::Direct { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut response = local::reply(status, body.as_deref().unwrap_or(""));
            rewrite::response_headers(&mut response, selected);
            return (response, None);
        }
        Action::Redirect(redirect) => {
            let matched = match &selected.route.matcher.path {
                PathMatch::Prefix(prefix) | PathMatch::SeparatedPrefix(prefix) => Some(prefix.as_str()),
                _ => None,
            };
            let tls = exchange.downstream.tls;
            return (local::redirect(redirect, tls, &exchange.authority, &exchange.original_path, matched), None);
        }
        Action::Forward(forward) => forward,
    };
    let cors = CorsRequest::of(manager, selected, &parts);
    if let Some(preflight) = cors.as_ref().and_then(|cors| cors.preflight(&parts)) {
        return (preflight, None);
    }
    if let Some(abort) = fault::inject(manager, stats, selected, &mut exchange.entry).await {
        return (abort, None);
    }
    rewrite::request_headers(&mut parts.headers, selected);
    let authority = rewrite::uri_and_host(&mut parts, forward, &selected.route.matcher.path, exchange);
    let (mut response, upgrade) = forward_upstream(context, manager, exchange, forward, authority, parts, body).await;
    rewrite::response_headers(&mut response, selected);
    if let Some(cors) = &cors {
        cors.decorate(&mut response);
    }
    (response, upgrade)
}

/// Sends the request to the route's cluster through the router, recording what happened in the
/// access-log entry.
async fn forward_upstream(
    context: &TrafficContext,
    manager: &HttpManagerConfig,
    exchange: &mut Exchange,
    forward: &Forward,
    authority: String,
    parts: Parts,
    body: Body,
) -> (Response<Body>, Option<OnUpgrade>) {
    let entry = &mut exchange.entry;
    let cluster_name =
        forward.pick_cluster(|name| parts.headers.get(name).and_then(|value| value.to_str().ok())).map(str::to_string);
    let Some(cluster) = cluster_name.as_deref().and_then(|name| context.clusters.get(name)) else {
        entry.flags.push(ResponseFlag::NoClusterFound);
        entry.upstream_cluster = cluster_name;
        return (local::failure(ResponseFlag::NoClusterFound), None);
    };
    entry.upstream_cluster = Some(cluster.config.name.clone());
    let hash = hash::request_hash(forward.hash_policy.as_slice(), &parts.headers, &parts.uri, &exchange.downstream);
    let Ok(body) = request_body::prepare(forward, &parts, body).await else {
        entry.flags.push(ResponseFlag::DownstreamConnectionTermination);
        return (local::reply(StatusCode::BAD_REQUEST, "request body could not be read"), None);
    };
    if let RequestBody::Buffered(bytes) = &body {
        router::mirror(&context.clusters, forward, &parts, bytes, &authority, hash);
    }
    let out = Outbound {
        cluster,
        forward,
        authority,
        original_destination: exchange.downstream.local,
        hash,
        started: exchange.started,
        // A route's idle timeout overrides the connection manager's, as in Envoy.
        stream_idle_timeout: forward.idle_timeout.or(manager.stream_idle_timeout),
    };
    let result = router::forward(out, parts, body).await;
    entry.flags.extend(result.flags.iter().copied());
    entry.upstream_host = result.upstream_host;
    entry.upstream_failure = result.upstream_failure;
    let mut response = result.response;
    if entry.upstream_host.is_some() && !entry.flags.iter().any(|flag| *flag != ResponseFlag::DelayInjected) {
        let elapsed = exchange.started.elapsed().as_millis().to_string();
        if let Ok(value) = HeaderValue::from_str(&elapsed) {
            response.headers_mut().insert("x-envoy-upstream-service-time", value);
        }
    }
    (response, result.upstream_upgrade)
}
