//! `redisquota` against a real Redis (Debian's `redis-server`, started on loopback by the test):
//! the productpage samples' rolling and fixed windows, overrides, deduplication, and a Redis
//! that goes away and comes back.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use istio_attribute::{MapBag, Value};
use istio_config::object::{Object, ObjectKey};
use mixer::dispatch::{Dispatcher, QuotaRequest};
use mixer::metrics::Metrics;
use mixer::table::{compile, Table};
use mixer::Environment;

/// A `redis-server` on a free loopback port, stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample(path: &str, port: u16) -> BTreeMap<ObjectKey, Object> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    let mut text = std::fs::read_to_string(root.join("install/mixer/config.yaml")).expect("config");
    text.push_str("\n---\n");
    // The sample names the chart's Redis Service; here Redis listens on loopback.
    let sample = std::fs::read_to_string(root.join(path)).expect("sample");
    text.push_str(&sample.replace("redis-release-master:6379", &format!("127.0.0.1:{port}")));
    let (parsed, errors) = istio_config::yaml::parse_objects(path, &text);
    assert!(errors.is_empty(), "{errors:?}");
    parsed
        .into_iter()
        .map(|mut source| {
            source.object.default_namespace("default");
            (source.object.key(), source.object)
        })
        .collect()
}

async fn table(path: &str, port: u16) -> Table {
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = istio_config::store::directory::DirectoryStore::open(dir.path()).expect("store");
    let environment = Environment::with_pods(std::sync::Arc::new(pods));
    let table = compile(1, &sample(path, port), None, &environment, "istio-system").await;
    assert!(table.errors.is_empty(), "{:?}", table.errors);
    table
}

fn text(value: &str) -> Value<'static> {
    Value::String(value.to_string().into())
}

fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(std::borrow::Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

async fn grant(table: &Table, bag: &MapBag, dedup: &str) -> i64 {
    let metrics = Metrics::default();
    let quotas = [QuotaRequest { name: "requestcountquota".into(), amount: 1, best_effort: false }];
    let outcome = Dispatcher { table, metrics: &metrics }.check(bag, &quotas, dedup).await.expect("checks");
    outcome.quotas[0].1.result.amount
}

fn productpage(client: &str) -> MapBag {
    MapBag::new()
        .with("destination.namespace", text("default"))
        .with("destination.labels", labels(&[("app", "productpage"), ("version", "v1")]))
        .with("source.labels", labels(&[("app", "curl")]))
        .with("request.headers", labels(&[("x-forwarded-for", client)]))
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn rolling_window_allows_two_per_second_per_client() {
    let redis = Redis::start();
    let table =
        table("samples/bookinfo/policy/mixer-rule-productpage-redis-quota-rolling-window.yaml", redis.port).await;
    let client = productpage("10.0.0.1");
    let mut grants = Vec::new();
    for n in 0..3 {
        grants.push(grant(&table, &client, &format!("r{n}-")).await);
    }
    assert_eq!(grants, [1, 1, 0]);
    // A retry of an allowed request (same deduplication id) is not charged again.
    assert_eq!(grant(&table, &client, "r0-").await, 1);
    // Another client, and the special address with its own override.
    assert_eq!(grant(&table, &productpage("10.0.0.2"), "o1-").await, 1);
    for n in 0..5 {
        assert_eq!(grant(&table, &productpage("10.28.11.20"), &format!("s{n}-")).await, 1);
    }
    // The window rolls on.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(grant(&table, &client, "after-").await, 1);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn fixed_window_applies_only_where_the_rule_matches() {
    let redis = Redis::start();
    let table = table("samples/bookinfo/policy/mixer-rule-productpage-redis-quota-fixed-window.yaml", redis.port).await;
    let client = productpage("10.0.0.1");
    assert_eq!(grant(&table, &client, "f1-").await, 1);
    assert_eq!(grant(&table, &client, "f2-").await, 0, "one per 30 s");
    // The gateway's override allows 50.
    let mut gateway = productpage("10.0.0.1");
    gateway.set("source.labels", labels(&[("app", "istio-ingressgateway")]));
    for n in 0..5 {
        assert_eq!(grant(&table, &gateway, &format!("g{n}-")).await, 1);
    }
    // Other services are not matched by the rule: granted in full, without Redis.
    let mut ratings = productpage("10.0.0.1");
    ratings.set("destination.labels", labels(&[("app", "ratings")]));
    for n in 0..3 {
        assert_eq!(grant(&table, &ratings, &format!("x{n}-")).await, 1);
    }
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_redis_that_goes_away_is_unavailable_then_used_again() {
    let mut redis = Redis::start();
    let port = redis.port;
    let table = table("samples/bookinfo/policy/mixer-rule-productpage-redis-quota-rolling-window.yaml", port).await;
    assert_eq!(grant(&table, &productpage("10.0.0.3"), "a-").await, 1);
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let metrics = Metrics::default();
    let quotas = [QuotaRequest { name: "requestcountquota".into(), amount: 1, best_effort: false }];
    let outcome = Dispatcher { table: &table, metrics: &metrics }
        .check(&productpage("10.0.0.3"), &quotas, "b-")
        .await
        .expect("checks");
    let result = &outcome.quotas[0].1.result;
    assert_eq!((result.amount, result.status.code), (0, mixer::status::UNAVAILABLE));
    assert_eq!(result.status.message, "redishandler.istio-system:redisquota: Service Unavailable");
    // The same port again: the connection manager reconnects.
    redis.child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server restarts");
    let started = Instant::now();
    loop {
        if grant(&table, &productpage("10.0.0.4"), &format!("c{}-", started.elapsed().as_millis())).await == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
