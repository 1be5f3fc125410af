//! The incremental (delta) variant of the xDS client, used when the bootstrap's `ads_config`
//! says `DELTA_GRPC`: the server sends only what changed and names what it removed; the client
//! keeps the full set per type, applies the merged set exactly as the state-of-the-world client
//! does (compiled whole, NACKed whole), subscribes to the endpoints and routes that clusters and
//! listeners name, and on reconnect tells the server the versions it already holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use istio_xds::type_url;
use tokio::sync::mpsc;

use super::ads::{apply_resources, connect_channel, update_stats, AdsTarget, StreamError};
use super::shared::Shared;

/// What the client holds of one type: every resource by name, with its version.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeltaState {
    resources: BTreeMap<String, (String, Any)>,
    /// Names subscribed to (endpoints and routes); clusters and listeners are wildcard.
    names: Vec<String>,
    applied: bool,
}

/// One delta ADS stream, until it ends.
pub(crate) async fn stream_once(
    shared: &Arc<Shared>,
    target: &AdsTarget,
    states: &mut HashMap<&'static str, DeltaState>,
) -> Result<(), StreamError> {
    let channel = connect_channel(shared, target).await?;
    let update_stats = update_stats(&shared.traffic.stats);
    let mut client = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let (sender, receiver) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    let node = Some(target.node.clone());
    for type_url in [type_url::CLUSTER, type_url::LISTENER, type_url::ENDPOINT, type_url::ROUTE] {
        let state = states.entry(type_url).or_default();
        let wildcard = type_url == type_url::CLUSTER || type_url == type_url::LISTENER;
        if !wildcard && state.names.is_empty() {
            continue;
        }
        let _ = sender.send(DeltaDiscoveryRequest {
            node: node.clone(),
            type_url: type_url.to_string(),
            resource_names_subscribe: if wildcard { Vec::new() } else { state.names.clone() },
            initial_resource_versions: state
                .resources
                .iter()
                .map(|(name, (version, _))| (name.clone(), version.clone()))
                .collect(),
            ..Default::default()
        });
    }
    let mut responses = client
        .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .map_err(StreamError::OpenDelta)?
        .into_inner();
    shared.traffic.stats.gauge("control_plane.connected_state").set(1);
    tracing::info!("delta ADS connected to {}:{}", target.host, target.port);
    while let Some(response) = responses.message().await.map_err(StreamError::Broken)? {
        let Some(type_url) = [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::ROUTE]
            .into_iter()
            .find(|known| *known == response.type_url)
        else {
            continue;
        };
        let state = states.entry(type_url).or_default();
        let merged = merge(state, &response);
        let stats = &update_stats[type_url];
        stats.attempt.inc();
        let resources: Vec<Any> = merged.values().map(|(_, any)| any.clone()).collect();
        let outcome = apply_resources(shared, type_url, &resources, &response.system_version_info).await;
        let mut ack = DeltaDiscoveryRequest {
            node: node.clone(),
            type_url: type_url.to_string(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        match outcome {
            Ok(()) => {
                state.resources = merged;
                state.applied = true;
                shared.mark_applied(type_url);
                stats.success.inc();
            }
            Err(reason) => {
                tracing::warn!("rejected a delta update of {type_url}: {reason}");
                stats.rejected.inc();
                ack.error_detail = Some(Status { code: 3, message: reason.to_string(), details: Vec::new() });
            }
        }
        let _ = sender.send(ack);
        let follow = match type_url {
            type_url::CLUSTER => Some((type_url::ENDPOINT, shared.traffic.clusters.eds_services())),
            type_url::LISTENER => Some((type_url::ROUTE, shared.route_names())),
            _ => None,
        };
        if let Some((follow_type, names)) = follow {
            let followed = states.entry(follow_type).or_default();
            let subscribe: Vec<String> = names.iter().filter(|name| !followed.names.contains(name)).cloned().collect();
            let unsubscribe: Vec<String> =
                followed.names.iter().filter(|name| !names.contains(name)).cloned().collect();
            if !subscribe.is_empty() || !unsubscribe.is_empty() {
                for name in &unsubscribe {
                    followed.resources.remove(name);
                }
                followed.names = names;
                let _ = sender.send(DeltaDiscoveryRequest {
                    node: node.clone(),
                    type_url: follow_type.to_string(),
                    resource_names_subscribe: subscribe,
                    resource_names_unsubscribe: unsubscribe,
                    ..Default::default()
                });
            }
        }
        shared.check_initialized();
    }
    Ok(())
}

/// The type's resources after a delta response: added or changed ones replaced, removed ones gone.
fn merge(state: &DeltaState, response: &DeltaDiscoveryResponse) -> BTreeMap<String, (String, Any)> {
    let mut merged = state.resources.clone();
    for resource in &response.resources {
        if let Some(any) = &resource.resource {
            merged.insert(resource.name.clone(), (resource.version.clone(), any.clone()));
        }
    }
    for name in &response.removed_resources {
        merged.remove(name);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;

    fn any(name: &str) -> Any {
        Any { type_url: type_url::CLUSTER.into(), value: name.as_bytes().to_vec() }
    }

    #[test]
    fn deltas_add_replace_and_remove() {
        let mut state = DeltaState::default();
        state.resources.insert("a".into(), ("1".into(), any("a1")));
        state.resources.insert("b".into(), ("1".into(), any("b1")));
        let response = DeltaDiscoveryResponse {
            resources: vec![
                Resource { name: "b".into(), version: "2".into(), resource: Some(any("b2")), ..Default::default() },
                Resource { name: "c".into(), version: "1".into(), resource: Some(any("c1")), ..Default::default() },
            ],
            removed_resources: vec!["a".into()],
            ..Default::default()
        };
        let merged = merge(&state, &response);
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(merged["b"].0, "2");
    }
}
