//! Mixer's Envoy external authorization service over real gRPC: a started Mixer answers
//! `envoy.service.auth.v3.Authorization/Check` with 1.4's denial for the ratings-denial sample.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{attribute_context, check_response, AttributeContext, CheckRequest};
use mixer::source::ConfigStore;
use mixer::{Config, Environment};

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn request(user: &str) -> CheckRequest {
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        path: "/productpage".into(),
        host: "productpage:9080".into(),
        headers: [("x-user".to_string(), user.to_string())].into(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn denials_come_back_as_envoy_http_responses() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), workspace_file("install/mixer/config.yaml")).expect("write");
    std::fs::write(
        dir.path().join("deny.yaml"),
        workspace_file("samples/bookinfo/policy/mixer-rule-ratings-denial.yaml"),
    )
    .expect("write");
    let pods = istio_config::store::directory::DirectoryStore::open(dir.path()).expect("store");
    let running = mixer::start(Config {
        store: ConfigStore::Directory(dir.path().to_path_buf()),
        api_address: "127.0.0.1:0".parse::<SocketAddr>().expect("address"),
        monitoring_address: "127.0.0.1:0".parse::<SocketAddr>().expect("address"),
        default_namespace: "istio-system".into(),
        legacy_kinds: false,
        environment: Environment::with_pods(std::sync::Arc::new(pods)),
        kubernetes: None,
        max_message_size: 1 << 20,
        max_concurrent_streams: 1024,
    })
    .await
    .expect("starts");
    let mut client = AuthorizationClient::connect(format!("http://{}", running.api_address)).await.expect("connects");
    let started = Instant::now();
    loop {
        let response = client.check(request("john")).await.expect("answers").into_inner();
        if response.status.as_ref().is_some_and(|status| status.code == 7) {
            let Some(check_response::HttpResponse::DeniedResponse(denied)) = response.http_response else {
                panic!("denied")
            };
            assert_eq!(denied.status.map(|status| status.code), Some(403));
            assert_eq!(denied.body, "PERMISSION_DENIED:denierhandler.istio-system:Not allowed");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never denied: {response:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let allowed = client.check(request("alice")).await.expect("answers").into_inner();
    assert_eq!(allowed.status.map(|status| status.code), Some(0));
    assert!(matches!(allowed.http_response, Some(check_response::HttpResponse::OkResponse(_))));
    running.shutdown();
}
