//! The 1.4 Bookinfo policy samples, unchanged, compiled with Mixer's default config (attribute
//! manifests and kubernetesenv) and checked with the attributes a proxy sends: the denials, the
//! white lists, the memquota rate limit and its conditional form, and pods found by
//! kubernetesenv standing in for labels the proxy did not send.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use istio_attribute::value::ip_to_16_bytes;
use istio_attribute::{MapBag, Value};
use istio_config::object::{Object, ObjectKey};
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;
use mixer::dispatch::{CheckOutcome, Dispatcher, QuotaRequest};
use mixer::metrics::Metrics;
use mixer::status::{OK, PERMISSION_DENIED};
use mixer::table::{compile, Table};
use mixer::Environment;

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn objects(files: &[&str], namespace: &str) -> BTreeMap<ObjectKey, Object> {
    let mut objects = BTreeMap::new();
    for file in files {
        let (parsed, errors) = istio_config::yaml::parse_objects(file, &workspace_file(file));
        assert!(errors.is_empty(), "{errors:?}");
        for mut source in parsed {
            source.object.default_namespace(namespace);
            objects.insert(source.object.key(), source.object);
        }
    }
    objects
}

async fn compiled(files: &[&str], environment: &Environment) -> Table {
    let mut all = vec!["install/mixer/config.yaml"];
    all.extend_from_slice(files);
    let table = compile(1, &objects(&all, "default"), None, environment, "istio-system").await;
    let unexpected: Vec<String> = table.errors.iter().map(ToString::to_string).collect();
    assert!(unexpected.is_empty(), "config errors: {unexpected:#?}");
    table
}

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

fn ip(address: &str) -> Value<'static> {
    Value::Bytes(Cow::Owned(ip_to_16_bytes(address.parse().expect("address")).to_vec()))
}

/// What the ratings sidecar sends for a call from a reviews pod.
fn ratings_call(version: &str) -> MapBag {
    MapBag::new()
        .with("context.reporter.kind", text("inbound"))
        .with("destination.namespace", text("default"))
        .with("destination.labels", labels(&[("app", "ratings"), ("version", "v1")]))
        .with("source.labels", labels(&[("app", "reviews"), ("version", version)]))
        .with("source.ip", ip("10.1.0.9"))
        .with("request.headers", labels(&[(":path", "/ratings/0")]))
}

async fn check(table: &Table, bag: &MapBag, quotas: &[QuotaRequest]) -> CheckOutcome {
    let metrics = Metrics::default();
    Dispatcher { table, metrics: &metrics }.check(bag, quotas, "dedup-").await.expect("checks")
}

/// An environment whose pod store is an empty directory (kept for the test's length).
fn environment_without_pods() -> Environment {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(dir.path()).expect("store");
    std::mem::forget(dir);
    Environment::with_pods(Arc::new(store) as Arc<dyn Store>)
}

#[tokio::test]
async fn deny_label_refuses_reviews_v3_only() {
    let table = compiled(&["samples/bookinfo/policy/mixer-rule-deny-label.yaml"], &environment_without_pods()).await;
    let denied = check(&table, &ratings_call("v3"), &[]).await;
    assert_eq!(denied.status.code, PERMISSION_DENIED);
    assert_eq!(denied.status.body(), "PERMISSION_DENIED:denyreviewsv3handler.default:Not allowed");
    assert_eq!((denied.valid_duration, denied.valid_use_count), (Duration::from_secs(5), 1000));
    // The answer depends on exactly these: whose rules apply (the reporter's kind and the
    // destination's namespace), what kubernetesenv's instance read, then the rule.
    assert_eq!(
        denied.referenced.list(),
        [
            "-context.protocol",
            "-destination.ip",
            "-destination.port",
            "-destination.uid",
            "-source.uid",
            "context.reporter.kind",
            "destination.labels[app]",
            "destination.namespace",
            "source.ip",
            "source.labels[app]",
            "source.labels[version]"
        ]
    );
    let allowed = check(&table, &ratings_call("v2"), &[]).await;
    assert_eq!(allowed.status.code, OK);
    assert_eq!((allowed.valid_duration, allowed.valid_use_count), (Duration::from_secs(60), 10000));
    // A rule in `default` does not apply to another namespace.
    let mut elsewhere = ratings_call("v3");
    elsewhere.set("destination.namespace", text("other"));
    assert_eq!(check(&table, &elsewhere, &[]).await.status.code, OK);
}

#[tokio::test]
async fn whitelists_by_version_and_by_address() {
    let table =
        compiled(&["samples/bookinfo/policy/mixer-rule-deny-whitelist.yaml"], &environment_without_pods()).await;
    assert_eq!(check(&table, &ratings_call("v1"), &[]).await.status.code, OK);
    let denied = check(&table, &ratings_call("v3"), &[]).await;
    assert_eq!(denied.status.body(), "PERMISSION_DENIED:whitelist.default:v3 is not whitelisted");
    assert_eq!((denied.valid_duration, denied.valid_use_count), (Duration::from_secs(300), 10000));

    let table = compiled(&["samples/bookinfo/policy/mixer-rule-deny-ip.yaml"], &environment_without_pods()).await;
    let from_gateway = MapBag::new()
        .with("destination.namespace", text("default"))
        .with("source.labels", labels(&[("istio", "ingressgateway")]))
        .with("source.ip", ip("10.1.2.3"));
    assert_eq!(
        check(&table, &from_gateway, &[]).await.status.body(),
        "PERMISSION_DENIED:whitelistip.default:10.1.2.3 is not whitelisted"
    );
    let mut inside = from_gateway.clone();
    inside.set("source.ip", ip("10.57.3.4"));
    assert_eq!(check(&table, &inside, &[]).await.status.code, OK);
    // Without a source address the sample's default, 0.0.0.0, is checked.
    let mut unknown = from_gateway.clone();
    unknown.remove("source.ip");
    assert_eq!(check(&table, &unknown, &[]).await.status.message, "whitelistip.default:0.0.0.0 is not whitelisted");
    // Not from the gateway: the rule does not apply.
    assert_eq!(check(&table, &ratings_call("v3"), &[]).await.status.code, OK);
}

fn productpage_call(client: &str, cookie: Option<&str>) -> MapBag {
    let mut headers = vec![("x-forwarded-for", client)];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    MapBag::new()
        .with("destination.namespace", text("default"))
        .with("destination.labels", labels(&[("app", "productpage"), ("version", "v1")]))
        .with("request.headers", labels(&headers))
}

fn one_request() -> Vec<QuotaRequest> {
    vec![QuotaRequest { name: "requestcountquota".into(), amount: 1, best_effort: false }]
}

async fn granted(table: &Table, bag: &MapBag, dedup: usize) -> i64 {
    let metrics = Metrics::default();
    let outcome = Dispatcher { table, metrics: &metrics }
        .check(bag, &one_request(), &format!("request-{dedup}-"))
        .await
        .expect("checks");
    outcome.quotas[0].1.result.amount
}

#[tokio::test]
async fn memquota_limits_productpage_to_two_per_five_seconds_per_client() {
    let table =
        compiled(&["samples/bookinfo/policy/mixer-rule-productpage-ratelimit.yaml"], &environment_without_pods()).await;
    let client = productpage_call("10.0.0.1", None);
    let mut grants = Vec::new();
    for n in 0..4 {
        grants.push(granted(&table, &client, n).await);
    }
    assert_eq!(grants, [1, 1, 0, 0]);
    assert_eq!(granted(&table, &productpage_call("10.0.0.2", None), 10).await, 1, "another client has its own count");
    // A quota nobody configured is granted in full.
    let metrics = Metrics::default();
    let other = Dispatcher { table: &table, metrics: &metrics }
        .check(&client, &[QuotaRequest { name: "nosuchquota".into(), amount: 3, best_effort: false }], "x")
        .await
        .expect("checks");
    assert_eq!(other.quotas[0].1.result.amount, 3);
}

#[tokio::test]
async fn a_conditional_rate_limit_spares_logged_in_users() {
    let sample = workspace_file("samples/bookinfo/policy/mixer-rule-productpage-ratelimit.yaml");
    // The docs' edit: the rule gains a match on the session cookie.
    let edited = sample.replace(
        "kind: rule\nmetadata:\n  name: quota\n  namespace: istio-system\nspec:\n",
        "kind: rule\nmetadata:\n  name: quota\n  namespace: istio-system\nspec:\n  match: match(request.headers[\"cookie\"], \"session=*\") == false\n",
    );
    assert_ne!(sample, edited, "the rule was found");
    let mut all = objects(&["install/mixer/config.yaml"], "default");
    let (parsed, _) = istio_config::yaml::parse_objects("edited.yaml", &edited);
    for source in parsed {
        all.insert(source.object.key(), source.object);
    }
    let table = compile(1, &all, None, &environment_without_pods(), "istio-system").await;
    assert!(table.errors.is_empty(), "{:?}", table.errors);
    let jason = productpage_call("10.0.0.1", Some("session=jason"));
    let grants: Vec<i64> = futures_grants(&table, &jason, 0).await;
    assert_eq!(grants, [1, 1, 1, 1], "a session cookie exempts the request");
    let anonymous = productpage_call("10.0.0.1", None);
    assert_eq!(futures_grants(&table, &anonymous, 100).await, [1, 1, 0, 0]);
}

async fn futures_grants(table: &Table, bag: &MapBag, first: usize) -> Vec<i64> {
    let mut grants = Vec::new();
    for n in first..first + 4 {
        grants.push(granted(table, bag, n).await);
    }
    grants
}

#[tokio::test]
async fn kubernetesenv_supplies_the_labels_of_known_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(dir.path()).expect("store");
    for (name, app, version, address) in [
        ("reviews-v3-7d9f5c-abcde", "reviews", "v3", "10.1.0.9"),
        ("ratings-v1-5b8f9c-fghij", "ratings", "v1", "10.1.0.4"),
    ] {
        let set = name.rsplit_once('-').expect("pod suffix").0;
        let hash = set.rsplit_once('-').expect("set hash").1;
        let pod: Object = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"app": app, "version": version, "pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": set, "controller": true}]},
            "spec": {"serviceAccountName": format!("bookinfo-{app}"), "containers": [{"name": app, "ports": [{"containerPort": 9080}]}]},
            "status": {"podIP": address}
        }))
        .expect("pod");
        store.apply(pod).await.expect("stored");
    }
    let environment = Environment::with_pods(Arc::new(store) as Arc<dyn Store>);
    let table = compiled(&["samples/bookinfo/policy/mixer-rule-deny-label.yaml"], &environment).await;
    // The proxy sends only who is calling whom; the labels come from the pods.
    let bare = MapBag::new()
        .with("source.uid", text("kubernetes://reviews-v3-7d9f5c-abcde.default"))
        .with("destination.uid", text("kubernetes://ratings-v1-5b8f9c-fghij.default"))
        .with("destination.port", Value::Int64(9080));
    let denied = check(&table, &bare, &[]).await;
    assert_eq!(denied.status.body(), "PERMISSION_DENIED:denyreviewsv3handler.default:Not allowed");
    // Generated attributes are not the caller's: only what it sent is referenced.
    assert_eq!(
        denied.referenced.list(),
        [
            "-context.protocol",
            "-context.reporter.kind",
            "-destination.ip",
            "-destination.namespace",
            "-source.ip",
            "destination.port",
            "destination.uid",
            "source.uid"
        ]
    );
    let metrics = Metrics::default();
    let generated = Dispatcher { table: &table, metrics: &metrics }
        .preprocess(table.routes("default"), &bare, &mut istio_attribute::NoTracking)
        .await
        .expect("generates");
    let value = |name: &str| generated.get_value(name).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(value("source.workload.name").as_deref(), Some("reviews-v3"));
    assert_eq!(value("destination.serviceAccount").as_deref(), Some("bookinfo-ratings"));
    assert_eq!(value("destination.container.name").as_deref(), Some("ratings"));
    assert_eq!(value("source.namespace").as_deref(), Some("default"));
}
