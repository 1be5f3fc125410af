//! The `Kiali` addon as 1.4's chart installed it: `kiali` (quay.io/kiali/kiali v1.9, served
//! under `/kiali` on 20001), its config (`kiali` ConfigMap: the Istio namespace, Prometheus at
//! `http://prometheus:9090`, login authentication), the demo's `admin`/`admin` Secret when
//! `values.kiali.createDemoSecret` is set, its account, and the `kiali` and `kiali-viewer`
//! ClusterRoles (the viewer's bound instead with `values.kiali.dashboard.viewOnlyMode`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use serde_json::json;

use crate::addon::{addon_deployment, addon_image, addon_pod, config_yaml};
use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;

const COMPONENT: &str = "Kiali";
const NAME: &str = "kiali";
const ACCOUNT: &str = "kiali-service-account";
const PORT: i32 = 20001;

/// The Istio API groups Kiali reads (and, unless view-only, edits).
const ISTIO_GROUPS: [&str; 5] =
    ["config.istio.io", "networking.istio.io", "authentication.istio.io", "rbac.istio.io", "security.istio.io"];

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let all = chart_labels("kiali", &[("app", "kiali")]);
    let mut kiali = k8s::container("kiali", addon_image(install, "kiali", "quay.io/kiali", "kiali", "v1.9"));
    kiali.command = Some(k8s::strings(&["/opt/kiali/kiali", "-config", "/kiali-configuration/config.yaml", "-v", "3"]));
    let mut probe = k8s::http_probe("/kiali/healthz", PORT, Some(5), Some(30));
    if let Some(get) = probe.http_get.as_mut() {
        get.scheme = Some("HTTP".to_string());
    }
    kiali.readiness_probe = Some(probe.clone());
    kiali.liveness_probe = Some(probe);
    kiali.env = Some(vec![k8s::env_field("ACTIVE_NAMESPACE", "metadata.namespace")]);
    kiali.volume_mounts = Some(vec![
        k8s::mount("kiali-configuration", "/kiali-configuration", false),
        k8s::mount("kiali-cert", "/kiali-cert", false),
        k8s::mount("kiali-secret", "/kiali-secret", false),
    ]);
    kiali.resources = Some(k8s::resources(&json!({"requests": {"cpu": "10m"}}), "values.kiali.resources")?);
    let mut pod = addon_pod(Some(ACCOUNT), vec![kiali]);
    pod.volumes = Some(vec![
        k8s::config_map_volume("kiali-configuration", NAME, &[]),
        k8s::secret_volume("kiali-cert", &format!("istio.{ACCOUNT}"), true),
        k8s::secret_volume("kiali-secret", NAME, true),
    ]);
    let deployment = addon_deployment(
        NAME,
        &namespace,
        all.clone(),
        labels(&[("app", "kiali")]),
        &[
            ("scheduler.alpha.kubernetes.io/critical-pod", ""),
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "9090"),
            ("kiali.io/runtimes", "go,kiali"),
        ],
        pod,
        Some(1),
    );
    let service = k8s::service(
        k8s::meta(NAME, &namespace, all.clone()),
        labels(&[("app", "kiali")]),
        vec![k8s::service_port("http-kiali", PORT, None)],
    );
    let dashboard = |key: &str| install.str_value(&format!("kiali.dashboard.{key}"), "");
    let config = json!({
        "istio_namespace": namespace,
        "deployment": {"accessible_namespaces": ["**"]},
        "auth": {"strategy": install.str_value("kiali.dashboard.auth.strategy", "login")},
        "server": {"port": PORT, "web_root": "/kiali"},
        "external_services": {
            "tracing": {"url": dashboard("jaegerURL")},
            "grafana": {"url": dashboard("grafanaURL")},
            "prometheus": {"url": install.str_value("kiali.prometheusAddr", "http://prometheus:9090")},
        },
    });
    let config_map = ConfigMap {
        metadata: k8s::meta(NAME, &namespace, all.clone()),
        data: Some(BTreeMap::from([("config.yaml".to_string(), config_yaml(NAME, &config)?)])),
        ..ConfigMap::default()
    };
    let view_only = install.bool_value("kiali.dashboard.viewOnlyMode", false);
    let role_rules = |istio_verbs: &[&str]| {
        vec![
            k8s::rule(
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "namespaces",
                    "nodes",
                    "pods",
                    "pods/log",
                    "replicationcontrollers",
                    "services",
                ],
                &["get", "list", "watch"],
            ),
            k8s::rule(
                &["extensions", "apps"],
                &["deployments", "replicasets", "statefulsets"],
                &["get", "list", "watch"],
            ),
            k8s::rule(&["autoscaling"], &["horizontalpodautoscalers"], &["get", "list", "watch"]),
            k8s::rule(&["batch"], &["cronjobs", "jobs"], &["get", "list", "watch"]),
            k8s::rule(&ISTIO_GROUPS, &["*"], istio_verbs),
            k8s::rule(&["monitoring.kiali.io"], &["monitoringdashboards"], &["get", "list"]),
        ]
    };
    let (bound_role, binding) = if view_only {
        ("kiali-viewer", format!("istio-kiali-viewer-role-binding-{namespace}"))
    } else {
        (NAME, format!("istio-kiali-admin-role-binding-{namespace}"))
    };
    let editor =
        k8s::cluster_role(NAME, all.clone(), role_rules(&["create", "delete", "get", "list", "patch", "watch"]));
    let viewer = k8s::cluster_role("kiali-viewer", all.clone(), role_rules(&["get", "list", "watch"]));
    let mut objects = vec![
        k8s::to_value(&config_map),
        deployment,
        k8s::to_value(&service),
        k8s::service_account(ACCOUNT, &namespace, all.clone()),
        editor,
        viewer,
        k8s::cluster_role_binding(&binding, all.clone(), bound_role, ACCOUNT, &namespace),
    ];
    if install.bool_value("kiali.createDemoSecret", false) {
        let secret = Secret {
            metadata: k8s::meta(NAME, &namespace, labels(&[("app", "kiali")])),
            type_: Some("Opaque".to_string()),
            data: Some(BTreeMap::from([
                ("username".to_string(), ByteString(b"admin".to_vec())),
                ("passphrase".to_string(), ByteString(b"admin".to_vec())),
            ])),
            ..Secret::default()
        };
        objects.push(k8s::to_value(&secret));
    }
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}
