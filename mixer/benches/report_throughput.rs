//! Mixer's telemetry under a steady load: `Report` batches as the built-in proxy sends them
//! (up to 100 delta-encoded entries a call), each entry a Bookinfo request as a server sidecar
//! describes it, dispatched through kubernetesenv and 1.4's default telemetry config (the four
//! HTTP metric instances into the prometheus adapter). Prints Mixer's CPU per 1000 reported
//! requests (1.4 published 0.6 vCPU per 1000 mesh requests per second) and the latency of a
//! batch. `mixs` runs as its own process (the release build of this package's binary).
//!
//!   cargo bench -p mixer --bench report_throughput [-- --rate 1000 --seconds 10 --batch 100]

use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::batch::BatchEncoder;
use istio_attribute::{MapBag, Timestamp, Value};
use support::{arg, labels, text, Mixs};

mod support;

/// What the reviews sidecar reports for one request from productpage; the code varies a little,
/// as real traffic's does, so there are a few series.
fn entry(n: u64) -> MapBag {
    let code = if n.is_multiple_of(50) { 503 } else { 200 };
    MapBag::new()
        .with("context.reporter.kind", text("inbound"))
        .with("context.reporter.uid", text("kubernetes://reviews-v3-abc.default"))
        .with("context.protocol", text("http"))
        .with("destination.uid", text("kubernetes://reviews-v3-abc.default"))
        .with("destination.namespace", text("default"))
        .with("destination.service.host", text("reviews.default.svc.cluster.local"))
        .with("destination.service.name", text("reviews"))
        .with("destination.service.namespace", text("default"))
        .with("destination.port", Value::Int64(9080))
        .with("source.uid", text("kubernetes://productpage-v1-xyz.default"))
        .with("connection.mtls", Value::Bool(false))
        .with(
            "request.headers",
            labels(&[
                (":path", "/reviews/0"),
                (":method", "GET"),
                (":authority", "reviews:9080"),
                ("x-request-id", &format!("id-{n}")),
            ]),
        )
        .with("request.host", text("reviews:9080"))
        .with("request.path", text("/reviews/0"))
        .with("request.method", text("GET"))
        .with("request.useragent", text("python-requests/2.21.0"))
        .with("request.time", Value::Timestamp(Timestamp::now()))
        .with("request.size", Value::Int64(0))
        .with("response.code", Value::Int64(code))
        .with("response.size", Value::Int64(295))
        .with("response.duration", Value::Duration(i64::try_from(2_000_000 + (n % 7) * 1_000_000).unwrap_or(0)))
        .with("response.time", Value::Timestamp(Timestamp::now()))
        .with("context.proxy_error_code", text("-"))
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("report_throughput: run with `cargo bench -p mixer --bench report_throughput`");
        return;
    }
    let rate = arg("--rate", 1000);
    let seconds = arg("--seconds", 10);
    let batch = arg("--batch", 100).max(1);
    let mixs = Mixs::start(&["config.yaml", "telemetry.yaml"], &[], &["--prometheusAdapterPort", "0"]);
    let client = mixs.client().await;
    let request = |first: u64, count: u64| {
        let mut encoder = BatchEncoder::delta(222);
        for n in first..first + count {
            encoder.add(entry(n));
        }
        encoder.finish()
    };
    // The config is read from the directory at start; give it a moment, then warm up.
    let mut probe = client.clone();
    while probe.report(request(0, 1)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..20 {
        let _ = probe.report(request(n * batch, batch)).await;
    }
    let total = rate * seconds;
    let calls = total / batch;
    let batches: Vec<mixer::ReportRequest> = (0..calls).map(|call| request(call * batch, batch)).collect();
    let cpu_before = mixs.cpu_seconds();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let mut tasks = Vec::with_capacity(batches.len());
    for (n, batch_request) in batches.into_iter().enumerate() {
        let due = started + interval * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.report(batch_request).await;
            (sent.elapsed(), answer.is_ok())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for task in tasks {
        let (latency, ok) = task.await.expect("task");
        if !ok {
            failures += 1;
        }
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let cpu = mixs.cpu_seconds() - cpu_before;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!("Mixer Report, 1.4's telemetry config (kubernetesenv + 4 prometheus metrics), {rate} requests/s in batches of {batch} for {seconds} s:");
    println!(
        "  reports: {} calls, {total} requests in {:.1} s, failed calls: {failures}",
        calls,
        elapsed.as_secs_f64()
    );
    println!(
        "  batch latency p50 {:.3} ms, p99 {:.3} ms",
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
    println!("  Mixer CPU: {:.3} s, {:.4} vCPU-seconds per 1000 reported requests", cpu, cpu / (total as f64 / 1000.0));
}
