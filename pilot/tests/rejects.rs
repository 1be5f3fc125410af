//! A proxy that rejects a push (a NACK with an error) is counted under 1.4's names: the
//! `pilot_total_xds_rejects` counter, and `pilot_xds_cds_reject{node, err}` (and the same for
//! eds, lds, rds) set for that proxy and the error's gRPC code name, as 1.4's Pilot dashboard
//! reads them; the message itself is in `/debug/syncz`. The next push sends the rejected type
//! again even when its content has not changed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::fixtures::ServiceEntry;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use pilot::{Config, ConfigSource, SourceSettings};

const NODE: &str = "sidecar~10.1.0.9~productpage-1.default~default.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_push_is_counted_by_type_proxy_and_error() {
    let config = tempfile::tempdir().expect("tempdir");
    let service = ServiceEntry::new("reviews", "default")
        .host("reviews.default.svc.cluster.local")
        .port(9080, "http", "HTTP")
        .endpoint("10.1.0.7")
        .to_string();
    std::fs::write(config.path().join("service.yaml"), service).expect("write");
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let pilot = pilot::start(Config {
        source: ConfigSource::Directory(config.path().to_path_buf()),
        grpc_address: loopback,
        http_address: loopback,
        monitoring_address: loopback,
        settings: SourceSettings::default(),
        push_throttle: pilot::xds::ads::DEFAULT_PUSH_THROTTLE,
        secure_grpc: None,
    })
    .await
    .expect("pilot starts");

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let request = |nonce: String, error: Option<Status>| DiscoveryRequest {
        node: Some(Node { id: NODE.into(), ..Default::default() }),
        type_url: istio_xds::type_url::CLUSTER.into(),
        response_nonce: nonce,
        error_detail: error,
        ..Default::default()
    };
    sender.send(request(String::new(), None)).expect("send");
    let mut responses = AggregatedDiscoveryServiceClient::connect(format!("http://{}", pilot.grpc_address))
        .await
        .expect("connect")
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .expect("stream")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("a response")
        .expect("no error")
        .expect("open");
    let error = Status { code: 3, message: "cluster outbound|9080||reviews: bad timeout".into(), details: Vec::new() };
    sender.send(request(first.nonce.clone(), Some(error))).expect("NACK");

    let monitoring = pilot.monitoring_address.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = e2e::http_get(&monitoring, "/metrics");
        let counted = text.contains("\npilot_total_xds_rejects 1\n");
        let by_proxy = text.contains(&format!("pilot_xds_cds_reject{{node=\"{NODE}\",err=\"InvalidArgument\"}} 1\n"));
        if counted && by_proxy {
            assert!(text.contains("# TYPE pilot_total_xds_rejects counter"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the NACK was not counted as 1.4 did:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, syncz) = e2e::http_get(&pilot.http_address.to_string(), "/debug/syncz");
    assert!(syncz.contains("bad timeout"), "{syncz}");

    // A change that leaves the clusters as they were: the rejected clusters come again.
    let route = "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - timeout: 3s
    route:
    - destination: {host: reviews.default.svc.cluster.local}
";
    std::fs::write(config.path().join("route.yaml"), route).expect("write");
    let again = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("the rejected clusters are sent again")
        .expect("no error")
        .expect("open");
    assert_eq!(again.type_url, istio_xds::type_url::CLUSTER);
    assert_eq!(again.resources, first.resources, "the same clusters, whole");
    pilot.shutdown();
}
