//! `proxy iptables` and `proxy clean-iptables`: Istio 1.4's `istio-iptables` (the istio-init
//! container) with its flags and its exact rules. Outbound TCP is redirected to the sidecar's
//! `virtualOutbound` port (`-p`, 15001), inbound TCP to `virtualInbound` (`-z`, 15006), except the
//! proxy's own traffic (`-u`/`-g`, 1337), loopback, and the excluded ports and ranges. REDIRECT
//! mode uses the nat table; TPROXY mode marks inbound packets in the mangle table and routes them
//! locally (table 133). A pod whose address is IPv6 gets the same capture from `ip6tables`
//! (nat table); any other pod has IPv6 input locked down to established connections and
//! loopback, as 1.4 did. `--dry-run` prints the commands instead of running them.

use std::process::Command;

use anyhow::{bail, Context};

/// The flags of 1.4's `istio-iptables`.
#[derive(Debug, Clone, clap::Args)]
pub struct IptablesArgs {
    /// Port all outbound TCP is redirected to.
    #[arg(short = 'p', default_value_t = 15001)]
    pub proxy_port: u16,
    /// Port all inbound TCP is redirected to (when `-b` is `*`).
    #[arg(short = 'z', default_value_t = 15006)]
    pub inbound_capture_port: u16,
    /// User ids whose traffic is not captured (the proxy's own), comma-separated.
    #[arg(short = 'u', default_value = "1337")]
    pub proxy_uid: String,
    /// Group ids whose traffic is not captured; defaults to the `-u` ids.
    #[arg(short = 'g')]
    pub proxy_gid: Option<String>,
    /// Inbound capture mode: REDIRECT or TPROXY.
    #[arg(short = 'm', default_value = "REDIRECT")]
    pub mode: String,
    /// Inbound ports to capture, comma-separated; `*` for all; empty for none.
    #[arg(short = 'b', default_value = "")]
    pub inbound_ports: String,
    /// Inbound ports not to capture (with `-b '*'`), comma-separated.
    #[arg(short = 'd', default_value = "")]
    pub inbound_ports_exclude: String,
    /// Outbound IP ranges to capture, comma-separated CIDRs; `*` for all.
    #[arg(short = 'i', default_value = "")]
    pub outbound_ranges: String,
    /// Outbound IP ranges not to capture, comma-separated CIDRs.
    #[arg(short = 'x', default_value = "")]
    pub outbound_ranges_exclude: String,
    /// Outbound ports not to capture, comma-separated.
    #[arg(short = 'o', default_value = "")]
    pub outbound_ports_exclude: String,
    /// Virtual-machine (kubevirt) interfaces whose traffic is captured as outbound.
    #[arg(short = 'k', default_value = "")]
    pub kubevirt_interfaces: String,
    /// Print the commands instead of running them.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CleanArgs {
    /// Print the commands instead of running them.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
}

fn command(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// The CIDRs of a list that are (or are not) IPv6; `*` belongs to both.
fn cidrs(text: &str, ipv6: bool) -> Vec<String> {
    list(text)
        .into_iter()
        .filter(|cidr| cidr == "*" || cidr.split('/').next().unwrap_or_default().contains(':') == ipv6)
        .collect()
}

/// Whether the pod is an IPv6 pod, as 1.4 decided from the pod's address: `ENABLE_INBOUND_IPV6`
/// when set, else whether the namespace has a global IPv6 address and no IPv4 one besides
/// loopback.
pub fn pod_is_ipv6() -> bool {
    if let Some(value) = std::env::var_os("ENABLE_INBOUND_IPV6") {
        return !value.is_empty() && value != "false";
    }
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else { return false };
    let mut ipv4 = false;
    let mut ipv6 = false;
    for interface in addresses {
        let Some(address) = interface.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            ipv4 |= !v4.ip().is_loopback();
        } else if let Some(v6) = address.as_sockaddr_in6() {
            let ip = v6.ip();
            // Global (or unique local) addresses; not loopback or link-local.
            ipv6 |= !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80;
        }
    }
    ipv6 && !ipv4
}

/// The commands that install the rules, in order, each as its argument vector. `ipv6`: the
/// pod's address is IPv6 (see `pod_is_ipv6`).
pub fn rules(args: &IptablesArgs, ipv6: bool) -> anyhow::Result<Vec<Vec<String>>> {
    let tproxy = match args.mode.as_str() {
        "REDIRECT" => false,
        "TPROXY" => true,
        other => bail!("-m {other:?}: the inbound capture mode must be REDIRECT or TPROXY"),
    };
    for (flag, values) in [("-d", &args.inbound_ports_exclude), ("-o", &args.outbound_ports_exclude)]
        .into_iter()
        .chain((args.inbound_ports != "*").then_some(("-b", &args.inbound_ports)))
    {
        for port in list(values) {
            if port.parse::<u16>().is_err() {
                bail!("{flag}: {port:?} is not a port number");
            }
        }
    }
    let uids = list(&args.proxy_uid);
    let gids = args.proxy_gid.as_deref().map(list).unwrap_or_else(|| uids.clone());
    let all_inbound = args.inbound_ports == "*";
    let inbound_ports = if all_inbound { Vec::new() } else { list(&args.inbound_ports) };
    let capture_inbound = all_inbound || !inbound_ports.is_empty();
    let mut out: Vec<String> = Vec::new();
    let mut add = |line: String| out.push(line);

    add("iptables -t nat -N ISTIO_REDIRECT".into());
    add(format!("iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port {}", args.proxy_port));
    // Inbound goes to virtualInbound when every port is captured, else to the outbound port as
    // 1.4 did for port lists.
    let inbound_target = if all_inbound { args.inbound_capture_port } else { args.proxy_port };
    add("iptables -t nat -N ISTIO_IN_REDIRECT".into());
    add(format!("iptables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-port {inbound_target}"));

    if capture_inbound {
        let table = if tproxy { "mangle" } else { "nat" };
        if tproxy {
            add("iptables -t mangle -N ISTIO_DIVERT".into());
            add(format!(
                "iptables -t mangle -A ISTIO_DIVERT -j MARK --set-mark {}",
                uids.first().map_or("1337", String::as_str)
            ));
            add("iptables -t mangle -A ISTIO_DIVERT -j ACCEPT".into());
            let mark = uids.first().cloned().unwrap_or_else(|| "1337".into());
            add(format!("ip -f inet rule add fwmark {mark} lookup 133"));
            add("ip -f inet route add local default dev lo table 133".into());
            add("iptables -t mangle -N ISTIO_TPROXY".into());
            add(format!(
                "iptables -t mangle -A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark {mark}/0xffffffff --on-port {inbound_target}"
            ));
        }
        add(format!("iptables -t {table} -N ISTIO_INBOUND"));
        add(format!("iptables -t {table} -A PREROUTING -p tcp -j ISTIO_INBOUND"));
        let capture = |port: Option<&str>, out: &mut Vec<String>| {
            let dport = port.map(|p| format!(" --dport {p}")).unwrap_or_default();
            if tproxy {
                out.push(format!("iptables -t mangle -A ISTIO_INBOUND -p tcp{dport} -m socket -j ISTIO_DIVERT"));
                out.push(format!("iptables -t mangle -A ISTIO_INBOUND -p tcp{dport} -j ISTIO_TPROXY"));
            } else {
                out.push(format!("iptables -t nat -A ISTIO_INBOUND -p tcp{dport} -j ISTIO_IN_REDIRECT"));
            }
        };
        if all_inbound {
            // Keep ssh reachable, and skip the excluded ports (the status port among them).
            add(format!("iptables -t {table} -A ISTIO_INBOUND -p tcp --dport 22 -j RETURN"));
            for port in list(&args.inbound_ports_exclude) {
                add(format!("iptables -t {table} -A ISTIO_INBOUND -p tcp --dport {port} -j RETURN"));
            }
            capture(None, &mut out);
        } else {
            for port in &inbound_ports {
                capture(Some(port), &mut out);
            }
        }
    }

    output_rules(&IPV4, args, &uids, &gids, capture_inbound, &mut out);
    if ipv6 {
        ipv6_rules(args, &uids, &gids, inbound_target, &mut out);
    } else {
        // An IPv4 pod takes no IPv6 connections but its own and established ones.
        out.push("ip6tables -F INPUT".into());
        out.push("ip6tables -A INPUT -m state --state ESTABLISHED -j ACCEPT".into());
        out.push("ip6tables -A INPUT -i lo -d ::1 -j ACCEPT".into());
        out.push("ip6tables -A INPUT -j REJECT".into());
    }
    Ok(out.iter().map(|line| command(line)).collect())
}

/// The IPv6 capture of an IPv6 pod: the nat-table rules again with `ip6tables`, IPv6 loopback
/// (`::1`) and passthrough (`::6`) addresses, and the IPv6 ranges of `-i`/`-x`. TPROXY is not
/// applied to IPv6, as in 1.4.
fn ipv6_rules(args: &IptablesArgs, uids: &[String], gids: &[String], inbound_target: u16, out: &mut Vec<String>) {
    let mut add = |line: String| out.push(line);
    add("ip6tables -t nat -N ISTIO_REDIRECT".into());
    add(format!("ip6tables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port {}", args.proxy_port));
    add("ip6tables -t nat -N ISTIO_IN_REDIRECT".into());
    add(format!("ip6tables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-port {inbound_target}"));
    let all_inbound = args.inbound_ports == "*";
    let inbound_ports = if all_inbound { Vec::new() } else { list(&args.inbound_ports) };
    let capture_inbound = all_inbound || !inbound_ports.is_empty();
    if capture_inbound {
        add("ip6tables -t nat -N ISTIO_INBOUND".into());
        add("ip6tables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND".into());
        if all_inbound {
            add("ip6tables -t nat -A ISTIO_INBOUND -p tcp --dport 22 -j RETURN".into());
            for port in list(&args.inbound_ports_exclude) {
                add(format!("ip6tables -t nat -A ISTIO_INBOUND -p tcp --dport {port} -j RETURN"));
            }
            add("ip6tables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".into());
        } else {
            for port in &inbound_ports {
                add(format!("ip6tables -t nat -A ISTIO_INBOUND -p tcp --dport {port} -j ISTIO_IN_REDIRECT"));
            }
        }
    }
    output_rules(&IPV6, args, uids, gids, capture_inbound, out);
}

/// What differs between the IPv4 and IPv6 rules.
struct Family {
    program: &'static str,
    loopback: &'static str,
    /// The address Envoy's inbound passthrough binds (its traffic to the app is not captured).
    passthrough: &'static str,
    ipv6: bool,
}

const IPV4: Family = Family { program: "iptables", loopback: "127.0.0.1/32", passthrough: "127.0.0.6/32", ipv6: false };
const IPV6: Family = Family { program: "ip6tables", loopback: "::1/128", passthrough: "::6/128", ipv6: true };

/// The `ISTIO_OUTPUT` chain: excluded ports, the passthrough and the proxy's own traffic,
/// loopback and excluded ranges go out as they are; the app calling itself through a VIP
/// comes back in through the sidecar; the included ranges (or everything) go to the proxy.
fn output_rules(
    family: &Family,
    args: &IptablesArgs,
    uids: &[String],
    gids: &[String],
    capture_inbound: bool,
    out: &mut Vec<String>,
) {
    let Family { program, loopback, passthrough, ipv6 } = family;
    let mut add = |line: String| out.push(format!("{program} -t nat {line}"));
    add("-N ISTIO_OUTPUT".into());
    add("-A OUTPUT -p tcp -j ISTIO_OUTPUT".into());
    for port in list(&args.outbound_ports_exclude) {
        add(format!("-A ISTIO_OUTPUT -p tcp --dport {port} -j RETURN"));
    }
    add(format!("-A ISTIO_OUTPUT -o lo -s {passthrough} -j RETURN"));
    if capture_inbound {
        add(format!("-A ISTIO_OUTPUT -o lo ! -d {loopback} -j ISTIO_IN_REDIRECT"));
    }
    for uid in uids {
        add(format!("-A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN"));
    }
    for gid in gids {
        add(format!("-A ISTIO_OUTPUT -m owner --gid-owner {gid} -j RETURN"));
    }
    add(format!("-A ISTIO_OUTPUT -d {loopback} -j RETURN"));
    for cidr in cidrs(&args.outbound_ranges_exclude, *ipv6) {
        add(format!("-A ISTIO_OUTPUT -d {cidr} -j RETURN"));
    }
    let interfaces = list(&args.kubevirt_interfaces);
    if args.outbound_ranges == "*" {
        for interface in &interfaces {
            add(format!("-I PREROUTING 1 -i {interface} -j ISTIO_REDIRECT"));
        }
        add("-A ISTIO_OUTPUT -j ISTIO_REDIRECT".into());
    } else {
        for cidr in cidrs(&args.outbound_ranges, *ipv6) {
            for interface in &interfaces {
                add(format!("-I PREROUTING 1 -i {interface} -d {cidr} -j ISTIO_REDIRECT"));
            }
            add(format!("-A ISTIO_OUTPUT -d {cidr} -j ISTIO_REDIRECT"));
        }
        add("-A ISTIO_OUTPUT -j RETURN".into());
    }
}

/// Whether a failure of this command is tolerated: the IPv6 lock-down of an IPv4 pod, which
/// 1.4 also allowed to fail (a kernel without IPv6).
fn may_fail(argv: &[String]) -> bool {
    argv.first().is_some_and(|program| program == "ip6tables") && argv.iter().any(|arg| arg == "INPUT")
}

/// The commands that remove everything `rules` may have installed. Each may fail harmlessly
/// (a chain that was never made), as in 1.4's `istio-clean-iptables`.
pub fn clean_rules() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (table, hook, chain) in [
        ("nat", "PREROUTING", "ISTIO_INBOUND"),
        ("mangle", "PREROUTING", "ISTIO_INBOUND"),
        ("nat", "OUTPUT", "ISTIO_OUTPUT"),
    ] {
        out.push(format!("iptables -t {table} -D {hook} -p tcp -j {chain}"));
    }
    for (table, chain) in [
        ("nat", "ISTIO_OUTPUT"),
        ("nat", "ISTIO_INBOUND"),
        ("nat", "ISTIO_REDIRECT"),
        ("nat", "ISTIO_IN_REDIRECT"),
        ("mangle", "ISTIO_INBOUND"),
        ("mangle", "ISTIO_DIVERT"),
        ("mangle", "ISTIO_TPROXY"),
    ] {
        out.push(format!("iptables -t {table} -F {chain}"));
        out.push(format!("iptables -t {table} -X {chain}"));
    }
    for (table, hook, chain) in [("nat", "PREROUTING", "ISTIO_INBOUND"), ("nat", "OUTPUT", "ISTIO_OUTPUT")] {
        out.push(format!("ip6tables -t {table} -D {hook} -p tcp -j {chain}"));
    }
    for chain in ["ISTIO_OUTPUT", "ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT"] {
        out.push(format!("ip6tables -t nat -F {chain}"));
        out.push(format!("ip6tables -t nat -X {chain}"));
    }
    out.push("ip -f inet rule del fwmark 1337 lookup 133".into());
    out.push("ip -f inet route del local default dev lo table 133".into());
    out.iter().map(|line| command(line)).collect()
}

fn run(commands: &[Vec<String>], tolerate_failures: bool) -> anyhow::Result<()> {
    for argv in commands {
        let (program, rest) = argv.split_first().context("empty command")?;
        let output = Command::new(program)
            .args(rest)
            .output()
            .with_context(|| format!("cannot run {program} (is it installed and are we root?)"))?;
        if !output.status.success() && !tolerate_failures && !may_fail(argv) {
            bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
    }
    Ok(())
}

fn print(commands: &[Vec<String>]) {
    for argv in commands {
        println!("{}", argv.join(" "));
    }
}

/// `proxy iptables`.
pub fn install(args: &IptablesArgs) -> anyhow::Result<()> {
    let commands = rules(args, pod_is_ipv6())?;
    if args.dry_run {
        print(&commands);
        return Ok(());
    }
    run(&commands, false)
}

/// `proxy clean-iptables`.
pub fn clean(args: &CleanArgs) -> anyhow::Result<()> {
    let commands = clean_rules();
    if args.dry_run {
        print(&commands);
        return Ok(());
    }
    run(&commands, true)
}

#[cfg(test)]
mod tests;
