//! The `Citadel` component: `istio-citadel` (the CA and the controller writing each service
//! account's `istio.ACCOUNT` Secret), its Service, account and role, and the mesh-wide
//! authentication 1.4's security chart installed: the MeshPolicy `default`, PERMISSIVE, or
//! with `values.global.mtls.enabled` STRICT with the `default` and `api-server` rules.

use k8s_openapi::api::core::v1::Probe;
use serde_json::{json, Value};

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, default_resources, Settings, Workload};

const COMPONENT: &str = "Citadel";
const NAME: &str = "istio-citadel";
const ACCOUNT: &str = "istio-citadel-service-account";

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let settings = Settings { feature: "security", component: "citadel", values: "security" };
    let self_signed = install.bool_value("security.selfSigned", true);
    let mut args = Vec::new();
    if install.node_agent() {
        args.push("--sds-enabled=true".to_string());
    }
    args.extend([
        "--append-dns-names=true".to_string(),
        "--grpc-port=8060".to_string(),
        format!("--citadel-storage-namespace={namespace}"),
        format!("--custom-dns-names=istio-pilot-service-account.{namespace}:istio-pilot.{namespace}"),
        "--monitoring-port=15014".to_string(),
        format!("--self-signed-ca={self_signed}"),
        format!("--workload-cert-ttl={}", install.str_value("security.workloadCertTtl", "2160h")),
        format!("--trust-domain={}", install.trust_domain()),
    ]);
    if !self_signed {
        args.extend(k8s::strings(&[
            "--signing-cert=/etc/cacerts/ca-cert.pem",
            "--signing-key=/etc/cacerts/ca-key.pem",
            "--root-cert=/etc/cacerts/root-cert.pem",
            "--cert-chain=/etc/cacerts/cert-chain.pem",
        ]));
    }
    let enable_by_default = install.bool_value("security.enableNamespacesByDefault", true);
    let mut citadel = k8s::container("citadel", install.image("citadel"));
    citadel.args = Some(args);
    citadel.env = Some(vec![k8s::env("CITADEL_ENABLE_NAMESPACES_BY_DEFAULT", &enable_by_default.to_string())]);
    citadel.ports = Some(vec![k8s::port(8060), k8s::port(15014)]);
    citadel.readiness_probe =
        Some(Probe { timeout_seconds: Some(5), ..k8s::http_probe("/ready", 15014, Some(5), Some(5)) });
    citadel.resources = Some(settings.resources(install, default_resources())?);
    let mut pod = control_pod(Some(ACCOUNT), vec![citadel]);
    if !self_signed {
        pod.containers[0].volume_mounts = Some(vec![k8s::mount("cacerts", "/etc/cacerts", true)]);
        pod.volumes = Some(vec![k8s::secret_volume("cacerts", "cacerts", true)]);
    }
    let all = chart_labels("security", &[("app", "security"), ("istio", "citadel")]);
    let mut manifests = Workload {
        component: COMPONENT,
        settings,
        name: NAME,
        namespace: namespace.clone(),
        labels: all.clone(),
        selector: labels(&[("istio", "citadel")]),
        pod_labels: all.clone(),
        pod,
        autoscaled_by_default: false,
        main_container: "citadel",
        budget: Some((all.clone(), labels(&[("app", "security"), ("release", "istio"), ("istio", "citadel")]))),
        hpa_labels: all.clone(),
    }
    .manifests(install)?;
    let role = format!("istio-citadel-{namespace}");
    let account_labels = chart_labels("security", &[("app", "security")]);
    let mut objects = vec![k8s::to_value(&k8s::service(
        k8s::meta(NAME, &namespace, all),
        labels(&[("istio", "citadel")]),
        vec![k8s::service_port("grpc-citadel", 8060, Some(8060)), k8s::service_port("http-monitoring", 15014, None)],
    ))];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        &namespace,
        account_labels,
        &role,
        &role,
        vec![
            k8s::rule(&[""], &["configmaps"], &["create", "get", "update"]),
            k8s::rule(&[""], &["secrets"], &["create", "get", "watch", "list", "update", "delete"]),
            k8s::rule(&[""], &["serviceaccounts", "services", "namespaces"], &["get", "watch", "list"]),
            k8s::rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        ],
    ));
    if install.bool_value("security.createMeshPolicy", true) {
        objects.extend(mesh_authentication(install, &namespace));
    }
    manifests.extend(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }));
    Ok(manifests)
}

/// The mesh-wide authentication objects.
fn mesh_authentication(install: &Install, namespace: &str) -> Vec<Value> {
    let labels = json!({"app": "security"});
    if !install.bool_value("global.mtls.enabled", false) {
        return vec![json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
            "metadata": {"name": "default", "labels": labels},
            "spec": {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]},
        })];
    }
    vec![
        json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
            "metadata": {"name": "default", "labels": labels},
            "spec": {"peers": [{"mtls": {}}]},
        }),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "default", "namespace": namespace, "labels": labels},
            "spec": {"host": "*.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
        }),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "api-server", "namespace": namespace, "labels": labels},
            "spec": {"host": "kubernetes.default.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        }),
    ]
}
