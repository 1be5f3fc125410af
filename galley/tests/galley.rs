//! Galley end to end, in-process on loopback: the MCP stream (initial snapshot, update after a
//! file edit, last good version kept after an invalid edit, incremental updates, NACKs), the
//! validation webhook over HTTPS with AdmissionReview v1 and v1beta1, and the metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use galley::{Config, Running, SnapshotSettings, Source, WebhookConfig};
use http_body_util::{BodyExt, Full};
use istio_api::pb::istio::mcp::v1alpha1::resource_source_client::ResourceSourceClient;
use istio_api::pb::istio::mcp::v1alpha1::{RequestResources, Resources};
use istio_api::pb::istio::networking::v1alpha3::VirtualService;
use istio_pki::ca::{CertificateAuthority, LeafRequest};
use istio_pki::files::CertDir;
use prost::Message;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tonic::Streaming;

const VIRTUAL_SERVICES: &str = "istio/networking/v1alpha3/virtualservices";

fn virtual_service(name: &str, v1_weight: i32, v2_weight: i32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}, subset: v1}}\n      weight: {v1_weight}\n    - destination: {{host: {name}, subset: v2}}\n      weight: {v2_weight}\n"
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    config_dir: std::path::PathBuf,
    ca_pem: String,
    galley: Running,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(config_dir.join("reviews.yaml"), virtual_service("reviews", 50, 50)).expect("write");
    std::fs::write(config_dir.join("ratings.yaml"), virtual_service("ratings", 100, 0)).expect("write");
    std::fs::write(
        config_dir.join("services.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  clusterIP: 10.96.0.12\n  ports: [{name: http, port: 9080}]\n",
    )
    .expect("write");
    let ca = CertificateAuthority::self_signed("galley test CA").expect("CA");
    let issued = ca.issue(&LeafRequest::for_names(["localhost"])).expect("certificate");
    let certs = CertDir::new(dir.path());
    certs.write_serving(issued.cert_chain_pem.as_bytes(), issued.key_pem.as_bytes()).expect("write");
    let (cert_path, key_path) = (certs.cert_chain(), certs.key());
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let galley = galley::start(Config {
        source: Source::Directory(config_dir.clone()),
        mcp_address: loopback,
        monitoring_address: loopback,
        webhook: Some(WebhookConfig { address: loopback, cert_chain: cert_path, key: key_path }),
        registration: None,
        snapshot: SnapshotSettings::default(),
        enable_analysis: true,
    })
    .await
    .expect("galley starts");
    Fixture { _dir: dir, config_dir, ca_pem: ca.root_pem().to_string(), galley }
}

/// An MCP sink for one collection.
struct Sink {
    requests: mpsc::UnboundedSender<RequestResources>,
    responses: Streaming<Resources>,
}

impl Sink {
    async fn connect(address: SocketAddr, collection: &str, incremental: bool) -> Sink {
        let mut client = ResourceSourceClient::connect(format!("http://{address}")).await.expect("connect");
        let (requests, receiver) = mpsc::unbounded_channel();
        requests
            .send(RequestResources { collection: collection.to_string(), incremental, ..Default::default() })
            .expect("send");
        let responses = client
            .establish_resource_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
            .await
            .expect("stream")
            .into_inner();
        Sink { requests, responses }
    }

    async fn next(&mut self) -> Resources {
        tokio::time::timeout(Duration::from_secs(5), self.responses.message())
            .await
            .expect("a response in time")
            .expect("stream healthy")
            .expect("stream open")
    }

    async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(message) = tokio::time::timeout(wait, self.responses.message()).await {
            panic!("expected no push, got {message:?}");
        }
    }

    fn ack(&self, response: &Resources) {
        self.requests
            .send(RequestResources {
                collection: response.collection.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            })
            .expect("ack");
    }

    fn nack(&self, response: &Resources) {
        self.requests
            .send(RequestResources {
                collection: response.collection.clone(),
                response_nonce: response.nonce.clone(),
                error_detail: Some(istio_api::pb::google::rpc::Status {
                    code: 3,
                    message: "rejected by test".into(),
                    details: vec![],
                }),
                ..Default::default()
            })
            .expect("nack");
    }
}

fn weights(response: &Resources, name: &str) -> Vec<i32> {
    let resource = response
        .resources
        .iter()
        .find(|resource| resource.metadata.as_ref().is_some_and(|m| m.name == name))
        .unwrap_or_else(|| panic!("{name} in {response:?}"));
    let body = resource.body.as_ref().expect("body");
    assert_eq!(body.type_url, "type.googleapis.com/istio.networking.v1alpha3.VirtualService");
    let vs = VirtualService::decode(body.value.as_slice()).expect("decode");
    vs.http[0].route.iter().map(|route| route.weight).collect()
}

fn names(response: &Resources) -> Vec<String> {
    response.resources.iter().filter_map(|r| r.metadata.as_ref().map(|m| m.name.clone())).collect()
}

async fn metrics(address: SocketAddr) -> String {
    http_get(address, "/metrics").await
}

async fn http_get(address: SocketAddr, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let request =
        http::Request::get(path).header("host", "localhost").body(Full::new(bytes::Bytes::new())).expect("request");
    let response = sender.send_request(request).await.expect("response");
    String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8")
}

async fn wait_for_metric(address: SocketAddr, fragment: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(address).await;
        if text.lines().any(|line| line.contains(fragment)) {
            return;
        }
        assert!(Instant::now() < deadline, "metric {fragment:?} never appeared:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The codes and origins at `/debug/analysis`, once they satisfy `done`.
async fn analysis_until(address: SocketAddr, done: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body: Value = serde_json::from_str(&http_get(address, "/debug/analysis").await).expect("json");
        let found: Vec<(String, String)> = body
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| (m["code"].as_str().unwrap_or("").to_string(), m["origin"].as_str().unwrap_or("").to_string()))
            .collect();
        if done(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "analysis never settled: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--enableAnalysis`: the analyzers run over each published snapshot, and the findings
/// follow the config as it is edited.
#[tokio::test]
async fn analysis_follows_the_config() {
    let fixture = start().await;
    let address = fixture.galley.monitoring_address;
    let found = analysis_until(address, |found| !found.is_empty()).await;
    let reviews = ("IST0101".to_string(), "VirtualService reviews.default".to_string());
    let ratings = ("IST0101".to_string(), "VirtualService ratings.default".to_string());
    assert!(found.contains(&reviews) && found.contains(&ratings), "{found:?}");
    // ratings has no Service: its host is unknown, as are its subsets.
    let ratings_count = found.iter().filter(|pair| **pair == ratings).count();
    assert_eq!(ratings_count, 4, "{found:?}");

    // reviews gets its subsets: its messages go; ratings' stay.
    std::fs::write(
        fixture.config_dir.join("reviews-rule.yaml"),
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n",
    )
    .expect("write");
    let found = analysis_until(address, |found| !found.contains(&reviews)).await;
    assert!(found.contains(&ratings), "{found:?}");
}

#[tokio::test]
async fn mcp_serves_snapshot_then_updates_and_keeps_last_good_version() {
    let fixture = start().await;
    let mut sink = Sink::connect(fixture.galley.mcp_address, VIRTUAL_SERVICES, false).await;
    let initial = sink.next().await;
    assert!(!initial.incremental);
    assert_eq!(names(&initial), vec!["default/ratings", "default/reviews"]);
    assert_eq!(weights(&initial, "default/reviews"), vec![50, 50]);
    sink.ack(&initial);

    // An edit on disk reaches the sink.
    let edited_at = Instant::now();
    std::fs::write(fixture.config_dir.join("reviews.yaml"), virtual_service("reviews", 80, 20)).expect("write");
    let update = sink.next().await;
    eprintln!("edit reached the MCP sink after {:?}", edited_at.elapsed());
    assert_eq!(weights(&update, "default/reviews"), vec![80, 20]);
    assert_ne!(update.system_version_info, initial.system_version_info);
    sink.ack(&update);

    // An invalid edit is not served: no push, and it is counted.
    std::fs::write(fixture.config_dir.join("reviews.yaml"), virtual_service("reviews", 70, 20)).expect("write");
    wait_for_metric(
        fixture.galley.monitoring_address,
        "galley_source_invalid_objects_total{collection=\"istio/networking/v1alpha3/virtualservices\"} 1",
    )
    .await;
    sink.expect_silence(Duration::from_millis(300)).await;

    // The next valid change elsewhere in the collection still carries the last good reviews.
    std::fs::write(fixture.config_dir.join("ratings.yaml"), virtual_service("ratings", 0, 100)).expect("write");
    let later = sink.next().await;
    assert_eq!(weights(&later, "default/ratings"), vec![0, 100]);
    assert_eq!(weights(&later, "default/reviews"), vec![80, 20], "last good version kept");

    // Broken YAML is reported and loses nothing.
    std::fs::write(fixture.config_dir.join("ratings.yaml"), "kind: [\n").expect("write");
    wait_for_metric(fixture.galley.monitoring_address, "galley_source_errors_total 1").await;
    sink.ack(&later);
    sink.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn incremental_sinks_get_only_changes_and_nacks_are_counted() {
    let fixture = start().await;
    let mut sink = Sink::connect(fixture.galley.mcp_address, VIRTUAL_SERVICES, true).await;
    let initial = sink.next().await;
    assert_eq!(names(&initial).len(), 2);
    sink.ack(&initial);

    std::fs::write(fixture.config_dir.join("reviews.yaml"), virtual_service("reviews", 10, 90)).expect("write");
    let update = sink.next().await;
    assert!(update.incremental);
    assert_eq!(names(&update), vec!["default/reviews"]);
    sink.ack(&update);

    std::fs::remove_file(fixture.config_dir.join("ratings.yaml")).expect("remove");
    let removal = sink.next().await;
    assert!(removal.incremental && removal.resources.is_empty());
    assert_eq!(removal.removed_resources, vec!["default/ratings"]);
    sink.nack(&removal);
    wait_for_metric(
        fixture.galley.monitoring_address,
        "istio_mcp_request_nacks_total{collection=\"istio/networking/v1alpha3/virtualservices\",component=\"galley\",code=\"InvalidArgument\"} 1",
    )
    .await;

    // Synthetic service entries and the mesh config are served too.
    let mut synthetic =
        Sink::connect(fixture.galley.mcp_address, istio_api::kinds::SYNTHETIC_SERVICE_ENTRIES, false).await;
    assert_eq!(names(&synthetic.next().await), vec!["default/reviews"]);
    let mut mesh = Sink::connect(fixture.galley.mcp_address, istio_api::kinds::MESH_CONFIG, false).await;
    assert_eq!(mesh.next().await.resources.len(), 1);
}

/// POSTs `body` with `content_type` to the webhook; returns the status and the body.
async fn post_raw(fixture: &Fixture, path: &str, content_type: &str, body: Vec<u8>) -> (u16, bytes::Bytes) {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(fixture.ca_pem.as_bytes()).expect("ca");
    roots.add(ca).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = fixture.galley.webhook_address.expect("webhook");
    let tcp = tokio::net::TcpStream::connect(address).await.expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(server_name, tcp).await.expect("TLS handshake with the webhook");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header("host", "istio-galley.istio-system.svc")
        .header("content-type", content_type)
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.expect("body").to_bytes())
}

async fn post_review(fixture: &Fixture, path: &str, review: &Value) -> Value {
    let body = serde_json::to_vec(review).expect("json");
    let (status, answer) = post_raw(fixture, path, "application/json", body).await;
    assert_eq!(status, 200);
    serde_json::from_slice(&answer).expect("json response")
}

fn review(api_version: &str, object: Value) -> Value {
    json!({"apiVersion": api_version, "kind": "AdmissionReview",
           "request": {"uid": "7f0b2891-916f-4ed6-b7cd-27bff1815a8c", "operation": "CREATE", "namespace": "default", "object": object}})
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn webhook_admits_valid_and_denies_invalid_config() {
    let fixture = start().await;
    let invalid = json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService", "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 70},
                                                            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]}});
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let answer = post_review(&fixture, "/admitpilot", &review(version, invalid.clone())).await;
        assert_eq!(answer["apiVersion"], version);
        assert_eq!(answer["response"]["uid"], "7f0b2891-916f-4ed6-b7cd-27bff1815a8c");
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let message = answer["response"]["status"]["message"].as_str().expect("message");
        assert!(
            message.contains("VirtualService default/reviews")
                && message.contains("spec.http[0].route: total destination weight 90 != 100"),
            "{message}"
        );
    }
    let mut valid = invalid.clone();
    valid["spec"]["http"][0]["route"][0]["weight"] = json!(80);
    let answer = post_review(&fixture, "/admitpilot", &review("admission.k8s.io/v1", valid.clone())).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // A cluster-scoped kind keeps no namespace, whatever namespace the request names.
    let mesh_policy = json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": {"name": "default"}, "spec": {"peers": [{"mtls": {}}]}});
    let answer = post_review(&fixture, "/admitpilot", &review("admission.k8s.io/v1", mesh_policy)).await;
    assert_eq!(answer["response"]["allowed"], true, "the docs' MeshPolicy: {answer}");
    // A pilot kind sent to the mixer webhook is not recognized there.
    let answer = post_review(&fixture, "/admitmixer", &review("admission.k8s.io/v1", valid)).await;
    assert_eq!(answer["response"]["allowed"], false);
    let rule = json!({"apiVersion": "config.istio.io/v1alpha2", "kind": "rule", "metadata": {"name": "deny"},
        "spec": {"match": "destination.labels[\"app\"] ==", "actions": [{"handler": "h", "instances": ["i"]}]}});
    let answer = post_review(&fixture, "/admitmixer", &review("admission.k8s.io/v1beta1", rule)).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"].as_str().unwrap_or_default().contains("spec.match"), "{answer}");
    wait_for_metric(fixture.galley.monitoring_address, "galley_validation_passed{").await;
    wait_for_metric(fixture.galley.monitoring_address, "galley_validation_failed{").await;
}

/// What the scripted API server was asked to write: each PUT's path and body.
type Patches = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A scripted API server: answers every list with the canned items for that path (empty when
/// none), keeps watch requests open, as a quiet cluster would, and records patches.
async fn scripted_api_server(
    mut handle: tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>,
    lists: Vec<(&'static str, Value)>,
    patches: Patches,
) {
    let mut open_watches = Vec::new();
    let mut failed_a_watch = false;
    while let Some((request, send)) = handle.next_request().await {
        let path = request.uri().path().to_string();
        if path.ends_with("/status") {
            // A status read answers with the object; a status update is recorded and echoed.
            let name = path.trim_end_matches("/status").rsplit('/').next().unwrap_or_default().to_string();
            let mut object = json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
                                    "metadata": {"name": name, "namespace": "default", "resourceVersion": "42"},
                                    "spec": {}});
            if request.method() == http::Method::PUT {
                use http_body_util::BodyExt;
                let body = request.into_body().collect().await.expect("body").to_bytes();
                object = serde_json::from_slice(&body).expect("JSON object");
                patches.lock().expect("patches").push((path.clone(), object.clone()));
            }
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(serde_json::to_vec(&object).expect("json")))
                    .expect("response"),
            );
            continue;
        }
        if request.uri().query().unwrap_or_default().contains("watch=true") {
            // The nodes watch fails once, as a watch does when the API server restarts.
            if path == "/api/v1/nodes" && !failed_a_watch {
                failed_a_watch = true;
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                                    "reason": "InternalError", "message": "etcd is restarting"});
                send.send_response(
                    http::Response::builder()
                        .status(500)
                        .body(kube::client::Body::from(serde_json::to_vec(&status).expect("json")))
                        .expect("response"),
                );
                continue;
            }
            open_watches.push(send);
            continue;
        }
        let items = lists
            .iter()
            .find(|(list_path, _)| *list_path == path)
            .map(|(_, items)| items.clone())
            .unwrap_or_else(|| json!([]));
        let body = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "100"}, "items": items});
        send.send_response(
            http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
    }
}

/// Galley on a scripted cluster holding the `reviews` VirtualService (subsets v1/v2, no
/// DestinationRule) and Service; returns it and what the cluster was asked to write.
async fn start_on_scripted_cluster(enable_analysis: bool) -> (Running, Patches) {
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let client = kube::Client::new(service, "default");
    let mut vs: Value = serde_yaml::from_str(&virtual_service("reviews", 50, 50)).expect("yaml");
    vs["metadata"]["resourceVersion"] = json!("42");
    let service_object = json!({"metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "43"},
        "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 9080}]}});
    let patches = Patches::default();
    tokio::spawn(scripted_api_server(
        handle,
        vec![
            ("/apis/networking.istio.io/v1alpha3/virtualservices", json!([vs])),
            ("/api/v1/services", json!([service_object])),
        ],
        patches.clone(),
    ));
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let galley = galley::start(Config {
        source: Source::Kubernetes(client),
        mcp_address: loopback,
        monitoring_address: loopback,
        webhook: None,
        snapshot: SnapshotSettings::default(),
        registration: None,
        enable_analysis,
    })
    .await
    .expect("galley starts");
    (galley, patches)
}

#[tokio::test]
async fn kubernetes_source_feeds_mcp() {
    let (galley, _) = start_on_scripted_cluster(false).await;
    let mut sink = Sink::connect(galley.mcp_address, VIRTUAL_SERVICES, false).await;
    let served = sink.next().await;
    assert_eq!(names(&served), vec!["default/reviews"]);
    assert_eq!(weights(&served, "default/reviews"), vec![50, 50]);
    let mut synthetic = Sink::connect(galley.mcp_address, istio_api::kinds::SYNTHETIC_SERVICE_ENTRIES, false).await;
    assert_eq!(names(&synthetic.next().await), vec!["default/reviews"]);
    // 1.4's source counters: the two objects taken and converted, the failed watch.
    wait_for_metric(galley.monitoring_address, "galley_source_kube_event_success_total 2").await;
    wait_for_metric(galley.monitoring_address, "galley_source_kube_dynamic_converter_success_total 2").await;
    wait_for_metric(galley.monitoring_address, "galley_source_kube_event_error_total 1").await;
}

/// With `--enableAnalysis` on Kubernetes, the findings are written to the objects'
/// `status.validationMessages` (1.4's status controller): the VirtualService whose subsets no
/// DestinationRule defines gets IST0101 through an update of its status subresource.
#[tokio::test]
async fn analysis_writes_validation_messages_to_the_objects_status() {
    let (_galley, patches) = start_on_scripted_cluster(true).await;
    let path = "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/reviews/status";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let found = patches.lock().expect("patches").iter().find(|(p, _)| p == path).map(|(_, body)| body.clone());
        if let Some(body) = found {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no status update: {:?}", patches.lock().expect("patches"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let messages = body["status"]["validationMessages"].as_array().expect("validationMessages");
    assert!(!messages.is_empty(), "{body}");
    assert!(
        messages.iter().all(|m| m["code"] == "IST0101" && m["level"] == "Error" && m.get("origin").is_none()),
        "{body}"
    );
    assert!(messages.iter().any(|m| m["message"].as_str().unwrap_or_default().contains("reviews")), "{body}");
}

/// 1.4's webhook edges: HTTP refusals by status, an undecodable review answered with a denial,
/// operations other than CREATE/UPDATE, unknown top-level fields, and each decision counted
/// with the request's resource and 1.4's reason.
#[tokio::test]
async fn webhook_counts_its_decisions_with_1_4s_reasons() {
    let fixture = start().await;
    let (status, _) = post_raw(&fixture, "/admitpilot", "application/json", Vec::new()).await;
    assert_eq!(status, 400, "no body");
    let (status, body) = post_raw(&fixture, "/admitpilot", "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415, "wrong content type");
    assert!(String::from_utf8_lossy(&body).contains("want `application/json`"));
    let (status, body) = post_raw(&fixture, "/admitmixer", "application/json", b"{not json".to_vec()).await;
    assert_eq!(status, 200, "an undecodable review is answered");
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"].as_str().unwrap_or_default().starts_with("could not decode body"));

    let resource = json!({"group": "networking.istio.io", "version": "v1alpha3", "resource": "virtualservices"});
    let request = |operation: &str, object: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": "u1", "operation": operation, "namespace": "default", "name": "reviews",
                           "resource": resource.clone(), "object": object}})
    };
    let valid = json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}});
    let answer = post_review(&fixture, "/admitpilot", &request("CREATE", valid.clone())).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // DELETE is not validated by the Pilot webhook: allowed, counted as unsupported.
    let answer = post_review(&fixture, "/admitpilot", &request("DELETE", Value::Null)).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // An unknown top-level field is refused, as 1.4's checkFields did.
    let mut extra = valid.clone();
    extra["specs"] = json!({});
    let answer = post_review(&fixture, "/admitpilot", &request("CREATE", extra)).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "unknown field \"specs\" on VirtualService resource default/reviews"
    );
    let answer = post_review(&fixture, "/admitpilot", &request("CREATE", json!("a string"))).await;
    assert_eq!(answer["response"]["allowed"], false, "an object that does not decode");
    // The Mixer webhook passes a named DELETE and refuses a nameless one.
    let rule_resource = json!({"group": "config.istio.io", "version": "v1alpha2", "resource": "rules"});
    let delete = |name: &str| {
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
               "request": {"uid": "u2", "operation": "DELETE", "namespace": "istio-system", "name": name,
                           "resource": rule_resource.clone()}})
    };
    assert_eq!(post_review(&fixture, "/admitmixer", &delete("promhttp")).await["response"]["allowed"], true);
    let answer = post_review(&fixture, "/admitmixer", &delete("")).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["message"], "illformed request: name not found on delete request");

    let text = metrics(fixture.galley.monitoring_address).await;
    let vs = r#"group="networking.istio.io",version="v1alpha3",resource="virtualservices""#;
    let rules = r#"group="config.istio.io",version="v1alpha2",resource="rules""#;
    for expected in [
        r#"galley_validation_http_error{status="400"} 1"#.to_string(),
        r#"galley_validation_http_error{status="415"} 1"#.to_string(),
        format!("galley_validation_passed{{{vs}}} 1"),
        format!(r#"galley_validation_failed{{{vs},reason="unsupported_operation"}} 1"#),
        format!(r#"galley_validation_failed{{{vs},reason="invalid_resource"}} 1"#),
        format!(r#"galley_validation_failed{{{vs},reason="yaml_decode_error"}} 1"#),
        format!("galley_validation_passed{{{rules}}} 1"),
        format!(r#"galley_validation_failed{{{rules},reason="unknown_type"}} 1"#),
    ] {
        assert!(text.lines().any(|line| line == expected), "missing {expected:?} in:\n{text}");
    }
}
