//! The `Prometheus` addon as 1.4's chart installed it: `prometheus` (docker.io/prom/prometheus
//! v2.12.0 unless `values.prometheus.hub`/`tag` say otherwise) with 1.4's scrape jobs over
//! Kubernetes service discovery (`istio-mesh`, `envoy-stats`, the control plane's monitoring
//! ports, the API servers, nodes, cAdvisor, annotated services and pods, and pods behind
//! mutual TLS with the `istio.default` certificates), its Service, account and role.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use crate::addon::{addon_deployment, addon_image, addon_pod, config_yaml};
use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;

const COMPONENT: &str = "Prometheus";
const NAME: &str = "prometheus";
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let all = chart_labels("prometheus", &[("app", "prometheus")]);
    let mut container =
        k8s::container("prometheus", addon_image(install, "prometheus", "docker.io/prom", "prometheus", "v2.12.0"));
    container.args = Some(vec![
        format!("--storage.tsdb.retention={}", install.str_value("prometheus.retention", "6h")),
        "--config.file=/etc/prometheus/prometheus.yml".to_string(),
    ]);
    container.ports = Some(vec![k8s::named_port(9090, "http")]);
    container.liveness_probe = Some(k8s::http_probe("/-/healthy", 9090, None, None));
    container.readiness_probe = Some(k8s::http_probe("/-/ready", 9090, None, None));
    container.volume_mounts = Some(vec![
        k8s::mount("config-volume", "/etc/prometheus", false),
        k8s::mount("istio-certs", "/etc/istio-certs", false),
    ]);
    container.resources = Some(k8s::resources(&json!({"requests": {"cpu": "10m"}}), "values.prometheus.resources")?);
    let mut pod = addon_pod(Some(NAME), vec![container]);
    let mut certs = k8s::secret_volume("istio-certs", "istio.default", false);
    if let Some(secret) = certs.secret.as_mut() {
        secret.default_mode = Some(420);
    }
    pod.volumes = Some(vec![k8s::config_map_volume("config-volume", NAME, &[]), certs]);
    let deployment =
        addon_deployment(NAME, &namespace, all.clone(), labels(&[("app", "prometheus")]), &[], pod, Some(1));
    let mut service = k8s::service(
        k8s::meta(NAME, &namespace, all.clone()),
        labels(&[("app", "prometheus")]),
        vec![k8s::service_port("http-prometheus", 9090, None)],
    );
    service.metadata.annotations = Some(labels(&[("prometheus.io/scrape", "true")]));
    let config = ConfigMap {
        metadata: k8s::meta(NAME, &namespace, all.clone()),
        data: Some(
            [("prometheus.yml".to_string(), config_yaml(NAME, &scrape_config(install, &namespace))?)]
                .into_iter()
                .collect(),
        ),
        ..ConfigMap::default()
    };
    let role = format!("prometheus-{namespace}");
    let mut objects = vec![k8s::to_value(&config), deployment, k8s::to_value(&service)];
    objects.extend(k8s::account_with_role(
        NAME,
        &namespace,
        all.clone(),
        &role,
        &role,
        vec![
            k8s::rule(&[""], &["nodes", "services", "endpoints", "pods", "nodes/proxy"], &["get", "list", "watch"]),
            k8s::rule(&[""], &["configmaps"], &["get"]),
            k8s_openapi::api::rbac::v1::PolicyRule {
                non_resource_urls: Some(k8s::strings(&["/metrics"])),
                verbs: k8s::strings(&["get"]),
                ..Default::default()
            },
        ],
    ));
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}

/// Keeps the endpoints of `service`'s port `port_name` in the Istio namespace.
fn endpoints_job(job: &str, namespace: &str, service: &str, port_name: &str) -> Value {
    json!({
        "job_name": job,
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [{
            "source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
            "action": "keep",
            "regex": format!("{service};{port_name}"),
        }],
    })
}

/// The pod's own labels, namespace and name on its series, as 1.4's pod jobs added them.
fn pod_labels() -> Vec<Value> {
    vec![
        json!({"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}),
        json!({"source_labels": ["__meta_kubernetes_namespace"], "action": "replace", "target_label": "namespace"}),
        json!({"source_labels": ["__meta_kubernetes_pod_name"], "action": "replace", "target_label": "pod_name"}),
    ]
}

/// The address rewritten to the `prometheus.io/port` annotation's port.
fn annotated_port(kind: &str) -> Value {
    json!({
        "source_labels": ["__address__", format!("__meta_kubernetes_{kind}_annotation_prometheus_io_port")],
        "action": "replace",
        "target_label": "__address__",
        "regex": "([^:]+)(?::\\d+)?;(\\d+)",
        "replacement": "$1:$2",
    })
}

fn annotated_path(kind: &str) -> Value {
    json!({
        "source_labels": [format!("__meta_kubernetes_{kind}_annotation_prometheus_io_path")],
        "action": "replace",
        "target_label": "__metrics_path__",
        "regex": "(.+)",
    })
}

/// The kubelet's metrics (or cAdvisor's) through the API server's node proxy.
fn node_job(job: &str, path_suffix: &str) -> Value {
    json!({
        "job_name": job,
        "scheme": "https",
        "tls_config": {"ca_file": format!("{SERVICE_ACCOUNT_TOKEN}/ca.crt")},
        "bearer_token_file": format!("{SERVICE_ACCOUNT_TOKEN}/token"),
        "kubernetes_sd_configs": [{"role": "node"}],
        "relabel_configs": [
            {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"},
            {"target_label": "__address__", "replacement": "kubernetes.default.svc:443"},
            {"source_labels": ["__meta_kubernetes_node_name"], "regex": "(.+)", "target_label": "__metrics_path__",
             "replacement": format!("/api/v1/nodes/${{1}}/proxy/metrics{path_suffix}")},
        ],
    })
}

/// 1.4's `prometheus.yml`.
fn scrape_config(install: &Install, namespace: &str) -> Value {
    let mut envoy_relabel = vec![
        json!({"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep", "regex": ".*-envoy-prom"}),
        json!({"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"], "action": "replace",
               "regex": "([^:]+)(?::\\d+)?;(\\d+)", "replacement": "$1:15090", "target_label": "__address__"}),
    ];
    envoy_relabel.extend(pod_labels());
    let mut pods_relabel = vec![
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"}),
        // Pods without a sidecar, or that ask for plain HTTP; the secure job takes the others.
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_sidecar_istio_io_status",
                                 "__meta_kubernetes_pod_annotation_prometheus_io_scheme"],
               "action": "keep", "regex": "((;.*)|(.*;http))"}),
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_istio_mtls"], "action": "drop", "regex": "(true)"}),
        annotated_path("pod"),
        annotated_port("pod"),
    ];
    pods_relabel.extend(pod_labels());
    let mut secure_relabel = vec![
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"}),
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_sidecar_istio_io_status",
                                 "__meta_kubernetes_pod_annotation_istio_mtls"],
               "action": "keep", "regex": "(([^;]+);([^;]*))|(([^;]*);(true))"}),
        json!({"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"], "action": "drop", "regex": "(http)"}),
        annotated_path("pod"),
        // Only host:port addresses; https would otherwise add a second target on 443.
        json!({"source_labels": ["__address__"], "action": "keep", "regex": "([^:]+):(\\d+)"}),
        annotated_port("pod"),
    ];
    secure_relabel.extend(pod_labels());
    json!({
        "global": {"scrape_interval": install.str_value("prometheus.scrapeInterval", "15s")},
        "scrape_configs": [
            endpoints_job("istio-mesh", namespace, "istio-telemetry", "prometheus"),
            {"job_name": "envoy-stats", "metrics_path": "/stats/prometheus",
             "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": envoy_relabel},
            endpoints_job("istio-policy", namespace, "istio-policy", "http-monitoring"),
            endpoints_job("istio-telemetry", namespace, "istio-telemetry", "http-monitoring"),
            endpoints_job("pilot", namespace, "istio-pilot", "http-monitoring"),
            endpoints_job("galley", namespace, "istio-galley", "http-monitoring"),
            endpoints_job("citadel", namespace, "istio-citadel", "http-monitoring"),
            {"job_name": "kubernetes-apiservers",
             "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": ["default"]}}],
             "scheme": "https",
             "tls_config": {"ca_file": format!("{SERVICE_ACCOUNT_TOKEN}/ca.crt")},
             "bearer_token_file": format!("{SERVICE_ACCOUNT_TOKEN}/token"),
             "relabel_configs": [{"source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
                                  "action": "keep", "regex": "kubernetes;https"}]},
            node_job("kubernetes-nodes", ""),
            node_job("kubernetes-cadvisor", "/cadvisor"),
            {"job_name": "kubernetes-service-endpoints",
             "kubernetes_sd_configs": [{"role": "endpoints"}],
             "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
                {"source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scheme"], "action": "replace",
                 "target_label": "__scheme__", "regex": "(https?)"},
                annotated_path("service"),
                annotated_port("service"),
                {"action": "labelmap", "regex": "__meta_kubernetes_service_label_(.+)"},
                {"source_labels": ["__meta_kubernetes_namespace"], "action": "replace", "target_label": "kubernetes_namespace"},
                {"source_labels": ["__meta_kubernetes_service_name"], "action": "replace", "target_label": "kubernetes_name"},
             ]},
            {"job_name": "kubernetes-pods", "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": pods_relabel},
            {"job_name": "kubernetes-pods-istio-secure", "scheme": "https",
             "tls_config": {"ca_file": "/etc/istio-certs/root-cert.pem", "cert_file": "/etc/istio-certs/cert-chain.pem",
                            "key_file": "/etc/istio-certs/key.pem",
                            // Prometheus cannot check the workload's SPIFFE identity.
                            "insecure_skip_verify": true},
             "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": secure_relabel},
        ],
    })
}
