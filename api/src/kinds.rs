//! The registry of Istio config kinds: for each one its Kubernetes group/version/kind and plural,
//! the MCP collection Galley serves it under, the proto message its `spec` holds, whether it is
//! namespaced, and which validation webhook (`/admitpilot` or `/admitmixer`) admits it.
//!
//! The table follows Galley 1.4's metadata. It holds no behaviour beyond lookups.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The validation webhook that admits a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Webhook {
    /// `pilot.validation.istio.io`, served at `/admitpilot`.
    Pilot,
    /// `mixer.validation.istio.io`, served at `/admitmixer`.
    Mixer,
}

impl Webhook {
    /// The HTTP path Galley serves the webhook on.
    pub fn path(self) -> &'static str {
        match self {
            Webhook::Pilot => "/admitpilot",
            Webhook::Mixer => "/admitmixer",
        }
    }
}

/// One Istio config kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// The MCP collection, e.g. `istio/networking/v1alpha3/virtualservices`.
    pub collection: &'static str,
    /// The full proto name of the message the object's `spec` holds.
    pub proto: &'static str,
    pub namespaced: bool,
    pub webhook: Webhook,
    /// A legacy per-adapter or per-template Mixer kind (validated, but not a 1.4 CRD).
    pub legacy: bool,
}

impl Kind {
    /// `group/version`, the object's `apiVersion`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The type URL of the `spec` message inside an MCP `Resource.body`.
    pub fn type_url(&self) -> String {
        format!("type.googleapis.com/{}", self.proto)
    }
}

/// The collection of ServiceEntries Galley synthesizes from Services, Endpoints, Pods and Nodes.
pub const SYNTHETIC_SERVICE_ENTRIES: &str = "istio/networking/v1alpha3/synthetic/serviceentries";
/// The collection holding the one mesh config Galley reads from `--meshConfigFile`.
pub const MESH_CONFIG: &str = "istio/mesh/v1alpha1/MeshConfig";
/// Proto of a ServiceEntry, the body of synthetic service entries.
pub const SERVICE_ENTRY_PROTO: &str = "istio.networking.v1alpha3.ServiceEntry";
/// Proto of the mesh config.
pub const MESH_CONFIG_PROTO: &str = "istio.mesh.v1alpha1.MeshConfig";

const NETWORKING: &str = "networking.istio.io";
const AUTHENTICATION: &str = "authentication.istio.io";
const RBAC: &str = "rbac.istio.io";
const SECURITY: &str = "security.istio.io";
const CONFIG: &str = "config.istio.io";

const fn pilot(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    collection: &'static str,
    proto: &'static str,
    namespaced: bool,
) -> Kind {
    Kind { group, version, kind, plural, collection, proto, namespaced, webhook: Webhook::Pilot, legacy: false }
}

const fn mixer(kind: &'static str, plural: &'static str, collection: &'static str, proto: &'static str) -> Kind {
    Kind {
        group: CONFIG,
        version: "v1alpha2",
        kind,
        plural,
        collection,
        proto,
        namespaced: true,
        webhook: Webhook::Mixer,
        legacy: false,
    }
}

const fn legacy(kind: &'static str, plural: &'static str, collection: &'static str, proto: &'static str) -> Kind {
    Kind { legacy: true, ..mixer(kind, plural, collection, proto) }
}

/// Every kind Galley knows, in a stable order.
pub static KINDS: &[Kind] = &[
    // networking.istio.io/v1alpha3
    pilot(
        NETWORKING,
        "v1alpha3",
        "VirtualService",
        "virtualservices",
        "istio/networking/v1alpha3/virtualservices",
        "istio.networking.v1alpha3.VirtualService",
        true,
    ),
    pilot(
        NETWORKING,
        "v1alpha3",
        "DestinationRule",
        "destinationrules",
        "istio/networking/v1alpha3/destinationrules",
        "istio.networking.v1alpha3.DestinationRule",
        true,
    ),
    pilot(
        NETWORKING,
        "v1alpha3",
        "Gateway",
        "gateways",
        "istio/networking/v1alpha3/gateways",
        "istio.networking.v1alpha3.Gateway",
        true,
    ),
    pilot(
        NETWORKING,
        "v1alpha3",
        "ServiceEntry",
        "serviceentries",
        "istio/networking/v1alpha3/serviceentries",
        SERVICE_ENTRY_PROTO,
        true,
    ),
    pilot(
        NETWORKING,
        "v1alpha3",
        "Sidecar",
        "sidecars",
        "istio/networking/v1alpha3/sidecars",
        "istio.networking.v1alpha3.Sidecar",
        true,
    ),
    pilot(
        NETWORKING,
        "v1alpha3",
        "EnvoyFilter",
        "envoyfilters",
        "istio/networking/v1alpha3/envoyfilters",
        "istio.networking.v1alpha3.EnvoyFilter",
        true,
    ),
    // authentication.istio.io/v1alpha1
    pilot(
        AUTHENTICATION,
        "v1alpha1",
        "Policy",
        "policies",
        "istio/authentication/v1alpha1/policies",
        "istio.authentication.v1alpha1.Policy",
        true,
    ),
    pilot(
        AUTHENTICATION,
        "v1alpha1",
        "MeshPolicy",
        "meshpolicies",
        "istio/authentication/v1alpha1/meshpolicies",
        "istio.authentication.v1alpha1.Policy",
        false,
    ),
    // rbac.istio.io/v1alpha1
    pilot(
        RBAC,
        "v1alpha1",
        "ServiceRole",
        "serviceroles",
        "istio/rbac/v1alpha1/serviceroles",
        "istio.rbac.v1alpha1.ServiceRole",
        true,
    ),
    pilot(
        RBAC,
        "v1alpha1",
        "ServiceRoleBinding",
        "servicerolebindings",
        "istio/rbac/v1alpha1/servicerolebindings",
        "istio.rbac.v1alpha1.ServiceRoleBinding",
        true,
    ),
    pilot(
        RBAC,
        "v1alpha1",
        "RbacConfig",
        "rbacconfigs",
        "istio/rbac/v1alpha1/rbacconfigs",
        "istio.rbac.v1alpha1.RbacConfig",
        true,
    ),
    pilot(
        RBAC,
        "v1alpha1",
        "ClusterRbacConfig",
        "clusterrbacconfigs",
        "istio/rbac/v1alpha1/clusterrbacconfigs",
        "istio.rbac.v1alpha1.RbacConfig",
        false,
    ),
    // security.istio.io/v1beta1
    pilot(
        SECURITY,
        "v1beta1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        "istio/security/v1beta1/authorizationpolicies",
        "istio.security.v1beta1.AuthorizationPolicy",
        true,
    ),
    // config.istio.io/v1alpha2: Mixer client config, admitted by the pilot webhook
    pilot(
        CONFIG,
        "v1alpha2",
        "HTTPAPISpec",
        "httpapispecs",
        "istio/config/v1alpha2/httpapispecs",
        "istio.mixer.v1.config.client.HTTPAPISpec",
        true,
    ),
    pilot(
        CONFIG,
        "v1alpha2",
        "HTTPAPISpecBinding",
        "httpapispecbindings",
        "istio/config/v1alpha2/httpapispecbindings",
        "istio.mixer.v1.config.client.HTTPAPISpecBinding",
        true,
    ),
    pilot(
        CONFIG,
        "v1alpha2",
        "QuotaSpec",
        "quotaspecs",
        "istio/mixer/v1/config/client/quotaspecs",
        "istio.mixer.v1.config.client.QuotaSpec",
        true,
    ),
    pilot(
        CONFIG,
        "v1alpha2",
        "QuotaSpecBinding",
        "quotaspecbindings",
        "istio/mixer/v1/config/client/quotaspecbindings",
        "istio.mixer.v1.config.client.QuotaSpecBinding",
        true,
    ),
    // config.istio.io/v1alpha2: Mixer config
    mixer("rule", "rules", "istio/policy/v1beta1/rules", "istio.policy.v1beta1.Rule"),
    mixer(
        "attributemanifest",
        "attributemanifests",
        "istio/policy/v1beta1/attributemanifests",
        "istio.policy.v1beta1.AttributeManifest",
    ),
    mixer("instance", "instances", "istio/policy/v1beta1/instances", "istio.policy.v1beta1.Instance"),
    mixer("handler", "handlers", "istio/policy/v1beta1/handlers", "istio.policy.v1beta1.Handler"),
    mixer("adapter", "adapters", "istio/config/v1alpha2/adapters", "istio.mixer.adapter.model.v1beta1.Info"),
    mixer("template", "templates", "istio/config/v1alpha2/templates", "istio.mixer.adapter.model.v1beta1.Template"),
    // config.istio.io/v1alpha2: legacy per-adapter kinds (spec = adapter params)
    legacy("bypass", "bypasses", "istio/config/v1alpha2/legacy/bypasses", "adapter.bypass.config.Params"),
    legacy("circonus", "circonuses", "istio/config/v1alpha2/legacy/circonuses", "adapter.circonus.config.Params"),
    legacy(
        "cloudwatch",
        "cloudwatches",
        "istio/config/v1alpha2/legacy/cloudwatches",
        "adapter.cloudwatch.config.Params",
    ),
    legacy("denier", "deniers", "istio/config/v1alpha2/legacy/deniers", "adapter.denier.config.Params"),
    legacy("dogstatsd", "dogstatsds", "istio/config/v1alpha2/legacy/dogstatsds", "adapter.dogstatsd.config.Params"),
    legacy("fluentd", "fluentds", "istio/config/v1alpha2/legacy/fluentds", "adapter.fluentd.config.Params"),
    legacy(
        "kubernetesenv",
        "kubernetesenvs",
        "istio/config/v1alpha2/legacy/kubernetesenvs",
        "adapter.kubernetesenv.config.Params",
    ),
    legacy("listchecker", "listcheckers", "istio/config/v1alpha2/legacy/listcheckers", "adapter.list.config.Params"),
    legacy("memquota", "memquotas", "istio/config/v1alpha2/legacy/memquotas", "adapter.memquota.config.Params"),
    legacy("noop", "noops", "istio/config/v1alpha2/legacy/noops", "google.protobuf.Struct"),
    legacy("opa", "opas", "istio/config/v1alpha2/legacy/opas", "adapter.opa.config.Params"),
    legacy(
        "prometheus",
        "prometheuses",
        "istio/config/v1alpha2/legacy/prometheuses",
        "adapter.prometheus.config.Params",
    ),
    legacy("rbac", "rbacs", "istio/config/v1alpha2/legacy/rbacs", "google.protobuf.Struct"),
    legacy("redisquota", "redisquotas", "istio/config/v1alpha2/legacy/redisquotas", "adapter.redisquota.config.Params"),
    legacy("signalfx", "signalfxs", "istio/config/v1alpha2/legacy/signalfxs", "adapter.signalfx.config.Params"),
    legacy(
        "solarwinds",
        "solarwindses",
        "istio/config/v1alpha2/legacy/solarwindses",
        "adapter.solarwinds.config.Params",
    ),
    legacy(
        "stackdriver",
        "stackdrivers",
        "istio/config/v1alpha2/legacy/stackdrivers",
        "adapter.stackdriver.config.Params",
    ),
    legacy("statsd", "statsds", "istio/config/v1alpha2/legacy/statsds", "adapter.statsd.config.Params"),
    legacy("stdio", "stdios", "istio/config/v1alpha2/legacy/stdios", "adapter.stdio.config.Params"),
    legacy("zipkin", "zipkins", "istio/config/v1alpha2/legacy/zipkins", "adapter.zipkin.config.Params"),
    // config.istio.io/v1alpha2: legacy per-template kinds (spec = template instance params)
    legacy("apikey", "apikeys", "istio/config/v1alpha2/legacy/apikeys", "apikey.InstanceParam"),
    legacy(
        "authorization",
        "authorizations",
        "istio/config/v1alpha2/legacy/authorizations",
        "authorization.InstanceParam",
    ),
    legacy("checknothing", "checknothings", "istio/config/v1alpha2/legacy/checknothings", "checknothing.InstanceParam"),
    legacy("edge", "edges", "istio/config/v1alpha2/legacy/edges", "edge.InstanceParam"),
    legacy(
        "kubernetes",
        "kuberneteses",
        "istio/config/v1alpha2/legacy/kuberneteses",
        "adapter.template.kubernetes.InstanceParam",
    ),
    legacy("listentry", "listentries", "istio/config/v1alpha2/legacy/listentries", "listentry.InstanceParam"),
    legacy("logentry", "logentries", "istio/config/v1alpha2/legacy/logentries", "logentry.InstanceParam"),
    legacy("metric", "metrics", "istio/config/v1alpha2/legacy/metrics", "metric.InstanceParam"),
    legacy("quota", "quotas", "istio/config/v1alpha2/legacy/quotas", "quota.InstanceParam"),
    legacy(
        "reportnothing",
        "reportnothings",
        "istio/config/v1alpha2/legacy/reportnothings",
        "reportnothing.InstanceParam",
    ),
    legacy("tracespan", "tracespans", "istio/config/v1alpha2/legacy/tracespans", "tracespan.InstanceParam"),
];

static BY_GROUP_KIND: LazyLock<HashMap<(&'static str, &'static str), &'static Kind>> =
    LazyLock::new(|| KINDS.iter().map(|kind| ((kind.group, kind.kind), kind)).collect());

static BY_COLLECTION: LazyLock<HashMap<&'static str, &'static Kind>> =
    LazyLock::new(|| KINDS.iter().map(|kind| (kind.collection, kind)).collect());

/// Every kind.
pub fn all() -> &'static [Kind] {
    KINDS
}

/// The kind named by an object's `apiVersion` and `kind`; `None` for anything that is not an
/// Istio config kind (core Kubernetes objects, or a version Istio 1.4 did not serve).
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static Kind> {
    let (group, version) = api_version.split_once('/')?;
    BY_GROUP_KIND.get(&(group, kind)).copied().filter(|found| found.version == version)
}

/// The kind of an object whose group is an Istio group, whatever its version; lets callers
/// tell "not Istio" apart from "Istio, but a version we do not serve".
pub fn lookup_any_version(api_version: &str, kind: &str) -> Option<&'static Kind> {
    let group = api_version.split_once('/').map_or(api_version, |(group, _)| group);
    BY_GROUP_KIND.get(&(group, kind)).copied()
}

/// Whether `group` is one of Istio's config API groups.
pub fn is_istio_group(group: &str) -> bool {
    matches!(group, NETWORKING | AUTHENTICATION | RBAC | SECURITY | CONFIG)
}

/// The kind served under an MCP collection.
pub fn by_collection(collection: &str) -> Option<&'static Kind> {
    BY_COLLECTION.get(collection).copied()
}

/// A kind by plural or kind name, case-insensitively (`virtualservices`, `VirtualService`, `vs`
/// is not accepted: only the names Kubernetes itself would take).
pub fn by_name(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.plural.eq_ignore_ascii_case(name) || kind.kind.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_known_proto_and_unique_collection() {
        let mut collections = std::collections::HashSet::new();
        for kind in all() {
            assert!(
                crate::json::message_descriptor(kind.proto).is_ok(),
                "{} names proto {} which is not compiled in",
                kind.kind,
                kind.proto
            );
            assert!(collections.insert(kind.collection), "duplicate collection {}", kind.collection);
        }
        assert!(crate::json::message_descriptor(MESH_CONFIG_PROTO).is_ok());
    }

    #[test]
    fn lookups_agree() {
        let vs = lookup("networking.istio.io/v1alpha3", "VirtualService").expect("VirtualService");
        assert_eq!(vs.plural, "virtualservices");
        assert_eq!(by_collection(vs.collection), Some(vs));
        assert_eq!(lookup("networking.istio.io/v1beta1", "VirtualService"), None);
        assert!(lookup_any_version("networking.istio.io/v1beta1", "VirtualService").is_some());
        assert_eq!(lookup("v1", "Service"), None);
        assert_eq!(by_name("meshpolicies").map(|k| k.kind), Some("MeshPolicy"));
        assert!(!lookup("authentication.istio.io/v1alpha1", "MeshPolicy").expect("MeshPolicy").namespaced);
        assert_eq!(lookup("config.istio.io/v1alpha2", "rule").map(|k| k.webhook), Some(Webhook::Mixer));
        assert_eq!(lookup("config.istio.io/v1alpha2", "QuotaSpec").map(|k| k.webhook), Some(Webhook::Pilot));
    }
}
