//! Pilot from the outside, with no Envoy: `pilot discovery --configDir` over Bookinfo-shaped
//! services and the 1.4 `reviews-test-v2` sample; `istioctl x xds` connects as a sidecar and
//! prints what Pilot sends as Envoy v3 JSON, and `/debug/config_dump` shows the same resources.

use std::path::Path;

use e2e::fixtures::ServiceEntry;
use e2e::{http_get, run, start_pilot};
use serde_json::Value;

fn services() -> String {
    ServiceEntry::bookinfo("reviews")
        .address("10.96.0.12")
        .version_at("10.1.0.21", "v1", None)
        .version_at("10.1.0.22", "v2", None)
        .to_string()
}

const SIDECAR: &str = "sidecar~10.1.0.11~productpage-v1-1.default~default.svc.cluster.local";

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/bookinfo/networking").join(name)
}

fn xds(address: &str, kind: &str) -> Value {
    let (code, stdout, stderr) =
        run("istioctl", &["x", "xds", "--address", address, "--node", SIDECAR, "--type", kind], None);
    assert_eq!(code, 0, "istioctl x xds --type {kind} failed: {stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    printed[0].clone()
}

#[test]
fn istioctl_x_xds_prints_what_pilot_sends_as_envoy_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("services.yaml"), services()).expect("write");
    for name in ["destination-rule-reviews.yaml", "virtual-service-reviews-test-v2.yaml"] {
        std::fs::copy(sample(name), dir.path().join(name)).expect("copy sample");
    }
    let pilot = start_pilot(&["--configDir", &dir.path().display().to_string()]);

    let routes = xds(&pilot.xds, "rds");
    assert_eq!(routes["type_url"], "type.googleapis.com/envoy.config.route.v3.RouteConfiguration");
    let route_9080 = routes["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "9080")
        .unwrap_or_else(|| panic!("no route 9080 in {routes:#}"));
    assert_eq!(route_9080["@type"], "type.googleapis.com/envoy.config.route.v3.RouteConfiguration");
    let reviews = route_9080["virtual_hosts"]
        .as_array()
        .expect("virtual hosts")
        .iter()
        .find(|vh| vh["name"] == "reviews.default.svc.cluster.local:9080")
        .unwrap_or_else(|| panic!("no reviews virtual host in {route_9080:#}"));
    let domains: Vec<&str> = reviews["domains"].as_array().expect("domains").iter().filter_map(Value::as_str).collect();
    assert!(domains.contains(&"reviews") && domains.contains(&"10.96.0.12"), "{domains:?}");
    let first = &reviews["routes"][0];
    assert_eq!(first["match"]["headers"][0]["name"], "end-user", "{first:#}");
    assert_eq!(first["route"]["cluster"], "outbound|9080|v2|reviews.default.svc.cluster.local", "{first:#}");

    let endpoints = xds(&pilot.xds, "eds");
    let v2 = endpoints["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["cluster_name"] == "outbound|9080|v2|reviews.default.svc.cluster.local")
        .unwrap_or_else(|| panic!("no v2 subset endpoints in {endpoints:#}"));
    let address = &v2["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!((address["address"].as_str(), address["port_value"].as_u64()), (Some("10.1.0.22"), Some(9080)));

    let clusters = xds(&pilot.xds, "cds");
    let names: Vec<&str> =
        clusters["resources"].as_array().expect("resources").iter().filter_map(|c| c["name"].as_str()).collect();
    for expected in ["BlackHoleCluster", "PassthroughCluster", "outbound|9080|v1|reviews.default.svc.cluster.local"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    // The debug endpoint renders the same resources in Envoy's /config_dump shape.
    let (status, body) = http_get(&pilot.debug, &format!("/debug/config_dump?proxyID={SIDECAR}"));
    assert_eq!(status, 200, "{body}");
    let dump: Value = serde_json::from_str(&body).expect("config_dump JSON");
    assert_eq!(dump["configs"][2]["@type"], "type.googleapis.com/envoy.admin.v3.RoutesConfigDump");
    assert!(body.contains("outbound|9080|v2|reviews.default.svc.cluster.local"), "{body}");
    assert!(dump["configs"][0]["dynamic_active_clusters"].as_array().is_some_and(|c| c.len() >= 4), "{body}");
}

fn clusters(address: &str, node: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["x", "xds", "--address", address, "--node", node, "--type", "cds"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run("istioctl", &args, None);
    assert_eq!(code, 0, "istioctl x xds failed: {stderr}");
    let printed: Value = serde_json::from_str(&stdout).expect("JSON");
    printed[0]["resources"].as_array().expect("resources").clone()
}

fn cluster_names(address: &str, node: &str) -> Vec<String> {
    clusters(address, node, &[]).iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect()
}

#[test]
fn sidecar_resources_and_export_to_scope_what_each_proxy_gets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("services.yaml"), services()).expect("write");
    let httpbin = ServiceEntry::new("httpbin", "other")
        .host("httpbin.other.svc.cluster.local")
        .port(8000, "http", "HTTP")
        .endpoint("10.1.0.40");
    let internal_db = ServiceEntry::new("internal-db", "default")
        .host("db.default.svc.cluster.local")
        .export_to(".")
        .port(5432, "tcp", "TCP")
        .endpoint("10.1.0.50");
    std::fs::write(
        dir.path().join("scoping.yaml"),
        format!(
            "{httpbin}---\n{internal_db}---\n{}",
            "apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: [./*]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: httpbin-ingress, namespace: other}
spec:
  workloadSelector: {labels: {app: httpbin}}
  ingress: [{port: {number: 8000, protocol: HTTP, name: http}, defaultEndpoint: '127.0.0.1:8888'}]
  egress: [{hosts: ['*/*']}]
"
        ),
    )
    .expect("write");
    let pilot = start_pilot(&["--configDir", &dir.path().display().to_string()]);

    // A sidecar in `default`: its Sidecar lets it see only its own namespace.
    let in_default = cluster_names(&pilot.xds, SIDECAR);
    assert!(in_default.iter().any(|c| c == "outbound|9080||reviews.default.svc.cluster.local"), "{in_default:?}");
    assert!(in_default.iter().any(|c| c == "outbound|5432||db.default.svc.cluster.local"), "{in_default:?}");
    assert!(!in_default.iter().any(|c| c.contains("httpbin.other")), "Sidecar egress must hide other namespaces");

    // A sidecar in `other` has no Sidecar: it sees everything exported to it, not `db`.
    let in_other = cluster_names(&pilot.xds, "sidecar~10.1.0.40~httpbin-1.other~other.svc.cluster.local");
    assert!(in_other.iter().any(|c| c == "outbound|8000||httpbin.other.svc.cluster.local"), "{in_other:?}");
    assert!(in_other.iter().any(|c| c == "outbound|9080||reviews.default.svc.cluster.local"), "{in_other:?}");
    assert!(!in_other.iter().any(|c| c.contains("db.default")), "exportTo: [.] must hide db from other namespaces");

    // httpbin's own Sidecar sends its inbound port 8000 to where the app listens, 8888.
    let httpbin = clusters(
        &pilot.xds,
        "sidecar~10.1.0.40~httpbin-1.other~other.svc.cluster.local",
        &["--meta", r#"LABELS={"app":"httpbin"}"#],
    );
    let inbound = httpbin
        .iter()
        .find(|c| c["name"] == "inbound|8000|http|httpbin.other.svc.cluster.local")
        .unwrap_or_else(|| panic!("no inbound cluster: {httpbin:?}"));
    let address =
        &inbound["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!((address["address"].as_str(), address["port_value"].as_u64()), (Some("127.0.0.1"), Some(8888)));
}
