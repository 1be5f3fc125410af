//! The `Policy` and `Telemetry` components: Mixer's `istio-policy` and `istio-telemetry`
//! Deployments and Services, their shared account and role, and the Mixer config 1.4's chart
//! installed with them (`install/mixer/*.yaml`: the attribute manifests and kubernetesenv, the
//! prometheus metrics, and with `mixer.adapters.stdio.enabled` the access logs). 1.4 put an
//! `istio-proxy` beside `mixer` for mutual TLS on 15004; this Mixer serves plaintext gRPC on 9091
//! alone, and its DestinationRule says so, so a mesh-wide mutual-TLS rule does not cover it.

use serde_json::{json, Value};

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, default_resources, Settings, Workload};

const ACCOUNT: &str = "istio-mixer-service-account";
const CONFIG: &str = include_str!("../../../../install/mixer/config.yaml");
const TELEMETRY_CONFIG: &str = include_str!("../../../../install/mixer/telemetry.yaml");
const STDIO_CONFIG: &str = include_str!("../../../../install/mixer/telemetry-stdio.yaml");

/// `key` is `policy` or `telemetry`.
pub(crate) fn manifests(install: &Install, key: &'static str) -> Result<Vec<Manifest>, InstallError> {
    let component = if key == "policy" { "Policy" } else { "Telemetry" };
    let namespace = install.namespace();
    let name = format!("istio-{key}");
    let settings = Settings {
        feature: key,
        component: key,
        values: if key == "policy" { "mixer.policy" } else { "mixer.telemetry" },
    };
    let store = if install.enabled("configManagement") {
        format!("--configStoreURL=mcp://istio-galley.{namespace}.svc:9901")
    } else {
        "--configStoreURL=k8s://".to_string()
    };
    let mut args = vec![
        "--monitoringPort=15014".to_string(),
        store,
        format!("--configDefaultNamespace={namespace}"),
        "--useAdapterCRDs=false".to_string(),
    ];
    if key == "policy" {
        args.push("--useTemplateCRDs=false".to_string());
    }
    let default = if key == "policy" {
        default_resources()
    } else {
        json!({"requests": {"cpu": "1000m", "memory": "1G"}, "limits": {"cpu": "4800m", "memory": "4G"}})
    };
    let mut ports = vec![k8s::port(9091), k8s::port(15014)];
    if key == "telemetry" {
        ports.push(k8s::port(42422));
    }
    let adapter_secret = format!("{key}-adapter-secret");
    let mut mixer = k8s::container("mixer", install.image("mixer"));
    mixer.args = Some(args);
    mixer.env = Some(vec![k8s::env_field("POD_NAMESPACE", "metadata.namespace"), k8s::env("GOMAXPROCS", "6")]);
    mixer.ports = Some(ports);
    mixer.liveness_probe = Some(k8s::http_probe("/version", 15014, Some(5), Some(5)));
    mixer.resources = Some(settings.resources(install, default)?);
    mixer.volume_mounts = Some(vec![
        k8s::mount("istio-certs", "/etc/certs", true),
        k8s::mount(&adapter_secret, &format!("/var/run/secrets/istio.io/{key}/adapter"), true),
    ]);
    let mut pod = control_pod(Some(ACCOUNT), vec![mixer]);
    pod.volumes = Some(vec![
        k8s::secret_volume("istio-certs", &format!("istio.{ACCOUNT}"), true),
        k8s::secret_volume(&adapter_secret, &adapter_secret, true),
    ]);
    let type_labels = [("istio", "mixer"), ("istio-mixer-type", key)];
    let selector = labels(&type_labels);
    let mut pod_labels = chart_labels("mixer", &[("app", key), ("security.istio.io/tlsMode", "istio")]);
    pod_labels.extend(selector.clone());
    let mut budget_labels = chart_labels("mixer", &[("app", key), ("version", "1.1.0")]);
    budget_labels.extend(selector.clone());
    let mut budget_selector = labels(&[("app", key), ("release", "istio")]);
    budget_selector.extend(selector.clone());
    let mut manifests = Workload {
        component,
        settings,
        name: &name,
        namespace: namespace.clone(),
        labels: chart_labels("mixer", &[("app", "istio-mixer"), ("istio", "mixer")]),
        selector: selector.clone(),
        pod_labels,
        pod,
        autoscaled_by_default: true,
        main_container: "mixer",
        budget: Some((budget_labels, budget_selector)),
        hpa_labels: chart_labels("mixer", &[("app", "mixer")]),
    }
    .manifests(install)?;

    let mut service_ports =
        vec![k8s::service_port("grpc-mixer", 9091, None), k8s::service_port("http-monitoring", 15014, None)];
    if key == "telemetry" {
        service_ports.push(k8s::service_port("prometheus", 42422, None));
    }
    let mut service_meta = k8s::meta(&name, &namespace, chart_labels("mixer", &[("app", "mixer"), ("istio", "mixer")]));
    service_meta.annotations = Some(labels(&[("networking.istio.io/exportTo", "*")]));
    let mut objects = vec![
        k8s::to_value(&k8s::service(service_meta, selector, service_ports)),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": namespace, "labels": chart_labels("mixer", &[("app", "mixer")])},
            "spec": {
                "host": format!("{name}.{namespace}.svc.cluster.local"),
                "trafficPolicy": {
                    "tls": {"mode": "DISABLE"},
                    "connectionPool": {"http": {"http2MaxRequests": 10000, "maxRequestsPerConnection": 10000}},
                },
            },
        }),
    ];
    // What the two share comes with the first of them.
    if key == "policy" || !install.enabled("policy") {
        objects.extend(shared(&namespace)?);
    }
    if key == "telemetry" {
        objects.extend(config_objects(TELEMETRY_CONFIG, "install/mixer/telemetry.yaml", &namespace)?);
        if install.bool_value("mixer.adapters.stdio.enabled", false) {
            objects.extend(config_objects(STDIO_CONFIG, "install/mixer/telemetry-stdio.yaml", &namespace)?);
        }
    }
    manifests.extend(objects.into_iter().map(|object| Manifest { component, object }));
    Ok(manifests)
}

/// The account, role and base config both Mixers use.
fn shared(namespace: &str) -> Result<Vec<Value>, InstallError> {
    let role = format!("istio-mixer-{namespace}");
    let account_labels = chart_labels("mixer", &[("app", "mixer")]);
    let mut objects = vec![];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        namespace,
        account_labels,
        &role,
        &format!("istio-mixer-admin-role-binding-{namespace}"),
        vec![
            k8s::rule(&["config.istio.io"], &["*"], &["create", "get", "list", "watch", "patch"]),
            k8s::rule(&["apiextensions.k8s.io"], &["customresourcedefinitions"], &["get", "list", "watch"]),
            k8s::rule(
                &[""],
                &["configmaps", "endpoints", "pods", "services", "namespaces", "secrets", "replicationcontrollers"],
                &["get", "list", "watch"],
            ),
            k8s::rule(&["apps"], &["replicasets", "deployments"], &["get", "list", "watch"]),
        ],
    ));
    objects.extend(config_objects(CONFIG, "install/mixer/config.yaml", namespace)?);
    Ok(objects)
}

/// Mixer config objects from one of `install/mixer`'s files, moved to the Istio namespace.
fn config_objects(text: &str, file: &str, namespace: &str) -> Result<Vec<Value>, InstallError> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let mut object: Value = serde::Deserialize::deserialize(document)
            .map_err(|error| InstallError::Render { object: file.to_string(), message: error.to_string() })?;
        if object.is_null() {
            continue;
        }
        object["metadata"]["namespace"] = json!(namespace);
        objects.push(object);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixer_config_files_parse_as_objects() {
        for (text, file) in [(CONFIG, "config"), (TELEMETRY_CONFIG, "telemetry"), (STDIO_CONFIG, "stdio")] {
            let objects = config_objects(text, file, "istio-control").expect(file);
            assert!(!objects.is_empty(), "{file}");
            assert!(objects.iter().all(|object| object["metadata"]["namespace"] == "istio-control"), "{file}");
        }
    }
}
