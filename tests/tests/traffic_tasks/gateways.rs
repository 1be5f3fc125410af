//! Gateway tasks: the ingress gateway, and secure gateways with file-mounted certificates.

use super::*;

/// Ingress gateways: httpbin behind a Gateway for `httpbin.example.com` with a VirtualService
/// for `/status` and `/delay`: `/status/200` answers 200 through the gateway, `/headers` 404.
pub(crate) fn ingress_gateway(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway # use Istio default gateway implementation
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"httpbin.example.com\"
",
    );
    mesh.apply_yaml(&e2e::local::httpbin_virtual_service("httpbin-gateway"));
    let get = |path: &str| e2e::http_request(&mesh.gateway, "GET", path, &[("host", "httpbin.example.com")], "").0;
    until("/status/200 through the gateway", Duration::from_secs(60), || expect(get("/status/200"), 200));
    assert_eq!(get("/status/418"), 418);
    assert_eq!(get("/headers"), 404, "only /status and /delay are routed");
}

/// The httpbin Gateway of the secure-gateway task: HTTPS on 443 with the certificate files the
/// `istio-ingressgateway-certs` Secret mounts; MUTUAL adds the client CA from
/// `istio-ingressgateway-ca-certs`.
pub(crate) fn secure_httpbin_gateway(mode: &str) -> String {
    let ca = if mode == "MUTUAL" {
        "      caCertificates: /etc/istio/ingressgateway-ca-certs/ca-chain.cert.pem\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: httpbin-gateway
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
      serverCertificate: /etc/istio/ingressgateway-certs/tls.crt
      privateKey: /etc/istio/ingressgateway-certs/tls.key
{ca}    hosts:
    - \"httpbin.example.com\"
"
    )
}

/// Secure gateways (file mount): the server certificate as the `istio-ingressgateway-certs`
/// Secret, which appears in the running gateway; SIMPLE TLS answers `/status/418` over HTTP/2
/// for a client that trusts the CA; MUTUAL refuses a client without a certificate and
/// answers one with a certificate from the CA in `istio-ingressgateway-ca-certs`.
pub(crate) fn secure_gateway(mesh: &LocalMesh) {
    mesh.apply(&sample("httpbin/httpbin.yaml"));
    mesh.wait_ready("httpbin", "default", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    let ca_chain = ca.write_root(dir.path(), "ca-chain.cert.pem");
    let server = ca.issue_files(dir.path(), "httpbin.example.com", &["httpbin.example.com"]);
    let client = ca.issue_files(dir.path(), "httpbin-client.example.com", &["httpbin-client.example.com"]);
    let path = |path: &std::path::Path| path.display().to_string();
    let create_secret = |args: &[&str]| {
        let mut command = vec!["x", "local", "create", "-n", "istio-system", "secret"];
        command.extend(args);
        let (code, out, err) = mesh.istioctl(&command);
        // The Secrets outlive a task; a second run finds them there.
        assert!(code == 0 || err.contains("AlreadyExists"), "{args:?}: {out}{err}");
    };
    // Each run brings its own CA, so an earlier run's Secrets go first.
    for name in ["istio-ingressgateway-certs", "istio-ingressgateway-ca-certs"] {
        mesh.delete_in("istio-system", "secrets", name);
    }
    create_secret(&["tls", "istio-ingressgateway-certs", "--key", &path(&server.key), "--cert", &path(&server.cert)]);
    let mounted = |dir: &str, file: &str| {
        until(&format!("{file} in the gateway's {dir}"), Duration::from_secs(60), || {
            let (_, out, _) = mesh.istioctl(&[
                "x",
                "local",
                "exec",
                "-n",
                "istio-system",
                "istio-ingressgateway",
                "-c",
                "istio-proxy",
                "--",
                "ls",
                dir,
            ]);
            if out.lines().any(|line| line == file) {
                Ok(())
            } else {
                Err(out)
            }
        });
    };
    mounted("/etc/istio/ingressgateway-certs", "tls.key");
    mesh.apply_yaml(&secure_httpbin_gateway("SIMPLE"));
    mesh.apply_yaml(&e2e::local::httpbin_virtual_service("httpbin-gateway"));
    let curl = |client_cert: bool| {
        let client = client_cert.then_some((client.cert.as_path(), client.key.as_path()));
        mesh.https_through_gateway("httpbin.example.com", "/status/418", &ca_chain, client)
    };
    let settle = |client_cert: bool, expected: &str, what: &str| {
        until(what, Duration::from_secs(60), || expect(curl(client_cert).as_str(), expected));
    };
    settle(false, "418 HTTP/2", "SIMPLE TLS");

    create_secret(&["generic", "istio-ingressgateway-ca-certs", &format!("--from-file={}", path(&ca_chain))]);
    mounted("/etc/istio/ingressgateway-ca-certs", "ca-chain.cert.pem");
    mesh.apply_yaml(&secure_httpbin_gateway("MUTUAL"));
    settle(false, "000 HTTP/0", "MUTUAL without a client certificate");
    settle(true, "418 HTTP/2", "MUTUAL with a client certificate");
    assert_eq!(curl(false), "000 HTTP/0", "without a client certificate the handshake still fails");
}
