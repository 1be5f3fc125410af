//! What one xDS resource type asks of the next: the EDS names a set of clusters subscribes to and
//! the RDS names a set of listeners fetches — the follow-up requests an xDS client sends.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::type_url;

/// EDS cluster names (the names Envoy asks EDS for) among CDS resources.
pub fn eds_cluster_names(resources: &[Any]) -> BTreeSet<String> {
    resources
        .iter()
        .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
        .filter(|cluster| {
            matches!(cluster.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32)
        })
        .map(|cluster| {
            cluster
                .eds_cluster_config
                .as_ref()
                .map(|eds| eds.service_name.clone())
                .filter(|name| !name.is_empty())
                .unwrap_or(cluster.name)
        })
        .collect()
}

/// Route configuration names that the listeners among LDS resources fetch over RDS.
pub fn rds_route_names(resources: &[Any]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for listener in resources.iter().filter_map(|any| Listener::decode(any.value.as_slice()).ok()) {
        for chain in listener.filter_chains.iter().chain(listener.default_filter_chain.iter()) {
            for filter in &chain.filters {
                let Some(filter::ConfigType::TypedConfig(config)) = &filter.config_type else {
                    continue;
                };
                if config.type_url != type_url::HTTP_CONNECTION_MANAGER {
                    continue;
                }
                if let Ok(manager) = HttpConnectionManager::decode(config.value.as_slice()) {
                    if let Some(RouteSpecifier::Rds(rds)) = manager.route_specifier {
                        names.insert(rds.route_config_name);
                    }
                }
            }
        }
    }
    names
}
