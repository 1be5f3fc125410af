//! The installation's objects in apply order, and as one YAML stream.

use serde_json::Value;

use crate::install::{Install, InstallError};
use crate::manifest::Manifest;

/// Every object of the installation, in the order they are applied: the namespace and CRDs
/// first, then accounts and RBAC, config, services, workloads, autoscaling and disruption
/// budgets, and the admission webhooks last (a webhook with no server behind it would refuse
/// the objects applied after it).
pub fn generate(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let mut manifests = crate::components::all(install)?;
    manifests.sort_by_key(|manifest| apply_rank(&manifest.object));
    Ok(manifests)
}

/// Where a kind goes in the apply order.
pub fn apply_rank(object: &Value) -> usize {
    const ORDER: [&str; 16] = [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "DaemonSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let kind = object["kind"].as_str().unwrap_or_default();
    // Istio's own kinds (a MeshPolicy, Mixer's rules) need their CRDs and come after the rest.
    ORDER.iter().position(|known| *known == kind).unwrap_or(ORDER.len())
}

/// The objects as one YAML stream, each preceded by a comment naming its component.
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, InstallError> {
    let mut text = String::new();
    for manifest in manifests {
        let yaml = serde_yaml::to_string(&manifest.object)
            .map_err(|error| InstallError::Render { object: manifest.display_name(), message: error.to_string() })?;
        text.push_str("---\n");
        text.push_str(&format!("# Component: {}\n", manifest.component));
        text.push_str(&yaml);
    }
    Ok(text)
}
