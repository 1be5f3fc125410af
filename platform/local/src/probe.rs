//! Readiness probes, as the kubelet runs them: HTTP GET, TCP connect or a command in the
//! container, on Kubernetes' schedule (initial delay, period, success and failure thresholds).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::container::ContainerSpec;

/// Runs a readiness probe with Kubernetes' timing: `initialDelaySeconds`, then every
/// `periodSeconds` (10), ready after `successThreshold` (1) successes in a row, not ready after
/// `failureThreshold` (3) failures in a row.
pub(crate) async fn probe_loop(probe: Value, target: ProbeTarget, ready: Arc<AtomicBool>) {
    let seconds = |field: &str, default: u64| probe.get(field).and_then(Value::as_u64).unwrap_or(default);
    let period = Duration::from_secs(seconds("periodSeconds", 10).max(1));
    let success_threshold = seconds("successThreshold", 1).max(1);
    let failure_threshold = seconds("failureThreshold", 3).max(1);
    tokio::time::sleep(Duration::from_secs(seconds("initialDelaySeconds", 0))).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        if target.check(&probe).await {
            failures = 0;
            successes += 1;
            if successes >= success_threshold {
                ready.store(true, Ordering::Relaxed);
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= failure_threshold {
                ready.store(false, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// A probe whose `httpGet` or `tcpSocket` port names a container port, with the number instead.
pub(crate) fn resolve_probe_port(mut probe: Value, container: &Value) -> Value {
    for pointer in ["/httpGet/port", "/tcpSocket/port"] {
        let Some(name) = probe.pointer(pointer).and_then(Value::as_str).map(str::to_string) else { continue };
        let number = name.parse::<u64>().ok().or_else(|| {
            container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|port| port.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .and_then(|port| port.get("containerPort").and_then(Value::as_u64))
        });
        if let (Some(number), Some(slot)) = (number, probe.pointer_mut(pointer)) {
            *slot = Value::from(number);
        }
    }
    probe
}

/// Runs a container's readiness probe against the pod.
pub(crate) struct ProbeTarget {
    pub ip: String,
    /// For `exec` probes: the launcher and the container's spec, whose program is replaced.
    pub launcher: PathBuf,
    pub spec_file: PathBuf,
}

impl ProbeTarget {
    async fn check(&self, probe: &Value) -> bool {
        let timeout = Duration::from_secs(probe.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(1).max(1));
        if let Some(http) = probe.get("httpGet") {
            let Some(port) = http.get("port").and_then(Value::as_u64) else { return false };
            let path = http.get("path").and_then(Value::as_str).unwrap_or("/");
            return tokio::time::timeout(timeout, http_probe(&self.ip, port, path)).await.unwrap_or(false);
        }
        if let Some(port) = probe.pointer("/tcpSocket/port").and_then(Value::as_u64) {
            let address = format!("{}:{port}", self.ip);
            return matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)));
        }
        if let Some(command) = probe.pointer("/exec/command").and_then(Value::as_array) {
            return self.exec_probe(command, timeout).await;
        }
        false
    }

    /// Runs the probe's command inside the container; ready when it exits 0.
    async fn exec_probe(&self, command: &[Value], timeout: Duration) -> bool {
        let words: Vec<String> = command.iter().filter_map(Value::as_str).map(str::to_string).collect();
        let Some((program, args)) = words.split_first() else { return false };
        let Ok(mut spec) = ContainerSpec::read(&self.spec_file) else { return false };
        let Some(program) = crate::prereq::find_program(program).or_else(|| {
            let path = PathBuf::from(program);
            path.is_absolute().then_some(path)
        }) else {
            return false;
        };
        spec.program = program;
        spec.args = args.to_vec();
        let probe_file = self.spec_file.with_extension("probe.json");
        if std::fs::write(&probe_file, serde_json::to_vec(&spec).unwrap_or_default()).is_err() {
            return false;
        }
        let child = tokio::process::Command::new(&self.launcher)
            .args(["x", "local", "exec-container"])
            .arg(&probe_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        matches!(tokio::time::timeout(timeout, child).await, Ok(Ok(status)) if status.success())
    }
}

async fn http_probe(ip: &str, port: u64, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(format!("{ip}:{port}")).await else { return false };
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {ip}:{port}\r\nuser-agent: kube-probe/1.16\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0_u8; 64];
    let Ok(read) = stream.read(&mut head).await else { return false };
    let text = String::from_utf8_lossy(&head[..read]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}
