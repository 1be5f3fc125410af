//! What the state-of-the-world and delta xDS clients share: where the management server is
//! (the bootstrap's ADS cluster), a gRPC channel to it through that cluster, and applying a
//! complete set of one type's resources to the data plane.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{grpc_service, Node};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use hyper_util::rt::TokioIo;
use istio_xds::type_url;
use prost::Message;

use super::config::cluster::socket_of;
use super::shared::{Shared, UpdateError};
use super::stats::{Counter, Stats};
use super::upstream::pool::connect_to;

/// A bootstrap whose ADS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BootstrapError {
    #[error("bootstrap: ads_config needs an envoy_grpc cluster")]
    NoAdsCluster,
    #[error("bootstrap: the ADS cluster {0} is not a static cluster")]
    NotStatic(String),
    #[error("bootstrap: the ADS cluster {0} needs an endpoint")]
    NoEndpoint(String),
}

/// A response that cannot be applied; it is NACKed with this.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("resource {index} has type {actual} instead of {expected}")]
    WrongType { index: usize, actual: String, expected: String },
    #[error("resource {index}: {source}")]
    Decode { index: usize, source: prost::DecodeError },
    #[error(transparent)]
    Update(#[from] UpdateError),
}

/// A stream to a management server that could not be opened or broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("connecting: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("opening the stream: {0}")]
    Open(#[source] tonic::Status),
    #[error("opening the delta stream: {0}")]
    OpenDelta(#[source] tonic::Status),
    #[error("stream: {0}")]
    Broken(#[source] tonic::Status),
}

/// Where ADS is: the bootstrap cluster that reaches it and that cluster's address.
#[derive(Debug, Clone)]
pub(crate) struct AdsTarget {
    pub cluster: String,
    pub host: String,
    pub port: u16,
    pub node: Node,
    /// `api_type: DELTA_GRPC`: incremental xDS.
    pub delta: bool,
}

impl AdsTarget {
    pub(crate) fn from_bootstrap(bootstrap: &Bootstrap) -> Result<Option<AdsTarget>, BootstrapError> {
        let Some(ads) = bootstrap.dynamic_resources.as_ref().and_then(|dynamic| dynamic.ads_config.as_ref()) else {
            return Ok(None);
        };
        let cluster = ads
            .grpc_services
            .iter()
            .find_map(|service| match &service.target_specifier {
                Some(grpc_service::TargetSpecifier::EnvoyGrpc(envoy)) => Some(envoy.cluster_name.clone()),
                _ => None,
            })
            .ok_or(BootstrapError::NoAdsCluster)?;
        let static_cluster = bootstrap
            .static_resources
            .as_ref()
            .and_then(|resources| resources.clusters.iter().find(|candidate| candidate.name == cluster))
            .ok_or_else(|| BootstrapError::NotStatic(cluster.clone()))?;
        let (host, port) = static_cluster
            .load_assignment
            .as_ref()
            .and_then(|assignment| assignment.endpoints.first())
            .and_then(|locality| locality.lb_endpoints.first())
            .and_then(|endpoint| match &endpoint.host_identifier {
                Some(envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(endpoint)) => {
                    socket_of(endpoint.address.as_ref())
                }
                _ => None,
            })
            .ok_or_else(|| BootstrapError::NoEndpoint(cluster.clone()))?;
        let delta =
            ads.api_type == envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType::DeltaGrpc as i32;
        let mut node = bootstrap.node.clone().unwrap_or_default();
        announce_extensions(&mut node);
        Ok(Some(AdsTarget { cluster, host, port, node, delta }))
    }
}

/// The category under which the built-in null-VM Wasm plugins are announced.
pub(crate) const NULL_VM_CATEGORY: &str = "envoy.wasm.null_vm";

/// Adds the filters this data plane has and a stock Envoy lacks to the node's extensions, so
/// Pilot configures Istio 1.4's `mixer` filter for it (and `ext_authz` for an Envoy), and sends
/// it the telemetry v2 plugins' EnvoyFilter patches (a stock Envoy has no such plugins).
fn announce_extensions(node: &mut Node) {
    use envoy_types::pb::envoy::config::core::v3::Extension;
    for plugin in crate::dataplane::telemetry_v2::config::PLUGINS {
        if !node.extensions.iter().any(|extension| extension.name == plugin && extension.category == NULL_VM_CATEGORY) {
            node.extensions.push(Extension {
                name: plugin.to_string(),
                category: NULL_VM_CATEGORY.to_string(),
                ..Default::default()
            });
        }
    }
    for category in ["envoy.filters.http", "envoy.filters.network"] {
        let name = crate::dataplane::mixer::config::FILTER;
        if !node.extensions.iter().any(|extension| extension.name == name && extension.category == category) {
            node.extensions.push(Extension {
                name: name.to_string(),
                category: category.to_string(),
                ..Default::default()
            });
        }
    }
}

/// A gRPC channel to the management server through the bootstrap's xDS cluster (its connect
/// timeout and TLS), with HTTP/2 keepalive.
pub(crate) async fn connect_channel(
    shared: &Arc<Shared>,
    target: &AdsTarget,
) -> Result<tonic::transport::Channel, StreamError> {
    let connector_shared = shared.clone();
    let (cluster_name, host, port) = (target.cluster.clone(), target.host.clone(), target.port);
    let connector = tower::service_fn(move |_: http::Uri| {
        let (shared, cluster_name, host) = (connector_shared.clone(), cluster_name.clone(), host.clone());
        async move {
            let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| std::io::Error::other(format!("{host} has no IPv4 address")))?;
            let cluster = shared
                .traffic
                .clusters
                .get(&cluster_name)
                .ok_or_else(|| std::io::Error::other("the ADS cluster is gone"))?;
            connect_to(&cluster, address, cluster.config.tls.as_ref())
                .await
                .map(TokioIo::new)
                .map_err(|error| std::io::Error::other(format!("{error:?}")))
        }
    });
    // HTTP/2 keepalive notices a management server that vanished without closing the stream.
    let channel = tonic::transport::Endpoint::from_static("http://xds-grpc")
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .map_err(StreamError::Connect)?;
    Ok(channel)
}

fn stat_prefix(type_url: &str) -> &'static str {
    match type_url {
        type_url::CLUSTER => "cluster_manager.cds.",
        type_url::LISTENER => "listener_manager.lds.",
        type_url::ENDPOINT => "cluster_manager.eds.",
        _ => "http.rds.",
    }
}

/// Envoy's update stats of one resource type (`cluster_manager.cds.update_attempt`, …).
pub(crate) struct UpdateStats {
    pub attempt: Counter,
    pub success: Counter,
    pub rejected: Counter,
}

impl UpdateStats {
    pub(crate) fn new(stats: &Stats, type_url: &str) -> UpdateStats {
        let prefix = stat_prefix(type_url);
        UpdateStats {
            attempt: stats.counter(&format!("{prefix}update_attempt")),
            success: stats.counter(&format!("{prefix}update_success")),
            rejected: stats.counter(&format!("{prefix}update_rejected")),
        }
    }
}

/// The update stats of each resource type a stream follows.
pub(crate) fn update_stats(stats: &Stats) -> HashMap<&'static str, UpdateStats> {
    [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::ROUTE]
        .into_iter()
        .map(|type_url| (type_url, UpdateStats::new(stats, type_url)))
        .collect()
}

pub(crate) fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

/// Every resource of a response as `M`, which `expected` names.
pub(crate) fn decode_all<M: Message + Default>(resources: &[Any], expected: &str) -> Result<Vec<M>, ResponseError> {
    resources
        .iter()
        .enumerate()
        .map(|(index, any)| {
            if any.type_url != expected {
                return Err(ResponseError::WrongType {
                    index,
                    actual: any.type_url.clone(),
                    expected: expected.to_string(),
                });
            }
            M::decode(any.value.as_slice()).map_err(|source| ResponseError::Decode { index, source })
        })
        .collect()
}

/// Applies one state-of-the-world response.
pub(crate) async fn apply_sotw(
    shared: &Arc<Shared>,
    type_url: &str,
    response: &DiscoveryResponse,
) -> Result<(), ResponseError> {
    if type_url == type_url::ROUTE {
        // Unlike CDS and LDS, a state-of-the-world RDS response may carry only the route
        // configurations that changed (Pilot sends just those); the others stay as they are.
        let routes = decode_all::<RouteConfiguration>(&response.resources, type_url)?;
        shared.apply_routes(&routes, &response.version_info, false)?;
        return Ok(shared.promote_warm_listeners().await?);
    }
    apply_resources(shared, type_url, &response.resources, &response.version_info).await
}

/// Decodes and applies the complete set of one type's resources (a route configuration not
/// in the set is removed).
pub(crate) async fn apply_resources(
    shared: &Arc<Shared>,
    type_url: &str,
    resources: &[Any],
    version: &str,
) -> Result<(), ResponseError> {
    match type_url {
        type_url::CLUSTER => Ok(shared.apply_clusters(&decode_all::<Cluster>(resources, type_url)?, version)?),
        type_url::ENDPOINT => {
            Ok(shared.apply_endpoints(&decode_all::<ClusterLoadAssignment>(resources, type_url)?, version)?)
        }
        type_url::LISTENER => {
            Ok(shared.apply_listeners(&decode_all::<Listener>(resources, type_url)?, version).await?)
        }
        type_url::ROUTE => {
            shared.apply_routes(&decode_all::<RouteConfiguration>(resources, type_url)?, version, true)?;
            Ok(shared.promote_warm_listeners().await?)
        }
        _ => Ok(()),
    }
}
