//! What `/config_dump` shows: every resource as it arrived (static or dynamic, with the
//! version it came in and when), rendered in the shape of Envoy's admin `ConfigDump` so tools
//! written for Envoy (`istioctl proxy-config`) read it unchanged.

use std::collections::BTreeMap;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use serde_json::{json, Value};

/// One resource as it arrived (encoded, with its message name), the version it came in and
/// when. It is kept encoded — a fraction of the size of its JSON tree — and rendered only when
/// `/config_dump` is read.
#[derive(Debug, Clone)]
struct Entry {
    type_name: String,
    encoded: Vec<u8>,
    version: String,
    updated: SystemTime,
}

impl Entry {
    fn json(&self) -> Value {
        istio_xds::json::to_json(&self.type_name, &self.encoded)
            .unwrap_or_else(|error| json!({"error": error.to_string()}))
    }
}

#[derive(Debug, Default)]
pub(crate) struct ConfigDump {
    static_clusters: Vec<Entry>,
    static_listeners: Vec<Entry>,
    clusters: BTreeMap<String, Entry>,
    endpoints: BTreeMap<String, Entry>,
    listeners: BTreeMap<String, Entry>,
    routes: BTreeMap<String, Entry>,
    /// SDS secrets, private keys redacted.
    secrets: BTreeMap<String, Entry>,
    cds_version: String,
    lds_version: String,
}

fn entry<M: prost::Name>(message: &M, version: &str) -> Entry {
    Entry {
        type_name: M::full_name(),
        encoded: message.encode_to_vec(),
        version: version.to_string(),
        updated: SystemTime::now(),
    }
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl ConfigDump {
    pub(crate) fn set_static(&mut self, clusters: &[Cluster], listeners: &[Listener]) {
        self.static_clusters = clusters.iter().map(|cluster| entry(cluster, "")).collect();
        self.static_listeners = listeners.iter().map(|listener| entry(listener, "")).collect();
    }

    pub(crate) fn set_clusters(&mut self, clusters: &[Cluster], version: &str) {
        self.cds_version = version.to_string();
        self.clusters = clusters.iter().map(|cluster| (cluster.name.clone(), entry(cluster, version))).collect();
        let names: std::collections::HashSet<&String> = self.clusters.keys().collect();
        self.endpoints.retain(|name, _| names.contains(name));
    }

    pub(crate) fn set_endpoints(&mut self, assignments: &[ClusterLoadAssignment], version: &str) {
        for assignment in assignments {
            self.endpoints.insert(assignment.cluster_name.clone(), entry(assignment, version));
        }
    }

    pub(crate) fn set_listeners(&mut self, listeners: &[Listener], version: &str) {
        self.lds_version = version.to_string();
        self.listeners = listeners.iter().map(|listener| (listener.name.clone(), entry(listener, version))).collect();
    }

    pub(crate) fn set_routes(&mut self, routes: &[RouteConfiguration], version: &str, replace_all: bool) {
        if replace_all {
            self.routes.clear();
        }
        for route in routes {
            self.routes.insert(route.name.clone(), entry(route, version));
        }
    }

    pub(crate) fn set_secret(&mut self, secret: &Secret, version: &str) {
        self.secrets.insert(secret.name.clone(), entry(secret, version));
    }

    /// Forgets the route configurations `keep` says no.
    pub(crate) fn retain_routes(&mut self, keep: impl Fn(&String) -> bool) {
        self.routes.retain(|name, _| keep(name));
    }

    /// The whole dump: `{"configs": [...]}` with Envoy's admin message types. With `resource`
    /// (e.g. `dynamic_route_configs`) only those entries, each typed, as Envoy does.
    pub(crate) fn render(&self, bootstrap: Value, resource: Option<&str>, include_eds: bool) -> Value {
        let dynamic_clusters: Vec<Value> = self
            .clusters
            .values()
            .map(|e| json!({"version_info": e.version, "cluster": e.json(), "last_updated": timestamp(e.updated)}))
            .collect();
        let static_clusters: Vec<Value> = self
            .static_clusters
            .iter()
            .map(|e| json!({"cluster": e.json(), "last_updated": timestamp(e.updated)}))
            .collect();
        let dynamic_listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|(name, e)| {
                json!({"name": name, "active_state": {"version_info": e.version, "listener": e.json(), "last_updated": timestamp(e.updated)}})
            })
            .collect();
        let static_listeners: Vec<Value> = self
            .static_listeners
            .iter()
            .map(|e| json!({"listener": e.json(), "last_updated": timestamp(e.updated)}))
            .collect();
        let dynamic_routes: Vec<Value> = self
            .routes
            .values()
            .map(|e| json!({"version_info": e.version, "route_config": e.json(), "last_updated": timestamp(e.updated)}))
            .collect();
        let dynamic_endpoints: Vec<Value> = self
            .endpoints
            .values()
            .map(
                |e| json!({"version_info": e.version, "endpoint_config": e.json(), "last_updated": timestamp(e.updated)}),
            )
            .collect();
        let dynamic_secrets: Vec<Value> = self
            .secrets
            .iter()
            .map(|(name, e)| {
                json!({"name": name, "version_info": e.version, "last_updated": timestamp(e.updated), "secret": e.json()})
            })
            .collect();
        let admin = "type.googleapis.com/envoy.admin.v3.";
        if let Some(resource) = resource {
            let (items, kind) = match resource {
                "dynamic_active_clusters" => (dynamic_clusters, "ClustersConfigDump.DynamicCluster"),
                "static_clusters" => (static_clusters, "ClustersConfigDump.StaticCluster"),
                "dynamic_listeners" => (dynamic_listeners, "ListenersConfigDump.DynamicListener"),
                "static_listeners" => (static_listeners, "ListenersConfigDump.StaticListener"),
                "dynamic_route_configs" => (dynamic_routes, "RoutesConfigDump.DynamicRouteConfig"),
                "dynamic_endpoint_configs" => (dynamic_endpoints, "EndpointsConfigDump.DynamicEndpointConfig"),
                "dynamic_active_secrets" => (dynamic_secrets, "SecretsConfigDump.DynamicSecret"),
                _ => (Vec::new(), ""),
            };
            let typed: Vec<Value> = items
                .into_iter()
                .map(|mut item| {
                    if let Value::Object(map) = &mut item {
                        map.insert("@type".into(), json!(format!("{admin}{kind}")));
                    }
                    item
                })
                .collect();
            return json!({"configs": typed});
        }
        let mut configs = vec![
            json!({"@type": format!("{admin}BootstrapConfigDump"), "bootstrap": bootstrap}),
            json!({"@type": format!("{admin}ClustersConfigDump"), "version_info": self.cds_version,
                   "static_clusters": static_clusters, "dynamic_active_clusters": dynamic_clusters}),
            json!({"@type": format!("{admin}ListenersConfigDump"), "version_info": self.lds_version,
                   "static_listeners": static_listeners, "dynamic_listeners": dynamic_listeners}),
            json!({"@type": format!("{admin}RoutesConfigDump"), "dynamic_route_configs": dynamic_routes}),
            json!({"@type": format!("{admin}SecretsConfigDump"), "dynamic_active_secrets": dynamic_secrets}),
        ];
        if include_eds {
            configs.insert(
                2,
                json!({"@type": format!("{admin}EndpointsConfigDump"), "dynamic_endpoint_configs": dynamic_endpoints}),
            );
        }
        json!({"configs": configs})
    }
}

/// Runs `work` — which reads or renders Envoy's API through its descriptors (several MB) — on a
/// thread of its own, then frees the descriptors and hands the freed pages back to the system,
/// so a proxy that idles holds only its compiled config. `work`'s result is copied out to the
/// caller's heap.
pub(crate) fn with_descriptors<T: Clone + Send>(work: impl FnOnce() -> T + Send) -> T {
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
    let copy = result.clone();
    drop(result);
    return_free_memory();
    copy
}

/// Hands the allocator's free pages back to the system. glibc keeps what a thread freed in that
/// thread's arena, which the next thread reuses; the decoded descriptors leave about 2.5 MB
/// there, resident until something is allocated over it, unless it is trimmed.
#[allow(unsafe_code)]
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
