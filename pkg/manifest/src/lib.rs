//! Istio 1.4's installation as Kubernetes objects, for `istioctl manifest generate|apply`.
//!
//! - [`profiles`]: the built-in profiles (`install/profiles/*.yaml`, shaped as 1.4's
//!   `install.istio.io/v1alpha2` `IstioControlPlane`) and `--set` overrides; the local platform
//!   reads the same profiles, so both install the same components.
//! - [`Install`]: a resolved profile with the values each object needs, defaulting to 1.4's chart
//!   values where the profile is silent.
//! - [`generate`]: every object the installation consists of, built from k8s-openapi's typed
//!   structs, named, labelled and ported as 1.4's charts rendered them, with the API versions
//!   Kubernetes 1.25 and later serve (CRDs in `apiextensions.k8s.io/v1`, webhooks in
//!   `admissionregistration.k8s.io/v1`, `policy/v1` PDBs, `autoscaling/v2` HPAs).
//!
//! Applying the objects to a cluster is `istioctl`'s business, not this crate's.

mod components;
mod crds;
mod install;
mod k8s;
mod mesh;
pub mod profiles;

pub use crds::{crds, CrdInfo, CRDS};
pub use install::{Install, InstallError, DEFAULT_HUB, DEFAULT_TAG};

use serde_json::Value;

/// One generated object and the component it belongs to (`Base`, `Pilot`, …, 1.4's names).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub component: &'static str,
    pub object: Value,
}

impl Manifest {
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects).
    pub fn display_name(&self) -> String {
        let kind = self.object["kind"].as_str().unwrap_or_default();
        let name = self.object["metadata"]["name"].as_str().unwrap_or_default();
        match self.object["metadata"]["namespace"].as_str() {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

/// Every object of the installation, in the order they are applied: the namespace and CRDs
/// first, then accounts and RBAC, config, services, workloads, autoscaling and disruption
/// budgets, and the admission webhooks last (a webhook with no server behind it would refuse
/// the objects applied after it).
pub fn generate(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let mut manifests = components::all(install)?;
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
