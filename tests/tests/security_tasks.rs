//! The Istio 1.4 security tasks on mutual TLS, step by step as the docs give them, on the local
//! platform — once with the built-in proxy as every sidecar, once with a stock Envoy. One demo
//! installation serves a plane's tasks; `httpbin` and `sleep` run in `foo` and `bar` (injected)
//! and in `legacy` (not), and every step checks the task's reachability matrix
//! (`curl http://httpbin.TO:8000/ip` from each `sleep`): `200`, `503` when a sidecar client's
//! TLS does not suit the server, `000` when a plaintext client is refused by a STRICT server.
//! The tasks covered: authentication policy (mesh-wide, namespace, service, precedence), the
//! mutual TLS deep dive, automatic mutual TLS, mutual TLS migration, and Citadel's service-account
//! secret generation for a namespace that opts out, and authorization with v1beta1
//! AuthorizationPolicies (deny all, then principals and namespaces let back in; TCP with
//! tcp-echo).
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::local::{sample, LocalMesh, Plane, Task};

const NAMESPACES: [&str; 3] = ["foo", "bar", "legacy"];

const TASKS: [(&str, Task); 8] = [
    ("authentication policy: mesh-wide", mesh_wide_policy),
    ("authentication policy: namespace, service and precedence", namespace_and_service_policies),
    ("mutual TLS deep dive", deep_dive),
    ("automatic mutual TLS", automatic_mutual_tls),
    ("mutual TLS migration", migration),
    ("Citadel service-account secret generation", secret_generation),
    ("authorization policies (v1beta1)", authorization_policies),
    ("authorization for TCP traffic (v1beta1)", tcp_authorization),
];

/// The docs' three namespaces with `httpbin` and `sleep`.
fn set_up_namespaces(mesh: &LocalMesh) {
    for namespace in ["foo", "bar"] {
        let (code, _, err) = mesh.istioctl(&["x", "local", "label", "namespace", namespace, "istio-injection=enabled"]);
        assert_eq!(code, 0, "{err}");
    }
    mesh.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n");
    for namespace in NAMESPACES {
        for file in ["httpbin/httpbin.yaml", "sleep/sleep.yaml"] {
            let path = sample(file).display().to_string();
            let (code, out, err) = mesh.istioctl(&["x", "local", "apply", "-n", namespace, "-f", &path]);
            assert_eq!(code, 0, "{file} in {namespace}: {out}{err}");
        }
    }
    for namespace in NAMESPACES {
        mesh.wait_ready("httpbin", namespace, 1);
        mesh.wait_ready("sleep", namespace, 1);
    }
}

/// The tasks' DestinationRule `name` for `httpbin.foo` with TLS `mode`.
fn httpbin_foo_rule(name: &str, mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: {name}
  namespace: foo
spec:
  host: httpbin.foo.svc.cluster.local
  trafficPolicy:
    tls:
      mode: {mode}
"
    )
}

/// The status code `sleep.FROM` gets from `httpbin.TO:8000/ip` (`000` when the connection fails).
fn call(mesh: &LocalMesh, from: &str, to: &str) -> String {
    mesh.sleep_status(from, &format!("http://httpbin.{to}:8000/ip"), &[])
}

/// The whole matrix, `from→to: code`.
fn matrix(mesh: &LocalMesh) -> BTreeMap<String, String> {
    let mut codes = BTreeMap::new();
    for from in NAMESPACES {
        for to in NAMESPACES {
            codes.insert(format!("sleep.{from} to httpbin.{to}"), call(mesh, from, to));
        }
    }
    codes
}

/// What the docs show: every pair 200, except those listed.
fn expected(exceptions: &[(&str, &str, &str)]) -> BTreeMap<String, String> {
    let mut codes = BTreeMap::new();
    for from in NAMESPACES {
        for to in NAMESPACES {
            let code = exceptions.iter().find(|(f, t, _)| *f == from && *t == to).map_or("200", |(_, _, code)| code);
            codes.insert(format!("sleep.{from} to httpbin.{to}"), code.to_string());
        }
    }
    codes
}

/// Waits until the matrix is as the docs say (configuration reaches the proxies within moments).
fn settle(mesh: &LocalMesh, step: &str, exceptions: &[(&str, &str, &str)]) {
    let wanted = expected(exceptions);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streak = 0;
    loop {
        let seen = matrix(mesh);
        if seen == wanted {
            streak += 1;
            if streak == 2 {
                return;
            }
            continue;
        }
        streak = 0;
        if Instant::now() > deadline {
            let differences: Vec<String> = seen
                .iter()
                .filter(|(pair, code)| wanted.get(*pair) != Some(code))
                .map(|(pair, code)| format!("{pair}: {code}, not {}", wanted[pair]))
                .collect();
            panic!("{step} ({:?}): {}\n{}", mesh.plane, differences.join("; "), client_view(mesh, &seen, &wanted));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// For a failure report: what each failing client's sidecar knows of the servers it failed
/// to reach (`/clusters` lines of their outbound clusters).
fn client_view(mesh: &LocalMesh, seen: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> String {
    let mut report = String::new();
    for (pair, code) in seen.iter().filter(|(pair, code)| wanted.get(*pair) != Some(code)) {
        let Some((from, to)) = pair.strip_prefix("sleep.").and_then(|rest| rest.split_once(" to httpbin.")) else {
            continue;
        };
        if from == "legacy" {
            continue;
        }
        let clusters = mesh.proxy_admin("sleep", from, "clusters");
        let host = format!("httpbin.{to}.svc.cluster.local");
        let lines: Vec<&str> = clusters.lines().filter(|line| line.contains(&host)).collect();
        report.push_str(&format!("{pair} ({code}), sidecar of sleep.{from}:\n{}\n", lines.join("\n")));
    }
    report
}

const MESH_STRICT: &str = "apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls: {}
";

const MESH_ISTIO_MUTUAL: &str = "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: default
  namespace: istio-system
spec:
  host: \"*.local\"
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
";

/// The MeshPolicy the installation starts with (1.4's security chart without
/// `values.global.mtls.enabled`).
const MESH_PERMISSIVE: &str = "apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls:
      mode: PERMISSIVE
";

/// Turns the mesh config's `enableAutoMtls` on or off through the `istio` ConfigMap, as
/// `kubectl edit configmap istio -n istio-system` does.
fn set_auto_mtls(mesh: &LocalMesh, enabled: bool) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "json"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let mut config_map: serde_json::Value = serde_json::from_str(&config_map).expect("ConfigMap JSON");
    let current = config_map["data"]["mesh"].as_str().unwrap_or_default().to_string();
    let kept: Vec<&str> = current.lines().filter(|line| !line.starts_with("enableAutoMtls:")).collect();
    let mut updated = kept.join("\n") + "\n";
    if enabled {
        updated.push_str("enableAutoMtls: true\n");
    }
    if updated != current {
        config_map["data"]["mesh"] = serde_json::Value::String(updated);
        mesh.apply_yaml(&config_map.to_string());
    }
}

/// Back to the installation's PERMISSIVE MeshPolicy, no other policy or rule, and no
/// automatic mutual TLS.
fn reset(mesh: &LocalMesh) {
    set_auto_mtls(mesh, false);
    mesh.apply_yaml(MESH_PERMISSIVE);
    mesh.delete_in("istio-system", "destinationrules", "default");
    for namespace in NAMESPACES {
        for name in [
            "default",
            "httpbin",
            "overwrite-example",
            "httpbin-legacy",
            "example-httpbin-istio-client-mtls",
            "example-httpbin-strict",
            "tcp-echo",
        ] {
            mesh.delete_in(namespace, "policies", name);
            mesh.delete_in(namespace, "destinationrules", name);
        }
        for name in ["deny-all", "httpbin-viewer", "tcp-echo-viewer"] {
            mesh.delete_in(namespace, "authorizationpolicies", name);
        }
    }
}

/// "Globally enabling Istio mutual TLS": STRICT everywhere breaks sidecar clients (503) until
/// the `*.local` rule makes them use mutual TLS; plaintext clients are refused (000); calls
/// into `legacy` then need a rule that disables TLS for it.
fn mesh_wide_policy(mesh: &LocalMesh) {
    // The installation's policy: the MeshPolicy `default`, PERMISSIVE, and no other.
    let (code, policies, err) = mesh.istioctl(&["x", "local", "get", "meshpolicies", "-o", "yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(policies.contains("name: default") && policies.contains("PERMISSIVE"), "{policies}");
    settle(mesh, "the installation's PERMISSIVE MeshPolicy", &[]);
    mesh.apply_yaml(MESH_STRICT);
    let mesh_to_mesh = [("foo", "foo", "503"), ("foo", "bar", "503"), ("bar", "foo", "503"), ("bar", "bar", "503")];
    let legacy_to_mesh = [("legacy", "foo", "000"), ("legacy", "bar", "000")];
    settle(mesh, "MeshPolicy STRICT without the rule", &[&mesh_to_mesh[..], &legacy_to_mesh[..]].concat());

    mesh.apply_yaml(MESH_ISTIO_MUTUAL);
    let mesh_to_legacy = [("foo", "legacy", "503"), ("bar", "legacy", "503")];
    settle(mesh, "MeshPolicy STRICT with the *.local rule", &[&legacy_to_mesh[..], &mesh_to_legacy[..]].concat());

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin-legacy
  namespace: legacy
spec:
  host: httpbin.legacy.svc.cluster.local
  trafficPolicy:
    tls:
      mode: DISABLE
",
    );
    settle(mesh, "TLS disabled towards legacy", &legacy_to_mesh);
}

/// "Enable mutual TLS per namespace or service", and "Policy precedence".
fn namespace_and_service_policies(mesh: &LocalMesh) {
    mesh.apply_yaml(
        "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: default
  namespace: foo
spec:
  peers:
  - mtls: {}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: default
  namespace: foo
spec:
  host: \"*.foo.svc.cluster.local\"
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
",
    );
    settle(mesh, "namespace-wide policy in foo", &[("legacy", "foo", "000")]);

    mesh.apply_yaml(
        "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: httpbin
  namespace: bar
spec:
  targets:
  - name: httpbin
  peers:
  - mtls: {}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin
  namespace: bar
spec:
  host: httpbin.bar.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
",
    );
    settle(mesh, "service-specific policy for httpbin.bar", &[("legacy", "foo", "000"), ("legacy", "bar", "000")]);

    // A service-specific policy without peers beats the namespace's STRICT one.
    mesh.apply_yaml(
        "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: overwrite-example
  namespace: foo
spec:
  targets:
  - name: httpbin
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: overwrite-example
  namespace: foo
spec:
  host: httpbin.foo.svc.cluster.local
  trafficPolicy:
    tls:
      mode: DISABLE
",
    );
    settle(mesh, "the service policy overrides the namespace's", &[("legacy", "bar", "000")]);
}

/// "Mutual TLS deep dive": the sidecar holds Citadel's files, the certificate names the
/// workload's SPIFFE identity, a client without certificates gets nowhere under STRICT, and
/// `istioctl authn tls-check` says OK, then CONFLICT for a rule that turns TLS off.
fn deep_dive(mesh: &LocalMesh) {
    let exec = |command: &[&str]| {
        let mut args = vec!["x", "local", "exec", "httpbin", "-n", "foo", "-c", "istio-proxy", "--"];
        args.extend(command);
        mesh.istioctl(&args)
    };
    let (code, files, err) = exec(&["ls", "/etc/certs"]);
    assert_eq!(code, 0, "{err}");
    let mut files: Vec<&str> = files.split_whitespace().collect();
    files.sort_unstable();
    assert_eq!(files, ["cert-chain.pem", "key.pem", "root-cert.pem"]);
    let (code, text, err) = exec(&["openssl", "x509", "-in", "/etc/certs/cert-chain.pem", "-text", "-noout"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("URI:spiffe://cluster.local/ns/foo/sa/httpbin"), "{text}");
    let serial = text
        .lines()
        .skip_while(|line| !line.contains("Serial Number:"))
        .find_map(|line| {
            let hex: String = line.trim().trim_start_matches("Serial Number:").trim().replace(':', "");
            (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
        })
        .expect("openssl shows the serial number");

    // `proxy-config secret` shows the same certificate from the proxy's side (after the
    // first STRICT step below, once the proxy's contexts load the files).
    let proxy_secret_rows = || {
        let (code, table, err) = mesh.istioctl(&["proxy-config", "secret", "httpbin.foo"]);
        assert_eq!(code, 0, "{err}");
        table
    };

    mesh.apply_yaml(MESH_STRICT);
    mesh.apply_yaml(MESH_ISTIO_MUTUAL);
    settle(
        mesh,
        "STRICT for the deep dive",
        &[("legacy", "foo", "000"), ("legacy", "bar", "000"), ("foo", "legacy", "503"), ("bar", "legacy", "503")],
    );
    // The plaintext client's connection is closed without an answer: curl's exit code 56
    // (reset, as the docs show) or 52 (closed), depending on how the server closes it.
    let (code, _, _) = mesh.istioctl(&[
        "x",
        "local",
        "exec",
        "sleep",
        "-n",
        "legacy",
        "-c",
        "sleep",
        "--",
        "curl",
        "http://httpbin.foo:8000/ip",
        "-s",
        "--max-time",
        "5",
    ]);
    assert!([52, 56].contains(&code), "a plaintext client gets no answer from a STRICT server: curl exit {code}");

    let serial = istio_pki::certificate::serial_decimal(&serial).expect("a hex serial");
    let table = proxy_secret_rows();
    assert!(table.starts_with("RESOURCE NAME "), "{table}");
    // The built-in proxy loads the files; a stock Envoy gets them from its agent over SDS.
    let (chain_name, root_name, status) = match mesh.plane {
        Plane::Builtin => ("/etc/certs/cert-chain.pem", "/etc/certs/root-cert.pem", "FILE"),
        Plane::Envoy => ("default", "ROOTCA", "ACTIVE"),
    };
    let chain_row: Vec<&str> = table
        .lines()
        .find(|line| line.starts_with(&format!("{chain_name} ")))
        .unwrap_or_else(|| panic!("no row for {chain_name}:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(chain_row[1..5], ["Cert", "Chain", status, "true"], "{table}");
    assert_eq!(chain_row[5], serial, "{table}");
    assert_eq!(chain_row.last(), Some(&"spiffe://cluster.local/ns/foo/sa/httpbin"), "{table}");
    assert!(table.lines().any(|line| line.starts_with(&format!("{root_name} ")) && line.contains(" CA ")), "{table}");

    // `authn tls-check` from sleep.foo's proxy: OK, then CONFLICT once a rule turns TLS off.
    let sleep = mesh
        .pods()
        .into_iter()
        .find(|pod| pod["metadata"]["namespace"] == "foo" && pod["metadata"]["labels"]["app"] == "sleep")
        .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .expect("sleep in foo");
    let tls_check = || {
        let (code, out, err) =
            mesh.istioctl(&["authn", "tls-check", &format!("{sleep}.foo"), "httpbin.foo.svc.cluster.local"]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let table = tls_check();
    assert!(table.starts_with("HOST:PORT "), "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        row,
        ["httpbin.foo.svc.cluster.local:8000", "OK", "STRICT", "ISTIO_MUTUAL", "/default", "istio-system/default"]
    );
    mesh.apply_yaml(&httpbin_foo_rule("httpbin", "DISABLE"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = tls_check();
        let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        if row == ["httpbin.foo.svc.cluster.local:8000", "CONFLICT", "STRICT", "DISABLE", "/default", "foo/httpbin"] {
            break;
        }
        assert!(Instant::now() < deadline, "tls-check never showed the conflict:\n{table}");
        std::thread::sleep(Duration::from_millis(300));
    }
    settle(
        mesh,
        "a rule that turns TLS off against STRICT",
        &[
            ("legacy", "foo", "000"),
            ("legacy", "bar", "000"),
            ("foo", "legacy", "503"),
            ("bar", "legacy", "503"),
            ("foo", "foo", "503"),
            // The rule lives in foo: foo's proxies use it first, and foo exports it to bar's.
            ("bar", "foo", "503"),
        ],
    );
}

/// "Automatic mutual TLS": with `enableAutoMtls`, sidecar clients use mutual TLS towards
/// endpoints whose pods have sidecars (`security.istio.io/tlsMode: istio`) and plaintext towards
/// the others, without any DestinationRule, so a STRICT MeshPolicy breaks nothing between them.
fn automatic_mutual_tls(mesh: &LocalMesh) {
    set_auto_mtls(mesh, true);
    mesh.apply_yaml(MESH_STRICT);
    settle(mesh, "STRICT with automatic mutual TLS", &[("legacy", "foo", "000"), ("legacy", "bar", "000")]);
    // Without it, the same policy leaves sidecar clients talking plaintext to STRICT servers.
    set_auto_mtls(mesh, false);
    let mesh_to_mesh = [("foo", "foo", "503"), ("foo", "bar", "503"), ("bar", "foo", "503"), ("bar", "bar", "503")];
    settle(
        mesh,
        "STRICT without automatic mutual TLS",
        &[&mesh_to_mesh[..], &[("legacy", "foo", "000"), ("legacy", "bar", "000")][..]].concat(),
    );
}

/// "Mutual TLS Migration": clients switch to mutual TLS first (the server is PERMISSIVE, so
/// plaintext clients keep working), then the server locks down to STRICT.
fn migration(mesh: &LocalMesh) {
    mesh.apply_yaml(&httpbin_foo_rule("example-httpbin-istio-client-mtls", "ISTIO_MUTUAL"));
    settle(mesh, "clients use mutual TLS, the server is PERMISSIVE", &[]);
    mesh.apply_yaml(
        "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: example-httpbin-strict
  namespace: foo
spec:
  targets:
  - name: httpbin
  peers:
  - mtls:
      mode: STRICT
",
    );
    settle(mesh, "httpbin.foo locked down to STRICT", &[("legacy", "foo", "000")]);
}

/// Waits until Citadel has made `istio.<account>` in `namespace`.
fn wait_for_workload_secret(mesh: &LocalMesh, namespace: &str, account: &str) {
    let secret = format!("istio.{account}");
    e2e::until(&format!("Citadel makes {namespace}/{secret}"), Duration::from_secs(30), || {
        let names = mesh.names_in("secrets", namespace);
        if names.contains(&secret) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
}

fn create_service_account(mesh: &LocalMesh, namespace: &str, name: &str) {
    mesh.apply_yaml(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    ));
}

/// "Configure Citadel Service Account Secret Generation", deactivating one namespace: a new
/// namespace's `default` account gets `istio.default`; once the namespace is labelled
/// `ca.istio.io/override=false`, a new account there gets none (checked after a new account
/// elsewhere got its secret, so Citadel has seen both). The opt-in half needs another
/// installation (`enableNamespacesByDefault=false`) and runs in `security_installation`.
fn secret_generation(mesh: &LocalMesh) {
    let namespace = "secret-generation";
    let (code, out, err) = mesh.istioctl(&["x", "local", "create", "namespace", namespace]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for_workload_secret(mesh, namespace, "default");
    let (code, out, err) =
        mesh.istioctl(&["x", "local", "label", "namespace", namespace, "ca.istio.io/override=false"]);
    assert_eq!(code, 0, "{out}{err}");
    create_service_account(mesh, namespace, "sample-service-account");
    create_service_account(mesh, "bar", "secret-generation-probe");
    wait_for_workload_secret(mesh, "bar", "secret-generation-probe");
    let secrets = mesh.names_in("secrets", namespace);
    assert!(secrets.contains(&"istio.default".to_string()), "{secrets:?}");
    assert!(
        !secrets.contains(&"istio.sample-service-account".to_string()),
        "no secret in a namespace labelled ca.istio.io/override=false: {secrets:?}"
    );
}

/// AuthorizationPolicy (v1beta1) on `httpbin.foo`, reached over mutual TLS from the sidecars
/// so it knows who calls: `spec` without rules denies everyone (403, `RBAC: access denied`);
/// a rule for the `sleep` account of `foo` and one for namespace `bar` (GET only) let exactly
/// those callers back in, while the plaintext client in `legacy` stays out.
fn authorization_policies(mesh: &LocalMesh) {
    mesh.apply_yaml(&httpbin_foo_rule("httpbin", "ISTIO_MUTUAL"));
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
",
    );
    let denied = [("foo", "foo", "403"), ("bar", "foo", "403"), ("legacy", "foo", "403")];
    settle(mesh, "deny-all", &denied);
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: httpbin-viewer
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/foo/sa/sleep\"]
    to:
    - operation:
        methods: [\"GET\"]
  - from:
    - source:
        namespaces: [\"bar\"]
    to:
    - operation:
        methods: [\"GET\"]
        paths: [\"/ip\", \"/headers\"]
",
    );
    settle(mesh, "httpbin-viewer", &[("legacy", "foo", "403")]);
}

/// What `sleep.FROM` gets back from `tcp-echo.foo:PORT` for the line `hello` (`closed` when the
/// connection is closed or refused unanswered).
fn echo(mesh: &LocalMesh, from: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/tcp-echo.foo/{port} && echo hello >&3 && timeout 3 head -n 1 <&3");
    let (_, out, _) =
        mesh.istioctl(&["x", "local", "exec", "sleep", "-n", from, "-c", "sleep", "--", "bash", "-c", &script]);
    let line = out.trim();
    if line.is_empty() {
        "closed".to_string()
    } else {
        line.to_string()
    }
}

/// Waits until `sleep.foo` and `sleep.bar` get these answers.
fn settle_echo(mesh: &LocalMesh, step: &str, wanted: [(&str, u16, &str); 2]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<String> = wanted.iter().map(|(from, port, _)| echo(mesh, from, *port)).collect();
        if wanted.iter().zip(&seen).all(|((_, _, expected), got)| got.contains(expected)) {
            return;
        }
        assert!(Instant::now() < deadline, "{step} ({:?}): wanted {wanted:?}, got {seen:?}", mesh.plane);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// "Authorization for TCP traffic" with tcp-echo in `foo` (1.4's task used MongoDB): over
/// mutual TLS, a policy for `foo`'s `sleep` account on port 9000 lets exactly that through
/// (`bar` is closed unanswered), one for another port lets nobody through, and the first rule
/// with an HTTP-only field (methods) is dropped on the TCP port, as 1.4 dropped it, so nothing
/// gets through either.
fn tcp_authorization(mesh: &LocalMesh) {
    let (code, out, err) = mesh.istioctl(&[
        "x",
        "local",
        "apply",
        "-n",
        "foo",
        "-f",
        &sample("tcp-echo/tcp-echo-services.yaml").display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    mesh.wait_ready("tcp-echo", "foo", 2);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: tcp-echo
  namespace: foo
spec:
  host: tcp-echo.foo.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
",
    );
    settle_echo(mesh, "no policy", [("foo", 9000, "hello"), ("bar", 9000, "hello")]);
    let policy = |operation: &str| {
        format!(
            "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: tcp-echo-viewer
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/foo/sa/sleep\"]
    to:
    - operation:
{operation}"
        )
    };
    mesh.apply_yaml(&policy("        ports: [\"9000\"]\n"));
    settle_echo(mesh, "sleep.foo only", [("foo", 9000, "hello"), ("bar", 9000, "closed")]);
    mesh.apply_yaml(&policy("        ports: [\"9001\"]\n"));
    settle_echo(mesh, "another port", [("foo", 9000, "closed"), ("bar", 9000, "closed")]);
    mesh.apply_yaml(&policy("        ports: [\"9000\"]\n"));
    settle_echo(mesh, "sleep.foo again", [("foo", 9000, "hello"), ("bar", 9000, "closed")]);
    mesh.apply_yaml(&policy("        ports: [\"9000\"]\n        methods: [\"GET\"]\n"));
    settle_echo(mesh, "an HTTP-only field on a TCP port", [("foo", 9000, "closed"), ("bar", 9000, "closed")]);
}

fn run_tasks(plane: Plane) {
    e2e::local::run_tasks(plane, &TASKS, set_up_namespaces, reset);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn security_tasks_with_the_builtin_proxy() {
    run_tasks(Plane::Builtin);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn security_tasks_with_envoy() {
    run_tasks(Plane::Envoy);
}
