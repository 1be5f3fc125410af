//! The container launcher: what a container runtime does between the pod's sandbox and the
//! container's process. It enters the pod's network namespace, takes a private mount
//! namespace, binds the pod's `/etc/hosts` and `/etc/resolv.conf` and the container's volume
//! mounts into place, switches to the container's user and execs the program. It runs as
//! `istioctl x local exec-container SPEC` and must be called before any threads start.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use serde::{Deserialize, Serialize};

/// A bind mount of a volume into the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything the launcher needs, written as JSON by the pod runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerSpec {
    /// The pod's network namespace; empty keeps the host's (a host-network process, such as a
    /// control-plane component that resolves names as a pod does).
    pub netns: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mounts: Vec<Mount>,
    /// Files bound over `/etc/hosts` and `/etc/resolv.conf`.
    pub hosts_file: Option<PathBuf>,
    pub resolv_file: Option<PathBuf>,
    pub working_dir: Option<PathBuf>,
}

impl ContainerSpec {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{}: not a container spec", path.display()))
    }
}

/// Enters the pod and execs the program; returns only when that fails.
pub fn exec_container(spec: &ContainerSpec) -> anyhow::Error {
    match prepare(spec) {
        Ok(mut command) => anyhow::Error::new(command.exec()).context(format!("executing {}", spec.program.display())),
        Err(error) => error,
    }
}

fn prepare(spec: &ContainerSpec) -> anyhow::Result<std::process::Command> {
    if !spec.netns.is_empty() {
        let netns_path = Path::new("/var/run/netns").join(&spec.netns);
        let netns = std::fs::File::open(&netns_path).with_context(|| format!("opening {}", netns_path.display()))?;
        setns(&netns, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {}", spec.netns))?;
    }
    unshare(CloneFlags::CLONE_NEWNS).context("creating a mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .context("making mounts private")?;
    let mut binds: Vec<Mount> = Vec::new();
    if let Some(hosts) = &spec.hosts_file {
        binds.push(Mount { source: hosts.clone(), target: "/etc/hosts".into(), read_only: false });
    }
    if let Some(resolv) = &spec.resolv_file {
        binds.push(Mount { source: resolv.clone(), target: "/etc/resolv.conf".into(), read_only: false });
    }
    binds.extend(spec.mounts.iter().cloned());
    for bind in &binds {
        mount(Some(&bind.source), &bind.target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .with_context(|| format!("mounting {} at {}", bind.source.display(), bind.target.display()))?;
        if bind.read_only {
            mount(
                None::<&str>,
                &bind.target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .with_context(|| format!("making {} read-only", bind.target.display()))?;
        }
    }
    let mut command = std::process::Command::new(&spec.program);
    command.args(&spec.args).env_clear().envs(spec.env.iter().map(|(key, value)| (key, value)));
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    if let Some(gid) = spec.gid {
        command.gid(gid);
    }
    if let Some(uid) = spec.uid {
        command.uid(uid);
    }
    Ok(command)
}
