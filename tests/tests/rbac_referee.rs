//! Envoy's RBAC filters, with a stock Envoy as referee: the same static bootstrap runs once in
//! the built-in data plane (`proxy run`) and once in Envoy, and a matrix of requests and
//! connections must get the same answers from both, and the answers RBAC's semantics give:
//!
//! - an HTTP listener with two RBAC filters in a row (ALLOW by method and path prefix, or by a
//!   header; then DENY by a path), denied requests answered 403 `RBAC: access denied`;
//! - a TLS listener requiring client certificates whose RBAC allows one SPIFFE identity
//!   (`authenticated.principal_name`);
//! - TCP listeners with the RBAC network filter before `tcp_proxy`: one allows the loopback
//!   client, one only 10.0.0.0/8, so its connections are closed unanswered;
//! - shadow rules that are only counted, and the `allowed`/`denied`/`shadow_*` stats.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::backend::{tcp_echo, Backend};
use e2e::certs::TestCa;
use e2e::envoy::free_port;
use e2e::Process;

/// The listeners' ports and the admin port of one data plane.
struct Ports {
    admin: u16,
    plain: u16,
    mtls: u16,
    tcp_open: u16,
    tcp_closed: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            admin: free_port(),
            plain: free_port(),
            mtls: free_port(),
            tcp_open: free_port(),
            tcp_closed: free_port(),
        }
    }
}

fn socket(port: u16) -> String {
    format!("{{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}")
}

fn hcm(prefix: &str, rbac_filters: &str) -> String {
    format!(
        r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {prefix}
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}]
          http_filters:
{rbac_filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

fn rbac_filter(body: &str) -> String {
    format!(
        "          - name: envoy.filters.http.rbac
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
{body}"
    )
}

fn tcp_listener(name: &str, port: u16, allowed_from: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {address}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: {name}.
          rules:
            policies:
              loopback-only:
                permissions: [{{destination_port: {port}}}]
                principals: [{{direct_remote_ip: {{address_prefix: {allowed_from}}}}}]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: echo
"#,
        address = socket(port)
    )
}

fn bootstrap(ports: &Ports, app: u16, echo: u16, certs: &Path) -> String {
    let plain_rbac = rbac_filter(
        "              rules:
                action: ALLOW
                policies:
                  public-reads:
                    permissions: [{and_rules: {rules: [{header: {name: \":method\", string_match: {exact: GET}}}, {url_path: {path: {prefix: /public}}}]}}]
                    principals: [{any: true}]
                  token-holders:
                    permissions: [{any: true}]
                    principals: [{header: {name: x-token, string_match: {exact: secret}}}]
              shadow_rules:
                action: DENY
                policies:
                  would-deny-posts:
                    permissions: [{header: {name: \":method\", string_match: {exact: POST}}}]
                    principals: [{any: true}]
",
    ) + &rbac_filter(
        "              rules:
                action: DENY
                policies:
                  no-admin:
                    permissions: [{url_path: {path: {exact: /public/admin}}}]
                    principals: [{any: true}]
",
    );
    let mtls_rbac = rbac_filter(
        "              rules:
                policies:
                  allowed-identity:
                    permissions: [{any: true}]
                    principals: [{authenticated: {principal_name: {exact: spiffe://cluster.local/ns/default/sa/allowed}}}]
",
    );
    let certs = certs.display();
    format!(
        r#"admin: {{address: {admin}}}
static_resources:
  listeners:
  - name: plain
    address: {plain}
    filter_chains:
    - filters:
{plain_hcm}  - name: mtls
    address: {mtls}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {certs}/server.crt}}
              private_key: {{filename: {certs}/server.key}}
            validation_context:
              trusted_ca: {{filename: {certs}/root.pem}}
      filters:
{mtls_hcm}{tcp_open}{tcp_closed}  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {app_address}}}}}]}}]
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {echo_address}}}}}]}}]
"#,
        admin = socket(ports.admin),
        plain = socket(ports.plain),
        plain_hcm = hcm("plain", &plain_rbac),
        mtls = socket(ports.mtls),
        mtls_hcm = hcm("mtls", &mtls_rbac),
        tcp_open = tcp_listener("tcp_open", ports.tcp_open, "127.0.0.1, prefix_len: 32"),
        tcp_closed = tcp_listener("tcp_closed", ports.tcp_closed, "10.0.0.0, prefix_len: 8"),
        app_address = socket(app),
        echo_address = socket(echo),
    )
}

/// The status code and body of a plain request.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let reply = e2e::http_request(&format!("127.0.0.1:{port}"), method, path, headers, "");
    (reply.0, reply.2)
}

/// `curl` over mutual TLS with the client certificate `who`: the status code (`000`: refused).
fn mtls_request(port: u16, certs: &Path, who: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert"])
        .arg(certs.join("root.pem"))
        .arg("--cert")
        .arg(certs.join(format!("{who}.crt")))
        .arg("--key")
        .arg(certs.join(format!("{who}.key")))
        .args(["--resolve", &format!("server.example.com:{port}:127.0.0.1")])
        .arg(format!("https://server.example.com:{port}/"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends a line over TCP; the echoed line, or `closed` when the proxy closed the connection.
fn echo_line(port: u16) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return "refused".into() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    if writeln!(stream, "hello").is_err() {
        return "closed".into();
    }
    let mut line = String::new();
    match BufReader::new(&mut stream).read_line(&mut line) {
        Ok(0) | Err(_) => "closed".into(),
        Ok(_) => line.trim().to_string(),
    }
}

fn wait_for_port(port: u16, proxy: &Process) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}:\n{}", proxy.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every answer of the matrix, in order, from the data plane on `ports`.
fn answers(ports: &Ports, certs: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let mut http = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let (status, body) = request(ports.plain, method, path, headers);
        let body = if status == 403 { format!(" {body}") } else { String::new() };
        seen.push(format!("{method} {path} {headers:?}: {status}{body}"));
    };
    http("GET", "/public/books", &[]);
    http("POST", "/public/books", &[]);
    http("GET", "/private", &[]);
    http("GET", "/private", &[("x-token", "secret")]);
    http("GET", "/private", &[("x-token", "guess")]);
    http("GET", "/public/admin", &[]);
    http("GET", "/public/admin", &[("x-token", "secret")]);
    seen.push(format!("mTLS as allowed: {}", mtls_request(ports.mtls, certs, "allowed")));
    seen.push(format!("mTLS as other: {}", mtls_request(ports.mtls, certs, "other")));
    seen.push(format!("TCP from loopback: {}", echo_line(ports.tcp_open)));
    seen.push(format!("TCP from outside 10/8: {}", echo_line(ports.tcp_closed)));
    seen
}

#[test]
#[ignore = "needs Envoy (ENVOY_BIN) and curl; run by ./test.sh"]
fn rbac_filters_answer_like_envoy() {
    let app = Backend::start("app");
    let echo = tcp_echo("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_root(dir.path(), "root.pem");
    ca.issue_files(dir.path(), "server", &["server.example.com"]);
    ca.issue_files(dir.path(), "allowed", &["spiffe://cluster.local/ns/default/sa/allowed"]);
    ca.issue_files(dir.path(), "other", &["spiffe://cluster.local/ns/default/sa/other"]);

    let expected = vec![
        "GET /public/books []: 200".to_string(),
        "POST /public/books []: 403 RBAC: access denied".into(),
        "GET /private []: 403 RBAC: access denied".into(),
        "GET /private [(\"x-token\", \"secret\")]: 200".into(),
        "GET /private [(\"x-token\", \"guess\")]: 403 RBAC: access denied".into(),
        "GET /public/admin []: 403 RBAC: access denied".into(),
        "GET /public/admin [(\"x-token\", \"secret\")]: 403 RBAC: access denied".into(),
        "mTLS as allowed: 200".into(),
        "mTLS as other: 403".into(),
        "TCP from loopback: echo hello".into(),
        "TCP from outside 10/8: closed".into(),
    ];
    let mut results = Vec::new();
    for plane in e2e::envoy::PLANES {
        let ports = Ports::new();
        let file = dir.path().join(format!("{plane}.yaml"));
        std::fs::write(&file, bootstrap(&ports, app.port, echo, dir.path())).expect("write bootstrap");
        let file = file.display().to_string();
        let proxy = e2e::envoy::start_static(plane, &file);
        for port in [ports.plain, ports.mtls, ports.tcp_open, ports.tcp_closed, ports.admin] {
            wait_for_port(port, &proxy);
        }
        let seen = answers(&ports, dir.path());
        assert_eq!(seen, expected, "{plane}: the answers RBAC's semantics give");
        let stats: Vec<(String, u64)> = [
            "http.plain.rbac.allowed",
            "http.plain.rbac.denied",
            "http.plain.rbac.shadow_denied",
            "http.plain.rbac.shadow_allowed",
            "http.mtls.rbac.denied",
            "tcp_open.rbac.allowed",
            "tcp_closed.rbac.denied",
        ]
        .iter()
        .map(|name| (name.to_string(), e2e::envoy::admin_stat(ports.admin, name)))
        .collect();
        results.push((plane, stats));
    }
    assert_eq!(results[0].1, results[1].1, "the same RBAC stats on both planes");
    // Both filters count: the first allows 4 of 7 and denies 3 (its DENY shadow rules would
    // deny the one POST); the second sees those 4 and denies the two /public/admin requests.
    let ours: std::collections::BTreeMap<String, u64> = results[0].1.iter().cloned().collect();
    assert_eq!(ours["http.plain.rbac.denied"], 5, "{ours:?}");
    assert_eq!(ours["http.plain.rbac.shadow_denied"], 1, "{ours:?}");
    // The wait for the port was a connection too.
    assert_eq!(ours["tcp_closed.rbac.denied"], 2, "{ours:?}");
    assert_eq!(ours["http.plain.rbac.allowed"], 6, "{ours:?}");
}
