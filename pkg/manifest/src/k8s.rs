//! Small builders over k8s-openapi's typed structs, so the component modules read like the
//! charts they follow: labels, object metadata, containers, probes, volumes, services, RBAC
//! rules, autoscalers and disruption budgets as 1.4 rendered them. No Istio knowledge here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, PreferredSchedulingTerm, Probe, ResourceRequirements, SecretVolumeSource, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::install::InstallError;

pub(crate) type Labels = BTreeMap<String, String>;

/// Labels from pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

/// 1.4's Helm release labels beside a chart's own: `chart`, `heritage`, `release`.
pub(crate) fn chart_labels(chart: &str, own: &[(&str, &str)]) -> Labels {
    let mut all = labels(&[("chart", chart), ("heritage", "Tiller"), ("release", "istio")]);
    all.extend(labels(own));
    all
}

/// Metadata of a namespaced object.
pub(crate) fn meta(name: &str, namespace: &str, labels: Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

/// Metadata of a cluster-scoped object.
pub(crate) fn cluster_meta(name: &str, labels: Labels) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_string()), labels: (!labels.is_empty()).then_some(labels), ..ObjectMeta::default() }
}

/// A typed object as JSON, for the manifest list.
pub(crate) fn to_value<T: serde::Serialize>(object: &T) -> Value {
    // k8s-openapi's structs always serialize.
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Reads a user-given value (a `k8s` setting, a chart value) as a typed struct, naming its
/// path when it does not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: &Value, path: &str) -> Result<T, InstallError> {
    serde_json::from_value(value.clone())
        .map_err(|error| InstallError::Value { path: path.to_string(), message: error.to_string() })
}

pub(crate) fn service_account(name: &str, namespace: &str, labels: Labels) -> Value {
    to_value(&ServiceAccount { metadata: meta(name, namespace, labels), ..ServiceAccount::default() })
}

/// One RBAC rule.
pub(crate) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

pub(crate) fn cluster_role(name: &str, labels: Labels, rules: Vec<PolicyRule>) -> Value {
    to_value(&ClusterRole { metadata: cluster_meta(name, labels), rules: Some(rules), ..ClusterRole::default() })
}

/// A binding of `role` to the service account `account` in `namespace`.
pub(crate) fn cluster_role_binding(name: &str, labels: Labels, role: &str, account: &str, namespace: &str) -> Value {
    to_value(&ClusterRoleBinding {
        metadata: cluster_meta(name, labels),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: role.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: account.to_string(),
            namespace: Some(namespace.to_string()),
            ..Subject::default()
        }]),
    })
}

/// A component's service account, its ClusterRole `role` with `rules`, and the binding
/// `binding` giving the role to the account, as each 1.4 chart wrote the three.
pub(crate) fn account_with_role(
    account: &str,
    namespace: &str,
    labels: Labels,
    role: &str,
    binding: &str,
    rules: Vec<PolicyRule>,
) -> [Value; 3] {
    [
        service_account(account, namespace, labels.clone()),
        cluster_role(role, labels.clone(), rules),
        cluster_role_binding(binding, labels, role, account, namespace),
    ]
}

/// A named service port (`targetPort` only where it differs, as the charts wrote it).
pub(crate) fn service_port(name: &str, port: i32, target: Option<i32>) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: target.map(IntOrString::Int),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

pub(crate) fn service(meta: ObjectMeta, selector: Labels, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec { selector: Some(selector), ports: Some(ports), ..ServiceSpec::default() }),
        ..Service::default()
    }
}

pub(crate) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.to_string()), ..EnvVar::default() }
}

/// An environment variable from the pod's own fields (`metadata.name`, `status.podIP`).
pub(crate) fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { api_version: Some("v1".to_string()), field_path: path.to_string() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(crate) fn port(number: i32) -> ContainerPort {
    ContainerPort { container_port: number, ..ContainerPort::default() }
}

pub(crate) fn named_port(number: i32, name: &str) -> ContainerPort {
    ContainerPort {
        container_port: number,
        name: Some(name.to_string()),
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

/// An HTTP GET probe.
pub(crate) fn http_probe(path: &str, port: i32, initial_delay: Option<i32>, period: Option<i32>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: initial_delay,
        period_seconds: period,
        ..Probe::default()
    }
}

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn secret_volume(name: &str, secret: &str, optional: bool) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            optional: optional.then_some(true),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn config_map_volume(name: &str, config_map: &str, items: &[(&str, &str)]) -> Volume {
    Volume {
        name: name.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            items: (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(key, path)| KeyToPath { key: key.to_string(), path: path.to_string(), mode: None })
                    .collect()
            }),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Resource requests and limits from a chart value (`{requests: {cpu: 10m}, limits: …}`).
pub(crate) fn resources(value: &Value, path: &str) -> Result<ResourceRequirements, InstallError> {
    let section = |name: &str| -> Result<Option<BTreeMap<String, Quantity>>, InstallError> {
        match value[name].as_object() {
            None => Ok(None),
            Some(map) => map
                .iter()
                .map(|(key, quantity)| {
                    let text = match quantity {
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number.to_string(),
                        other => {
                            return Err(InstallError::Value {
                                path: format!("{path}.{name}.{key}"),
                                message: format!("not a quantity: {other}"),
                            })
                        }
                    };
                    Ok((key.clone(), Quantity(text)))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map(Some),
        }
    };
    Ok(ResourceRequirements { requests: section("requests")?, limits: section("limits")?, ..Default::default() })
}

/// The node affinity every 1.4 control-plane pod had (`beta.kubernetes.io/arch` became
/// `kubernetes.io/arch`): any of amd64, ppc64le and s390x, each preferred with weight 2.
pub(crate) fn arch_affinity() -> Affinity {
    const ARCHES: [&str; 3] = ["amd64", "ppc64le", "s390x"];
    let requirement = |values: &[&str]| NodeSelectorRequirement {
        key: "kubernetes.io/arch".to_string(),
        operator: "In".to_string(),
        values: Some(values.iter().map(|value| value.to_string()).collect()),
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![requirement(&ARCHES)]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            preferred_during_scheduling_ignored_during_execution: Some(
                ARCHES
                    .iter()
                    .map(|arch| PreferredSchedulingTerm {
                        weight: 2,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![requirement(&[arch])]),
                            ..NodeSelectorTerm::default()
                        },
                    })
                    .collect(),
            ),
        }),
        ..Affinity::default()
    }
}

/// A workload's pod: labels, annotations (1.4 kept sidecars off the control plane) and spec.
pub(crate) fn pod_template(labels: Labels, annotations: &[(&str, &str)], spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then(|| self::labels(annotations)),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// A Deployment as 1.4's charts made them: `replicas` only without an autoscaler, the
/// rolling-update strategy of 100% surge and 25% unavailable.
pub(crate) fn deployment(
    meta: ObjectMeta,
    selector: Labels,
    replicas: Option<i32>,
    template: PodTemplateSpec,
) -> Deployment {
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("100%".to_string())),
                    max_unavailable: Some(IntOrString::String("25%".to_string())),
                }),
                ..DeploymentStrategy::default()
            }),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// 1.4's autoscaler (`autoscaling/v2`): `min`–`max` replicas at `cpu`% average utilisation.
pub(crate) fn autoscaler(meta: ObjectMeta, deployment: &str, min: i32, max: i32, cpu: i32) -> Value {
    to_value(&HorizontalPodAutoscaler {
        metadata: meta,
        spec: Some(HorizontalPodAutoscalerSpec {
            min_replicas: Some(min),
            max_replicas: max,
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: deployment.to_string(),
            },
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(cpu),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// 1.4's disruption budget (`policy/v1`): one pod of `selector` always available.
pub(crate) fn disruption_budget(meta: ObjectMeta, selector: Labels) -> Value {
    to_value(&PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// A container with an image pulled as 1.4 did (`IfNotPresent`).
pub(crate) fn container(name: &str, image: String) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_string()),
        ..Container::default()
    }
}

/// Strings from `&str`s.
pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}
