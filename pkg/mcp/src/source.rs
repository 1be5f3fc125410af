//! The MCP source side (Galley's server): `istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream`.
//! A sink (Pilot, Mixer, `istioctl x mcp`) asks for collections; for each one the server sends the
//! current resources, waits for the ACK or NACK (matched by nonce) before sending more, and pushes
//! again whenever the collection's version changes. A sink that asks for incremental updates gets
//! only what changed since the versions it last accepted (or announced in
//! `initial_resource_versions`). It serves whatever snapshot its owner publishes.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use istio_api::pb::istio::mcp::v1alpha1::resource_source_server::ResourceSource;
use istio_api::pb::istio::mcp::v1alpha1::{RequestResources, Resources};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::collection::{Collection, Snapshot};

/// The label of per-collection MCP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectionLabel {
    pub collection: String,
}

/// The labels of per-collection MCP metrics, with the serving component as 1.4 had them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpLabels {
    pub collection: String,
    pub component: &'static str,
}

/// A rejection's labels: the collection and the gRPC code name the sink gave (1.4's `code`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NackLabels {
    pub collection: String,
    pub component: &'static str,
    pub code: &'static str,
}

/// A failed send or receive on a stream: the gRPC code name and the error's text, as 1.4's.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub component: &'static str,
    pub code: &'static str,
    pub error: String,
}

/// The label of the connected-sinks gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabel {
    pub component: &'static str,
}

/// The component that serves MCP in the mesh, as 1.4's metrics named it.
const COMPONENT: &str = "galley";

/// The source's metrics, named and labelled as Istio 1.4's (`istio_mcp_clients_total`, a gauge;
/// `istio_mcp_request_acks_total` and `…_nacks_total` by collection), with `component="galley"`.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    pub clients: Family<ComponentLabel, Gauge>,
    pub acks: Family<McpLabels, Counter>,
    pub nacks: Family<NackLabels, Counter>,
    /// Bytes of each response sent, by collection (`istio_mcp_message_sizes_bytes`).
    pub message_sizes: Family<McpLabels, Histogram, fn() -> Histogram>,
    pub send_failures: Family<FailureLabels, Counter>,
    pub recv_failures: Family<FailureLabels, Counter>,
}

/// 1.4's bounds: 80% of 256 KiB, 512 KiB, 1, 2, 4 (gRPC's default limit), 8, 12 and 16 MiB.
pub(crate) fn message_size_histogram() -> Histogram {
    Histogram::new([262144.0, 525288.0, 1.049e6, 2.097e6, 4.194e6, 8.389e6, 1.258e7, 1.678e7].map(|bytes| bytes * 0.8))
}

impl Default for SourceMetrics {
    fn default() -> Self {
        SourceMetrics {
            clients: Family::default(),
            acks: Family::default(),
            nacks: Family::default(),
            message_sizes: Family::new_with_constructor(message_size_histogram),
            send_failures: Family::default(),
            recv_failures: Family::default(),
        }
    }
}

impl SourceMetrics {
    /// The per-collection label for `collection`.
    pub fn label(collection: &str) -> McpLabels {
        McpLabels { collection: collection.to_string(), component: COMPONENT }
    }

    fn connected(&self) -> Gauge {
        self.clients.get_or_create(&ComponentLabel { component: COMPONENT }).clone()
    }

    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = SourceMetrics::default();
        let _ = metrics.connected();
        registry.register("istio_mcp_clients_total", "Connected MCP sinks", metrics.clients.clone());
        registry.register("istio_mcp_request_acks", "MCP responses sinks accepted", metrics.acks.clone());
        registry.register("istio_mcp_request_nacks", "MCP responses sinks rejected", metrics.nacks.clone());
        registry.register(
            "istio_mcp_message_sizes_bytes",
            "Size of sent and received messages",
            metrics.message_sizes.clone(),
        );
        registry.register(
            "istio_mcp_send_failures",
            "The number of send failures in the source",
            metrics.send_failures.clone(),
        );
        registry.register(
            "istio_mcp_recv_failures",
            "The number of recv failures in the source",
            metrics.recv_failures.clone(),
        );
        metrics
    }

    fn failure(status: &Status) -> FailureLabels {
        FailureLabels {
            component: COMPONENT,
            code: istio_runtime::grpc_metrics::go_code_name(status.code() as i32),
            error: status.message().to_string(),
        }
    }
}

/// The MCP service, serving the latest published snapshot.
#[derive(Clone)]
pub struct McpServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: SourceMetrics,
}

impl McpServer {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, metrics: SourceMetrics) -> Self {
        McpServer { snapshots, metrics }
    }
}

/// What one sink has asked for and been sent, per collection.
#[derive(Default)]
struct Watch {
    incremental: bool,
    /// Nonce of the response awaiting an ACK or NACK.
    pending: Option<Pending>,
    /// The collection version the sink last accepted.
    acked_version: Option<String>,
    /// Resource versions the sink holds (for incremental pushes).
    sink_resources: Option<BTreeMap<String, String>>,
}

struct Pending {
    nonce: String,
    version: String,
    resources: BTreeMap<String, String>,
}

/// The response that brings a sink from what it holds to `collection`.
fn response(name: &str, collection: &Collection, watch: &Watch, nonce: String) -> Resources {
    match (&watch.sink_resources, watch.incremental) {
        (Some(held), true) => {
            let changed = collection
                .resources
                .iter()
                .filter(|(key, resource)| held.get(*key) != resource.metadata.as_ref().map(|m| &m.version))
                .map(|(_, resource)| resource.clone())
                .collect();
            let removed = held.keys().filter(|key| !collection.resources.contains_key(*key)).cloned().collect();
            Resources {
                system_version_info: collection.version.clone(),
                collection: name.to_string(),
                resources: changed,
                removed_resources: removed,
                nonce,
                incremental: true,
            }
        }
        _ => Resources {
            system_version_info: collection.version.clone(),
            collection: name.to_string(),
            resources: collection.resources.values().cloned().collect(),
            removed_resources: Vec::new(),
            nonce,
            incremental: false,
        },
    }
}

struct Connection {
    watches: HashMap<String, Watch>,
    next_nonce: u64,
    sink: String,
    metrics: SourceMetrics,
}

impl Connection {
    /// Sends what each idle watch is missing.
    async fn push(&mut self, snapshot: &Snapshot, out: &mpsc::Sender<Result<Resources, Status>>) -> bool {
        let empty = Arc::new(Collection::new(BTreeMap::new()));
        for (name, watch) in &mut self.watches {
            if watch.pending.is_some() {
                continue;
            }
            let collection = snapshot.collection(name).unwrap_or(&empty);
            if watch.acked_version.as_deref() == Some(collection.version.as_str()) {
                continue;
            }
            self.next_nonce += 1;
            let nonce = format!("{}-{}", snapshot.generation, self.next_nonce);
            let message = response(name, collection, watch, nonce.clone());
            tracing::debug!(sink = %self.sink, collection = %name, resources = message.resources.len(), incremental = message.incremental, "MCP push");
            watch.pending =
                Some(Pending { nonce, version: collection.version.clone(), resources: collection.resource_versions() });
            let size = prost::Message::encoded_len(&message);
            self.metrics.message_sizes.get_or_create(&SourceMetrics::label(name)).observe(size as f64);
            if out.send(Ok(message)).await.is_err() {
                let gone = Status::unavailable("transport is closing");
                self.metrics.send_failures.get_or_create(&SourceMetrics::failure(&gone)).inc();
                return false;
            }
        }
        true
    }

    /// Records a request; returns an error for requests that break the protocol.
    fn request(&mut self, request: RequestResources) -> Result<(), Status> {
        if request.collection.is_empty() {
            return Err(Status::invalid_argument("RequestResources.collection must be set"));
        }
        if let Some(node) = &request.sink_node {
            if !node.id.is_empty() {
                self.sink = node.id.clone();
            }
        }
        let collection = request.collection.clone();
        let watch = self.watches.entry(collection.clone()).or_default();
        if request.response_nonce.is_empty() {
            // A new (or restarted) subscription.
            watch.incremental = request.incremental;
            watch.pending = None;
            watch.acked_version = None;
            watch.sink_resources = if request.incremental && !request.initial_resource_versions.is_empty() {
                Some(request.initial_resource_versions.clone().into_iter().collect())
            } else {
                None
            };
            return Ok(());
        }
        let Some(pending) = watch.pending.take_if(|pending| pending.nonce == request.response_nonce) else {
            tracing::debug!(sink = %self.sink, %collection, nonce = %request.response_nonce, "stale MCP nonce ignored");
            return Ok(());
        };
        let label = SourceMetrics::label(&collection);
        match &request.error_detail {
            Some(error) => {
                tracing::warn!(sink = %self.sink, %collection, code = error.code, message = %error.message, "MCP sink rejected resources (NACK)");
                let code = istio_runtime::grpc_metrics::go_code_name(error.code);
                self.metrics
                    .nacks
                    .get_or_create(&NackLabels { collection: label.collection.clone(), component: COMPONENT, code })
                    .inc();
                // Do not resend the same version until it changes.
                watch.acked_version = Some(pending.version);
            }
            None => {
                self.metrics.acks.get_or_create(&label).inc();
                watch.acked_version = Some(pending.version);
                watch.sink_resources = Some(pending.resources);
            }
        }
        Ok(())
    }
}

type ResourceStream = Pin<Box<dyn Stream<Item = Result<Resources, Status>> + Send>>;

#[tonic::async_trait]
impl ResourceSource for McpServer {
    type EstablishResourceStreamStream = ResourceStream;

    async fn establish_resource_stream(
        &self,
        request: Request<Streaming<RequestResources>>,
    ) -> Result<Response<ResourceStream>, Status> {
        let peer = request.remote_addr().map(|address| address.to_string()).unwrap_or_default();
        let mut incoming = request.into_inner();
        let (out, receiver) = mpsc::channel(16);
        let mut snapshots = self.snapshots.clone();
        let metrics = self.metrics.clone();
        metrics.connected().inc();
        tokio::spawn(async move {
            let mut connection =
                Connection { watches: HashMap::new(), next_nonce: 0, sink: peer, metrics: metrics.clone() };
            loop {
                tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(request)) => {
                            if let Err(status) = connection.request(request) {
                                let _ = out.send(Err(status)).await;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(sink = %connection.sink, %status, "MCP stream ended");
                            metrics.recv_failures.get_or_create(&SourceMetrics::failure(&status)).inc();
                            break;
                        }
                    },
                    changed = snapshots.changed() => if changed.is_err() { break },
                }
                let snapshot = snapshots.borrow_and_update().clone();
                if snapshot.generation == 0 {
                    continue; // nothing published yet: the source has not synced
                }
                if !connection.push(&snapshot, &out).await {
                    break;
                }
            }
            metrics.connected().dec();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
