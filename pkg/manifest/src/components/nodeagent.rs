//! The `NodeAgent` component (the `sds` profile): the `istio-nodeagent` DaemonSet serving each
//! node's workloads their certificates over SDS on a host socket, with its account and role.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::workload::{control_pod, NO_SIDECAR};

const COMPONENT: &str = "NodeAgent";
const NAME: &str = "istio-nodeagent";
const ACCOUNT: &str = "istio-nodeagent-service-account";

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let socket = install.str_value("global.sds.udsPath", "unix:/var/run/sds/uds_path");
    let socket = socket.strip_prefix("unix:").unwrap_or(&socket).to_string();
    let socket_dir = std::path::Path::new(&socket)
        .parent()
        .map_or_else(|| "/var/run/sds".to_string(), |dir| dir.display().to_string());
    let mut agent = k8s::container("nodeagent", install.image("node-agent-k8s"));
    agent.args = Some(vec![format!("--workloadUDSPath={socket}")]);
    agent.env = Some(vec![
        k8s::env("CA_ADDR", &format!("istio-citadel.{namespace}:8060")),
        k8s::env("CA_PROVIDER", "Citadel"),
        k8s::env("PLUGINS", ""),
        k8s::env("VALID_TOKEN", "true"),
        k8s::env("TRUST_DOMAIN", &install.trust_domain()),
        k8s::env_field("NAMESPACE", "metadata.namespace"),
    ]);
    agent.volume_mounts = Some(vec![k8s::mount("sdsudspath", &socket_dir, false)]);
    let mut pod = control_pod(Some(ACCOUNT), vec![agent]);
    pod.affinity = None;
    pod.volumes = Some(vec![Volume {
        name: "sdsudspath".to_string(),
        host_path: Some(HostPathVolumeSource { path: socket_dir, type_: None }),
        ..Volume::default()
    }]);
    let all = chart_labels("nodeagent", &[("app", "nodeagent"), ("istio", "nodeagent")]);
    let daemon_set = DaemonSet {
        metadata: k8s::meta(NAME, &namespace, all.clone()),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("istio", "nodeagent")])),
                ..LabelSelector::default()
            },
            template: k8s::pod_template(all, &[NO_SIDECAR], pod),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                ..DaemonSetUpdateStrategy::default()
            }),
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    };
    let role = format!("istio-nodeagent-{namespace}");
    let account_labels = chart_labels("nodeagent", &[("app", "nodeagent")]);
    let mut objects = vec![k8s::to_value(&daemon_set)];
    objects.extend(k8s::account_with_role(
        ACCOUNT,
        &namespace,
        account_labels,
        &role,
        &role,
        vec![k8s::rule(&[""], &["configmaps"], &["get"])],
    ));
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}
