//! A pod's life on the host, the kubelet's part: its network namespace and `/etc` files, its
//! volumes, its init containers one after another, then its containers as supervised
//! processes (restarted with backoff when they exit), readiness probes, and on stop SIGTERM,
//! a grace period, SIGKILL and removal of everything it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use istio_config::object::Object;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::watch;

use crate::container::{ContainerSpec, Mount};
use crate::net;
use crate::pod_context::PodContext;
use crate::probe::{probe_loop, resolve_probe_port, ProbeTarget};
use crate::volumes;
use istio_runtime::backoff::Backoff;

/// A container's state as the pod reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ContainerState {
    pub running: bool,
    pub ready: bool,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// The pod's state, read by the controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PodState {
    pub phase: String,
    pub message: String,
    /// Init containers are done; the ClusterIP rules can go in.
    pub initialized: bool,
    pub containers: BTreeMap<String, ContainerState>,
}

impl PodState {
    pub(crate) fn ready(&self) -> bool {
        self.phase == "Running" && !self.containers.is_empty() && self.containers.values().all(|c| c.running && c.ready)
    }
}

/// A running pod.
pub(crate) struct PodHandle {
    pub netns: String,
    pub ip: String,
    pub state: Arc<Mutex<PodState>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PodHandle {
    pub(crate) fn state(&self) -> PodState {
        istio_runtime::sync::lock(&self.state).clone()
    }

    /// Stops the pod and waits until everything it had is gone.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Everything a pod needs from the cluster when it starts.
pub(crate) struct PodInputs {
    pub pod: Object,
    pub ip: String,
    pub hosts: String,
    /// `NAME_SERVICE_HOST` / `NAME_SERVICE_PORT` of the namespace's services.
    pub service_env: Vec<(String, String)>,
    pub secrets: Vec<Object>,
    pub config_maps: Vec<Object>,
}

/// Starts a pod; it keeps running until `stop`.
pub(crate) fn start(context: Arc<PodContext>, inputs: PodInputs) -> PodHandle {
    let netns = net::netns_name(inputs.pod.namespace(), inputs.pod.name());
    let state = Arc::new(Mutex::new(PodState { phase: "Pending".into(), ..PodState::default() }));
    let (stop, stopped) = watch::channel(false);
    let ip = inputs.ip.clone();
    let task = tokio::spawn(run_pod(context, inputs, netns.clone(), state.clone(), stopped));
    PodHandle { netns, ip, state, stop, task }
}

fn set_state(state: &Mutex<PodState>, update: impl FnOnce(&mut PodState)) {
    update(&mut istio_runtime::sync::lock(state));
}

async fn run_pod(
    context: Arc<PodContext>,
    inputs: PodInputs,
    netns: String,
    state: Arc<Mutex<PodState>>,
    mut stopped: watch::Receiver<bool>,
) {
    let pod = PodRun {
        namespace: inputs.pod.namespace().to_string(),
        name: inputs.pod.name().to_string(),
        context,
        inputs,
        netns,
        state,
    };
    match pod.set_up().await {
        Ok(volumes) => pod.run(&volumes, &mut stopped).await,
        Err(error) => {
            tracing::warn!(pod = %pod.name, namespace = %pod.namespace, "pod setup failed: {error:#}");
            pod.fail(format!("{error:#}"));
            let _ = stopped.changed().await;
        }
    }
    pod.clean_up().await;
}

/// How a pod's init containers ended.
enum InitOutcome {
    /// Every one succeeded: the containers may start.
    Done,
    /// The pod was stopped meanwhile.
    Stopped,
    /// One cannot run at all; the pod has failed.
    Failed,
}

/// One pod's run: what it was started with and where it reports its state.
struct PodRun {
    context: Arc<PodContext>,
    inputs: PodInputs,
    netns: String,
    state: Arc<Mutex<PodState>>,
    namespace: String,
    name: String,
}

impl PodRun {
    /// The network namespace, `/etc/hosts` and `resolv.conf`, and the volumes.
    async fn set_up(&self) -> anyhow::Result<BTreeMap<String, PathBuf>> {
        let setup_netns = self.netns.clone();
        let address: std::net::Ipv4Addr = self.inputs.ip.parse().context("pod address")?;
        tokio::task::spawn_blocking(move || net::create_pod_network(&setup_netns, address)).await??;
        let etc = net::etc_netns_dir(&self.netns);
        std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
        std::fs::write(etc.join("hosts"), &self.inputs.hosts)?;
        let resolv = if self.context.cluster_dns {
            crate::dns::resolv_conf(&self.namespace, net::HOST_ADDRESS)
        } else {
            pod_resolv_conf()
        };
        std::fs::write(etc.join("resolv.conf"), resolv)?;
        volumes::prepare(&self.context, &self.inputs.pod, &self.inputs.secrets, &self.inputs.config_maps)
    }

    /// Init containers, then the containers until the pod is stopped.
    async fn run(&self, volumes: &BTreeMap<String, PathBuf>, stopped: &mut watch::Receiver<bool>) {
        let spec = self.inputs.pod.spec().clone();
        let grace =
            Duration::from_secs(spec.get("terminationGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(5).min(5));
        let init_containers: Vec<Value> =
            spec.get("initContainers").and_then(Value::as_array).cloned().unwrap_or_default();
        match self.run_init_containers(&init_containers, volumes, grace, stopped).await {
            InitOutcome::Done => set_state(&self.state, |s| s.initialized = true),
            InitOutcome::Stopped => return,
            InitOutcome::Failed => {
                let _ = stopped.changed().await;
                return;
            }
        }
        let containers: Vec<Value> = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut running = self.prepare_containers(&containers, volumes);
        if istio_runtime::sync::lock(&self.state).phase != "Failed" {
            set_state(&self.state, |s| s.phase = "Running".into());
        }
        self.supervise(&mut running, stopped).await;
        self.stop_containers(&mut running, grace).await;
    }

    /// Runs the init containers in order; a failed one is retried with backoff, as the kubelet
    /// does.
    async fn run_init_containers(
        &self,
        init_containers: &[Value],
        volumes: &BTreeMap<String, PathBuf>,
        grace: Duration,
        stopped: &mut watch::Receiver<bool>,
    ) -> InitOutcome {
        for container in init_containers {
            let container_name = container.get("name").and_then(Value::as_str).unwrap_or("init").to_string();
            let spec_file = match container_spec(&self.context, &self.inputs, &self.netns, container, volumes) {
                Ok(spec_file) => spec_file,
                Err(error) => {
                    let message = format!("init container {container_name}: {error:#}");
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, "{message}");
                    self.fail(message);
                    return InitOutcome::Failed;
                }
            };
            let mut backoff = Backoff::restart();
            loop {
                match spawn(&self.context, &self.inputs, &container_name, &spec_file) {
                    Ok(mut child) => {
                        let status = tokio::select! {
                            status = child.wait() => status,
                            _ = stopped.changed() => {
                                terminate(&mut child, grace).await;
                                return InitOutcome::Stopped;
                            }
                        };
                        forget_pid(&self.context, &self.inputs, &container_name);
                        if matches!(&status, Ok(status) if status.success()) {
                            break;
                        }
                        let message = format!("init container {container_name} failed: {status:?}");
                        tracing::warn!(pod = %self.name, namespace = %self.namespace, "{message}");
                        set_state(&self.state, |s| s.message = message);
                    }
                    Err(error) => {
                        set_state(&self.state, |s| s.message = format!("init container {container_name}: {error:#}"));
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stopped.changed() => return InitOutcome::Stopped,
                }
            }
        }
        InitOutcome::Done
    }

    /// The containers to supervise; one whose spec cannot be written fails the pod.
    fn prepare_containers(&self, containers: &[Value], volumes: &BTreeMap<String, PathBuf>) -> Vec<Supervised> {
        let mut running = Vec::new();
        for container in containers {
            let container_name = container.get("name").and_then(Value::as_str).unwrap_or("main").to_string();
            match container_spec(&self.context, &self.inputs, &self.netns, container, volumes) {
                Ok(spec_file) => running.push(Supervised::new(container_name, spec_file, container)),
                Err(error) => {
                    let message = format!("container {container_name}: {error:#}");
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, "{message}");
                    self.fail(message);
                }
            }
        }
        running
    }

    /// Keeps the containers running until the pod is stopped: exited ones are reaped and
    /// restarted with backoff, and every container's state is reported.
    async fn supervise(&self, running: &mut [Supervised], stopped: &mut watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            for supervised in running.iter_mut() {
                if let Some(exit) = supervised.reap(&self.context, &self.inputs) {
                    tracing::info!(pod = %self.name, namespace = %self.namespace, container = %supervised.name, status = %exit, "container exited");
                    let container = supervised.name.clone();
                    set_state(&self.state, |s| s.containers.entry(container).or_default().last_exit = Some(exit));
                }
                if let Err(error) = supervised.start_if_due(&self.context, &self.inputs) {
                    tracing::warn!(pod = %self.name, container = %supervised.name, "cannot start: {error:#}");
                }
                let container_state = supervised.state();
                let container = supervised.name.clone();
                set_state(&self.state, |s| {
                    let entry = s.containers.entry(container).or_default();
                    let last_exit = entry.last_exit.take();
                    *entry = ContainerState { last_exit, ..container_state };
                });
            }
        }
    }

    /// SIGTERM to every container at once, then each is waited for (SIGKILL after `grace`).
    async fn stop_containers(&self, running: &mut [Supervised], grace: Duration) {
        for supervised in running.iter_mut() {
            supervised.stop_probing();
            if let Some(child) = supervised.child.as_mut() {
                let _ = child.id().map(|pid| killpg(Pid::from_raw(pid as i32), Signal::SIGTERM));
            }
        }
        for supervised in running.iter_mut() {
            if let Some(mut child) = supervised.child.take() {
                terminate(&mut child, grace).await;
                forget_pid(&self.context, &self.inputs, &supervised.name);
            }
        }
    }

    /// Marks the pod failed with `message`.
    fn fail(&self, message: String) {
        set_state(&self.state, |s| {
            s.phase = "Failed".into();
            s.message = message;
        });
    }

    async fn clean_up(&self) {
        cleanup(&self.context, &self.netns, &self.namespace, &self.name).await;
    }
}

/// A container the pod keeps running.
struct Supervised {
    name: String,
    spec_file: PathBuf,
    child: Option<tokio::process::Child>,
    /// The process group of the running container.
    pid: Option<u32>,
    restarts: u32,
    backoff: Backoff,
    next_start: tokio::time::Instant,
    probe: Option<Value>,
    ready: Arc<AtomicBool>,
    prober: Option<tokio::task::JoinHandle<()>>,
}

impl Supervised {
    fn new(name: String, spec_file: PathBuf, container: &Value) -> Supervised {
        Supervised {
            name,
            spec_file,
            child: None,
            pid: None,
            restarts: 0,
            backoff: Backoff::restart(),
            next_start: tokio::time::Instant::now(),
            probe: container.get("readinessProbe").cloned().map(|probe| resolve_probe_port(probe, container)),
            ready: Arc::new(AtomicBool::new(false)),
            prober: None,
        }
    }

    /// If the container exited: kills what it left in its process group, schedules its
    /// restart and returns how it exited.
    fn reap(&mut self, context: &PodContext, inputs: &PodInputs) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        if let Some(pid) = self.pid.take() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        forget_pid(context, inputs, &self.name);
        self.child = None;
        self.stop_probing();
        self.restarts += 1;
        self.next_start = tokio::time::Instant::now() + self.backoff.next_delay();
        Some(status.to_string())
    }

    /// Starts the container when it is not running and its restart delay has passed.
    fn start_if_due(&mut self, context: &Arc<PodContext>, inputs: &PodInputs) -> anyhow::Result<()> {
        if self.child.is_some() || tokio::time::Instant::now() < self.next_start {
            return Ok(());
        }
        match spawn(context, inputs, &self.name, &self.spec_file) {
            Ok(child) => {
                self.pid = child.id();
                self.child = Some(child);
                self.start_probing(context, &inputs.ip);
                Ok(())
            }
            Err(error) => {
                self.next_start = tokio::time::Instant::now() + Duration::from_secs(5);
                Err(error)
            }
        }
    }

    /// What the pod reports of the container (its last exit is kept separately).
    fn state(&self) -> ContainerState {
        ContainerState {
            running: self.child.is_some(),
            ready: self.child.is_some() && self.ready.load(Ordering::Relaxed),
            restarts: self.restarts,
            last_exit: None,
        }
    }

    /// Starts the readiness probe on its own schedule; a container without one is ready.
    fn start_probing(&mut self, context: &Arc<PodContext>, ip: &str) {
        self.stop_probing();
        match self.probe.clone() {
            None => self.ready.store(true, Ordering::Relaxed),
            Some(probe) => {
                let target = ProbeTarget {
                    ip: ip.to_string(),
                    launcher: context.launcher.clone(),
                    spec_file: self.spec_file.clone(),
                };
                self.prober = Some(tokio::spawn(probe_loop(probe, target, self.ready.clone())));
            }
        }
    }

    fn stop_probing(&mut self) {
        if let Some(prober) = self.prober.take() {
            prober.abort();
        }
        self.ready.store(false, Ordering::Relaxed);
    }
}

/// SIGTERM to the process group, then SIGKILL after `grace`; the group is killed in the end
/// either way, so nothing the container started outlives it.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let _ = tokio::time::timeout(grace, child.wait()).await;
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

async fn cleanup(context: &PodContext, netns: &str, namespace: &str, name: &str) {
    let netns = netns.to_string();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || net::delete_pod_network(&netns)).await {
        tracing::warn!(pod = %name, "removing the pod network: {error:#}");
    }
    let volumes = context.layout.pod_volumes(namespace, name);
    let _ = std::fs::remove_dir_all(volumes);
}

/// Starts the launcher for one container, logging to the container's log file.
fn spawn(
    context: &PodContext,
    inputs: &PodInputs,
    container: &str,
    spec_file: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log_path = context.layout.container_log(inputs.pod.namespace(), inputs.pod.name(), container);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    // The container may run as any user and reopen its stdout by path (`/dev/stdout`, as an
    // access log), which checks the file's mode; the directory above is root's alone.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&log_path, std::fs::Permissions::from_mode(0o666))?;
    let child = tokio::process::Command::new(&context.launcher)
        .args(["x", "local", "exec-container"])
        .arg(spec_file)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", context.launcher.display()))?;
    if let Some(pid) = child.id() {
        let pids = context.layout.pids();
        std::fs::create_dir_all(&pids)?;
        crate::process::record(&pids.join(pid_file_name(inputs, container)), pid)?;
    }
    Ok(child)
}

fn pid_file_name(inputs: &PodInputs, container: &str) -> String {
    format!("pod.{}.{}.{container}", inputs.pod.namespace(), inputs.pod.name())
}

fn forget_pid(context: &PodContext, inputs: &PodInputs, container: &str) {
    let _ = std::fs::remove_file(context.layout.pids().join(pid_file_name(inputs, container)));
}

/// The variable that tells a container where the store is (as Kubernetes tells it where the
/// API server is).
pub(crate) const STORE_ENV: &str = "ISTIO_LOCAL_STORE";

/// Writes the launcher's spec for one container and returns its path.
fn container_spec(
    context: &PodContext,
    inputs: &PodInputs,
    netns: &str,
    container: &Value,
    volumes: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<PathBuf> {
    let name = container.get("name").and_then(Value::as_str).unwrap_or("main");
    let launch = context.images.resolve(container, &context.binaries)?;
    let pod = &inputs.pod;
    let spec = pod.spec();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOSTNAME".into(), pod.name().into()),
        ("HOME".into(), "/root".into()),
        // The API server of this platform, for programs that read objects (a gateway's SDS agent).
        (STORE_ENV.into(), context.layout.store().display().to_string()),
    ];
    env.extend(launch.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(inputs.service_env.iter().cloned());
    for variable in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(key) = variable.get("name").and_then(Value::as_str) else { continue };
        let value = if let Some(value) = variable.get("value").and_then(Value::as_str) {
            expand(value, &env)
        } else if let Some(path) = variable.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            field_value(pod, &inputs.ip, path)
        } else if let Some(reference) = variable.pointer("/valueFrom/secretKeyRef") {
            reference_value(&inputs.secrets, pod.namespace(), reference, true)
        } else if let Some(reference) = variable.pointer("/valueFrom/configMapKeyRef") {
            reference_value(&inputs.config_maps, pod.namespace(), reference, false)
        } else {
            String::new()
        };
        env.retain(|(existing, _)| existing != key);
        env.push((key.to_string(), value));
    }
    let args: Vec<String> = launch.args.iter().map(|arg| expand(arg, &env)).collect();
    let security = |field: &str| -> Option<u32> {
        container
            .pointer(&format!("/securityContext/{field}"))
            .or_else(|| spec.pointer(&format!("/securityContext/{field}")))
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
    };
    let uid = security("runAsUser");
    let gid = security("runAsGroup").or(uid);
    let mut mounts = Vec::new();
    for mount in container.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
        let (Some(volume), Some(target)) =
            (mount.get("name").and_then(Value::as_str), mount.get("mountPath").and_then(Value::as_str))
        else {
            continue;
        };
        let source = volumes.get(volume).with_context(|| format!("container {name}: no volume {volume:?}"))?;
        let source = match mount.get("subPath").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(sub) => {
                let relative = Path::new(sub);
                anyhow::ensure!(
                    relative.is_relative()
                        && relative.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                    "container {name}: subPath {sub:?} must be a relative path without `..`"
                );
                source.join(relative)
            }
            None => source.clone(),
        };
        volumes::ensure_mount_point(context, Path::new(target), source.is_dir())?;
        mounts.push(Mount {
            source,
            target: PathBuf::from(target),
            read_only: mount.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    if let Some(envoy) = &context.envoy_binary {
        if launch.program.file_name().is_some_and(|name| name == "proxy") {
            let target = Path::new(crate::install::ENVOY_PATH);
            volumes::ensure_mount_point(context, target, false)?;
            mounts.push(Mount { source: envoy.clone(), target: target.to_path_buf(), read_only: true });
        }
    }
    let etc = net::etc_netns_dir(netns);
    let spec = ContainerSpec {
        netns: netns.to_string(),
        program: launch.program,
        args,
        env,
        uid,
        gid,
        mounts,
        hosts_file: Some(etc.join("hosts")),
        resolv_file: Some(etc.join("resolv.conf")),
        working_dir: container.get("workingDir").and_then(Value::as_str).map(PathBuf::from),
    };
    let dir = context.layout.container_specs();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.{}.{name}.json", pod.namespace(), pod.name()));
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(path)
}

/// The host's resolvers as a pod sees them: a loopback stub resolver (systemd-resolved's
/// 127.0.0.53) is not reachable from a pod's network namespace, so its upstream list is used.
///
/// Used only when cluster DNS could not start. Queries fail fast (`timeout:1 attempts:1`), so
/// a host without outside DNS does not hold up names the pod's `/etc/hosts` knows.
fn pod_resolv_conf() -> String {
    let mut host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let loopback_only = host
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .all(|server| server.trim().starts_with("127."));
    if loopback_only {
        if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            host = upstream;
        }
    }
    let mut conf: String =
        host.lines().filter(|line| !line.trim_start().starts_with("options")).map(|line| format!("{line}\n")).collect();
    conf.push_str("options timeout:1 attempts:1\n");
    conf
}

/// Kubernetes' `$(VAR)` expansion against the variables defined so far; `$$` escapes.
pub(crate) fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().rev().find(|(key, _)| key == name) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The downward API.
fn field_value(pod: &Object, ip: &str, path: &str) -> String {
    let bracketed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        map.and_then(|map| map.get(key)).cloned()
    };
    match path {
        "metadata.name" => pod.name().to_string(),
        "metadata.namespace" => pod.namespace().to_string(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        "status.podIP" => ip.to_string(),
        "status.hostIP" => net::HOST_ADDRESS.to_string(),
        "spec.nodeName" => crate::nodes::node_of(pod).unwrap_or(crate::nodes::DEFAULT_NODE).to_string(),
        "spec.serviceAccountName" => {
            pod.spec().get("serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string()
        }
        _ => bracketed("metadata.labels", pod.metadata.labels.as_ref())
            .or_else(|| bracketed("metadata.annotations", pod.metadata.annotations.as_ref()))
            .unwrap_or_default(),
    }
}

fn reference_value(objects: &[Object], namespace: &str, reference: &Value, base64_data: bool) -> String {
    let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
    let key = reference.get("key").and_then(Value::as_str).unwrap_or_default();
    volumes::object_files(objects, namespace, name, base64_data)
        .into_iter()
        .find(|(file, _)| file == key)
        .map(|(_, content)| String::from_utf8_lossy(&content).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_as_kubernetes_does() {
        let env = vec![("POD_NAMESPACE".to_string(), "default".to_string())];
        assert_eq!(expand("$(POD_NAMESPACE).svc.cluster.local", &env), "default.svc.cluster.local");
        assert_eq!(expand("$(MISSING)x", &env), "$(MISSING)x");
        assert_eq!(expand("$$(POD_NAMESPACE)", &env), "$(POD_NAMESPACE)");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }
}
