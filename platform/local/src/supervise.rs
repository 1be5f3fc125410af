//! The host processes the local platform's daemon supervises: the control-plane components,
//! each restarted with backoff when it exits, and the `sds` profile's node agent (one per
//! host, as 1.4's DaemonSet), each reported up once it listens.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use istio_runtime::backoff::Backoff;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::install::{Component, Plan};
use crate::layout::Layout;

/// The node agent as a supervised host process (one per node, as 1.4's DaemonSet), once its
/// socket exists. The socket's directory is recorded for teardown if the platform made it.
pub(crate) async fn start_node_agent(
    layout: &Layout,
    plan: &Plan,
    program: PathBuf,
    args: Vec<String>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let socket = plan.node_agent_socket().context("the node agent's socket")?;
    if let Some(dir) = socket.parent().filter(|dir| !dir.exists()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::io::Write;
        let mut record = std::fs::OpenOptions::new().create(true).append(true).open(layout.created_paths())?;
        writeln!(record, "{}", dir.display())?;
    }
    let _ = std::fs::remove_file(&socket);
    let agent = Component {
        name: crate::install::NODE_AGENT,
        binary: crate::install::NODE_AGENT,
        service: "istio-nodeagent",
        address: Ipv4Addr::UNSPECIFIED,
        ready_port: 0,
        cluster_dns: false,
    };
    let task = tokio::spawn(supervise_component(layout.clone(), agent, program, args, Vec::new(), stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the node agent did not open {} within 60 s (see its log)",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(socket = %socket.display(), "the node agent is up");
    Ok(task)
}

/// For a component with `cluster_dns`: the container launcher's command that runs it in the
/// host's network but a private mount namespace whose `/etc/resolv.conf` names cluster DNS with
/// `istio-system`'s search path, as in a pod of that namespace.
pub(crate) fn with_cluster_resolver(
    layout: &Layout,
    component: Component,
    launcher: &std::path::Path,
    program: PathBuf,
    args: Vec<String>,
    env: &[(String, String)],
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let resolv = layout.config().join("control-plane-resolv.conf");
    let text = crate::dns::resolv_conf(crate::install::SYSTEM_NAMESPACE, crate::net::HOST_ADDRESS);
    std::fs::write(&resolv, text).with_context(|| format!("writing {}", resolv.display()))?;
    let spec = crate::container::ContainerSpec {
        netns: String::new(),
        program,
        args,
        env: std::env::vars().chain(env.iter().cloned()).collect(),
        uid: None,
        gid: None,
        mounts: Vec::new(),
        hosts_file: None,
        resolv_file: Some(resolv),
        working_dir: None,
    };
    let spec_file = layout.config().join(format!("control-plane-{}.json", component.name));
    std::fs::write(&spec_file, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("writing {}", spec_file.display()))?;
    let args = vec!["x".into(), "local".into(), "exec-container".into(), spec_file.display().to_string()];
    Ok((launcher.to_path_buf(), args))
}

pub(crate) async fn wait_for_port(component: Component) -> anyhow::Result<()> {
    let address = std::net::SocketAddr::new(component.address.into(), component.ready_port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{} did not start listening on {address} within 60 s (see its log)", component.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a control-plane component, restarting it with backoff when it exits.
pub(crate) async fn supervise_component(
    layout: Layout,
    component: Component,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::restart();
    let pid_file = layout.pids().join(format!("control.{}", component.name));

    loop {
        let log_path = layout.control_log(component.name);
        let child = (|| {
            if let Some(dir) = log_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
            let mut command = tokio::process::Command::new(&program);
            command
                .args(&args)
                .envs(env.iter().cloned())
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            command.spawn()
        })();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                tracing::warn!(component = component.name, %error, "cannot start {}", program.display());
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stopped.changed() => return,
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        let _ = crate::process::record(&pid_file, pid);
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(component = component.name, ?status, "control-plane component exited; restarting");
            }
            _ = stopped.changed() => {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                let _ = std::fs::remove_file(&pid_file);
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stopped.changed() => return,
        }
    }
}
