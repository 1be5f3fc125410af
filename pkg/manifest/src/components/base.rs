//! The `Base` component: the Istio namespace, the CRDs, the `istio` ConfigMap holding the mesh
//! config, and the `istio-reader` role 1.4 installed for multicluster readers.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

use crate::install::{Install, InstallError};
use crate::k8s::{self, chart_labels, labels};
use crate::manifest::Manifest;
use crate::mesh;

const COMPONENT: &str = "Base";

pub(crate) fn manifests(install: &Install) -> Result<Vec<Manifest>, InstallError> {
    let namespace = install.namespace();
    let mut objects = vec![k8s::to_value(&Namespace {
        metadata: k8s::cluster_meta(&namespace, labels(&[("istio-injection", "disabled")])),
        ..Namespace::default()
    })];
    objects.extend(crate::crds::crds());
    objects.push(k8s::cluster_role(
        "istio-reader",
        labels(&[]),
        vec![
            k8s::rule(
                &[""],
                &["nodes", "pods", "services", "endpoints", "replicationcontrollers"],
                &["get", "watch", "list"],
            ),
            k8s::rule(&["apps"], &["replicasets"], &["get", "list", "watch"]),
        ],
    ));
    objects.push(k8s::service_account("istio-multi", &namespace, labels(&[])));
    objects.push(k8s::cluster_role_binding(
        "istio-multi",
        labels(&[("chart", "istio")]),
        "istio-reader",
        "istio-multi",
        &namespace,
    ));
    let mesh = serde_yaml::to_string(&mesh::mesh_config(install))
        .map_err(|error| InstallError::Render { object: "ConfigMap istio".into(), message: error.to_string() })?;
    objects.push(k8s::to_value(&ConfigMap {
        metadata: k8s::meta("istio", &namespace, chart_labels("istio", &[("app", "istio")])),
        data: Some([("mesh".to_string(), mesh), ("meshNetworks".to_string(), "networks: {}\n".to_string())].into()),
        ..ConfigMap::default()
    }));
    Ok(objects.into_iter().map(|object| Manifest { component: COMPONENT, object }).collect())
}
