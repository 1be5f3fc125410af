//! The egress tasks: ALLOW_ANY, REGISTRY_ONLY, ServiceEntries, an external timeout and the
//! egress gateway.

use e2e::fixtures::ServiceEntry;

use super::*;

/// Egress: a server outside the mesh (its own network namespace, named `httpbin.org` and
/// `edition.cnn.com` by cluster DNS). ALLOW_ANY reaches it; REGISTRY_ONLY answers 502; a
/// ServiceEntry opens it again; a 3 s VirtualService timeout makes `/delay/5` a 504 after
/// about 3 s; and traffic for `edition.cnn.com` routed through the egress gateway shows in the
/// gateway's access log.
pub(crate) fn egress(mesh: &LocalMesh) {
    let outside = e2e::outside::OutsideHost::start();
    mesh.set_external_hosts(&format!("{} httpbin.org edition.cnn.com\n", e2e::outside::ADDRESS));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);
    let curl = |url: &str| {
        let (_, out, _) = mesh.try_exec(
            "sleep",
            "sleep",
            &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url],
        );
        out
    };
    let settle = |url: &str, expected: &str, what: &str| {
        until(&format!("{what}: {url}"), Duration::from_secs(60), || expect(curl(url).as_str(), expected));
    };
    settle("http://httpbin.org/headers", "200", "ALLOW_ANY");
    assert!(outside.logged().iter().any(|line| line.contains("GET /headers")), "the outside server saw the request");

    set_outbound_traffic_policy(mesh, "REGISTRY_ONLY");
    settle("http://httpbin.org/headers", "502", "REGISTRY_ONLY");

    mesh.apply_yaml(
        &ServiceEntry::without_namespace("httpbin-ext")
            .host("httpbin.org")
            .port(80, "http", "HTTP")
            .resolution("DNS")
            .mesh_external()
            .to_string(),
    );
    settle("http://httpbin.org/headers", "200", "the httpbin.org ServiceEntry");

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: httpbin-ext
spec:
  hosts:
    - httpbin.org
  http:
  - timeout: 3s
    route:
      - destination:
          host: httpbin.org
        weight: 100
",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let started = std::time::Instant::now();
        let status = curl("http://httpbin.org/delay/5");
        let elapsed = started.elapsed();
        if status == "504" && (Duration::from_millis(2800)..Duration::from_millis(4500)).contains(&elapsed) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the 3 s timeout: {status} after {elapsed:?}");
    }

    let cnn = ServiceEntry::without_namespace("cnn")
        .host("edition.cnn.com")
        .port(80, "http-port", "HTTP")
        .port(443, "https", "HTTPS")
        .resolution("DNS");
    mesh.apply_yaml(&format!(
        "{cnn}---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 80
      weight: 100
"
    ));
    let gateway_log = || {
        let (_, out, _) =
            mesh.istioctl(&["x", "local", "logs", "-n", "istio-system", "istio-egressgateway", "-c", "istio-proxy"]);
        out.lines()
            .filter(|line| line.contains("GET /politics") && line.contains("outbound|80||edition.cnn.com"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The outside httpbin has no /politics: its 404 is the answer that came back.
        let status = curl("http://edition.cnn.com/politics");
        if status == "404" && gateway_log() > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edition.cnn.com through the egress gateway: {status}, {} gateway log lines",
            gateway_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    mesh.set_external_hosts("");
}
