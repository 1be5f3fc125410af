//! 1.4's in-proxy telemetry ("telemetry v2", `values.telemetry.v2.enabled=true`) on the local
//! demo, beside Mixer's.
//!
//! - Built-in proxy: the installed EnvoyFilters give every sidecar and gateway the metadata
//!   exchange and the stats plugin, and Mixer's HTTP reports are off (`disableMixerHttpReports`):
//!   after Bookinfo traffic each sidecar's `:15090/stats/prometheus` has `istio_requests_total`
//!   (and the duration and size histograms) with 1.4's labels, the peers' workloads known from
//!   the exchange, while istio-telemetry counts no HTTP request. With Mixer's reports turned back
//!   on in the mesh config, both count the same traffic: for every label set the sidecars
//!   report, Mixer's `istio_requests_total` grows by the same number of requests (the gateway's
//!   own client-side series aside, as its proxy is not scraped here; `connection_security_policy`
//!   compared without case: 1.4's v2 wrote `NONE`, its Mixer config `none`). The mesh console
//!   draws the graph from the proxies' series, latency from their milliseconds histogram.
//! - Stock Envoy: it has no such plugins, so Pilot does not send it the patches (Envoy rejects
//!   nothing), its proxies have no `istio_requests_total`, and it keeps reporting to Mixer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::local::{sample, LocalMesh, Plane};

/// istio-telemetry's prometheus adapter.
const MIXER_METRICS: &str = "10.44.0.15:42422";
/// The mesh console (the local platform's `CONSOLE` address and port).
const CONSOLE: &str = "10.44.0.18:20001";

type Labels = BTreeMap<String, String>;

/// The samples of `name` in a Prometheus text exposition, by label set.
fn samples(text: &str, name: &str) -> BTreeMap<Labels, f64> {
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|rest| rest.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        found.insert(parse_labels(labels), value);
    }
    found
}

/// `a="x",b="y"` (values may hold escaped quotes and commas).
fn parse_labels(text: &str) -> Labels {
    let mut labels = Labels::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The Bookinfo pods in `default`.
fn bookinfo_pods(mesh: &LocalMesh) -> Vec<String> {
    mesh.pods()
        .iter()
        .filter(|pod| pod["metadata"]["namespace"] == "default")
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .filter(|name| ["productpage-", "details-", "reviews-", "ratings-"].iter().any(|app| name.starts_with(app)))
        .collect()
}

/// Every sidecar's in-proxy `istio_requests_total`, summed by label set.
fn sidecar_requests(mesh: &LocalMesh, pods: &[String]) -> BTreeMap<Labels, f64> {
    let mut total = BTreeMap::new();
    for pod in pods {
        let text = mesh.exec(pod, "istio-proxy", &["pilot-agent", "request", "GET", "stats/prometheus"]);
        for (labels, value) in samples(&text, "istio_requests_total") {
            *total.entry(labels).or_insert(0.0) += value;
        }
    }
    total
}

fn mixer_text() -> String {
    e2e::http_get(MIXER_METRICS, "/metrics").1
}

/// Pages through the gateway.
fn traffic(mesh: &LocalMesh, count: usize) {
    for _ in 0..count {
        let (status, _, _) = e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
        assert_eq!(status, 200, "{:?}: /productpage", mesh.plane);
    }
}

/// The mesh config with `disableMixerHttpReports` set to `disabled`, replaced in the `istio`
/// ConfigMap as an operator would.
fn set_mixer_http_reports_disabled(mesh: &LocalMesh, disabled: bool) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "yaml"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let (from, to) =
        (format!("disableMixerHttpReports: {}", !disabled), format!("disableMixerHttpReports: {disabled}"));
    assert!(config_map.contains(&from) || config_map.contains(&to), "{config_map}");
    mesh.apply_yaml(&config_map.replace(&from, &to));
}

/// Label sets compared between the two: `connection_security_policy` without case.
fn comparable(labels: &Labels) -> Labels {
    let mut labels = labels.clone();
    if let Some(policy) = labels.get_mut("connection_security_policy") {
        *policy = policy.to_lowercase();
    }
    labels
}

/// Mixer's series the sidecars also report: all but the gateway's client side.
fn seen_by_sidecars(labels: &Labels) -> bool {
    labels.get("reporter").map(String::as_str) == Some("destination")
        || labels.get("source_workload").map(String::as_str) != Some("istio-ingressgateway")
}

fn delta(after: &BTreeMap<Labels, f64>, before: &BTreeMap<Labels, f64>) -> BTreeMap<Labels, f64> {
    after
        .iter()
        .map(|(labels, value)| (comparable(labels), value - before.get(labels).copied().unwrap_or(0.0)))
        .filter(|(_, grown)| *grown > 0.0)
        .collect()
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn telemetry_v2_with_the_builtin_proxy() {
    let _host = e2e::local::host_lock();
    if let Some(reason) = e2e::pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = LocalMesh::demo_with(Plane::Builtin, &["values.telemetry.v2.enabled=true"]);
    mesh.apply(&sample("bookinfo/networking/destination-rule-all.yaml"));
    mesh.apply(&sample("bookinfo/networking/virtual-service-reviews-v3.yaml"));
    let pods = bookinfo_pods(&mesh);
    assert_eq!(pods.len(), 6, "{pods:?}");

    // In-proxy series with the peers known from the exchange; Mixer counts no HTTP request.
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = [
        ("destination", "istio-ingressgateway", "productpage-v1"),
        ("source", "productpage-v1", "reviews-v3"),
        ("destination", "productpage-v1", "reviews-v3"),
        ("source", "reviews-v3", "ratings-v1"),
        ("destination", "reviews-v3", "ratings-v1"),
        ("destination", "productpage-v1", "details-v1"),
    ];
    loop {
        traffic(&mesh, 3);
        let series = sidecar_requests(&mesh, &pods);
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(reporter, source, destination)| {
                !series.keys().any(|labels| {
                    labels["reporter"] == *reporter
                        && labels["source_workload"] == *source
                        && labels["destination_workload"] == *destination
                        && labels["response_code"] == "200"
                        && labels["destination_service_namespace"] == "default"
                })
            })
            .collect();
        if missing.is_empty() {
            let reviews = series.keys().find(|labels| labels["destination_workload"] == "reviews-v3").expect("reviews");
            assert_eq!(reviews["destination_service"], "reviews.default.svc.cluster.local");
            assert_eq!(reviews["destination_service_name"], "reviews");
            assert_eq!(
                (reviews["destination_app"].as_str(), reviews["destination_version"].as_str()),
                ("reviews", "v3")
            );
            assert_eq!(reviews["request_protocol"], "http");
            break;
        }
        assert!(Instant::now() < deadline, "the sidecars never reported {missing:?}:\n{series:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let productpage = pods.iter().find(|pod| pod.starts_with("productpage-")).expect("productpage");
    let text = mesh.exec(productpage, "istio-proxy", &["pilot-agent", "request", "GET", "stats/prometheus"]);
    for histogram in ["istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"] {
        assert!(!samples(&text, &format!("{histogram}_count")).is_empty(), "no {histogram} on {productpage}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(samples(&mixer_text(), "istio_requests_total").is_empty(), "Mixer counted HTTP requests with v2 on");

    // The mesh console reads the proxies' series (Prometheus' envoy-stats job): the graph has
    // the edge with its rate and a p99 from the milliseconds histogram.
    let deadline = Instant::now() + Duration::from_secs(90);
    let row = "<td>productpage-v1 (default)</td><td>reviews-v3 (default)</td><td>HTTP</td>";
    loop {
        traffic(&mesh, 3);
        let (status, page) = e2e::http_get(CONSOLE, "/graph");
        let edge = page.split(row).nth(1).and_then(|rest| rest.split("</tr>").next()).map(str::to_string);
        if status == 200
            && edge.as_deref().is_some_and(|cells| cells.ends_with(" ms</td>") && cells.contains(" rps</td>"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the console never showed the v2 edge with a p99 ({edge:?}):\n{page}");
        std::thread::sleep(Duration::from_secs(3));
    }

    // Mixer's reports back on beside the plugin: both count the same requests.
    set_mixer_http_reports_disabled(&mesh, false);
    // Settled once every hop reports again, the last one (ratings, reached through reviews)
    // included: the push that turned the reports on has reached every proxy.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ratings_reported = |labels: &Labels| {
        labels.get("reporter").map(String::as_str) == Some("destination")
            && labels.get("destination_workload").map(String::as_str) == Some("ratings-v1")
    };
    while !samples(&mixer_text(), "istio_requests_total").keys().any(ratings_reported) {
        assert!(Instant::now() < deadline, "Mixer's HTTP reports never came back from every hop");
        traffic(&mesh, 2);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (sidecars_before, mixer_before) =
        (sidecar_requests(&mesh, &pods), samples(&mixer_text(), "istio_requests_total"));
    traffic(&mesh, 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let in_proxy = delta(&sidecar_requests(&mesh, &pods), &sidecars_before);
        let mixer: BTreeMap<Labels, f64> = delta(&samples(&mixer_text(), "istio_requests_total"), &mixer_before)
            .into_iter()
            .filter(|(labels, _)| seen_by_sidecars(labels))
            .collect();
        if in_proxy == mixer && in_proxy.values().sum::<f64>() >= 20.0 * 6.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in-proxy and Mixer counts differ:\nin-proxy: {in_proxy:#?}\nMixer: {mixer:#?}"
        );
    }
    assert!(
        mesh.proxy_stat(productpage, "listener_manager.lds.update_rejected") == 0,
        "the built-in proxy rejected the telemetry v2 filters"
    );
}

#[test]
#[ignore = "needs root, iproute2, iptables and Envoy; run by ./test.sh"]
fn telemetry_v2_with_envoy_keeps_mixer() {
    let _host = e2e::local::host_lock();
    if let Some(reason) = e2e::pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = LocalMesh::demo_with(Plane::Envoy, &["values.telemetry.v2.enabled=true"]);
    mesh.apply(&sample("bookinfo/networking/destination-rule-all.yaml"));
    let pods = bookinfo_pods(&mesh);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        traffic(&mesh, 3);
        let mixer = samples(&mixer_text(), "istio_requests_total");
        if mixer.keys().any(|labels| labels["destination_workload"] == "productpage-v1") {
            break;
        }
        assert!(Instant::now() < deadline, "a stock Envoy plane stopped reporting to Mixer:\n{mixer:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(sidecar_requests(&mesh, &pods).is_empty(), "a stock Envoy has no in-proxy stats plugin");
    for pod in &pods {
        assert_eq!(mesh.proxy_stat(pod, "listener_manager.lds.update_rejected"), 0, "{pod} rejected listeners");
    }
}

#[test]
fn prometheus_text_is_read_by_label_set() {
    let text = "# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"source\",response_flags=\"UF,URX\",x=\"a\\\"b\"} 3\nistio_requests_total_other{a=\"b\"} 1\n";
    let found = samples(text, "istio_requests_total");
    assert_eq!(found.len(), 1);
    let (labels, value) = found.iter().next().unwrap();
    assert_eq!(*value, 3.0);
    assert_eq!(labels["response_flags"], "UF,URX");
    assert_eq!(labels["x"], "a\"b");
}
