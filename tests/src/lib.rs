//! Fixtures for end-to-end tests: finding the workspace's binaries, running them as child
//! processes that are killed when the test ends (pass or fail), and reading their output with
//! deadlines instead of sleeps.

pub mod backend;
pub mod browser;
pub mod certs;
pub mod envoy;
pub mod fixtures;
pub mod gateway;
pub mod kube_api;
pub mod kube_store;
pub mod layout;
pub mod local;
pub mod outside;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The path of a workspace binary (`galley`, `istioctl`, …) built next to the test executable.
/// `cargo test --workspace` builds every binary before running tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|error| panic!("cannot locate the test executable: {error}"));
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).unwrap_or_else(|| panic!("unexpected test path {}", exe.display()));
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} is not built; run the tests with `cargo test --workspace`", path.display());
    path
}

/// A child process that is killed when dropped, with its stdout lines and stderr collected.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    name: String,
}

impl Process {
    /// Starts `binary` with `args`, capturing its output.
    pub fn start(binary_name: &str, args: &[&str]) -> Process {
        Process::start_program(&binary(binary_name), args)
    }

    /// Starts any program (found on `PATH` when not a path) the same way.
    pub fn start_program(program: &std::path::Path, args: &[&str]) -> Process {
        Process::start_with_env(program, args, &[])
    }

    /// Starts a program with extra environment variables.
    pub fn start_with_env(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let binary_name = program.display().to_string();
        // Its own process group, so that whatever it starts (an agent's Envoy) goes with it.
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary_name}: {error}"));
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("{binary_name}: no stdout"));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap_or_else(|| panic!("{binary_name}: no stderr"));
        let collected = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 4096];
            while let Ok(read) = stderr_pipe.read(&mut buffer) {
                if read == 0 {
                    return;
                }
                let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                istio_runtime::sync::lock(&collected).push_str(&text);
            }
        });
        Process { child, lines, stderr, name: binary_name.to_string() }
    }

    /// The next stdout line, or `None` if none arrives within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads stdout until a complete JSON value has been printed (pretty-printed values span
    /// several lines), or `None` at the deadline.
    pub fn next_json(&self, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            text.push_str(&self.next_line(left)?);
            text.push('\n');
            if let Ok(value) = serde_json::from_str(&text) {
                return Some(value);
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as Kubernetes does to stop a container.
    pub fn terminate(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
    }

    /// The exit status once the process has exited, or `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        istio_runtime::sync::lock(&self.stderr).clone()
    }

    /// Waits until stderr contains `fragment`; panics with the output at the deadline.
    pub fn wait_for_stderr(&self, fragment: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(fragment) {
            assert!(Instant::now() < deadline, "{} never logged {fragment:?}; stderr:\n{}", self.name, self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    /// SIGTERM to the whole process group (agents drain and stop their Envoy), then SIGKILL
    /// for whatever is left after a short grace period.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::SIGTERM);
        let _ = self.wait_exit(Duration::from_secs(3));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it says done (`Ok`), or fails with `what` and the last answer after
/// `within`.
pub fn until(what: &str, within: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "{what} (within {within:?}): {last}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Why tests that build pods (network namespaces, iptables, processes as uid 1337) cannot run
/// here, or `None` when they can: they need root, iptables, iproute2, python3 (the pods'
/// applications) and setpriv.
pub fn pod_prerequisites_missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root".into());
    }
    for tool in ["iptables", "ip", "python3", "setpriv"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if found.map_or(true, |output| !output.status.success()) {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Runs a binary to completion; returns its exit code, stdout and stderr.
pub fn run(binary_name: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(binary(binary_name))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {binary_name}: {error}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).unwrap_or_else(|error| panic!("writing stdin: {error}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|error| panic!("waiting for {binary_name}: {error}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Starts `galley server` on loopback over `config_dir` (webhook off, ports picked by the OS) and
/// returns it with its MCP address, read from the banner it prints.
pub fn start_galley(config_dir: &std::path::Path) -> (Process, String) {
    start_galley_with(config_dir, &[])
}

/// `start_galley` with more flags.
pub fn start_galley_with(config_dir: &std::path::Path, extra: &[&str]) -> (Process, String) {
    let config = config_dir.display().to_string();
    let mut args = vec![
        "server",
        "--configPath",
        &config,
        "--server-address",
        "127.0.0.1:0",
        "--bind-address",
        "127.0.0.1",
        "--monitoringPort",
        "0",
        "--enable-validation=false",
    ];
    args.extend_from_slice(extra);
    let galley = Process::start("galley", &args);
    let banner = galley
        .next_line(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("galley did not start:\n{}", galley.stderr()));
    let address = banner
        .split("MCP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .to_string();
    (galley, address)
}

/// A running `pilot discovery` and the addresses it announced.
pub struct Pilot {
    pub process: Process,
    /// xDS (gRPC) address, `127.0.0.1:PORT`.
    pub xds: String,
    /// Debug HTTP address, `127.0.0.1:PORT`.
    pub debug: String,
}

/// Starts `pilot discovery` on loopback with OS-picked ports plus `config_args` (e.g.
/// `--configDir DIR` or `--meshConfig FILE`), and reads its addresses from the banner.
/// Starts `pilot discovery` serving xDS on a given address (`HOST:PORT`), with debug and
/// monitoring on loopback, plus `config_args` and environment variables.
pub fn start_pilot_on(xds_address: &str, config_args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut args =
        vec!["discovery", "--grpcAddr", xds_address, "--httpAddr", "127.0.0.1:0", "--monitoringAddr", "127.0.0.1:0"];
    args.extend_from_slice(config_args);
    Process::start_with_env(&binary("pilot"), &args, env)
}

pub fn start_pilot(config_args: &[&str]) -> Pilot {
    let mut args =
        vec!["discovery", "--grpcAddr", "127.0.0.1:0", "--httpAddr", "127.0.0.1:0", "--monitoringAddr", "127.0.0.1:0"];
    args.extend_from_slice(config_args);
    let process = Process::start("pilot", &args);
    let banner = process
        .next_line(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("pilot did not start:\n{}", process.stderr()));
    let field = |label: &str| {
        banner
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .map(|address| address.trim().to_string())
            .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
    };
    Pilot { xds: field("xDS on "), debug: field("debug on "), process }
}

/// A plain HTTP/1.1 GET to `address` (HOST:PORT); returns the status (0 when the connection
/// fails) and the body. Enough for debug endpoints, which answer with `content-length`.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return (0, String::new()) };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// One HTTP/1.1 request to `address` with extra headers and a body; returns the status, the
/// response headers (names lower-cased) and the body. For pages that set cookies or redirect.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return (0, Vec::new(), String::new()) };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Waits until `GET path` on `address` answers 200, or panics after `timeout`.
pub fn wait_for_http_ok(address: &str, path: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, _) = http_get(address, path);
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "http://{address}{path} did not answer 200 within {timeout:?} (last {status})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Logs in to Bookinfo's productpage at `address` as `user` (its form: `username`, `passwd`)
/// and returns the session cookie (`session=…`) to send with later requests.
pub fn bookinfo_login(address: &str, user: &str) -> String {
    let (status, headers, body) = http_request(
        address,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("username={user}&passwd={user}"),
    );
    assert_eq!(status, 302, "login at {address}: {body}");
    headers
        .iter()
        .find(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("login at {address} set no session cookie"))
}
