//! Pilot as an MCP sink of Galley: subscribes to the networking collections (and the synthetic
//! ServiceEntries Galley builds from Kubernetes), ACKs every response, and turns the resources
//! into store events for the same pipeline the directory source feeds. When Galley goes away,
//! Pilot keeps serving what it last received and reconnects with backoff.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use istio_api::kinds;
use istio_api::pb::istio::mcp::v1alpha1::resource_source_client::ResourceSourceClient;
use istio_api::pb::istio::mcp::v1alpha1::{RequestResources, Resource, SinkNode};
use istio_config::object::Object;
use istio_config::store::Event;
use tokio::sync::mpsc;

/// The collections Pilot consumes.
pub fn collections() -> Vec<&'static str> {
    let mut collections: Vec<&'static str> =
        ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar", "EnvoyFilter"]
            .iter()
            .filter_map(|kind| kinds::by_name(kind))
            .map(|kind| kind.collection)
            .collect();
    collections.push(kinds::SYNTHETIC_SERVICE_ENTRIES);
    collections
}

/// The object an MCP resource stands for, or why it cannot be read.
pub fn resource_object(collection: &str, resource: &Resource) -> Result<Object, String> {
    let (kind, synthetic) = match kinds::by_collection(collection) {
        Some(kind) => (kind, false),
        None if collection == kinds::SYNTHETIC_SERVICE_ENTRIES => {
            (kinds::by_name("ServiceEntry").ok_or("ServiceEntry kind missing")?, true)
        }
        None => return Err(format!("unknown collection {collection}")),
    };
    let metadata = resource.metadata.clone().unwrap_or_default();
    let body =
        resource.body.as_ref().ok_or_else(|| format!("{collection} {}: resource without a body", metadata.name))?;
    let spec = istio_api::json::encode_bytes(istio_api::json::type_url_message(&body.type_url), &body.value)
        .map_err(|error| format!("{collection} {}: {error}", metadata.name))?;
    let (namespace, name) =
        metadata.name.split_once('/').map_or((None, metadata.name.as_str()), |(ns, name)| (Some(ns), name));
    // Synthetic entries share names with Services; keep them apart from user ServiceEntries.
    let name = if synthetic { format!("synthetic.{name}") } else { name.to_string() };
    let mut object = Object::new(&kind.api_version(), kind.kind, namespace, &name);
    object.metadata.resource_version = Some(metadata.version);
    object.metadata.labels = (!metadata.labels.is_empty()).then(|| metadata.labels.into_iter().collect());
    object.metadata.annotations =
        (!metadata.annotations.is_empty()).then(|| metadata.annotations.into_iter().collect());
    object.body.insert("spec".to_string(), spec);
    Ok(object)
}

/// Runs the sink until `events` is closed.
pub async fn run(address: String, events: mpsc::UnboundedSender<Event>) {
    let endpoint = if address.contains("://") { address.clone() } else { format!("http://{address}") };
    let wanted = collections();
    let mut held: HashMap<String, BTreeMap<String, Object>> = HashMap::new();
    let mut synced = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        if events.is_closed() {
            return;
        }
        let connected = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
            Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(5)).connect().await,
            Err(error) => {
                tracing::error!(%address, %error, "invalid MCP address");
                return;
            }
        };
        let channel = match connected {
            Ok(channel) => channel,
            Err(error) => {
                tracing::warn!(%address, %error, retry_in = ?backoff, "cannot reach Galley (MCP); serving the last config");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let (requests, receiver) = mpsc::unbounded_channel();
        let node = SinkNode { id: "pilot".to_string(), annotations: Default::default() };
        for collection in &wanted {
            let _ = requests.send(RequestResources {
                sink_node: Some(node.clone()),
                collection: collection.to_string(),
                ..Default::default()
            });
        }
        let mut stream = match ResourceSourceClient::new(channel)
            .establish_resource_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(%address, %status, "MCP stream refused; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        tracing::info!(%address, "connected to Galley (MCP)");
        backoff = Duration::from_millis(100);
        let mut answered = std::collections::HashSet::new();
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(status) => {
                    tracing::warn!(%address, %status, "lost Galley (MCP); serving the last config and reconnecting");
                    break;
                }
            };
            let mut fresh = BTreeMap::new();
            let mut error = None;
            for resource in &response.resources {
                match resource_object(&response.collection, resource) {
                    Ok(object) => {
                        fresh.insert(object.name().to_string() + "/" + object.namespace(), object);
                    }
                    Err(reason) => error = Some(reason),
                }
            }
            let collection_held = held.entry(response.collection.clone()).or_default();
            if response.incremental {
                // Pilot asks for full state; a server that sends increments anyway is merged.
                for name in &response.removed_resources {
                    collection_held.retain(|_, object| resource_key(object) != *name);
                }
                let mut merged = collection_held.clone();
                merged.extend(fresh);
                fresh = merged;
            }
            for (key, old) in collection_held.iter() {
                if !fresh.contains_key(key) {
                    let _ = events.send(Event::Deleted(old.clone()));
                }
            }
            for (key, object) in &fresh {
                match collection_held.get(key) {
                    None => {
                        let _ = events.send(Event::Added(object.clone()));
                    }
                    Some(old) if old.resource_version() != object.resource_version() => {
                        let _ = events.send(Event::Modified(object.clone()));
                    }
                    Some(_) => {}
                }
            }
            *collection_held = fresh;
            let nack = error.map(|message| {
                tracing::warn!(collection = %response.collection, %message, "rejecting MCP resources (NACK)");
                istio_api::pb::google::rpc::Status { code: 3, message, details: Vec::new() }
            });
            let _ = requests.send(RequestResources {
                sink_node: Some(node.clone()),
                collection: response.collection.clone(),
                response_nonce: response.nonce.clone(),
                error_detail: nack,
                ..Default::default()
            });
            answered.insert(response.collection.clone());
            if !synced && wanted.iter().all(|collection| answered.contains(*collection)) {
                synced = true;
                let _ = events.send(Event::Synced);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

fn resource_key(object: &Object) -> String {
    let name = object.name().strip_prefix("synthetic.").unwrap_or(object.name());
    if object.namespace().is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", object.namespace())
    }
}
