//! The Istio 1.4 telemetry tasks on the local platform's demo, once with the built-in proxy as
//! every sidecar and gateway (Istio 1.4's `mixer` filter reporting to `istio-telemetry`) and
//! once with a stock Envoy (gRPC access logs streamed to `istio-telemetry`, which Mixer maps to
//! the same attributes). The samples are applied unchanged, and both planes must show the same
//! series and labels.
//!
//! - Querying metrics: after Bookinfo traffic through the ingress gateway, istio-telemetry's
//!   prometheus adapter (`:42422/metrics`) has `istio_requests_total` for productpage and
//!   reviews v3 as both reporters, with 1.4's labels (workloads, apps, versions, the service,
//!   `response_code`, `connection_security_policy`, …), and the duration and size histograms.
//! - Querying metrics from Prometheus: the demo's Prometheus (Debian's, as 1.4's `prometheus`
//!   addon, scraping istio-telemetry as job `istio-mesh`) answers the task's three queries:
//!   `istio_requests_total`, the reviews v3 series, and the rate of productpage's 200s.
//! - Collecting metrics: `telemetry/metrics.yaml` adds `istio_double_request_count` with
//!   `message="twice the fun!"`, counted twice per request, for the server and client reporters.
//! - Collecting metrics for TCP services: tcp-echo behind the gateway's port 31400 (1.4's task
//!   used MongoDB, which no registry here has), `telemetry/tcp-metrics.yaml` with its host
//!   changed to tcp-echo: `istio_mongo_received_bytes` and `istio_mongo_sent_bytes` count the
//!   bytes, and the default config's `istio_tcp_*` series show the connections opened and
//!   closed, from the gateway (source) and from tcp-echo's sidecar (destination).
//! - Collecting logs: `telemetry/log-entry.yaml` writes `newlog` JSON entries (destination,
//!   latency, responseCode, responseSize, source, user) at level `warn` to istio-telemetry's
//!   output.
//! - Distributed tracing: with the demo's 100% sampling, the trace collector (the demo's
//!   `zipkin` Service) answers Zipkin's query API with traces that run from the ingress gateway
//!   through productpage to details and to reviews and on to ratings, each proxy reporting under
//!   its service cluster (`productpage.default`, …) with 1.4's span names (the route's
//!   `host:port/path` decorator).
//!
//! - Dashboards: `istioctl dashboard prometheus|zipkin|jaeger` print the addons' URLs, which
//!   answer (the collector's front page lists the gateway's traces); `dashboard envoy POD` and
//!   `x local port-forward` forward a local port into the pod, to the proxy's admin API on its
//!   loopback and to the app's port.
//! - The mesh console, looked at in a real browser (headless Chromium): the service graph lists
//!   the Bookinfo workloads with edges from the gateway to productpage and on to details,
//!   reviews and ratings; the mesh and service dashboards show a non-zero request volume; a
//!   trace from the list opens as a waterfall; the config page shows each proxy SYNCED; a
//!   dashboard without traffic says so. Screenshots are kept in
//!   `target/test-artifacts/mesh-console/`.
//! - Control-plane metrics under 1.4's names: every metric 1.4.6's Grafana dashboards (Pilot,
//!   Galley, Citadel, Mixer, Mesh) query of the control plane is on the component's monitoring
//!   port with that name and type (Go runtime and cAdvisor series aside), and the demo's
//!   Prometheus answers a sample of those dashboards' queries as they were written.
//!
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::time::{Duration, Instant};

use e2e::local::{sample, LocalMesh, Plane, Task};

#[path = "telemetry_tasks/control_plane.rs"]
mod control_plane;
use control_plane::control_plane_metrics;

const TASKS: [(&str, Task); 9] = [
    ("querying metrics", querying_metrics),
    ("querying metrics from Prometheus", querying_prometheus),
    ("collecting metrics", collecting_metrics),
    ("TCP metrics", tcp_metrics),
    ("collecting logs", collecting_logs),
    ("distributed tracing", distributed_tracing),
    ("dashboards", dashboards),
    ("mesh console", mesh_console),
    ("control plane metrics", control_plane_metrics),
];

/// Reports are batched for up to a second; kubernetesenv needs the pods; a minute is plenty.
const PATIENCE: Duration = Duration::from_secs(60);
/// Prometheus scrapes every 15 s, as 1.4's did, and a rate needs two scrapes with data.
const PROMETHEUS_PATIENCE: Duration = Duration::from_secs(120);

/// istio-telemetry's prometheus adapter (the local platform's `TELEMETRY` address and
/// `MIXER_PROMETHEUS_PORT`).
fn metrics_address() -> String {
    "10.44.0.15:42422".to_string()
}

fn set_up(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/networking/destination-rule-all.yaml"));
    mesh.apply(&sample("bookinfo/networking/virtual-service-reviews-v3.yaml"));
}

fn reset(mesh: &LocalMesh) {
    for (kind, name) in [
        ("instances", "doublerequestcount"),
        ("handlers", "doublehandler"),
        ("rules", "doubleprom"),
        ("instances", "newlog"),
        ("handlers", "newloghandler"),
        ("rules", "newlogstdio"),
    ] {
        mesh.delete_in("istio-system", kind, name);
    }
    for (kind, name) in [
        ("instances", "mongosentbytes"),
        ("instances", "mongoreceivedbytes"),
        ("handlers", "mongohandler"),
        ("rules", "mongoprom"),
    ] {
        mesh.delete_in("default", kind, name);
    }
}

/// Prometheus (the demo's addon, Debian's `prometheus`), as 1.4's prometheus addon.
const PROMETHEUS: &str = "10.44.0.16:9090";

/// A Prometheus instant query: the result vector.
fn prometheus_query(query: &str) -> Vec<serde_json::Value> {
    let output = std::process::Command::new("curl")
        .args(["-s", "-G", "--max-time", "5", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(format!("http://{PROMETHEUS}/api/v1/query"))
        .output()
        .expect("curl runs");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    answer["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The task's three queries, answered by the real Prometheus scraping istio-telemetry
/// (job `istio-mesh`) every 15 s, as 1.4's did.
fn querying_prometheus(mesh: &LocalMesh) {
    let installed = std::process::Command::new("sh").args(["-c", "command -v prometheus"]).output();
    assert!(
        installed.is_ok_and(|output| output.status.success()),
        "Debian's prometheus is not installed (test.sh installs it)"
    );
    let queries = [
        "istio_requests_total",
        "istio_requests_total{destination_service=\"reviews.default.svc.cluster.local\", destination_version=\"v3\"}",
        "rate(istio_requests_total{destination_service=~\"productpage.*\", response_code=\"200\"}[5m])",
    ];
    let deadline = Instant::now() + PROMETHEUS_PATIENCE;
    loop {
        traffic(mesh, 3);
        let answers: Vec<Vec<serde_json::Value>> = queries.iter().map(|query| prometheus_query(query)).collect();
        let rate_positive = answers[2].iter().any(|series| {
            series["value"][1].as_str().and_then(|value| value.parse::<f64>().ok()).is_some_and(|value| value > 0.0)
        });
        // Every job of 1.4's config has its targets up, the sidecars' included.
        let up: std::collections::BTreeSet<String> = prometheus_query("up == 1")
            .iter()
            .filter_map(|series| series["metric"]["job"].as_str().map(str::to_string))
            .collect();
        let jobs = ["citadel", "envoy-stats", "galley", "istio-mesh", "istio-policy", "istio-telemetry", "pilot"];
        if answers.iter().all(|answer| !answer.is_empty()) && rate_positive && jobs.iter().all(|job| up.contains(*job))
        {
            let v3 = &answers[1][0]["metric"];
            assert_eq!(v3["job"], "istio-mesh", "{v3}");
            assert_eq!(v3["destination_app"], "reviews", "{v3}");
            assert!(v3["reporter"] == "source" || v3["reporter"] == "destination", "{v3}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: Prometheus never answered the task's queries: {:#?}; jobs up: {up:?}",
            mesh.plane,
            queries.iter().zip(&answers).map(|(query, answer)| (query, answer.len())).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    // `istioctl x metrics productpage-v1` asks the same Prometheus with 1.4's queries.
    let deadline = Instant::now() + PROMETHEUS_PATIENCE;
    loop {
        traffic(mesh, 3);
        let (code, out, err) = mesh.istioctl(&["x", "metrics", "productpage-v1"]);
        let row = out.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
        let rps = row.get(1).and_then(|rps| rps.parse::<f64>().ok()).unwrap_or(0.0);
        if code == 0
            && out.lines().next().is_some_and(|header| header.trim_start().starts_with("WORKLOAD    TOTAL RPS"))
            && row.first() == Some(&"productpage-v1")
            && rps > 0.0
            && row.len() == 6
        {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: x metrics never showed productpage's rate:\n{out}{err}", mesh.plane);
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// `count` pages through the gateway.
fn traffic(mesh: &LocalMesh, count: usize) {
    for _ in 0..count {
        let (status, _, _) = e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
        assert_eq!(status, 200, "{:?}: /productpage", mesh.plane);
    }
}

/// The series of `name` whose labels contain every one of `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && labels.iter().all(|label| line.contains(label)))
        .map(str::to_string)
        .collect()
}

/// Sends traffic until the metrics endpoint shows every `wanted` (metric, labels) series.
fn until_series(mesh: &LocalMesh, wanted: &[(&str, &[&str])]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        traffic(mesh, 3);
        std::thread::sleep(Duration::from_millis(1500));
        let (status, text) = e2e::http_get(&metrics_address(), "/metrics");
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(name, labels)| series(&text, name, labels).is_empty())
            .map(|(name, labels)| format!("{name}{labels:?}"))
            .collect();
        if status == 200 && missing.is_empty() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: istio-telemetry's metrics never had {missing:#?}; last answer {status}:\n{text}",
            mesh.plane
        );
    }
}

fn querying_metrics(mesh: &LocalMesh) {
    let productpage_as_server: &[&str] = &[
        "reporter=\"destination\"",
        "destination_service=\"productpage.default.svc.cluster.local\"",
        "destination_app=\"productpage\"",
        "destination_version=\"v1\"",
        "destination_workload=\"productpage-v1\"",
        "destination_workload_namespace=\"default\"",
        "source_workload=\"istio-ingressgateway\"",
        "request_protocol=\"http\"",
        "response_code=\"200\"",
        "response_flags=\"-\"",
    ];
    let reviews_v3: &[&str] = &[
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_version=\"v3\"",
        "source_app=\"productpage\"",
    ];
    let text = until_series(
        mesh,
        &[
            ("istio_requests_total", productpage_as_server),
            ("istio_requests_total", &["reporter=\"source\"", "source_workload=\"istio-ingressgateway\""]),
            ("istio_requests_total", &[reviews_v3, &["reporter=\"destination\""]].concat()),
            ("istio_requests_total", &[reviews_v3, &["reporter=\"source\""]].concat()),
            ("istio_requests_total", &["destination_app=\"ratings\"", "source_version=\"v3\""]),
            ("istio_request_duration_seconds_bucket", &["destination_app=\"details\"", "le=\"10\""]),
            ("istio_response_bytes_count", &["destination_app=\"reviews\""]),
        ],
    );
    // Each reporter counts each request once: the gateway's and productpage's counts agree
    // within the batches still on their way.
    let count = |text: &str, labels: &[&str]| -> f64 {
        series(text, "istio_requests_total", labels)
            .iter()
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Three pages were asked for; reports still in a batch arrive within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = text;
    let mut server = count(&text, &["reporter=\"destination\"", "destination_app=\"productpage\""]);
    while server < 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        text = e2e::http_get(&metrics_address(), "/metrics").1;
        server = count(&text, &["reporter=\"destination\"", "destination_app=\"productpage\""]);
    }
    assert!(server >= 3.0, "{:?}: productpage counted {server} times:\n{text}", mesh.plane);
    let secured = series(&text, "istio_requests_total", &["reporter=\"destination\"", "destination_app=\"details\""]);
    assert!(
        secured.iter().all(|line| line.contains("connection_security_policy=\"none\"")
            || line.contains("connection_security_policy=\"mutual_tls\"")),
        "{secured:#?}"
    );
}

fn collecting_metrics(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/telemetry/metrics.yaml"));
    until_series(
        mesh,
        &[
            (
                "istio_double_request_count",
                &["message=\"twice the fun!\"", "reporter=\"server\"", "destination=\"productpage-v1\""],
            ),
            (
                "istio_double_request_count",
                &["message=\"twice the fun!\"", "reporter=\"client\"", "source=\"productpage-v1\""],
            ),
        ],
    );
}

/// Sends a line to tcp-echo through the gateway's port 31400; its answer.
fn tcp_echo(mesh: &LocalMesh, line: &str) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(format!("{}:31400", mesh.gateway_ip())).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}

fn tcp_metrics(mesh: &LocalMesh) {
    mesh.apply(&sample("tcp-echo/tcp-echo-services.yaml"));
    mesh.wait_ready("tcp-echo", "default", 2);
    mesh.apply(&sample("tcp-echo/tcp-echo-all-v1.yaml"));
    let task = std::fs::read_to_string(sample("bookinfo/telemetry/tcp-metrics.yaml")).expect("tcp-metrics.yaml");
    mesh.apply_yaml(&task.replace("mongodb.default.svc.cluster.local", "tcp-echo.default.svc.cluster.local"));
    let wanted: &[(&str, &[&str])] = &[
        ("istio_mongo_received_bytes", &["destination_version=\"v1\"", "source_service=\"istio-ingressgateway\""]),
        ("istio_mongo_sent_bytes", &["destination_version=\"v1\""]),
        (
            "istio_tcp_connections_opened_total",
            &["reporter=\"source\"", "source_workload=\"istio-ingressgateway\"", "destination_app=\"tcp-echo\""],
        ),
        (
            "istio_tcp_connections_closed_total",
            &["reporter=\"destination\"", "destination_workload=\"tcp-echo-v1\"", "destination_version=\"v1\""],
        ),
        ("istio_tcp_received_bytes_total", &["destination_service=\"tcp-echo.default.svc.cluster.local\""]),
        ("istio_tcp_sent_bytes_total", &["destination_service_name=\"tcp-echo\"", "reporter=\"destination\""]),
    ];
    let deadline = Instant::now() + PATIENCE;
    loop {
        for _ in 0..3 {
            let _ = tcp_echo(mesh, "hello");
        }
        std::thread::sleep(Duration::from_millis(1500));
        let (status, text) = e2e::http_get(&metrics_address(), "/metrics");
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(name, labels)| series(&text, name, labels).is_empty())
            .map(|(name, labels)| format!("{name}{labels:?}"))
            .collect();
        if status == 200 && missing.is_empty() {
            // "hello\n" in, "one hello\n" out, per connection.
            let received = series(&text, "istio_mongo_received_bytes", &["destination_version=\"v1\""]);
            assert!(
                received.iter().any(|line| line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(|n| n >= 6.0)),
                "{received:#?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: istio-telemetry's metrics never had {missing:#?}; last answer {status}:\n{}",
            mesh.plane,
            text.lines().filter(|line| line.contains("tcp") || line.contains("mongo")).collect::<Vec<_>>().join("\n")
        );
    }
}

/// istio-telemetry's output, wherever the platform keeps it.
fn telemetry_log(mesh: &LocalMesh) -> String {
    let mut pending = vec![mesh.root().join("logs")];
    let mut text = String::new();
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().contains("istio-telemetry") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

fn collecting_logs(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/telemetry/log-entry.yaml"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        traffic(mesh, 3);
        std::thread::sleep(Duration::from_millis(1500));
        let log = telemetry_log(mesh);
        let entries: Vec<serde_json::Value> = log
            .lines()
            .filter(|line| line.contains("\"instance\":\"newlog.instance.istio-system\""))
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let details =
            entries.iter().find(|entry| entry["destination"] == "details" && entry["source"] == "productpage");
        if let Some(entry) = details {
            assert_eq!(entry["level"], "warn", "{entry}");
            assert_eq!(entry["responseCode"], 200, "{entry}");
            assert!(entry["responseSize"].as_i64().is_some_and(|size| size > 0), "{entry}");
            assert!(entry["latency"].as_str().is_some_and(|latency| latency.ends_with('s')), "{entry}");
            assert!(entry["user"].is_string(), "{entry}");
            return;
        }
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        assert!(
            Instant::now() < deadline,
            "{:?}: no newlog entry for productpage → details among {} entries; istio-telemetry's output ends:\n{}",
            mesh.plane,
            entries.len(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// The trace collector's Zipkin port (the local platform's `TRACING` address and `ZIPKIN_PORT`).
const ZIPKIN: &str = "10.44.0.17:9411";

/// A span's service, kind and name, as `service KIND name`.
fn describe(span: &serde_json::Value) -> String {
    format!(
        "{} {} {}",
        span["localEndpoint"]["serviceName"].as_str().unwrap_or("?"),
        span["kind"].as_str().unwrap_or("-"),
        span["name"].as_str().unwrap_or("?")
    )
}

/// The spans from `span` up to the trace's root, described.
fn ancestry(trace: &[serde_json::Value], span: &serde_json::Value) -> Vec<String> {
    let mut chain = vec![describe(span)];
    let mut parent = span["parentId"].as_str();
    while let Some(id) = parent {
        let Some(next) = trace.iter().find(|candidate| candidate["id"].as_str() == Some(id)) else { break };
        chain.push(describe(next));
        parent = next["parentId"].as_str();
        if chain.len() > trace.len() {
            break;
        }
    }
    chain
}

fn distributed_tracing(mesh: &LocalMesh) {
    let gateway = "istio-ingressgateway CLIENT productpage.default.svc.cluster.local:9080/productpage";
    // Every proxy on the way, innermost first: ratings' inbound side, reviews' call to it,
    // reviews' inbound side, productpage's call to reviews, productpage's inbound side, the gateway.
    // A server span takes its caller's operation (`x-envoy-decorator-operation`), as Envoy's do.
    let to_ratings = [
        "ratings.default SERVER ratings.default.svc.cluster.local:9080/*",
        "reviews.default CLIENT ratings.default.svc.cluster.local:9080/*",
        "reviews.default SERVER reviews.default.svc.cluster.local:9080/*",
        "productpage.default CLIENT reviews.default.svc.cluster.local:9080/*",
        "productpage.default SERVER productpage.default.svc.cluster.local:9080/productpage",
        gateway,
    ];
    let to_details = [
        "details.default SERVER details.default.svc.cluster.local:9080/*",
        "productpage.default CLIENT details.default.svc.cluster.local:9080/*",
        "productpage.default SERVER productpage.default.svc.cluster.local:9080/productpage",
        gateway,
    ];
    let query = "/api/v2/traces?serviceName=istio-ingressgateway\
        &spanName=productpage.default.svc.cluster.local:9080/productpage&limit=20";
    let deadline = Instant::now() + PATIENCE;
    loop {
        traffic(mesh, 5);
        // The proxies send their spans every second (Envoy: every five spans or five seconds).
        std::thread::sleep(Duration::from_secs(2));
        let (status, body) = e2e::http_get(ZIPKIN, query);
        let traces: Vec<Vec<serde_json::Value>> = serde_json::from_str(&body).unwrap_or_default();
        let chains = |trace: &[serde_json::Value], innermost: &str| -> Vec<Vec<String>> {
            trace.iter().filter(|span| describe(span) == innermost).map(|span| ancestry(trace, span)).collect()
        };
        let complete = traces.iter().find(|trace| {
            chains(trace, to_ratings[0]).iter().any(|chain| chain == &to_ratings)
                && chains(trace, to_details[0]).iter().any(|chain| chain == &to_details)
        });
        if let Some(trace) = complete {
            assert!(trace.iter().all(|span| span["traceId"] == trace[0]["traceId"]), "one trace id");
            let (_, services) = e2e::http_get(ZIPKIN, "/api/v2/services");
            let services: Vec<String> = serde_json::from_str(&services).expect("services");
            for service in ["details.default", "istio-ingressgateway", "productpage.default", "ratings.default"] {
                assert!(services.iter().any(|known| known == service), "{service} missing from {services:?}");
            }
            return;
        }
        let seen: Vec<Vec<String>> = traces.iter().take(2).map(|trace| trace.iter().map(describe).collect()).collect();
        assert!(
            Instant::now() < deadline,
            "{:?}: the collector never had a trace through the gateway, productpage, details, reviews and \
             ratings; last answer {status} with {} traces, the first ones' spans: {seen:#?}",
            mesh.plane,
            traces.len()
        );
    }
}

/// `istioctl dashboard NAME --browser=false`: the URL it prints.
fn dashboard_url(mesh: &LocalMesh, name: &str) -> String {
    let (code, out, err) = mesh.istioctl(&["dashboard", name, "--browser=false"]);
    assert_eq!(code, 0, "dashboard {name}: {out}{err}");
    out.trim().to_string()
}

/// Starts a forwarding istioctl command and returns it with the local address it printed.
fn forwarding(mesh: &LocalMesh, args: &[&str]) -> (e2e::Process, String) {
    let process = LocalMesh::istioctl_process(&mesh.root(), args);
    let line = process.next_line(Duration::from_secs(20)).unwrap_or_else(|| panic!("{args:?}: {}", process.stderr()));
    let address = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("http://").or_else(|| word.contains(':').then_some(word)))
        .unwrap_or_else(|| panic!("{args:?} printed {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (process, address)
}

fn dashboards(mesh: &LocalMesh) {
    assert_eq!(dashboard_url(mesh, "prometheus"), "http://10.44.0.16:9090");
    let (status, _) = e2e::http_get("10.44.0.16:9090", "/-/ready");
    assert_eq!(status, 200, "Prometheus is ready");
    assert_eq!(dashboard_url(mesh, "zipkin"), format!("http://{ZIPKIN}/"));
    assert_eq!(dashboard_url(mesh, "jaeger"), format!("http://{ZIPKIN}/"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        traffic(mesh, 2);
        let (status, page) = e2e::http_get(ZIPKIN, "/?serviceName=istio-ingressgateway");
        if status == 200
            && page.contains("istio-ingressgateway: productpage.default.svc.cluster.local:9080/productpage")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: the collector's front page never listed a trace:\n{page}",
            mesh.plane
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // The proxy's admin API, on the pod's loopback only, through a forwarded port.
    let (mut envoy, admin) = forwarding(mesh, &["dashboard", "envoy", "productpage-v1", "--browser=false"]);
    let (status, info) = e2e::http_get(&admin, "/server_info");
    assert_eq!(status, 200, "{:?}: /server_info through the forward: {info}", mesh.plane);
    let (status, stats) = e2e::http_get(&admin, "/stats/prometheus");
    assert!(status == 200 && stats.contains("envoy_cluster_upstream_cx_total"), "{:?}: {status}", mesh.plane);
    envoy.terminate();
    assert!(envoy.wait_exit(Duration::from_secs(10)).is_some(), "dashboard envoy ends on SIGTERM");

    let (mut forward, address) = forwarding(mesh, &["x", "local", "port-forward", "details-v1", "0:9080"]);
    let (status, details) = e2e::http_get(&address, "/details/0");
    assert!(status == 200 && details.contains("\"ISBN-10\""), "{status}: {details}");
    forward.terminate();
    assert!(forward.wait_exit(Duration::from_secs(10)).is_some(), "port-forward ends on SIGTERM");

    let (code, _, err) = mesh.istioctl(&["dashboard", "envoy", "nosuchpod", "--browser=false"]);
    assert!(code != 0 && err.contains("pods \"nosuchpod\" not found in namespace default"), "{err}");
}

/// The mesh console (the local platform's `CONSOLE` address and port).
const CONSOLE: &str = "10.44.0.18:20001";

/// The number a dashboard's single stat shows (`<div class="stat">TITLE<b>3.2 ops</b>`).
fn stat(page: &str, title: &str) -> Option<f64> {
    let start = page.find(&format!("<div class=\"stat\">{title}<b>"))? + title.len() + 21;
    let number: String = page[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    number.parse().ok()
}

fn mesh_console(mesh: &LocalMesh) {
    assert!(e2e::browser::available(), "Debian's chromium is not installed (test.sh installs it)");
    let shots = e2e::browser::artifacts("mesh-console");
    let plane = format!("{:?}", mesh.plane).to_lowercase();
    let url = |path: &str| format!("http://{CONSOLE}{path}");
    let (code, out, err) = mesh.istioctl(&["dashboard", "kiali", "--browser=false"]);
    assert_eq!((code, out.trim()), (0, url("/graph").as_str()), "{err}");
    let (code, out, err) = mesh.istioctl(&["dashboard", "grafana", "--browser=false"]);
    assert_eq!((code, out.trim()), (0, url("/dashboards").as_str()), "{err}");

    // The graph, once Prometheus has two scrapes of the calls (the server's own HTML first).
    let edges = [
        ("istio-ingressgateway (istio-system)", "productpage-v1 (default)"),
        ("productpage-v1 (default)", "details-v1 (default)"),
        ("productpage-v1 (default)", "reviews-v3 (default)"),
        ("reviews-v3 (default)", "ratings-v1 (default)"),
    ];
    let has_edge =
        |page: &str, (from, to): (&str, &str)| page.contains(&format!("<td>{from}</td><td>{to}</td><td>HTTP</td>"));
    let deadline = Instant::now() + PROMETHEUS_PATIENCE;
    loop {
        traffic(mesh, 3);
        let (status, page) = e2e::http_get(CONSOLE, "/graph");
        if status == 200 && edges.iter().all(|edge| has_edge(&page, *edge)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: the console's graph never had every Bookinfo edge:\n{page}",
            mesh.plane
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    let graph = e2e::browser::dom(&url("/graph"));
    for workload in ["istio-ingressgateway", "productpage-v1", "details-v1", "reviews-v3", "ratings-v1"] {
        assert!(graph.contains(&format!(">{workload}</text>")), "{workload} is not a node of the graph:\n{graph}");
    }
    assert!(edges.iter().all(|edge| has_edge(&graph, *edge)), "{graph}");
    assert!(graph.matches("class=\"edge\"").count() >= 2 * edges.len(), "edges drawn and listed");
    e2e::browser::screenshot(&url("/graph"), &shots.join(format!("{plane}-graph.png")), (1500, 900));

    // Dashboards: the mesh's and productpage's request volume is not zero.
    let deadline = Instant::now() + PROMETHEUS_PATIENCE;
    let service = "/dashboards/service?service=productpage.default.svc.cluster.local&window=5m";
    loop {
        traffic(mesh, 3);
        let mesh_page = e2e::browser::dom(&url("/dashboards?window=5m"));
        let service_page = e2e::browser::dom(&url(service));
        let volumes = (stat(&mesh_page, "Request volume"), stat(&service_page, "Request volume"));
        if matches!(volumes, (Some(a), Some(b)) if a > 0.0 && b > 0.0) {
            assert!(mesh_page.contains("<svg") && mesh_page.contains("productpage.default.svc.cluster.local"));
            assert!(stat(&service_page, "Success rate (non-5xx responses)").is_some_and(|rate| rate > 0.0));
            break;
        }
        assert!(Instant::now() < deadline, "{:?}: request volumes stayed {volumes:?}:\n{mesh_page}", mesh.plane);
        std::thread::sleep(Duration::from_secs(3));
    }
    e2e::browser::screenshot(
        &url("/dashboards?window=5m"),
        &shots.join(format!("{plane}-mesh-dashboard.png")),
        (1400, 1000),
    );
    e2e::browser::screenshot(&url(service), &shots.join(format!("{plane}-service-dashboard.png")), (1400, 1300));

    // A dashboard without traffic says so, in place of empty charts.
    let idle = e2e::browser::dom(&url("/dashboards/workload?workload=nosuch&namespace=default"));
    assert!(idle.contains("No traffic to or from nosuch.default has been reported in this window."), "{idle}");
    assert!(!idle.contains("<svg"), "no empty charts");

    // Traces: the list links to a trace, which opens as a waterfall through Bookinfo.
    let list = e2e::browser::dom(&url("/traces?service=istio-ingressgateway"));
    let link = list
        .split("href=\"/traces/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{:?}: no trace in the list:\n{list}", mesh.plane))
        .to_string();
    let trace = e2e::browser::dom(&url(&format!("/traces/{link}")));
    assert!(trace.contains("id=\"waterfall\""), "{trace}");
    assert!(trace.matches("class=\"span\"").count() >= 6, "{trace}");
    for service in ["istio-ingressgateway", "productpage.default", "reviews.default", "details.default"] {
        assert!(trace.contains(&format!("<b>{service}</b>")), "{service} missing from the waterfall:\n{trace}");
    }
    e2e::browser::screenshot(&url(&format!("/traces/{link}")), &shots.join(format!("{plane}-trace.png")), (1400, 700));

    // Config: every proxy in sync, the config Pilot serves, Galley's admissions.
    let config = e2e::browser::dom(&url("/config"));
    assert!(config.contains("productpage-v1-") && config.contains(">SYNCED</td>"), "{config}");
    assert!(config.contains("<td>VirtualService</td>") && config.contains("bookinfo.default"), "{config}");
    e2e::browser::screenshot(&url("/config"), &shots.join(format!("{plane}-config.png")), (1400, 900));
    println!("mesh console screenshots: {}", shots.display());
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn telemetry_tasks_with_the_builtin_proxy() {
    e2e::local::run_tasks(Plane::Builtin, &TASKS, set_up, reset);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn telemetry_tasks_with_envoy() {
    e2e::local::run_tasks(Plane::Envoy, &TASKS, set_up, reset);
}
