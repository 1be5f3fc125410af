//! Citadel's secret controller against a directory store (the local platform's), written to
//! by a second store handle as another process would: Secrets appear for new service accounts,
//! follow namespace labels, come back when deleted or tampered with, go with their account,
//! renew before expiry, and survive a restart on the same root. A Secret that cannot be written
//! is tried again within seconds, not at the next resync.

mod common;

use std::time::{Duration, Instant};

use citadel::dns_names::DnsNames;
use citadel::targeting::Targeting;
use citadel::workload_secret::{self, Rotation};
use citadel::{CaSource, Config, ControllerSettings, StoreSource};
use istio_config::object::{Object, ObjectKey};
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;
use istio_pki::files::{CERT_CHAIN, KEY, ROOT_CERT};
use serde_json::json;

fn settings(ttl: Duration) -> ControllerSettings {
    ControllerSettings {
        targeting: Targeting {
            storage_namespace: "istio-system".into(),
            enabled_by_default: true,
            listened: Vec::new(),
        },
        dns_names: DnsNames::new("istio-system", "").0,
        trust_domain: "cluster.local".into(),
        rotation: Rotation { ttl, grace_ratio: 0.5, min_grace: Duration::ZERO },
        self_signed: true,
        extra_roots: None,
    }
}

fn config(store: &std::path::Path, ttl: Duration) -> Config {
    Config {
        store: StoreSource::Directory(store.to_path_buf()),
        ca: CaSource::SelfSigned { root_ttl: Duration::from_secs(3600), read_only: false, extra_roots: None },
        controller: settings(ttl),
        monitoring_address: "127.0.0.1:0".parse().expect("address"),
        ca_server: None,
        server_only: false,
    }
}

fn object(value: serde_json::Value) -> Object {
    serde_json::from_value(value).expect("object")
}

fn account(namespace: &str, name: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}))
}

fn namespace(name: &str, labels: serde_json::Value) -> Object {
    object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
}

fn secret_key(namespace: &str, account: &str) -> ObjectKey {
    ObjectKey {
        group: String::new(),
        kind: "Secret".into(),
        namespace: namespace.into(),
        name: workload_secret::secret_name(account),
    }
}

/// Polls the store until `check` holds for the object under `key` (or its absence).
async fn wait_for(
    store: &DirectoryStore,
    key: &ObjectKey,
    what: &str,
    check: impl Fn(Option<&Object>) -> bool,
) -> Option<Object> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        store.refresh().await;
        let found = store.get(key).await.expect("get");
        if check(found.as_ref()) {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {key}: {what}; last seen {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text(secret: &Object, key: &str) -> String {
    String::from_utf8(workload_secret::data(secret, key).expect(key)).expect("utf-8")
}

fn leaf_names(secret: &Object) -> Vec<String> {
    let chain = istio_pki::pem::certificates(text(secret, CERT_CHAIN).as_bytes()).expect("chain");
    istio_pki::certificate::inspect(&chain[0]).expect("leaf").subject_alt_names
}

#[tokio::test]
async fn secrets_follow_accounts_namespaces_and_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = DirectoryStore::open(dir.path()).expect("store");
    writer.apply(account("foo", "httpbin")).await.expect("apply");
    writer.apply(account("istio-system", "istio-galley-service-account")).await.expect("apply");
    writer.apply(namespace("legacy", json!({"ca.istio.io/override": "false"}))).await.expect("apply");
    writer.apply(account("legacy", "sleep")).await.expect("apply");

    let running = citadel::start(config(dir.path(), Duration::from_secs(3600))).await.expect("citadel");
    tokio::time::timeout(Duration::from_secs(15), running.ready()).await.expect("ready");
    let root = running.ca().root_pem().to_string();

    let httpbin = wait_for(&writer, &secret_key("foo", "httpbin"), "written", |s| s.is_some()).await.expect("secret");
    assert_eq!(httpbin.body["type"], "istio.io/key-and-cert");
    assert_eq!(leaf_names(&httpbin), ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
    assert_eq!(text(&httpbin, ROOT_CERT), root);
    let galley =
        wait_for(&writer, &secret_key("istio-system", "istio-galley-service-account"), "written", |s| s.is_some())
            .await
            .expect("secret");
    assert_eq!(
        leaf_names(&galley),
        [
            "spiffe://cluster.local/ns/istio-system/sa/istio-galley-service-account",
            "istio-galley.istio-system.svc",
            "istio-galley.istio-system"
        ]
    );
    assert!(writer.get(&secret_key("legacy", "sleep")).await.expect("get").is_none(), "legacy is not managed");

    // Bringing the namespace under Citadel writes its Secrets.
    writer.apply(namespace("legacy", json!({"ca.istio.io/override": "true"}))).await.expect("apply");
    wait_for(&writer, &secret_key("legacy", "sleep"), "written after relabelling", |s| s.is_some()).await;

    // A deleted Secret comes back; a tampered one is rewritten.
    writer.delete(&secret_key("foo", "httpbin")).await.expect("delete");
    let recreated =
        wait_for(&writer, &secret_key("foo", "httpbin"), "recreated", |s| s.is_some()).await.expect("secret");
    assert_eq!(leaf_names(&recreated), ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
    let mut tampered = recreated.clone();
    tampered.body["data"][KEY] = galley.body["data"][KEY].clone();
    writer.apply(tampered).await.expect("apply");
    let repaired = wait_for(&writer, &secret_key("foo", "httpbin"), "repaired", |s| {
        s.is_some_and(|s| s.body["data"][KEY] != galley.body["data"][KEY])
    })
    .await
    .expect("secret");
    let issued = istio_pki::pem::certificates(text(&repaired, CERT_CHAIN).as_bytes()).expect("chain");
    let key = istio_pki::keys::public_key_der(&text(&repaired, KEY)).expect("key");
    assert_eq!(istio_pki::certificate::inspect(&issued[0]).expect("leaf").public_key_der, key);

    // The Secret goes with its account.
    writer.delete(&account("foo", "httpbin").key()).await.expect("delete");
    wait_for(&writer, &secret_key("foo", "httpbin"), "deleted", |s| s.is_none()).await;

    // The controller counts a deletion just after making it, so the count may lag a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = common::metrics(running.monitoring_address).await;
        if metrics.contains("citadel_secret_controller_svc_acc_deleted_cert_count 1") || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("citadel_secret_controller_svc_acc_deleted_cert_count 1"), "{metrics}");
    assert!(metrics.contains("citadel_secret_controller_secret_deleted_cert_count 1"), "{metrics}");
    assert!(metrics.contains("citadel_server_root_cert_expiry_timestamp "), "{metrics}");
    assert!(
        metrics
            .contains("citadel_secret_controller_cert_expiry_timestamp{namespace=\"legacy\",secret=\"istio.sleep\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn certificates_renew_in_their_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = DirectoryStore::open(dir.path()).expect("store");
    writer.apply(account("foo", "sleep")).await.expect("apply");
    let _running = citadel::start(config(dir.path(), Duration::from_secs(4))).await.expect("citadel");
    let first = wait_for(&writer, &secret_key("foo", "sleep"), "written", |s| s.is_some()).await.expect("secret");
    // Four-second certificates renew at half their life, again and again.
    let second = wait_for(&writer, &secret_key("foo", "sleep"), "renewed", |s| {
        s.is_some_and(|s| s.body["data"][CERT_CHAIN] != first.body["data"][CERT_CHAIN])
    })
    .await
    .expect("secret");
    wait_for(&writer, &secret_key("foo", "sleep"), "renewed again", |s| {
        s.is_some_and(|s| s.body["data"][CERT_CHAIN] != second.body["data"][CERT_CHAIN])
    })
    .await;
}

#[tokio::test]
async fn a_restarted_citadel_keeps_the_root_and_leaves_fresh_secrets_be() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = DirectoryStore::open(dir.path()).expect("store");
    writer.apply(account("foo", "sleep")).await.expect("apply");
    let running = citadel::start(config(dir.path(), Duration::from_secs(3600))).await.expect("citadel");
    let written = wait_for(&writer, &secret_key("foo", "sleep"), "written", |s| s.is_some()).await.expect("secret");
    let root = running.ca().root_pem().to_string();
    drop(running);

    let restarted = citadel::start(config(dir.path(), Duration::from_secs(3600))).await.expect("restarted");
    assert_eq!(restarted.ca().root_pem(), root);
    tokio::time::timeout(Duration::from_secs(15), restarted.ready()).await.expect("ready");
    let after = writer.get(&secret_key("foo", "sleep")).await.expect("get").expect("secret");
    assert_eq!(after.body["data"], written.body["data"], "a fresh Secret is not rewritten");
}

/// A store whose first `failures` Secret writes fail, as an API server that is briefly
/// unavailable or refuses an update.
struct FlakyStore {
    inner: DirectoryStore,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for FlakyStore {
    async fn list(&self, kind: &istio_config::object::TypeKey) -> Result<Vec<Object>, istio_config::store::StoreError> {
        self.inner.list(kind).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, istio_config::store::StoreError> {
        self.inner.get(key).await
    }
    async fn apply(&self, object: Object) -> Result<Object, istio_config::store::StoreError> {
        let failing = object.kind == "Secret"
            && self
                .failures
                .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if failing {
            return Err(istio_config::store::StoreError::Conflict {
                key: object.key().to_string(),
                message: "the server is unavailable".into(),
            });
        }
        self.inner.apply(object).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool, istio_config::store::StoreError> {
        self.inner.delete(key).await
    }
    fn watch(&self) -> tokio::sync::mpsc::UnboundedReceiver<istio_config::store::Event> {
        self.inner.watch()
    }
}

#[tokio::test]
async fn a_secret_that_cannot_be_written_is_tried_again_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = DirectoryStore::open(dir.path()).expect("store");
    writer.apply(account("foo", "details")).await.expect("apply");
    // More failures than one pass's attempts: the pass gives up, and the account waits.
    let store = FlakyStore {
        inner: DirectoryStore::open(dir.path()).expect("store"),
        failures: std::sync::atomic::AtomicUsize::new(6),
    };
    let ca = istio_pki::ca::CertificateAuthority::self_signed("flaky test CA").expect("CA");
    let controller = citadel::controller::Controller::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(ca)),
        settings(Duration::from_secs(3600)),
        citadel::metrics::Metrics::default(),
        tokio::sync::watch::channel(false).0,
    );
    let started = Instant::now();
    let running = tokio::spawn(controller.run(std::future::pending()));
    wait_for(&writer, &secret_key("foo", "details"), "written after the failures", |s| s.is_some()).await;
    assert!(started.elapsed() < Duration::from_secs(15), "written after {:?}", started.elapsed());
    running.abort();
}
