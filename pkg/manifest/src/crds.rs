//! The CustomResourceDefinitions of Istio 1.4's kinds (its `crd-10`, `crd-11` and `crd-14`
//! files): the same groups, versions, kinds, plurals, short names, scopes, categories, labels and
//! printer columns, in `apiextensions.k8s.io/v1`. That API requires a structural schema, which
//! 1.4's CRDs (`v1beta1`) did not have: `spec` keeps unknown fields here, and Galley's
//! validating webhook checks the objects as it always did. cert-manager's CRDs (off in every
//! 1.4 profile) are left out.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};

use crate::k8s::{cluster_meta, labels, to_value};

/// One CRD as 1.4 defined it.
#[derive(Debug, Clone, Copy)]
pub struct CrdInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    /// `app` label value, and the extra labels 1.4 set.
    pub app: &'static str,
    pub extra_labels: &'static [(&'static str, &'static str)],
    /// Whether 1.4 printed `<Kind>List` as the list kind.
    pub list_kind: bool,
}

const NETWORKING: &[&str] = &["istio-io", "networking-istio-io"];
const POLICY: &[&str] = &["istio-io", "policy-istio-io"];
const APIM: &[&str] = &["istio-io", "apim-istio-io"];
const RBAC: &[&str] = &["istio-io", "rbac-istio-io"];
const AUTHN: &[&str] = &["istio-io", "authentication-istio-io"];
const MIXER_CORE: &[(&str, &str)] = &[("istio", "core"), ("package", "istio.io.mixer")];
const MIXER_RBAC: &[(&str, &str)] = &[("istio", "rbac"), ("package", "istio.io.mixer")];

/// One row of the table below, in the order 1.4's files give the fields.
#[allow(clippy::too_many_arguments)]
const fn crd(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    categories: &'static [&'static str],
    app: &'static str,
    extra_labels: &'static [(&'static str, &'static str)],
    list_kind: bool,
) -> CrdInfo {
    CrdInfo { group, version, kind, plural, short_names, namespaced, categories, app, extra_labels, list_kind }
}

/// 1.4.6's 23 Istio CRDs, in its files' order.
pub const CRDS: [CrdInfo; 23] = [
    crd(
        "config.istio.io",
        "v1alpha2",
        "attributemanifest",
        "attributemanifests",
        &[],
        true,
        POLICY,
        "mixer",
        MIXER_CORE,
        false,
    ),
    crd(
        "rbac.istio.io",
        "v1alpha1",
        "ClusterRbacConfig",
        "clusterrbacconfigs",
        &[],
        false,
        RBAC,
        "istio-pilot",
        &[("istio", "rbac")],
        false,
    ),
    crd(
        "networking.istio.io",
        "v1alpha3",
        "DestinationRule",
        "destinationrules",
        &["dr"],
        true,
        NETWORKING,
        "istio-pilot",
        &[],
        true,
    ),
    crd(
        "networking.istio.io",
        "v1alpha3",
        "EnvoyFilter",
        "envoyfilters",
        &[],
        true,
        NETWORKING,
        "istio-pilot",
        &[],
        false,
    ),
    crd("networking.istio.io", "v1alpha3", "Gateway", "gateways", &["gw"], true, NETWORKING, "istio-pilot", &[], false),
    crd(
        "config.istio.io",
        "v1alpha2",
        "HTTPAPISpecBinding",
        "httpapispecbindings",
        &[],
        true,
        APIM,
        "istio-mixer",
        &[],
        false,
    ),
    crd("config.istio.io", "v1alpha2", "HTTPAPISpec", "httpapispecs", &[], true, APIM, "istio-mixer", &[], false),
    crd(
        "authentication.istio.io",
        "v1alpha1",
        "MeshPolicy",
        "meshpolicies",
        &[],
        false,
        AUTHN,
        "istio-citadel",
        &[],
        true,
    ),
    crd("authentication.istio.io", "v1alpha1", "Policy", "policies", &[], true, AUTHN, "istio-citadel", &[], false),
    crd(
        "config.istio.io",
        "v1alpha2",
        "QuotaSpecBinding",
        "quotaspecbindings",
        &[],
        true,
        APIM,
        "istio-mixer",
        &[],
        false,
    ),
    crd("config.istio.io", "v1alpha2", "QuotaSpec", "quotaspecs", &[], true, APIM, "istio-mixer", &[], false),
    crd("rbac.istio.io", "v1alpha1", "RbacConfig", "rbacconfigs", &[], true, RBAC, "mixer", MIXER_RBAC, false),
    crd("config.istio.io", "v1alpha2", "rule", "rules", &[], true, POLICY, "mixer", MIXER_CORE, false),
    crd(
        "networking.istio.io",
        "v1alpha3",
        "ServiceEntry",
        "serviceentries",
        &["se"],
        true,
        NETWORKING,
        "istio-pilot",
        &[],
        true,
    ),
    crd(
        "rbac.istio.io",
        "v1alpha1",
        "ServiceRoleBinding",
        "servicerolebindings",
        &[],
        true,
        RBAC,
        "mixer",
        MIXER_RBAC,
        false,
    ),
    crd("rbac.istio.io", "v1alpha1", "ServiceRole", "serviceroles", &[], true, RBAC, "mixer", MIXER_RBAC, false),
    crd(
        "networking.istio.io",
        "v1alpha3",
        "VirtualService",
        "virtualservices",
        &["vs"],
        true,
        NETWORKING,
        "istio-pilot",
        &[],
        true,
    ),
    crd(
        "config.istio.io",
        "v1alpha2",
        "adapter",
        "adapters",
        &[],
        true,
        POLICY,
        "mixer",
        &[("istio", "mixer-adapter"), ("package", "adapter")],
        false,
    ),
    crd(
        "config.istio.io",
        "v1alpha2",
        "instance",
        "instances",
        &[],
        true,
        POLICY,
        "mixer",
        &[("istio", "mixer-instance"), ("package", "instance")],
        false,
    ),
    crd(
        "config.istio.io",
        "v1alpha2",
        "template",
        "templates",
        &[],
        true,
        POLICY,
        "mixer",
        &[("istio", "mixer-template"), ("package", "template")],
        false,
    ),
    crd(
        "config.istio.io",
        "v1alpha2",
        "handler",
        "handlers",
        &[],
        true,
        POLICY,
        "mixer",
        &[("istio", "mixer-handler"), ("package", "handler")],
        false,
    ),
    crd("networking.istio.io", "v1alpha3", "Sidecar", "sidecars", &[], true, NETWORKING, "istio-pilot", &[], false),
    crd(
        "security.istio.io",
        "v1beta1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        &[],
        true,
        &["istio-io", "security-istio-io"],
        "istio-pilot",
        &[("istio", "security")],
        false,
    ),
];

/// The printer columns 1.4 gave a kind (name, JSON path, description), before `Age`.
fn printer_columns(kind: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match kind {
        "DestinationRule" => &[("Host", ".spec.host", "The name of a service from the service registry")],
        "ServiceEntry" => &[
            ("Hosts", ".spec.hosts", "The hosts associated with the ServiceEntry"),
            (
                "Location",
                ".spec.location",
                "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)",
            ),
            ("Resolution", ".spec.resolution", "Service discovery mode for the hosts (NONE, STATIC, or DNS)"),
        ],
        "ServiceRoleBinding" => {
            &[("Reference", ".spec.roleRef.name", "The name of the ServiceRole object being referenced")]
        }
        "VirtualService" => &[
            ("Gateways", ".spec.gateways", "The names of gateways and sidecars that should apply these routes"),
            ("Hosts", ".spec.hosts", "The destination hosts to which traffic is being sent"),
        ],
        _ => &[],
    }
}

const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC. Populated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md#metadata";

/// An object schema that keeps whatever it is given.
fn open_object() -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some("object".to_string()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..JSONSchemaProps::default()
    }
}

/// The structural schema: `spec` and `status` as open objects.
fn schema() -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some("object".to_string()),
        properties: Some([("spec".to_string(), open_object()), ("status".to_string(), open_object())].into()),
        ..JSONSchemaProps::default()
    }
}

impl CrdInfo {
    /// `plural.group`, the CRD's name.
    pub fn name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// The CRD object.
    pub fn definition(&self) -> CustomResourceDefinition {
        let mut crd_labels =
            labels(&[("app", self.app), ("chart", "istio"), ("heritage", "Tiller"), ("release", "istio")]);
        crd_labels.extend(labels(self.extra_labels));
        if self.kind == "AuthorizationPolicy" || self.kind == "ClusterRbacConfig" {
            crd_labels.remove("chart");
        }
        let mut columns: Vec<CustomResourceColumnDefinition> = printer_columns(self.kind)
            .iter()
            .map(|(name, path, description)| CustomResourceColumnDefinition {
                name: name.to_string(),
                json_path: path.to_string(),
                description: Some(description.to_string()),
                type_: "string".to_string(),
                ..CustomResourceColumnDefinition::default()
            })
            .collect();
        if !columns.is_empty() {
            columns.push(CustomResourceColumnDefinition {
                name: "Age".to_string(),
                json_path: ".metadata.creationTimestamp".to_string(),
                description: Some(AGE_DESCRIPTION.to_string()),
                type_: "date".to_string(),
                ..CustomResourceColumnDefinition::default()
            });
        }
        let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        CustomResourceDefinition {
            metadata: cluster_meta(&self.name(), crd_labels),
            spec: CustomResourceDefinitionSpec {
                group: self.group.to_string(),
                names: CustomResourceDefinitionNames {
                    kind: self.kind.to_string(),
                    plural: self.plural.to_string(),
                    singular: Some(self.singular()),
                    short_names: (!self.short_names.is_empty()).then(|| strings(self.short_names)),
                    categories: Some(strings(self.categories)),
                    list_kind: self.list_kind.then(|| format!("{}List", self.kind)),
                },
                scope: if self.namespaced { "Namespaced" } else { "Cluster" }.to_string(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: self.version.to_string(),
                    served: true,
                    storage: true,
                    schema: Some(CustomResourceValidation { open_api_v3_schema: Some(schema()) }),
                    subresources: Some(CustomResourceSubresources {
                        status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
                        ..CustomResourceSubresources::default()
                    }),
                    additional_printer_columns: (!columns.is_empty()).then_some(columns),
                    ..CustomResourceDefinitionVersion::default()
                }],
                preserve_unknown_fields: Some(false),
                ..CustomResourceDefinitionSpec::default()
            },
            ..CustomResourceDefinition::default()
        }
    }

    /// The singular name: the kind in lower case, as 1.4 wrote them.
    fn singular(&self) -> String {
        self.kind.to_lowercase()
    }
}

/// Every CRD, as JSON.
pub fn crds() -> Vec<serde_json::Value> {
    CRDS.iter().map(|info| to_value(&info.definition())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crds_are_1_4s_kinds_one_for_one() {
        let mut ours: Vec<(String, String, String, String, bool)> = CRDS
            .iter()
            .map(|crd| (crd.group.into(), crd.version.into(), crd.kind.into(), crd.plural.into(), crd.namespaced))
            .collect();
        ours.sort();
        let mut api: Vec<(String, String, String, String, bool)> = istio_api::kinds::all()
            .iter()
            .filter(|kind| !kind.legacy)
            .map(|kind| (kind.group.into(), kind.version.into(), kind.kind.into(), kind.plural.into(), kind.namespaced))
            .collect();
        api.sort();
        assert_eq!(ours, api, "every kind the API knows has its CRD, and no other");
    }

    #[test]
    fn a_crd_keeps_1_4s_names_and_columns() {
        let virtual_service = CRDS.iter().find(|crd| crd.kind == "VirtualService").expect("vs").definition();
        let json = serde_json::to_value(&virtual_service).expect("json");
        assert_eq!(json["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(json["metadata"]["name"], "virtualservices.networking.istio.io");
        assert_eq!(json["spec"]["names"]["shortNames"], serde_json::json!(["vs"]));
        assert_eq!(json["spec"]["names"]["singular"], "virtualservice");
        assert_eq!(json["spec"]["names"]["listKind"], "VirtualServiceList");
        let columns = &json["spec"]["versions"][0]["additionalPrinterColumns"];
        assert_eq!(columns[0]["jsonPath"], ".spec.gateways");
        assert_eq!(columns[2]["name"], "Age");
        let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(schema["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"], true);
        let mesh_policy = CRDS.iter().find(|crd| crd.kind == "MeshPolicy").expect("mp").definition();
        assert_eq!(mesh_policy.spec.scope, "Cluster");
    }
}
