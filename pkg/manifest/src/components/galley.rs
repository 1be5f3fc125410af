//! The `Galley` component: `istio-galley` (config validation over HTTPS and MCP on 9901), its
//! Service (443 to the webhook's 9443), account and role. 1.4's Galley registered its own
//! ValidatingWebhookConfiguration from a ConfigMap; that object is Galley's to write once it has
//! its serving certificate, so it is not part of the manifest.

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, default_resources, Settings, Workload};

const COMPONENT: &str = "Galley";
const NAME: &str = "istio-galley";
const ACCOUNT: &str = "istio-galley-service-account";
/// The webhook's port in the container; the Service offers it on 443, as 1.4's.
const WEBHOOK_PORT: i32 = 9443;

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let settings = Settings { feature: "configManagement", component: "galley", values: "galley" };
    let mut args = k8s::strings(&[
        "server",
        "--meshConfigFile=/etc/mesh-config/mesh",
        "--tlsCertFile=/etc/certs/cert-chain.pem",
        "--tlsKeyFile=/etc/certs/key.pem",
        "--monitoringPort=15014",
    ]);
    args.push(format!("--validation-port={WEBHOOK_PORT}"));
    if !install.bool_value("global.configValidation", true) {
        args.push("--enable-validation=false".to_string());
    }
    let mut galley = k8s::container("galley", install.image("galley"));
    galley.args = Some(args);
    galley.ports = Some(vec![k8s::port(WEBHOOK_PORT), k8s::port(15014), k8s::port(9901)]);
    galley.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/ready".to_string()),
            port: IntOrString::Int(WEBHOOK_PORT),
            scheme: Some("HTTPS".to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(5),
        ..Probe::default()
    });
    galley.liveness_probe = Some(k8s::http_probe("/version", 15014, Some(5), Some(5)));
    galley.resources = Some(settings.resources(install, default_resources())?);
    galley.volume_mounts =
        Some(vec![k8s::mount("certs", "/etc/certs", true), k8s::mount("mesh-config", "/etc/mesh-config", true)]);
    let mut pod = control_pod(Some(ACCOUNT), vec![galley]);
    pod.volumes = Some(vec![
        k8s::secret_volume("certs", &format!("istio.{ACCOUNT}"), false),
        k8s::config_map_volume("mesh-config", "istio", &[]),
    ]);
    let all = chart_labels("galley", &[("app", "galley"), ("istio", "galley")]);
    let mut manifests = Workload {
        component: COMPONENT,
        settings,
        name: NAME,
        namespace: namespace.clone(),
        labels: all.clone(),
        selector: labels(&[("istio", "galley")]),
        pod_labels: all.clone(),
        pod,
        autoscaled_by_default: false,
        main_container: "galley",
        budget: Some((all.clone(), labels(&[("app", "galley"), ("release", "istio"), ("istio", "galley")]))),
        hpa_labels: all.clone(),
    }
    .manifests(install)?;
    let role = format!("istio-galley-{namespace}");
    let istio_groups =
        ["authentication.istio.io", "config.istio.io", "networking.istio.io", "rbac.istio.io", "security.istio.io"];
    let account_labels = chart_labels("galley", &[("app", "galley")]);
    let mut objects = vec![k8s::to_value(&k8s::service(
        k8s::meta(NAME, &namespace, all),
        labels(&[("istio", "galley")]),
        vec![
            k8s::service_port("https-validation", 443, Some(WEBHOOK_PORT)),
            k8s::service_port("http-monitoring", 15014, None),
            k8s::service_port("grpc-mcp", 9901, None),
        ],
    ))];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        &namespace,
        account_labels,
        &role,
        &format!("istio-galley-admin-role-binding-{namespace}"),
        vec![
            k8s::rule(&istio_groups, &["*"], &["get", "list", "watch"]),
            k8s::rule(&istio_groups, &["*/status"], &["update"]),
            k8s::rule(&["admissionregistration.k8s.io"], &["validatingwebhookconfigurations"], &["*"]),
            k8s::rule(&["apps"], &["deployments"], &["get"]),
            k8s::rule(&[""], &["pods", "nodes", "services", "endpoints", "namespaces"], &["get", "list", "watch"]),
            k8s::rule(&["extensions", "networking.k8s.io"], &["ingresses"], &["get", "list", "watch"]),
            k8s::rule(&[""], &["namespaces/finalizers"], &["update"]),
            k8s::rule(&["apiextensions.k8s.io"], &["customresourcedefinitions"], &["get", "list", "watch"]),
        ],
    ));
    manifests.extend(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }));
    Ok(manifests)
}
