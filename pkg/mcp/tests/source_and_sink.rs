//! The source and the sink against each other over real gRPC on loopback: a sink sees objects
//! added, changed and removed as the source publishes snapshots, NACKs a resource it cannot
//! read (and the source counts it), and picks up again after the source restarts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use istio_api::pb::istio::mcp::v1alpha1::resource_source_server::ResourceSourceServer;
use istio_api::pb::istio::mcp::v1alpha1::{Resource, Resources};
use istio_config::object::Object;
use istio_mcp::collection::{Collection, Snapshot};
use istio_mcp::resource::istio_resource;
use istio_mcp::sink::{ObjectChange, ObjectCollections, Rejected, Sink, SinkMetrics, Subscription};
use istio_mcp::source::{ComponentLabel, McpLabels, McpServer, NackLabels, SourceMetrics};
use tokio::sync::{mpsc, watch};

const VIRTUAL_SERVICES: &str = "istio/networking/v1alpha3/virtualservices";

fn virtual_service(name: &str, version: &str) -> Resource {
    let mut object = Object::new("networking.istio.io/v1alpha3", "VirtualService", Some("default"), name);
    object.metadata.resource_version = Some(version.to_string());
    object.body.insert("spec".into(), serde_json::json!({"hosts": [name]}));
    istio_resource(object.istio_kind().expect("kind"), &object).expect("resource")
}

fn snapshot(generation: u64, resources: Vec<Resource>) -> Arc<Snapshot> {
    let resources: BTreeMap<String, Resource> = resources
        .into_iter()
        .map(|resource| (resource.metadata.as_ref().expect("metadata").name.clone(), resource))
        .collect();
    let collections = [(VIRTUAL_SERVICES.to_string(), Arc::new(Collection::new(resources)))].into();
    Arc::new(Snapshot { generation, collections })
}

/// Serves `snapshots` on `address` until the returned task is aborted (the source crashing).
async fn serve(
    address: SocketAddr,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: SourceMetrics,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
    let bound = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(ResourceSourceServer::new(McpServer::new(snapshots, metrics)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (bound, server)
}

/// A sink that reports each change as `+name@version`, `~name@version` or `-name`.
struct Recorder {
    held: ObjectCollections,
    changes: mpsc::UnboundedSender<String>,
}

impl Sink for Recorder {
    fn apply(&mut self, response: &Resources) -> Result<(), Rejected> {
        let mut applied = self.held.apply(response);
        for change in std::mem::take(&mut applied.changes) {
            let text = match change {
                ObjectChange::Added(object) => format!("+{}@{}", object.name(), object.resource_version()),
                ObjectChange::Modified(object) => format!("~{}@{}", object.name(), object.resource_version()),
                ObjectChange::Removed(object) => format!("-{}", object.name()),
            };
            let _ = self.changes.send(text);
        }
        applied.outcome()
    }

    fn wants_updates(&self) -> bool {
        !self.changes.is_closed()
    }
}

async fn next_change(changes: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), changes.recv()).await.expect("a change in time").expect("sink alive")
}

#[tokio::test]
async fn a_sink_follows_the_source_nacks_what_it_cannot_read_and_survives_a_restart() {
    let (publish, snapshots) = watch::channel(snapshot(1, vec![virtual_service("a", "1")]));
    let metrics = SourceMetrics::default();
    let (address, server) = serve("127.0.0.1:0".parse().expect("address"), snapshots, metrics.clone()).await;

    let (changes_sender, mut changes) = mpsc::unbounded_channel();
    let subscription = Subscription {
        sink_id: "test".to_string(),
        collections: vec![VIRTUAL_SERVICES.to_string()],
        incremental: false,
    };
    let sink = Recorder { held: ObjectCollections::default(), changes: changes_sender };
    let mut sink_registry = prometheus_client::registry::Registry::default();
    let sink_metrics = SinkMetrics::register(&mut sink_registry, "pilot");
    let sink_task = tokio::spawn(istio_mcp::sink::run(address.to_string(), subscription, sink, sink_metrics.clone()));

    assert_eq!(next_change(&mut changes).await, "+a@1");
    publish.send_replace(snapshot(2, vec![virtual_service("a", "2"), virtual_service("b", "1")]));
    let mut seen = vec![next_change(&mut changes).await, next_change(&mut changes).await];
    seen.sort();
    assert_eq!(seen, ["+b@1", "~a@2"]);

    // A resource without a body cannot be read: the rest is taken, the response NACKed.
    let broken = Resource { body: None, ..virtual_service("c", "1") };
    publish.send_replace(snapshot(3, vec![virtual_service("a", "2"), virtual_service("b", "1"), broken]));
    let label = SourceMetrics::label(VIRTUAL_SERVICES);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let nack = NackLabels { collection: label.collection.clone(), component: label.component, code: "InvalidArgument" };
    while metrics.nacks.get_or_create(&nack).get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the source never saw the NACK");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.acks.get_or_create(&label).get() >= 2);

    // The source goes away (its listener and, with its snapshots gone, its streams) and comes
    // back on the same address, as a new process would, without `b`.
    server.abort();
    let _ = server.await;
    drop(publish);
    let (_publish_again, snapshots_again) = watch::channel(snapshot(1, vec![virtual_service("a", "2")]));
    let (_, restarted) = serve(address, snapshots_again, SourceMetrics::default()).await;
    assert_eq!(next_change(&mut changes).await, "-b");

    // The sink counted as 1.4's reporter did: two streams opened, its ACKs and its NACK, the
    // sizes of what it received.
    let reconnections = sink_metrics.reconnections.get_or_create(&ComponentLabel { component: "pilot" }).get();
    assert_eq!(reconnections, 2);
    let sink_label = McpLabels { collection: VIRTUAL_SERVICES.to_string(), component: "pilot" };
    assert!(sink_metrics.acks.get_or_create(&sink_label).get() >= 3);
    let sink_nack = NackLabels { code: "InvalidArgument", ..nack.clone() };
    assert_eq!(sink_metrics.nacks.get_or_create(&NackLabels { component: "pilot", ..sink_nack }).get(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &sink_registry).expect("encode");
    for expected in [
        r#"istio_mcp_reconnections{component="pilot"} 2"#,
        r#"istio_mcp_request_nacks_total{collection="istio/networking/v1alpha3/virtualservices",component="pilot",code="InvalidArgument"} 1"#,
        r#"istio_mcp_message_sizes_bytes_count{collection="istio/networking/v1alpha3/virtualservices",component="pilot"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    drop(changes);
    sink_task.abort();
    restarted.abort();
}
