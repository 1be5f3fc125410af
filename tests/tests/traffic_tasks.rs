//! The Istio 1.4 traffic-management tasks, step by step as the docs give them, with the
//! samples' YAML, on the local platform — once with the built-in proxy as every sidecar and
//! gateway, once with a stock Envoy. One demo installation serves all of a plane's tasks; the
//! routing config is reset between tasks. Each task checks what the docs say one should see.
//! `ISTIO_TASKS=a,b` runs only the tasks whose names contain `a` or `b`.

use std::time::Duration;

use e2e::local::{sample, stars, LocalMesh, Plane, Task};
use e2e::until;

#[path = "traffic_tasks/egress.rs"]
mod egress;
#[path = "traffic_tasks/egress_gateway_tls.rs"]
mod egress_gateway_tls;
#[path = "traffic_tasks/egress_monitoring.rs"]
mod egress_monitoring;
#[path = "traffic_tasks/egress_proxy.rs"]
mod egress_proxy;
#[path = "traffic_tasks/egress_services.rs"]
mod egress_services;
#[path = "traffic_tasks/egress_sni_proxy.rs"]
mod egress_sni_proxy;
#[path = "traffic_tasks/egress_tls.rs"]
mod egress_tls;
#[path = "traffic_tasks/egress_wildcard.rs"]
mod egress_wildcard;
#[path = "traffic_tasks/envoy_filter.rs"]
mod envoy_filter;
#[path = "traffic_tasks/gateways.rs"]
mod gateways;
#[path = "traffic_tasks/ingress_k8s.rs"]
mod ingress_k8s;
#[path = "traffic_tasks/locality.rs"]
mod locality;
#[path = "traffic_tasks/passthrough.rs"]
mod passthrough;
#[path = "traffic_tasks/resilience.rs"]
mod resilience;
#[path = "traffic_tasks/routing.rs"]
mod routing;
#[path = "traffic_tasks/scaling.rs"]
mod scaling;
use egress::egress;
use egress_gateway_tls::{
    egress_gateway_https, egress_gateway_mutual_tls_origination, egress_gateway_secret_volumes,
    egress_gateway_tls_origination,
};
use egress_monitoring::monitoring_and_policies_for_tls_egress;
use egress_proxy::external_https_proxy;
use egress_services::kubernetes_services_for_egress;
use egress_tls::egress_tls_origination;
use egress_wildcard::egress_wildcard_hosts;
use envoy_filter::envoy_filter_patches;
use gateways::{ingress_gateway, secure_gateway};
use ingress_k8s::kubernetes_ingress;
use locality::locality_load_balancing;
use passthrough::ingress_tls_passthrough;
use resilience::{circuit_breaking, mirroring, outlier_detection_and_retries};
use routing::{fault_injection, request_routing, request_timeouts, tcp_traffic_shifting, traffic_shifting};
use scaling::scaling;

const TASKS: [(&str, Task); 24] = [
    ("request routing", request_routing),
    ("fault injection", fault_injection),
    ("traffic shifting", traffic_shifting),
    ("TCP traffic shifting", tcp_traffic_shifting),
    ("request timeouts", request_timeouts),
    ("circuit breaking", circuit_breaking),
    ("ingress gateway", ingress_gateway),
    ("secure gateway", secure_gateway),
    ("ingress TLS passthrough", ingress_tls_passthrough),
    ("Kubernetes Ingress", kubernetes_ingress),
    ("mirroring", mirroring),
    ("outlier detection and retries", outlier_detection_and_retries),
    ("egress", egress),
    ("egress gateway HTTPS", egress_gateway_https),
    ("egress TLS origination", egress_tls_origination),
    ("egress gateway TLS origination", egress_gateway_tls_origination),
    ("egress gateway mutual TLS origination", egress_gateway_mutual_tls_origination),
    ("Kubernetes services for egress", kubernetes_services_for_egress),
    ("egress wildcard hosts", egress_wildcard_hosts),
    ("external HTTPS proxy", external_https_proxy),
    ("monitoring and policies for TLS egress", monitoring_and_policies_for_tls_egress),
    ("envoy filter patches", envoy_filter_patches),
    ("scaling", scaling),
    ("locality load balancing", locality_load_balancing),
];

/// `Ok` when `actual` is `expected`, else the difference, for `until`.
fn expect<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("got {actual:?}, not {expected:?}"))
    }
}

fn networking(file: &str) -> std::path::PathBuf {
    sample(&format!("bookinfo/networking/{file}"))
}

/// Back to the demo's starting point: the Bookinfo gateway and destination rules only.
fn reset(mesh: &LocalMesh) {
    for name in mesh.names("virtualservices") {
        if name != "bookinfo" {
            mesh.delete("virtualservices", &name);
        }
    }
    for name in mesh.names("gateways") {
        if name != "bookinfo-gateway" {
            mesh.delete("gateways", &name);
        }
    }
    for name in ["tcp-echo-destination", "httpbin"] {
        mesh.delete("destinationrules", name);
    }
    mesh.delete("deployments", "ratings-v1-unavailable");
    mesh.istioctl(&["x", "local", "scale", "deployment", "details-v1", "--replicas", "1"]);
    mesh.apply(&networking("destination-rule-all.yaml"));
    for name in mesh.names("serviceentries") {
        mesh.delete("serviceentries", &name);
    }
    mesh.delete("destinationrules", "egressgateway-for-cnn");
    for name in
        ["edition-cnn-com", "originate-tls-for-edition-cnn-com", "egressgateway-for-nginx", "originate-mtls-for-nginx"]
    {
        mesh.delete("destinationrules", name);
    }
    // What the SNI-proxy tasks leave behind when they fail half-way.
    egress_sni_proxy::remove_sni_proxy(mesh);
    for account in ["sleep-us", "sleep-canada"] {
        for kind in ["services", "deployments", "serviceaccounts"] {
            mesh.delete(kind, account);
        }
    }
    for file in
        ["sleep/telemetry/sni-logging.yaml", "sleep/policy/sni-wikipedia.yaml", "sleep/policy/sni-serviceaccount.yaml"]
    {
        mesh.delete_file(&sample(file));
    }
    set_outbound_traffic_policy(mesh, "ALLOW_ANY");
    if locality::left_behind(mesh) {
        locality::remove(mesh);
    }
}

/// The egress task's step: the `istio` ConfigMap's mesh config with another
/// `outboundTrafficPolicy` mode, replaced as `kubectl get … | sed … | kubectl replace` does.
fn set_outbound_traffic_policy(mesh: &LocalMesh, mode: &str) {
    let (code, config_map, err) =
        mesh.istioctl(&["x", "local", "get", "configmap", "istio", "-n", "istio-system", "-o", "yaml"]);
    assert_eq!(code, 0, "the istio ConfigMap: {err}");
    let other = if mode == "ALLOW_ANY" { "REGISTRY_ONLY" } else { "ALLOW_ANY" };
    assert!(config_map.contains("mode: "), "no outboundTrafficPolicy mode in the mesh config:\n{config_map}");
    if config_map.contains(&format!("mode: {other}")) {
        mesh.apply_yaml(&config_map.replace(&format!("mode: {other}"), &format!("mode: {mode}")));
    }
}

/// The demo as the tasks want it: the egress gateway mounts the secret volumes the
/// mutual-TLS origination task adds, and Kubernetes Ingresses are served.
fn demo_values() -> Vec<String> {
    let mut values = egress_gateway_secret_volumes();
    values.push("values.global.k8sIngress.enabled=true".to_string());
    values
}

fn run_tasks(plane: Plane) {
    e2e::local::run_tasks_prepared(plane, |_| demo_values(), &TASKS, |_| {}, reset);
}

#[test]
#[ignore = "needs root, iproute2 and iptables; run by ./test.sh"]
fn traffic_tasks_with_the_builtin_proxy() {
    run_tasks(Plane::Builtin);
}

#[test]
#[ignore = "needs root, iproute2, iptables and Envoy; run by ./test.sh"]
fn traffic_tasks_with_envoy() {
    run_tasks(Plane::Envoy);
}
