//! The demo's trace collector, in the role of 1.4's `istio-tracing` addon (Jaeger all-in-one
//! behind the `zipkin` Service): it takes spans as Zipkin v2 JSON (what the proxies' Zipkin
//! tracers send to `zipkin.istio-system:9411`) and as OTLP over gRPC or HTTP, keeps the recent
//! ones in memory, and answers Zipkin's v2 query API so tools that speak Zipkin work with it.

pub mod index;
pub mod otlp;
pub mod query;
pub mod server;
pub mod span;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Where the collector listens and how much it keeps.
#[derive(Debug, Clone)]
pub struct Config {
    pub zipkin_address: SocketAddr,
    pub otlp_grpc_address: SocketAddr,
    pub otlp_http_address: SocketAddr,
    /// Spans kept before the oldest traces are dropped.
    pub max_spans: usize,
}

/// A running collector: its bound addresses, and a way to stop it.
#[derive(Debug)]
pub struct Running {
    pub zipkin_address: SocketAddr,
    pub otlp_grpc_address: SocketAddr,
    pub otlp_http_address: SocketAddr,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

/// Starts the three servers over one store.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let store: server::SharedStore = Arc::new(Mutex::new(store::Store::new(config.max_spans)));
    let shutdown = istio_runtime::Shutdown::default();
    let serve = istio_runtime::monitoring::serve;
    let zipkin_address = serve(config.zipkin_address, server::zipkin_router(store.clone()), shutdown.wait()).await?;
    let otlp_http_address =
        serve(config.otlp_http_address, server::otlp_http_router(store.clone()), shutdown.wait()).await?;
    let otlp_grpc_address = server::serve_otlp_grpc(config.otlp_grpc_address, store, shutdown.wait()).await?;
    Ok(Running { zipkin_address, otlp_grpc_address, otlp_http_address, shutdown })
}
