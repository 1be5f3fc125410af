//! Uninstalling: the daemon is asked to stop (it stops every pod and component and removes
//! the bridge), then whatever remains is swept up from what the platform recorded and what its
//! names reveal: processes from the pid files, network namespaces and `/etc/netns` entries
//! named `istio-rs-*`, veths named `irs*`, the bridge, the mount-point directories it
//! created, and the root directory. `leftovers` says what is still there.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::layout::Layout;
use crate::net;

/// The daemon's pid, when it is running.
pub fn daemon_pid(layout: &Layout) -> Option<i32> {
    crate::process::running(&layout.daemon_pid())
}

/// Whether a process runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !crate::process::is_zombie(pid)
}

/// Stops everything and removes every trace; `progress` hears about each step.
pub fn uninstall(layout: &Layout, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    if let Some(pid) = daemon_pid(layout) {
        progress("stopping the pods and the control plane");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            progress("the daemon did not stop in time; killing it");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    progress("removing processes, network namespaces, links and files");
    sweep(layout)
}

fn sweep(layout: &Layout) -> anyhow::Result<()> {
    if let Ok(entries) = std::fs::read_dir(layout.pids()) {
        for entry in entries.flatten() {
            if let Some(pid) = crate::process::running(&entry.path()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    for netns in net::list_netns().unwrap_or_default().into_iter().filter(|name| name.starts_with(net::NETNS_PREFIX)) {
        net::delete_pod_network(&netns)?;
    }
    if let Ok(entries) = std::fs::read_dir("/etc/netns") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(net::NETNS_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    for link in our_links() {
        let _ = net::run("ip", &["link", "del", &link]);
    }
    crate::egress::disable(&layout.saved_ip_forward())?;
    if let Ok(text) = std::fs::read_to_string(layout.created_paths()) {
        let mut paths: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths.iter().rev() {
            let path = Path::new(path);
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    remove_root(layout)
}

/// Removes the root directory, but only if it is an installation's (or empty): a mistyped
/// `ISTIO_LOCAL_ROOT` must not erase someone's files.
fn remove_root(layout: &Layout) -> anyhow::Result<()> {
    let root = layout.root();
    if !root.exists() {
        return Ok(());
    }
    let ours = layout.install_file().exists()
        || std::fs::read_dir(root)?.flatten().all(|entry| {
            matches!(
                entry.file_name().to_str(),
                Some(
                    "store"
                        | "config"
                        | "certs"
                        | "logs"
                        | "pids"
                        | "volumes"
                        | "containers"
                        | "created-paths"
                        | "ip-forward.saved"
                        | "daemon.pid"
                        | "ready"
                )
            )
        });
    anyhow::ensure!(ours, "{} does not look like a local installation; not removing it", root.display());
    std::fs::remove_dir_all(root)?;
    Ok(())
}

/// The bridge and veths of the platform that exist.
fn our_links() -> Vec<String> {
    net::run("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|name| name == net::BRIDGE || name.starts_with(net::VETH_PREFIX))
        .collect()
}

/// Whatever of the platform is still on the host, described; empty after a clean uninstall.
pub fn leftovers(layout: &Layout) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(pid) = daemon_pid(layout) {
        found.push(format!("daemon process {pid}"));
    }
    for netns in net::list_netns().unwrap_or_default().into_iter().filter(|name| name.starts_with(net::NETNS_PREFIX)) {
        found.push(format!("network namespace {netns}"));
    }
    for link in our_links() {
        found.push(format!("link {link}"));
    }
    if crate::egress::chains_present() {
        found.push(format!(
            "iptables chain {}, {}, {} or {}",
            crate::egress::NAT_CHAIN,
            crate::egress::FORWARD_CHAIN,
            crate::egress::SERVICES_CHAIN,
            crate::egress::NO_ENDPOINTS_CHAIN
        ));
    }
    if layout.root().exists() {
        found.push(format!("directory {}", layout.root().display()));
    }
    if let Ok(entries) = std::fs::read_dir(layout.pids()) {
        for entry in entries.flatten() {
            if let Some(pid) = crate::process::running(&entry.path()) {
                found.push(format!("process {pid} ({})", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Another installation's daemon running on this host, as (pid, its root): there can be only
/// one, since the bridge and its addresses are fixed.
pub fn other_daemon(layout: &Layout) -> Option<(i32, String)> {
    let own = daemon_pid(layout);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if Some(pid) == own {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let words: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
        if !words.windows(3).any(|window| window == [b"x".as_slice(), b"local", b"daemon"]) {
            continue;
        }
        let root = std::fs::read(entry.path().join("environ"))
            .ok()
            .and_then(|environ| {
                environ.split(|byte| *byte == 0).find_map(|variable| {
                    variable.strip_prefix(b"ISTIO_LOCAL_ROOT=").map(|root| String::from_utf8_lossy(root).into_owned())
                })
            })
            .unwrap_or_else(|| "/var/lib/istio-rs/local".to_string());
        if alive(pid) {
            return Some((pid, root));
        }
    }
    None
}
