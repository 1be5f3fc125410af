//! The local network: a bridge (`istio-rs0`, 10.44.0.0/16) with the host's address and one
//! address per control-plane service, and each pod a network namespace joined to the bridge
//! by a veth pair, with its own address and the host as its default gateway. Everything is
//! done with iproute2 so it is the same as what a person would type.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};

pub const BRIDGE: &str = "istio-rs0";
pub const PREFIX_LEN: u8 = 16;
/// The bridge's own MAC address (locally administered, derived from 10.44.0.1).
pub const BRIDGE_MAC: &str = "02:00:0a:2c:00:01";
/// The host's address on the bridge, the pods' default gateway.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 1);
/// Where ClusterIPs are allocated (`services::allocate_cluster_ip`).
pub const SERVICE_NETWORK: &str = "10.96.0.0/16";
/// Network namespaces of pods are named `istio-rs-<namespace>_<pod>` (`_` occurs in neither).
pub const NETNS_PREFIX: &str = "istio-rs-";
/// Host-side veth names start with this.
pub const VETH_PREFIX: &str = "irs";

/// Pod addresses are taken from 10.44.1.0 upwards.
pub fn pod_address(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 44, 1, 0)) + index)
}

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output =
        Command::new(program).args(args).output().with_context(|| format!("running {program} (is it installed?)"))?;
    if !output.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().map(|output| output.status.success()).unwrap_or(false)
}

/// Creates the bridge with the host address and `extra` addresses (idempotent).
pub fn ensure_bridge(extra: &[Ipv4Addr]) -> anyhow::Result<()> {
    if !link_exists(BRIDGE) {
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        // A bridge otherwise takes the lowest MAC of its ports, which changes as pods come and
        // go; pods that cached the old one would lose the host (and the control plane) until
        // their ARP entries expired. A fixed, locally administered address keeps it stable.
        run("ip", &["link", "set", "dev", BRIDGE, "address", BRIDGE_MAC])?;
    }
    let present = run("ip", &["-4", "addr", "show", "dev", BRIDGE])?;
    for address in std::iter::once(&HOST_ADDRESS).chain(extra) {
        if !present.contains(&format!("inet {address}/")) {
            run("ip", &["addr", "add", &format!("{address}/{PREFIX_LEN}"), "dev", BRIDGE])?;
        }
    }
    run("ip", &["link", "set", BRIDGE, "up"])?;
    // The host's own connections to ClusterIPs leave by the bridge (its ClusterIP rules send
    // them on to pods), also on a host without a default route.
    run("ip", &["route", "replace", SERVICE_NETWORK, "dev", BRIDGE, "src", &HOST_ADDRESS.to_string()])?;
    Ok(())
}

/// Removes the bridge (and with it its addresses).
pub fn delete_bridge() -> anyhow::Result<()> {
    if link_exists(BRIDGE) {
        run("ip", &["link", "del", BRIDGE])?;
    }
    Ok(())
}

/// The network namespace name of a pod.
pub fn netns_name(namespace: &str, pod: &str) -> String {
    format!("{NETNS_PREFIX}{namespace}_{pod}")
}

/// A host-side veth name for a namespace: short (interface names stop at 15 bytes) and stable.
fn veth_name(netns: &str) -> String {
    format!("{VETH_PREFIX}{:08x}", istio_config::hash::fnv1a64(netns.bytes()) as u32)
}

/// Creates a pod's network namespace with `address` on the bridge.
pub fn create_pod_network(netns: &str, address: Ipv4Addr) -> anyhow::Result<()> {
    let veth = veth_name(netns);
    if list_netns()?.iter().any(|name| name == netns) {
        run("ip", &["netns", "del", netns])?;
    }
    run("ip", &["netns", "add", netns])?;
    let result = (|| {
        run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", netns])?;
        run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
        run("ip", &["-n", netns, "addr", "add", &format!("{address}/{PREFIX_LEN}"), "dev", "eth0"])?;
        run("ip", &["-n", netns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", netns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", netns, "route", "add", "default", "via", &HOST_ADDRESS.to_string()])?;
        anyhow::Ok(())
    })();
    if result.is_err() {
        let _ = delete_pod_network(netns);
    }
    result
}

/// Deletes a pod's network namespace (its veth pair goes with it) and its `/etc/netns` files.
pub fn delete_pod_network(netns: &str) -> anyhow::Result<()> {
    if list_netns()?.iter().any(|name| name == netns) {
        run("ip", &["netns", "del", netns])?;
    }
    let etc = etc_netns_dir(netns);
    if etc.exists() {
        std::fs::remove_dir_all(&etc).with_context(|| format!("removing {}", etc.display()))?;
    }
    let veth = veth_name(netns);
    if link_exists(&veth) {
        run("ip", &["link", "del", &veth])?;
    }
    Ok(())
}

/// `ip netns exec` binds the files here over `/etc` for the processes it starts.
pub fn etc_netns_dir(netns: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns").join(netns)
}

/// Network namespaces on the host.
pub fn list_netns() -> anyhow::Result<Vec<String>> {
    Ok(run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Runs iptables-restore inside a network namespace with `rules` on stdin (`--noflush`).
pub fn iptables_restore_in(netns: &str, rules: &str) -> anyhow::Result<()> {
    iptables_restore(Some(netns), rules)
}

/// Runs iptables-restore with `rules` on stdin (`--noflush`), inside `netns` or on the host.
pub fn iptables_restore(netns: Option<&str>, rules: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, "iptables-restore", "--noflush"]);
            command
        }
        None => {
            let mut command = Command::new("iptables-restore");
            command.arg("--noflush");
            command
        }
    };
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running iptables-restore")?;
    child.stdin.take().context("stdin")?.write_all(rules.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "iptables-restore in {} failed: {}",
            netns.unwrap_or("the host's network namespace"),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(pod_address(1), Ipv4Addr::new(10, 44, 1, 1));
        assert_eq!(pod_address(300), Ipv4Addr::new(10, 44, 2, 44));
        let veth = veth_name(&netns_name("default", "productpage-v1-6b746f74dc-9stvs"));
        assert!(veth.len() <= 15 && veth.starts_with(VETH_PREFIX), "{veth}");
    }
}
