//! The mesh console and the trace collector as processes, without a mesh: spans posted to the
//! real collector show in the console's trace list and waterfall; sources the console cannot
//! reach or was not given are named on the pages, which keep serving; bad parameters get a 400
//! that says why. (The console over a live mesh, in a browser: `telemetry_tasks.rs`.)

use std::time::Duration;

use e2e::{http_get, http_request, Process};

/// Starts a binary that prints `… http://ADDRESS` or `… on ADDRESS,` and returns the first address.
fn start(binary: &str, args: &[&str]) -> (Process, String) {
    let process = Process::start(binary, args);
    let line = process.next_line(Duration::from_secs(20)).unwrap_or_else(|| panic!("{binary}: {}", process.stderr()));
    let address = line
        .split(&[' ', ','][..])
        .map(|word| word.trim_start_matches("http://"))
        .find(|word| word.parse::<std::net::SocketAddr>().is_ok())
        .unwrap_or_else(|| panic!("{binary} printed {line:?}"))
        .to_string();
    (process, address)
}

#[test]
fn traces_reach_the_console_and_missing_sources_are_named() {
    let (_collector, zipkin) = start(
        "istio-tracing",
        &["--address", "127.0.0.1", "--zipkinPort", "0", "--otlpGrpcPort", "0", "--otlpHttpPort", "0"],
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros();
    let spans = serde_json::json!([
        {"traceId": "00000000000000000000000000c0ffee", "id": "0000000000000001", "kind": "CLIENT",
         "name": "productpage.default.svc.cluster.local:9080/productpage", "timestamp": now as u64, "duration": 9000,
         "localEndpoint": {"serviceName": "istio-ingressgateway"}},
        {"traceId": "00000000000000000000000000c0ffee", "id": "0000000000000002", "parentId": "0000000000000001",
         "kind": "SERVER", "name": "productpage.default.svc.cluster.local:9080/productpage",
         "timestamp": now as u64 + 200, "duration": 8000, "localEndpoint": {"serviceName": "productpage.default"},
         "tags": {"error": "true", "http.status_code": "503"}}
    ]);
    let (status, _, body) =
        http_request(&zipkin, "POST", "/api/v2/spans", &[("content-type", "application/json")], &spans.to_string());
    assert_eq!(status, 202, "{body}");

    // Prometheus on a port nothing listens on; no Pilot at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let prometheus = format!("http://{closed}");
    let zipkin_url = format!("http://{zipkin}");
    let (_console, console) = start(
        "istio-console",
        &["--address", "127.0.0.1", "--port", "0", "--prometheus", &prometheus, "--zipkin", &zipkin_url],
    );

    let (status, list) = http_get(&console, "/traces");
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("<a href=\"/traces/00000000000000000000000000c0ffee\">istio-ingressgateway: productpage.default.svc.cluster.local:9080/productpage</a>"), "{list}");
    assert!(list.contains("<td>2</td><td>1</td>"), "two spans, one failed:\n{list}");
    let (status, waterfall) = http_get(&console, "/traces/00000000000000000000000000c0ffee");
    assert_eq!(status, 200);
    assert_eq!(waterfall.matches("class=\"span\"").count(), 2, "{waterfall}");
    assert!(waterfall.contains("class=\"bar error\""), "the failed span is marked:\n{waterfall}");
    let (_, missing) = http_get(&console, "/traces/0000000000000000000000000000dead");
    assert!(missing.contains("No trace 0000000000000000000000000000dead in the collector."), "{missing}");

    // Sources it cannot use are named; the pages still answer.
    for path in ["/graph", "/dashboards", "/dashboards/service?service=reviews.default.svc.cluster.local"] {
        let (status, page) = http_get(&console, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            page.contains(&format!("Prometheus at {prometheus}/api/v1/query")) && page.contains("unreachable"),
            "{path}:\n{page}"
        );
    }
    let (status, config) = http_get(&console, "/config");
    assert_eq!(status, 200);
    assert!(config.contains("no Pilot address was given to the console"), "{config}");

    // Names that would not be safe in a query are refused.
    let (status, page) = http_get(&console, "/dashboards/service?service=x%22%7Dor%20vector(1)");
    assert_eq!(status, 400);
    assert!(page.contains("service &quot;x\\&quot;}or vector(1)&quot; is not a name"), "{page}");
    let (status, _) = http_get(&console, "/traces/not-hex");
    assert_eq!(status, 400);
    let (status, headers, _) = http_request(&console, "GET", "/kiali", &[], "");
    let location = headers.iter().find(|(name, _)| name == "location").map(|(_, value)| value.as_str());
    assert_eq!((status, location), (303, Some("/graph")));
}
