//! A mesh on the local platform for end-to-end tests: `istioctl demo` in a temporary root
//! (with the built-in data plane or a stock Envoy), the kubectl verbs, Bookinfo pages through
//! the ingress gateway, and teardown when the test ends, pass or fail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{http_request, Process};

/// Which data plane the proxies run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// The proxy's built-in data plane.
    Builtin,
    /// A stock Envoy (`values.global.proxy.envoyBinary`).
    Envoy,
}

/// A local installation; uninstalled on drop.
pub struct LocalMesh {
    root: tempfile::TempDir,
    /// The ingress gateway, `IP:80`.
    pub gateway: String,
    pub plane: Plane,
}

impl LocalMesh {
    fn local_root(root: &Path) -> PathBuf {
        root.join("local")
    }

    /// Brings the demo up (`istioctl demo --detach`) with `plane`.
    pub fn demo(plane: Plane) -> LocalMesh {
        Self::demo_with(plane, &[])
    }

    /// The demo with more `--set` values (`values.global.mtls.enabled=true`, …).
    pub fn demo_with(plane: Plane, sets: &[&str]) -> LocalMesh {
        Self::demo_after(plane, sets, |_| {})
    }

    /// The demo with `sets`, after `prepare` has run against the empty root (objects made
    /// before the installation, as the docs create a `cacerts` Secret before installing).
    pub fn demo_after(plane: Plane, sets: &[&str], prepare: impl FnOnce(&LocalMesh)) -> LocalMesh {
        let sets: Vec<String> = sets.iter().map(|set| (*set).to_string()).collect();
        Self::demo_prepared(plane, |mesh| {
            prepare(mesh);
            sets
        })
    }

    /// The demo with the `--set` values `prepare` returns after it has run against the empty
    /// root (it can write files there, under [`LocalMesh::scratch`], that the values name).
    pub fn demo_prepared(plane: Plane, prepare: impl FnOnce(&LocalMesh) -> Vec<String>) -> LocalMesh {
        let root = tempfile::tempdir().expect("tempdir");
        let mut mesh = LocalMesh { root, gateway: String::new(), plane };
        let sets = prepare(&mesh);
        let mut args = vec!["demo".to_string(), "--detach".into(), "--timeout".into(), "4m".into()];
        for set in sets {
            args.push("--set".into());
            args.push(set);
        }
        if plane == Plane::Envoy {
            args.push("--set".into());
            args.push(format!("values.global.proxy.envoyBinary={}", crate::envoy::native_envoy_binary().display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = mesh.istioctl(&args);
        assert_eq!(code, 0, "istioctl demo failed ({plane:?}):\n{out}\n{err}");
        let url = out.lines().find_map(|line| line.trim().strip_prefix("http://")).expect("the demo prints its URL");
        let host = url.trim_end_matches("/productpage");
        mesh.gateway = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
        mesh
    }

    /// A directory of the test's own beside the installation, removed with it.
    pub fn scratch(&self) -> PathBuf {
        let path = self.root.path().join("scratch");
        std::fs::create_dir_all(&path).expect("scratch directory");
        path
    }

    /// The root to give `istioctl` as `ISTIO_LOCAL_ROOT`.
    pub fn root(&self) -> PathBuf {
        Self::local_root(self.root.path())
    }

    /// Runs istioctl against this installation: (exit code, stdout, stderr).
    pub fn istioctl(&self, args: &[&str]) -> (i32, String, String) {
        let output = std::process::Command::new(crate::binary("istioctl"))
            .args(args)
            .env("ISTIO_LOCAL_ROOT", self.root())
            .output()
            .unwrap_or_else(|error| panic!("cannot run istioctl: {error}"));
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts istioctl as a process (for commands that keep running).
    pub fn istioctl_process(root: &Path, args: &[&str]) -> Process {
        let root = root.display().to_string();
        Process::start_with_env(&crate::binary("istioctl"), args, &[("ISTIO_LOCAL_ROOT", root.as_str())])
    }

    /// `istioctl x describe pod POD --why`, asked until its output has every `expected` text
    /// (a stock Envoy writes its access log every 10 s); panics with the last output after 60 s.
    pub fn describe_why(&self, pod: &str, expected: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, out, err) = self.istioctl(&["x", "describe", "pod", pod, "--why"]);
            if code == 0 && expected.iter().all(|text| out.contains(text)) {
                return out;
            }
            assert!(Instant::now() < deadline, "describe {pod} --why never said {expected:?}:\n{out}{err}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `x local apply -f FILE` in `default`; panics with istioctl's output when it fails.
    pub fn apply(&self, file: &Path) {
        let (code, out, err) = self.istioctl(&["x", "local", "apply", "-f", &file.display().to_string()]);
        assert_eq!(code, 0, "applying {}: {out}{err}", file.display());
    }

    /// Applies YAML given inline (the task pages' snippets).
    pub fn apply_yaml(&self, yaml: &str) {
        let file = self.root.path().join(format!("inline-{}.yaml", rand_suffix()));
        std::fs::write(&file, yaml).expect("write YAML");
        self.apply(&file);
    }

    /// Deletes an object by kind (as `get` takes it) and name in `default`, if it exists.
    pub fn delete(&self, kind: &str, name: &str) {
        self.delete_in("default", kind, name);
    }

    /// Deletes an object by kind and name in `namespace`, if it exists.
    /// Deletes the objects a file defines (`kubectl delete -f FILE`); missing ones are skipped.
    pub fn delete_file(&self, file: &Path) {
        let (code, out, err) = self.istioctl(&["x", "local", "delete", "-f", &file.display().to_string()]);
        assert_eq!(code, 0, "deleting {}: {out}{err}", file.display());
    }

    pub fn delete_in(&self, namespace: &str, kind: &str, name: &str) {
        let (code, out, _) = self.istioctl(&["x", "local", "get", kind, name, "-n", namespace, "-o", "yaml"]);
        if code != 0 {
            return;
        }
        let file = self.root.path().join(format!("delete-{}.yaml", rand_suffix()));
        std::fs::write(&file, out).expect("write YAML");
        let (code, out, err) = self.istioctl(&["x", "local", "delete", "-f", &file.display().to_string()]);
        assert_eq!(code, 0, "deleting {kind} {name}: {out}{err}");
    }

    /// Names of the objects of a kind in `default`.
    pub fn names(&self, kind: &str) -> Vec<String> {
        self.names_in(kind, "default")
    }

    /// Names of the objects of a kind in `namespace`.
    pub fn names_in(&self, kind: &str, namespace: &str) -> Vec<String> {
        let (code, out, err) = self.istioctl(&["x", "local", "get", kind, "-n", namespace, "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(&out).expect("list JSON");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Every pod, as JSON.
    pub fn pods(&self) -> Vec<Value> {
        let (code, out, err) = self.istioctl(&["x", "local", "get", "pods", "-A", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(&out).expect("pod list JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The name of a pod labelled `label=value`, in any namespace.
    pub fn pod_name(&self, label: &str, value: &str) -> Option<String> {
        self.pods()
            .into_iter()
            .find(|pod| pod["metadata"]["labels"][label] == value)
            .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
    }

    /// Waits until `count` pods labelled `app` in `namespace` are ready.
    pub fn wait_ready(&self, app: &str, namespace: &str, count: usize) {
        self.wait_ready_labelled("app", app, namespace, count);
    }

    /// Waits until `count` pods labelled `label=value` in `namespace` are ready.
    pub fn wait_ready_labelled(&self, label: &str, value: &str, namespace: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = self
                .pods()
                .iter()
                .filter(|pod| pod["metadata"]["labels"][label] == value && pod["metadata"]["namespace"] == namespace)
                .filter(|pod| Self::pod_is_ready(pod))
                .count();
            if ready >= count {
                return;
            }
            assert!(Instant::now() < deadline, "{count} {label}={value} pods in {namespace} were not ready in time");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `/productpage` through the gateway (as `cookie`'s user): how long it took and the page.
    pub fn page(&self, cookie: Option<&str>) -> (Duration, String) {
        let headers: Vec<(&str, &str)> = cookie.map(|cookie| vec![("cookie", cookie)]).unwrap_or_default();
        let started = Instant::now();
        let (status, _, body) = http_request(&self.gateway, "GET", "/productpage", &headers, "");
        assert_eq!(status, 200, "{body}");
        (started.elapsed(), body)
    }

    /// Waits until `check` holds for `streak` pages in a row: configuration reaches every proxy
    /// within moments, not at once.
    pub fn settle(&self, cookie: Option<&str>, what: &str, streak: usize, check: impl Fn(Duration, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < streak {
            let (elapsed, body) = self.page(cookie);
            if check(elapsed, &body) {
                seen += 1;
            } else {
                seen = 0;
                assert!(
                    Instant::now() < deadline,
                    "{what} ({:?}): the page never settled ({elapsed:?}):\n{body}",
                    self.plane
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Logs in as `user` and returns the session cookie.
    pub fn login(&self, user: &str) -> String {
        crate::bookinfo_login(&self.gateway, user)
    }

    /// `x local exec POD -c CONTAINER -- COMMAND…` in `default`: the command's stdout; panics
    /// with its output when it fails.
    pub fn exec(&self, pod: &str, container: &str, command: &[&str]) -> String {
        let (code, out, err) = self.try_exec(pod, container, command);
        assert_eq!(code, 0, "{command:?} in {pod}/{container}: {out}{err}");
        out
    }

    /// The same, for a command that may fail: (exit code, stdout, stderr).
    pub fn try_exec(&self, pod: &str, container: &str, command: &[&str]) -> (i32, String, String) {
        let mut args = vec!["x", "local", "exec", pod, "-c", container, "--"];
        args.extend(command);
        self.istioctl(&args)
    }

    /// Sets the external names cluster DNS answers itself (the installation's `config/hosts`).
    pub fn set_external_hosts(&self, hosts: &str) {
        std::fs::write(self.root().join("config/hosts"), hosts).expect("write config/hosts");
    }

    /// The status code the `sleep` pod of `namespace` gets for `url` with curl (5 s at most;
    /// `000` when the connection fails), with `extra` curl arguments.
    pub fn sleep_status(&self, namespace: &str, url: &str, extra: &[&str]) -> String {
        let mut args = vec!["x", "local", "exec", "sleep", "-n", namespace, "-c", "sleep", "--", "curl", url];
        args.extend(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]);
        args.extend(extra);
        self.istioctl(&args).1.trim().to_string()
    }

    /// The sum of the pod's sidecar stat `name` (Envoy's `/stats` text form) over every line
    /// that carries it: `pilot-agent request GET stats` in its `istio-proxy` container.
    pub fn proxy_stat(&self, pod: &str, name: &str) -> u64 {
        let stats = self.exec(pod, "istio-proxy", &["pilot-agent", "request", "GET", "stats"]);
        stats
            .lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .filter_map(|value| value.trim().parse::<u64>().ok())
            .sum()
    }

    /// What the `istio-proxy` container of `pod` in `namespace` answers on its admin `path`
    /// (`stats`, `clusters`, …), through `pilot-agent request GET`; empty if it cannot be asked.
    pub fn proxy_admin(&self, pod: &str, namespace: &str, path: &str) -> String {
        let args = [
            "x",
            "local",
            "exec",
            pod,
            "-n",
            namespace,
            "-c",
            "istio-proxy",
            "--",
            "pilot-agent",
            "request",
            "GET",
            path,
        ];
        self.istioctl(&args).1
    }

    /// Whether a pod (as `x local get pods -o json` lists it) is Ready.
    pub fn pod_is_ready(pod: &Value) -> bool {
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }

    /// The ingress gateway's IP.
    pub fn gateway_ip(&self) -> String {
        self.gateway.split(':').next().unwrap_or_default().to_string()
    }

    /// `curl https://HOST/PATH` to the ingress gateway's port 443 as the secure-gateway tasks
    /// do it (`--resolve HOST:443:GATEWAY --cacert CA`, with a client certificate and key when
    /// given): the status code and HTTP version, `000 HTTP/0` when the handshake fails.
    pub fn https_through_gateway(&self, host: &str, path: &str, ca: &Path, client: Option<(&Path, &Path)>) -> String {
        let resolve = format!("{host}:443:{}", self.gateway_ip());
        let url = format!("https://{host}{path}");
        let mut command = std::process::Command::new("curl");
        command
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} HTTP/%{http_version}", "--max-time", "5"])
            .args(["--resolve", &resolve, "--cacert"])
            .arg(ca);
        if let Some((cert, key)) = client {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let output = command.arg(url).output().expect("run curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        let _ = self.istioctl(&["uninstall"]);
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    )
}

/// A task of a task suite: its name and what it does on a mesh.
pub type Task = fn(&LocalMesh);

/// One installation on the host at a time, across the suites of one test binary.
static HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the host for one installation at a time (tests of one binary run in parallel).
pub fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    istio_runtime::sync::lock(&HOST)
}

/// Runs a suite of docs tasks on one demo installation with `plane`: `setup` once, then each
/// task after `reset`, a failing task not stopping the others; fails listing every failed task.
/// `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.
pub fn run_tasks(plane: Plane, tasks: &[(&str, Task)], setup: Task, reset: Task) {
    run_tasks_prepared(plane, |_| Vec::new(), tasks, setup, reset);
}

/// [`run_tasks`] on a demo installed with the values `prepare` returns
/// ([`LocalMesh::demo_prepared`]).
pub fn run_tasks_prepared(
    plane: Plane,
    prepare: fn(&LocalMesh) -> Vec<String>,
    tasks: &[(&str, Task)],
    setup: Task,
    reset: Task,
) {
    let _host = host_lock();
    if let Some(reason) = crate::pod_prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = LocalMesh::demo_prepared(plane, prepare);
    setup(&mesh);
    let mut failures = Vec::new();
    let only = std::env::var("ISTIO_TASKS").unwrap_or_default();
    let selected = |name: &str| only.is_empty() || only.split(',').any(|part| name.contains(part));
    for (name, task) in tasks.iter().filter(|(name, _)| selected(name)) {
        reset(&mesh);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&mesh)));
        eprintln!(
            "{plane:?}: {name}: {} in {:.1?}",
            if outcome.is_ok() { "passed" } else { "FAILED" },
            started.elapsed()
        );
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{plane:?}: {} task(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// The secure-gateway tasks' VirtualService: `/status` and `/delay` of `httpbin.example.com`
/// through the Gateway `gateway` to httpbin on 8000.
pub fn httpbin_virtual_service(gateway: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - \"httpbin.example.com\"
  gateways:
  - {gateway}
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
"
    )
}

/// A Bookinfo or task sample file by its path under `samples/`.
pub fn sample(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples").join(path)
}

/// Counts red and black star blocks on a page.
pub fn stars(page: &str) -> (usize, usize) {
    (page.matches("<font color=\"red\">").count(), page.matches("<font color=\"black\">").count())
}
