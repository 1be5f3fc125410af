//! Using an external HTTPS proxy: the application talks to a CONNECT proxy outside the mesh
//! (its own network namespace), which the mesh knows only as a TCP ServiceEntry by address.

use e2e::outside::{OutsideHost, ADDRESS, NGINX_ADDRESS, PROXY_PORT};

use super::*;
use crate::egress_services::WIKIPEDIA;

/// With `REGISTRY_ONLY`, `HTTPS_PROXY=PROXY curl https://en.wikipedia.org/…` fails until the
/// task's TCP ServiceEntry for the proxy's address is applied; then the page comes, the
/// sidecar's log has the TCP connection on `outbound|3128||my-company-proxy.com`, and the
/// proxy's log has the CONNECT.
pub(crate) fn external_https_proxy(mesh: &LocalMesh) {
    let mut outside = OutsideHost::start();
    outside.serve_nginx_with_certificate(WIKIPEDIA, &["en.wikipedia.org"], &[443]);
    outside.serve_connect_proxy(&format!("{NGINX_ADDRESS} en.wikipedia.org\n"));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);

    let proxy = format!("{ADDRESS}:{PROXY_PORT}");
    let script = format!("HTTPS_PROXY={proxy} curl -sk --max-time 10 https://en.wikipedia.org/wiki/Main_Page");
    let page = || mesh.try_exec("sleep", "sleep", &["sh", "-c", &script]).1;
    let title = "<title>Wikipedia, the free encyclopedia</title>";
    until("the page through the proxy under ALLOW_ANY", Duration::from_secs(60), || {
        if page().contains(title) {
            Ok(())
        } else {
            Err("no page".to_string())
        }
    });
    set_outbound_traffic_policy(mesh, "REGISTRY_ONLY");
    // Three refusals in a row: REGISTRY_ONLY has reached the sidecar.
    let mut refused = 0;
    until("the proxy is out of reach without a ServiceEntry", Duration::from_secs(60), || {
        refused = if page().contains(title) { 0 } else { refused + 1 };
        if refused >= 3 {
            Ok(())
        } else {
            Err(format!("{refused} refusals in a row"))
        }
    });
    mesh.apply_yaml(&format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: proxy
spec:
  hosts:
  - my-company-proxy.com # ignored
  addresses:
  - {ADDRESS}/32
  ports:
  - number: {PROXY_PORT}
    name: tcp
    protocol: TCP
  location: MESH_EXTERNAL
"
    ));
    until("the page through the proxy", Duration::from_secs(60), || {
        let page = page();
        if page.contains(title) {
            Ok(())
        } else {
            Err(page)
        }
    });
    // Envoy writes its access log out every few seconds.
    let cluster = format!("outbound|{PROXY_PORT}||my-company-proxy.com");
    until("the sidecar's log line for the connection to the proxy", Duration::from_secs(30), || {
        let (_, sidecar_log, _) = mesh.istioctl(&["x", "local", "logs", "sleep", "-c", "istio-proxy"]);
        if sidecar_log.lines().any(|line| line.contains(&cluster)) {
            Ok(())
        } else {
            Err(sidecar_log.lines().filter(|line| line.contains("3128")).collect::<Vec<_>>().join("\n"))
        }
    });
    let proxy_log = outside.proxy_log();
    assert!(proxy_log.contains("CONNECT en.wikipedia.org:443"), "the proxy's log has the CONNECT:\n{proxy_log}");
    mesh.set_external_hosts("");
}
