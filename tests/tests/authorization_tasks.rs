//! The Istio 1.4 authorization tasks, step by step as the docs give them, on the local
//! platform — once with the built-in proxy as every sidecar, once with a stock Envoy. One demo
//! installation with Bookinfo serves a plane's tasks; every Bookinfo hop uses mutual TLS (the
//! tasks' prerequisite: Bookinfo's `destination-rule-all-mtls.yaml` over the installation's
//! PERMISSIVE policy), so each service knows who calls it.
//!
//! "Authorization for HTTP traffic" with v1beta1 AuthorizationPolicy: `deny-all` gives
//! `RBAC: access denied`; `productpage-viewer` gives the page with both fetch errors;
//! `details-viewer` and `reviews-viewer` (productpage's account) bring details and reviews
//! back, with "Ratings service is currently unavailable"; `ratings-viewer` (reviews' account)
//! brings the stars. A policy on the ingress gateway lets only the page's paths through it.
//!
//! The mesh runs as trust domain `new-td`: trust-domain migration shows a policy naming
//! `old-td` refused until the mesh config's `trustDomainAliases` names it.
//!
//! End-user authentication (origin JWT, per-path trigger rules, with mutual TLS, an identity
//! provider gone away) and JWT claims in authorization run on `httpbin.foo` ([`end_user`]).
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::time::{Duration, Instant};

use e2e::local::{sample, LocalMesh, Plane, Task};

#[path = "authorization_tasks/end_user.rs"]
mod end_user;

const TASKS: [(&str, Task); 9] = [
    ("authorization for HTTP traffic (v1beta1)", http_traffic),
    ("authorization for HTTP traffic (v1alpha1)", http_traffic_v1alpha1),
    ("authorization permissive mode (v1alpha1)", permissive_v1alpha1),
    ("trust domain migration", trust_domain_migration),
    ("authorization on the ingress gateway (v1beta1)", ingress_gateway),
    ("end-user authentication", end_user::end_user_authentication),
    ("end-user authentication with mutual TLS", end_user::end_user_with_mutual_tls),
    ("end-user authentication at the ingress gateway", end_user::ingress_gateway_jwt),
    ("authorization with JWT claims (groups and lists)", end_user::jwt_claims),
];

const POLICIES: [&str; 5] = ["deny-all", "productpage-viewer", "details-viewer", "reviews-viewer", "ratings-viewer"];

/// Every Bookinfo hop over mutual TLS: the samples' rules with ISTIO_MUTUAL (the demo's own
/// rules for Bookinfo's services, which set no TLS, would win over a mesh-wide one).
fn mutual_tls(mesh: &LocalMesh) {
    mesh.apply(&sample("bookinfo/networking/destination-rule-all-mtls.yaml"));
    until_page(mesh, "Bookinfo over mutual TLS", |status, page| status == 200 && page.contains("Book Details"));
}

/// The installation: the mesh's trust domain is `new-td` (the migration task's; the other
/// tasks' `cluster.local/…` principals stand for it, as in 1.4), and Pilot trusts the
/// end-user tasks' identity provider.
fn install_values(mesh: &LocalMesh) -> Vec<String> {
    let mut values = end_user::install_values(mesh);
    values.push("values.global.trustDomain=new-td".to_string());
    values
}

fn set_up(mesh: &LocalMesh) {
    mutual_tls(mesh);
    end_user::set_up(mesh);
}

fn reset(mesh: &LocalMesh) {
    for name in POLICIES {
        mesh.delete_in("default", "authorizationpolicies", name);
    }
    mesh.delete_in("istio-system", "authorizationpolicies", "ingress-paths");
    mesh.delete("clusterrbacconfigs", "default");
    mesh.delete("authorizationpolicies", "details-old-td");
    set_trust_domain_aliases(mesh, &[]);
    for kind in ["serviceroles", "servicerolebindings"] {
        for name in mesh.names(kind) {
            mesh.delete(kind, &name);
        }
    }
    end_user::reset(mesh);
}

/// Waits until one `/productpage` through the gateway satisfies `check` (status, body), twice
/// in a row when the answer does not depend on which reviews version served it.
fn until_page(mesh: &LocalMesh, what: &str, check: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
        if check(status, &body) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} ({:?}): last answer {status}:\n{body}", mesh.plane);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The docs' viewer policy for `app`, allowing GET from `principal` (anyone when `None`).
fn viewer(name: &str, app: &str, principal: Option<&str>) -> String {
    let from = principal
        .map(|principal| format!("  - from:\n    - source:\n        principals: [\"{principal}\"]\n    to:\n"))
        .unwrap_or_else(|| "  - to:\n".to_string());
    format!(
        "apiVersion: \"security.istio.io/v1beta1\"
kind: \"AuthorizationPolicy\"
metadata:
  name: \"{name}\"
  namespace: default
spec:
  selector:
    matchLabels:
      app: {app}
  rules:
{from}    - operation:
        methods: [\"GET\"]
"
    )
}

fn http_traffic(mesh: &LocalMesh) {
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: default
spec:
  {}
",
    );
    until_page(mesh, "deny-all", |status, page| status == 403 && page.contains("RBAC: access denied"));
    // `istioctl x describe pod productpage-v1 --why` names the denial.
    mesh.describe_why("productpage-v1", &["x 403 ", "denied by RBAC: no authorization policy allows this request"]);

    mesh.apply_yaml(&viewer("productpage-viewer", "productpage", None));
    until_page(mesh, "productpage-viewer", |status, page| {
        status == 200
            && page.contains("Error fetching product details!")
            && page.contains("Error fetching product reviews!")
    });

    let productpage = "cluster.local/ns/default/sa/bookinfo-productpage";
    mesh.apply_yaml(&viewer("details-viewer", "details", Some(productpage)));
    mesh.apply_yaml(&viewer("reviews-viewer", "reviews", Some(productpage)));
    until_page(mesh, "details-viewer and reviews-viewer", |status, page| {
        status == 200
            && !page.contains("Error fetching product details!")
            && !page.contains("Error fetching product reviews!")
            && page.contains("Ratings service is currently unavailable")
    });

    mesh.apply_yaml(&viewer("ratings-viewer", "ratings", Some("cluster.local/ns/default/sa/bookinfo-reviews")));
    until_page(mesh, "ratings-viewer", |status, page| {
        let (red, black) = e2e::local::stars(page);
        status == 200 && red + black > 0 && !page.contains("Ratings service is currently unavailable")
    });

    // `istioctl x authz check` shows what guards productpage's inbound port.
    let (code, report, err) = mesh.istioctl(&["x", "authz", "check", "productpage-v1"]);
    assert_eq!(code, 0, "{err}");
    let port = report.lines().find(|line| line.starts_with("virtualInbound:9080")).unwrap_or_default();
    assert!(port.contains("yes (PERMISSIVE)"), "{report}");
    assert!(port.ends_with("yes (1: ns[default]-policy[productpage-viewer]-rule[0])"), "{report}");
}

/// The same task with the v1alpha1 samples (`samples/bookinfo/platform/kube/rbac/`):
/// ClusterRbacConfig ON for `default` denies everything; the namespace-wide `service-viewer`
/// lets the page back whole; then service by service as with v1beta1.
fn http_traffic_v1alpha1(mesh: &LocalMesh) {
    let rbac = |file: &str| sample(&format!("bookinfo/platform/kube/rbac/{file}"));
    mesh.apply(&rbac("rbac-config-ON.yaml"));
    until_page(mesh, "rbac-config-ON", |status, page| status == 403 && page.contains("RBAC: access denied"));
    mesh.apply(&rbac("namespace-policy.yaml"));
    until_page(mesh, "namespace-policy", |status, page| {
        let (red, black) = e2e::local::stars(page);
        status == 200 && !page.contains("Error fetching") && red + black > 0
    });
    mesh.delete("servicerolebindings", "bind-service-viewer");
    mesh.delete("serviceroles", "service-viewer");
    until_page(mesh, "namespace-policy removed", |status, _| status == 403);
    mesh.apply(&rbac("productpage-policy.yaml"));
    until_page(mesh, "productpage-policy", |status, page| {
        status == 200
            && page.contains("Error fetching product details!")
            && page.contains("Error fetching product reviews!")
    });
    mesh.apply(&rbac("details-reviews-policy.yaml"));
    until_page(mesh, "details-reviews-policy", |status, page| {
        status == 200
            && !page.contains("Error fetching product details!")
            && !page.contains("Error fetching product reviews!")
            && page.contains("Ratings service is currently unavailable")
    });
    mesh.apply(&rbac("ratings-policy.yaml"));
    until_page(mesh, "ratings-policy", |status, page| {
        let (red, black) = e2e::local::stars(page);
        status == 200 && red + black > 0 && !page.contains("Ratings service is currently unavailable")
    });
}

/// Permissive mode: with the global `enforcement_mode: PERMISSIVE` nothing is enforced (the
/// page is whole with no role bound) and the sidecars count what would be denied; a
/// `mode: PERMISSIVE` binding is only counted, so details and reviews stay refused.
fn permissive_v1alpha1(mesh: &LocalMesh) {
    let rbac = |file: &str| sample(&format!("bookinfo/platform/kube/rbac/{file}"));
    mesh.apply(&rbac("rbac-config-on-permissive.yaml"));
    let productpage = mesh.pods().iter().find_map(|pod| {
        let name = pod["metadata"]["name"].as_str()?;
        (name.starts_with("productpage-") && pod["metadata"]["namespace"] == "default").then(|| name.to_string())
    });
    let productpage = productpage.expect("a productpage pod");
    until_page(mesh, "global permissive mode enforces nothing", |status, page| {
        status == 200 && !page.contains("Error fetching")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while mesh.proxy_stat(&productpage, "http.inbound_0.0.0.0_9080.rbac.shadow_denied") == 0 {
        assert!(Instant::now() < deadline, "no shadow denial counted on {productpage} ({:?})", mesh.plane);
        e2e::http_request(&mesh.gateway, "GET", "/productpage", &[], "");
        std::thread::sleep(Duration::from_millis(300));
    }
    mesh.apply(&rbac("rbac-config-ON.yaml"));
    mesh.apply(&rbac("productpage-policy.yaml"));
    mesh.apply(&rbac("details-reviews-policy-permissive.yaml"));
    until_page(mesh, "a permissive binding for details and reviews", |status, page| {
        status == 200
            && page.contains("Error fetching product details!")
            && page.contains("Error fetching product reviews!")
    });
}

/// Sets the mesh config's `trustDomainAliases` through the `istio` ConfigMap, as editing it
/// with kubectl does.
fn set_trust_domain_aliases(mesh: &LocalMesh, aliases: &[&str]) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "json"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let mut config_map: serde_json::Value = serde_json::from_str(&config_map).expect("ConfigMap JSON");
    let current = config_map["data"]["mesh"].as_str().unwrap_or_default().to_string();
    let mut mesh_config: serde_json::Value = serde_yaml::from_str(&current).expect("mesh config YAML");
    if aliases.is_empty() {
        if let Some(fields) = mesh_config.as_object_mut() {
            fields.remove("trustDomainAliases");
        }
    } else {
        mesh_config["trustDomainAliases"] = serde_json::json!(aliases);
    }
    let updated = serde_yaml::to_string(&mesh_config).expect("mesh config YAML");
    if serde_yaml::from_str::<serde_json::Value>(&updated).ok() != serde_yaml::from_str(&current).ok() {
        config_map["data"]["mesh"] = serde_json::Value::String(updated);
        mesh.apply_yaml(&config_map.to_string());
    }
}

/// Trust-domain migration, as the 1.4 task shows it: the mesh runs as `new-td` (installed with
/// `values.global.trustDomain=new-td`) and a policy still names `old-td`'s identity of
/// productpage, so details refuses it; with `trustDomainAliases: [old-td]` in the mesh
/// config the old name stands for the new identity and details answers again.
fn trust_domain_migration(mesh: &LocalMesh) {
    let (code, text, err) = mesh.istioctl(&[
        "x",
        "local",
        "exec",
        "productpage",
        "-c",
        "istio-proxy",
        "--",
        "openssl",
        "x509",
        "-in",
        "/etc/certs/cert-chain.pem",
        "-text",
        "-noout",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("URI:spiffe://new-td/ns/default/sa/bookinfo-productpage"), "productpage's identity:\n{text}");
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: details-old-td
  namespace: default
spec:
  selector:
    matchLabels:
      app: details
  rules:
  - from:
    - source:
        principals:
        - old-td/ns/default/sa/bookinfo-productpage
    to:
    - operation:
        methods:
        - GET
",
    );
    until_page(mesh, "a policy naming the old trust domain", |status, page| {
        status == 200 && page.contains("Error fetching product details!")
    });
    set_trust_domain_aliases(mesh, &["old-td"]);
    until_page(mesh, "trustDomainAliases: [old-td]", |status, page| {
        status == 200 && !page.contains("Error fetching product details!")
    });
}

/// A policy selecting the ingress gateway (in its namespace, `istio-system`): only Bookinfo's
/// page and its static files may be asked for through it; the API gets 403.
fn ingress_gateway(mesh: &LocalMesh) {
    let get = |path: &str| e2e::http_request(&mesh.gateway, "GET", path, &[], "").0;
    // The previous task's reset has just changed the mesh's policies and trust domain aliases;
    // the API answers once the gateway and productpage have that config.
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/api/v1/products") != 200 {
        assert!(Instant::now() < deadline, "the API never answered before the policy ({:?})", mesh.plane);
        std::thread::sleep(Duration::from_millis(300));
    }
    mesh.apply_yaml(
        "apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: ingress-paths
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  rules:
  - to:
    - operation:
        paths: [\"/productpage\", \"/static/*\"]
",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/api/v1/products") != 403 {
        assert!(Instant::now() < deadline, "the gateway never refused /api/v1/products ({:?})", mesh.plane);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(get("/productpage"), 200);
}

fn run_tasks(plane: Plane) {
    e2e::local::run_tasks_prepared(plane, install_values, &TASKS, set_up, reset);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn authorization_tasks_with_the_builtin_proxy() {
    run_tasks(Plane::Builtin);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn authorization_tasks_with_envoy() {
    run_tasks(Plane::Envoy);
}
