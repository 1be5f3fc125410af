//! The xDS client: one ADS stream (state of the world) to the management server the bootstrap
//! names. It asks for clusters and listeners, then for the endpoints of EDS clusters and the
//! routes the listeners name, applies each response and ACKs it — or NACKs it with the reason
//! while the last good config keeps serving. When the stream breaks it reconnects with
//! backoff, announcing the versions it has; traffic keeps flowing on the config it holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use istio_xds::type_url;
use tokio::sync::mpsc;

use super::ads::{apply_sotw, connect_channel, short, update_stats, AdsTarget, StreamError};
use super::shared::{ServerState, Shared};

/// How long the data plane waits for its first config before declaring itself live anyway
/// (Envoy's initial fetch timeout).
const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

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
pub(crate) async fn run(shared: Arc<Shared>, target: AdsTarget) {
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
    let mut backoff = istio_runtime::backoff::Backoff::reconnect();
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
        shared.traffic.stats.gauge("control_plane.connected_state").set(0);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn stream_once(
    shared: &Arc<Shared>,
    target: &AdsTarget,
    subscriptions: &mut HashMap<&'static str, Subscription>,
) -> Result<(), StreamError> {
    let channel = connect_channel(shared, target).await?;
    let update_stats = update_stats(&shared.traffic.stats);
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
        .map_err(StreamError::Open)?
        .into_inner();
    shared.traffic.stats.gauge("control_plane.connected_state").set(1);
    tracing::info!("ADS connected to {}:{}", target.host, target.port);
    while let Some(response) = responses.message().await.map_err(StreamError::Broken)? {
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
        let stats = &update_stats[type_url];
        stats.attempt.inc();
        match outcome {
            Ok(()) => {
                subscription.version = response.version_info.clone();
                subscription.applied = true;
                shared.mark_applied(type_url);
                stats.success.inc();
                let _ = sender.send(request(type_url, subscription, None));
            }
            Err(reason) => {
                tracing::warn!("rejected {} version {}: {reason}", short(type_url), response.version_info);
                stats.rejected.inc();
                let _ = sender.send(request(type_url, subscription, Some(reason.to_string())));
            }
        }
        // Follow clusters to their endpoints and listeners to their routes.
        let follow = match type_url {
            type_url::CLUSTER => Some((type_url::ENDPOINT, shared.traffic.clusters.eds_services())),
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
        shared.check_initialized();
    }
    Ok(())
}
