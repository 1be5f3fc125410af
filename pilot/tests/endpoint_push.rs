//! What a state-of-the-world ADS client is sent when only endpoints change, and after: Pilot
//! (in-process, on loopback, reading a config directory) serves two ServiceEntries; a client
//! that behaves like Envoy (CDS and LDS, then EDS and RDS for the names they give, ACKing
//! everything) must get exactly the changed cluster's new assignment when one service's
//! endpoints move, nothing when an unrelated file is touched, and the new routes when a
//! VirtualService changes afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use istio_xds::type_url;
use pilot::{Config, ConfigSource, SourceSettings};
use prost::Message;
use tokio::sync::mpsc;

fn service_entry(name: &str, address: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  addresses: [10.96.7.{}]\n  ports: [{{number: 8080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: {address}}}]\n",
        name.len()
    )
}

fn virtual_service(timeout: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {{name: a, namespace: default}}\nspec:\n  hosts: [a.default.svc.cluster.local]\n  http:\n  - timeout: {timeout}\n    route: [{{destination: {{host: a.default.svc.cluster.local}}}}]\n"
    )
}

/// The sidecar's side of the stream: requests out, responses in.
struct Client {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
    eds_names: Vec<String>,
    route_names: Vec<String>,
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        let mut ads = AggregatedDiscoveryServiceClient::connect(format!("http://{address}")).await.expect("connect");
        let (requests, receiver) = mpsc::unbounded_channel();
        let node =
            Node { id: "sidecar~10.77.0.1~client-1.default~default.svc.cluster.local".into(), ..Default::default() };
        requests
            .send(DiscoveryRequest { node: Some(node), type_url: type_url::CLUSTER.into(), ..Default::default() })
            .expect("send");
        requests.send(DiscoveryRequest { type_url: type_url::LISTENER.into(), ..Default::default() }).expect("send");
        let responses = ads
            .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
            .await
            .expect("stream")
            .into_inner();
        Client { requests, responses, eds_names: Vec::new(), route_names: Vec::new() }
    }

    /// The next response, ACKed with the names subscribed to, or `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<DiscoveryResponse> {
        let response = tokio::time::timeout(wait, self.responses.message()).await.ok()?.expect("stream").expect("open");
        let names = match response.type_url.as_str() {
            type_url::ENDPOINT => self.eds_names.clone(),
            type_url::ROUTE => self.route_names.clone(),
            _ => Vec::new(),
        };
        self.requests
            .send(DiscoveryRequest {
                type_url: response.type_url.clone(),
                version_info: response.version_info.clone(),
                response_nonce: response.nonce.clone(),
                resource_names: names,
                ..Default::default()
            })
            .expect("ack");
        Some(response)
    }

    fn subscribe(&mut self, eds_names: Vec<String>, route_names: Vec<String>) {
        for (type_url, names) in [(type_url::ENDPOINT, &eds_names), (type_url::ROUTE, &route_names)] {
            let request =
                DiscoveryRequest { type_url: type_url.into(), resource_names: names.clone(), ..Default::default() };
            self.requests.send(request).expect("subscribe");
        }
        (self.eds_names, self.route_names) = (eds_names, route_names);
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write config");
}

/// Starts Pilot on `dir` with `settings` and a client that has taken its first config like
/// Envoy (CDS and LDS, then EDS for the EDS clusters and RDS for the HTTP port).
async fn start(dir: &Path, settings: SourceSettings) -> (pilot::Running, Client) {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let pilot = pilot::start(Config {
        source: ConfigSource::Directory(dir.to_path_buf()),
        grpc_address: loopback,
        http_address: loopback,
        monitoring_address: loopback,
        settings,
        push_throttle: pilot::xds::ads::DEFAULT_PUSH_THROTTLE,
        secure_grpc: None,
    })
    .await
    .expect("pilot starts");
    let mut client = Client::connect(pilot.grpc_address).await;
    let wait = Duration::from_secs(10);
    let mut eds_names = Vec::new();
    for _ in 0..2 {
        let response = client.next(wait).await.expect("CDS or LDS");
        if response.type_url == type_url::CLUSTER {
            eds_names = response
                .resources
                .iter()
                .map(|any| Cluster::decode(any.value.as_slice()).expect("cluster"))
                .filter(|cluster| cluster.eds_cluster_config.is_some())
                .map(|cluster| cluster.name)
                .collect();
        }
    }
    assert!(eds_names.contains(&"outbound|8080||a.default.svc.cluster.local".to_string()), "{eds_names:?}");
    client.subscribe(eds_names, vec!["8080".to_string()]);
    let mut answered: Vec<String> = Vec::new();
    for _ in 0..2 {
        answered.push(client.next(wait).await.expect("EDS or RDS").type_url);
    }
    answered.sort();
    assert_eq!(answered, [type_url::ENDPOINT, type_url::ROUTE]);
    (pilot, client)
}

fn mesh(dir: &Path) {
    write(dir, "a.yaml", &service_entry("a", "10.88.0.1"));
    write(dir, "bb.yaml", &service_entry("bb", "10.88.0.2"));
    write(dir, "vs.yaml", &virtual_service("5s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_move_sends_the_changed_assignment_alone_and_later_changes_still_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    mesh(dir.path());
    let settings = SourceSettings { debounce_after: Duration::from_millis(20), ..SourceSettings::default() };
    let (pilot, mut client) = start(dir.path(), settings).await;
    let wait = Duration::from_secs(10);
    // Nothing more until something changes.
    assert!(client.next(Duration::from_millis(500)).await.is_none());

    // One service's endpoint moves: one EDS response, with that cluster's assignment alone.
    write(dir.path(), "a.yaml", &service_entry("a", "10.88.0.9"));
    let response = client.next(wait).await.expect("a response to the move");
    assert_eq!(response.type_url, type_url::ENDPOINT);
    let assignments: Vec<ClusterLoadAssignment> = response
        .resources
        .iter()
        .map(|any| ClusterLoadAssignment::decode(any.value.as_slice()).expect("assignment"))
        .collect();
    assert_eq!(assignments.len(), 1, "{assignments:?}");
    assert_eq!(assignments[0].cluster_name, "outbound|8080||a.default.svc.cluster.local");
    assert!(format!("{:?}", assignments[0]).contains("10.88.0.9"), "{:?}", assignments[0]);
    assert!(client.next(Duration::from_millis(500)).await.is_none(), "only EDS changed");

    // A route change after the endpoint-only push still reaches the client.
    write(dir.path(), "vs.yaml", &virtual_service("7s"));
    let response = client.next(wait).await.expect("a response to the route change");
    assert_eq!(response.type_url, type_url::ROUTE);
    let routes = RouteConfiguration::decode(response.resources[0].value.as_slice()).expect("routes");
    assert!(format!("{routes:?}").contains("seconds: 7"), "{routes:?}");
    assert!(client.next(Duration::from_millis(500)).await.is_none(), "only RDS changed");
    pilot.shutdown();
}

/// With `PILOT_ENABLE_EDS_DEBOUNCE=false`, an endpoint change does not wait for the quiet period
/// (three seconds here); config still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_eds_debounce_an_endpoint_move_is_pushed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    mesh(dir.path());
    let quiet = Duration::from_secs(3);
    let settings = SourceSettings { debounce_after: quiet, eds_debounce: false, ..SourceSettings::default() };
    let (pilot, mut client) = start(dir.path(), settings).await;
    let moved = std::time::Instant::now();
    write(dir.path(), "a.yaml", &service_entry("a", "10.88.0.9"));
    let response = client.next(quiet).await.expect("the move, before the quiet period ends");
    assert_eq!(response.type_url, type_url::ENDPOINT);
    assert!(moved.elapsed() < quiet, "{:?}", moved.elapsed());

    let changed = std::time::Instant::now();
    write(dir.path(), "vs.yaml", &virtual_service("7s"));
    let response = client.next(Duration::from_secs(10)).await.expect("the route change");
    assert_eq!(response.type_url, type_url::ROUTE);
    assert!(changed.elapsed() >= quiet, "config waits for the quiet period: {:?}", changed.elapsed());
    pilot.shutdown();
}
