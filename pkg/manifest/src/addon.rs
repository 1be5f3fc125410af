//! What the demo addons (Prometheus, Grafana, Kiali, the tracing collector) share: their image
//! (`values.ADDON.hub` and `tag` over 1.4's defaults), their pods (no sidecar, 1.4's
//! architecture affinity, one replica, no update strategy) and their config files.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::Value;

use crate::install::{Install, InstallError};
use crate::k8s::{self, Labels};
use crate::workload::NO_SIDECAR;

/// `HUB/NAME:TAG` from `values.ROOT.hub` and `values.ROOT.tag`, or 1.4's defaults.
pub(crate) fn addon_image(install: &Install, root: &str, hub: &str, name: &str, tag: &str) -> String {
    let hub = install.str_value(&format!("{root}.hub"), hub);
    let tag = install.str_value(&format!("{root}.tag"), tag);
    format!("{hub}/{name}:{tag}")
}

/// An addon's pod spec: its account (if any), containers, 1.4's affinity.
pub(crate) fn addon_pod(account: Option<&str>, containers: Vec<Container>) -> PodSpec {
    PodSpec {
        service_account_name: account.map(str::to_string),
        containers,
        affinity: Some(k8s::arch_affinity()),
        ..PodSpec::default()
    }
}

/// An addon's Deployment: one replica (none named when `replicas` is None, as 1.4's tracing
/// chart left it), no strategy, no sidecar plus `annotations` on the pod.
pub(crate) fn addon_deployment(
    name: &str,
    namespace: &str,
    labels: Labels,
    selector: Labels,
    annotations: &[(&str, &str)],
    pod: PodSpec,
    replicas: Option<i32>,
) -> Value {
    let mut pod_annotations = vec![NO_SIDECAR];
    pod_annotations.extend_from_slice(annotations);
    let mut pod_labels = labels.clone();
    pod_labels.extend(selector.clone());
    let mut deployment = k8s::deployment(
        k8s::meta(name, namespace, labels),
        selector,
        replicas,
        k8s::pod_template(pod_labels, &pod_annotations, pod),
    );
    if let Some(spec) = deployment.spec.as_mut() {
        spec.strategy = None;
    }
    k8s::to_value(&deployment)
}

/// A config file for a ConfigMap, as YAML.
pub(crate) fn config_yaml(config_map: &str, value: &Value) -> Result<String, InstallError> {
    serde_yaml::to_string(value)
        .map_err(|error| InstallError::Render { object: format!("ConfigMap {config_map}"), message: error.to_string() })
}
