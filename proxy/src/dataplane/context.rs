//! What serving traffic reads: the stats, the clusters, the route tables and listener table in
//! force, the access-log writers, TLS configs, the tracer, and whether the data plane is
//! draining. Listeners, connection managers, TCP proxies and the router get this and nothing
//! else; applying config updates and answering the admin API is `shared`'s.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::access_log::AccessLogWriters;
use super::config::route::RouteTable;
use super::listener_table::ListenerTable;
use super::stats::Stats;
use super::telemetry_v2::metrics::IstioMetrics;
use super::telemetry_v2::node_info::LocalNode;
use super::tls::TlsConfigs;
use super::trace::Tracer;
use super::upstream::ClusterManager;

/// The data plane's state as traffic sees it; read on every connection and request, replaced
/// piecewise (whole tables swapped) by config updates.
pub(crate) struct TrafficContext {
    pub stats: Stats,
    pub clusters: Arc<ClusterManager>,
    /// Route tables by RDS name.
    pub routes: ArcSwap<HashMap<String, Arc<RouteTable>>>,
    /// The listeners in service.
    pub listeners: ArcSwap<ListenerTable>,
    pub access_logs: AccessLogWriters,
    /// TLS configs and the SDS secrets they use (clusters hold a handle, to pick up new
    /// material on their next connection).
    pub tls: Arc<TlsConfigs>,
    /// Flips to true when the data plane starts draining.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// The bootstrap's tracer, if it configures one.
    pub tracer: Option<Arc<Tracer>>,
    /// This proxy as the telemetry plugins present it to peers.
    pub local_node: Arc<LocalNode>,
    /// The series the `envoy.wasm.stats` plugin records (served on `/stats/prometheus`).
    pub istio_metrics: IstioMetrics,
}

impl TrafficContext {
    /// A context with nothing installed yet.
    pub(crate) fn new(stats: Stats, tracer: Option<Arc<Tracer>>) -> TrafficContext {
        TrafficContext {
            clusters: Arc::new(ClusterManager::new(stats.clone())),
            routes: ArcSwap::default(),
            listeners: ArcSwap::from_pointee(ListenerTable::default()),
            access_logs: AccessLogWriters::default(),
            tls: Arc::new(TlsConfigs::default()),
            draining: tokio::sync::watch::channel(false).0,
            tracer,
            stats,
            local_node: Arc::default(),
            istio_metrics: IstioMetrics::default(),
        }
    }

    /// Whether the data plane is draining (connections close after their current request).
    pub(crate) fn draining(&self) -> bool {
        *self.draining.borrow()
    }
}
