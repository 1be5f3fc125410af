//! What the components share: a component's `k8s` settings from the `IstioControlPlane`
//! (resources, replicas, environment, scheduling) applied over the chart's defaults, the
//! autoscaler and disruption budget 1.4 gave a Deployment, and the pod-level defaults every
//! control-plane pod had.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Toleration};
use serde_json::{json, Value};

use crate::install::{merge, Install, InstallError};
use crate::k8s::{self, Labels};
use crate::manifest::Manifest;

/// What every 1.4 control-plane pod had: the architecture affinity, and no sidecar.
pub(crate) const NO_SIDECAR: (&str, &str) = ("sidecar.istio.io/inject", "false");

/// A control-plane pod spec: its service account, containers and volumes, 1.4's affinity.
pub(crate) fn control_pod(account: Option<&str>, containers: Vec<k8s_openapi::api::core::v1::Container>) -> PodSpec {
    PodSpec {
        service_account_name: account.map(str::to_string),
        containers,
        affinity: Some(k8s::arch_affinity()),
        ..PodSpec::default()
    }
}

/// Where a component's settings live: `spec.FEATURE.components.COMPONENT.k8s`, and the chart
/// values root (`pilot`, `mixer.policy`) for 1.4's `autoscaleEnabled`, `replicaCount` and
/// `resources`.
pub(crate) struct Settings<'a> {
    pub(crate) feature: &'a str,
    pub(crate) component: &'a str,
    pub(crate) values: &'a str,
}

impl Settings<'_> {
    fn k8s<'i>(&self, install: &'i Install) -> &'i Value {
        install.k8s(self.feature, self.component)
    }

    fn path(&self, field: &str) -> String {
        format!("{}.components.{}.k8s.{field}", self.feature, self.component)
    }

    /// Whether an autoscaler replaces a fixed replica count (`values.ROOT.autoscaleEnabled`,
    /// on by default where 1.4 had one, or a `k8s.hpaSpec`).
    pub(crate) fn autoscaled(&self, install: &Install, by_default: bool) -> bool {
        !self.k8s(install)["hpaSpec"].is_null()
            || install.bool_value(&format!("{}.autoscaleEnabled", self.values), by_default)
    }

    /// The container's resources: the chart default, the values' `resources`, then `k8s.resources`.
    pub(crate) fn resources(
        &self,
        install: &Install,
        default: Value,
    ) -> Result<k8s_openapi::api::core::v1::ResourceRequirements, InstallError> {
        let mut merged = install.merged(&format!("{}.resources", self.values), default);
        let overrides = &self.k8s(install)["resources"];
        if !overrides.is_null() {
            merge(&mut merged, overrides);
        }
        k8s::resources(&merged, &format!("values.{}.resources", self.values))
    }

    /// Replicas without an autoscaler: `k8s.replicaCount`, `values.ROOT.replicaCount`, or 1.
    pub(crate) fn replicas(&self, install: &Install) -> Option<i32> {
        let count = self.k8s(install)["replicaCount"]
            .as_i64()
            .or_else(|| install.value(&format!("{}.replicaCount", self.values)).as_i64())
            .unwrap_or(1);
        Some(i32::try_from(count).unwrap_or(1))
    }

    /// Applies the pod-level `k8s` settings (environment added to `container`, node selector,
    /// pod annotations, tolerations, affinity, priority class, strategy, image pull policy,
    /// readiness probe) to a Deployment.
    pub(crate) fn apply(
        &self,
        install: &Install,
        deployment: &mut Deployment,
        container: &str,
    ) -> Result<(), InstallError> {
        let k8s = self.k8s(install);
        if k8s.is_null() {
            return Ok(());
        }
        let Some(spec) = deployment.spec.as_mut() else { return Ok(()) };
        if !k8s["strategy"].is_null() {
            spec.strategy = Some(k8s::typed(&k8s["strategy"], &self.path("strategy"))?);
        }
        let template = &mut spec.template;
        if let Some(annotations) = k8s["podAnnotations"].as_object() {
            let metadata = template.metadata.get_or_insert_with(Default::default);
            let target = metadata.annotations.get_or_insert_with(Default::default);
            for (key, value) in annotations {
                target.insert(key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_string));
            }
        }
        let Some(pod) = template.spec.as_mut() else { return Ok(()) };
        if !k8s["nodeSelector"].is_null() {
            pod.node_selector = Some(k8s::typed(&k8s["nodeSelector"], &self.path("nodeSelector"))?);
        }
        if !k8s["tolerations"].is_null() {
            pod.tolerations = Some(k8s::typed::<Vec<Toleration>>(&k8s["tolerations"], &self.path("tolerations"))?);
        }
        if !k8s["affinity"].is_null() {
            pod.affinity = Some(k8s::typed(&k8s["affinity"], &self.path("affinity"))?);
        }
        if let Some(class) = k8s["priorityClassName"].as_str() {
            pod.priority_class_name = Some(class.to_string());
        }
        let Some(target) = pod.containers.iter_mut().find(|candidate| candidate.name == container) else {
            return Err(InstallError::Value {
                path: self.path("env"),
                message: format!("the component has no container {container:?}"),
            });
        };
        if !k8s["env"].is_null() {
            let extra: Vec<k8s_openapi::api::core::v1::EnvVar> = k8s::typed(&k8s["env"], &self.path("env"))?;
            target.env.get_or_insert_with(Vec::new).extend(extra);
        }
        if let Some(policy) = k8s["imagePullPolicy"].as_str() {
            target.image_pull_policy = Some(policy.to_string());
        }
        if !k8s["readinessProbe"].is_null() {
            target.readiness_probe = Some(k8s::typed(&k8s["readinessProbe"], &self.path("readinessProbe"))?);
        }
        Ok(())
    }

    /// 1.4's autoscaler for a Deployment (1–5 replicas at 80% CPU), or the `k8s.hpaSpec`.
    pub(crate) fn autoscaler(
        &self,
        install: &Install,
        meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        deployment: &str,
    ) -> Result<Value, InstallError> {
        let root =
            |field: &str, default: i64| install.value(&format!("{}.{field}", self.values)).as_i64().unwrap_or(default);
        let as_i32 = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
        let mut hpa = k8s::autoscaler(
            meta,
            deployment,
            as_i32(root("autoscaleMin", 1)),
            as_i32(root("autoscaleMax", 5)),
            as_i32(root("cpu.targetAverageUtilization", 80)),
        );
        let overrides = &self.k8s(install)["hpaSpec"];
        if !overrides.is_null() {
            merge(&mut hpa["spec"], overrides);
            let _: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec =
                k8s::typed(&hpa["spec"], &self.path("hpaSpec"))?;
        }
        Ok(hpa)
    }
}

/// A Deployment with its 1.4 extras: the autoscaler or a fixed replica count, and the
/// disruption budget keeping one pod up.
pub(crate) struct Workload<'a> {
    pub(crate) component: &'static str,
    pub(crate) settings: Settings<'a>,
    pub(crate) name: &'a str,
    pub(crate) namespace: String,
    pub(crate) labels: Labels,
    pub(crate) selector: Labels,
    pub(crate) pod_labels: Labels,
    pub(crate) pod: PodSpec,
    pub(crate) autoscaled_by_default: bool,
    pub(crate) main_container: &'a str,
    /// The budget's labels and selector, as each chart wrote them.
    pub(crate) budget: Option<(Labels, Labels)>,
    pub(crate) hpa_labels: Labels,
}

impl Workload<'_> {
    pub(crate) fn manifests(self, install: &Install) -> Result<Vec<Manifest>, InstallError> {
        let autoscaled = self.settings.autoscaled(install, self.autoscaled_by_default);
        let replicas = if autoscaled { None } else { self.settings.replicas(install) };
        let template = k8s::pod_template(self.pod_labels.clone(), &[NO_SIDECAR], self.pod);
        let mut deployment = k8s::deployment(
            k8s::meta(self.name, &self.namespace, self.labels.clone()),
            self.selector.clone(),
            replicas,
            template,
        );
        self.settings.apply(install, &mut deployment, self.main_container)?;
        let mut manifests = vec![Manifest { component: self.component, object: k8s::to_value(&deployment) }];
        if autoscaled {
            let meta = k8s::meta(self.name, &self.namespace, self.hpa_labels.clone());
            manifests.push(Manifest {
                component: self.component,
                object: self.settings.autoscaler(install, meta, self.name)?,
            });
        }
        if let Some((labels, selector)) = self.budget {
            if install.bool_value("global.defaultPodDisruptionBudget.enabled", true) {
                let meta = k8s::meta(self.name, &self.namespace, labels);
                manifests.push(Manifest { component: self.component, object: k8s::disruption_budget(meta, selector) });
            }
        }
        Ok(manifests)
    }
}

/// `global.proxy.resources`, 1.4's sidecar and gateway default.
pub(crate) fn proxy_resources_default() -> Value {
    json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2000m", "memory": "1024Mi"}})
}

/// `global.defaultResources`, for components whose chart set none.
pub(crate) fn default_resources() -> Value {
    json!({"requests": {"cpu": "10m"}})
}
