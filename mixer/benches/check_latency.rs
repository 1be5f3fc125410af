//! Mixer's `Check` under a steady load: latency (p50, p99) of full checks — every request
//! dispatched, as 1.4.6's Mixer did with its own cache off — through kubernetesenv, a
//! whitelist (`listchecker`) and a memquota quota, and Mixer's CPU per 1000 checks. `mixs` runs
//! as its own process (the release build of this package's binary), so its CPU is its own.
//!
//!   cargo bench -p mixer --bench check_latency [-- --rate 1000 --seconds 10]
//!
//! Requests are sent open-loop at the rate (not waiting for answers), over one HTTP/2
//! connection, as one proxy's client would.

use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::compressed::encode;
use istio_attribute::{MapBag, Value};
use support::{arg, labels, text, Mixs};

mod support;

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
    let mixs = Mixs::start(&["config.yaml"], &[("rules.yaml", RULES)], &[]);
    let client = mixs.client().await;
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
    let cpu_before = mixs.cpu_seconds();
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
    let cpu = mixs.cpu_seconds() - cpu_before;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!("Mixer Check, full dispatch (kubernetesenv + listchecker + memquota), {rate} checks/s for {seconds} s:");
    println!("  checks: {total} in {:.1} s, not OK: {failures}", elapsed.as_secs_f64());
    println!("  latency p50 {:.3} ms, p99 {:.3} ms", at(0.5).as_secs_f64() * 1000.0, at(0.99).as_secs_f64() * 1000.0);
    println!("  Mixer CPU: {:.3} s, {:.4} vCPU-seconds per 1000 checks", cpu, cpu / (total as f64 / 1000.0));
}
