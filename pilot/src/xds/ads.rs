//! The ADS server: `envoy.service.discovery.v3.AggregatedDiscoveryService`, both
//! state-of-the-world (`StreamAggregatedResources`) and incremental (`DeltaAggregatedResources`).
//! Per stream and type it tracks the subscribed names, the nonce and version sent, and what the
//! proxy ACKed or NACKed (a NACK is logged with the proxy and Envoy's error, counted, and kept for
//! the debug endpoints; Pilot keeps serving). Every new push context is sent to every stream.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
use istio_xds::type_url;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::generate::{generate, generate_parts, names_context};
use super::intern;
use super::requests::{Incoming, SotwRequest};
use super::sotw_memo::{Decision, Holds};
use super::wire::{Outgoing, WireResponse};
use crate::metrics::Metrics;
use crate::model::{GeneratedResource, PushContext};
use crate::node::Proxy;

/// What a proxy was sent and acknowledged for one type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    pub sent_version: String,
    pub sent_nonce: String,
    pub acked_version: String,
    pub acked_nonce: String,
    pub resources: usize,
    /// The last NACK's error, until a later response is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nack: Option<String>,
}

/// One connected proxy, as the debug endpoints show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub connection_id: String,
    pub proxy: String,
    pub istio_version: String,
    pub delta: bool,
    pub types: BTreeMap<String, TypeStatus>,
    /// The node the proxy announced (with its metadata), so the debug endpoints render what it
    /// was sent.
    #[serde(skip)]
    pub node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
}

/// Every connected proxy.
#[derive(Default)]
pub struct Connections {
    next_id: AtomicU64,
    statuses: Mutex<BTreeMap<String, ConnectionStatus>>,
}

impl Connections {
    pub fn snapshot(&self) -> Vec<ConnectionStatus> {
        istio_runtime::sync::lock(&self.statuses).values().cloned().collect()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut ConnectionStatus)) {
        if let Some(status) = istio_runtime::sync::lock(&self.statuses).get_mut(id) {
            change(status);
        }
    }
}

/// Short type names for logs and metrics.
pub fn short_type(type_url: &str) -> &'static str {
    match type_url {
        type_url::CLUSTER => "cds",
        type_url::ENDPOINT => "eds",
        type_url::LISTENER => "lds",
        type_url::ROUTE => "rds",
        _ => "unknown",
    }
}

/// Waits for Pilot's first config sync; `false` when Pilot is shutting down. Like 1.4's Pilot,
/// a stream answers nothing before it: an empty answer would make the proxy drop its listeners.
/// Requests queue in the stream meanwhile.
async fn first_sync(pushes: &mut watch::Receiver<Arc<PushContext>>) -> bool {
    pushes.wait_for(|push| !push.version.is_empty()).await.is_ok()
}

/// The ADS service.
#[derive(Clone)]
pub struct AdsServer {
    pushes: watch::Receiver<Arc<PushContext>>,
    connections: Arc<Connections>,
    metrics: Metrics,
    throttle: Arc<tokio::sync::Semaphore>,
}

/// How many responses may be built and queued at once (Istio's `PILOT_PUSH_THROTTLE`).
pub const DEFAULT_PUSH_THROTTLE: usize = 100;

impl AdsServer {
    pub fn new(
        pushes: watch::Receiver<Arc<PushContext>>,
        connections: Arc<Connections>,
        metrics: Metrics,
        push_throttle: usize,
    ) -> Self {
        AdsServer {
            pushes,
            connections,
            metrics,
            throttle: Arc::new(tokio::sync::Semaphore::new(push_throttle.max(1))),
        }
    }

    fn register(&self, delta: bool) -> String {
        let id = format!("{}", self.connections.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        istio_runtime::sync::lock(&self.connections.statuses).insert(
            id.clone(),
            ConnectionStatus {
                connection_id: id.clone(),
                proxy: String::new(),
                istio_version: String::new(),
                delta,
                types: BTreeMap::new(),
                node: None,
            },
        );
        self.metrics.xds_clients.inc();
        id
    }

    fn unregister(&self, id: &str) {
        istio_runtime::sync::lock(&self.connections.statuses).remove(id);
        self.metrics.xds_clients.dec();
    }

    /// Serves one state-of-the-world stream: reads its requests and pushes, and queues the
    /// responses (or the status that ends it) on the returned channel.
    pub(crate) fn spawn_sotw(&self, mut incoming: Incoming) -> mpsc::Receiver<Outgoing> {
        // A one-slot queue: a push waits for the transport to take the previous response.
        let (out, receiver) = mpsc::channel::<Outgoing>(1);
        let server = self.clone();
        let mut pushes = self.pushes.clone();
        tokio::spawn(async move {
            if !first_sync(&mut pushes).await {
                return;
            }
            let id = server.register(false);
            let mut stream = SotwStream {
                id: id.clone(),
                proxy: None,
                watches: HashMap::new(),
                next_nonce: 0,
                server: server.clone(),
                // Every type the proxy asks for is answered from this context or a later one.
                pushed_version: pushes.borrow_and_update().version.clone(),
            };
            loop {
                tokio::select! {
                    message = incoming.message() => {
                        let request = match message {
                            Ok(Some(request)) => request,
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(connection = %id, %status, "ADS stream ended");
                                break;
                            }
                        };
                        let type_url = request.message.type_url.clone();
                        match stream.request(request) {
                            Ok(true) => {
                                let push = pushes.borrow().clone();
                                if stream.send(&type_url, &push, Reason::Request, &out).await.is_err() {
                                    break;
                                }
                            }
                            Ok(false) => {}
                            Err(status) => {
                                let _ = out.send((None, Err(status))).await;
                                break;
                            }
                        }
                    }
                    changed = pushes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let push = pushes.borrow_and_update().clone();
                        if stream.push(&push, &out).await.is_err() {
                            break;
                        }
                    }
                }
            }
            server.unregister(&id);
        });
        receiver
    }
}

/// Per-type state of a state-of-the-world stream.
#[derive(Default)]
struct Watch {
    /// Subscribed names, shared with every stream that subscribed to the same ones.
    names: intern::Names,
    nonce: Option<String>,
    /// When the push context of the last response was built.
    pushed_from: Option<Instant>,
    /// EDS, RDS: hash of every resource last sent, by name key: what the proxy has (or is
    /// about to have). Shared with every stream in the same state.
    sent: intern::Sent,
    /// CDS, LDS: the fingerprint of the set last sent.
    whole: Option<u64>,
}

/// What a decision reads of a stream's state for one type.
#[derive(Clone, Copy)]
struct WatchState<'a> {
    names: &'a intern::Names,
    sent: &'a intern::Sent,
    whole: Option<u64>,
}

/// Why a response is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The proxy asked (new subscription or changed names): send everything it asked for.
    Request,
    /// A new push context: send only what changed (nothing, if nothing did).
    Push,
}

struct SotwStream {
    id: String,
    proxy: Option<Proxy>,
    watches: HashMap<String, Watch>,
    next_nonce: u64,
    server: AdsServer,
    /// The version of the last push context pushed to every watched type.
    pushed_version: String,
}

impl SotwStream {
    /// Sends `type_url` if the proxy needs it; returns `Ok(true)` when a response went out and
    /// `Err` when the stream is gone.
    async fn send(
        &mut self,
        type_url: &str,
        push: &PushContext,
        reason: Reason,
        out: &mpsc::Sender<Outgoing>,
    ) -> Result<bool, ()> {
        let Some(proxy) = &self.proxy else { return Ok(false) };
        let Some(watch) = self.watches.get_mut(type_url) else { return Ok(false) };
        let started = Instant::now();
        let everything = reason == Reason::Request;
        let state = WatchState { names: &watch.names, sent: &watch.sent, whole: watch.whole };
        let decide = || decide(push, proxy, type_url, state, reason);
        // Streams whose proxies get the same resources for the same names, in the same state,
        // share one decision.
        let decision = match names_context(push, proxy, type_url) {
            Some(context) => {
                push.sotw_memo.get_or_decide(type_url, context, everything, (state.names, state.sent), decide)
            }
            None => Arc::new(decide()),
        };
        self.server.metrics.record_push_status(&push.status);
        let Some(decision) = decision.as_ref() else { return Ok(false) };
        // Bound how many responses are queued at once, like PILOT_PUSH_THROTTLE.
        let queued = Instant::now();
        let permit = self.server.throttle.clone().acquire_owned().await.map_err(|_| ())?;
        self.server.metrics.proxy_queue_time.observe(queued.elapsed().as_secs_f64());
        match &decision.holds {
            Holds::Each(sent) => watch.sent = sent.clone(),
            Holds::Whole(fingerprint) => watch.whole = Some(*fingerprint),
        }
        self.next_nonce += 1;
        let nonce = format!("{}-{}", push.version, self.next_nonce);
        watch.nonce = Some(nonce.clone());
        watch.pushed_from = push.created;
        let count = decision.entries.len();
        // The resources' shared encodings, as they are: nothing is copied for this proxy.
        let response = WireResponse::new(&push.version, type_url, &nonce, decision.entries.iter().cloned());
        let kind = short_type(type_url);
        self.server.connections.update(&self.id, |status| {
            let entry = status.types.entry(kind.to_string()).or_default();
            entry.sent_version = push.version.clone();
            entry.sent_nonce = nonce;
            entry.resources = count;
        });
        let sent = out.send((Some(permit), response)).await.is_ok();
        self.server.metrics.record_push(kind, sent, started);
        if sent {
            Ok(true)
        } else {
            Err(())
        }
    }

    /// Pushes a new context: every watched type in Envoy's order. A CDS update makes Envoy
    /// re-warm clusters, so it is followed by every watched endpoint; likewise LDS and routes.
    /// When only endpoints changed since the last push (and none of this proxy's own), only
    /// EDS is looked at.
    async fn push(&mut self, push: &PushContext, out: &mpsc::Sender<Outgoing>) -> Result<(), ()> {
        let ips = self.proxy.as_ref().map_or(&[][..], |proxy| &proxy.ips[..]);
        let endpoints_only = push.only_endpoints_since(&mut self.pushed_version, ips);
        if endpoints_only {
            self.send(type_url::ENDPOINT, push, Reason::Push, out).await?;
            return Ok(());
        }
        let clusters_sent = self.send(type_url::CLUSTER, push, Reason::Push, out).await?;
        self.send(type_url::ENDPOINT, push, if clusters_sent { Reason::Request } else { Reason::Push }, out).await?;
        let listeners_sent = self.send(type_url::LISTENER, push, Reason::Push, out).await?;
        self.send(type_url::ROUTE, push, if listeners_sent { Reason::Request } else { Reason::Push }, out).await?;
        Ok(())
    }

    /// Handles a request; returns whether a response for its type must be sent now.
    fn request(&mut self, request: SotwRequest) -> Result<bool, Status> {
        let SotwRequest { message: request, names } = request;
        if self.proxy.is_none() {
            let node = request
                .node
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("the first DiscoveryRequest must carry the node"))?;
            let proxy = Proxy::from_node(node).map_err(|error| Status::invalid_argument(error.to_string()))?;
            tracing::info!(proxy = %proxy.id, connection = %self.id, "ADS stream connected");
            let (id, version) = (proxy.id.clone(), proxy.istio_version.clone());
            let announced = node.clone();
            self.server.connections.update(&self.id, |status| {
                status.proxy = id;
                status.istio_version = version;
                status.node = Some(announced);
            });
            self.proxy = Some(proxy);
        }
        let type_url = request.type_url.clone();
        let kind = short_type(&type_url);
        let watch = self.watches.entry(type_url.clone()).or_default();
        let names_changed = !names.equal_to(&watch.names);
        if request.response_nonce.is_empty() {
            watch.names = intern::names(names.into_vec()?);
            watch.sent = intern::sent(HashMap::new());
            watch.whole = None;
            return Ok(true);
        }
        if watch.nonce.as_deref() != Some(request.response_nonce.as_str()) {
            if kind == "rds" {
                self.server.metrics.rds_expired_nonce.inc();
            }
            return Ok(false); // stale: an answer to a response that has been superseded
        }
        let proxy_id = self.proxy.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        if let Some(error) = &request.error_detail {
            tracing::warn!(proxy = %proxy_id, r#type = kind, nonce = %request.response_nonce, error = %error.message, "proxy rejected config (NACK)");
            self.server.metrics.record_reject(kind, &proxy_id, error.code);
            let message = error.message.clone();
            self.server
                .connections
                .update(&self.id, |status| status.types.entry(kind.to_string()).or_default().nack = Some(message));
            // The proxy holds none of what it rejected: the next push sends the type whole
            // again, as 1.4's full pushes did, even when the content has not changed (what
            // was missing, such as a certificate file, may be there by then).
            watch.sent = intern::sent(HashMap::new());
            watch.whole = None;
        } else {
            if let Some(created) = watch.pushed_from.take() {
                self.server.metrics.convergence.observe(created.elapsed().as_secs_f64());
            }
            let (version, nonce) = (request.version_info.clone(), request.response_nonce.clone());
            self.server.connections.update(&self.id, |status| {
                let entry = status.types.entry(kind.to_string()).or_default();
                entry.acked_version = version;
                entry.acked_nonce = nonce;
                entry.nack = None;
            });
        }
        if names_changed {
            watch.names = intern::names(names.into_vec()?);
            return Ok(true);
        }
        Ok(false)
    }
}

/// What a stream in this state is sent for `type_url`, if anything: all of it when the proxy
/// asked; on a push, only what changed (EDS, RDS), or everything when anything did (CDS, LDS,
/// where a response replaces the whole set).
fn decide(
    push: &PushContext,
    proxy: &Proxy,
    type_url: &str,
    watch: WatchState<'_>,
    reason: Reason,
) -> Option<Decision> {
    let generated = generate_parts(push, proxy, type_url, watch.names);
    if matches!(type_url, type_url::CLUSTER | type_url::LISTENER) {
        let fingerprint = generated.fingerprint();
        if reason == Reason::Push && watch.whole == Some(fingerprint) {
            return None;
        }
        let entries = generated.iter().map(|resource| resource.wire.clone()).collect();
        return Some(Decision { entries, holds: Holds::Whole(fingerprint) });
    }
    let selected: Vec<&GeneratedResource> = match reason {
        Reason::Request => generated.iter().collect(),
        Reason::Push => {
            generated.iter().filter(|r| watch.sent.get(&intern::name_key(&r.name)) != Some(&r.hash)).collect()
        }
    };
    if selected.is_empty() && reason == Reason::Push {
        return None;
    }
    let mut state = watch.sent.as_ref().clone();
    for resource in &selected {
        state.insert(intern::name_key(&resource.name), resource.hash);
    }
    let entries = selected.iter().map(|resource| resource.wire.clone()).collect();
    Some(Decision { entries, holds: Holds::Each(intern::sent(state)) })
}

/// Per-type state of a delta stream: subscribed names (empty with `wildcard`) and the version
/// of each resource the client holds.
#[derive(Default)]
struct DeltaWatch {
    wildcard: bool,
    names: Vec<String>,
    held: HashMap<String, String>,
}

type SotwStreamBox = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

type DeltaStreamBox = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = SotwStreamBox;
    type DeltaAggregatedResourcesStream = DeltaStreamBox;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStreamBox>, Status> {
        // Pilot's gRPC server answers this method with `AdsService`, which sends the shared
        // encodings as they are; this path (the generated service used on its own) decodes them.
        let receiver = self.spawn_sotw(Incoming::Tonic(request.into_inner()));
        let responses = futures::StreamExt::map(ReceiverStream::new(receiver), |(permit, response)| {
            drop(permit);
            response.and_then(|response| response.to_message())
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStreamBox>, Status> {
        let mut incoming = request.into_inner();
        let (out, receiver) = mpsc::channel(16);
        let server = self.clone();
        let mut pushes = self.pushes.clone();
        tokio::spawn(async move {
            if !first_sync(&mut pushes).await {
                return;
            }
            let mut stream = DeltaStream::new(server.clone());
            // Every type the proxy asks for is answered from this context or a later one.
            stream.pushed_version = pushes.borrow_and_update().version.clone();
            loop {
                let to_send = tokio::select! {
                    message = incoming.message() => {
                        let Ok(Some(request)) = message else { break };
                        match stream.request(&request) {
                            Ok(to_send) => to_send,
                            Err(status) => {
                                let _ = out.send(Err(status)).await;
                                break;
                            }
                        }
                    }
                    changed = pushes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let push = pushes.borrow_and_update().clone();
                        stream.types_to_push(&push)
                    }
                };
                let push = pushes.borrow().clone();
                let responses: Vec<DeltaDiscoveryResponse> =
                    to_send.iter().filter_map(|type_url| stream.response(&push, type_url)).collect();
                for response in responses {
                    if out.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
            }
            server.unregister(&stream.id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// One delta ADS stream: the proxy once its first request names it, what it subscribed to per
/// type, and the version of every resource it holds, so each push sends only what changed.
struct DeltaStream {
    id: String,
    server: AdsServer,
    proxy: Option<Proxy>,
    watches: HashMap<String, DeltaWatch>,
    /// Types whose first request has not been answered yet.
    must_answer: std::collections::HashSet<String>,
    nonce: u64,
    /// The version of the last push context pushed to every watched type.
    pushed_version: String,
}

impl DeltaStream {
    fn new(server: AdsServer) -> DeltaStream {
        DeltaStream {
            id: server.register(true),
            server,
            proxy: None,
            watches: HashMap::new(),
            must_answer: std::collections::HashSet::new(),
            nonce: 0,
            pushed_version: String::new(),
        }
    }

    /// Takes in a request; returns the types to answer now.
    fn request(&mut self, request: &DeltaDiscoveryRequest) -> Result<Vec<String>, Status> {
        if self.proxy.is_none() {
            self.identify(request)?;
        }
        let kind = short_type(&request.type_url);
        if let Some(error) = &request.error_detail {
            tracing::warn!(connection = %self.id, r#type = kind, error = %error.message, "proxy rejected delta config (NACK)");
            let node = self.proxy.as_ref().map(|proxy| proxy.id.clone()).unwrap_or_default();
            self.server.metrics.record_reject(kind, &node, error.code);
            // What the proxy holds of this type is unknown now: the next push sends each
            // resource again (and still removes the ones that are gone).
            if let Some(watch) = self.watches.get_mut(&request.type_url) {
                watch.held.values_mut().for_each(String::clear);
            }
            return Ok(Vec::new());
        }
        let first = !self.watches.contains_key(&request.type_url);
        let watch = self.watches.entry(request.type_url.clone()).or_default();
        if first {
            watch.wildcard = request.resource_names_subscribe.is_empty()
                || request.resource_names_subscribe.iter().any(|name| name == "*");
            watch.held = request.initial_resource_versions.clone();
            // The first request always gets an answer, empty or not, so the proxy knows its
            // initial state (no listeners is a state too).
            self.must_answer.insert(request.type_url.clone());
        }
        for name in &request.resource_names_subscribe {
            if name != "*" && !watch.names.contains(name) {
                watch.names.push(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            watch.names.retain(|known| known != name);
            watch.held.remove(name);
        }
        let subscribed = !request.resource_names_subscribe.is_empty();
        Ok(if first || subscribed { vec![request.type_url.clone()] } else { Vec::new() })
    }

    /// Reads the proxy from the stream's first request, which must name it.
    fn identify(&mut self, request: &DeltaDiscoveryRequest) -> Result<(), Status> {
        let node = request
            .node
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("the first DeltaDiscoveryRequest must carry the node"))?;
        let proxy = Proxy::from_node(node).map_err(|error| Status::invalid_argument(error.to_string()))?;
        let (proxy_id, version) = (proxy.id.clone(), proxy.istio_version.clone());
        let announced = node.clone();
        self.server.connections.update(&self.id, |status| {
            status.proxy = proxy_id;
            status.istio_version = version;
            status.node = Some(announced);
        });
        self.proxy = Some(proxy);
        Ok(())
    }

    /// The types a new push context is looked at for: every one the proxy watches, or only
    /// EDS when only endpoints changed since the last push (and none of this proxy's own).
    fn types_to_push(&mut self, push: &PushContext) -> Vec<String> {
        let ips = self.proxy.as_ref().map_or(&[][..], |proxy| &proxy.ips[..]);
        let endpoints_only = push.only_endpoints_since(&mut self.pushed_version, ips);
        [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::ROUTE]
            .into_iter()
            .filter(|type_url| self.watches.contains_key(*type_url))
            .filter(|type_url| !endpoints_only || *type_url == type_url::ENDPOINT)
            .map(str::to_string)
            .collect()
    }

    /// The response that brings the proxy's `type_url` resources up to `push`, if anything
    /// changed (or the type's first request is still unanswered).
    fn response(&mut self, push: &PushContext, type_url: &str) -> Option<DeltaDiscoveryResponse> {
        let started = Instant::now();
        let proxy = self.proxy.as_ref()?;
        let watch = self.watches.get_mut(type_url)?;
        let names = if watch.wildcard { Vec::new() } else { watch.names.clone() };
        let (resources, removed) = delta(watch, generate(push, proxy, type_url, &names));
        self.server.metrics.record_push_status(&push.status);
        let first_answer = self.must_answer.remove(type_url);
        if resources.is_empty() && removed.is_empty() && !first_answer {
            return None;
        }
        self.nonce += 1;
        let kind = short_type(type_url);
        self.server.metrics.record_push(kind, true, started);
        let (count, nonce) = (resources.len(), self.nonce.to_string());
        self.server.connections.update(&self.id, |status| {
            let entry = status.types.entry(kind.to_string()).or_default();
            entry.sent_version = push.version.clone();
            entry.sent_nonce = nonce.clone();
            entry.resources = count;
        });
        Some(DeltaDiscoveryResponse {
            system_version_info: push.version.clone(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

/// What changed between the resources a watch holds and `generated`: the new or changed ones
/// and the names of the removed ones; the watch then holds `generated`.
fn delta(watch: &mut DeltaWatch, generated: Vec<GeneratedResource>) -> (Vec<Resource>, Vec<String>) {
    let mut resources = Vec::new();
    let mut present = std::collections::HashSet::new();
    for generated in generated {
        present.insert(generated.name.clone());
        let version = format!("{:016x}", generated.hash);
        if watch.held.get(&generated.name) != Some(&version) {
            watch.held.insert(generated.name.clone(), version.clone());
            resources.push(Resource {
                name: generated.name,
                version,
                resource: Some(Any::clone(&generated.resource)),
                ..Default::default()
            });
        }
    }
    let removed: Vec<String> = watch.held.keys().filter(|name| !present.contains(*name)).cloned().collect();
    for name in &removed {
        watch.held.remove(name);
    }
    (resources, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MeshSettings;
    use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use prost::Message;

    /// Mesh-wide settings reach every listener, including the sidecar ones shared between proxies.
    #[test]
    fn sidecar_and_gateway_listeners_carry_the_mesh_access_log() {
        let mesh = MeshSettings { access_log_file: "/dev/stdout".into(), ..MeshSettings::default() };
        let (found, errors) = istio_config::yaml::parse_objects(
            "test",
            "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  clusterIP: 10.96.0.12\n  ports: [{name: http, port: 9080}]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let objects = found.into_iter().map(|found| (found.object.key(), found.object)).collect();
        let push = crate::source::build(&objects, &mesh, "1".into());
        for id in [
            "sidecar~10.1.0.5~a-1.default~default.svc.cluster.local",
            "router~10.1.0.6~gw-1.istio-system~istio-system.svc.cluster.local",
        ] {
            let node = envoy_types::pb::envoy::config::core::v3::Node { id: id.into(), ..Default::default() };
            let proxy = Proxy::from_node(&node).expect("proxy");
            let listeners = generate(&push, &proxy, type_url::LISTENER, &[]);
            let managers: Vec<HttpConnectionManager> = listeners
                .iter()
                .filter_map(|resource| Listener::decode(resource.resource.value.as_slice()).ok())
                .flat_map(|listener| listener.filter_chains)
                .flat_map(|chain| chain.filters)
                .filter_map(|filter| match filter.config_type {
                    Some(filter::ConfigType::TypedConfig(any)) if any.type_url.ends_with("HttpConnectionManager") => {
                        HttpConnectionManager::decode(any.value.as_slice()).ok()
                    }
                    _ => None,
                })
                .collect();
            if id.starts_with("sidecar") {
                assert!(!managers.is_empty(), "{id}: the sidecar has HTTP listeners");
            }
            assert!(managers.iter().all(|manager| manager.access_log.len() == 1), "{id}: every manager logs");
        }
    }

    /// 1.4's push-status findings reach the Pilot dashboard's gauges: two TCP services without
    /// addresses on one port, an HTTP service on 443 (left out, as PILOT_BLOCK_HTTP_ON_443 did),
    /// two services on one inbound port of a pod, and each EDS cluster's endpoint count.
    #[test]
    fn conflicts_and_endpoint_counts_become_1_4s_gauges() {
        let yaml = "\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: db-a, namespace: default}
spec: {hosts: [db-a.example.com], ports: [{number: 3306, name: tcp, protocol: TCP}], resolution: DNS}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: db-b, namespace: default}
spec: {hosts: [db-b.example.com], ports: [{number: 3306, name: tcp, protocol: TCP}], resolution: DNS}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: plain, namespace: default}
spec: {hosts: [plain.example.com], ports: [{number: 443, name: http, protocol: HTTP}], resolution: DNS}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {clusterIP: 10.96.0.12, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-alias, namespace: default}
spec: {clusterIP: 10.96.0.13, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: default, labels: {app: reviews}}
status: {podIP: 10.1.0.5}
---
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: default}
subsets: [{addresses: [{ip: 10.1.0.5}], ports: [{name: http, port: 9080}]}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: reviews-alias, namespace: default}
subsets: [{addresses: [{ip: 10.1.0.5}], ports: [{name: http, port: 9080}]}]
";
        let (found, errors) = istio_config::yaml::parse_objects("test", yaml);
        assert!(errors.is_empty(), "{errors:?}");
        let objects = found.into_iter().map(|found| (found.object.key(), found.object)).collect();
        let push = crate::source::build(&objects, &MeshSettings::default(), "1".into());
        let node = envoy_types::pb::envoy::config::core::v3::Node {
            id: "sidecar~10.1.0.5~reviews-1.default~default.svc.cluster.local".into(),
            ..Default::default()
        };
        let proxy = Proxy::from_node(&node).expect("proxy");
        let listeners = generate(&push, &proxy, type_url::LISTENER, &[]);
        assert!(listeners.iter().all(|listener| listener.name != "0.0.0.0_443"), "HTTP on 443 is left out");
        let clusters = [
            "outbound|9080||reviews.default.svc.cluster.local".to_string(),
            "outbound|9080||missing.default.svc.cluster.local".to_string(),
        ];
        generate(&push, &proxy, type_url::ENDPOINT, &clusters);

        let registry = istio_runtime::monitoring::registry();
        let metrics = Metrics::register(&registry);
        metrics.record_push_status(&push.status);
        let text = istio_runtime::monitoring::render(&registry);
        for line in [
            "pilot_conflict_inbound_listener 1",
            "pilot_conflict_outbound_listener_tcp_over_current_tcp 1",
            "pilot_conflict_outbound_listener_http_over_https 1",
            "pilot_conflict_outbound_listener_http_over_current_tcp 0",
            "pilot_conflict_outbound_listener_tcp_over_current_http 0",
            "pilot_xds_eds_instances{cluster=\"outbound|9080||reviews.default.svc.cluster.local\"} 1",
            "pilot_xds_eds_instances{cluster=\"outbound|9080||missing.default.svc.cluster.local\"} 0",
            "pilot_eds_no_instances 1",
        ] {
            assert!(text.lines().any(|candidate| candidate == line), "{line} missing:\n{text}");
        }
    }
}
