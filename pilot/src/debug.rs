//! Pilot's debug HTTP server on :8080, with 1.4's endpoints: `/ready`, `/debug/syncz` (what
//! `istioctl proxy-status` reads), `/debug/adsz`, `/debug/configz`, `/debug/registryz`,
//! `/debug/endpointz`, `/debug/push_status`, `/debug/config_dump?proxyID=` and
//! `/debug/authenticationz?proxyID=` (what `istioctl authn tls-check` reads).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use istio_xds::type_url;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::model::PushContext;
use crate::node::Proxy;
use crate::xds::ads::Connections;
use crate::xds::generate::generate;

#[derive(Clone)]
pub(crate) struct DebugState {
    pub pushes: watch::Receiver<Arc<PushContext>>,
    pub connections: Arc<Connections>,
}

pub(crate) fn router(state: DebugState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/debug/syncz", get(syncz))
        .route("/debug/adsz", get(adsz))
        .route("/debug/configz", get(configz))
        .route("/debug/registryz", get(registryz))
        .route("/debug/endpointz", get(endpointz))
        .route("/debug/edsz", get(edsz))
        .route("/debug/cdsz", get(cdsz))
        .route("/debug/push_status", get(push_status))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/authenticationz", get(authenticationz))
        .with_state(state)
}

async fn ready(State(state): State<DebugState>) -> Response {
    if state.pushes.borrow().version.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "config not synced yet\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn syncz(State(state): State<DebugState>) -> Json<Value> {
    let entries: Vec<Value> = state
        .connections
        .snapshot()
        .into_iter()
        .filter(|status| !status.proxy.is_empty())
        .map(|status| {
            let field = |kind: &str, acked: bool| {
                status.types.get(kind).map(|t| if acked { t.acked_nonce.clone() } else { t.sent_nonce.clone() }).unwrap_or_default()
            };
            json!({
                "proxy": status.proxy.split('~').nth(2).unwrap_or(&status.proxy),
                "proxy_id": status.proxy,
                "istio_version": status.istio_version,
                "cluster_sent": field("cds", false), "cluster_acked": field("cds", true),
                "listener_sent": field("lds", false), "listener_acked": field("lds", true),
                "route_sent": field("rds", false), "route_acked": field("rds", true),
                "endpoint_sent": field("eds", false), "endpoint_acked": field("eds", true),
                "nacks": status.types.iter().filter_map(|(kind, t)| t.nack.as_ref().map(|n| (kind.clone(), n.clone()))).collect::<HashMap<_, _>>(),
            })
        })
        .collect();
    Json(Value::Array(entries))
}

async fn adsz(State(state): State<DebugState>) -> Json<Value> {
    Json(json!({"totalClients": state.connections.snapshot().len(), "clients": state.connections.snapshot()}))
}

async fn configz(State(state): State<DebugState>) -> Json<Value> {
    let push = state.pushes.borrow().clone();
    let encode = |proto: &str, name: &str, namespace: &str, kind: &str, spec: Value| json!({"kind": kind, "name": name, "namespace": namespace, "proto": proto, "spec": spec});
    let mut items = Vec::new();
    for vs in &push.virtual_services {
        items.push(encode(
            "VirtualService",
            &vs.name,
            &vs.namespace,
            "VirtualService",
            istio_api::json::encode("istio.networking.v1alpha3.VirtualService", &vs.spec).unwrap_or_default(),
        ));
    }
    for dr in &push.destination_rules {
        items.push(encode(
            "DestinationRule",
            &dr.name,
            &dr.namespace,
            "DestinationRule",
            istio_api::json::encode("istio.networking.v1alpha3.DestinationRule", &dr.spec).unwrap_or_default(),
        ));
    }
    for gw in &push.gateways {
        items.push(encode(
            "Gateway",
            &gw.name,
            &gw.namespace,
            "Gateway",
            istio_api::json::encode("istio.networking.v1alpha3.Gateway", &gw.spec).unwrap_or_default(),
        ));
    }
    Json(Value::Array(items))
}

async fn registryz(State(state): State<DebugState>) -> Json<Value> {
    let push = state.pushes.borrow().clone();
    let services: Vec<Value> = push
        .services
        .values()
        .map(|service| {
            json!({
                "hostname": service.hostname,
                "namespace": service.namespace,
                "address": service.address,
                "ports": service.ports.iter().map(|p| json!({"name": p.name, "port": p.number, "protocol": format!("{:?}", p.protocol)})).collect::<Vec<_>>(),
                "resolution": format!("{:?}", service.resolution),
                "meshExternal": service.mesh_external,
                "serviceAccounts": service.service_accounts,
            })
        })
        .collect();
    Json(Value::Array(services))
}

async fn endpointz(State(state): State<DebugState>) -> Json<Value> {
    let push = state.pushes.borrow().clone();
    let endpoints: Vec<Value> = push
        .services
        .values()
        .flat_map(|service| {
            service.endpoints.iter().map(move |endpoint| {
                json!({"service": service.hostname, "address": endpoint.address, "ports": endpoint.ports, "labels": endpoint.labels, "locality": endpoint.locality})
            })
        })
        .collect();
    Json(Value::Array(endpoints))
}

/// Every EDS cluster Pilot knows, with its endpoints as Pilot would send them.
async fn edsz(State(state): State<DebugState>) -> Json<Value> {
    let push = state.pushes.borrow().clone();
    let mut clusters = Vec::new();
    for service in push.services.values().filter(|service| service.resolution == crate::model::Resolution::Static) {
        for port in &service.ports {
            let mut subsets = vec![String::new()];
            if let Some(rule) = push.destination_rule(&service.hostname) {
                subsets.extend(rule.spec.subsets.iter().map(|subset| subset.name.clone()));
            }
            for subset in subsets {
                let name = istio_xds::ClusterName::outbound(port.number, &subset, &service.hostname).to_string();
                let endpoints: Vec<String> = crate::xds::endpoint::load_assignment(&push, &name)
                    .map(|assignment| {
                        assignment
                            .endpoints
                            .iter()
                            .flat_map(|locality| locality.lb_endpoints.iter())
                            .filter_map(|lb| match &lb.host_identifier {
                                Some(envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(endpoint)) => {
                                    endpoint.address.as_ref().and_then(|address| match &address.address {
                                        Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(socket)) => Some(format!(
                                            "{}:{}",
                                            socket.address,
                                            match socket.port_specifier {
                                                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port)) => port,
                                                _ => 0,
                                            }
                                        )),
                                        _ => None,
                                    })
                                }
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                clusters.push(json!({"cluster": name, "endpoints": endpoints}));
            }
        }
    }
    Json(Value::Array(clusters))
}

/// The clusters sent to each connected proxy: names and counts per type.
async fn cdsz(State(state): State<DebugState>) -> Json<Value> {
    let connections: Vec<Value> = state
        .connections
        .snapshot()
        .into_iter()
        .map(|status| json!({"proxy": status.proxy, "clusters": status.types.get("cds").map_or(0, |t| t.resources), "sent_version": status.types.get("cds").map(|t| t.sent_version.clone())}))
        .collect();
    Json(Value::Array(connections))
}

async fn push_status(State(state): State<DebugState>) -> Json<Value> {
    let push = state.pushes.borrow().clone();
    Json(json!({
        "version": push.version,
        "services": push.services.len(),
        "virtualServices": push.virtual_services.len(),
        "destinationRules": push.destination_rules.len(),
        "gateways": push.gateways.len(),
        "connectedProxies": state.connections.snapshot().len(),
    }))
}

/// The mutual-TLS settings of every mesh service port as a connected proxy sees them
/// (`proxyID` is `pod.namespace` or the node id), as 1.4's `/debug/authenticationz`.
async fn authenticationz(State(state): State<DebugState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(wanted) = query.get("proxyID") else {
        return (StatusCode::BAD_REQUEST, "You must provide a proxyID in the query string").into_response();
    };
    let connected = state
        .connections
        .snapshot()
        .into_iter()
        .map(|status| status.proxy)
        .filter(|proxy| proxy == wanted || proxy.split('~').nth(2) == Some(wanted.as_str()))
        .max();
    let node = connected.map(|id| envoy_types::pb::envoy::config::core::v3::Node { id, ..Default::default() });
    let Some(proxy) = node.and_then(|node| Proxy::from_node(&node).ok()) else {
        // An empty array, so istioctl can tell "not connected" from an error, as 1.4 did.
        return (StatusCode::NOT_FOUND, "\n[\n]").into_response();
    };
    let push = state.pushes.borrow().clone();
    Json(crate::tls_check::authenticationz(&push, &proxy.namespace)).into_response()
}

/// What Pilot would send a connected proxy, in Envoy's config_dump shape.
async fn config_dump(State(state): State<DebugState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(wanted) = query.get("proxyID") else {
        return (StatusCode::BAD_REQUEST, "proxyID is required (pod.namespace or the full node id)\n").into_response();
    };
    // A connected proxy is found by `pod.namespace` or its id; any other full node id is
    // rendered as if that proxy connected, so a person can ask "what would X get?".
    // A connected proxy is rendered with the node it announced (its metadata decides filters).
    let connected = state
        .connections
        .snapshot()
        .into_iter()
        .find(|status| status.proxy == *wanted || status.proxy.split('~').nth(2) == Some(wanted.as_str()));
    let node = connected
        .and_then(|status| status.node)
        .unwrap_or_else(|| envoy_types::pb::envoy::config::core::v3::Node { id: wanted.clone(), ..Default::default() });
    let node_id = node.id.clone();
    let proxy = match Proxy::from_node(&node) {
        Ok(proxy) => proxy,
        Err(error) => {
            return (StatusCode::NOT_FOUND, format!("{wanted} is neither a connected proxy nor a node id: {error}\n"))
                .into_response()
        }
    };
    let push = state.pushes.borrow().clone();
    let dump = |items: &[crate::model::GeneratedResource], field: &str| -> Vec<Value> {
        items
            .iter()
            .map(|r| {
                let body = istio_xds::json::any_to_json(r.resource.as_ref())
                    .unwrap_or_else(|error| json!({"name": r.name, "undecodable": error.to_string()}));
                json!({"version_info": push.version, field: body})
            })
            .collect()
    };
    let clusters = generate(&push, &proxy, type_url::CLUSTER, &[]);
    let listeners = generate(&push, &proxy, type_url::LISTENER, &[]);
    let listener_anys: Vec<_> = listeners.iter().map(|r| (*r.resource).clone()).collect();
    let cluster_anys: Vec<_> = clusters.iter().map(|r| (*r.resource).clone()).collect();
    let route_names: Vec<String> = istio_xds::references::rds_route_names(&listener_anys).into_iter().collect();
    let endpoint_names: Vec<String> = istio_xds::references::eds_cluster_names(&cluster_anys).into_iter().collect();
    let routes = generate(&push, &proxy, type_url::ROUTE, &route_names);
    let endpoints = generate(&push, &proxy, type_url::ENDPOINT, &endpoint_names);
    // The shape of Envoy's /config_dump, so the same tools read both.
    Json(json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": push.version,
         "dynamic_active_clusters": dump(&clusters, "cluster")},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "version_info": push.version,
         "dynamic_listeners": listeners.iter().zip(dump(&listeners, "listener")).map(|(r, active)| json!({"name": r.name, "active_state": active})).collect::<Vec<_>>()},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
         "dynamic_route_configs": dump(&routes, "route_config")},
        {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
         "dynamic_endpoint_configs": dump(&endpoints, "endpoint_config")},
    ], "proxy": node_id}))
    .into_response()
}
