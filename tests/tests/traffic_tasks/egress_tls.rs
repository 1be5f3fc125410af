//! Egress TLS origination: the sidecar turns the application's plain HTTP into HTTPS to an
//! external server, as the 1.4 task does for `edition.cnn.com`.

use e2e::outside::{OutsideHost, NGINX_ADDRESS};

use super::*;

/// The outside `edition.cnn.com`: HTTP answers with a redirect to HTTPS, as the real site
/// does; HTTPS serves the page. Each line of its log says which.
const EDITION_CNN: &str = "log_format scheme '$scheme $request $status';
server {
  listen 80;
  access_log {dir}/access.log scheme;
  return 301 https://$host$request_uri;
}
server {
  listen 443 ssl;
  access_log {dir}/access.log scheme;
  ssl_certificate {dir}/tls.crt;
  ssl_certificate_key {dir}/tls.key;
  location / {
    return 200 'the politics page\\n';
  }
}
";

/// The task's first step: the ServiceEntry for 80 and 443 and the TLS route by SNI.
const DIRECT: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: edition-cnn-com
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https-port
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: edition-cnn-com
spec:
  hosts:
  - edition.cnn.com
  tls:
  - match:
    - port: 443
      sni_hosts:
      - edition.cnn.com
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
      weight: 100
";

/// The task's TLS origination: port 443 as HTTP, port 80 rewritten to 443, SIMPLE TLS there.
const ORIGINATION: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: edition-cnn-com
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: http-port-for-tls-origination
    protocol: HTTP
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: edition-cnn-com
spec:
  hosts:
  - edition.cnn.com
  http:
  - match:
    - port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE # initiates HTTPS when accessing edition.cnn.com
";

/// The status lines of `curl -sL -o /dev/null -D - URL` in the sleep pod, as the task runs
/// it (`-k` because the outside server's certificate is a test CA's, not a public one).
fn status_lines(mesh: &LocalMesh, url: &str) -> Vec<String> {
    let (_, out, _) =
        mesh.try_exec("sleep", "sleep", &["curl", "-sLk", "-o", "/dev/null", "-D", "-", "--max-time", "10", url]);
    out.lines().filter(|line| line.starts_with("HTTP/")).map(|line| line.trim().to_string()).collect()
}

/// Egress TLS origination: with the ServiceEntry and SNI route alone, `http://edition.cnn.com/politics`
/// is answered by the server's redirect and then the page over HTTPS the application itself
/// asked for; with the task's VirtualService and SIMPLE DestinationRule, the same URL gets the
/// page at once, and the server logs it as HTTPS.
pub(crate) fn egress_tls_origination(mesh: &LocalMesh) {
    let mut outside = OutsideHost::start();
    outside.serve_nginx_with_certificate(EDITION_CNN, &["edition.cnn.com"], &[80, 443]);
    mesh.set_external_hosts(&format!("{NGINX_ADDRESS} edition.cnn.com\n"));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);

    mesh.apply_yaml(DIRECT);
    until("the redirect, then the page over HTTPS", Duration::from_secs(60), || {
        expect(
            status_lines(mesh, "http://edition.cnn.com/politics"),
            vec!["HTTP/1.1 301 Moved Permanently".to_string(), "HTTP/1.1 200 OK".to_string()],
        )
    });

    mesh.apply_yaml(ORIGINATION);
    until("the page at once, the sidecar originating TLS", Duration::from_secs(60), || {
        expect(status_lines(mesh, "http://edition.cnn.com/politics"), vec!["HTTP/1.1 200 OK".to_string()])
    });
    let log = outside.nginx_log();
    assert!(
        log.lines().last().is_some_and(|line| line == "https GET /politics HTTP/1.1 200"),
        "the server got the request over TLS:\n{log}"
    );
    mesh.delete("destinationrules", "edition-cnn-com");
    mesh.set_external_hosts("");
}
