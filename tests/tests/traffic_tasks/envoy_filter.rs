//! EnvoyFilter config patches (1.4's `configPatches` form) on Bookinfo: an RBAC filter inserted
//! before the router of ratings' inbound HTTP chain (1.4-style v2 `config`, `envoy.router` and
//! `envoy.http_connection_manager` names) denies every call, so reviews v3 shows that ratings
//! is unavailable; a virtual host MERGE on the ingress gateway adds a response header. Deleting
//! the EnvoyFilter puts everything back.

use super::*;

const RATINGS_DENY_AND_GATEWAY_HEADER: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: ratings-deny
spec:
  workloadSelector:
    labels:
      app: ratings
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 9080
        filterChain:
          filter:
            name: envoy.http_connection_manager
            subFilter:
              name: envoy.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.rbac
        config:
          rules:
            action: DENY
            policies:
              everyone:
                permissions: [{any: true}]
                principals: [{any: true}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: gateway-header
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
  - applyTo: VIRTUAL_HOST
    match:
      context: GATEWAY
      routeConfiguration:
        portNumber: 80
    patch:
      operation: MERGE
      value:
        response_headers_to_add:
        - header: {key: x-envoy-filter, value: config-patches}
"#;

fn gateway_header(mesh: &LocalMesh) -> Option<String> {
    let (_, headers, _) = e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
    headers.into_iter().find(|(name, _)| name.eq_ignore_ascii_case("x-envoy-filter")).map(|(_, value)| value)
}

/// `mesh.settle`, except that a page failing while the proxies take the new listeners (a
/// connection drained mid-request answers 503) counts as not settled yet rather than failing.
fn settle_through_reloads(mesh: &LocalMesh, what: &str, streak: usize, check: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < streak {
        let (status, _, body) = e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
        if status == 200 && check(&body) {
            seen += 1;
        } else {
            seen = 0;
            assert!(
                std::time::Instant::now() < deadline,
                "{what} ({:?}): never settled ({status}):\n{body}",
                mesh.plane
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub(crate) fn envoy_filter_patches(mesh: &LocalMesh) {
    mesh.apply(&networking("virtual-service-reviews-v3.yaml"));
    mesh.settle(None, "reviews-v3", 5, |_, page| stars(page) == (2, 0));
    assert_eq!(gateway_header(mesh), None);

    let file = mesh.scratch().join("envoy-filters.yaml");
    std::fs::write(&file, RATINGS_DENY_AND_GATEWAY_HEADER).expect("write the EnvoyFilters");
    mesh.apply(&file);
    settle_through_reloads(mesh, "ratings denied by the inserted RBAC filter", 5, |page| {
        page.matches("Ratings service is currently unavailable").count() == 2
    });
    until("the gateway's patched virtual host", Duration::from_secs(30), || {
        expect(gateway_header(mesh), Some("config-patches".to_string()))
    });

    mesh.delete("envoyfilters", "ratings-deny");
    mesh.delete_in("istio-system", "envoyfilters", "gateway-header");
    settle_through_reloads(mesh, "ratings back without the EnvoyFilter", 5, |page| stars(page) == (2, 0));
    until("the gateway without the patch", Duration::from_secs(30), || expect(gateway_header(mesh), None));
}
