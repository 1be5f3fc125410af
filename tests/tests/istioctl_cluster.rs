//! istioctl against a cluster: the commands that reach a Kubernetes API server through an
//! explicit `--kubeconfig`, run as the real binary against a scripted API server on loopback
//! (`e2e::kube_api`). `dashboard` finds each addon's pod by 1.4's labels in the Istio namespace
//! and forwards a local port to it over the API server's `portforward` WebSocket; the page a
//! browser would get comes back through the forward.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::backend::Backend;
use e2e::kube_api::{FakeApiServer, FakePod};
use e2e::{http_get, run, until, Process};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts `istioctl dashboard ARGS` and returns it with the URL it printed.
fn dashboard(kubeconfig: &std::path::Path, args: &[&str]) -> (Process, String) {
    let mut full = vec!["dashboard", "--browser=false", "--kubeconfig", kubeconfig.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let process = Process::start("istioctl", &full);
    let url = process
        .next_line(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("istioctl {full:?} printed no URL; stderr: {}", process.stderr()));
    (process, url)
}

/// `http://localhost:PORT/path` → (`127.0.0.1:PORT`, `/path`).
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://localhost:").unwrap_or_else(|| panic!("unexpected URL {url}"));
    let (port, path) = rest.split_once('/').map_or((rest, String::new()), |(port, path)| (port, format!("/{path}")));
    (format!("127.0.0.1:{port}"), path)
}

#[test]
fn dashboards_port_forward_to_the_addon_pods_through_the_api_server() {
    let prometheus = Backend::start("prometheus-ui");
    let kiali = Backend::start("kiali-ui");
    let envoy_admin = Backend::start("envoy-admin");
    let pods = vec![
        // A pending pod listed first: the running one is the one forwarded to.
        FakePod { phase: "Pending".into(), ..FakePod::running("istio-system", "prometheus-old", "app=prometheus") },
        FakePod::running("istio-system", "prometheus-5b48f5d49-7xkqm", "app=prometheus")
            .forwarding(9090, loopback(prometheus.port)),
        FakePod::running("istio-system", "kiali-7d749f9dcb-x4zsm", "app=kiali").forwarding(20001, loopback(kiali.port)),
        FakePod::running("default", "productpage-v1-6c886ff494-hm6rt", "app=productpage,version=v1")
            .forwarding(15000, loopback(envoy_admin.port)),
        // Jaeger's pod has nothing listening behind its port.
        FakePod::running("istio-system", "istio-tracing-c66d67cd9-gbtcz", "app=jaeger"),
    ];
    let server = FakeApiServer::start(pods);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());

    // Prometheus: 1.4's URL, and every connection (a browser opens several) forwarded.
    let (_forward, url) = dashboard(&kubeconfig, &["prometheus"]);
    let (address, path) = split_url(&url);
    assert_eq!(path, "", "Prometheus's URL has no path: {url}");
    for _ in 0..3 {
        let (status, body) = http_get(&address, "/graph");
        assert_eq!((status, body.as_str()), (200, "prometheus-ui"), "through {url}");
    }
    assert!(prometheus.seen().iter().all(|seen| seen.path == "/graph"));
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("GET /api/v1/namespaces/istio-system/pods?")
            && r.contains("labelSelector=app%3Dprometheus")),
        "pods listed by 1.4's label: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/namespaces/istio-system/pods/prometheus-5b48f5d49-7xkqm/portforward?")
            && r.contains("ports=9090")),
        "the running pod's port 9090 forwarded: {requests:?}"
    );

    // Kiali: port 20001 and 1.4's `/kiali` path; a fixed local port with -p.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let (_forward, url) = dashboard(&kubeconfig, &["kiali", "-p", &free_port.to_string()]);
    assert_eq!(url, format!("http://localhost:{free_port}/kiali"));
    let (address, path) = split_url(&url);
    assert_eq!(http_get(&address, &path), (200, "kiali-ui".to_string()));

    // Envoy: a pod named as `name.namespace`, its admin port 15000.
    let (_forward, url) = dashboard(&kubeconfig, &["envoy", "productpage-v1-6c886ff494-hm6rt.default"]);
    let (address, _) = split_url(&url);
    assert_eq!(http_get(&address, "/stats"), (200, "envoy-admin".to_string()));

    // A port with nothing behind it: the connection fails and istioctl says why, still serving.
    let (forward, url) = dashboard(&kubeconfig, &["jaeger"]);
    let (address, _) = split_url(&url);
    assert_eq!(http_get(&address, "/").0, 0, "no answer through a refused forward");
    until("istioctl reports the pod's refusal", Duration::from_secs(10), || {
        let stderr = forward.stderr();
        if stderr.contains("error forwarding port 16686 to pod istio-tracing-c66d67cd9-gbtcz") {
            Ok(())
        } else {
            Err(stderr)
        }
    });
    assert!(
        server.requests().iter().any(|r| r.contains("labelSelector=app%3Djaeger")),
        "jaeger found by app=jaeger in istio-system"
    );
}

#[test]
fn dashboards_say_what_is_missing_on_a_cluster() {
    let pods = vec![FakePod::running("custom-istio", "grafana-6c8f45499-2k7hv", "app=grafana")];
    let server = FakeApiServer::start(pods);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path");

    // No Grafana in the default Istio namespace.
    let (code, _, stderr) = run("istioctl", &["dashboard", "grafana", "--browser=false", "-c", kubeconfig], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("no Grafana pods found"), "{stderr}");

    // -i points at another Istio namespace, where it is.
    let mut forward = Process::start(
        "istioctl",
        &["dashboard", "grafana", "--browser=false", "-c", kubeconfig, "-i", "custom-istio"],
    );
    let url = forward.next_line(Duration::from_secs(20)).unwrap_or_else(|| panic!("no URL: {}", forward.stderr()));
    assert!(url.starts_with("http://localhost:"), "{url}");
    forward.terminate();
    assert!(forward.wait_exit(Duration::from_secs(10)).is_some(), "istioctl ends on SIGTERM");

    // A pod that does not exist.
    let (code, _, stderr) =
        run("istioctl", &["dashboard", "envoy", "missing-pod.default", "--browser=false", "-c", kubeconfig], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("could not build port forwarder for missing-pod.default"), "{stderr}");
    assert!(stderr.contains("not found"), "the API server's reason: {stderr}");

    // An unreadable kubeconfig names the file.
    let (code, _, stderr) =
        run("istioctl", &["dashboard", "prometheus", "--browser=false", "-c", "/nonexistent/kubeconfig"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
}

/// A loopback HTTP server answering every request with `body` as JSON, until the test ends.
fn json_server(body: &'static str) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    address
}

const CONFIG_DUMP: &str = r#"{"configs": [
  {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
   "dynamic_active_clusters": [
     {"cluster": {"name": "outbound|9080||reviews.default.svc.cluster.local", "type": "EDS"}},
     {"cluster": {"name": "inbound|9080|http|productpage.default.svc.cluster.local", "type": "STATIC"}}]}]}"#;

const SYNCZ: &str = r#"[{"proxy": "productpage-v1-6c886ff494-hm6rt.default", "istio_version": "1.4.6",
  "cluster_sent": "1-1", "cluster_acked": "1-1", "listener_sent": "1-3", "listener_acked": "1-3",
  "endpoint_sent": "1-2", "endpoint_acked": "1-2", "route_sent": "1-4", "route_acked": "1-4", "nacks": {}}]"#;

#[test]
fn proxy_status_and_proxy_config_reach_pilot_and_the_pods_through_the_api_server() {
    let pods = vec![
        FakePod::running("istio-system", "istio-pilot-78f6d5c8c-9tn4z", "istio=pilot,app=pilot")
            .forwarding(8080, json_server(SYNCZ)),
        FakePod::running("default", "productpage-v1-6c886ff494-hm6rt", "app=productpage")
            .forwarding(15000, json_server(CONFIG_DUMP)),
        // A sidecar whose admin port is not answering.
        FakePod::running("default", "ratings-v1-5f9d4f5b9-xq2zs", "app=ratings"),
    ];
    let server = FakeApiServer::start(pods);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = server.write_kubeconfig(dir.path());
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path");

    let (code, out, err) = run("istioctl", &["proxy-status", "--kubeconfig", kubeconfig], None);
    assert_eq!(code, 0, "{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("productpage-v1-6c886ff494-hm6rt.default"), "{out}");
    assert!(row.contains("SYNCED") && row.contains("istio-pilot-78f6d5c8c-9tn4z") && row.ends_with("1.4.6"), "{out}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/istio-system/pods?")
                && r.contains("labelSelector=istio%3Dpilot")),
        "Pilot found by istio=pilot: {:?}",
        server.requests()
    );

    let (code, out, err) = run(
        "istioctl",
        &["proxy-config", "cluster", "productpage-v1-6c886ff494-hm6rt.default", "-c", kubeconfig],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap_or_default().starts_with("SERVICE FQDN"), "{out}");
    assert!(
        out.lines().any(|line| line.starts_with("reviews.default.svc.cluster.local") && line.contains("outbound")),
        "{out}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("/namespaces/default/pods/productpage-v1-6c886ff494-hm6rt/portforward?")
                && r.contains("ports=15000")),
        "{:?}",
        server.requests()
    );

    let (code, _, err) =
        run("istioctl", &["proxy-config", "listener", "ratings-v1-5f9d4f5b9-xq2zs", "-c", kubeconfig], None);
    assert_ne!(code, 0);
    assert!(err.contains("error forwarding port 15000 to pod ratings-v1-5f9d4f5b9-xq2zs"), "{err}");
    let (code, _, err) = run("istioctl", &["proxy-config", "route", "missing-pod", "-c", kubeconfig], None);
    assert_ne!(code, 0);
    assert!(err.contains("could not port-forward to missing-pod.default"), "{err}");
}
