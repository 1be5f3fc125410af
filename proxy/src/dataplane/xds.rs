//! The xDS client: one ADS stream (state of the world) to the management server the bootstrap
//! names. It asks for clusters and listeners, then for the endpoints of EDS clusters and the
//! routes the listeners name, applies each response and ACKs it — or NACKs it with the reason
//! while the last good config keeps serving. When the stream breaks it reconnects with
//! backoff, announcing the versions it has; traffic keeps flowing on the config it holds.

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
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use hyper_util::rt::TokioIo;
use istio_xds::type_url;
use prost::Message;
use tokio::sync::mpsc;

use super::config::cluster::socket_of;
use super::upstream::pool::connect;
use super::{ServerState, Shared};

/// How long the data plane waits for its first config before declaring itself live anyway
/// (Envoy's initial fetch timeout).
const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Where ADS is: the bootstrap cluster that reaches it and that cluster's address.
#[derive(Debug, Clone)]
pub struct AdsTarget {
    pub cluster: String,
    pub host: String,
    pub port: u16,
    pub node: Node,
    /// `api_type: DELTA_GRPC`: incremental xDS.
    pub delta: bool,
}

impl AdsTarget {
    pub fn from_bootstrap(bootstrap: &Bootstrap) -> anyhow::Result<Option<AdsTarget>> {
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
            .ok_or_else(|| anyhow::anyhow!("bootstrap: ads_config needs an envoy_grpc cluster"))?;
        let static_cluster = bootstrap
            .static_resources
            .as_ref()
            .and_then(|resources| resources.clusters.iter().find(|candidate| candidate.name == cluster))
            .ok_or_else(|| anyhow::anyhow!("bootstrap: the ADS cluster {cluster} is not a static cluster"))?;
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
            .ok_or_else(|| anyhow::anyhow!("bootstrap: the ADS cluster {cluster} needs an endpoint"))?;
        let delta =
            ads.api_type == envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType::DeltaGrpc as i32;
        Ok(Some(AdsTarget { cluster, host, port, node: bootstrap.node.clone().unwrap_or_default(), delta }))
    }
}

/// What the client tracks per resource type.
#[derive(Debug, Default, Clone)]
struct Subscription {
    /// The last version applied.
    version: String,
    /// The nonce of the last response.
    nonce: String,
    /// Requested resource names (empty: all, for CDS and LDS).
    names: Vec<String>,
    /// A response was applied at least once.
    applied: bool,
}

/// Runs ADS for as long as the data plane lives.
pub async fn run(shared: Arc<Shared>, target: AdsTarget) {
    let mut subscriptions: HashMap<&'static str, Subscription> = HashMap::new();
    let mut delta_states: HashMap<&'static str, super::xds_delta::DeltaState> = HashMap::new();
    let live_after_timeout = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(INITIAL_FETCH_TIMEOUT).await;
        if live_after_timeout.state() == ServerState::PreInitializing {
            tracing::warn!(
                "no complete config from the management server within {INITIAL_FETCH_TIMEOUT:?}; serving anyway"
            );
            live_after_timeout.set_state(ServerState::Live);
        }
    });
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = if target.delta {
            super::xds_delta::stream_once(&shared, &target, &mut delta_states).await
        } else {
            stream_once(&shared, &target, &mut subscriptions).await
        };
        match outcome {
            Ok(()) => tracing::warn!("the ADS stream to {}:{} closed", target.host, target.port),
            Err(error) => tracing::warn!("ADS to {}:{}: {error}", target.host, target.port),
        }
        shared.stats.gauge("control_plane.connected_state").set(0);
        let jitter = Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A gRPC channel to the management server through the bootstrap's xDS cluster (its connect
/// timeout and TLS), with HTTP/2 keepalive.
pub async fn connect_channel(shared: &Arc<Shared>, target: &AdsTarget) -> Result<tonic::transport::Channel, String> {
    let connector_shared = shared.clone();
    let (cluster_name, host, port) = (target.cluster.clone(), target.host.clone(), target.port);
    let connector = tower::service_fn(move |_: http::Uri| {
        let (shared, cluster_name, host) = (connector_shared.clone(), cluster_name.clone(), host.clone());
        async move {
            let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| std::io::Error::other(format!("{host} has no IPv4 address")))?;
            let cluster =
                shared.clusters.get(&cluster_name).ok_or_else(|| std::io::Error::other("the ADS cluster is gone"))?;
            connect(&cluster, address)
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
        .map_err(|error| format!("connecting: {error}"))?;
    Ok(channel)
}

async fn stream_once(
    shared: &Arc<Shared>,
    target: &AdsTarget,
    subscriptions: &mut HashMap<&'static str, Subscription>,
) -> Result<(), String> {
    let channel = connect_channel(shared, target).await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let (sender, receiver) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let request = |type_url: &str, subscription: &Subscription, error: Option<String>| DiscoveryRequest {
        version_info: subscription.version.clone(),
        node: Some(target.node.clone()),
        resource_names: subscription.names.clone(),
        type_url: type_url.to_string(),
        response_nonce: subscription.nonce.clone(),
        error_detail: error.map(|message| Status { code: 3, message, details: Vec::new() }),
        ..Default::default()
    };
    // (Re)subscribe: clusters and listeners always; endpoints and routes when names are known.
    for type_url in [type_url::CLUSTER, type_url::LISTENER, type_url::ENDPOINT, type_url::ROUTE] {
        let subscription = subscriptions.entry(type_url).or_default();
        subscription.nonce.clear();
        let wildcard = type_url == type_url::CLUSTER || type_url == type_url::LISTENER;
        if wildcard || !subscription.names.is_empty() {
            let _ = sender.send(request(type_url, subscription, None));
        }
    }
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .map_err(|status| format!("opening the stream: {status}"))?
        .into_inner();
    shared.stats.gauge("control_plane.connected_state").set(1);
    tracing::info!("ADS connected to {}:{}", target.host, target.port);
    while let Some(response) = responses.message().await.map_err(|status| format!("stream: {status}"))? {
        let Some(type_url) = [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::ROUTE]
            .into_iter()
            .find(|known| *known == response.type_url)
        else {
            tracing::debug!("ignoring a response of unknown type {}", response.type_url);
            continue;
        };
        let outcome = apply_sotw(shared, type_url, &response).await;
        let subscription = subscriptions.entry(type_url).or_default();
        subscription.nonce = response.nonce.clone();
        let stat = stat_prefix(type_url);
        shared.stats.counter(&format!("{stat}update_attempt")).inc();
        match outcome {
            Ok(()) => {
                subscription.version = response.version_info.clone();
                subscription.applied = true;
                shared.mark_applied(type_url);
                shared.stats.counter(&format!("{stat}update_success")).inc();
                let _ = sender.send(request(type_url, subscription, None));
            }
            Err(reason) => {
                tracing::warn!("rejected {} version {}: {reason}", short(type_url), response.version_info);
                shared.stats.counter(&format!("{stat}update_rejected")).inc();
                let _ = sender.send(request(type_url, subscription, Some(reason)));
            }
        }
        // Follow clusters to their endpoints and listeners to their routes.
        let follow = match type_url {
            type_url::CLUSTER => Some((type_url::ENDPOINT, shared.clusters.eds_services())),
            type_url::LISTENER => Some((type_url::ROUTE, shared.route_names())),
            _ => None,
        };
        if let Some((follow_type, names)) = follow {
            let subscription = subscriptions.entry(follow_type).or_default();
            if subscription.names != names {
                subscription.names = names;
                if follow_type == type_url::ROUTE {
                    // Drop route tables no listener asks for any more.
                    shared.retain_routes(&subscription.names);
                }
                let _ = sender.send(request(follow_type, subscription, None));
            }
        }
        check_initialized(shared);
    }
    Ok(())
}

/// Live once clusters, listeners, and every endpoint set, route table and SDS secret they
/// need arrived.
pub fn check_initialized(shared: &Shared) {
    if shared.state() != ServerState::PreInitializing {
        return;
    }
    let applied = |type_url: &str| shared.applied(type_url);
    let secrets_ready = shared.tls.secrets.missing().is_empty();
    let endpoints_ready = shared.clusters.eds_services().iter().all(|service| shared.clusters.has_assignment(service));
    let routes = shared.routes.load();
    let routes_ready = shared.route_names().iter().all(|name| routes.contains_key(name));
    if applied(type_url::CLUSTER) && applied(type_url::LISTENER) && endpoints_ready && routes_ready && secrets_ready {
        tracing::info!("initial config applied; live");
        shared.set_state(ServerState::Live);
    }
}

pub fn stat_prefix(type_url: &str) -> &'static str {
    match type_url {
        type_url::CLUSTER => "cluster_manager.cds.",
        type_url::LISTENER => "listener_manager.lds.",
        type_url::ENDPOINT => "cluster_manager.eds.",
        _ => "http.rds.",
    }
}

fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

fn decode_all<M: Message + Default>(resources: &[Any], expected: &str) -> Result<Vec<M>, String> {
    resources
        .iter()
        .enumerate()
        .map(|(index, any)| {
            if any.type_url != expected {
                return Err(format!("resource {index} has type {} instead of {expected}", any.type_url));
            }
            M::decode(any.value.as_slice()).map_err(|error| format!("resource {index}: {error}"))
        })
        .collect()
}

/// Applies one state-of-the-world response.
pub async fn apply_sotw(shared: &Arc<Shared>, type_url: &str, response: &DiscoveryResponse) -> Result<(), String> {
    if type_url == type_url::ROUTE {
        // Unlike CDS and LDS, a state-of-the-world RDS response may carry only the route
        // configurations that changed (Pilot sends just those); the others stay as they are.
        let routes = decode_all::<RouteConfiguration>(&response.resources, type_url)?;
        shared.apply_routes(&routes, &response.version_info, false)?;
        return shared.promote_warm_listeners().await;
    }
    apply_resources(shared, type_url, &response.resources, &response.version_info).await
}

/// Decodes and applies the complete set of one type's resources (a route configuration not
/// in the set is removed).
pub async fn apply_resources(
    shared: &Arc<Shared>,
    type_url: &str,
    resources: &[Any],
    version: &str,
) -> Result<(), String> {
    match type_url {
        type_url::CLUSTER => shared.apply_clusters(&decode_all::<Cluster>(resources, type_url)?, version),
        type_url::ENDPOINT => {
            shared.apply_endpoints(&decode_all::<ClusterLoadAssignment>(resources, type_url)?, version)
        }
        type_url::LISTENER => shared.apply_listeners(&decode_all::<Listener>(resources, type_url)?, version).await,
        type_url::ROUTE => {
            shared.apply_routes(&decode_all::<RouteConfiguration>(resources, type_url)?, version, true)?;
            shared.promote_warm_listeners().await
        }
        _ => Ok(()),
    }
}
