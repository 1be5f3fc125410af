//! Kubernetes Services for egress traffic: an `ExternalName` Service for an external host, and
//! a Service with Endpoints written by hand for an external address, each reached by its
//! in-cluster name from a pod outside the mesh and from one inside it.

use e2e::outside::{OutsideHost, ADDRESS, NGINX_ADDRESS};

use super::*;

/// The outside `en.wikipedia.org`: HTTPS with the page title the tasks grep for.
pub(crate) const WIKIPEDIA: &str = "server {
  listen 443 ssl;
  ssl_certificate {dir}/tls.crt;
  ssl_certificate_key {dir}/tls.key;
  location / {
    default_type text/html;
    return 200 '<html><head><title>Wikipedia, the free encyclopedia</title></head></html>\\n';
  }
}
";

/// `curl` in the sleep pod of `namespace`, its output.
fn curl_in(mesh: &LocalMesh, namespace: &str, args: &[&str]) -> String {
    let mut command =
        vec!["x", "local", "exec", "sleep", "-n", namespace, "-c", "sleep", "--", "curl", "-s", "--max-time", "10"];
    command.extend(args);
    mesh.istioctl(&command).1
}

fn sidecar_log_has(mesh: &LocalMesh, cluster: &str) -> bool {
    let (_, log, _) = mesh.istioctl(&["x", "local", "logs", "sleep", "-c", "istio-proxy"]);
    log.lines().any(|line| line.contains(cluster))
}

fn title(page: &str) -> Option<&str> {
    let start = page.find("<title>")?;
    let end = page[start..].find("</title>")? + start + "</title>".len();
    Some(&page[start..end])
}

/// The task's two Services: `my-httpbin` (ExternalName `httpbin.org`) answers `/headers` from
/// outside the mesh directly and, with the DISABLE DestinationRule, from inside it through
/// the sidecar (its access log names the Service's cluster); `my-wikipedia` (no selector,
/// Endpoints with the external address) serves Wikipedia's page at its ClusterIP to both.
pub(crate) fn kubernetes_services_for_egress(mesh: &LocalMesh) {
    let mut outside = OutsideHost::start();
    outside.serve_nginx_with_certificate(WIKIPEDIA, &["en.wikipedia.org"], &[443]);
    mesh.set_external_hosts(&format!("{ADDRESS} httpbin.org\n"));
    let (code, out, err) = mesh.istioctl(&["x", "local", "create", "namespace", "without-istio"]);
    assert!(code == 0 || err.contains("AlreadyExists"), "{out}{err}");
    let sleep = sample("sleep/sleep.yaml").display().to_string();
    let (code, out, err) = mesh.istioctl(&["x", "local", "apply", "-n", "without-istio", "-f", &sleep]);
    assert_eq!(code, 0, "{out}{err}");
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "without-istio", 1);
    mesh.wait_ready("sleep", "default", 1);

    mesh.apply_yaml(
        "apiVersion: v1
kind: Service
metadata:
  name: my-httpbin
spec:
  type: ExternalName
  externalName: httpbin.org
  ports:
  - name: http
    protocol: TCP
    port: 80
",
    );
    let (code, service, err) = mesh.istioctl(&["x", "local", "get", "service", "my-httpbin", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!service.contains("clusterIP"), "an ExternalName Service has no ClusterIP: {service}");
    let url = "my-httpbin.default.svc.cluster.local/headers";
    until("my-httpbin from outside the mesh", Duration::from_secs(30), || {
        let headers = curl_in(mesh, "without-istio", &[url]);
        let echoed: serde_json::Value = serde_json::from_str(&headers).unwrap_or_default();
        if echoed["headers"]["Host"] == "my-httpbin.default.svc.cluster.local" {
            Ok(())
        } else {
            Err(headers)
        }
    });
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: my-httpbin
spec:
  host: my-httpbin.default.svc.cluster.local
  trafficPolicy:
    tls:
      mode: DISABLE
",
    );
    until("my-httpbin through the sidecar", Duration::from_secs(60), || {
        let headers = curl_in(mesh, "default", &[url]);
        let echoed: serde_json::Value = serde_json::from_str(&headers).unwrap_or_default();
        let routed = sidecar_log_has(mesh, "outbound|80||my-httpbin.default.svc.cluster.local");
        if echoed["headers"]["X-Request-Id"].is_string() && routed {
            Ok(())
        } else {
            Err(format!("routed by the sidecar: {routed}; {headers}"))
        }
    });

    mesh.apply_yaml(&format!(
        "apiVersion: v1
kind: Service
metadata:
  name: my-wikipedia
spec:
  ports:
  - protocol: TCP
    port: 443
    name: tls
---
kind: Endpoints
apiVersion: v1
metadata:
  name: my-wikipedia
subsets:
  - addresses:
      - ip: {NGINX_ADDRESS}
    ports:
      - port: 443
        name: tls
"
    ));
    let cluster_ip = || {
        let (_, service, _) = mesh.istioctl(&["x", "local", "get", "service", "my-wikipedia", "-o", "json"]);
        let service: serde_json::Value = serde_json::from_str(&service).unwrap_or_default();
        service["spec"]["clusterIP"].as_str().unwrap_or_default().to_string()
    };
    until("my-wikipedia has a ClusterIP", Duration::from_secs(30), || {
        if cluster_ip().is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(())
        }
    });
    let resolve = format!("en.wikipedia.org:443:{}", cluster_ip());
    let page_from = |namespace: &str| {
        curl_in(mesh, namespace, &["-k", "--resolve", &resolve, "https://en.wikipedia.org/wiki/Main_Page"])
    };
    let wanted = Some("<title>Wikipedia, the free encyclopedia</title>");
    until("Wikipedia through my-wikipedia from outside the mesh", Duration::from_secs(30), || {
        let page = page_from("without-istio");
        if title(&page) == wanted {
            Ok(())
        } else {
            Err(page)
        }
    });
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: my-wikipedia
spec:
  host: my-wikipedia.default.svc.cluster.local
  trafficPolicy:
    tls:
      mode: DISABLE
",
    );
    until("Wikipedia through my-wikipedia and the sidecar", Duration::from_secs(60), || {
        let page = page_from("default");
        let routed = sidecar_log_has(mesh, "outbound|443||my-wikipedia.default.svc.cluster.local");
        if title(&page) == wanted && routed {
            Ok(())
        } else {
            Err(format!("routed by the sidecar: {routed}; {page}"))
        }
    });

    for name in ["my-httpbin", "my-wikipedia"] {
        mesh.delete("destinationrules", name);
        mesh.delete("services", name);
    }
    mesh.delete("endpoints", "my-wikipedia");
    mesh.delete_in("without-istio", "deployments", "sleep");
    mesh.set_external_hosts("");
}
