//! 1.4.6's own iptables goldens (`tests/scripts/testdata`, kept in `testdata/istio-1.4.6`) for
//! the flag sets of its `istio-iptables-test.sh`, plus this implementation's edges.

use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    args: IptablesArgs,
}

fn settings(flags: &str) -> Settings {
    settings_of(&flags.split_whitespace().collect::<Vec<_>>())
}

fn settings_of(flags: &[&str]) -> Settings {
    let argv = ["istio-iptables", "--dry-run"].into_iter().chain(flags.iter().copied());
    Settings::resolve(&Flags::try_parse_from(argv).expect("flags").args)
}

/// The dry run's whole output: the configuration, then one line per command.
fn dry_run(settings: &Settings) -> String {
    let lines: Vec<String> = rules(settings).expect("rules").iter().map(Step::line).collect();
    format!("{}{}", settings.log(), lines.join("\n"))
}

fn golden(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/istio-1.4.6/{name}.golden"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim_end().to_string()
}

fn assert_golden(name: &str, actual: &str, expected: &str) {
    let actual = actual.trim_end();
    if actual != expected {
        let first = actual.lines().zip(expected.lines()).position(|(a, e)| a != e);
        panic!("{name} differs from 1.4.6 (first at line {first:?}):\n--- actual\n{actual}\n--- expected\n{expected}");
    }
}

const COMMON: &str = "-p 12345 -u 4321 -g 4444";

#[test]
fn redirect_mode() {
    let flags = format!("{COMMON} -m REDIRECT -b 5555,6666 -d 7777,8888 -i 1.1.0.0/16 -x 9.9.0.0/16 -k eth1,eth2");
    assert_golden("mode_redirect", &dry_run(&settings(&flags)), &golden("mode_redirect"));
}

#[test]
fn tproxy_mode() {
    let flags = format!("{COMMON} -m TPROXY -b 5555,6666 -d 7777,8888 -i 1.1.0.0/16 -x 9.9.0.0/16 -k eth1,eth2");
    assert_golden("mode_tproxy", &dry_run(&settings(&flags)), &golden("mode_tproxy"));
}

#[test]
fn tproxy_mode_on_an_ipv6_pod() {
    let flags = format!("{COMMON} -m TPROXY -b * -d 7777,8888 -i 2001:db8::/32 -x 2019:db8::/32 -k eth1,eth2");
    let mut ipv6_pod = settings(&flags);
    ipv6_pod.ipv6_address = Some("2001:db8:1::1".to_string());
    // The one deliberate difference: the rest of an IPv6 pod's inbound traffic is captured.
    let expected = golden("mode_tproxy_and_ipv6").replace(
        "ip6tables -t nat -A ISTIO_INBOUND -p tcp --dport 8888 -j RETURN\n",
        "ip6tables -t nat -A ISTIO_INBOUND -p tcp --dport 8888 -j RETURN\n\
         ip6tables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n",
    );
    assert_golden("mode_tproxy_and_ipv6", &dry_run(&ipv6_pod), &expected);
}

#[test]
fn tproxy_mode_with_every_inbound_port() {
    let flags = format!("{COMMON} -m TPROXY -b * -d 7777,8888 -i 1.1.0.0/16 -x 9.9.0.0/16 -k eth1,eth2");
    assert_golden(
        "mode_tproxy_and_wildcard_port",
        &dry_run(&settings(&flags)),
        &golden("mode_tproxy_and_wildcard_port"),
    );
}

#[test]
fn no_parameters() {
    assert_golden("empty_parameter", &dry_run(&settings("")), &golden("empty_parameter"));
}

#[test]
fn outbound_ports_excluded() {
    let flags =
        format!("{COMMON} -o 1024,21 -m REDIRECT -b 5555,6666 -d 7777,8888 -i 1.1.0.0/16 -x 9.9.0.0/16 -k eth1,eth2");
    assert_golden("outbound_port_exclude", &dry_run(&settings(&flags)), &golden("outbound_port_exclude"));
}

#[test]
fn every_outbound_range() {
    let flags = format!("{COMMON} -m REDIRECT -b 5555,6666 -d 7777,8888 -i * -x 9.9.0.0/16 -k eth1,eth2");
    assert_golden("wildcard_include_ip_range", &dry_run(&settings(&flags)), &golden("wildcard_include_ip_range"));
}

#[test]
fn cleaning() {
    let lines: Vec<String> = clean_rules().iter().map(Step::line).collect();
    assert_golden("clean", &lines.join("\n"), &golden("clean"));
}

#[test]
fn the_injectors_flags_capture_everything_but_the_proxy() {
    // The injector's template, with its empty `-x`.
    let flags =
        ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15020"];
    let lines: Vec<String> = rules(&settings_of(&flags)).unwrap().iter().map(Step::line).collect();
    for expected in [
        "iptables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-port 15006",
        "iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN",
        "iptables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "iptables -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "iptables -t nat -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ] {
        assert!(lines.contains(&expected.to_string()), "{expected} missing:\n{}", lines.join("\n"));
    }
    assert!(!lines.iter().any(|line| line.contains("--uid-owner 0")), "root is only added without -u");
}

#[test]
fn bad_flags_are_named() {
    let error = |flags: &str| rules(&settings(flags)).map(|_| ()).unwrap_err().to_string();
    assert!(error("-m NAT").contains("REDIRECT or TPROXY"));
    assert!(error("-d 15020,abc").contains("\"abc\""));
    assert!(error("-x *").contains("OUTBOUND_IP_RANGES_EXCLUDE"));
}

#[test]
fn only_lock_down_saves_and_socket_matches_may_fail() {
    let steps = rules(&settings("-m TPROXY -b 80")).unwrap();
    for step in &steps {
        let line = step.line();
        let expected =
            if line.starts_with("ip6tables -F") || line.starts_with("ip6tables -A INPUT") || line.contains("-save") {
                OnFailure::Ignore
            } else if line.contains("-m socket") {
                OnFailure::NoSocketMatch
            } else if line.contains("route add local") {
                OnFailure::ShowRoutes
            } else {
                OnFailure::Fail
            };
        assert_eq!(step.on_failure, expected, "{line}");
    }
}
