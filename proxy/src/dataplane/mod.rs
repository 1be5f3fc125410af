//! The built-in data plane: what Envoy does for a sidecar or gateway, in Rust. It starts from
//! an Envoy v3 bootstrap (the one the agent generates, or a static config file): the static
//! clusters and listeners are installed at once, the admin API is served, and when the
//! bootstrap names an ADS server the xDS client (state of the world, or delta) keeps the
//! dynamic config current. Each update
//! is compiled completely before anything changes, so a bad update is rejected whole and the
//! last good config keeps serving.

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod ads;
pub(crate) mod body;
pub(crate) mod certs;
pub(crate) mod chain_update;
pub(crate) mod config;
pub(crate) mod config_dump;
pub(crate) mod connection_stats;
pub(crate) mod context;
pub(crate) mod http;
pub(crate) mod inspect;
pub(crate) mod jwt;
pub(crate) mod listener;
pub(crate) mod listener_table;
pub(crate) mod mixer;
pub(crate) mod rbac;
pub(crate) mod sds;
pub(crate) mod secrets;
pub(crate) mod shared;
pub(crate) mod sni_verifier;
pub(crate) mod stats;
pub(crate) mod tcp;
pub(crate) mod telemetry_v2;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod upstream;
pub(crate) mod workers;
pub(crate) mod xds;
pub(crate) mod xds_delta;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

use config::listener::ListenerConfig;
use config_dump::ConfigDump;
use context::TrafficContext;
use listener::ListenerManager;
use shared::{ServerState, Shared};
use stats::Stats;

/// Why a data plane could not start from its bootstrap.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("bootstrap: {0}")]
    Config(#[from] config::ConfigError),
    #[error("bootstrap: {0}")]
    Update(#[from] shared::UpdateError),
    #[error("bootstrap: {0}")]
    Bind(#[from] listener::BindError),
    #[error("bootstrap: admin address {0:?} is not an IP")]
    AdminAddress(String),
    #[error("bootstrap: the admin address is required")]
    NoAdminAddress,
    #[error("admin API: {0}")]
    Admin(#[from] istio_runtime::listen::BindError),
    #[error(transparent)]
    Ads(#[from] ads::BootstrapError),
    #[error("starting the workers: {0}")]
    Workers(std::io::Error),
}

/// A running data plane.
pub(crate) struct DataPlane {
    pub shared: Arc<Shared>,
    pub admin_address: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DataPlane {
    /// Starts from a bootstrap: static resources, the admin API, and ADS if configured, with
    /// `concurrency` workers serving traffic (0: one per core).
    pub(crate) async fn start(bootstrap: Bootstrap, concurrency: usize) -> Result<DataPlane, StartError> {
        let workers = workers::Workers::start(concurrency).map_err(StartError::Workers)?;
        let static_resources = bootstrap.static_resources.clone().unwrap_or_default();
        let mut traffic = TrafficContext::new(Stats::default(), trace::Tracer::from_bootstrap(&bootstrap));
        traffic.local_node = Arc::new(telemetry_v2::node_info::LocalNode::from_node(bootstrap.node.as_ref()));
        let traffic = Arc::new(traffic);
        let shared = Arc::new(Shared {
            traffic,
            listeners: ListenerManager::new(workers),
            state: Mutex::new(ServerState::PreInitializing),
            dump: Mutex::new(ConfigDump::default()),
            static_clusters: static_resources.clusters.iter().map(|cluster| cluster.name.clone()).collect(),
            static_listeners: static_resources
                .listeners
                .iter()
                .map(|listener| ListenerConfig::compile(listener).map(Arc::new))
                .collect::<Result<_, _>>()?,
            bootstrap: bootstrap.clone(),
            started: Instant::now(),
            quit: tokio::sync::Notify::new(),
            warming: Mutex::new(Vec::new()),
            applied_types: Mutex::new(HashSet::new()),
        });
        shared.set_state(ServerState::PreInitializing);
        let compiled = shared.compile_clusters(&static_resources.clusters)?;
        shared.traffic.clusters.update(compiled, |_| false);
        shared.listeners.update(&shared.traffic, shared.static_listeners.clone()).await?;
        istio_runtime::sync::lock(&shared.dump).set_static(&static_resources.clusters, &static_resources.listeners);
        shared.follow_secrets();

        let admin_address =
            match bootstrap.admin.as_ref().and_then(|admin| config::cluster::socket_of(admin.address.as_ref())) {
                Some((host, port)) => {
                    SocketAddr::new(host.parse().map_err(|_| StartError::AdminAddress(host.clone()))?, port)
                }
                None => return Err(StartError::NoAdminAddress),
            };
        let (admin_address, admin_task) = admin::serve(shared.clone(), admin_address).await?;
        let mut tasks = vec![admin_task, tokio::spawn(sds::supervise(Arc::downgrade(&shared)))];
        if let Some(tracer) = shared.traffic.tracer.clone() {
            let clusters = shared.traffic.clusters.clone();
            tasks.push(tokio::spawn(tracer.flush_forever(clusters, shared.traffic.stats.clone())));
        }
        match ads::AdsTarget::from_bootstrap(&bootstrap)? {
            Some(target) => tasks.push(tokio::spawn(xds::run(shared.clone(), target))),
            None => shared.set_state(ServerState::Live),
        }
        Ok(DataPlane { shared, admin_address, tasks })
    }

    /// Drains for up to `drain` (connections finish their requests; new ones are refused once
    /// the listeners close), then stops everything.
    pub(crate) async fn drain_and_stop(self, drain: Duration) {
        self.shared.start_draining();
        let deadline = Instant::now() + drain;
        // Keep accepting briefly so clients that already resolved us see a graceful close.
        while Instant::now() < deadline && self.active_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shared.listeners.stop(&self.shared.traffic, listener::Stopped::All);
        for task in self.tasks {
            task.abort();
        }
    }

    /// Open downstream connections on the data-plane listeners.
    pub(crate) fn active_connections(&self) -> i64 {
        self.shared
            .traffic
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
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain};
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
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
        DataPlane::start(bootstrap, 2).await.expect("start")
    }

    #[tokio::test]
    async fn listeners_warm_until_their_routes_arrive() {
        let data_plane = empty_data_plane().await;
        let shared = data_plane.shared.clone();
        shared.apply_listeners(&[listener_with_rds("80")], "1").await.expect("listeners");
        assert!(!shared.traffic.listeners.load().by_name.contains_key("http"), "not in service without its routes");
        assert_eq!(shared.route_names(), ["80"], "its routes are still asked for");
        assert_eq!(shared.traffic.stats.gauge("listener_manager.total_listeners_warming").value(), 1);

        let routes = RouteConfiguration { name: "80".into(), ..Default::default() };
        shared.apply_routes(&[routes], "1", true).expect("routes");
        shared.promote_warm_listeners().await.expect("promote");
        assert!(shared.traffic.listeners.load().by_name.contains_key("http"), "in service once warm");
        assert_eq!(shared.traffic.stats.gauge("listener_manager.total_listeners_warming").value(), 0);

        // A new version waiting for another route leaves the old one serving.
        shared.apply_listeners(&[listener_with_rds("8080")], "2").await.expect("listeners");
        let serving = shared.traffic.listeners.load().by_name.get("http").cloned().expect("old version serves");
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
        ads::apply_sotw(&shared, istio_xds::type_url::ROUTE, &response(&[route("80"), route("9080")], "1"))
            .await
            .expect("apply");
        ads::apply_sotw(&shared, istio_xds::type_url::ROUTE, &response(&[route("8000")], "2")).await.expect("apply");
        let mut names: Vec<String> = shared.traffic.routes.load().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["80", "8000", "9080"], "only 8000 changed; 80 and 9080 stay");
        shared.retain_routes(&["80".to_string()]);
        assert_eq!(shared.traffic.routes.load().keys().collect::<Vec<_>>(), ["80"], "unasked-for tables go");
    }
}
