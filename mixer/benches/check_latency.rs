//! Mixer's `Check` under a steady load: latency (p50, p99) of full checks — every request
//! dispatched, as 1.4.6's Mixer did with its own cache off — through kubernetesenv, a
//! whitelist (`listchecker`) and a memquota quota, and Mixer's CPU per 1000 checks. `mixs` runs
//! as its own process (the release build of this package's binary), so its CPU is its own.
//!
//!   cargo bench -p mixer --bench check_latency [-- --rate 1000 --seconds 10]
//!
//! Requests are sent open-loop at the rate (not waiting for answers), over one HTTP/2
//! connection, as one proxy's client would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::compressed::encode;
use istio_attribute::{MapBag, Value};

const RULES: &str = r#"
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: whitelist, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {overrides: [productpage, reviews, ratings, details], blacklist: false}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: appname, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params: {value: 'destination.labels["app"] | "unknown"'}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkapp, namespace: istio-system}
spec:
  match: destination.namespace == "default"
  actions: [{handler: whitelist, instances: [appname]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotahandler, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: requestcountquota.instance.istio-system, maxAmount: 1000000000, validDuration: 1s}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcountquota, namespace: istio-system}
spec:
  compiledTemplate: quota
  params:
    dimensions:
      source: request.headers["x-forwarded-for"] | "unknown"
      destination: destination.labels["app"] | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions: [{handler: quotahandler, instances: [requestcountquota]}]
"#;

/// CPU seconds a process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Mixs(Child);

impl Drop for Mixs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|pair| pair[0] == name).and_then(|pair| pair[1].parse().ok()).unwrap_or(default)
}

fn text(value: &str) -> Value<'static> {
    Value::String(value.to_string().into())
}

fn labels(entries: &[(&str, &str)]) -> Value<'static> {
    Value::StringMap(std::borrow::Cow::Owned(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

/// What a productpage sidecar sends, with a client address per `n` (distinct quota counters).
fn request(n: u64) -> mixer::CheckRequest {
    let bag = MapBag::new()
        .with("context.reporter.kind", text("inbound"))
        .with("destination.namespace", text("default"))
        .with("destination.uid", text("kubernetes://productpage-v1-abc.default"))
        .with("destination.labels", labels(&[("app", "productpage"), ("version", "v1")]))
        .with("source.uid", text("kubernetes://istio-ingressgateway-xyz.istio-system"))
        .with(
            "request.headers",
            labels(&[(":path", "/productpage"), ("x-forwarded-for", &format!("10.9.{}.{}", n / 250 % 250, n % 250))]),
        )
        .with("request.path", text("/productpage"))
        .with("destination.port", Value::Int64(9080));
    mixer::CheckRequest {
        attributes: Some(encode(&bag, 222)),
        global_word_count: 222,
        deduplication_id: format!("bench-{n}"),
        quotas: [(
            "requestcountquota".to_string(),
            mixer::check_request::QuotaParams { amount: 1, best_effort: false },
        )]
        .into(),
    }
}

#[tokio::main]
async fn main() {
    let rate = arg("--rate", 1000);
    let seconds = arg("--seconds", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::copy(root.join("install/mixer/config.yaml"), dir.path().join("config.yaml")).expect("config");
    std::fs::write(dir.path().join("rules.yaml"), RULES).expect("rules");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let store = format!("fs://{}", dir.path().display());
    let child = Command::new(env!("CARGO_BIN_EXE_mixs"))
        .args(["server", "--configStoreURL", &store, "--podStore", &dir.path().display().to_string()])
        .args(["--address", "127.0.0.1", "--port", &port.to_string(), "--monitoringPort", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mixs starts");
    let mixs = Mixs(child);
    let channel = loop {
        match tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("uri").connect().await
        {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let client = mixer::mixer_client::MixerClient::new(channel);
    // Until the config is in: the whitelist refuses an app it does not list.
    let mut probe = client.clone();
    loop {
        let mut refused = request(0);
        let bag = MapBag::new()
            .with("destination.namespace", text("default"))
            .with("destination.labels", labels(&[("app", "nope")]));
        refused.attributes = Some(encode(&bag, 222));
        let answer = probe
            .check(refused)
            .await
            .map(|r| r.into_inner().precondition.unwrap_or_default().status.unwrap_or_default().code);
        if answer.as_ref().ok() == Some(&7) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up, then measure.
    for n in 0..200 {
        let _ = probe.check(request(n)).await;
    }
    let total = rate * seconds;
    let requests: Vec<mixer::CheckRequest> = (0..total).map(request).collect();
    let cpu_before = cpu_seconds(mixs.0.id());
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(requests.len());
    for (n, request) in requests.into_iter().enumerate() {
        let due = started + interval * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.check(request).await;
            (
                sent.elapsed(),
                answer.map(|r| r.into_inner().precondition.unwrap_or_default().status.unwrap_or_default().code),
            )
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for task in tasks {
        let (latency, answer) = task.await.expect("task");
        if answer.as_ref().ok() != Some(&0) {
            failures += 1;
        }
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(mixs.0.id()) - cpu_before;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!("Mixer Check, full dispatch (kubernetesenv + listchecker + memquota), {rate} checks/s for {seconds} s:");
    println!("  checks: {total} in {:.1} s, not OK: {failures}", elapsed.as_secs_f64());
    println!("  latency p50 {:.3} ms, p99 {:.3} ms", at(0.5).as_secs_f64() * 1000.0, at(0.99).as_secs_f64() * 1000.0);
    println!("  Mixer CPU: {:.3} s, {:.4} vCPU-seconds per 1000 checks", cpu, cpu / (total as f64 / 1000.0));
}
