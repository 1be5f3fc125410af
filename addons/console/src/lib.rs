//! The demo's mesh console, in the roles of 1.4's Kiali and Grafana (which no registry here
//! has): a service graph, 1.4's mesh, service and workload dashboards, recent traces with a
//! waterfall view, and config status (each proxy's sync with Pilot, the config Pilot serves,
//! Galley's validation). It reads Prometheus, the trace collector and Pilot's debug API over
//! HTTP and renders plain HTML and SVG, so the pages need no build step and no scripts.

pub mod chart;
pub mod config;
pub mod dashboards;
pub mod graph;
pub mod page;
pub mod promql;
pub mod server;
pub mod sources;
pub mod traces;

use std::net::SocketAddr;
use std::sync::Arc;

/// A running console.
#[derive(Debug)]
pub struct Running {
    pub address: SocketAddr,
    shutdown: istio_runtime::Shutdown,
}

impl Running {
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

/// Serves the console on `address` over `sources`.
pub async fn start(address: SocketAddr, sources: sources::Sources) -> anyhow::Result<Running> {
    let shutdown = istio_runtime::Shutdown::default();
    let router = server::router(Arc::new(sources));
    let address = istio_runtime::monitoring::serve(address, router, shutdown.wait()).await?;
    Ok(Running { address, shutdown })
}
