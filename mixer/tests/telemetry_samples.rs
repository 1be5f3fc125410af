//! Mixer's telemetry config as the demo installs it (1.4's metric instances, the prometheus
//! handler and its rules, the stdio access log) and the 1.4 Bookinfo telemetry samples,
//! unchanged, compiled together and fed the reports a sidecar sends: the series and labels that
//! come out on the prometheus endpoint are 1.4's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use istio_attribute::value::ip_to_16_bytes;
use istio_attribute::{MapBag, Timestamp, Value};
use std::sync::Arc;

use istio_config::object::{Object, ObjectKey};
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;
use mixer::dispatch::Dispatcher;
use mixer::metrics::Metrics;
use mixer::table::{compile, Table};
use mixer::Environment;

fn workspace_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

async fn compiled(files: &[&str]) -> Table {
    let mut objects: BTreeMap<ObjectKey, Object> = BTreeMap::new();
    for file in files {
        let (parsed, errors) = istio_config::yaml::parse_objects(file, &workspace_file(file));
        assert!(errors.is_empty(), "{errors:?}");
        for mut source in parsed {
            source.object.default_namespace("default");
            objects.insert(source.object.key(), source.object);
        }
    }
    // An empty pod store: kubernetesenv runs and finds nobody, so the attributes given stand.
    let pods = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(pods.path()).expect("store");
    let environment = Environment::with_pods(Arc::new(store) as Arc<dyn Store>);
    let table = compile(1, &objects, None, &environment, "istio-system").await;
    std::mem::forget(pods);
    let errors: Vec<String> = table.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "config errors: {errors:#?}");
    table
}

fn text(value: &str) -> Value<'static> {
    Value::String(Cow::Owned(value.to_string()))
}

fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

/// What the reviews-v3 sidecar reports for a request productpage sent it (the attributes
/// kubernetesenv would add given as if already generated).
fn inbound_report(code: i64, user_agent: &str) -> MapBag {
    MapBag::new()
        .with("context.reporter.kind", text("inbound"))
        .with("context.protocol", text("http"))
        .with("connection.mtls", Value::Bool(true))
        .with("source.principal", text("cluster.local/ns/default/sa/bookinfo-productpage"))
        .with("source.workload.name", text("productpage-v1"))
        .with("source.workload.namespace", text("default"))
        .with("source.labels", labels(&[("app", "productpage"), ("version", "v1")]))
        .with("destination.workload.name", text("reviews-v3"))
        .with("destination.workload.namespace", text("default"))
        .with("destination.labels", labels(&[("app", "reviews"), ("version", "v3")]))
        .with("destination.service.host", text("reviews.default.svc.cluster.local"))
        .with("destination.service.name", text("reviews"))
        .with("destination.service.namespace", text("default"))
        .with("destination.ip", Value::Bytes(Cow::Owned(ip_to_16_bytes("10.1.0.7".parse().expect("ip")).to_vec())))
        .with("request.useragent", text(user_agent))
        .with("request.host", text("reviews:9080"))
        .with("request.time", Value::Timestamp(Timestamp::now()))
        .with("response.time", Value::Timestamp(Timestamp::now()))
        .with("response.code", Value::Int64(code))
        .with("response.size", Value::Int64(295))
        .with("request.size", Value::Int64(0))
        .with("response.duration", Value::Duration(12_000_000))
}

fn tcp_report(event: &str) -> MapBag {
    MapBag::new()
        .with("context.reporter.kind", text("outbound"))
        .with("context.protocol", text("tcp"))
        .with("connection.event", text(event))
        .with("connection.sent.bytes", Value::Int64(12))
        .with("connection.received.bytes", Value::Int64(30))
        .with("source.workload.name", text("sleep"))
        .with("destination.service.host", text("tcp-echo.default.svc.cluster.local"))
}

#[tokio::test]
async fn reports_become_1_4s_series() {
    let table = compiled(&[
        "install/mixer/config.yaml",
        "install/mixer/telemetry.yaml",
        "install/mixer/telemetry-stdio.yaml",
        "samples/bookinfo/telemetry/metrics.yaml",
        "samples/bookinfo/telemetry/log-entry.yaml",
    ])
    .await;
    let metrics = Metrics::default();
    let dispatcher = Dispatcher { table: &table, metrics: &metrics };
    for report in [
        inbound_report(200, "curl/8"),
        inbound_report(200, "curl/8"),
        inbound_report(503, "curl/8"),
        inbound_report(200, "kube-probe/1.16"),
    ] {
        dispatcher.report(&report).await.expect("reported");
    }
    for event in ["open", "continue", "close"] {
        // log-entry.yaml's rule matches everything but its instance needs `request.time`, which
        // a connection does not have: an error for that instance (as in 1.4), the rest counted.
        let error = dispatcher.report(&tcp_report(event)).await.expect_err("newlog cannot be built");
        assert!(error.to_string().contains("[newlog.instance.istio-system]'Timestamp'"), "{error}");
        assert!(!error.to_string().contains("tcpaccesslog"), "{error}");
    }
    let text = mixer::adapter::prometheus::exporter().render();
    let series = |name: &str, needles: &[&str]| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && needles.iter().all(|needle| line.contains(needle)))
            .map(str::to_string)
            .collect()
    };
    let ok = series(
        "istio_requests_total",
        &[
            "reporter=\"destination\"",
            "source_workload=\"productpage-v1\"",
            "source_app=\"productpage\"",
            "destination_version=\"v3\"",
            "destination_service=\"reviews.default.svc.cluster.local\"",
            "destination_service_name=\"reviews\"",
            "request_protocol=\"http\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "permissive_response_policyid=\"none\"",
            "connection_security_policy=\"mutual_tls\"",
            "source_principal=\"cluster.local/ns/default/sa/bookinfo-productpage\"",
        ],
    );
    assert_eq!(ok.len(), 1, "{text}");
    assert!(ok[0].ends_with(" 2"), "the kube-probe request is not counted: {ok:?}");
    assert_eq!(series("istio_requests_total", &["response_code=\"503\""]).len(), 1, "{text}");
    let duration = series("istio_request_duration_seconds_bucket", &["response_code=\"200\"", "le=\"0.025\""]);
    assert!(duration.first().is_some_and(|line| line.ends_with(" 2")), "{duration:?}");
    assert_eq!(series("istio_response_bytes_bucket", &["le=\"1000\"", "response_code=\"200\""]).len(), 1);
    let double = series("istio_double_request_count", &["message=\"twice the fun!\"", "reporter=\"server\""]);
    assert!(double.first().is_some_and(|line| line.ends_with(" 8")), "{double:?}");
    let opened = series("istio_tcp_connections_opened_total", &["reporter=\"source\"", "source_workload=\"sleep\""]);
    assert!(opened.first().is_some_and(|line| line.ends_with(" 1")), "{opened:?}");
    let closed = series("istio_tcp_connections_closed_total", &["connection_security_policy=\"unknown\""]);
    assert!(closed.first().is_some_and(|line| line.ends_with(" 1")), "{closed:?}");
    let sent = series("istio_tcp_sent_bytes_total", &["destination_service=\"tcp-echo.default.svc.cluster.local\""]);
    assert!(sent.first().is_some_and(|line| line.ends_with(" 36")), "three reports of 12 bytes: {sent:?}");
}

#[tokio::test]
async fn a_report_with_a_wrongly_typed_or_unknown_attribute_loses_only_what_needs_it() {
    let table = compiled(&["install/mixer/config.yaml", "install/mixer/telemetry.yaml"]).await;
    let metrics = Metrics::default();
    let dispatcher = Dispatcher { table: &table, metrics: &metrics };
    let report = inbound_report(299, "curl/8")
        // Not in any manifest: nothing reads it.
        .with("nosuch.attribute", text("ignored"))
        // A duration sent as text: the duration histogram cannot use it.
        .with("response.duration", text("twelve milliseconds"));
    let error = dispatcher.report(&report).await.expect_err("the duration is not a number");
    let error = error.to_string();
    assert!(error.contains("requestduration.instance.istio-system"), "{error}");
    assert!(!error.contains("requestcount"), "{error}");
    let text = mixer::adapter::prometheus::exporter().render();
    let counted = |name: &str| {
        text.lines().any(|line| line.starts_with(&format!("{name}{{")) && line.contains("response_code=\"299\""))
    };
    assert!(counted("istio_requests_total"), "the request still counts:\n{text}");
    assert!(counted("istio_response_bytes_count"), "{text}");
    assert!(!counted("istio_request_duration_seconds_count"), "{text}");
}
