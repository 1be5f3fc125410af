//! The webhook over HTTPS, as the API server calls it: AdmissionReview v1 and v1beta1 in,
//! a JSONPatch out that gives the pod its sidecar; config reloads keep the last good version.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use istio_inject::ConfigFiles;
use istio_pki::ca::{CertificateAuthority, LeafRequest};
use istio_pki::files::CertDir;
use serde_json::{json, Value};
use sidecar_injector::Settings;

struct Fixture {
    dir: tempfile::TempDir,
    ca_pem: String,
    running: sidecar_injector::Running,
}

async fn start(config: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::self_signed("injector test CA").expect("CA");
    let issued = ca.issue(&LeafRequest::for_names(["istio-sidecar-injector.istio-system.svc"])).expect("certificate");
    let certs = CertDir::new(dir.path());
    certs.write_serving(issued.cert_chain_pem.as_bytes(), issued.key_pem.as_bytes()).expect("write");
    std::fs::write(dir.path().join("config"), config).expect("write");
    std::fs::write(dir.path().join("values"), r#"{"global": {"proxy": {"statusPort": 15020}}}"#).expect("write");
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let running = sidecar_injector::start(Settings {
        files: ConfigFiles {
            inject_config: Some(dir.path().join("config")),
            values: Some(dir.path().join("values")),
            mesh_config: None,
        },
        webhook_address: loopback,
        cert_chain: certs.cert_chain(),
        key: certs.key(),
        monitoring_address: loopback,
        reload_interval: Duration::from_millis(100),
        ca_bundle: None,
        kubeconfig: None,
    })
    .await
    .expect("injector starts");
    Fixture { dir, ca_pem: ca.root_pem().to_string(), running }
}

async fn review(fixture: &Fixture, api_version: &str, pod: &Value) -> Value {
    let review = json!({"apiVersion": api_version, "kind": "AdmissionReview",
        "request": {"uid": "b6a1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
                    "namespace": "default", "object": pod}});
    let answer = istio_runtime::https::post_json(
        fixture.running.webhook_address,
        "istio-sidecar-injector.istio-system.svc",
        fixture.ca_pem.as_bytes(),
        "/inject",
        &review,
    )
    .await
    .expect("webhook answers");
    assert_eq!(answer["apiVersion"], api_version);
    assert_eq!(answer["response"]["uid"], "b6a1");
    answer["response"].clone()
}

fn patched(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().expect("patch")).expect("b64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch json");
    let mut pod = pod.clone();
    json_patch::patch(&mut pod, &patch).expect("patch applies");
    pod
}

fn deployment_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "productpage-v1-5d8f7c-", "labels": {"app": "productpage", "version": "v1", "pod-template-hash": "5d8f7c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "productpage-v1-5d8f7c", "controller": true}]},
        "spec": {"serviceAccountName": "bookinfo-productpage",
            "containers": [{"name": "productpage", "image": "docker.io/istio/examples-bookinfo-productpage-v1:1.15.0",
                "ports": [{"containerPort": 9080}]}]}})
}

#[tokio::test]
async fn both_review_versions_get_a_patch_that_adds_the_sidecar() {
    let fixture = start("policy: enabled\n").await;
    let pod = deployment_pod();
    for api_version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let response = review(&fixture, api_version, &pod).await;
        assert_eq!(response["allowed"], true);
        let injected = patched(&pod, &response);
        let containers = injected["spec"]["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 2);
        let proxy = &containers[1];
        assert_eq!(proxy["name"], "istio-proxy");
        let env = proxy["env"].as_array().expect("env");
        let value = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
        assert_eq!(value("ISTIO_META_WORKLOAD_NAME"), Some(json!("productpage-v1")));
        assert_eq!(
            value("ISTIO_META_OWNER"),
            Some(json!("kubernetes://apis/apps/v1/namespaces/default/deployments/productpage-v1"))
        );
        assert_eq!(injected["spec"]["initContainers"][0]["name"], "istio-init");
        assert!(injected["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    }
    fixture.running.shutdown();
}

#[tokio::test]
async fn opted_out_pods_pass_and_bad_annotations_are_refused() {
    let fixture = start("policy: enabled\n").await;
    let mut pod = deployment_pod();
    pod["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "false"});
    let response = review(&fixture, "admission.k8s.io/v1", &pod).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    pod["metadata"]["annotations"] = json!({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/33"});
    let response = review(&fixture, "admission.k8s.io/v1", &pod).await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(message.contains("includeOutboundIPRanges"), "{message}");
    fixture.running.shutdown();
}

#[tokio::test]
async fn config_changes_apply_and_bad_ones_keep_the_last_good_config() {
    let fixture = start("policy: enabled\n").await;
    let pod = deployment_pod();
    assert!(review(&fixture, "admission.k8s.io/v1", &pod).await.get("patch").is_some());
    std::fs::write(fixture.dir.path().join("config"), "policy: disabled\n").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while review(&fixture, "admission.k8s.io/v1", &pod).await.get("patch").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the policy change was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An invalid config is ignored: injection stays disabled rather than failing.
    std::fs::write(fixture.dir.path().join("config"), "policy: [broken\n").expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = review(&fixture, "admission.k8s.io/v1", &pod).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    fixture.running.shutdown();
}
