//! The MCP sink (client) side: subscribe to collections on a source, answer each response with
//! an ACK or a NACK, and keep the subscription alive.
//!
//! - [`SinkStream`] is one stream: open it, read responses, ACK or NACK them (`istioctl x mcp`
//!   drives it directly, with its own timeouts).
//! - [`run`] keeps a subscription open for as long as its [`Sink`] wants updates, reconnecting
//!   with backoff when the source goes away; the sink keeps what it last received meanwhile.
//! - [`ObjectCollections`] turns full-state or incremental responses into object changes
//!   (added, modified, removed), the shape Pilot's and Mixer's config pipelines consume.
//!
//! What a component does with the objects is its own affair.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use istio_api::pb::istio::mcp::v1alpha1::resource_source_client::ResourceSourceClient;
use istio_api::pb::istio::mcp::v1alpha1::{RequestResources, Resources, SinkNode};
use istio_config::object::Object;
use istio_runtime::backoff::Backoff;
use istio_runtime::metrics::ExactCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use crate::resource::{resource_object, ResourceError};
use crate::source::{message_size_histogram, ComponentLabel, FailureLabels, McpLabels, NackLabels};

/// The sink side's metrics, named and labelled as 1.4's MCP reporter with the consuming
/// component (`pilot`, `mixer`): ACKs and NACKs sent, sizes of the responses received, failed
/// receives and sends, and `istio_mcp_reconnections`, each stream opened.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    component: &'static str,
    pub acks: Family<McpLabels, Counter>,
    pub nacks: Family<NackLabels, Counter>,
    pub message_sizes: Family<McpLabels, Histogram, fn() -> Histogram>,
    pub recv_failures: Family<FailureLabels, Counter>,
    pub send_failures: Family<FailureLabels, Counter>,
    pub reconnections: Family<ComponentLabel, ExactCounter>,
}

impl SinkMetrics {
    /// Unregistered metrics for `component` (tests, tools).
    pub fn new(component: &'static str) -> SinkMetrics {
        SinkMetrics {
            component,
            acks: Family::default(),
            nacks: Family::default(),
            message_sizes: Family::new_with_constructor(message_size_histogram),
            recv_failures: Family::default(),
            send_failures: Family::default(),
            reconnections: Family::default(),
        }
    }

    /// Metrics for `component`, registered in `registry` under 1.4's names.
    pub fn register(registry: &mut prometheus_client::registry::Registry, component: &'static str) -> SinkMetrics {
        let metrics = SinkMetrics::new(component);
        registry.register(
            "istio_mcp_request_acks",
            "The number of request acks sent by the sink",
            metrics.acks.clone(),
        );
        registry.register(
            "istio_mcp_request_nacks",
            "The number of request nacks sent by the sink",
            metrics.nacks.clone(),
        );
        registry.register(
            "istio_mcp_message_sizes_bytes",
            "Size of sent and received messages",
            metrics.message_sizes.clone(),
        );
        registry.register(
            "istio_mcp_recv_failures",
            "The number of recv failures in the sink",
            metrics.recv_failures.clone(),
        );
        registry.register(
            "istio_mcp_send_failures",
            "The number of send failures in the sink",
            metrics.send_failures.clone(),
        );
        registry.register(
            "istio_mcp_reconnections",
            "The number of times the sink has reconnected",
            metrics.reconnections.clone(),
        );
        metrics
    }

    fn collection(&self, collection: &str) -> McpLabels {
        McpLabels { collection: collection.to_string(), component: self.component }
    }

    fn failure(&self, status: &tonic::Status) -> FailureLabels {
        FailureLabels {
            component: self.component,
            code: istio_runtime::grpc_metrics::go_code_name(status.code() as i32),
            error: status.message().to_string(),
        }
    }
}

/// What a sink asks a source for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The sink's id (`SinkNode.id`), as the source logs it.
    pub sink_id: String,
    pub collections: Vec<String>,
    /// Ask for only what changed since the last accepted response.
    pub incremental: bool,
}

/// Why a stream could not be opened or broke.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid MCP address {address:?}: {source}")]
    Address { address: String, source: tonic::transport::Error },
    #[error("cannot connect to the MCP source at {address}: {source}")]
    Connect { address: String, source: tonic::transport::Error },
    #[error("MCP stream to {address}: {status}")]
    Stream { address: String, status: tonic::Status },
    #[error("MCP stream to {address} closed")]
    Closed { address: String },
}

/// `HOST:PORT` as a URI (`http://` unless a scheme is given).
pub fn endpoint_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// One open subscription stream.
pub struct SinkStream {
    address: String,
    node: SinkNode,
    incremental: bool,
    requests: mpsc::UnboundedSender<RequestResources>,
    responses: tonic::Streaming<Resources>,
}

impl SinkStream {
    /// Connects to `address` and subscribes to every collection of `subscription`.
    pub async fn open(
        address: &str,
        connect_timeout: Duration,
        subscription: &Subscription,
    ) -> Result<SinkStream, SinkError> {
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint_uri(address))
            .map_err(|source| SinkError::Address { address: address.to_string(), source })?;
        let channel = endpoint
            .connect_timeout(connect_timeout)
            .connect()
            .await
            .map_err(|source| SinkError::Connect { address: address.to_string(), source })?;
        let node = SinkNode { id: subscription.sink_id.clone(), annotations: Default::default() };
        let (requests, receiver) = mpsc::unbounded_channel();
        for collection in &subscription.collections {
            // The receiver is alive until the stream is dropped below on error.
            let _ = requests.send(RequestResources {
                sink_node: Some(node.clone()),
                collection: collection.clone(),
                incremental: subscription.incremental,
                ..Default::default()
            });
        }
        let responses = ResourceSourceClient::new(channel)
            .establish_resource_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
            .await
            .map_err(|status| SinkError::Stream { address: address.to_string(), status })?
            .into_inner();
        Ok(SinkStream {
            address: address.to_string(),
            node,
            incremental: subscription.incremental,
            requests,
            responses,
        })
    }

    /// The next response; `None` when the source ends the stream.
    pub async fn next(&mut self) -> Result<Option<Resources>, SinkError> {
        self.responses.message().await.map_err(|status| SinkError::Stream { address: self.address.clone(), status })
    }

    /// Accepts `response`.
    pub fn ack(&self, response: &Resources) -> Result<(), SinkError> {
        self.answer(response, None)
    }

    /// Rejects `response`, telling the source why.
    pub fn nack(&self, response: &Resources, message: String) -> Result<(), SinkError> {
        let status = istio_api::pb::google::rpc::Status {
            code: tonic::Code::InvalidArgument as i32,
            message,
            details: Vec::new(),
        };
        self.answer(response, Some(status))
    }

    fn answer(
        &self,
        response: &Resources,
        error_detail: Option<istio_api::pb::google::rpc::Status>,
    ) -> Result<(), SinkError> {
        self.requests
            .send(RequestResources {
                sink_node: Some(self.node.clone()),
                collection: response.collection.clone(),
                response_nonce: response.nonce.clone(),
                incremental: self.incremental,
                error_detail,
                ..Default::default()
            })
            .map_err(|_| SinkError::Closed { address: self.address.clone() })
    }
}

/// Why a sink rejects (NACKs) a response: the resources it could not read.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Rejected(pub Vec<ResourceError>);

/// A consumer of MCP responses for [`run`].
pub trait Sink: Send {
    /// Takes in one response; an error NACKs it with its message (whatever of it was usable
    /// may still have been taken in).
    fn apply(&mut self, response: &Resources) -> Result<(), Rejected>;

    /// Whether updates are still wanted; [`run`] returns once they are not.
    fn wants_updates(&self) -> bool {
        true
    }
}

/// How long to wait for a connection before backing off and trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps `subscription` open on `address` while `sink` wants updates: each response goes to the
/// sink and is ACKed or NACKed; a lost source is retried with backoff while the sink keeps what
/// it has.
pub async fn run(address: String, subscription: Subscription, mut sink: impl Sink, metrics: SinkMetrics) {
    let mut backoff = Backoff::reconnect();
    while sink.wants_updates() {
        let mut stream = match SinkStream::open(&address, CONNECT_TIMEOUT, &subscription).await {
            Ok(stream) => stream,
            Err(error @ SinkError::Address { .. }) => {
                tracing::error!(%error, "not subscribing");
                return;
            }
            Err(error) => {
                let retry_in = backoff.next_delay();
                tracing::warn!(%error, ?retry_in, "cannot reach the MCP source; serving the last config");
                tokio::time::sleep(retry_in).await;
                continue;
            }
        };
        tracing::info!(%address, sink = %subscription.sink_id, "connected to the MCP source");
        metrics.reconnections.get_or_create(&ComponentLabel { component: metrics.component }).inc();
        backoff.reset();
        loop {
            let response = match stream.next().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(error) => {
                    if let SinkError::Stream { status, .. } = &error {
                        metrics.recv_failures.get_or_create(&metrics.failure(status)).inc();
                    }
                    tracing::warn!(%error, "lost the MCP source; serving the last config and reconnecting");
                    break;
                }
            };
            let collection = metrics.collection(&response.collection);
            let size = prost::Message::encoded_len(&response);
            metrics.message_sizes.get_or_create(&collection).observe(size as f64);
            let answered = match sink.apply(&response) {
                Ok(()) => {
                    metrics.acks.get_or_create(&collection).inc();
                    stream.ack(&response)
                }
                Err(rejected) => {
                    let message = rejected.to_string();
                    tracing::warn!(collection = %response.collection, %message, "rejecting MCP resources (NACK)");
                    let code = istio_runtime::grpc_metrics::go_code_name(tonic::Code::InvalidArgument as i32);
                    let labels =
                        NackLabels { collection: collection.collection.clone(), component: metrics.component, code };
                    metrics.nacks.get_or_create(&labels).inc();
                    stream.nack(&response, message)
                }
            };
            if answered.is_err() {
                let closed = tonic::Status::unavailable("transport is closing");
                metrics.send_failures.get_or_create(&metrics.failure(&closed)).inc();
                break;
            }
            if !sink.wants_updates() {
                break;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// A change to the objects a sink holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectChange {
    Added(Object),
    Modified(Object),
    Removed(Object),
}

/// The objects a sink holds, by collection and resource name, with their versions.
#[derive(Debug, Default)]
pub struct ObjectCollections {
    held: HashMap<String, BTreeMap<String, Object>>,
}

/// What a response changed, and the resources in it that could not be read.
#[derive(Debug, Default)]
pub struct AppliedResponse {
    pub changes: Vec<ObjectChange>,
    pub errors: Vec<ResourceError>,
}

impl AppliedResponse {
    /// Accepted when every resource could be read, else rejected with the ones that could not.
    pub fn outcome(self) -> Result<(), Rejected> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Rejected(self.errors))
        }
    }
}

impl ObjectCollections {
    /// Applies a response: a full-state one replaces the collection, an incremental one adds,
    /// replaces and removes what it names. Unreadable resources are left out and reported.
    pub fn apply(&mut self, response: &Resources) -> AppliedResponse {
        let mut applied = AppliedResponse::default();
        let mut fresh = BTreeMap::new();
        for resource in &response.resources {
            let name = resource.metadata.as_ref().map(|metadata| metadata.name.clone()).unwrap_or_default();
            match resource_object(&response.collection, resource) {
                Ok(object) => {
                    fresh.insert(name, object);
                }
                Err(error) => applied.errors.push(error),
            }
        }
        let held = self.held.entry(response.collection.clone()).or_default();
        if response.incremental {
            let mut merged = held.clone();
            for name in &response.removed_resources {
                merged.remove(name);
            }
            merged.extend(fresh);
            fresh = merged;
        }
        for (name, old) in held.iter() {
            if !fresh.contains_key(name) {
                applied.changes.push(ObjectChange::Removed(old.clone()));
            }
        }
        for (name, object) in &fresh {
            match held.get(name) {
                None => applied.changes.push(ObjectChange::Added(object.clone())),
                Some(old) if old.resource_version() != object.resource_version() => {
                    applied.changes.push(ObjectChange::Modified(object.clone()))
                }
                Some(_) => {}
            }
        }
        *held = fresh;
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::istio_resource;
    use istio_api::pb::istio::mcp::v1alpha1::Resource;

    const VIRTUAL_SERVICES: &str = "istio/networking/v1alpha3/virtualservices";

    fn resource(name: &str, version: &str) -> Resource {
        let mut object = Object::new("networking.istio.io/v1alpha3", "VirtualService", Some("default"), name);
        object.metadata.resource_version = Some(version.to_string());
        object.body.insert("spec".into(), serde_json::json!({"hosts": [name]}));
        istio_resource(object.istio_kind().expect("kind"), &object).expect("resource")
    }

    fn response(resources: Vec<Resource>, removed: &[&str], incremental: bool) -> Resources {
        Resources {
            collection: VIRTUAL_SERVICES.to_string(),
            resources,
            removed_resources: removed.iter().map(|name| name.to_string()).collect(),
            incremental,
            ..Default::default()
        }
    }

    fn summary(applied: &AppliedResponse) -> Vec<String> {
        applied
            .changes
            .iter()
            .map(|change| match change {
                ObjectChange::Added(object) => format!("+{}@{}", object.name(), object.resource_version()),
                ObjectChange::Modified(object) => format!("~{}@{}", object.name(), object.resource_version()),
                ObjectChange::Removed(object) => format!("-{}", object.name()),
            })
            .collect()
    }

    #[test]
    fn full_state_and_incremental_responses_become_changes() {
        assert_eq!(kinds_collection(), VIRTUAL_SERVICES);
        let mut held = ObjectCollections::default();
        let applied = held.apply(&response(vec![resource("a", "1"), resource("b", "1")], &[], false));
        assert_eq!(summary(&applied), ["+a@1", "+b@1"]);
        let applied = held.apply(&response(vec![resource("a", "2")], &[], false));
        assert_eq!(summary(&applied), ["-b", "~a@2"]);
        let applied = held.apply(&response(vec![resource("c", "1")], &[], true));
        assert_eq!(summary(&applied), ["+c@1"]);
        let applied = held.apply(&response(vec![], &["default/a"], true));
        assert_eq!(summary(&applied), ["-a"]);
        let applied = held.apply(&response(vec![resource("c", "1")], &[], false));
        assert!(applied.changes.is_empty() && applied.errors.is_empty());

        let broken = Resource { body: None, ..resource("d", "1") };
        let applied = held.apply(&response(vec![resource("c", "1"), broken], &[], false));
        assert!(applied.changes.is_empty());
        assert_eq!(applied.errors.len(), 1, "{:?}", applied.errors);
    }

    fn kinds_collection() -> &'static str {
        istio_api::kinds::by_name("VirtualService").expect("kind").collection
    }

    #[test]
    fn addresses_become_uris() {
        assert_eq!(endpoint_uri("127.0.0.1:9901"), "http://127.0.0.1:9901");
        assert_eq!(endpoint_uri("https://galley:9901"), "https://galley:9901");
    }
}
