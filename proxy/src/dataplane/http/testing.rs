//! Fixtures for the HTTP layers' unit tests: route tables written as Envoy JSON, a connection
//! manager with the filters on, and a downstream connection.

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use super::super::config::listener::{Codec, HttpManagerConfig, RouteSource};
use super::super::config::route::RouteTable;
use super::downstream::Downstream;

/// A route table compiled from Envoy's JSON form of a RouteConfiguration.
pub(crate) fn route_table(json: serde_json::Value) -> Arc<RouteTable> {
    let config: RouteConfiguration = istio_xds::json::message_from_json(&json).expect("a RouteConfiguration");
    Arc::new(RouteTable::compile(&config).expect("compiles"))
}

/// A connection manager with the fault and CORS filters, serving `table`.
pub(crate) fn manager(table: Arc<RouteTable>) -> HttpManagerConfig {
    HttpManagerConfig {
        stat_prefix: "test".to_string(),
        routes: RouteSource::Inline(table),
        fault_filter: true,
        cors_filter: true,
        codec: Codec::Auto,
        generate_request_id: true,
        use_remote_address: false,
        stream_idle_timeout: None,
        access_logs: Vec::new(),
        websocket: false,
        tracing: None,
        rbac: Vec::new(),
        jwt_authn: Vec::new(),
        mixer: None,
        peer_exchange: false,
        istio_stats: None,
    }
}

/// A plain-text client connection from 10.0.0.1.
pub(crate) fn downstream() -> Arc<Downstream> {
    Arc::new(Downstream {
        remote: "10.0.0.1:40000".parse().expect("address"),
        local: "10.0.0.2:9080".parse().expect("address"),
        tls: false,
        peer: None,
        server_name: None,
        inbound: false,
    })
}

/// The head of a request.
pub(crate) fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request").into_parts().0
}
