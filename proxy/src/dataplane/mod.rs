//! The built-in data plane: what Envoy does for a sidecar or gateway, in Rust. It starts from
//! an Envoy v3 bootstrap (the one the agent generates, or a static config file): the static
//! clusters and listeners are installed at once, the admin API is served, and when the
//! bootstrap names an ADS server the xDS client (state of the world, or delta) keeps the
//! dynamic config current. Each update
//! is compiled completely before anything changes, so a bad update is rejected whole and the
//! last good config keeps serving.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod config;
pub mod config_dump;
pub mod http;
pub mod inspect;
pub mod listener;
pub mod sds;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod xds;
pub mod xds_delta;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use access_log::AccessLogWriters;
use config::cluster::ClusterConfig;
use config::listener::ListenerConfig;
use config::route::RouteTable;
use config_dump::ConfigDump;
use listener::ListenerManager;
use stats::Stats;
use tls::TlsConfigs;
use upstream::ClusterManager;

/// Envoy's server states, as `/server_info` and `/ready` report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    PreInitializing,
    Live,
    Draining,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
        }
    }
}

/// Everything the data plane's tasks share.
pub struct Shared {
    pub stats: Stats,
    pub clusters: ClusterManager,
    pub listeners: ListenerManager,
    pub routes: ArcSwap<HashMap<String, Arc<RouteTable>>>,
    pub access_logs: AccessLogWriters,
    /// TLS configs and the SDS secrets they use (clusters hold a handle, to pick up new
    /// material on their next connection).
    pub tls: Arc<TlsConfigs>,
    /// Flips to true when the data plane starts draining.
    pub draining: tokio::sync::watch::Sender<bool>,
    pub state: Mutex<ServerState>,
    pub dump: Mutex<ConfigDump>,
    pub bootstrap: Bootstrap,
    pub started: Instant,
    /// Names of the clusters and listeners that came from the bootstrap (CDS/LDS never remove them).
    static_clusters: HashSet<String>,
    static_listeners: Vec<Arc<ListenerConfig>>,
    /// Asked to stop (admin `/quitquitquit`).
    pub quit: tokio::sync::Notify,
    /// The bootstrap's tracer, if it configures one.
    pub tracer: Option<Arc<trace::Tracer>>,
    /// Listeners waiting for their route configurations (Envoy's warming): the previous
    /// version, if any, keeps serving until they are complete.
    warming: Mutex<Vec<Arc<ListenerConfig>>>,
    /// The xDS types applied at least once (for readiness).
    applied_types: Mutex<HashSet<&'static str>>,
}

impl Shared {
    pub fn state(&self) -> ServerState {
        *self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set_state(&self, state: ServerState) {
        *self.state.lock().unwrap_or_else(|poison| poison.into_inner()) = state;
        self.stats.gauge("server.state").set(match state {
            ServerState::Live => 0,
            ServerState::Draining => 1,
            ServerState::PreInitializing => 2,
        });
        self.stats.gauge("server.live").set(i64::from(state == ServerState::Live));
    }

    /// Records that a response of `type_url` has been applied.
    pub fn mark_applied(&self, type_url: &'static str) {
        self.applied_types.lock().unwrap_or_else(|poison| poison.into_inner()).insert(type_url);
    }

    pub fn applied(&self, type_url: &str) -> bool {
        self.applied_types.lock().unwrap_or_else(|poison| poison.into_inner()).contains(type_url)
    }

    /// Compiles and installs a CDS update (`clusters` replaces every dynamic cluster).
    pub fn apply_clusters(self: &Arc<Self>, clusters: &[Cluster], version: &str) -> Result<(), String> {
        let compiled = self.compile_clusters(clusters)?;
        let names: HashSet<String> = compiled.iter().map(|(config, _)| config.name.clone()).collect();
        self.clusters.update(compiled, |name| self.static_clusters.contains(name));
        let eds: HashSet<String> = self.clusters.eds_services().into_iter().collect();
        self.clusters.retain_assignments(&eds);
        self.dump.lock().unwrap_or_else(|poison| poison.into_inner()).set_clusters(clusters, version);
        self.follow_secrets();
        tracing::debug!("applied {} clusters (version {version})", names.len());
        Ok(())
    }

    /// Subscribes to the SDS secrets the clusters and listeners (serving or warming) use.
    fn follow_secrets(self: &Arc<Self>) {
        let mut wanted = std::collections::BTreeSet::new();
        for cluster in self.clusters.all().values() {
            if let Some(tls) = &cluster.config.tls {
                wanted.extend(tls.material.secrets().cloned());
            }
        }
        let table = self.listeners.table.load_full();
        let warming = self.warming.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        for listener in table.by_name.values().chain(warming.iter()) {
            for chain in listener.chains.iter().chain(listener.default_chain.iter()) {
                if let Some(tls) = &chain.tls {
                    wanted.extend(tls.material.secrets().cloned());
                }
            }
        }
        sds::follow(self, wanted);
    }

    fn compile_clusters(&self, clusters: &[Cluster]) -> Result<Vec<upstream::CompiledCluster>, String> {
        let mut seen = HashSet::new();
        clusters
            .iter()
            .map(|cluster| {
                if !seen.insert(cluster.name.clone()) {
                    return Err(format!("cluster {}: duplicate name", cluster.name));
                }
                let config = ClusterConfig::compile(cluster).map_err(|error| error.to_string())?;
                let tls = match &config.tls {
                    Some(settings) => {
                        // Material from files or inline is checked now; SDS secrets when they
                        // arrive (until then the cluster's connections fail, as Envoy's do).
                        if settings.material.secrets().next().is_none() {
                            self.tls
                                .client_config(settings)
                                .map_err(|error| format!("cluster {}: {error}", config.name))?;
                        }
                        Some(self.tls.clone())
                    }
                    None => None,
                };
                Ok((config, tls))
            })
            .collect()
    }

    /// Installs EDS assignments.
    pub fn apply_endpoints(&self, assignments: &[ClusterLoadAssignment], version: &str) -> Result<(), String> {
        let mut compiled = Vec::new();
        for assignment in assignments {
            let at = format!("cluster load assignment {}", assignment.cluster_name);
            compiled.push((
                assignment.cluster_name.clone(),
                config::cluster::endpoints(assignment, &at).map_err(|e| e.to_string())?,
            ));
        }
        for (service, endpoints) in compiled {
            self.clusters.set_assignment(&service, endpoints);
        }
        self.dump.lock().unwrap_or_else(|poison| poison.into_inner()).set_endpoints(assignments, version);
        Ok(())
    }

    /// Compiles and installs an LDS update, binding new addresses.
    pub async fn apply_listeners(self: &Arc<Self>, listeners: &[Listener], version: &str) -> Result<(), String> {
        let mut compiled = Vec::new();
        let mut names = HashSet::new();
        for listener in listeners {
            if !names.insert(listener.name.clone()) {
                return Err(format!("listener {}: duplicate name", listener.name));
            }
            compiled.push(Arc::new(ListenerConfig::compile(listener).map_err(|error| error.to_string())?));
        }
        for chain in compiled.iter().flat_map(|listener| listener.chains.iter().chain(listener.default_chain.iter())) {
            if let Some(settings) = chain.tls.as_ref().filter(|tls| tls.material.secrets().next().is_none()) {
                self.tls.server_config(settings).map_err(|error| format!("filter chain {}: {error}", chain.name))?;
            }
        }
        // A listener whose routes have not arrived yet warms; the previous listener of that
        // name (if any) keeps serving meanwhile.
        let routes = self.routes.load_full();
        let current = self.listeners.table.load_full();
        let mut active = self.static_listeners.clone();
        let mut warming = Vec::new();
        for listener in compiled {
            if listener.route_names().iter().all(|name| routes.contains_key(name)) {
                active.push(listener);
            } else {
                if let Some(previous) = current.by_name.get(&listener.name) {
                    active.push(previous.clone());
                }
                warming.push(listener);
            }
        }
        self.listeners.update(self, active).await?;
        self.stats.gauge("listener_manager.total_listeners_warming").set(warming.len() as i64);
        *self.warming.lock().unwrap_or_else(|poison| poison.into_inner()) = warming;
        self.dump.lock().unwrap_or_else(|poison| poison.into_inner()).set_listeners(listeners, version);
        self.follow_secrets();
        Ok(())
    }

    /// Puts warming listeners whose routes have all arrived into service.
    pub async fn promote_warm_listeners(self: &Arc<Self>) -> Result<(), String> {
        let routes = self.routes.load_full();
        let warming = std::mem::take(&mut *self.warming.lock().unwrap_or_else(|poison| poison.into_inner()));
        let (ready, still): (Vec<_>, Vec<_>) = warming
            .into_iter()
            .partition(|listener| listener.route_names().iter().all(|name| routes.contains_key(name)));
        let result = if ready.is_empty() {
            Ok(())
        } else {
            let current = self.listeners.table.load_full();
            let mut active: Vec<Arc<ListenerConfig>> = current
                .by_name
                .values()
                .filter(|listener| !ready.iter().any(|warm| warm.name == listener.name))
                .cloned()
                .collect();
            active.extend(ready.iter().cloned());
            self.listeners.update(self, active).await
        };
        let mut warming = self.warming.lock().unwrap_or_else(|poison| poison.into_inner());
        if result.is_err() {
            warming.extend(ready);
        }
        warming.extend(still);
        self.stats.gauge("listener_manager.total_listeners_warming").set(warming.len() as i64);
        result
    }

    /// Compiles and installs RDS route configurations (by name; others stay).
    pub fn apply_routes(&self, routes: &[RouteConfiguration], version: &str, replace_all: bool) -> Result<(), String> {
        let mut compiled = Vec::new();
        for route in routes {
            compiled.push(Arc::new(RouteTable::compile(route).map_err(|error| error.to_string())?));
        }
        let mut next: HashMap<String, Arc<RouteTable>> =
            if replace_all { HashMap::new() } else { (*self.routes.load_full()).clone() };
        for table in compiled {
            next.insert(table.name.clone(), table);
        }
        self.routes.store(Arc::new(next));
        self.dump.lock().unwrap_or_else(|poison| poison.into_inner()).set_routes(routes, version, replace_all);
        Ok(())
    }

    /// Keeps only the route tables named in `wanted` (what the listeners still ask for).
    pub fn retain_routes(&self, wanted: &[String]) {
        let wanted: HashSet<&String> = wanted.iter().collect();
        let kept: HashMap<String, Arc<RouteTable>> = self
            .routes
            .load()
            .iter()
            .filter(|(name, _)| wanted.contains(name))
            .map(|(name, table)| (name.clone(), table.clone()))
            .collect();
        self.routes.store(Arc::new(kept));
        self.dump.lock().unwrap_or_else(|poison| poison.into_inner()).retain_routes(|name| wanted.contains(name));
    }

    /// The RDS names the current and warming listeners need.
    pub fn route_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.listeners.table.load().by_name.values().flat_map(|listener| listener.route_names()).collect();
        let warming = self.warming.lock().unwrap_or_else(|poison| poison.into_inner());
        names.extend(warming.iter().flat_map(|listener| listener.route_names()));
        names.sort();
        names.dedup();
        names
    }

    /// Stops taking new requests: connections are asked to close after their current request.
    pub fn start_draining(&self) {
        self.set_state(ServerState::Draining);
        self.draining.send_replace(true);
    }
}

/// A running data plane.
pub struct DataPlane {
    pub shared: Arc<Shared>,
    pub admin_address: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs `work` — which reads or renders Envoy's API through its descriptors (several MB) — on a
/// thread of its own, then frees the descriptors. The thread's allocations come from a heap
/// of their own, which the allocator hands back to the system once they are freed, so a proxy
/// that idles holds only its compiled config. `work`'s result is copied out to the caller's
/// heap.
pub fn with_descriptors<T: Clone + Send>(work: impl FnOnce() -> T + Send) -> T {
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let result = work();
                istio_xds::json::release_pool();
                result
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    // The copy lives on this thread's heap; dropping the original empties the worker's.
    result.clone()
}

impl DataPlane {
    /// Starts from a bootstrap: static resources, the admin API, and ADS if configured.
    pub async fn start(bootstrap: Bootstrap) -> anyhow::Result<DataPlane> {
        let static_resources = bootstrap.static_resources.clone().unwrap_or_default();
        let stats = Stats::default();
        let shared = Arc::new(Shared {
            clusters: ClusterManager::new(stats.clone()),
            listeners: ListenerManager::default(),
            routes: ArcSwap::default(),
            access_logs: AccessLogWriters::default(),
            tls: Arc::new(TlsConfigs::default()),
            draining: tokio::sync::watch::channel(false).0,
            state: Mutex::new(ServerState::PreInitializing),
            dump: Mutex::new(ConfigDump::default()),
            static_clusters: static_resources.clusters.iter().map(|cluster| cluster.name.clone()).collect(),
            static_listeners: static_resources
                .listeners
                .iter()
                .map(|listener| ListenerConfig::compile(listener).map(Arc::new))
                .collect::<Result<_, _>>()
                .map_err(|error| anyhow::anyhow!("bootstrap: {error}"))?,
            bootstrap: bootstrap.clone(),
            started: Instant::now(),
            quit: tokio::sync::Notify::new(),
            tracer: trace::Tracer::from_bootstrap(&bootstrap),
            warming: Mutex::new(Vec::new()),
            applied_types: Mutex::new(HashSet::new()),
            stats,
        });
        shared.set_state(ServerState::PreInitializing);
        let compiled = shared
            .compile_clusters(&static_resources.clusters)
            .map_err(|error| anyhow::anyhow!("bootstrap: {error}"))?;
        shared.clusters.update(compiled, |_| false);
        shared
            .listeners
            .update(&shared, shared.static_listeners.clone())
            .await
            .map_err(|error| anyhow::anyhow!("bootstrap: {error}"))?;
        shared
            .dump
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .set_static(&static_resources.clusters, &static_resources.listeners);
        shared.follow_secrets();

        let admin_address =
            match bootstrap.admin.as_ref().and_then(|admin| config::cluster::socket_of(admin.address.as_ref())) {
                Some((host, port)) => SocketAddr::new(
                    host.parse().map_err(|_| anyhow::anyhow!("bootstrap: admin address {host:?} is not an IP"))?,
                    port,
                ),
                None => anyhow::bail!("bootstrap: the admin address is required"),
            };
        let (admin_address, admin_task) = admin::serve(shared.clone(), admin_address).await?;
        let mut tasks = vec![admin_task];
        if let Some(tracer) = shared.tracer.clone() {
            tasks.push(tokio::spawn(tracer.flush_forever(shared.clone())));
        }
        match xds::AdsTarget::from_bootstrap(&bootstrap)? {
            Some(target) => tasks.push(tokio::spawn(xds::run(shared.clone(), target))),
            None => shared.set_state(ServerState::Live),
        }
        Ok(DataPlane { shared, admin_address, tasks })
    }

    /// Drains for up to `drain` (connections finish their requests; new ones are refused once
    /// the listeners close), then stops everything.
    pub async fn drain_and_stop(self, drain: Duration) {
        self.shared.start_draining();
        let deadline = Instant::now() + drain;
        // Keep accepting briefly so clients that already resolved us see a graceful close.
        while Instant::now() < deadline && self.active_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shared.listeners.stop_accepting();
        for task in self.tasks {
            task.abort();
        }
    }

    /// Open downstream connections on the data-plane listeners.
    pub fn active_connections(&self) -> i64 {
        self.shared
            .stats
            .snapshot()
            .into_iter()
            .filter(|(name, _, is_counter)| {
                !is_counter && name.starts_with("listener.") && name.ends_with(".downstream_cx_active")
            })
            .map(|(_, value, _)| value as i64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources;
    use envoy_types::pb::envoy::config::bootstrap::v3::Admin;
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain};
    use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Name;

    fn any<M: prost::Message + Name>(message: &M) -> Any {
        Any { type_url: M::type_url(), value: message.encode_to_vec() }
    }

    fn loopback(port: u32) -> Address {
        Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }
    }

    fn listener_with_rds(route: &str) -> Listener {
        let manager = HttpConnectionManager {
            stat_prefix: "test".into(),
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                route_config_name: route.into(),
                ..Default::default()
            })),
            http_filters: vec![HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(&Router::default()))),
                ..Default::default()
            }],
            ..Default::default()
        };
        Listener {
            name: "http".into(),
            address: Some(loopback(0)),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(any(&manager))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A data plane with only its admin API, on a free loopback port.
    async fn empty_data_plane() -> DataPlane {
        let bootstrap = Bootstrap {
            admin: Some(Admin { address: Some(loopback(0)), ..Default::default() }),
            static_resources: Some(StaticResources::default()),
            ..Default::default()
        };
        DataPlane::start(bootstrap).await.expect("start")
    }

    #[tokio::test]
    async fn listeners_warm_until_their_routes_arrive() {
        let data_plane = empty_data_plane().await;
        let shared = data_plane.shared.clone();
        shared.apply_listeners(&[listener_with_rds("80")], "1").await.expect("listeners");
        assert!(!shared.listeners.table.load().by_name.contains_key("http"), "not in service without its routes");
        assert_eq!(shared.route_names(), ["80"], "its routes are still asked for");
        assert_eq!(shared.stats.gauge("listener_manager.total_listeners_warming").value(), 1);

        let routes = RouteConfiguration { name: "80".into(), ..Default::default() };
        shared.apply_routes(&[routes], "1", true).expect("routes");
        shared.promote_warm_listeners().await.expect("promote");
        assert!(shared.listeners.table.load().by_name.contains_key("http"), "in service once warm");
        assert_eq!(shared.stats.gauge("listener_manager.total_listeners_warming").value(), 0);

        // A new version waiting for another route leaves the old one serving.
        shared.apply_listeners(&[listener_with_rds("8080")], "2").await.expect("listeners");
        let serving = shared.listeners.table.load().by_name.get("http").cloned().expect("old version serves");
        assert_eq!(serving.route_names(), ["80"]);
    }

    #[tokio::test]
    async fn a_state_of_the_world_rds_response_with_one_route_keeps_the_others() {
        let data_plane = empty_data_plane().await;
        let shared = data_plane.shared.clone();
        let route = |name: &str| RouteConfiguration { name: name.into(), ..Default::default() };
        let response = |routes: &[RouteConfiguration], version: &str| {
            envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
                version_info: version.into(),
                type_url: istio_xds::type_url::ROUTE.into(),
                resources: routes.iter().map(any).collect(),
                ..Default::default()
            }
        };
        xds::apply_sotw(&shared, istio_xds::type_url::ROUTE, &response(&[route("80"), route("9080")], "1"))
            .await
            .expect("apply");
        xds::apply_sotw(&shared, istio_xds::type_url::ROUTE, &response(&[route("8000")], "2")).await.expect("apply");
        let mut names: Vec<String> = shared.routes.load().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["80", "8000", "9080"], "only 8000 changed; 80 and 9080 stay");
        shared.retain_routes(&["80".to_string()]);
        assert_eq!(shared.routes.load().keys().collect::<Vec<_>>(), ["80"], "unasked-for tables go");
    }
}
