//! Pilot's Kubernetes registry against a scripted API server (kube-rs's mock-service pattern):
//! Pilot lists and watches the Istio CRDs and Services, Endpoints, Pods and Nodes, and serves
//! what a cluster holds — port-name protocols, ClusterIPs, headless services, service accounts,
//! pod labels and node locality — with no Galley in between (the `minimal` profile).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use pilot::{Config, ConfigSource, SourceSettings};
use serde_json::{json, Value};
use tower_test::mock;

fn list(plural: &str) -> Vec<Value> {
    match plural {
        "services" => vec![
            json!({"metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "3"},
                   "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "mongodb", "namespace": "default", "resourceVersion": "4"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP"}]}}),
        ],
        "endpoints" => vec![json!({"metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "5"},
            "subsets": [{"addresses": [{"ip": "10.1.0.7", "nodeName": "node-a"}], "ports": [{"name": "http", "port": 9080}]}]})],
        "pods" => vec![json!({"metadata": {"name": "reviews-v1-7f9", "namespace": "default", "resourceVersion": "6",
                                            "labels": {"app": "reviews", "version": "v1"}},
            "spec": {"serviceAccountName": "bookinfo-reviews", "nodeName": "node-a"}, "status": {"podIP": "10.1.0.7"}})],
        "nodes" => vec![json!({"metadata": {"name": "node-a", "resourceVersion": "2",
            "labels": {"failure-domain.beta.kubernetes.io/region": "us-east", "failure-domain.beta.kubernetes.io/zone": "us-east-1a"}}})],
        "destinationrules" => {
            vec![json!({"metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "8"},
            "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}})]
        }
        _ => Vec::new(),
    }
}

/// Answers every list with the objects above (none for most kinds) and keeps watches open.
fn fake_api_server() -> kube::Client {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            if request.uri().query().unwrap_or_default().contains("watch=true") {
                open_watches.push(send);
                continue;
            }
            let plural = request.uri().path().rsplit('/').next().unwrap_or_default().to_string();
            let body = json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": list(&plural)});
            let response = Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response");
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

/// GET from Pilot's debug server; the body.
fn debug_get(address: SocketAddr, path: &str) -> String {
    tokio::task::block_in_place(|| e2e::http_get(&address.to_string(), path).1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_serves_a_kubernetes_cluster_without_galley() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let pilot = pilot::start(Config {
        source: ConfigSource::Kubernetes(fake_api_server()),
        grpc_address: loopback,
        http_address: loopback,
        monitoring_address: loopback,
        settings: SourceSettings::default(),
        push_throttle: pilot::xds::ads::DEFAULT_PUSH_THROTTLE,
        secure_grpc: None,
    })
    .await
    .expect("pilot starts");

    let deadline = Instant::now() + Duration::from_secs(10);
    let registry: Value = loop {
        let body = debug_get(pilot.http_address, "/debug/registryz");
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if parsed.as_array().is_some_and(|services| services.len() == 2) {
            break parsed;
        }
        assert!(Instant::now() < deadline, "registry never filled: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let service = |host: &str| {
        registry
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["hostname"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("{host} missing: {registry}"))
    };
    let reviews = service("reviews.default.svc.cluster.local");
    assert_eq!(reviews["address"], "10.96.0.12");
    assert_eq!(reviews["ports"][0]["protocol"], "Http", "port named http is HTTP");
    assert_eq!(reviews["serviceAccounts"][0], "spiffe://cluster.local/ns/default/sa/bookinfo-reviews");
    let mongodb = service("mongodb.default.svc.cluster.local");
    assert_eq!(mongodb["address"], Value::Null, "headless: no VIP");
    assert_eq!(mongodb["ports"][0]["protocol"], "Mongo");

    let endpoints = debug_get(pilot.http_address, "/debug/edsz");
    assert!(
        endpoints.contains("outbound|9080|v1|reviews.default.svc.cluster.local") && endpoints.contains("10.1.0.7"),
        "{endpoints}"
    );

    // The pod's own sidecar, which announces no labels, is known by its IP: it gets the inbound
    // cluster of the service it serves.
    let dump = debug_get(
        pilot.http_address,
        "/debug/config_dump?proxyID=sidecar~10.1.0.7~reviews-v1-7f9.default~default.svc.cluster.local",
    );
    assert!(dump.contains("inbound|9080|http|reviews.default.svc.cluster.local"), "{dump}");
    // Endpoints carry their node's locality.
    let dump: Value = serde_json::from_str(&dump).expect("config_dump JSON");
    let assignments = dump["configs"][3]["dynamic_endpoint_configs"].as_array().expect("endpoint configs");
    let reviews_v1 = assignments
        .iter()
        .find(|c| c["endpoint_config"]["cluster_name"] == "outbound|9080|v1|reviews.default.svc.cluster.local")
        .unwrap_or_else(|| panic!("no v1 endpoints: {assignments:?}"));
    let locality = &reviews_v1["endpoint_config"]["endpoints"][0]["locality"];
    assert_eq!((locality["region"].as_str(), locality["zone"].as_str()), (Some("us-east"), Some("us-east-1a")));

    // The events are counted under 1.4's names: the registry's by its informer, config by type.
    let metrics = debug_get(pilot.monitoring_address, "/metrics");
    for line in [
        "pilot_k8s_reg_events{type=\"Services\",event=\"add\"} 2",
        "pilot_k8s_reg_events{type=\"Endpoints\",event=\"add\"} 1",
        "pilot_k8s_reg_events{type=\"Pod\",event=\"add\"} 1",
        "pilot_k8s_reg_events{type=\"Nodes\",event=\"add\"} 1",
        "pilot_k8s_cfg_events{type=\"destination-rule\",event=\"add\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
}
