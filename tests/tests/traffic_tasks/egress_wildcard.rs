//! Egress using wildcard hosts: `*.wikipedia.org` reached directly by the sidecars, through
//! the egress gateway to a single upstream (`www.wikipedia.org`) that serves every language,
//! and through a gateway with an SNI proxy to arbitrary domains ([`super::egress_sni_proxy`]).

use e2e::outside::{OutsideHost, NGINX_ADDRESS};

use super::egress_sni_proxy::{refused_by_a_stock_envoy, through_sni_proxy, Tab};
use super::*;

/// The Wikipedia languages the tasks visit: host, page path, and the page's title.
pub(crate) const LANGUAGES: [(&str, &str, &str); 4] = [
    ("en.wikipedia.org", "/wiki/Main_Page", "Wikipedia, the free encyclopedia"),
    ("de.wikipedia.org", "/wiki/Wikipedia:Hauptseite", "Wikipedia – Die freie Enzyklopädie"),
    ("es.wikipedia.org", "/wiki/Wikipedia:Portada", "Wikipedia, la enciclopedia libre"),
    ("fr.wikipedia.org", "/wiki/Wikip%C3%A9dia:Accueil_principal", "Wikipédia, l'encyclopédie libre"),
];

/// The outside Wikipedia, one address for every language, the page picked by SNI; the
/// cluster DNS names it `www.wikipedia.org` and each language's host.
pub(crate) fn outside_wikipedia(mesh: &LocalMesh) -> OutsideHost {
    let servers: String = LANGUAGES
        .iter()
        .map(|(host, _, title)| {
            format!(
                "server {{
  listen 443 ssl;
  server_name {host};
  ssl_certificate {{dir}}/tls.crt;
  ssl_certificate_key {{dir}}/tls.key;
  location / {{
    default_type text/html;
    return 200 \"<html><head><title>{title}</title></head></html>\\n\";
  }}
}}
"
            )
        })
        .collect();
    let mut outside = OutsideHost::start();
    outside.serve_nginx_with_certificate(&servers, &["*.wikipedia.org"], &[443]);
    let hosts: Vec<&str> = LANGUAGES.iter().map(|(host, _, _)| *host).collect();
    mesh.set_external_hosts(&format!("{NGINX_ADDRESS} {} www.wikipedia.org\n", hosts.join(" ")));
    outside
}

/// The `<title>` line of the `languages` main pages as `pod`'s container of that name gets
/// them, as the task's curl and grep: empty where the page did not arrive.
pub(crate) fn titles_from(mesh: &LocalMesh, pod: &str, languages: &[&str]) -> Vec<String> {
    languages
        .iter()
        .filter_map(|language| LANGUAGES.iter().find(|(host, _, _)| host.starts_with(&format!("{language}."))))
        .map(|(host, path, _)| {
            let url = format!("https://{host}{path}");
            let (_, page, _) = mesh.try_exec(pod, pod, &["curl", "-sk", "--max-time", "10", &url]);
            let start = page.find("<title>").unwrap_or(page.len());
            let end = page.find("</title>").map_or(start, |end| end + "</title>".len());
            page.get(start..end).unwrap_or_default().to_string()
        })
        .collect()
}

/// The `<title>` lines the pages of `languages` should have.
pub(crate) fn expected_titles_of(languages: &[&str]) -> Vec<String> {
    languages
        .iter()
        .filter_map(|language| LANGUAGES.iter().find(|(host, _, _)| host.starts_with(&format!("{language}."))))
        .map(|(_, _, title)| format!("<title>{title}</title>"))
        .collect()
}

/// The English and German titles from the sleep pod, as the task's command.
fn titles(mesh: &LocalMesh) -> Vec<String> {
    titles_from(mesh, "sleep", &["en", "de"])
}

fn expected_titles() -> Vec<String> {
    expected_titles_of(&["en", "de"])
}

/// Direct: a ServiceEntry for `*.wikipedia.org` on 443 (TLS) lets both languages through the
/// sidecar. Through the egress gateway: the wildcard routed by SNI to the gateway, and from there
/// to `www.wikipedia.org`; the gateway's connection count on that cluster grows.
pub(crate) fn egress_wildcard_hosts(mesh: &LocalMesh) {
    let _outside = outside_wikipedia(mesh);
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);
    set_outbound_traffic_policy(mesh, "REGISTRY_ONLY");

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: wikipedia
spec:
  hosts:
  - \"*.wikipedia.org\"
  ports:
  - number: 443
    name: tls
    protocol: TLS
",
    );
    until("both languages through the sidecar", Duration::from_secs(60), || expect(titles(mesh), expected_titles()));
    if mesh.plane == Plane::Envoy {
        refused_by_a_stock_envoy(mesh, || titles(mesh), expected_titles());
    }
    mesh.delete("serviceentries", "wikipedia");

    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    hosts:
    - \"*.wikipedia.org\"
    tls:
      mode: PASSTHROUGH
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-wikipedia
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
    - name: wikipedia
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-wikipedia-through-egress-gateway
spec:
  hosts:
  - \"*.wikipedia.org\"
  gateways:
  - mesh
  - istio-egressgateway
  tls:
  - match:
    - gateways:
      - mesh
      port: 443
      sni_hosts:
      - \"*.wikipedia.org\"
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: wikipedia
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
      sni_hosts:
      - \"*.wikipedia.org\"
    route:
    - destination:
        host: www.wikipedia.org
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: www-wikipedia
spec:
  hosts:
  - www.wikipedia.org
  ports:
  - number: 443
    name: tls
    protocol: TLS
  resolution: DNS
",
    );
    let gateway_pod = mesh.pod_name("istio", "egressgateway").expect("the egress gateway's pod");
    // The task reads the gateway's `clusters`; its stats count the same connections.
    let connections = || {
        let stats = mesh.proxy_admin(&gateway_pod, "istio-system", "stats");
        stats
            .lines()
            .filter_map(|line| line.strip_prefix("cluster.outbound|443||www.wikipedia.org.upstream_cx_total: "))
            .filter_map(|value| value.trim().parse::<u64>().ok())
            .sum::<u64>()
    };
    until("both languages through the egress gateway", Duration::from_secs(60), || {
        let seen = titles(mesh);
        let through_gateway = connections();
        if seen == expected_titles() && through_gateway >= 2 {
            Ok(())
        } else {
            Err(format!("titles {seen:?}, {through_gateway} gateway connections to www.wikipedia.org"))
        }
    });
    // The task's cleanup of the single-server configuration.
    mesh.delete("serviceentries", "www-wikipedia");
    mesh.delete("gateways", "istio-egressgateway");
    mesh.delete("virtualservices", "direct-wikipedia-through-egress-gateway");
    mesh.delete("destinationrules", "egressgateway-for-wikipedia");

    // Arbitrary domains through the gateway with the SNI proxy: with mutual TLS to the gateway
    // where the proxies have istio-proxy's filters, by TLS passthrough where they do not.
    let tab = if mesh.plane == Plane::Builtin { Tab::MutualTls } else { Tab::Passthrough };
    through_sni_proxy(mesh, tab, || titles(mesh), expected_titles());
    mesh.set_external_hosts("");
}
