//! `proxy iptables` really captures traffic: in a network namespace of its own, the rules are
//! installed, a connection to an address outside the namespace lands on the outbound capture
//! port (15001), the proxy's own user (1337) is not captured, and `proxy clean-iptables` removes
//! every chain. An IPv4 pod has IPv6 input locked down; an IPv6-only pod is captured by
//! `ip6tables` the same way. Needs root, iptables and iproute2; elsewhere it says so and does
//! nothing. The dry runs of both commands print exactly 1.4.6's goldens for the flags and
//! environment of 1.4.6's `istio-iptables-test.sh`.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::{binary, Process};

/// The namespace, deleted when the test ends, however it ends.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

impl Namespace {
    fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {argv:?}: {e}"))
    }

    fn ok(&self, argv: &[&str]) -> String {
        let output = self.exec(argv);
        assert!(output.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).to_string()
    }
}

impl Namespace {
    /// A new namespace with loopback up and a veth pair `v0`/`v1` (both ends inside).
    fn create(prefix: &str) -> Namespace {
        let namespace = Namespace(format!("{prefix}-{}", std::process::id()));
        let created = Command::new("ip").args(["netns", "add", &namespace.0]).output().expect("ip netns add");
        assert!(created.status.success(), "ip netns add: {}", String::from_utf8_lossy(&created.stderr));
        namespace.ok(&["ip", "link", "set", "lo", "up"]);
        namespace.ok(&["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        namespace.ok(&["ip", "link", "set", "v0", "up"]);
        namespace.ok(&["ip", "link", "set", "v1", "up"]);
        namespace
    }

    /// A listener on the capture port inside the namespace, as the sidecar would have.
    fn capture_listener(&self, family: &str, any: &str) -> Process {
        let script = format!(
            "import socket\ns=socket.socket(socket.{family})\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{any}',15001))\ns.listen()\nprint('listening',flush=True)\nwhile True:\n    c,_=s.accept()\n    c.sendall(b'captured by 15001')\n    c.close()\n"
        );
        let listener =
            Process::start_program(std::path::Path::new("ip"), &["netns", "exec", &self.0, "python3", "-c", &script]);
        listener
            .next_line(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("listener did not start: {}", listener.stderr()));
        listener
    }
}

const CLIENT: &str = "import socket,sys\ntry:\n    s=socket.create_connection(('10.255.0.1',80),timeout=2)\n    print(s.recv(100).decode())\nexcept Exception as e:\n    print('failed', e)\n";

#[test]
fn proxy_iptables_captures_outbound_traffic_in_a_network_namespace() {
    if let Some(reason) = e2e::pod_prerequisites_missing() {
        eprintln!("SKIPPED proxy_iptables_captures_outbound_traffic_in_a_network_namespace: {reason}");
        return;
    }
    let namespace = Namespace::create("istio-rs-ipt");
    // The veth gives the namespace a route to 10.255.0.0/24, where nobody answers.
    namespace.ok(&["ip", "addr", "add", "10.255.0.2/24", "dev", "v0"]);

    let proxy = binary("proxy").display().to_string();
    namespace.ok(&[
        &proxy, "iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-b", "*", "-d",
        "15020",
    ]);
    let saved = namespace.ok(&["iptables-save", "-t", "nat"]);
    for rule in [
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "--uid-owner 1337 -j RETURN",
    ] {
        assert!(saved.contains(rule), "{rule} missing:\n{saved}");
    }

    let _listener = namespace.capture_listener("AF_INET", "0.0.0.0");
    // An IPv4 pod takes IPv6 connections only on loopback or when established.
    let input = namespace.ok(&["ip6tables", "-S", "INPUT"]);
    assert!(input.contains("-A INPUT -j REJECT"), "IPv6 input is not locked down:\n{input}");

    let app = namespace.ok(&["python3", "-c", CLIENT]);
    assert_eq!(app.trim(), "captured by 15001", "an application's outbound connection is captured");
    // The same connection as the proxy's user goes out uncaptured, to an address where nobody
    // answers.
    let envoy = namespace.exec(&[
        "setpriv",
        "--reuid",
        "1337",
        "--regid",
        "1337",
        "--clear-groups",
        "timeout",
        "2",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/10.255.0.1/80 && head -c 17 <&3",
    ]);
    let answer = String::from_utf8_lossy(&envoy.stdout);
    assert!(!envoy.status.success() && !answer.contains("captured"), "uid 1337 must not be captured: {answer}");

    namespace.ok(&[&proxy, "clean-iptables"]);
    let cleaned = namespace.ok(&["iptables-save", "-t", "nat"]);
    assert!(!cleaned.contains("ISTIO_"), "chains left after clean-iptables:\n{cleaned}");
}

const CLIENT_V6: &str = "import socket,sys\ntry:\n    s=socket.create_connection(('fd00:255::1',80),timeout=2)\n    print(s.recv(100).decode())\nexcept Exception as e:\n    print('failed', e)\n";

#[test]
fn an_ipv6_pod_is_captured_by_ip6tables() {
    if let Some(reason) = e2e::pod_prerequisites_missing() {
        eprintln!("SKIPPED an_ipv6_pod_is_captured_by_ip6tables: {reason}");
        return;
    }
    let namespace = Namespace::create("istio-rs-ipt6");
    // Only an IPv6 address: the pod counts as an IPv6 pod.
    namespace.ok(&["ip", "-6", "addr", "add", "fd00:255::2/64", "dev", "v0", "nodad"]);
    let proxy = binary("proxy").display().to_string();
    namespace.ok(&[
        &proxy, "iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-b", "*", "-d",
        "15020",
    ]);
    let saved = namespace.ok(&["ip6tables-save", "-t", "nat"]);
    assert!(saved.contains("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"), "{saved}");
    let _listener = namespace.capture_listener("AF_INET6", "::");
    let app = namespace.ok(&["python3", "-c", CLIENT_V6]);
    assert_eq!(app.trim(), "captured by 15001", "an application's IPv6 connection is captured");

    namespace.ok(&[&proxy, "clean-iptables"]);
    let cleaned = namespace.ok(&["ip6tables-save", "-t", "nat"]);
    assert!(!cleaned.contains("ISTIO_"), "IPv6 chains left after clean-iptables:\n{cleaned}");
}

/// `proxy iptables --dry-run` through the binary prints 1.4.6's goldens, taking flags and the
/// environment (`STUB_IP` makes the pod IPv6) as 1.4.6's test script gave them.
#[test]
fn dry_runs_print_the_1_4_6_goldens() {
    let golden = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../proxy/testdata/istio-1.4.6/{name}.golden"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim_end().to_string()
    };
    let dry_run = |args: &str, env: &[(&str, &str)]| {
        let mut command = Command::new(binary("proxy"));
        command.arg("iptables").arg("--dry-run").args(args.split_whitespace());
        for name in ["ENVOY_PORT", "INBOUND_CAPTURE_PORT", "STUB_IP", "ENABLE_INBOUND_IPV6"] {
            command.env_remove(name);
        }
        let output = command.envs(env.iter().copied()).output().expect("proxy runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim_end().to_string()
    };
    let common = "-p 12345 -u 4321 -g 4444";
    let kubevirt = "-i 1.1.0.0/16 -x 9.9.0.0/16 -k eth1,eth2";
    for (name, args) in [
        ("mode_redirect", format!("{common} -m REDIRECT -b 5555,6666 -d 7777,8888 {kubevirt}")),
        ("mode_tproxy", format!("{common} -m TPROXY -b 5555,6666 -d 7777,8888 {kubevirt}")),
        ("mode_tproxy_and_wildcard_port", format!("{common} -m TPROXY -b * -d 7777,8888 {kubevirt}")),
        ("empty_parameter", String::new()),
        ("outbound_port_exclude", format!("{common} -o 1024,21 -m REDIRECT -b 5555,6666 -d 7777,8888 {kubevirt}")),
        (
            "wildcard_include_ip_range",
            format!("{common} -m REDIRECT -b 5555,6666 -d 7777,8888 -i * -x 9.9.0.0/16 -k eth1,eth2"),
        ),
    ] {
        assert_eq!(dry_run(&args, &[]), golden(name), "{name}");
    }
    // The IPv6 pod: 1.4.6's golden plus the inbound capture it left out (see proxy/src/iptables.rs).
    let ipv6 = dry_run(
        &format!("{common} -m TPROXY -b * -d 7777,8888 -i 2001:db8::/32 -x 2019:db8::/32 -k eth1,eth2"),
        &[("STUB_IP", "2001:db8:1::1")],
    );
    let expected = golden("mode_tproxy_and_ipv6").replace(
        "--dport 8888 -j RETURN\nip6tables -t nat -N ISTIO_OUTPUT",
        "--dport 8888 -j RETURN\nip6tables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\nip6tables -t nat -N ISTIO_OUTPUT",
    );
    assert_eq!(ipv6, expected);
    // The environment stands in for flags, and is printed as 1.4 printed it.
    let from_env = dry_run("-b 80", &[("ENVOY_PORT", "12345")]);
    assert!(from_env.contains("ENVOY_PORT=12345\n") && from_env.contains("PROXY_PORT=12345\n"), "{from_env}");
    assert!(from_env.contains("iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port 12345"), "{from_env}");

    let clean = Command::new(binary("proxy")).args(["clean-iptables", "--dry-run"]).output().expect("proxy runs");
    assert_eq!(String::from_utf8_lossy(&clean.stdout).trim_end(), golden("clean"));
}
