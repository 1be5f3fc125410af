//! The data plane's control side: the traffic context it installs config into, the listener
//! sockets, the server state (`/ready`), the config dump, the bootstrap, and warming listeners.
//! Each xDS update is compiled completely before anything changes, so a bad update is rejected
//! whole and the last good config keeps serving. The xDS and SDS clients and the admin API
//! work through here; traffic never does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use istio_xds::type_url;

use super::chain_update;
use super::config;
use super::config::cluster::ClusterConfig;
use super::config::listener::ListenerConfig;
use super::config::route::RouteTable;
use super::config::ConfigError;
use super::config_dump::ConfigDump;
use super::context::TrafficContext;
use super::listener::{BindError, ListenerManager};
use super::tls::{check_at_update, TlsError};
use super::upstream;

/// Why an xDS update (or the bootstrap's static resources) cannot be applied; nothing of it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    #[error("{kind} {name}: duplicate name")]
    DuplicateName { kind: &'static str, name: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cluster {cluster}: {source}")]
    ClusterTls { cluster: String, source: TlsError },
    #[error("filter chain {chain}: {source}")]
    ChainTls { chain: String, source: TlsError },
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// Envoy's server states, as `/server_info` and `/ready` report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    PreInitializing,
    Live,
    Draining,
}

impl ServerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
        }
    }
}

/// Everything the data plane's tasks share.
pub(crate) struct Shared {
    /// What traffic reads; updates are installed into it.
    pub traffic: Arc<TrafficContext>,
    /// The bound sockets of the listeners in `traffic.listeners`.
    pub listeners: ListenerManager,
    pub state: Mutex<ServerState>,
    pub dump: Mutex<ConfigDump>,
    pub bootstrap: Bootstrap,
    pub started: Instant,
    /// Names of the clusters and listeners that came from the bootstrap (CDS/LDS never remove them).
    pub(crate) static_clusters: HashSet<String>,
    pub(crate) static_listeners: Vec<Arc<ListenerConfig>>,
    /// Asked to stop (admin `/quitquitquit`).
    pub quit: tokio::sync::Notify,
    /// Listeners waiting for their route configurations (Envoy's warming): the previous
    /// version, if any, keeps serving until they are complete.
    pub(crate) warming: Mutex<Vec<Arc<ListenerConfig>>>,
    /// The xDS types applied at least once (for readiness).
    pub(crate) applied_types: Mutex<HashSet<&'static str>>,
}

impl Shared {
    pub(crate) fn state(&self) -> ServerState {
        *istio_runtime::sync::lock(&self.state)
    }

    pub(crate) fn set_state(&self, state: ServerState) {
        *istio_runtime::sync::lock(&self.state) = state;
        self.traffic.stats.gauge("server.state").set(match state {
            ServerState::Live => 0,
            ServerState::Draining => 1,
            ServerState::PreInitializing => 2,
        });
        self.traffic.stats.gauge("server.live").set(i64::from(state == ServerState::Live));
    }

    /// Records that a response of `type_url` has been applied.
    pub(crate) fn mark_applied(&self, type_url: &'static str) {
        istio_runtime::sync::lock(&self.applied_types).insert(type_url);
    }

    pub(crate) fn applied(&self, type_url: &str) -> bool {
        istio_runtime::sync::lock(&self.applied_types).contains(type_url)
    }

    /// Compiles and installs a CDS update (`clusters` replaces every dynamic cluster).
    pub(crate) fn apply_clusters(self: &Arc<Self>, clusters: &[Cluster], version: &str) -> Result<(), UpdateError> {
        let compiled = self.compile_clusters(clusters)?;
        let names: HashSet<String> = compiled.iter().map(|(config, _)| config.name.clone()).collect();
        self.traffic.clusters.update(compiled, |name| self.static_clusters.contains(name));
        let eds: HashSet<String> = self.traffic.clusters.eds_services().into_iter().collect();
        self.traffic.clusters.retain_assignments(&eds);
        istio_runtime::sync::lock(&self.dump).set_clusters(clusters, version);
        self.follow_secrets();
        tracing::debug!("applied {} clusters (version {version})", names.len());
        Ok(())
    }

    /// The TLS material of every cluster and listener (serving or warming), each once.
    pub(crate) fn tls_materials(&self) -> Vec<config::tls_source::TlsMaterial> {
        // A set: a mesh has a material per destination's names, and this runs at every update.
        let mut materials = HashSet::new();
        let mut add = |material: &config::tls_source::TlsMaterial| {
            if !materials.contains(material) {
                materials.insert(material.clone());
            }
        };
        for cluster in self.traffic.clusters.all().values() {
            let matches = cluster.config.tls_matches.iter().filter_map(|m| m.tls.as_ref());
            for tls in cluster.config.tls.iter().chain(matches) {
                add(&tls.material);
            }
        }
        let table = self.traffic.listeners.load_full();
        let warming = istio_runtime::sync::lock(&self.warming).clone();
        for listener in table.by_name.values().chain(warming.iter()) {
            for chain in listener.all_chains() {
                if let Some(tls) = &chain.tls {
                    add(&tls.material);
                }
            }
        }
        materials.into_iter().collect()
    }

    /// Subscribes to the SDS secrets the clusters and listeners (serving or warming) use.
    pub(crate) fn follow_secrets(self: &Arc<Self>) {
        let wanted: std::collections::BTreeSet<_> =
            self.tls_materials().iter().flat_map(|material| material.secrets().cloned()).collect();
        self.traffic.tls.secrets.want(&wanted);
    }

    pub(crate) fn compile_clusters(&self, clusters: &[Cluster]) -> Result<Vec<upstream::CompiledCluster>, UpdateError> {
        let mut seen = HashSet::new();
        clusters
            .iter()
            .map(|cluster| {
                if !seen.insert(cluster.name.clone()) {
                    return Err(UpdateError::DuplicateName { kind: "cluster", name: cluster.name.clone() });
                }
                let config = ClusterConfig::compile(cluster)?;
                // Every TLS the cluster may use: its own, and its transport socket matches'.
                let settings: Vec<&config::cluster::UpstreamTls> =
                    config.tls.iter().chain(config.tls_matches.iter().filter_map(|m| m.tls.as_ref())).collect();
                for settings in &settings {
                    // Material from files or inline is checked now; SDS secrets when they
                    // arrive (until then the cluster's connections fail, as Envoy's do).
                    if settings.material.secrets().next().is_none() {
                        check_at_update(self.traffic.tls.client_config(settings))
                            .map_err(|source| UpdateError::ClusterTls { cluster: config.name.clone(), source })?;
                    }
                }
                let tls = (!settings.is_empty()).then(|| self.traffic.tls.clone());
                Ok((config, tls))
            })
            .collect()
    }

    /// Installs EDS assignments.
    pub(crate) fn apply_endpoints(
        &self,
        assignments: &[ClusterLoadAssignment],
        version: &str,
    ) -> Result<(), UpdateError> {
        let mut compiled = Vec::new();
        for assignment in assignments {
            let at = format!("cluster load assignment {}", assignment.cluster_name);
            compiled.push((assignment.cluster_name.clone(), config::cluster::endpoints(assignment, &at)?));
        }
        for (service, endpoints) in compiled {
            self.traffic.clusters.set_assignment(&service, endpoints);
        }
        istio_runtime::sync::lock(&self.dump).set_endpoints(assignments, version);
        Ok(())
    }

    /// Compiles and installs an LDS update, binding new addresses.
    pub(crate) async fn apply_listeners(
        self: &Arc<Self>,
        listeners: &[Listener],
        version: &str,
    ) -> Result<(), UpdateError> {
        let current = self.traffic.listeners.load_full();
        let mut compiled = Vec::new();
        let mut names = HashSet::new();
        for listener in listeners {
            if !names.insert(listener.name.clone()) {
                return Err(UpdateError::DuplicateName { kind: "listener", name: listener.name.clone() });
            }
            let previous = current.by_name.get(&listener.name).map(|previous| &**previous);
            compiled.push(Arc::new(ListenerConfig::compile_reusing(listener, previous)?));
        }
        for chain in compiled.iter().flat_map(|listener| listener.all_chains()) {
            if let Some(settings) = chain.tls.as_ref().filter(|tls| tls.material.secrets().next().is_none()) {
                check_at_update(self.traffic.tls.server_config(settings))
                    .map_err(|source| UpdateError::ChainTls { chain: chain.name.clone(), source })?;
            }
        }
        // A listener whose routes have not arrived yet warms; the previous listener of that
        // name (if any) keeps serving meanwhile.
        let routes = self.traffic.routes.load_full();
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
        chain_update::retire_dropped_chains(&current.by_name, &active);
        self.listeners.update(&self.traffic, active).await?;
        self.traffic.stats.gauge("listener_manager.total_listeners_warming").set(warming.len() as i64);
        *istio_runtime::sync::lock(&self.warming) = warming;
        istio_runtime::sync::lock(&self.dump).set_listeners(listeners, version);
        self.follow_secrets();
        Ok(())
    }

    /// Puts warming listeners whose routes have all arrived into service.
    pub(crate) async fn promote_warm_listeners(self: &Arc<Self>) -> Result<(), UpdateError> {
        let routes = self.traffic.routes.load_full();
        let warming = std::mem::take(&mut *istio_runtime::sync::lock(&self.warming));
        let (ready, still): (Vec<_>, Vec<_>) = warming
            .into_iter()
            .partition(|listener| listener.route_names().iter().all(|name| routes.contains_key(name)));
        let result = if ready.is_empty() {
            Ok(())
        } else {
            let current = self.traffic.listeners.load_full();
            let mut active: Vec<Arc<ListenerConfig>> = current
                .by_name
                .values()
                .filter(|listener| !ready.iter().any(|warm| warm.name == listener.name))
                .cloned()
                .collect();
            active.extend(ready.iter().cloned());
            chain_update::retire_dropped_chains(&current.by_name, &active);
            self.listeners.update(&self.traffic, active).await.map_err(UpdateError::from)
        };
        let mut warming = istio_runtime::sync::lock(&self.warming);
        if result.is_err() {
            warming.extend(ready);
        }
        warming.extend(still);
        self.traffic.stats.gauge("listener_manager.total_listeners_warming").set(warming.len() as i64);
        result
    }

    /// Compiles and installs RDS route configurations (by name; others stay).
    pub(crate) fn apply_routes(
        &self,
        routes: &[RouteConfiguration],
        version: &str,
        replace_all: bool,
    ) -> Result<(), UpdateError> {
        let mut compiled = Vec::new();
        for route in routes {
            compiled.push(Arc::new(RouteTable::compile(route)?));
        }
        let mut next: HashMap<String, Arc<RouteTable>> =
            if replace_all { HashMap::new() } else { (*self.traffic.routes.load_full()).clone() };
        for table in compiled {
            next.insert(table.name.clone(), table);
        }
        self.traffic.routes.store(Arc::new(next));
        istio_runtime::sync::lock(&self.dump).set_routes(routes, version, replace_all);
        Ok(())
    }

    /// Keeps only the route tables named in `wanted` (what the listeners still ask for).
    pub(crate) fn retain_routes(&self, wanted: &[String]) {
        let wanted: HashSet<&String> = wanted.iter().collect();
        let kept: HashMap<String, Arc<RouteTable>> = self
            .traffic
            .routes
            .load()
            .iter()
            .filter(|(name, _)| wanted.contains(name))
            .map(|(name, table)| (name.clone(), table.clone()))
            .collect();
        self.traffic.routes.store(Arc::new(kept));
        istio_runtime::sync::lock(&self.dump).retain_routes(|name| wanted.contains(name));
    }

    /// The RDS names the current and warming listeners need.
    pub(crate) fn route_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.traffic.listeners.load().by_name.values().flat_map(|listener| listener.route_names()).collect();
        let warming = istio_runtime::sync::lock(&self.warming);
        names.extend(warming.iter().flat_map(|listener| listener.route_names()));
        names.sort();
        names.dedup();
        names
    }

    /// Stops taking new requests: connections are asked to close after their current request.
    pub(crate) fn start_draining(&self) {
        self.set_state(ServerState::Draining);
        self.traffic.draining.send_replace(true);
    }

    /// Live once clusters, listeners, and every endpoint set, route table and SDS secret they
    /// need arrived.
    pub(crate) fn check_initialized(&self) {
        if self.state() != ServerState::PreInitializing {
            return;
        }
        let applied = |type_url: &str| self.applied(type_url);
        let secrets_ready = self.traffic.tls.secrets.missing().is_empty();
        let endpoints_ready =
            self.traffic.clusters.eds_services().iter().all(|service| self.traffic.clusters.has_assignment(service));
        let routes = self.traffic.routes.load();
        let routes_ready = self.route_names().iter().all(|name| routes.contains_key(name));
        if applied(type_url::CLUSTER) && applied(type_url::LISTENER) && endpoints_ready && routes_ready && secrets_ready
        {
            tracing::info!("initial config applied; live");
            self.set_state(ServerState::Live);
        }
    }
}
