//! Golden tests: the exact command sequence for the flag sets the 1.4 injector and tasks use.
//! `UPDATE_GOLDEN=1 cargo test -p proxy` rewrites the files after a deliberate change.

use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    args: IptablesArgs,
}

fn dry_run(flags: &[&str], ipv6: bool) -> String {
    let parsed = Flags::try_parse_from(std::iter::once("proxy-iptables").chain(flags.iter().copied())).expect("flags");
    rules(&parsed.args, ipv6).expect("rules").iter().map(|argv| argv.join(" ") + "\n").collect()
}

fn golden(name: &str, flags: &[&str]) {
    golden_for(name, flags, false);
}

fn golden_for(name: &str, flags: &[&str], ipv6: bool) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(format!("{name}.golden"));
    let pod = if ipv6 { " (an IPv6 pod)" } else { "" };
    let actual = format!("# proxy iptables {}{pod}\n{}", flags.join(" "), dry_run(flags, ipv6));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from {}", path.display());
}

#[test]
fn injector_defaults_redirect_everything() {
    golden(
        "redirect_all",
        &["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15020"],
    );
}

#[test]
fn tproxy_mode_marks_inbound_in_the_mangle_table() {
    golden(
        "tproxy_all",
        &["-p", "15001", "-z", "15006", "-u", "1337", "-m", "TPROXY", "-i", "*", "-b", "*", "-d", "15020"],
    );
}

#[test]
fn port_lists_and_ranges_are_captured_one_by_one() {
    golden(
        "ports_and_ranges",
        &[
            "-p",
            "15001",
            "-u",
            "1337",
            "-g",
            "1337,1338",
            "-m",
            "REDIRECT",
            "-i",
            "10.96.0.0/12,10.1.0.0/16",
            "-x",
            "10.96.0.1/32",
            "-b",
            "9080,9090",
            "-o",
            "3306,6379",
            "-k",
            "eth1",
        ],
    );
}

#[test]
fn no_inbound_capture_and_no_outbound_ranges() {
    golden("outbound_none", &["-p", "15001", "-u", "1337", "-m", "REDIRECT", "-i", "", "-b", ""]);
}

#[test]
fn an_ipv6_pod_is_captured_by_ip6tables_too() {
    golden_for(
        "redirect_all_ipv6",
        &[
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "*",
            "-x",
            "10.0.0.0/8,fd00:1::/64",
            "-b",
            "*",
            "-d",
            "15020",
        ],
        true,
    );
}

#[test]
fn bad_flags_are_named() {
    let parse = |flags: &[&str]| {
        let parsed = Flags::try_parse_from(std::iter::once("x").chain(flags.iter().copied())).expect("flags");
        rules(&parsed.args, false).map(|_| ()).unwrap_err().to_string()
    };
    assert!(parse(&["-m", "NAT"]).contains("REDIRECT or TPROXY"));
    assert!(parse(&["-d", "15020,abc"]).contains("\"abc\""));
}

#[test]
fn cleaning_removes_every_chain_installed() {
    let cleaned: String = clean_rules().iter().map(|argv| argv.join(" ") + "\n").collect();
    for chain in
        ["ISTIO_OUTPUT", "ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_DIVERT", "ISTIO_TPROXY"]
    {
        assert!(
            cleaned.contains(&format!("iptables -t mangle -X {chain}"))
                || cleaned.contains(&format!("iptables -t nat -X {chain}")),
            "{chain} not removed:\n{cleaned}"
        );
    }
    for chain in ["ISTIO_OUTPUT", "ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT"] {
        assert!(cleaned.contains(&format!("ip6tables -t nat -X {chain}")), "IPv6 {chain} not removed:\n{cleaned}");
    }
}

#[test]
fn only_the_ipv6_lock_down_may_fail() {
    assert!(may_fail(&command("ip6tables -A INPUT -j REJECT")));
    assert!(!may_fail(&command("ip6tables -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT")));
    assert!(!may_fail(&command("iptables -A INPUT -j REJECT")));
}
