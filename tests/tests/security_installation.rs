//! Security choices made at installation, on the local platform, once per data plane: the 1.4
//! task "Plugging in External CA Key and Certificate" with `values.global.mtls.enabled=true`.
//! As the docs do, the `cacerts` Secret (an RSA root and an intermediate with a PKCS#1 key,
//! laid out as Istio's `samples/certs`) is created before `istioctl install --set
//! values.security.selfSigned=false`. Bookinfo then serves its page through the gateway with
//! every hop over mutual TLS, productpage refuses plaintext, and a workload's certificates
//! chain to the plug-in root (`openssl verify`). A broken `cacerts` Secret does not harm what
//! runs: a restarted Citadel waits and says why, issued secrets stay, and fixing the Secret
//! brings it back.
//!
//! The same installation turns `enableNamespacesByDefault` off (the opt-in half of "Configure
//! Citadel Service Account Secret Generation"): Bookinfo's namespace is labelled
//! `ca.istio.io/override=true` beforehand, a new namespace gets no secret until it is labelled
//! so too.
//!
//! Provisioning identity through SDS (`values.global.sds.enabled=true`, the `sds` profile's
//! setting, with mutual TLS required): the node agent signs every sidecar's certificate with
//! the pod's token, Bookinfo works over mutual TLS, `/etc/certs` holds nothing, and `istioctl
//! proxy-config secret` shows the `default` and `ROOTCA` secrets the proxy got over SDS.
//! The same installation enables the ingress gateway's SDS agent
//! (`values.gateways.istio-ingressgateway.sds.enabled=true`) for the task "Secure Gateways
//! (SDS)": a Gateway whose server names `credentialName: httpbin-credential` serves the Secret's
//! certificate; deleting the Secret and creating it again from a new CA changes the certificate
//! the running gateway presents (no restart); a compound Secret with `cacert` makes MUTUAL
//! refuse clients without a certificate.
//!
//! Rotation under load: with a workload certificate TTL of a few seconds, `hey` sends a steady
//! rate of requests through the gateway to productpage and on to reviews and ratings, every
//! hop over mutual TLS, while Citadel renews every certificate several times; no request fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::local::{sample, LocalMesh, Plane};
use e2e::until;

/// The plug-in CA files, made with openssl for pkg/pki's tests.
fn plugged(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/pki/testdata/plugged").join(file)
}

const CA_FILES: [&str; 4] = ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"];

/// Citadel's monitoring address on the local platform.
const CITADEL_MONITORING: &str = "10.44.0.13:15014";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A file from the sidecar of the pod with label `app`.
fn sidecar_file(mesh: &LocalMesh, app: &str, path: &str) -> String {
    let pod = mesh
        .pods()
        .into_iter()
        .find(|pod| pod["metadata"]["labels"]["app"] == app)
        .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no {app} pod"));
    let (code, text, err) = mesh.istioctl(&["x", "local", "exec", &pod, "-c", "istio-proxy", "--", "cat", path]);
    assert_eq!(code, 0, "{err}");
    text
}

/// The PEM blocks of a file, each with its END line.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split_inclusive("-----END CERTIFICATE-----")
        .filter(|block| block.contains("BEGIN CERTIFICATE"))
        .map(|block| format!("{}\n", block.trim()))
        .collect()
}

/// `cacerts` as a Secret manifest, with `key_pem` as its signing key.
fn cacerts_manifest(key_pem: &str) -> String {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let mut data = String::new();
    for file in CA_FILES {
        let content = if file == "ca-key.pem" { key_pem.to_string() } else { read(&plugged(file)) };
        data.push_str(&format!("  {file}: {}\n", encode(&content)));
    }
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: istio-system\ntype: Opaque\ndata:\n{data}")
}

fn citadel_ready() -> (u16, String) {
    let (status, _, body) = e2e::http_request(CITADEL_MONITORING, "GET", "/ready", &[], "");
    (status, body)
}

fn plugged_in_ca_with_strict_mutual_tls(plane: Plane) {
    let mesh = LocalMesh::demo_after(
        plane,
        &[
            "values.global.mtls.enabled=true",
            "values.security.selfSigned=false",
            "values.security.enableNamespacesByDefault=false",
        ],
        |mesh| {
            let mut args = vec!["x".to_string(), "local".into(), "create".into(), "secret".into(), "generic".into()];
            args.extend(["cacerts".into(), "-n".into(), "istio-system".into()]);
            for file in CA_FILES {
                args.push(format!("--from-file={}", plugged(file).display()));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, err) = mesh.istioctl(&args);
            assert_eq!(code, 0, "creating cacerts before the installation: {out}{err}");
            let (code, out, err) =
                mesh.istioctl(&["x", "local", "label", "namespace", "default", "ca.istio.io/override=true"]);
            assert_eq!(code, 0, "opting Bookinfo's namespace in before the installation: {out}{err}");
        },
    );
    opt_in_secret_generation(&mesh);

    // Mutual TLS everywhere, and Bookinfo works (once the pushes for the namespace above have
    // reached every proxy).
    mesh.settle(None, "Bookinfo with details and reviews under STRICT", 1, |_, page| {
        page.contains("Book Details") && page.contains("Reviewer1")
    });
    let (code, policies, err) = mesh.istioctl(&["x", "local", "get", "meshpolicies", "-o", "yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(policies.contains("name: default") && !policies.contains("PERMISSIVE"), "{policies}");
    let productpage = mesh
        .pods()
        .into_iter()
        .find(|pod| pod["metadata"]["labels"]["app"] == "productpage")
        .and_then(|pod| pod["status"]["podIP"].as_str().map(str::to_string))
        .expect("productpage's IP");
    let (status, _, _) = e2e::http_request(&format!("{productpage}:9080"), "GET", "/productpage", &[], "");
    assert_ne!(status, 200, "plaintext from outside the mesh must not reach productpage under STRICT");

    // The workload's root is the plug-in root; its chain is leaf + the plug-in intermediate,
    // and openssl verifies the leaf against them.
    let root = sidecar_file(&mesh, "ratings", "/etc/certs/root-cert.pem");
    assert_eq!(root.trim(), read(&plugged("root-cert.pem")).trim(), "the workload root is the plug-in root");
    let chain = pem_blocks(&sidecar_file(&mesh, "ratings", "/etc/certs/cert-chain.pem"));
    assert_eq!(chain.len(), 2, "leaf and intermediate: {chain:?}");
    assert_eq!(chain[1].trim(), read(&plugged("ca-cert.pem")).trim(), "the chain ends with the plug-in CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf = dir.path().join("proxy-cert.pem");
    std::fs::write(&leaf, &chain[0]).expect("write");
    let output = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(plugged("root-cert.pem"))
        .arg("-untrusted")
        .arg(plugged("ca-cert.pem"))
        .arg(&leaf)
        .output()
        .expect("run openssl");
    let verdict = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && verdict.contains(": OK"),
        "{verdict}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A broken cacerts: the running Citadel keeps its CA; a restarted one waits and says why,
    // and rewrites no secret meanwhile.
    let (code, secret_before, err) =
        mesh.istioctl(&["x", "local", "get", "secret", "istio.bookinfo-ratings", "-n", "default", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    mesh.apply_yaml(&cacerts_manifest("-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n"));
    let pid_file = mesh.root().join("pids/control.citadel");
    let pid = read(&pid_file).split_whitespace().next().expect("a pid").to_string();
    let killed = std::process::Command::new("kill").arg(&pid).status().expect("kill");
    assert!(killed.success(), "stopping Citadel ({pid})");
    until("the restarted Citadel names the broken key", Duration::from_secs(90), || {
        let (status, body) = citadel_ready();
        if status == 503 && body.contains("plugged-in CA") && body.contains("private key") {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    let (code, secret_after, err) =
        mesh.istioctl(&["x", "local", "get", "secret", "istio.bookinfo-ratings", "-n", "default", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(secret_before, secret_after, "issued secrets stay as they were");
    mesh.settle(None, "the mesh keeps serving without Citadel", 1, |_, page| page.contains("Book Details"));

    // Fixing the Secret brings Citadel back without another restart.
    mesh.apply_yaml(&cacerts_manifest(&read(&plugged("ca-key.pem"))));
    until("Citadel is ready with the fixed Secret", Duration::from_secs(90), || {
        let (status, body) = citadel_ready();
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
}

/// With `enableNamespacesByDefault=false`, a new namespace's account gets no secret (checked
/// once an account in an opted-in namespace got one), until the namespace is labelled
/// `ca.istio.io/override=true`. Its workloads, started before they had certificates, talk
/// mutual TLS once the certificates arrive: nothing waits for a restart or a config change.
fn opt_in_secret_generation(mesh: &LocalMesh) {
    let namespace = "opt-in";
    let (code, out, err) = mesh.istioctl(&["x", "local", "create", "namespace", namespace]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = mesh.istioctl(&["x", "local", "label", "namespace", namespace, "istio-injection=enabled"]);
    assert_eq!(code, 0, "{out}{err}");
    for app in ["httpbin", "sleep"] {
        let file = sample(&format!("{app}/{app}.yaml"));
        let (code, out, err) =
            mesh.istioctl(&["x", "local", "apply", "-n", namespace, "-f", &file.display().to_string()]);
        assert_eq!(code, 0, "{out}{err}");
    }
    mesh.wait_ready("httpbin", namespace, 1);
    mesh.wait_ready("sleep", namespace, 1);
    let url = format!("http://httpbin.{namespace}:8000/headers");
    mesh.apply_yaml("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: opt-in-probe\n  namespace: default\n");
    let has = |namespace: &str, secret: &str| mesh.names_in("secrets", namespace).contains(&secret.to_string());
    until("Citadel serves the opted-in namespace", Duration::from_secs(90), || {
        if has("default", "istio.opt-in-probe") {
            Ok(())
        } else {
            Err("no istio.opt-in-probe yet".into())
        }
    });
    assert!(!has(namespace, "istio.default"), "no secret in a namespace that has not opted in");
    assert!(!has(namespace, "istio.httpbin"), "no secret for httpbin before the namespace opts in");
    assert_ne!(mesh.sleep_status(namespace, &url, &[]), "200", "no mutual TLS without certificates");
    let (code, out, err) = mesh.istioctl(&["x", "local", "label", "namespace", namespace, "ca.istio.io/override=true"]);
    assert_eq!(code, 0, "{out}{err}");
    until("Citadel serves the namespace once labelled", Duration::from_secs(90), || {
        if has(namespace, "istio.default") {
            Ok(())
        } else {
            Err(format!("{:?}", mesh.names_in("secrets", namespace)))
        }
    });
    until("mutual TLS between workloads that started without certificates", Duration::from_secs(90), || {
        expect_status(mesh.sleep_status(namespace, &url, &[]), "200")
    });
    for app in ["httpbin", "sleep"] {
        mesh.delete_in(namespace, "deployments", app);
    }
}

fn expect_status(status: String, expected: &str) -> Result<(), String> {
    if status == expected {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The lines of a `hey` report that are not 200s: other status codes and errors.
fn failures_in(report: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut in_errors = false;
    for line in report.lines().map(str::trim) {
        if line.starts_with("Error distribution") {
            in_errors = true;
            continue;
        }
        let bad_status = line.starts_with('[') && !line.starts_with("[200]") && line.contains("responses");
        if bad_status || (in_errors && !line.is_empty()) {
            failures.push(line.to_string());
        }
    }
    failures
}

/// The number of 200 responses in a `hey` report.
fn successes_in(report: &str) -> u64 {
    report
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("[200]"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// The access-log lines of 5xx answers (with their response flags) in every proxy of the
/// mesh, for a failure report: which hop failed, and how.
fn server_errors_in_access_logs(mesh: &LocalMesh) -> String {
    let mut found = Vec::new();
    for pod in mesh.pods() {
        let (Some(name), Some(namespace)) = (pod["metadata"]["name"].as_str(), pod["metadata"]["namespace"].as_str())
        else {
            continue;
        };
        let (_, log, _) = mesh.istioctl(&["x", "local", "logs", name, "-n", namespace, "-c", "istio-proxy"]);
        found
            .extend(log.lines().filter(|line| line.contains("\" 5")).map(|line| format!("{namespace}/{name}: {line}")));
    }
    found.join("\n")
}

fn rotation_under_load(plane: Plane) {
    let mesh = LocalMesh::demo_with(plane, &["values.global.mtls.enabled=true", "values.security.workloadCertTtl=10s"]);
    let certificate = || {
        let (code, secret, err) =
            mesh.istioctl(&["x", "local", "get", "secret", "istio.bookinfo-ratings", "-n", "default", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let secret: serde_json::Value = serde_json::from_str(&secret).expect("secret JSON");
        secret["data"]["cert-chain.pem"].as_str().unwrap_or_default().to_string()
    };
    let first = certificate();
    let load = |path: &str| {
        let url = format!("http://{}{path}", mesh.gateway);
        std::process::Command::new("hey")
            .args(["-z", "25s", "-q", "10", "-c", "2", "-t", "10", &url])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run hey")
    };
    // reviews and ratings answer through productpage with their own status codes.
    let loads = [load("/api/v1/products/0/reviews"), load("/api/v1/products/0/ratings")];
    let mut certificates = std::collections::BTreeSet::from([first]);
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        certificates.insert(certificate());
        std::thread::sleep(Duration::from_secs(1));
    }
    for load in loads {
        let output = load.wait_with_output().expect("hey's report");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(successes_in(&report) >= 300, "a steady load ran:\n{report}");
        let failures = failures_in(&report);
        if !failures.is_empty() {
            panic!(
                "no request fails while certificates rotate: {failures:?}\n{report}\n5xx in the proxies' access logs:\n{}",
                server_errors_in_access_logs(&mesh)
            );
        }
    }
    assert!(
        certificates.len() >= 4,
        "ratings' certificate was renewed at least 3 times: {} versions",
        certificates.len()
    );
}

/// The SDS task's Gateway: HTTPS on 443 for `httpbin.example.com`, its certificate named by
/// `credentialName`.
fn credential_gateway(mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: {mode}
      credentialName: \"httpbin-credential\" # must be the same as secret
    hosts:
    - \"httpbin.example.com\"
"
    )
}

/// The row of secret `name` in `istioctl proxy-config secret` of the ingress gateway.
fn gateway_secret_row(mesh: &LocalMesh, name: &str) -> Result<Vec<String>, String> {
    let gateway = mesh
        .pods()
        .into_iter()
        .find(|pod| pod["metadata"]["labels"]["istio"] == "ingressgateway")
        .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .expect("the ingress gateway pod");
    let (code, table, err) = mesh.istioctl(&["proxy-config", "secret", &format!("{gateway}.istio-system")]);
    if code != 0 {
        return Err(err);
    }
    table
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .ok_or(table)
}

fn gateway_restarts(mesh: &LocalMesh) -> u64 {
    let pod = mesh.pods().into_iter().find(|pod| pod["metadata"]["labels"]["istio"] == "ingressgateway");
    let statuses = pod.as_ref().and_then(|pod| pod["status"]["containerStatuses"].as_array().cloned());
    statuses.unwrap_or_default().iter().filter_map(|status| status["restartCount"].as_u64()).sum()
}

/// "Secure Gateways (SDS)": SIMPLE from `httpbin-credential`, the Secret replaced by one from a
/// new CA, then MUTUAL with the client CA in the same Secret (`cacert`).
fn secure_gateway_over_sds(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let create_credential = |ca: &e2e::certs::TestCa, prefix: &str, with_ca: bool| -> PathBuf {
        let root = ca.write_root(dir.path(), &format!("{prefix}-example.com.crt"));
        let server = ca.issue_files(dir.path(), &format!("{prefix}-httpbin"), &["httpbin.example.com"]);
        let mut args = vec![
            "x".to_string(),
            "local".into(),
            "create".into(),
            "-n".into(),
            "istio-system".into(),
            "secret".into(),
            "generic".into(),
            "httpbin-credential".into(),
            format!("--from-file=key={}", server.key.display()),
            format!("--from-file=cert={}", server.cert.display()),
        ];
        if with_ca {
            args.push(format!("--from-file=cacert={}", root.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = mesh.istioctl(&args);
        assert_eq!(code, 0, "{out}{err}");
        root
    };
    let settle = |what: &str, ca: &Path, client: Option<(&Path, &Path)>, expected: &str| {
        until(what, Duration::from_secs(60), || {
            let got = mesh.https_through_gateway("httpbin.example.com", "/status/418", ca, client);
            if got == expected {
                Ok(())
            } else {
                Err(got)
            }
        });
    };

    let first_ca = e2e::certs::TestCa::new();
    let first_root = create_credential(&first_ca, "first", false);
    mesh.apply_yaml(&credential_gateway("SIMPLE"));
    mesh.apply_yaml(&e2e::local::httpbin_virtual_service("mygateway"));
    settle("SIMPLE with the credential's certificate", &first_root, None, "418 HTTP/2");
    let first = gateway_secret_row(mesh, "httpbin-credential").expect("the credential in the gateway");
    assert_eq!(first[1..5], ["Cert", "Chain", "ACTIVE", "true"], "{first:?}");
    let restarts = gateway_restarts(mesh);

    // Rotation: delete the Secret and create it from a new CA.
    mesh.delete_in("istio-system", "secrets", "httpbin-credential");
    let second_ca = e2e::certs::TestCa::new();
    let second_root = create_credential(&second_ca, "second", false);
    settle("the new certificate, trusted by the new CA", &second_root, None, "418 HTTP/2");
    assert_eq!(
        mesh.https_through_gateway("httpbin.example.com", "/status/418", &first_root, None),
        "000 HTTP/0",
        "the old CA no longer verifies the gateway"
    );
    let second = gateway_secret_row(mesh, "httpbin-credential").expect("the rotated credential");
    assert_ne!(first[5], second[5], "a new serial number: {first:?} {second:?}");
    assert_eq!(gateway_restarts(mesh), restarts, "the gateway took the new certificate without a restart");

    // Mutual TLS: the client CA comes with the Secret (`cacert`), as `httpbin-credential-cacert`.
    mesh.delete_in("istio-system", "secrets", "httpbin-credential");
    let third_ca = e2e::certs::TestCa::new();
    let third_root = create_credential(&third_ca, "third", true);
    let client = third_ca.issue_files(dir.path(), "httpbin-client", &["httpbin-client.example.com"]);
    mesh.apply_yaml(&credential_gateway("MUTUAL"));
    let client_pair = Some((client.cert.as_path(), client.key.as_path()));
    settle("MUTUAL with a client certificate", &third_root, client_pair, "418 HTTP/2");
    settle("MUTUAL without a client certificate", &third_root, None, "000 HTTP/0");
    let ca_row = gateway_secret_row(mesh, "httpbin-credential-cacert").expect("the client CA in the gateway");
    assert_eq!(ca_row[1..4], ["CA", "ACTIVE", "true"], "{ca_row:?}");

    // A broken update is refused with the Secret's name and the gateway keeps serving.
    mesh.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: httpbin-credential\n  namespace: istio-system\ntype: Opaque\nstringData:\n  cert: not a certificate\n  key: not a key\n",
    );
    until("the gateway agent refuses the broken Secret", Duration::from_secs(90), || {
        let (_, log, err) =
            mesh.istioctl(&["x", "local", "logs", "istio-ingressgateway", "-n", "istio-system", "-c", "ingress-sds"]);
        if log.contains("Secret httpbin-credential: data cert") {
            Ok(())
        } else {
            Err(format!("{log}{err}"))
        }
    });
    assert_eq!(
        mesh.https_through_gateway("httpbin.example.com", "/status/418", &third_root, client_pair),
        "418 HTTP/2",
        "the last good certificate is still served"
    );
}

fn identity_through_sds(plane: Plane) {
    let mesh = LocalMesh::demo_with(
        plane,
        &[
            "values.global.sds.enabled=true",
            "values.global.mtls.enabled=true",
            "values.gateways.istio-ingressgateway.sds.enabled=true",
        ],
    );
    mesh.settle(None, "Bookinfo with SDS identities", 3, |_, page| {
        page.contains("Book Details") && page.contains("Reviewer1")
    });
    let pod = mesh
        .pods()
        .into_iter()
        .find(|pod| pod["metadata"]["labels"]["app"] == "productpage")
        .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .expect("productpage");
    let (_, files, _) =
        mesh.istioctl(&["x", "local", "exec", &pod, "-c", "istio-proxy", "--", "ls", "-A", "/etc/certs"]);
    assert!(!files.contains(".pem"), "no certificate files with SDS: {files}");
    let (code, table, err) = mesh.istioctl(&["proxy-config", "secret", &pod]);
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} secret:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let default = row("default");
    assert_eq!(default[1..5], ["Cert", "Chain", "ACTIVE", "true"], "{table}");
    assert_eq!(default.last().map(String::as_str), Some("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"));
    assert_eq!(row("ROOTCA")[1..4], ["CA", "ACTIVE", "true"], "{table}");
    secure_gateway_over_sds(&mesh);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn identity_through_sds_with_the_builtin_proxy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        identity_through_sds(Plane::Builtin);
    }
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn identity_through_sds_with_envoy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        identity_through_sds(Plane::Envoy);
    }
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn rotation_under_load_with_the_builtin_proxy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        rotation_under_load(Plane::Builtin);
    }
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn rotation_under_load_with_envoy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        rotation_under_load(Plane::Envoy);
    }
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn plugged_in_ca_with_the_builtin_proxy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        plugged_in_ca_with_strict_mutual_tls(Plane::Builtin);
    }
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn plugged_in_ca_with_envoy() {
    let _host = e2e::local::host_lock();
    if e2e::pod_prerequisites_missing().is_none() {
        plugged_in_ca_with_strict_mutual_tls(Plane::Envoy);
    }
}
