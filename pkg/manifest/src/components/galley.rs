//! The `Galley` component: `istio-galley` (config validation over HTTPS and MCP on 9901), its
//! Service (443 to the webhook's 9443), account and role, and as 1.4 the
//! `istio-galley-configuration` ConfigMap holding the ValidatingWebhookConfiguration template
//! Galley registers itself once its webhook answers, with the CA bundle filled in (so the
//! configuration is not in the manifest: without the bundle it would refuse every request).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, HTTPGetAction, Probe};
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
    let validation = install.bool_value("global.configValidation", true);
    if validation {
        args.extend([
            "--validation-webhook-config-file=/etc/config/validatingwebhookconfiguration.yaml".to_string(),
            "--caCertFile=/etc/certs/root-cert.pem".to_string(),
            format!("--deployment-namespace={namespace}"),
        ]);
    } else {
        args.push("--enable-validation=false".to_string());
    }
    if install.bool_value("galley.enableAnalysis", false) {
        args.push("--enableAnalysis=true".to_string());
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
    galley.volume_mounts = Some(vec![
        k8s::mount("certs", "/etc/certs", true),
        k8s::mount("config", "/etc/config", true),
        k8s::mount("mesh-config", "/etc/mesh-config", true),
    ]);
    let mut pod = control_pod(Some(ACCOUNT), vec![galley]);
    pod.volumes = Some(vec![
        k8s::secret_volume("certs", &format!("istio.{ACCOUNT}"), false),
        k8s::config_map_volume("config", "istio-galley-configuration", &[]),
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
    let mut data = BTreeMap::new();
    if validation {
        let template = serde_yaml::to_string(&webhook_configuration(&namespace, all.clone())).map_err(|error| {
            InstallError::Render { object: "ConfigMap istio-galley-configuration".into(), message: error.to_string() }
        })?;
        data.insert("validatingwebhookconfiguration.yaml".to_string(), template);
    }
    let config_map = ConfigMap {
        metadata: k8s::meta("istio-galley-configuration", &namespace, all.clone()),
        data: Some(data),
        ..ConfigMap::default()
    };
    let mut objects = vec![
        k8s::to_value(&config_map),
        k8s::to_value(&k8s::service(
            k8s::meta(NAME, &namespace, all),
            labels(&[("istio", "galley")]),
            vec![
                k8s::service_port("https-validation", 443, Some(WEBHOOK_PORT)),
                k8s::service_port("http-monitoring", 15014, None),
                k8s::service_port("grpc-mcp", 9901, None),
            ],
        )),
    ];
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

fn create_update(groups: &[&str], versions: &[&str], resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        operations: Some(k8s::strings(&["CREATE", "UPDATE"])),
        api_groups: Some(k8s::strings(groups)),
        api_versions: Some(k8s::strings(versions)),
        resources: Some(k8s::strings(resources)),
        scope: None,
    }
}

fn galley_webhook(name: &str, namespace: &str, path: &str, rules: Vec<RuleWithOperations>) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.to_string(),
        client_config: WebhookClientConfig {
            service: Some(ServiceReference {
                name: NAME.to_string(),
                namespace: namespace.to_string(),
                path: Some(path.to_string()),
                port: None,
            }),
            ..WebhookClientConfig::default()
        },
        rules: Some(rules),
        failure_policy: Some("Fail".to_string()),
        side_effects: "None".to_string(),
        admission_review_versions: k8s::strings(&["v1", "v1beta1"]),
        ..ValidatingWebhook::default()
    }
}

/// 1.4's webhook configuration template: Pilot's kinds to `/admitpilot`, Mixer's to
/// `/admitmixer`, in `admissionregistration.k8s.io/v1`.
fn webhook_configuration(namespace: &str, labels: k8s::Labels) -> ValidatingWebhookConfiguration {
    let any = ["*"];
    let pilot = vec![
        create_update(
            &["config.istio.io"],
            &["v1alpha2"],
            &["httpapispecs", "httpapispecbindings", "quotaspecs", "quotaspecbindings"],
        ),
        create_update(&["rbac.istio.io"], &any, &any),
        create_update(&["security.istio.io"], &any, &any),
        create_update(&["authentication.istio.io"], &any, &any),
        create_update(
            &["networking.istio.io"],
            &any,
            &["destinationrules", "envoyfilters", "gateways", "serviceentries", "sidecars", "virtualservices"],
        ),
    ];
    let mixer = vec![create_update(
        &["config.istio.io"],
        &["v1alpha2"],
        &[
            "rules",
            "attributemanifests",
            "circonuses",
            "deniers",
            "fluentds",
            "kubernetesenvs",
            "listcheckers",
            "memquotas",
            "noops",
            "opas",
            "prometheuses",
            "rbacs",
            "solarwindses",
            "stackdrivers",
            "cloudwatches",
            "dogstatsds",
            "statsds",
            "stdios",
            "apikeys",
            "authorizations",
            "checknothings",
            "listentries",
            "logentries",
            "metrics",
            "quotas",
            "reportnothings",
            "tracespans",
            "adapters",
            "handlers",
            "instances",
            "templates",
            "zipkins",
        ],
    )];
    ValidatingWebhookConfiguration {
        metadata: k8s::cluster_meta(NAME, labels),
        webhooks: Some(vec![
            galley_webhook("pilot.validation.istio.io", namespace, "/admitpilot", pilot),
            galley_webhook("mixer.validation.istio.io", namespace, "/admitmixer", mixer),
        ]),
    }
}
