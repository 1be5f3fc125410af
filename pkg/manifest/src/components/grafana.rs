//! The `Grafana` addon as 1.4's chart installed it: `grafana` (grafana/grafana 6.4.3, anonymous
//! admin, no login) with Prometheus as its default data source and the Istio dashboards
//! provisioned from one ConfigMap each (`istio-grafana-configuration-dashboards-NAME`), and its
//! Service on 3000. 1.4 ran a post-install Job that created the authentication Policy
//! `grafana-ports-mtls-disabled`; here the Policy is part of the manifest, applied after its CRD
//! like every other Istio object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, EmptyDirVolumeSource, PodSecurityContext, Volume, VolumeMount};
use serde_json::json;

use crate::addon::{addon_deployment, addon_image, addon_pod, config_yaml};
use crate::dashboards;
use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;

const COMPONENT: &str = "Grafana";
const NAME: &str = "grafana";
const PORT: i32 = 3000;
const DASHBOARD_DIR: &str = "/var/lib/grafana/dashboards/istio";

fn sub_path_mount(name: &str, path: &str, file: &str, read_only: bool) -> VolumeMount {
    VolumeMount { sub_path: Some(file.to_string()), ..k8s::mount(name, path, read_only) }
}

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let all = chart_labels("grafana", &[("app", "grafana")]);
    let dashboards = dashboards::all();
    let mut grafana = k8s::container("grafana", addon_image(install, "grafana.image", "grafana", "grafana", "6.4.3"));
    grafana.ports = Some(vec![k8s::port(PORT)]);
    grafana.readiness_probe = Some(k8s::http_probe("/api/health", PORT, None, None));
    grafana.env = Some(vec![
        k8s::env("GRAFANA_PORT", &PORT.to_string()),
        k8s::env("GF_AUTH_BASIC_ENABLED", "false"),
        k8s::env("GF_AUTH_ANONYMOUS_ENABLED", "true"),
        k8s::env("GF_AUTH_ANONYMOUS_ORG_ROLE", "Admin"),
        k8s::env("GF_PATHS_DATA", "/data/grafana"),
    ]);
    let mut mounts = vec![k8s::mount("data", "/data/grafana", false)];
    let mut volumes = vec![
        k8s::config_map_volume("config", "istio-grafana", &[]),
        Volume { name: "data".to_string(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    ];
    let mut objects = Vec::new();
    for (name, dashboard) in &dashboards {
        let volume = format!("dashboards-istio-{name}");
        let config_map = format!("istio-grafana-configuration-dashboards-{name}");
        let file = format!("{name}.json");
        mounts.push(sub_path_mount(&volume, &format!("{DASHBOARD_DIR}/{file}"), &file, true));
        volumes.push(k8s::config_map_volume(&volume, &config_map, &[]));
        let text = serde_json::to_string(dashboard).map_err(|error| InstallError::Render {
            object: format!("ConfigMap {config_map}"),
            message: error.to_string(),
        })?;
        objects.push(k8s::to_value(&ConfigMap {
            metadata: k8s::meta(
                &config_map,
                &namespace,
                chart_labels("grafana", &[("app", "grafana"), ("istio", "grafana")]),
            ),
            data: Some(BTreeMap::from([(file, text)])),
            ..ConfigMap::default()
        }));
    }
    mounts.push(sub_path_mount(
        "config",
        "/etc/grafana/provisioning/datasources/datasources.yaml",
        "datasources.yaml",
        false,
    ));
    mounts.push(sub_path_mount(
        "config",
        "/etc/grafana/provisioning/dashboards/dashboardproviders.yaml",
        "dashboardproviders.yaml",
        false,
    ));
    grafana.volume_mounts = Some(mounts);
    grafana.resources = Some(k8s::resources(&json!({"requests": {"cpu": "10m"}}), "values.grafana.resources")?);
    let mut pod = addon_pod(None, vec![grafana]);
    pod.security_context =
        Some(PodSecurityContext { run_as_user: Some(472), fs_group: Some(472), ..Default::default() });
    pod.volumes = Some(volumes);
    let deployment = addon_deployment(
        NAME,
        &namespace,
        all.clone(),
        labels(&[("app", "grafana")]),
        &[("prometheus.io/scrape", "true")],
        pod,
        Some(1),
    );
    let service = k8s::service(
        k8s::meta(NAME, &namespace, all.clone()),
        labels(&[("app", "grafana")]),
        vec![k8s::service_port("http", PORT, Some(PORT))],
    );
    let datasources = json!({
        "apiVersion": 1,
        "datasources": [{"name": "Prometheus", "type": "prometheus", "orgId": 1, "url": "http://prometheus:9090",
                         "access": "proxy", "isDefault": true, "jsonData": {"timeInterval": "5s"}, "editable": true}],
    });
    let providers = json!({
        "apiVersion": 1,
        "providers": [{"name": "istio", "orgId": 1, "folder": "istio", "type": "file", "disableDeletion": false,
                       "options": {"path": DASHBOARD_DIR}}],
    });
    let config = ConfigMap {
        metadata: k8s::meta(
            "istio-grafana",
            &namespace,
            chart_labels("grafana", &[("app", "grafana"), ("istio", "grafana")]),
        ),
        data: Some(BTreeMap::from([
            ("datasources.yaml".to_string(), config_yaml("istio-grafana", &datasources)?),
            ("dashboardproviders.yaml".to_string(), config_yaml("istio-grafana", &providers)?),
        ])),
        ..ConfigMap::default()
    };
    // Prometheus and browsers reach Grafana without a client certificate.
    let policy = json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "grafana-ports-mtls-disabled", "namespace": namespace, "labels": {"app": "grafana"}},
        "spec": {"targets": [{"name": NAME, "ports": [{"number": PORT}]}]},
    });
    objects.extend([k8s::to_value(&config), deployment, k8s::to_value(&service), policy]);
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}
