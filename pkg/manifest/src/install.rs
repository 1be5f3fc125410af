//! A resolved installation: the profile with its overlays and `--set` overrides applied, and
//! the values the objects are built from. Where a profile says nothing, 1.4's chart defaults
//! (`install/kubernetes/helm/istio/values.yaml`) apply; helm deep-merged value files, so an
//! override of a resource request keeps the default limits, and so does this.

use serde_json::Value;

use crate::profiles;

/// Where images come from unless `spec.hub` / `spec.tag` say otherwise: 1.4's image names on
/// Docker Hub's `istio` organisation, with this workspace's version as the tag, so a cluster
/// pulls nothing by accident. Build the images (`install/docker`) and set `hub` and `tag`.
pub const DEFAULT_HUB: &str = "docker.io/istio";
pub const DEFAULT_TAG: &str = env!("CARGO_PKG_VERSION");

/// Why an installation could not be resolved or rendered.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0:#}")]
    Profile(anyhow::Error),
    #[error("{source_name}: {message}")]
    Overlay { source_name: String, message: String },
    #[error("{path}: {message}")]
    Value { path: String, message: String },
    #[error("{object}: {message}")]
    Render { object: String, message: String },
}

/// A resolved `IstioControlPlane`.
#[derive(Debug, Clone)]
pub struct Install {
    pub profile: String,
    pub document: Value,
}

/// The top-level fields of 1.4's `IstioControlPlaneSpec`.
const SPEC_FIELDS: [&str; 16] = [
    "hub",
    "tag",
    "defaultNamespace",
    "profile",
    "installPackagePath",
    "trafficManagement",
    "policy",
    "telemetry",
    "security",
    "configManagement",
    "autoInjection",
    "gateways",
    "cni",
    "coreDNS",
    "values",
    "unvalidatedValues",
];

/// Each feature's components, as 1.4's `IstioControlPlaneSpec` named them.
const FEATURE_COMPONENTS: [(&str, &[&str]); 9] = [
    ("trafficManagement", &["pilot", "proxy"]),
    ("policy", &["policy"]),
    ("telemetry", &["telemetry"]),
    ("security", &["citadel", "certManager", "nodeAgent"]),
    ("configManagement", &["galley"]),
    ("autoInjection", &["injector"]),
    ("gateways", &["ingressGateway", "egressGateway"]),
    ("cni", &["cni"]),
    ("coreDNS", &["coreDNS"]),
];

/// The fields of a component spec and of its `k8s` settings.
const COMPONENT_FIELDS: [&str; 3] = ["enabled", "namespace", "k8s"];
const K8S_FIELDS: [&str; 16] = [
    "affinity",
    "env",
    "hpaSpec",
    "imagePullPolicy",
    "nodeSelector",
    "podDisruptionBudget",
    "podAnnotations",
    "priorityClassName",
    "readinessProbe",
    "replicaCount",
    "resources",
    "service",
    "strategy",
    "tolerations",
    "overlays",
    "securityContext",
];

/// A `spec` path that 1.4's `IstioControlPlaneSpec` does not have, and why.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UnknownSpecPath(String);

/// Checks a `spec` path (`values.global.mtls.enabled`, `security.enabled`,
/// `trafficManagement.components.pilot.k8s.resources`) against 1.4's `IstioControlPlaneSpec`.
/// Values are free-form, as Helm values were.
pub(crate) fn check_spec_path(path: &str) -> Result<(), UnknownSpecPath> {
    let parts: Vec<&str> = path.split('.').collect();
    let top = parts[0];
    if !SPEC_FIELDS.contains(&top) {
        return Err(UnknownSpecPath(format!(
            "unknown field {top:?} of IstioControlPlane spec (fields: {})",
            SPEC_FIELDS.join(", ")
        )));
    }
    let Some((_, components)) = FEATURE_COMPONENTS.iter().find(|(feature, _)| *feature == top) else {
        return Ok(());
    };
    match parts.get(1).copied() {
        None | Some("enabled") => Ok(()),
        Some("components") => {
            let Some(component) = parts.get(2).copied() else { return Ok(()) };
            if component == "namespace" {
                return Ok(());
            }
            if !components.contains(&component) {
                return Err(UnknownSpecPath(format!(
                    "{top} has no component {component:?} (components: {})",
                    components.join(", ")
                )));
            }
            match parts.get(3).copied() {
                None => Ok(()),
                Some(field) if !COMPONENT_FIELDS.contains(&field) => {
                    Err(UnknownSpecPath(format!("unknown field {field:?} of component {top}.{component}")))
                }
                Some("k8s") => match parts.get(4).copied() {
                    Some(field) if !K8S_FIELDS.contains(&field) => Err(UnknownSpecPath(format!(
                        "unknown Kubernetes setting {field:?} of component {top}.{component}"
                    ))),
                    _ => Ok(()),
                },
                Some(_) => Ok(()),
            }
        }
        Some(field) => {
            Err(UnknownSpecPath(format!("unknown field {field:?} of feature {top} (fields: enabled, components)")))
        }
    }
}

/// Every path to a leaf of `value`, dotted.
fn leaf_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() && !prefix.ends_with(".values") && !prefix.ends_with("k8s") => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                // Values and Kubernetes settings are checked at their root only.
                if path == "values" || path == "unvalidatedValues" || path.ends_with(".k8s") {
                    out.push(path);
                    continue;
                }
                leaf_paths(&path, child, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Deep-merges `overlay` into `base`: objects key by key, everything else replaced.
pub(crate) fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

impl Install {
    /// The profile named by `--set profile=NAME` (or an overlay's `spec.profile`), with the
    /// overlays (`-f FILE`: `IstioControlPlane` documents, by name for errors) merged over it in
    /// order, then the `--set` overrides.
    pub fn resolve(sets: &[String], overlays: &[(String, String)]) -> Result<Install, InstallError> {
        let mut parsed = Vec::new();
        let mut profile = None;
        for (source_name, text) in overlays {
            let failed = |message: String| InstallError::Overlay { source_name: source_name.clone(), message };
            let overlay: Value = serde_yaml::from_str(text).map_err(|error| failed(error.to_string()))?;
            if overlay["kind"].as_str().is_some_and(|kind| kind != "IstioControlPlane") {
                return Err(failed(format!("expected kind IstioControlPlane, found {}", overlay["kind"])));
            }
            let spec = overlay.get("spec").cloned().unwrap_or(Value::Null);
            if !spec.is_object() {
                return Err(failed("has no spec".to_string()));
            }
            let mut paths = Vec::new();
            leaf_paths("", &spec, &mut paths);
            for path in paths {
                check_spec_path(&path).map_err(|unknown| failed(format!("spec.{path}: {unknown}")))?;
            }
            if let Some(name) = spec["profile"].as_str() {
                profile = Some(name.to_string());
            }
            parsed.push(spec);
        }
        for set in sets {
            let (path, _) = set.split_once('=').ok_or_else(|| InstallError::Value {
                path: set.clone(),
                message: "expected --set PATH=VALUE".to_string(),
            })?;
            let path = path.strip_prefix("spec.").unwrap_or(path);
            if path != "profile" {
                check_spec_path(path)
                    .map_err(|unknown| InstallError::Value { path: path.to_string(), message: unknown.to_string() })?;
            }
        }
        let mut with_profile = Vec::new();
        if let Some(name) = profile.filter(|_| !sets.iter().any(|set| set.starts_with("profile="))) {
            with_profile.push(format!("profile={name}"));
        }
        with_profile.extend(sets.iter().cloned());
        // The profile first, then the overlays, then the `--set`s.
        let profile_only: Vec<String> =
            with_profile.iter().filter(|set| set.starts_with("profile=")).cloned().collect();
        let (profile, mut document) = profiles::resolve(&profile_only).map_err(InstallError::Profile)?;
        for spec in &parsed {
            merge(&mut document["spec"], spec);
        }
        let others: Vec<String> = with_profile.into_iter().filter(|set| !set.starts_with("profile=")).collect();
        for set in &others {
            if let Some((path, value)) = set.split_once('=') {
                let path = path.strip_prefix("spec.").unwrap_or(path);
                profiles::set_path(&mut document["spec"], path, profiles::parse_scalar(value))
                    .map_err(|error| InstallError::Value { path: path.to_string(), message: format!("{error:#}") })?;
            }
        }
        Ok(Install { profile, document })
    }

    fn spec(&self) -> &Value {
        &self.document["spec"]
    }

    /// A feature or component path is enabled (`security`, `gateways.components.egressGateway`).
    pub fn enabled(&self, path: &str) -> bool {
        profiles::enabled(&self.document, path)
    }

    /// `spec.values` at a dotted path (all of them for an empty path).
    pub fn value(&self, path: &str) -> &Value {
        let mut current = &self.spec()["values"];
        for part in path.split('.').filter(|part| !part.is_empty()) {
            current = &current[part];
        }
        current
    }

    pub fn bool_value(&self, path: &str, default: bool) -> bool {
        self.value(path).as_bool().unwrap_or(default)
    }

    pub fn str_value(&self, path: &str, default: &str) -> String {
        self.value(path).as_str().unwrap_or(default).to_string()
    }

    /// The chart value at `path` deep-merged over its 1.4 default.
    pub fn merged(&self, path: &str, default: Value) -> Value {
        let mut merged = default;
        let value = self.value(path);
        if !value.is_null() {
            merge(&mut merged, value);
        }
        merged
    }

    pub fn hub(&self) -> String {
        let hub = self.spec()["hub"].as_str().or_else(|| self.value("global.hub").as_str());
        hub.filter(|hub| !hub.is_empty()).unwrap_or(DEFAULT_HUB).to_string()
    }

    pub fn tag(&self) -> String {
        let tag = self.spec()["tag"].as_str().or_else(|| self.value("global.tag").as_str());
        tag.filter(|tag| !tag.is_empty()).unwrap_or(DEFAULT_TAG).to_string()
    }

    /// An Istio image: `HUB/NAME:TAG`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.hub(), self.tag())
    }

    /// The namespace the control plane goes in (`spec.defaultNamespace`, 1.4's `istio-system`).
    pub fn namespace(&self) -> String {
        let namespace =
            self.spec()["defaultNamespace"].as_str().or_else(|| self.value("global.istioNamespace").as_str());
        namespace.filter(|namespace| !namespace.is_empty()).unwrap_or("istio-system").to_string()
    }

    /// A component's `k8s` settings (`spec.FEATURE.components.COMPONENT.k8s`).
    pub fn k8s(&self, feature: &str, component: &str) -> &Value {
        &self.spec()[feature]["components"][component]["k8s"]
    }

    /// `values.global.trustDomain`, or `cluster.local` as 1.4's proxies took it.
    pub fn trust_domain(&self) -> String {
        let domain = self.str_value("global.trustDomain", "");
        if domain.is_empty() {
            "cluster.local".to_string()
        } else {
            domain
        }
    }

    /// Whether the node agent runs: `security.components.nodeAgent`, or SDS turned on in the
    /// values as 1.4's `sds` profile did, with Citadel.
    pub fn node_agent(&self) -> bool {
        self.enabled("security")
            && (self.enabled("security.components.nodeAgent") || self.bool_value("global.sds.enabled", false))
    }

    /// `values.ADDON.enabled` for the addons, which 1.4's spec had no feature for.
    pub fn addon(&self, name: &str) -> bool {
        self.bool_value(&format!("{name}.enabled"), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_paths_are_checked_against_1_4s_fields() {
        for good in [
            "values.global.mtls.enabled",
            "security.enabled",
            "trafficManagement.components.pilot.enabled",
            "trafficManagement.components.pilot.k8s.resources.requests.cpu",
            "gateways.components.egressGateway.enabled",
            "hub",
        ] {
            assert_eq!(check_spec_path(good), Ok(()), "{good}");
        }
        let error = |path: &str| check_spec_path(path).expect_err(path).to_string();
        assert!(error("components.pilot.enabled").contains("unknown field \"components\""));
        assert!(error("trafficManagement.components.galley.enabled").contains("has no component \"galley\""));
        assert!(error("security.components.citadel.k8s.replicas").contains("unknown Kubernetes setting"));
        assert!(error("policy.enable").contains("unknown field \"enable\" of feature policy"));
    }

    #[test]
    fn overlays_and_sets_apply_over_the_profile_in_order() {
        let overlay = "apiVersion: install.istio.io/v1alpha2\nkind: IstioControlPlane\nspec:\n  profile: demo\n  hub: registry.example.com/istio-rs\n  values:\n    pilot:\n      traceSampling: 50\n";
        let install = Install::resolve(
            &["values.pilot.traceSampling=20".into(), "tag=1.4.10".into()],
            &[("overlay.yaml".into(), overlay.into())],
        )
        .expect("resolves");
        assert_eq!(install.profile, "demo");
        assert_eq!(install.image("pilot"), "registry.example.com/istio-rs/pilot:1.4.10");
        assert_eq!(install.value("pilot.traceSampling"), 20);
        assert!(install.enabled("gateways.components.egressGateway"), "the demo profile underneath");
        // Helm's deep merge: an overridden request keeps the default limit.
        let merged = install.merged("global.proxy.resources", serde_json::json!({"limits": {"cpu": "2000m"}}));
        assert_eq!(merged["limits"]["cpu"], "2000m");

        let bad =
            "kind: IstioControlPlane\nspec:\n  trafficManagement:\n    components:\n      mixer: {enabled: true}\n";
        let error = Install::resolve(&[], &[("bad.yaml".into(), bad.into())]).expect_err("refused").to_string();
        assert!(error.starts_with("bad.yaml: spec.trafficManagement.components.mixer.enabled"), "{error}");
        let error = Install::resolve(&["values.pilot".into()], &[]).expect_err("refused").to_string();
        assert!(error.contains("expected --set PATH=VALUE"), "{error}");
        let error = Install::resolve(&["profile=huge".into()], &[]).expect_err("refused").to_string();
        assert!(error.contains("unknown profile \"huge\""), "{error}");
    }
}
