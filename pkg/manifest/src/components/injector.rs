//! The `Injector` component: `istio-sidecar-injector` (the mutating webhook adding the proxy
//! to new pods), its Service (443 to the webhook's 9443), account, role, and the
//! `istio-sidecar-injector` ConfigMap with its `config` (the injection policy) and `values` (the
//! installation's values, with its hub and tag, for the sidecar's image and settings). This
//! injector builds the sidecar in code, so `config` carries no template. As 1.4's chart, it
//! also has the MutatingWebhookConfiguration, whose `caBundle` the injector fills in.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, default_resources, Settings, Workload};

const COMPONENT: &str = "Injector";
const NAME: &str = "istio-sidecar-injector";
const ACCOUNT: &str = "istio-sidecar-injector-service-account";
const WEBHOOK_PORT: i32 = 9443;

/// An HTTPS GET probe of the webhook server.
fn webhook_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(WEBHOOK_PORT),
            scheme: Some("HTTPS".to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(4),
        period_seconds: Some(4),
        ..Probe::default()
    }
}

/// The values the injector reads: the installation's, with its image hub and tag.
pub(crate) fn injector_values(install: &Install) -> Value {
    let mut values = match install.value("global") {
        Value::Null => json!({"global": {}}),
        _ => install.document["spec"]["values"].clone(),
    };
    values["global"]["hub"] = json!(install.hub());
    values["global"]["tag"] = json!(install.tag());
    values["global"]["istioNamespace"] = json!(install.namespace());
    values
}

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let settings = Settings { feature: "autoInjection", component: "injector", values: "sidecarInjectorWebhook" };
    let mut injector = k8s::container("sidecar-injector-webhook", install.image("sidecar_injector"));
    injector.args = Some(vec![
        "--injectConfig=/etc/istio/inject/config".to_string(),
        "--valuesFile=/etc/istio/inject/values".to_string(),
        "--meshConfig=/etc/istio/config/mesh".to_string(),
        "--tlsCertFile=/etc/istio/certs/cert-chain.pem".to_string(),
        "--tlsKeyFile=/etc/istio/certs/key.pem".to_string(),
        format!("--port={WEBHOOK_PORT}"),
        "--monitoringPort=15014".to_string(),
        "--caCertFile=/etc/istio/certs/root-cert.pem".to_string(),
        format!("--webhookConfigName={NAME}"),
    ]);
    injector.ports = Some(vec![k8s::port(WEBHOOK_PORT), k8s::port(15014)]);
    injector.liveness_probe = Some(webhook_probe("/health"));
    injector.readiness_probe = Some(webhook_probe("/ready"));
    injector.resources = Some(settings.resources(install, default_resources())?);
    injector.volume_mounts = Some(vec![
        k8s::mount("config-volume", "/etc/istio/config", true),
        k8s::mount("certs", "/etc/istio/certs", true),
        k8s::mount("inject-config", "/etc/istio/inject", true),
    ]);
    let mut pod = control_pod(Some(ACCOUNT), vec![injector]);
    pod.volumes = Some(vec![
        k8s::config_map_volume("config-volume", "istio", &[]),
        k8s::secret_volume("certs", &format!("istio.{ACCOUNT}"), false),
        k8s::config_map_volume("inject-config", NAME, &[("config", "config"), ("values", "values")]),
    ]);
    let own = [("app", "sidecarInjectorWebhook"), ("istio", "sidecar-injector")];
    let all = chart_labels("sidecarInjectorWebhook", &own);
    let mut manifests = Workload {
        component: COMPONENT,
        settings,
        name: NAME,
        namespace: namespace.clone(),
        labels: all.clone(),
        selector: labels(&[("istio", "sidecar-injector")]),
        pod_labels: all.clone(),
        pod,
        autoscaled_by_default: false,
        main_container: "sidecar-injector-webhook",
        budget: Some((
            labels(&[("app", "sidecarInjectorWebhook"), ("release", "istio"), ("istio", "sidecar-injector")]),
            labels(&[("app", "sidecarInjectorWebhook"), ("release", "istio"), ("istio", "sidecar-injector")]),
        )),
        hpa_labels: all.clone(),
    }
    .manifests(install)?;

    let policy = install.str_value("global.proxy.autoInject", "enabled");
    let config =
        format!("policy: {policy}\nalwaysInjectSelector: []\nneverInjectSelector: []\ninjectedAnnotations: {{}}\n");
    let values = serde_json::to_string(&injector_values(install))
        .map_err(|error| InstallError::Render { object: format!("ConfigMap {NAME}"), message: error.to_string() })?;
    let role = format!("istio-sidecar-injector-{namespace}");
    let account_labels = chart_labels("sidecarInjectorWebhook", &own);
    let mut objects = vec![
        k8s::to_value(&ConfigMap {
            metadata: k8s::meta(
                NAME,
                &namespace,
                chart_labels("istio", &[("app", "istio"), ("istio", "sidecar-injector")]),
            ),
            data: Some([("config".to_string(), config), ("values".to_string(), values)].into()),
            ..ConfigMap::default()
        }),
        k8s::to_value(&k8s::service(
            k8s::meta(NAME, &namespace, all),
            labels(&[("istio", "sidecar-injector")]),
            vec![
                k8s::service_port("https-inject", 443, Some(WEBHOOK_PORT)),
                k8s::service_port("http-monitoring", 15014, None),
            ],
        )),
    ];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        &namespace,
        account_labels,
        &role,
        &format!("istio-sidecar-injector-admin-role-binding-{namespace}"),
        vec![
            k8s::rule(&[""], &["configmaps"], &["get", "list", "watch"]),
            k8s::rule(
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &["get", "list", "watch", "patch"],
            ),
        ],
    ));
    objects.push(k8s::to_value(&mutating_webhook(
        install,
        &namespace,
        chart_labels("sidecarInjectorWebhook", &[("app", "sidecarInjectorWebhook")]),
    )));
    manifests.extend(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }));
    Ok(manifests)
}

/// 1.4's MutatingWebhookConfiguration: new pods in namespaces labelled `istio-injection:
/// enabled` (or, with `values.sidecarInjectorWebhook.enableNamespacesByDefault`, every
/// namespace but Istio's own and those labelled `disabled`) to the injector's `/inject`. It has
/// no `caBundle`: the injector fills that in with its CA, and an apply that does not name the
/// field leaves it alone.
fn mutating_webhook(install: &Install, namespace: &str, labels: k8s::Labels) -> MutatingWebhookConfiguration {
    let selector = if install.bool_value("sidecarInjectorWebhook.enableNamespacesByDefault", false) {
        let not_in = |key: &str, value: &str| LabelSelectorRequirement {
            key: key.to_string(),
            operator: "NotIn".to_string(),
            values: Some(vec![value.to_string()]),
        };
        LabelSelector {
            match_expressions: Some(vec![not_in("name", namespace), not_in("istio-injection", "disabled")]),
            ..LabelSelector::default()
        }
    } else {
        LabelSelector { match_labels: Some(k8s::labels(&[("istio-injection", "enabled")])), ..LabelSelector::default() }
    };
    MutatingWebhookConfiguration {
        metadata: k8s::cluster_meta(NAME, labels),
        webhooks: Some(vec![MutatingWebhook {
            name: "sidecar-injector.istio.io".to_string(),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    name: NAME.to_string(),
                    namespace: namespace.to_string(),
                    path: Some("/inject".to_string()),
                    port: None,
                }),
                ..WebhookClientConfig::default()
            },
            rules: Some(vec![RuleWithOperations {
                operations: Some(k8s::strings(&["CREATE"])),
                api_groups: Some(k8s::strings(&[""])),
                api_versions: Some(k8s::strings(&["v1"])),
                resources: Some(k8s::strings(&["pods"])),
                scope: None,
            }]),
            failure_policy: Some("Fail".to_string()),
            namespace_selector: Some(selector),
            side_effects: "None".to_string(),
            admission_review_versions: k8s::strings(&["v1", "v1beta1"]),
            ..MutatingWebhook::default()
        }]),
    }
}
