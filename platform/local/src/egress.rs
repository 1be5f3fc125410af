//! The host's part of the pod network, as a Kubernetes node has it: pods' traffic to networks
//! beyond the host (IP forwarding on, and, in chains of the platform's own, pods' packets that
//! leave by another interface masqueraded as the host, and forwarding to and from the bridge
//! accepted, also on hosts whose `FORWARD` policy is DROP), and the host's own connections to
//! ClusterIPs (the DNAT rules kube-proxy installs on a node, for host processes such as Mixer,
//! whose adapters reach Services like `redis-release-master`). `disable` takes the chains away
//! and puts forwarding back the way it was found.

use std::path::Path;

use anyhow::Context;

use crate::net::{self, BRIDGE, PREFIX_LEN};

/// The masquerade rules, jumped to from `nat POSTROUTING`.
pub(crate) const NAT_CHAIN: &str = "ISTIO-RS-POSTROUTING";
/// The accept rules, jumped to from `filter FORWARD`.
pub(crate) const FORWARD_CHAIN: &str = "ISTIO-RS-FORWARD";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// The host's ClusterIP rules, jumped to from `nat OUTPUT`.
pub(crate) const SERVICES_CHAIN: &str = "ISTIO-RS-SERVICES";
/// The host's refusals of ClusterIP ports without endpoints, jumped to from `filter OUTPUT`.
pub(crate) const NO_ENDPOINTS_CHAIN: &str = "ISTIO-RS-NO-ENDPOINTS";

/// The pod network, `10.44.0.0/16`.
fn pod_network() -> String {
    let octets = net::HOST_ADDRESS.octets();
    format!("{}.{}.0.0/{PREFIX_LEN}", octets[0], octets[1])
}

/// Turns egress on; `saved_state` records forwarding's previous setting (kept from the first
/// call, so a restarted daemon does not record its own setting as the host's).
pub(crate) fn enable(saved_state: &Path) -> anyhow::Result<()> {
    let previous = std::fs::read_to_string(IP_FORWARD).with_context(|| format!("reading {IP_FORWARD}"))?;
    if !saved_state.exists() {
        std::fs::write(saved_state, previous.trim()).with_context(|| format!("writing {}", saved_state.display()))?;
    }
    if previous.trim() != "1" {
        std::fs::write(IP_FORWARD, "1").with_context(|| format!("turning on {IP_FORWARD}"))?;
    }
    let network = pod_network();
    reset_chain("nat", NAT_CHAIN, "POSTROUTING")?;
    net::run("iptables", &["-t", "nat", "-A", NAT_CHAIN, "-s", &network, "!", "-o", BRIDGE, "-j", "MASQUERADE"])?;
    reset_chain("filter", FORWARD_CHAIN, "FORWARD")?;
    net::run("iptables", &["-t", "filter", "-A", FORWARD_CHAIN, "-i", BRIDGE, "-j", "ACCEPT"])?;
    net::run(
        "iptables",
        &[
            "-t",
            "filter",
            "-A",
            FORWARD_CHAIN,
            "-o",
            BRIDGE,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    )?;
    Ok(())
}

/// Removes the chains and the jumps to them, and restores forwarding's saved setting.
pub(crate) fn disable(saved_state: &Path) -> anyhow::Result<()> {
    remove_chain("nat", NAT_CHAIN, "POSTROUTING");
    remove_chain("filter", FORWARD_CHAIN, "FORWARD");
    remove_chain("nat", SERVICES_CHAIN, "OUTPUT");
    remove_chain("filter", NO_ENDPOINTS_CHAIN, "OUTPUT");
    if let Ok(previous) = std::fs::read_to_string(saved_state) {
        let previous = previous.trim();
        if previous == "0" || previous == "1" {
            std::fs::write(IP_FORWARD, previous).with_context(|| format!("restoring {IP_FORWARD}"))?;
        }
        let _ = std::fs::remove_file(saved_state);
    }
    Ok(())
}

/// Whether either chain is still on the host.
/// Replaces the host's ClusterIP rules (`iptables-restore` text for [`SERVICES_CHAIN`] and
/// [`NO_ENDPOINTS_CHAIN`]), with the jumps to them from `OUTPUT`.
pub(crate) fn install_service_rules(rules: &str) -> anyhow::Result<()> {
    net::iptables_restore(None, rules)?;
    for (table, chain) in [("nat", SERVICES_CHAIN), ("filter", NO_ENDPOINTS_CHAIN)] {
        if net::run("iptables", &["-t", table, "-C", "OUTPUT", "-j", chain]).is_err() {
            net::run("iptables", &["-t", table, "-A", "OUTPUT", "-j", chain])?;
        }
    }
    Ok(())
}

pub(crate) fn chains_present() -> bool {
    [("nat", NAT_CHAIN), ("filter", FORWARD_CHAIN), ("nat", SERVICES_CHAIN), ("filter", NO_ENDPOINTS_CHAIN)]
        .iter()
        .any(|(table, chain)| net::run("iptables", &["-t", table, "-S", chain]).is_ok())
}

/// An empty `chain`, jumped to first thing from `from`.
fn reset_chain(table: &str, chain: &str, from: &str) -> anyhow::Result<()> {
    if net::run("iptables", &["-t", table, "-N", chain]).is_err() {
        net::run("iptables", &["-t", table, "-F", chain])?;
    }
    if net::run("iptables", &["-t", table, "-C", from, "-j", chain]).is_err() {
        net::run("iptables", &["-t", table, "-I", from, "1", "-j", chain])?;
    }
    Ok(())
}

fn remove_chain(table: &str, chain: &str, from: &str) {
    while net::run("iptables", &["-t", table, "-D", from, "-j", chain]).is_ok() {}
    let _ = net::run("iptables", &["-t", table, "-F", chain]);
    let _ = net::run("iptables", &["-t", table, "-X", chain]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pod_network_is_the_bridge_network() {
        assert_eq!(super::pod_network(), "10.44.0.0/16");
    }
}
