//! Mixer policy on both data planes, with the real Mixer and Pilot: Pilot (from a config
//! directory, with `mixerCheckServer` in its mesh config) generates productpage's inbound HTTP
//! filters — Istio 1.4's `mixer` filter for the built-in proxy, which announces it, and
//! `ext_authz` for a stock Envoy — read over ADS with `istioctl x xds`. Each plane runs them in
//! a static bootstrap in front of a backend, with the check cluster pointing at `mixs`, which
//! serves 1.4's default config with the `mixer-rule-ratings-denial` (x-user: john) and
//! `mixer-rule-productpage-ratelimit` (memquota, 2 per 5 s per client) samples. Both planes must
//! deny with 1.4's status and body, rate-limit after the documented count, and fail closed (or
//! open, when the mesh says so) when Mixer is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::backend::Backend;
use e2e::envoy::{free_port, start_static, PLANES};
use e2e::Process;
use serde_json::{json, Value};

const NODE: &str = "sidecar~10.1.0.5~productpage-1.default~default.svc.cluster.local";

fn workspace_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn start_mixer(dir: &Path) -> (Process, u16) {
    let config = dir.join("mixer");
    std::fs::create_dir_all(&config).expect("mixer dir");
    std::fs::write(config.join("config.yaml"), workspace_file("install/mixer/config.yaml")).expect("write");
    std::fs::write(config.join("deny.yaml"), workspace_file("samples/bookinfo/policy/mixer-rule-ratings-denial.yaml"))
        .expect("write");
    std::fs::write(
        config.join("ratelimit.yaml"),
        workspace_file("samples/bookinfo/policy/mixer-rule-productpage-ratelimit.yaml"),
    )
    .expect("write");
    let port = free_port();
    let store = format!("fs://{}", config.display());
    let pods = config.display().to_string();
    let port_text = port.to_string();
    let mixer = Process::start(
        "mixs",
        &[
            "server",
            "--configStoreURL",
            &store,
            "--podStore",
            &pods,
            "--address",
            "127.0.0.1",
            "--port",
            &port_text,
            "--monitoringPort",
            "0",
        ],
    );
    mixer.next_line(Duration::from_secs(10)).unwrap_or_else(|| panic!("mixs did not start:\n{}", mixer.stderr()));
    (mixer, port)
}

/// Pilot's config: productpage, Mixer's service, and the sample's QuotaSpec and binding.
fn pilot_config(dir: &Path, fail_open: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("pilot");
    std::fs::create_dir_all(&config).expect("pilot dir");
    std::fs::write(
        config.join("services.yaml"),
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.1.0.5, labels: {app: productpage, version: v1}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: istio-policy, namespace: istio-system}
spec:
  hosts: [istio-policy.istio-system.svc.cluster.local]
  ports: [{number: 9091, name: grpc-mixer, protocol: GRPC}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.1.0.100, labels: {istio: mixer}}]
",
    )
    .expect("write");
    // The sample's QuotaSpec and binding, as Pilot reads them.
    let sample = workspace_file("samples/bookinfo/policy/mixer-rule-productpage-ratelimit.yaml");
    let specs: Vec<&str> = sample.split("\n---\n").filter(|doc| doc.contains("kind: QuotaSpec")).collect();
    std::fs::write(config.join("quota.yaml"), specs.join("\n---\n")).expect("write");
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        format!(
            "mixerCheckServer: istio-policy.istio-system.svc.cluster.local:9091\nmixerReportServer: istio-telemetry.istio-system.svc.cluster.local:9091\ndisablePolicyChecks: false\npolicyCheckFailOpen: {fail_open}\n"
        ),
    )
    .expect("write");
    (config, mesh)
}

/// productpage's inbound HTTP filters (without the router) and its route's per-filter config.
fn pilot_inbound(xds: &str, announce_mixer: bool) -> (Vec<Value>, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut command = std::process::Command::new(e2e::binary("istioctl"));
        command.args(["x", "xds", "--address", xds, "--node", NODE, "--type", "lds"]).args([
            "--meta",
            r#"LABELS={"app":"productpage","version":"v1"}"#,
            "--meta",
            "NAMESPACE=default",
        ]);
        if announce_mixer {
            command.args(["--extension", "mixer"]);
        }
        let output = command.output().expect("run istioctl x xds");
        if output.status.success() {
            let responses: Value = serde_json::from_slice(&output.stdout).expect("xds JSON");
            let listeners = responses[0]["resources"].as_array().cloned().unwrap_or_default();
            let chain = listeners.iter().find(|l| l["name"] == "virtualInbound").and_then(|inbound| {
                inbound["filter_chains"]
                    .as_array()?
                    .iter()
                    .find(|c| c["filter_chain_match"]["destination_port"] == 9080)
                    .cloned()
            });
            if let Some(chain) = chain {
                let manager = &chain["filters"][0]["typed_config"];
                let filters: Vec<Value> = manager["http_filters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f["name"] != "envoy.filters.http.router")
                    .collect();
                let per_filter =
                    manager["route_config"]["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"].clone();
                if !filters.is_empty() {
                    return (filters, per_filter);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no inbound chain with a check for {NODE}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn bootstrap(listen: u16, admin: u16, app: u16, mixer: u16, filters: &[Value], per_filter: &Value) -> String {
    let mut http_filters = filters.to_vec();
    http_filters.push(json!({"name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    let cluster = |name: &str, port: u16, http2: bool| {
        let mut cluster = json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}});
        if http2 {
            cluster["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}});
        }
        cluster
    };
    let config = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "productpage", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "inbound_9080",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
                        "route": {"cluster": "app"}, "typed_per_filter_config": per_filter}]}]},
                    "http_filters": http_filters}}]}]}],
            "clusters": [cluster("app", app, false), cluster("outbound|9091||istio-policy.istio-system.svc.cluster.local", mixer, true)],
        }
    });
    serde_json::to_string_pretty(&config).expect("bootstrap JSON")
}

/// Status and body of a GET with extra headers.
fn get(port: u16, headers: &[(&str, &str)]) -> (u16, String) {
    let mut command = std::process::Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "--max-time", "10"]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let output = command.arg(format!("http://127.0.0.1:{port}/productpage")).output().expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_listening(port: u16, proxy: &Process) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not listen:\n{}", proxy.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Plane {
    name: &'static str,
    proxy: Process,
    port: u16,
    admin: u16,
}

/// The plane's counters about Mixer, for failure messages.
fn mixer_stats(admin: u16) -> String {
    let (_, stats) = e2e::http_get(&format!("127.0.0.1:{admin}"), "/stats");
    stats.lines().filter(|line| line.contains("ext_authz") || line.contains("9091")).collect::<Vec<_>>().join("\n")
}

fn start_planes(dir: &Path, xds: &str, app: u16, mixer: u16, tag: &str) -> Vec<Plane> {
    PLANES
        .iter()
        .map(|&plane| {
            let (filters, per_filter) = pilot_inbound(xds, plane != "envoy");
            let expected = if plane == "envoy" { "envoy.filters.http.ext_authz" } else { "mixer" };
            assert!(filters.iter().any(|f| f["name"] == expected), "{plane}: {filters:?}");
            let (port, admin) = (free_port(), free_port());
            let file = dir.join(format!("{plane}-{tag}.json"));
            std::fs::write(&file, bootstrap(port, admin, app, mixer, &filters, &per_filter)).expect("write bootstrap");
            let proxy = start_static(plane, &file.display().to_string());
            wait_listening(port, &proxy);
            Plane { name: plane, proxy, port, admin }
        })
        .collect()
}

#[test]
#[ignore = "needs Envoy (ENVOY_BIN) and curl; run by ./test.sh"]
fn both_planes_enforce_mixer_policy_as_1_4_did() {
    let app = Backend::start("productpage");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut mixer, mixer_port) = start_mixer(dir.path());
    let (config, mesh) = pilot_config(dir.path(), false);
    let pilot =
        e2e::start_pilot(&["--configDir", &config.display().to_string(), "--meshConfig", &mesh.display().to_string()]);
    let planes = start_planes(dir.path(), &pilot.xds, app.port, mixer_port, "close");

    for (index, plane) in planes.iter().enumerate() {
        let client = format!("10.20.0.{index}");
        // Mixer's config may still be arriving: wait for the denial.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = get(plane.port, &[("x-user", "john"), ("x-forwarded-for", "10.99.0.1")]);
            if code == 403 {
                assert_eq!(body, "PERMISSION_DENIED:denierhandler.istio-system:Not allowed", "{}", plane.name);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no denial ({code} {body}):\n{}\n{}\nmixs:\n{}",
                plane.name,
                plane.proxy.stderr(),
                mixer_stats(plane.admin),
                mixer.stderr()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        // The rate limit: two per five seconds for one client, then 429 with 1.4's body.
        let mut codes = Vec::new();
        let mut last_body = String::new();
        for _ in 0..4 {
            let (code, body) = get(plane.port, &[("x-forwarded-for", &client)]);
            codes.push(code);
            last_body = body;
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(codes, [200, 200, 429, 429], "{}", plane.name);
        assert_eq!(last_body, "RESOURCE_EXHAUSTED:Quota is exhausted for: requestcountquota", "{}", plane.name);
        // Another client is not limited.
        assert_eq!(get(plane.port, &[("x-forwarded-for", &format!("10.21.0.{index}"))]).0, 200, "{}", plane.name);
    }

    // Mixer gone, failing closed (1.4's default): a request Mixer has not answered before is refused.
    mixer.terminate();
    let _ = mixer.wait_exit(Duration::from_secs(5));
    for plane in &planes {
        let (code, body) = get(plane.port, &[("x-user", "alice"), ("x-forwarded-for", "10.30.0.1")]);
        assert_eq!(code, 503, "{}: {body}", plane.name);
    }
    drop(planes);

    // policyCheckFailOpen: true — the same request goes through without Mixer.
    let (config, mesh) = pilot_config(dir.path(), true);
    let open_pilot =
        e2e::start_pilot(&["--configDir", &config.display().to_string(), "--meshConfig", &mesh.display().to_string()]);
    for plane in start_planes(dir.path(), &open_pilot.xds, app.port, mixer_port, "open") {
        let (code, body) = get(plane.port, &[("x-user", "alice"), ("x-forwarded-for", "10.30.0.2")]);
        assert_eq!(code, 200, "{}: {body}", plane.name);
    }
    drop(pilot);
}
