//! Tests of the Kubernetes backend against scripted API-server responses (kube-rs's mock
//! service pattern): the requests the store makes, and how it reads the answers.

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock;

use super::*;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_store(watched: Vec<TypeKey>) -> (KubernetesStore, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (KubernetesStore::new(client, watched).expect("store"), handle)
}

fn reply(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn not_found(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("{name} not found"), "reason": "NotFound", "code": 404})
}

fn virtual_service(name: &str, version: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": "default", "resourceVersion": version},
           "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]}})
}

/// Serves the next request with `respond`, after checking its method and path.
async fn expect(handle: &mut Handle, method: &str, path: &str, respond: impl FnOnce(Request<Body>) -> Response<Body>) {
    let (request, send) =
        tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await.expect("a request").expect("request");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    send.send_response(respond(request));
}

#[tokio::test]
async fn list_get_apply_delete_speak_the_kubernetes_api() {
    let vs = TypeKey::new("networking.istio.io", "VirtualService");
    let (store, mut handle) = mock_store(vec![vs.clone()]);
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", "/apis/networking.istio.io/v1alpha3/virtualservices", |_| {
            // List items come without apiVersion and kind, as the API server sends them.
            let mut item = virtual_service("reviews", "7");
            item.as_object_mut().map(|map| {
                map.remove("apiVersion");
                map.remove("kind")
            });
            reply(200, &json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualServiceList", "metadata": {"resourceVersion": "7"}, "items": [item]}))
        })
        .await;
        expect(&mut handle, "GET", "/api/v1/namespaces/default/services/missing", |_| {
            reply(404, &not_found("missing"))
        })
        .await;
        expect(
            &mut handle,
            "PATCH",
            "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/ratings",
            |request| {
                let query = request.uri().query().unwrap_or_default().to_string();
                assert!(query.contains("fieldManager=istio-rs") && query.contains("force=true"), "{query}");
                assert_eq!(request.headers()["content-type"], "application/apply-patch+yaml");
                reply(200, &virtual_service("ratings", "8"))
            },
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/ratings",
            |_| reply(200, &virtual_service("ratings", "9")),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/ratings",
            |_| reply(404, &not_found("ratings")),
        )
        .await;
    });

    let listed = store.list(&vs).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].api_version, "networking.istio.io/v1alpha3");
    assert_eq!(listed[0].display_name(), "VirtualService default/reviews");
    assert_eq!(listed[0].resource_version(), "7");

    let missing =
        ObjectKey { group: String::new(), kind: "Service".into(), namespace: "default".into(), name: "missing".into() };
    assert!(store.get(&missing).await.expect("get").is_none());

    let object: Object = serde_json::from_value(virtual_service("ratings", "")).expect("object");
    let applied = store.apply(object.clone()).await.expect("apply");
    assert_eq!(applied.resource_version(), "8");

    assert!(store.delete(&object.key()).await.expect("delete"));
    assert!(!store.delete(&object.key()).await.expect("second delete"));
    server.await.expect("scripted server");

    let unknown = TypeKey::new("example.com", "Widget");
    assert!(matches!(store.list(&unknown).await, Err(StoreError::UnknownKind { .. })));
}

#[tokio::test]
async fn watch_lists_then_streams_changes_and_reports_sync() {
    let vs = TypeKey::new("networking.istio.io", "VirtualService");
    let (store, mut handle) = mock_store(vec![vs]);
    let mut events = store.watch();
    // The watcher lists first, then opens a watch from the list's resource version.
    expect(&mut handle, "GET", "/apis/networking.istio.io/v1alpha3/virtualservices", |request| {
        assert!(!request.uri().query().unwrap_or_default().contains("watch=true"));
        reply(200, &json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualServiceList", "metadata": {"resourceVersion": "10"}, "items": [virtual_service("reviews", "10")]}))
    })
    .await;
    expect(&mut handle, "GET", "/apis/networking.istio.io/v1alpha3/virtualservices", |request| {
        assert!(request.uri().query().unwrap_or_default().contains("watch=true"));
        let lines = [
            json!({"type": "MODIFIED", "object": virtual_service("reviews", "11")}),
            json!({"type": "ADDED", "object": virtual_service("ratings", "12")}),
            json!({"type": "DELETED", "object": virtual_service("reviews", "13")}),
        ];
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        Response::builder().status(200).body(Body::from(body.into_bytes())).expect("response")
    })
    .await;

    let mut received = Vec::new();
    while received.len() < 5 {
        let event =
            tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("event in time").expect("open");
        received.push(match event {
            Event::Added(object) => format!("added {} {}", object.name(), object.resource_version()),
            Event::Modified(object) => format!("modified {} {}", object.name(), object.resource_version()),
            Event::Deleted(object) => format!("deleted {}", object.name()),
            Event::Synced => "synced".to_string(),
            Event::SourceError { message, .. } => format!("error {message}"),
        });
    }
    assert_eq!(
        received,
        vec!["added reviews 10", "synced", "modified reviews 11", "added ratings 12", "deleted reviews"]
    );
}

#[test]
fn galley_watches_istio_crds_and_synthetic_inputs() {
    let kinds = galley_kinds();
    assert!(kinds.contains(&TypeKey::new("networking.istio.io", "VirtualService")));
    assert!(kinds.contains(&TypeKey::new("", "Endpoints")));
    assert!(!kinds.contains(&TypeKey::new("config.istio.io", "denier")), "legacy kinds were not CRDs in 1.4");
    let (node, namespaced) = api_resource(&TypeKey::new("", "Node")).expect("node");
    assert_eq!((node.api_version.as_str(), node.plural.as_str(), namespaced), ("v1", "nodes", false));
}
