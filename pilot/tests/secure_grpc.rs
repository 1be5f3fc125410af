//! `--secureGrpcAddr`: the same ADS over mutual TLS. A proxy presenting a certificate from the
//! mesh root gets its config; one without a certificate is turned away.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::fixtures::ServiceEntry;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use pilot::{Config, ConfigSource, SecureGrpc, SourceSettings};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn service() -> String {
    ServiceEntry::new("reviews", "default")
        .host("reviews.default.svc.cluster.local")
        .port(9080, "http", "HTTP")
        .endpoint("10.1.0.7")
        .to_string()
}

async fn first_cds(address: SocketAddr, tls: ClientTlsConfig) -> Result<DiscoveryResponse, String> {
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let request = DiscoveryRequest {
        node: Some(Node {
            id: "sidecar~10.1.0.9~productpage-1.default~default.svc.cluster.local".into(),
            ..Default::default()
        }),
        type_url: istio_xds::type_url::CLUSTER.into(),
        ..Default::default()
    };
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    sender.send(request).map_err(|e| e.to_string())?;
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .map_err(|e| format!("stream: {e}"))?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .map_err(|_| "no response".to_string())?
        .map_err(|e| format!("response: {e}"))?;
    first.ok_or_else(|| "stream closed".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_xds_requires_a_mesh_certificate() {
    let config = tempfile::tempdir().expect("tempdir");
    std::fs::write(config.path().join("service.yaml"), service()).expect("write");
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    ca.write_root(certs.path(), "root-cert.pem");
    let (chain, key) = ca.issue(&["istio-pilot.istio-system"]);
    std::fs::write(certs.path().join("cert-chain.pem"), chain).expect("write");
    std::fs::write(certs.path().join("key.pem"), key).expect("write");

    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let pilot = pilot::start(Config {
        source: ConfigSource::Directory(config.path().to_path_buf()),
        grpc_address: loopback,
        http_address: loopback,
        monitoring_address: loopback,
        settings: SourceSettings::default(),
        push_throttle: pilot::xds::ads::DEFAULT_PUSH_THROTTLE,
        secure_grpc: Some(SecureGrpc { address: loopback, cert_dir: certs.path().to_path_buf() }),
    })
    .await
    .expect("pilot starts");
    let secure = pilot.secure_grpc_address.expect("secure address");

    let root = Certificate::from_pem(ca.root_pem());
    let (client_chain, client_key) = ca.issue(&["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]);
    let with_identity = ClientTlsConfig::new()
        .ca_certificate(root.clone())
        .domain_name("istio-pilot.istio-system")
        .identity(Identity::from_pem(client_chain, client_key));
    let response = first_cds(secure, with_identity).await.expect("a mesh workload gets its clusters");
    assert!(response.resources.len() >= 3, "{response:?}");

    let anonymous = ClientTlsConfig::new().ca_certificate(root).domain_name("istio-pilot.istio-system");
    let refused = first_cds(secure, anonymous).await;
    assert!(refused.is_err(), "a client without a certificate must be refused: {refused:?}");
}
