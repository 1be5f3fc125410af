//! `proxy iptables` and `proxy clean-iptables`: Istio 1.4's `istio-iptables` (the istio-init
//! container) and `istio-clean-iptables`, with their flags, environment variables and exact
//! rules — 1.4.6's `tests/scripts/testdata` goldens are this module's tests. Outbound TCP is
//! redirected to the sidecar's port (`-p`, 15001), inbound TCP to it too or, when every inbound
//! port is captured (`-b '*'`), to `virtualInbound` (`-z`, 15006); the proxy's own traffic
//! (`-u`/`-g`), loopback and the excluded ports and ranges are left alone. REDIRECT mode uses the
//! nat table; TPROXY mode marks inbound packets (`-t`, 1337) in the mangle table and routes
//! them locally (`-r`, table 133). A pod whose address is IPv6 gets the capture from
//! `ip6tables` too; any other pod has IPv6 input locked down to established connections and
//! loopback. The configuration is printed first and `iptables-save`/`ip6tables-save` last, as
//! 1.4 did. `--dry-run` (`-n`) prints the commands instead of running them, taking the pod's
//! address from `STUB_IP` and the proxy's user id as 0, as 1.4's dry run did.
//!
//! One deliberate difference: an IPv6 pod with `-b '*'` also gets the rule that sends the rest
//! of its inbound traffic to the sidecar (`ip6tables -t nat -A ISTIO_INBOUND -p tcp -j
//! ISTIO_IN_REDIRECT`), which 1.4.6 left out, so its inbound IPv6 traffic was never captured.

use std::net::IpAddr;
use std::process::Command;

use anyhow::{bail, Context};

/// The flags of 1.4's `istio-iptables`; each falls back to 1.4's environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct IptablesArgs {
    /// Port all outbound TCP is redirected to.
    #[arg(short = 'p', long = "envoy-port", env = "ENVOY_PORT", default_value = "15001")]
    pub proxy_port: String,
    /// Port all inbound TCP is redirected to (when `-b` is `*`).
    #[arg(short = 'z', long = "inbound-capture-port", env = "INBOUND_CAPTURE_PORT", default_value = "15006")]
    pub inbound_capture_port: String,
    /// User ids whose traffic is not captured (the proxy's own), comma-separated. Default: the
    /// `ENVOY_USER` account's id (else 1337) and root.
    #[arg(short = 'u', long = "proxy-uid", env = "PROXY_UID", default_value = "")]
    pub proxy_uid: String,
    /// Group ids whose traffic is not captured; defaults to the `-u` ids.
    #[arg(short = 'g', long = "proxy-gid", env = "PROXY_GID", default_value = "")]
    pub proxy_gid: String,
    /// Inbound capture mode: REDIRECT (the default) or TPROXY.
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        env = "ISTIO_INBOUND_INTERCEPTION_MODE",
        default_value = ""
    )]
    pub mode: String,
    /// The mark TPROXY mode sets on inbound packets.
    #[arg(short = 't', long = "istio-inbound-tproxy-mark", env = "ISTIO_INBOUND_TPROXY_MARK", default_value = "1337")]
    pub tproxy_mark: String,
    /// The routing table TPROXY mode routes marked packets with.
    #[arg(
        short = 'r',
        long = "istio-inbound-tproxy-route-table",
        env = "ISTIO_INBOUND_TPROXY_ROUTE_TABLE",
        default_value = "133"
    )]
    pub tproxy_route_table: String,
    /// Inbound ports to capture, comma-separated; `*` for all; empty for none.
    #[arg(short = 'b', long = "istio-inbound-ports", env = "ISTIO_INBOUND_PORTS", default_value = "")]
    pub inbound_ports: String,
    /// Inbound ports not to capture (with `-b '*'`), comma-separated.
    #[arg(short = 'd', long = "istio-local-exclude-ports", env = "ISTIO_LOCAL_EXCLUDE_PORTS", default_value = "")]
    pub inbound_ports_exclude: String,
    /// Outbound IP ranges to capture, comma-separated CIDRs; `*` for all.
    #[arg(short = 'i', long = "istio-service-cidr", env = "ISTIO_SERVICE_CIDR", default_value = "")]
    pub outbound_ranges: String,
    /// Outbound IP ranges not to capture, comma-separated CIDRs.
    #[arg(short = 'x', long = "istio-service-exclude-cidr", env = "ISTIO_SERVICE_EXCLUDE_CIDR", default_value = "")]
    pub outbound_ranges_exclude: String,
    /// Outbound ports not to capture, comma-separated.
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        env = "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE",
        default_value = ""
    )]
    pub outbound_ports_exclude: String,
    /// Virtual-machine (kubevirt) interfaces whose traffic is captured as outbound.
    #[arg(short = 'k', long = "kube-virt-interfaces", env = "KUBE_VIRT_INTERFACES", default_value = "")]
    pub kubevirt_interfaces: String,
    /// Print the commands instead of running them.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CleanArgs {
    /// Print the commands instead of running them.
    #[arg(long = "dry-run", alias = "dryRun")]
    pub dry_run: bool,
}

/// The environment variables 1.4 printed before its rules.
const LOGGED_ENVIRONMENT: [&str; 9] = [
    "ENVOY_PORT",
    "INBOUND_CAPTURE_PORT",
    "ISTIO_INBOUND_INTERCEPTION_MODE",
    "ISTIO_INBOUND_TPROXY_MARK",
    "ISTIO_INBOUND_TPROXY_ROUTE_TABLE",
    "ISTIO_INBOUND_PORTS",
    "ISTIO_LOCAL_EXCLUDE_PORTS",
    "ISTIO_SERVICE_CIDR",
    "ISTIO_SERVICE_EXCLUDE_CIDR",
];

/// What to do when a command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop with an error (1.4's `RunOrFail`).
    Fail,
    /// Go on silently (1.4's `RunQuietlyAndIgnore`).
    Ignore,
    /// Go on, saying the kernel lacks socket matching.
    NoSocketMatch,
    /// Go on, printing the routing tables.
    ShowRoutes,
}

/// One command of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    pub on_failure: OnFailure,
}

impl Step {
    /// The line 1.4 printed for it: the program, a space, and its arguments.
    pub fn line(&self) -> String {
        let (program, rest) = self.argv.split_first().map_or(("", &[][..]), |(p, r)| (p.as_str(), r));
        format!("{program} {}", rest.join(" "))
    }
}

/// The configuration after defaults, as 1.4 printed it under `Variables:`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_port: String,
    pub inbound_capture_port: String,
    pub proxy_uid: String,
    pub proxy_gid: String,
    pub mode: String,
    pub tproxy_mark: String,
    pub tproxy_route_table: String,
    pub inbound_ports: String,
    pub inbound_ports_exclude: String,
    pub outbound_ranges: String,
    pub outbound_ranges_exclude: String,
    pub outbound_ports_exclude: String,
    pub kubevirt_interfaces: String,
    /// The pod's address when it is IPv6.
    pub ipv6_address: Option<String>,
}

fn split(text: &str) -> Vec<&str> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').collect()
    }
}

/// CIDRs split by family. `*` is a wildcard for both; entries that do not parse are skipped
/// with a warning, as 1.4 did.
#[derive(Debug, Default)]
struct Ranges {
    wildcard: bool,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

fn ranges(text: &str) -> Ranges {
    if text == "*" {
        return Ranges { wildcard: true, ..Ranges::default() };
    }
    let mut ranges = Ranges::default();
    for item in split(text) {
        match item.parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(net)) => ranges.ipv4.push(net.trunc().to_string()),
            Ok(ipnet::IpNet::V6(net)) => ranges.ipv6.push(net.trunc().to_string()),
            Err(error) => eprintln!(
                "Ignoring error for bug compatibility with istio-iptables.sh: invalid CIDR address: {item} ({error})"
            ),
        }
    }
    ranges
}

/// The proxy's user id when `-u` is not given: the `ENVOY_USER` account (default
/// `istio-proxy`), else 1337.
fn proxy_user_id() -> String {
    let name = std::env::var("ENVOY_USER").unwrap_or_else(|_| "istio-proxy".to_string());
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => user.uid.to_string(),
        _ => "1337".to_string(),
    }
}

/// The pod's IPv6 address, if the pod is IPv6: `ENABLE_INBOUND_IPV6` when set, else a global
/// IPv6 address when the namespace has no IPv4 one besides loopback.
fn pod_ipv6_address() -> Option<String> {
    if let Ok(value) = std::env::var("ENABLE_INBOUND_IPV6") {
        return (!value.is_empty() && value != "false").then_some(value);
    }
    let addresses = nix::ifaddrs::getifaddrs().ok()?;
    let mut ipv4 = false;
    let mut ipv6 = None;
    for interface in addresses {
        let Some(address) = interface.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            ipv4 |= !v4.ip().is_loopback();
        } else if let Some(v6) = address.as_sockaddr_in6() {
            let ip = v6.ip();
            // Global (or unique local) addresses; not loopback or link-local.
            if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                ipv6.get_or_insert(ip.to_string());
            }
        }
    }
    ipv6.filter(|_| !ipv4)
}

impl Settings {
    /// Fills in 1.4's defaults. A dry run takes the pod's address from `STUB_IP` (default
    /// 127.0.0.1) and the proxy's user id as 0, as 1.4's dry run did.
    pub fn resolve(args: &IptablesArgs) -> Settings {
        let mut proxy_uid = args.proxy_uid.clone();
        if proxy_uid.is_empty() {
            let user = if args.dry_run { "0".to_string() } else { proxy_user_id() };
            // Root too, for the node agent, as 1.4.
            proxy_uid = format!("{user},0");
        }
        let proxy_gid = if args.proxy_gid.is_empty() { proxy_uid.clone() } else { args.proxy_gid.clone() };
        let ipv6_address = if args.dry_run {
            let stub = std::env::var("STUB_IP").unwrap_or_else(|_| "127.0.0.1".to_string());
            stub.parse::<IpAddr>().ok().filter(IpAddr::is_ipv6).map(|ip| ip.to_string())
        } else {
            pod_ipv6_address()
        };
        Settings {
            proxy_port: args.proxy_port.clone(),
            inbound_capture_port: args.inbound_capture_port.clone(),
            proxy_uid,
            proxy_gid,
            mode: args.mode.clone(),
            tproxy_mark: args.tproxy_mark.clone(),
            tproxy_route_table: args.tproxy_route_table.clone(),
            inbound_ports: args.inbound_ports.clone(),
            inbound_ports_exclude: args.inbound_ports_exclude.clone(),
            outbound_ranges: args.outbound_ranges.clone(),
            outbound_ranges_exclude: args.outbound_ranges_exclude.clone(),
            outbound_ports_exclude: args.outbound_ports_exclude.clone(),
            kubevirt_interfaces: args.kubevirt_interfaces.clone(),
            ipv6_address,
        }
    }

    /// Refuses what 1.4 refused (a wildcard exclusion) and what cannot work (an unknown mode,
    /// ports that are not numbers).
    fn check(&self) -> anyhow::Result<()> {
        if !matches!(self.mode.as_str(), "" | "REDIRECT" | "TPROXY") {
            bail!("-m {:?}: the inbound capture mode must be REDIRECT or TPROXY", self.mode);
        }
        if self.outbound_ranges_exclude == "*" {
            bail!("-x: invalid value for OUTBOUND_IP_RANGES_EXCLUDE: \"*\"");
        }
        let port_lists = [
            ("-p", self.proxy_port.as_str()),
            ("-z", self.inbound_capture_port.as_str()),
            ("-d", self.inbound_ports_exclude.as_str()),
            ("-o", self.outbound_ports_exclude.as_str()),
        ];
        let inbound = (self.inbound_ports != "*").then_some(("-b", self.inbound_ports.as_str()));
        for (flag, values) in port_lists.into_iter().chain(inbound) {
            for port in split(values) {
                if port.parse::<u16>().is_err() {
                    bail!("{flag}: {port:?} is not a port number");
                }
            }
        }
        Ok(())
    }

    /// What 1.4 printed before its rules: the environment and the resolved variables.
    pub fn log(&self) -> String {
        let mut text = String::from("Environment:\n------------\n");
        for name in LOGGED_ENVIRONMENT {
            text += &format!("{name}={}\n", std::env::var(name).unwrap_or_default());
        }
        text += "\nVariables:\n----------\n";
        let variables = [
            ("PROXY_PORT", &self.proxy_port),
            ("PROXY_INBOUND_CAPTURE_PORT", &self.inbound_capture_port),
            ("PROXY_UID", &self.proxy_uid),
            ("INBOUND_INTERCEPTION_MODE", &self.mode),
            ("INBOUND_TPROXY_MARK", &self.tproxy_mark),
            ("INBOUND_TPROXY_ROUTE_TABLE", &self.tproxy_route_table),
            ("INBOUND_PORTS_INCLUDE", &self.inbound_ports),
            ("INBOUND_PORTS_EXCLUDE", &self.inbound_ports_exclude),
            ("OUTBOUND_IP_RANGES_INCLUDE", &self.outbound_ranges),
            ("OUTBOUND_IP_RANGES_EXCLUDE", &self.outbound_ranges_exclude),
            ("OUTBOUND_PORTS_EXCLUDE", &self.outbound_ports_exclude),
            ("KUBEVIRT_INTERFACES", &self.kubevirt_interfaces),
        ];
        for (name, value) in variables {
            text += &format!("{name}={value}\n");
        }
        text += &format!("ENABLE_INBOUND_IPV6={}\n\n", self.ipv6_address.as_deref().unwrap_or_default());
        text
    }
}

/// Builds the command list.
struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    fn add(&mut self, on_failure: OnFailure, program: &str, args: &[&str]) {
        let argv = std::iter::once(program).chain(args.iter().copied()).map(str::to_string).collect();
        self.steps.push(Step { argv, on_failure });
    }

    fn must(&mut self, program: &str, args: &[&str]) {
        self.add(OnFailure::Fail, program, args);
    }
}

/// The commands that install the rules, in 1.4's order.
pub fn rules(settings: &Settings) -> anyhow::Result<Vec<Step>> {
    settings.check()?;
    let mut plan = Plan { steps: Vec::new() };
    let s = settings;
    let tproxy = s.mode == "TPROXY";
    let all_inbound = s.inbound_ports == "*";
    let excludes = ranges(&s.outbound_ranges_exclude);
    let includes = ranges(&s.outbound_ranges);
    let interfaces = split(&s.kubevirt_interfaces);
    let inbound_target = if all_inbound { &s.inbound_capture_port } else { &s.proxy_port };

    if s.ipv6_address.is_some() {
        plan.must("ip", &["-6", "addr", "add", "::6/128", "dev", "lo"]);
    }
    plan.must("iptables", &["-t", "nat", "-N", "ISTIO_REDIRECT"]);
    plan.must(
        "iptables",
        &["-t", "nat", "-A", "ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-port", &s.proxy_port],
    );
    plan.must("iptables", &["-t", "nat", "-N", "ISTIO_IN_REDIRECT"]);
    plan.must(
        "iptables",
        &["-t", "nat", "-A", "ISTIO_IN_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-port", inbound_target],
    );

    if !s.inbound_ports.is_empty() {
        let table = if tproxy { "mangle" } else { "nat" };
        if tproxy {
            let mark = s.tproxy_mark.as_str();
            plan.must("iptables", &["-t", "mangle", "-N", "ISTIO_DIVERT"]);
            plan.must("iptables", &["-t", "mangle", "-A", "ISTIO_DIVERT", "-j", "MARK", "--set-mark", mark]);
            plan.must("iptables", &["-t", "mangle", "-A", "ISTIO_DIVERT", "-j", "ACCEPT"]);
            plan.must("ip", &["-f", "inet", "rule", "add", "fwmark", mark, "lookup", &s.tproxy_route_table]);
            plan.add(
                OnFailure::ShowRoutes,
                "ip",
                &["-f", "inet", "route", "add", "local", "default", "dev", "lo", "table", &s.tproxy_route_table],
            );
            plan.must("iptables", &["-t", "mangle", "-N", "ISTIO_TPROXY"]);
            let tproxy_mark = format!("{mark}/0xffffffff");
            plan.must(
                "iptables",
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "ISTIO_TPROXY",
                    "!",
                    "-d",
                    "127.0.0.1/32",
                    "-p",
                    "tcp",
                    "-j",
                    "TPROXY",
                    "--tproxy-mark",
                    &tproxy_mark,
                    "--on-port",
                    &s.proxy_port,
                ],
            );
        }
        plan.must("iptables", &["-t", table, "-N", "ISTIO_INBOUND"]);
        plan.must("iptables", &["-t", table, "-A", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"]);
        if all_inbound {
            // ssh stays reachable, and the excluded ports (the status port among them) too.
            plan.must("iptables", &["-t", table, "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", "22", "-j", "RETURN"]);
            for port in split(&s.inbound_ports_exclude) {
                plan.must(
                    "iptables",
                    &["-t", table, "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "RETURN"],
                );
            }
            if tproxy {
                let socket = ["-t", "mangle", "-A", "ISTIO_INBOUND", "-p", "tcp", "-m", "socket", "-j", "ISTIO_DIVERT"];
                plan.add(OnFailure::NoSocketMatch, "iptables", &socket);
                plan.must("iptables", &["-t", "mangle", "-A", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_TPROXY"]);
            } else {
                plan.must("iptables", &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_IN_REDIRECT"]);
            }
        } else {
            for port in split(&s.inbound_ports) {
                if tproxy {
                    let socket = [
                        "-t",
                        "mangle",
                        "-A",
                        "ISTIO_INBOUND",
                        "-p",
                        "tcp",
                        "--dport",
                        port,
                        "-m",
                        "socket",
                        "-j",
                        "ISTIO_DIVERT",
                    ];
                    // 1.4 added this rule twice; the copy is harmless and kept.
                    plan.add(OnFailure::NoSocketMatch, "iptables", &socket);
                    plan.add(OnFailure::NoSocketMatch, "iptables", &socket);
                    plan.must(
                        "iptables",
                        &["-t", "mangle", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_TPROXY"],
                    );
                } else {
                    plan.must(
                        "iptables",
                        &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_IN_REDIRECT"],
                    );
                }
            }
        }
    }

    let loopback_redirect = std::env::var_os("DISABLE_REDIRECTION_ON_LOCAL_LOOPBACK").is_none_or(|v| v.is_empty());
    output_chain(&mut plan, &IPV4, s, &excludes.ipv4, loopback_redirect);
    for interface in &interfaces {
        plan.must("iptables", &["-t", "nat", "-I", "PREROUTING", "1", "-i", interface, "-j", "RETURN"]);
    }
    if includes.wildcard {
        plan.must("iptables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT"]);
        for interface in &interfaces {
            plan.must("iptables", &["-t", "nat", "-I", "PREROUTING", "1", "-i", interface, "-j", "ISTIO_REDIRECT"]);
        }
    } else if !includes.ipv4.is_empty() {
        for cidr in &includes.ipv4 {
            for interface in &interfaces {
                plan.must(
                    "iptables",
                    &["-t", "nat", "-I", "PREROUTING", "1", "-i", interface, "-d", cidr, "-j", "ISTIO_REDIRECT"],
                );
            }
            plan.must("iptables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "ISTIO_REDIRECT"]);
        }
        plan.must("iptables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-j", "RETURN"]);
    }

    if s.ipv6_address.is_some() {
        ipv6_rules(&mut plan, s, &excludes, &includes, &interfaces);
    } else {
        // An IPv4 pod takes no IPv6 connections but its own and established ones.
        plan.add(OnFailure::Ignore, "ip6tables", &["-F", "INPUT"]);
        plan.add(
            OnFailure::Ignore,
            "ip6tables",
            &["-A", "INPUT", "-m", "state", "--state", "ESTABLISHED", "-j", "ACCEPT"],
        );
        plan.add(OnFailure::Ignore, "ip6tables", &["-A", "INPUT", "-i", "lo", "-d", "::1", "-j", "ACCEPT"]);
        plan.add(OnFailure::Ignore, "ip6tables", &["-A", "INPUT", "-j", "REJECT"]);
    }
    plan.add(OnFailure::Ignore, "iptables-save", &[]);
    plan.add(OnFailure::Ignore, "ip6tables-save", &[]);
    Ok(plan.steps)
}

/// The IPv6 capture of an IPv6 pod: the nat-table rules again with `ip6tables`, with IPv6
/// loopback (`::1`) and passthrough (`::6`) addresses and the IPv6 ranges. TPROXY is not
/// applied to IPv6, as in 1.4.
fn ipv6_rules(plan: &mut Plan, s: &Settings, excludes: &Ranges, includes: &Ranges, interfaces: &[&str]) {
    let all_inbound = s.inbound_ports == "*";
    let inbound_target = if all_inbound { &s.inbound_capture_port } else { &s.proxy_port };
    plan.must("ip6tables", &["-t", "nat", "-N", "ISTIO_REDIRECT"]);
    plan.must(
        "ip6tables",
        &["-t", "nat", "-A", "ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-port", &s.proxy_port],
    );
    plan.must("ip6tables", &["-t", "nat", "-N", "ISTIO_IN_REDIRECT"]);
    plan.must(
        "ip6tables",
        &["-t", "nat", "-A", "ISTIO_IN_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-port", inbound_target],
    );
    if !s.inbound_ports.is_empty() {
        plan.must("ip6tables", &["-t", "nat", "-N", "ISTIO_INBOUND"]);
        plan.must("ip6tables", &["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"]);
        if all_inbound {
            plan.must("ip6tables", &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", "22", "-j", "RETURN"]);
            for port in split(&s.inbound_ports_exclude) {
                plan.must(
                    "ip6tables",
                    &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "RETURN"],
                );
            }
            plan.must("ip6tables", &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_IN_REDIRECT"]);
        } else {
            for port in split(&s.inbound_ports) {
                plan.must(
                    "ip6tables",
                    &["-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_IN_REDIRECT"],
                );
            }
        }
    }
    output_chain(plan, &IPV6, s, &excludes.ipv6, true);
    if includes.wildcard {
        plan.must("ip6tables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT"]);
        for interface in interfaces {
            plan.must("ip6tables", &["-t", "nat", "-I", "PREROUTING", "1", "-i", interface, "-j", "RETURN"]);
        }
    } else if !includes.ipv6.is_empty() {
        for cidr in &includes.ipv6 {
            for interface in interfaces {
                plan.must(
                    "ip6tables",
                    &["-t", "nat", "-I", "PREROUTING", "1", "-i", interface, "-d", cidr, "-j", "ISTIO_REDIRECT"],
                );
            }
            plan.must("ip6tables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "ISTIO_REDIRECT"]);
        }
        plan.must("ip6tables", &["-t", "nat", "-A", "ISTIO_OUTPUT", "-j", "RETURN"]);
    }
}

/// What differs between the IPv4 and IPv6 rules.
struct Family {
    program: &'static str,
    loopback: &'static str,
    /// The address Envoy's inbound passthrough binds (its traffic to the app is not captured).
    passthrough: &'static str,
}

const IPV4: Family = Family { program: "iptables", loopback: "127.0.0.1/32", passthrough: "127.0.0.6/32" };
const IPV6: Family = Family { program: "ip6tables", loopback: "::1/128", passthrough: "::6/128" };

/// The start of the `ISTIO_OUTPUT` chain: excluded ports, the passthrough, the app calling
/// itself through a VIP (back in through the sidecar, unless `DISABLE_REDIRECTION_ON_LOCAL_LOOPBACK`
/// is set for IPv4), the proxy's own traffic, loopback and the excluded ranges.
fn output_chain(plan: &mut Plan, family: &Family, s: &Settings, excluded_ranges: &[String], loopback_redirect: bool) {
    let program = family.program;
    plan.must(program, &["-t", "nat", "-N", "ISTIO_OUTPUT"]);
    plan.must(program, &["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"]);
    for port in split(&s.outbound_ports_exclude) {
        plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-p", "tcp", "--dport", port, "-j", "RETURN"]);
    }
    plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-o", "lo", "-s", family.passthrough, "-j", "RETURN"]);
    if loopback_redirect {
        let redirect =
            ["-t", "nat", "-A", "ISTIO_OUTPUT", "-o", "lo", "!", "-d", family.loopback, "-j", "ISTIO_IN_REDIRECT"];
        plan.must(program, &redirect);
    }
    for uid in split(&s.proxy_uid) {
        plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-m", "owner", "--uid-owner", uid, "-j", "RETURN"]);
    }
    for gid in split(&s.proxy_gid) {
        plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-m", "owner", "--gid-owner", gid, "-j", "RETURN"]);
    }
    plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-d", family.loopback, "-j", "RETURN"]);
    for cidr in excluded_ranges {
        plan.must(program, &["-t", "nat", "-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "RETURN"]);
    }
}

/// The commands that remove everything `rules` may have installed, for `iptables` then
/// `ip6tables`, as 1.4's `istio-clean-iptables`. Each may fail harmlessly (a chain that was
/// never made).
pub fn clean_rules() -> Vec<Step> {
    let mut plan = Plan { steps: Vec::new() };
    for program in ["iptables", "ip6tables"] {
        for (table, hook, chain) in [
            ("nat", "PREROUTING", "ISTIO_INBOUND"),
            ("mangle", "PREROUTING", "ISTIO_INBOUND"),
            ("nat", "OUTPUT", "ISTIO_OUTPUT"),
        ] {
            plan.add(OnFailure::Ignore, program, &["-t", table, "-D", hook, "-p", "tcp", "-j", chain]);
        }
        // ISTIO_REDIRECT and ISTIO_IN_REDIRECT last: the others refer to them.
        for (table, chain) in [
            ("nat", "ISTIO_OUTPUT"),
            ("nat", "ISTIO_INBOUND"),
            ("mangle", "ISTIO_INBOUND"),
            ("mangle", "ISTIO_DIVERT"),
            ("mangle", "ISTIO_TPROXY"),
            ("nat", "ISTIO_REDIRECT"),
            ("nat", "ISTIO_IN_REDIRECT"),
        ] {
            plan.add(OnFailure::Ignore, program, &["-t", table, "-F", chain]);
            plan.add(OnFailure::Ignore, program, &["-t", table, "-X", chain]);
        }
    }
    plan.add(OnFailure::Ignore, "iptables-save", &[]);
    plan.add(OnFailure::Ignore, "ip6tables-save", &[]);
    plan.steps
}

fn run(steps: &[Step]) -> anyhow::Result<()> {
    for step in steps {
        let (program, rest) = step.argv.split_first().context("empty command")?;
        let output = Command::new(program)
            .args(rest)
            .output()
            .with_context(|| format!("cannot run {program} (is it installed and are we root?)"));
        let succeeded = match &output {
            Ok(output) => {
                if program.ends_with("-save") {
                    print!("{}", String::from_utf8_lossy(&output.stdout));
                }
                output.status.success()
            }
            Err(_) => false,
        };
        if succeeded {
            continue;
        }
        match step.on_failure {
            OnFailure::Ignore => {}
            OnFailure::NoSocketMatch => println!("No socket match support"),
            OnFailure::ShowRoutes => {
                let routes = Command::new("ip").args(["route", "show", "table", "all"]).output();
                if let Ok(routes) = routes {
                    print!("{}", String::from_utf8_lossy(&routes.stdout));
                }
            }
            OnFailure::Fail => {
                let reason = match output {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    Err(error) => format!("{error:#}"),
                };
                bail!("`{}` failed: {reason}", step.argv.join(" "));
            }
        }
    }
    Ok(())
}

fn print(steps: &[Step]) {
    for step in steps {
        println!("{}", step.line());
    }
}

/// `proxy iptables`.
pub fn install(args: &IptablesArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args);
    let steps = rules(&settings)?;
    print!("{}", settings.log());
    if args.dry_run {
        print(&steps);
        return Ok(());
    }
    run(&steps)
}

/// `proxy clean-iptables`.
pub fn clean(args: &CleanArgs) -> anyhow::Result<()> {
    let steps = clean_rules();
    if args.dry_run {
        print(&steps);
        return Ok(());
    }
    run(&steps)
}

#[cfg(test)]
mod tests;
