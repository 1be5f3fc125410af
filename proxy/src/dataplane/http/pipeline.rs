//! One request through the connection manager's layers, in Envoy's order: the forwarding
//! headers, the span, the WebSocket check, route selection, the route's own pipeline, the
//! upgrade bridge, and the finish that logs when the response ends. Each step is its own module.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::super::access_log::ResponseFlag;
use super::super::body::Body;
use super::super::config::listener::HttpManagerConfig;
use super::super::connection_stats::HttpManagerStats;
use super::super::context::TrafficContext;
use super::super::mixer::attributes::header_bytes;
use super::super::telemetry_v2::dimensions::is_grpc;
use super::super::telemetry_v2::peer_exchange;
use super::downstream::Downstream;
use super::exchange::{Exchange, TelemetryRequest};
use super::span::RequestSpan;
use super::{authenticate, authorize, finish, forwarding, local, policy_check, request_body, route, routing, upgrade};

/// Runs one request through the pipeline.
pub(crate) async fn handle(
    context: &TrafficContext,
    manager: &HttpManagerConfig,
    stats: &HttpManagerStats,
    downstream: Arc<Downstream>,
    mut request: Request<Incoming>,
) -> Response<Body> {
    stats.rq_total.inc();
    let active = stats.rq_active.track();
    let downstream_upgrade = upgrade::requested(&mut request);
    let (mut parts, incoming) = request.into_parts();
    let mut exchange = Exchange::begin(downstream, &parts);
    exchange.active = Some(active);
    // 1.4's metadata exchange runs first in the chain: the peer's headers never go further.
    if manager.peer_exchange {
        let inbound = exchange.downstream.inbound;
        exchange.downstream_peer = peer_exchange::on_request(&context.local_node, &mut parts.headers, inbound);
    }
    forwarding::add_request_headers(&mut parts.headers, manager, &exchange.downstream);
    let target = (exchange.authority.as_str(), exchange.original_path.as_str());
    let span = RequestSpan::start(context.tracer.as_ref(), manager.tracing, &mut parts, &exchange.downstream, target);
    exchange.span = span;
    if !manager.access_logs.is_empty() {
        exchange.record_request_headers(&parts);
    }
    // Upgrades the connection manager does not allow are refused, as Envoy does.
    if upgrade::refused(manager, &parts.headers) {
        stats.ws_on_non_ws_route.inc();
        return local::reply(StatusCode::FORBIDDEN, "");
    }
    // JWT authentication, then RBAC, run before the router, as in Envoy's filter chain: a
    // refused request gets no route.
    let metadata = match authenticate::run(context, &manager.stat_prefix, &manager.jwt_authn, &exchange, &mut parts) {
        Ok(metadata) => metadata,
        Err(error) => {
            let refusal = authenticate::refusal(error, &exchange);
            return finish::complete(context, manager, stats, exchange, refusal);
        }
    };
    let denied = !manager
        .rbac
        .iter()
        .all(|rules| authorize::allowed(context, &manager.stat_prefix, rules, &exchange, &parts, metadata.as_ref()));
    if manager.istio_stats.is_some() {
        exchange.telemetry = Some(TelemetryRequest {
            grpc: is_grpc(parts.headers.get(http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok())),
            header_bytes: header_bytes(&parts.headers),
        });
    }
    let table = routing::route_table(context, manager);
    let selected =
        if denied { None } else { table.as_deref().and_then(|table| routing::select(table, &exchange, &parts)) };
    let inbound = exchange.downstream.inbound;
    if let Some(span) = exchange.span.as_mut() {
        span.name_after_route(selected.as_ref().map(|selected| selected.route), &mut parts.headers, inbound);
    }
    let (mut response, upgrades) = match selected {
        None if denied => (local::reply(http::StatusCode::FORBIDDEN, super::super::rbac::DENIED_BODY), None),
        None => {
            stats.no_route.inc();
            exchange.entry.flags.push(ResponseFlag::NoRouteFound);
            (local::failure(ResponseFlag::NoRouteFound), None)
        }
        Some(mut selected) => {
            exchange.entry.route_name = Some(selected.route.name.clone()).filter(|name| !name.is_empty());
            // Istio 1.4's mixer filter: Mixer's check, once the route (and its service) is known.
            let mut response_operations = Vec::new();
            if let Some(mixer) = &manager.mixer {
                match policy_check::run(context, mixer, &selected, &mut exchange, &mut parts).await {
                    Ok(allowed) => {
                        response_operations = allowed.response_operations;
                        // Headers Mixer changed may lead elsewhere: route again.
                        if allowed.headers_changed {
                            match routing::select(selected.table, &exchange, &parts) {
                                Some(again) => selected = again,
                                None => {
                                    stats.no_route.inc();
                                    exchange.entry.flags.push(ResponseFlag::NoRouteFound);
                                    let reply = local::failure(ResponseFlag::NoRouteFound);
                                    return finish::complete(context, manager, stats, exchange, reply);
                                }
                            }
                        }
                    }
                    Err(refusal) => {
                        exchange.entry.flags.push(ResponseFlag::UnauthorizedExternalService);
                        return finish::complete(context, manager, stats, exchange, refusal);
                    }
                }
            }
            let body = request_body::counted(incoming, exchange.bytes_received.clone());
            let (mut response, upstream_upgrade) =
                route::run(context, manager, stats, &mut exchange, &selected, parts, body).await;
            policy_check::apply(&response_operations, response.headers_mut());
            (response, upstream_upgrade.zip(downstream_upgrade))
        }
    };
    if let Some((upstream, downstream)) = upgrades {
        tokio::spawn(upgrade::bridge(downstream, upstream));
    }
    if let Some(span) = exchange.span.as_mut() {
        span.on_response(response.headers_mut(), inbound);
    }
    finish::complete(context, manager, stats, exchange, response)
}
