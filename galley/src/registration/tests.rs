//! The webhook configuration Galley builds, and the requests it makes to keep it, against
//! scripted API-server answers (kube-rs's mock-service pattern).

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock;

use super::*;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const TEMPLATE: &str = "\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: istio-galley
  labels: {app: galley, istio: galley}
webhooks:
- name: pilot.validation.istio.io
  clientConfig:
    service: {name: istio-galley, namespace: istio-system, path: /admitpilot}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [networking.istio.io]
    apiVersions: ['*']
    resources: [virtualservices]
  sideEffects: None
  admissionReviewVersions: [v1, v1beta1]
- name: mixer.validation.istio.io
  clientConfig:
    service: {name: istio-galley, namespace: istio-system, path: /admitmixer}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [config.istio.io]
    apiVersions: [v1alpha2]
    resources: [rules]
  failurePolicy: Ignore
  sideEffects: None
  admissionReviewVersions: [v1, v1beta1]
";

fn ca_pem() -> Vec<u8> {
    rcgen::generate_simple_self_signed(vec!["istio-ca".to_string()]).expect("certificate").cert.pem().into_bytes()
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        name: "istio-system".into(),
        uid: "ns-uid".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn wanted() -> ValidatingWebhookConfiguration {
    desired(TEMPLATE, "webhook.yaml", &ca_pem(), Some(owner())).expect("desired")
}

#[test]
fn the_template_gets_the_ca_bundle_a_failure_policy_and_an_owner() {
    let ca = ca_pem();
    let configuration = desired(TEMPLATE, "webhook.yaml", &ca, Some(owner())).expect("desired");
    let hooks = configuration.webhooks.expect("webhooks");
    assert_eq!(hooks[0].client_config.ca_bundle.as_ref().map(|b| b.0.clone()), Some(ca.clone()));
    assert_eq!(hooks[0].failure_policy.as_deref(), Some("Fail"), "Fail where the template names none");
    assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"), "the template's own choice is kept");
    assert_eq!(configuration.metadata.owner_references, Some(vec![owner()]));
}

#[test]
fn the_installed_template_is_one_galley_can_register() {
    let install = istio_manifest::Install::resolve(&["profile=demo".to_string()], &[]).expect("demo");
    let manifests = istio_manifest::generate(&install).expect("manifests");
    let config_map = manifests
        .iter()
        .find(|manifest| manifest.object["metadata"]["name"] == "istio-galley-configuration")
        .expect("the istio-galley-configuration ConfigMap");
    let template = config_map.object["data"]["validatingwebhookconfiguration.yaml"].as_str().expect("the template");
    let configuration = desired(template, "validatingwebhookconfiguration.yaml", &ca_pem(), None).expect("usable");
    let names: Vec<String> = configuration.webhooks.iter().flatten().map(|hook| hook.name.clone()).collect();
    assert_eq!(names, ["pilot.validation.istio.io", "mixer.validation.istio.io"]);
    let galley = manifests
        .iter()
        .find(|manifest| {
            manifest.object["kind"] == "Deployment" && manifest.object["metadata"]["name"] == "istio-galley"
        })
        .expect("istio-galley");
    let args = galley.object["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--validation-webhook-config-file=/etc/config/validatingwebhookconfiguration.yaml"),
        "{args}"
    );
}

#[test]
fn bad_templates_and_ca_files_are_named() {
    let old = TEMPLATE.replace("admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1");
    let error = desired(&old, "/etc/config/webhook.yaml", &ca_pem(), None).expect_err("v1beta1");
    assert!(
        error.to_string().starts_with("/etc/config/webhook.yaml: expected an admissionregistration.k8s.io/v1"),
        "{error}"
    );
    let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let error = ca_bundle(key.as_bytes(), "/etc/certs/root-cert.pem").expect_err("a key is not a CA");
    assert!(error.to_string().contains("ca bundle contains wrong pem type: \"PRIVATE KEY\""), "{error}");
    let error = ca_bundle(b"", "/etc/certs/root-cert.pem").expect_err("empty");
    assert!(error.to_string().contains("no certificate"), "{error}");
}

#[test]
fn the_api_servers_defaults_are_not_a_difference() {
    let wanted = wanted();
    let mut stored = serde_json::to_value(&wanted).expect("json");
    for hook in stored["webhooks"].as_array_mut().expect("webhooks") {
        hook["timeoutSeconds"] = json!(10);
        hook["matchPolicy"] = json!("Equivalent");
        hook["namespaceSelector"] = json!({});
        hook["objectSelector"] = json!({});
        hook["clientConfig"]["service"]["port"] = json!(443);
        hook["rules"][0]["scope"] = json!("*");
    }
    let stored: ValidatingWebhookConfiguration = serde_json::from_value(stored).expect("typed");
    assert!(same(&stored, &wanted));
    let mut edited = stored.clone();
    if let Some(hooks) = edited.webhooks.as_mut() {
        hooks[0].client_config.ca_bundle = Some(ByteString(b"someone else's".to_vec()));
    }
    assert!(!same(&edited, &wanted));
    let mut orphan = stored;
    orphan.metadata.owner_references = None;
    assert!(!same(&orphan, &wanted));
}

fn reply(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{reason} for the test"), "reason": reason, "code": code})
}

const PATH: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

async fn expect(handle: &mut Handle, method: &str, path: &str, respond: impl FnOnce(Value) -> Response<Body>) {
    let (request, send) = handle.next_request().await.expect("a request");
    assert_eq!((request.method().as_str(), request.uri().path()), (method, path));
    let bytes = http_body_util::BodyExt::collect(request.into_body()).await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    send.send_response(respond(body));
}

fn mock_api() -> (Api<ValidatingWebhookConfiguration>, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Api::all(Client::new(service, "default")), handle)
}

#[tokio::test]
async fn a_missing_configuration_is_created() {
    let (api, mut handle) = mock_api();
    let wanted = wanted();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", &format!("{PATH}/istio-galley"), |_| reply(404, &status(404, "NotFound"))).await;
        expect(&mut handle, "POST", PATH, |body| {
            assert_eq!(body["webhooks"][0]["failurePolicy"], "Fail");
            assert!(body["webhooks"][0]["clientConfig"]["caBundle"].as_str().is_some_and(|b| !b.is_empty()));
            assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "Namespace");
            reply(201, &body)
        })
        .await;
    });
    assert_eq!(reconcile_once(&api, &wanted).await.expect("created"), Outcome::Created);
    server.await.expect("server");
}

#[tokio::test]
async fn an_edited_configuration_is_put_back_and_a_matching_one_left_alone() {
    let (api, mut handle) = mock_api();
    let wanted = wanted();
    let mut edited = serde_json::to_value(&wanted).expect("json");
    edited["metadata"]["resourceVersion"] = json!("42");
    edited["webhooks"][0]["clientConfig"]["caBundle"] = json!("b2xk");
    let matching = {
        let mut value = serde_json::to_value(&wanted).expect("json");
        value["metadata"]["resourceVersion"] = json!("43");
        value
    };
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", &format!("{PATH}/istio-galley"), |_| reply(200, &edited)).await;
        expect(&mut handle, "PUT", &format!("{PATH}/istio-galley"), |body| {
            assert_eq!(body["metadata"]["resourceVersion"], "42", "the update is conditional on what was read");
            assert_ne!(body["webhooks"][0]["clientConfig"]["caBundle"], "b2xk");
            reply(200, &body)
        })
        .await;
        expect(&mut handle, "GET", &format!("{PATH}/istio-galley"), |_| reply(200, &matching)).await;
    });
    assert_eq!(reconcile_once(&api, &wanted).await.expect("updated"), Outcome::Updated);
    assert_eq!(reconcile_once(&api, &wanted).await.expect("unchanged"), Outcome::Unchanged);
    server.await.expect("server");
}

#[tokio::test]
async fn conflicts_and_refusals_come_back_as_errors_to_retry_and_report() {
    let (api, mut handle) = mock_api();
    let wanted = wanted();
    let mut stale = serde_json::to_value(&wanted).expect("json");
    stale["metadata"]["resourceVersion"] = json!("7");
    stale["webhooks"][0]["failurePolicy"] = json!("Ignore");
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", &format!("{PATH}/istio-galley"), |_| reply(200, &stale)).await;
        expect(&mut handle, "PUT", &format!("{PATH}/istio-galley"), |_| reply(409, &status(409, "Conflict"))).await;
        expect(&mut handle, "GET", &format!("{PATH}/istio-galley"), |_| reply(403, &status(403, "Forbidden"))).await;
        expect(&mut handle, "DELETE", &format!("{PATH}/istio-galley"), |_| reply(404, &status(404, "NotFound"))).await;
    });
    let conflict = reconcile_once(&api, &wanted).await.expect_err("conflict");
    assert_eq!(reason(&conflict), "Conflict");
    let refused = reconcile_once(&api, &wanted).await.expect_err("forbidden");
    assert_eq!(reason(&refused), "Forbidden");
    assert!(!delete(&api, "istio-galley").await.expect("nothing to delete"));
    server.await.expect("server");
}

/// Answers by path as a small API server would: the namespace, the configuration (absent until
/// created), watches held open; records `METHOD path` of each request.
async fn cluster(mut handle: Handle, requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut stored: Option<Value> = None;
    let mut watches = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        requests.lock().expect("requests").push(format!("{method} {path}"));
        if query.contains("watch=true") {
            watches.push(send);
            continue;
        }
        let bytes = http_body_util::BodyExt::collect(request.into_body()).await.expect("body").to_bytes();
        let response = match (method.as_str(), path.as_str()) {
            ("GET", "/api/v1/namespaces/istio-system") => reply(
                200,
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", "uid": "ns-uid"}}),
            ),
            ("GET", PATH) => reply(
                200,
                &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfigurationList",
                        "metadata": {"resourceVersion": "1"}, "items": stored.iter().cloned().collect::<Vec<_>>()}),
            ),
            ("GET", _) => match &stored {
                Some(object) => reply(200, object),
                None => reply(404, &status(404, "NotFound")),
            },
            ("POST", PATH) => {
                let mut object: Value = serde_json::from_slice(&bytes).expect("json");
                object["metadata"]["resourceVersion"] = json!("2");
                stored = Some(object.clone());
                reply(201, &object)
            }
            ("DELETE", _) => {
                stored = None;
                reply(200, &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}))
            }
            _ => reply(405, &status(405, "MethodNotAllowed")),
        };
        send.send_response(response);
    }
}

#[tokio::test]
async fn galley_registers_on_start_and_deregisters_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (template, ca) = (dir.path().join("webhook.yaml"), dir.path().join("root-cert.pem"));
    std::fs::write(&template, TEMPLATE).expect("write");
    std::fs::write(&ca, ca_pem()).expect("write");
    let registration = Registration {
        config_file: template,
        ca_cert_file: ca,
        namespace: "istio-system".into(),
        webhook_name: "istio-galley".into(),
        enabled: true,
    };
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn(cluster(handle, requests.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(Client::new(service, "default"), registration, Metrics::default(), async move {
        let _ = stopped.await;
    }));
    let created = format!("POST {PATH}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !requests.lock().expect("requests").contains(&created) {
        assert!(tokio::time::Instant::now() < deadline, "never created: {:?}", requests.lock().expect("requests"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("run ends").expect("run");
    let seen = requests.lock().expect("requests").clone();
    assert_eq!(seen.last().map(String::as_str), Some(format!("DELETE {PATH}/istio-galley").as_str()), "{seen:?}");
}
