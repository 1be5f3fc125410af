//! Protocols through the gateway, side by side on both data planes: gRPC (unary and
//! server-streaming, with status in trailers) over HTTP/2 end to end, a WebSocket upgrade
//! bridged both ways, TLS origination to a backend whose certificate is checked against a
//! DestinationRule's CA and subject alternative names, and Istio mutual TLS with the workload
//! certificate and root fetched over SDS (as from 1.4's node agent) and rotated while serving.

use std::time::{Duration, Instant};

use e2e::both_planes;
use e2e::certs::TestCa;
use e2e::gateway::{routes, service_on, GatewayMesh, Plane};
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use futures::{SinkExt, StreamExt};
use istio_xds::type_url;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A gRPC health server (tonic) on loopback, serving `istio.test` as SERVING.
fn grpc_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let (reporter, service) = tonic_health::server::health_reporter();
            reporter.set_service_status("istio.test", tonic_health::ServingStatus::Serving).await;
            listener.set_nonblocking(true).expect("nonblocking");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(
                tokio::net::TcpListener::from_std(listener).expect("listener"),
            );
            let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
        });
    });
    port
}

/// A WebSocket echo server (tokio-tungstenite) on loopback.
fn websocket_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
                    while let Some(Ok(message)) = socket.next().await {
                        if message.is_text() && socket.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    port
}

both_planes!(grpc_unary_and_streaming);
fn grpc_unary_and_streaming(plane: Plane) {
    let port = grpc_backend();
    let config = service_on("health", (9090, "grpc", "GRPC"), &[("v1", port)], "")
        + &routes(
            "health",
            "  - match: [{uri: {prefix: /grpc.health.v1.Health/}}]
    route: [{destination: {host: health.default.svc.cluster.local, port: {number: 9090}}}]
",
        );
    let mesh = GatewayMesh::start(plane, &config);
    let address = format!("http://127.0.0.1:{}", mesh.http_port);
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut client = loop {
            let attempt = async {
                let channel = tonic::transport::Channel::from_shared(address.clone())
                    .map_err(|e| e.to_string())?
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                let mut client = HealthClient::new(channel);
                client
                    .check(HealthCheckRequest { service: "istio.test".into() })
                    .await
                    .map_err(|status| status.to_string())?;
                Ok::<_, String>(client)
            };
            match attempt.await {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "{plane:?}: gRPC never worked: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let reply =
            client.check(HealthCheckRequest { service: "istio.test".into() }).await.expect("check").into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32);
        // A gRPC error travels in the trailers.
        let missing = client.check(HealthCheckRequest { service: "nope".into() }).await.expect_err("unknown service");
        assert_eq!(missing.code(), tonic::Code::NotFound, "{plane:?}: {missing:?}");
        // Server streaming: the first message of Watch arrives through the proxy.
        let mut stream =
            client.watch(HealthCheckRequest { service: "istio.test".into() }).await.expect("watch").into_inner();
        let first =
            tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("in time").expect("message");
        assert_eq!(first.map(|reply| reply.status), Some(ServingStatus::Serving as i32));
    });
}

both_planes!(websocket_upgrade_is_bridged);
fn websocket_upgrade_is_bridged(plane: Plane) {
    let port = websocket_backend();
    let config = service_on("echo", (8080, "http", "HTTP"), &[("v1", port)], "")
        + &routes(
            "echo",
            "  - match: [{uri: {prefix: /ws}}]
    route: [{destination: {host: echo.default.svc.cluster.local, port: {number: 8080}}}]
",
        );
    let mesh = GatewayMesh::start(plane, &config);
    let url = format!("ws://127.0.0.1:{}/ws", mesh.http_port);
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        let (mut socket, _) = loop {
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok(connected) => break connected,
                Err(error) => {
                    assert!(Instant::now() < deadline, "{plane:?}: the WebSocket upgrade never worked: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        for text in ["hello", "istio"] {
            socket.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("send");
            let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("in time");
            assert_eq!(
                echoed.and_then(Result::ok).map(|m| m.to_text().unwrap_or_default().to_string()),
                Some(text.to_string())
            );
        }
    });
}

both_planes!(tls_origination_checks_the_backend);
fn tls_origination_checks_the_backend(plane: Plane) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let root = ca.write_root(dir.path(), "root.pem");
    let files = ca.issue_files(dir.path(), "backend", &["secure.example.com"]);
    let port = e2e::backend::tls_backend(&files.cert, &files.key);
    let policy = |san: &str| {
        format!(
            "{{tls: {{mode: SIMPLE, caCertificates: {}, subjectAltNames: [{san}], sni: secure.example.com}}}}",
            root.display()
        )
    };
    let route = routes(
        "secure",
        "  - route: [{destination: {host: secure.default.svc.cluster.local, port: {number: 8443}}}]
",
    );
    let mesh = GatewayMesh::start(
        plane,
        &(service_on("secure", (8443, "http", "HTTP"), &[("v1", port)], &policy("secure.example.com")) + &route),
    );
    let reply = mesh.wait_for("TLS origination", "/", &[], |reply| reply.status == 200);
    assert_eq!(reply.body, "tls-backend");
    // A certificate without the expected name is refused.
    mesh.apply(
        "config.yaml",
        &(service_on("secure", (8443, "http", "HTTP"), &[("v1", port)], &policy("other.example.com")) + &route),
    );
    let reply = mesh.wait_for("the SAN check", "/", &[], |reply| reply.status == 503);
    assert!(reply.body.contains("upstream connect error"), "{plane:?}: {reply:?}");
}

/// An SDS server on a Unix socket, as 1.4's node agent serves the workload certificate
/// (`default`) and the mesh root (`ROOTCA`). Each stream gets the secrets it names, and again
/// whenever they change.
struct SdsServer {
    secrets: tokio::sync::watch::Sender<(u64, std::collections::HashMap<String, Secret>)>,
}

type ResponseStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[derive(Clone)]
struct SdsService(tokio::sync::watch::Receiver<(u64, std::collections::HashMap<String, Secret>)>);

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_secrets(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamSecretsStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let mut secrets = self.0.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut names: Vec<String> = Vec::new();
            let mut nonce = 0u64;
            loop {
                let send = tokio::select! {
                    request = inbound.message() => match request {
                        Ok(Some(request)) if request.resource_names != names => {
                            names = request.resource_names;
                            true
                        }
                        Ok(Some(_)) => false,
                        _ => return,
                    },
                    changed = secrets.changed() => changed.is_ok(),
                };
                if !send || names.is_empty() {
                    continue;
                }
                let (version, current) = secrets.borrow_and_update().clone();
                let resources = names
                    .iter()
                    .filter_map(|name| current.get(name))
                    .map(|secret| envoy_types::pb::google::protobuf::Any {
                        type_url: type_url::SECRET.to_string(),
                        value: prost::Message::encode_to_vec(secret),
                    })
                    .collect();
                nonce += 1;
                let response = DiscoveryResponse {
                    version_info: version.to_string(),
                    resources,
                    type_url: type_url::SECRET.to_string(),
                    nonce: nonce.to_string(),
                    ..Default::default()
                };
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn delta_secrets(
        &self,
        _request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaSecretsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("delta SDS"))
    }

    async fn fetch_secrets(
        &self,
        _request: tonic::Request<DiscoveryRequest>,
    ) -> Result<tonic::Response<DiscoveryResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fetch SDS"))
    }
}

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    })
}

impl SdsServer {
    fn start(socket: &std::path::Path) -> SdsServer {
        let (secrets, receiver) = tokio::sync::watch::channel((0, std::collections::HashMap::new()));
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the SDS socket");
        std::thread::spawn(move || {
            runtime().block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(
                    tokio::net::UnixListener::from_std(listener).expect("listener"),
                );
                let _ = tonic::transport::Server::builder()
                    .add_service(SecretDiscoveryServiceServer::new(SdsService(receiver)))
                    .serve_with_incoming(incoming)
                    .await;
            });
        });
        SdsServer { secrets }
    }

    fn set(&self, secret: Secret) {
        self.secrets.send_modify(|(version, secrets)| {
            *version += 1;
            secrets.insert(secret.name.clone(), secret);
        });
    }

    fn set_certificate(&self, name: &str, (cert, key): (String, String)) {
        self.set(Secret {
            name: name.to_string(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&cert),
                private_key: inline(&key),
                ..Default::default()
            })),
        });
    }

    fn set_root(&self, name: &str, root: &str) {
        self.set(Secret {
            name: name.to_string(),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline(root),
                ..Default::default()
            })),
        });
    }
}

both_planes!(istio_mutual_over_sds_follows_rotation);
fn istio_mutual_over_sds_follows_rotation(plane: Plane) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mesh_ca, other_ca) = (TestCa::new(), TestCa::new());
    let root = mesh_ca.write_root(dir.path(), "root.pem");
    let files = mesh_ca.issue_files(dir.path(), "backend", &["spiffe://cluster.local/ns/default/sa/secure"]);
    // The backend accepts only clients with a certificate from the mesh CA.
    let port = e2e::backend::mtls_backend(&files.cert, &files.key, &root);
    let socket = dir.path().join("sds.sock");
    let sds = SdsServer::start(&socket);
    let workload = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    sds.set_certificate("default", mesh_ca.issue(&[workload]));
    sds.set_root("ROOTCA", &mesh_ca.root_pem());

    let config = service_on("secure", (8443, "http", "HTTP"), &[("v1", port)], "{tls: {mode: ISTIO_MUTUAL}}")
        + &routes(
            "secure",
            "  - route: [{destination: {host: secure.default.svc.cluster.local, port: {number: 8443}}}]
",
        );
    let uds = format!("unix:{}", socket.display());
    let mesh = GatewayMesh::start_with_agent(plane, &config, &["--sdsUdsPath", &uds], &[("ISTIO_META_SDS", "true")]);
    let reply = mesh.wait_for("mutual TLS with SDS certificates", "/", &[], |reply| reply.status == 200);
    assert_eq!(reply.body, "tls-backend");
    let secrets = e2e::gateway::request(mesh.admin_port, "GET", "/config_dump?resource=dynamic_active_secrets", &[]);
    assert!(secrets.body.contains("\"default\"") && secrets.body.contains("\"ROOTCA\""), "{plane:?}: {}", secrets.body);
    assert!(!secrets.body.contains("PRIVATE KEY"), "{plane:?}: the private key is shown: {}", secrets.body);

    // A root that did not sign the backend's certificate: new connections are refused.
    sds.set_root("ROOTCA", &other_ca.root_pem());
    mesh.wait_for("the rotated root", "/", &[], |reply| reply.status == 503);
    sds.set_root("ROOTCA", &mesh_ca.root_pem());
    mesh.wait_for("the restored root", "/", &[], |reply| reply.status == 200);
    // A workload certificate the backend does not trust.
    sds.set_certificate("default", other_ca.issue(&[workload]));
    mesh.wait_for("the rotated workload certificate", "/", &[], |reply| reply.status == 503);
    sds.set_certificate("default", mesh_ca.issue(&[workload]));
    mesh.wait_for("the restored workload certificate", "/", &[], |reply| reply.status == 200);
}
