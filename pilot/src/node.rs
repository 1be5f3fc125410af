//! Who is asking: the proxy behind an xDS stream, from its node id
//! (`sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local`) and the metadata
//! pilot-agent puts in the node (`ISTIO_META_*`): labels, namespace and instance IPs, which is
//! how a gateway is selected by the labels it announces.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    Sidecar,
    Router,
}

/// A connected proxy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Proxy {
    pub kind: ProxyKind,
    /// The node id as sent.
    pub id: String,
    /// `pod.namespace`, the third part of the node id.
    pub workload: String,
    pub namespace: String,
    pub ips: Vec<String>,
    pub labels: HashMap<String, String>,
    pub dns_domain: String,
    pub istio_version: String,
    /// The node metadata's string values (`ISTIO_META_*` without the prefix), which
    /// EnvoyFilter patches can match on.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// A gateway in `sni-dnat` router mode (`ISTIO_META_ROUTER_MODE`), which also gets the
    /// SNI-named clusters AUTO_PASSTHROUGH servers route to.
    pub sni_dnat: bool,
    /// Certificates come over SDS (`ISTIO_META_SDS=true`), not from files.
    pub sds: bool,
    /// Its own agent serves its mounted certificates over SDS (`AGENT_SDS=true`): they come
    /// from the bootstrap's `sds-grpc` cluster, never from a node agent.
    pub agent_sds: bool,
    /// A gateway whose own agent serves its namespace's Secrets over SDS (1.4's
    /// `ISTIO_META_USER_SDS=true`, with the `ingress-sds` container): Gateway servers'
    /// `credentialName` certificates come from it.
    pub user_sds: bool,
    /// The token the proxy proves itself to the node agent with (`ISTIO_META_SDS_TOKEN_PATH`;
    /// empty: 1.4's `/var/run/secrets/tokens/istio-token`).
    pub sds_token_path: String,
    /// The proxy announced Istio 1.4's `mixer` filter among its node's extensions (the
    /// built-in data plane does; a stock Envoy does not, and gets `ext_authz` instead).
    pub mixer_filter: bool,
    /// The null-VM Wasm plugins the proxy announced (category `envoy.wasm.null_vm`): the
    /// built-in data plane has 1.4's `envoy.wasm.metadata_exchange` and `envoy.wasm.stats`; a
    /// stock Envoy has none, and EnvoyFilter patches that need one are not sent to it.
    pub null_vm_plugins: std::collections::BTreeSet<String>,
    /// 1.4's per-proxy policy-check overrides (`ISTIO_META_POLICY_CHECK`: `enable`, `disable`,
    /// `allow-on-error`; retries and retry waits).
    pub policy_check: PolicyCheckOverrides,
    /// `node.locality` as the proxy sent it (its `istio-locality` label); Pilot prefers the
    /// locality its registry gives the proxy's own endpoints.
    pub locality: Option<envoy_types::pb::envoy::config::core::v3::Locality>,
}

/// A proxy's own say on Mixer policy checks (1.4's `POLICY_CHECK*` node metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyCheckOverrides {
    pub mode: String,
    pub retries: String,
    pub base_retry_wait: String,
    pub max_retry_wait: String,
}

/// The extension category the built-in data plane announces its null-VM Wasm plugins in.
pub(crate) const NULL_VM_CATEGORY: &str = "envoy.wasm.null_vm";

/// The name of Istio 1.4's Mixer filter, HTTP and network, as a proxy announces it.
pub(crate) const MIXER_FILTER: &str = "mixer";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NodeError {
    #[error("node id {0:?} is not of the form TYPE~IP~POD.NAMESPACE~DOMAIN")]
    BadId(String),
    #[error("node id {0:?}: proxy type must be sidecar or router")]
    BadType(String),
}

fn string_value(value: &Value) -> Option<String> {
    match &value.kind {
        Some(Kind::StringValue(text)) => Some(text.clone()),
        Some(Kind::NumberValue(number)) => Some(number.to_string()),
        Some(Kind::BoolValue(flag)) => Some(flag.to_string()),
        _ => None,
    }
}

fn metadata_string(metadata: Option<&Struct>, key: &str) -> Option<String> {
    metadata?.fields.get(key).and_then(string_value).filter(|text| !text.is_empty())
}

/// A boolean as Go's `strconv.ParseBool` reads it (how 1.4 read `USER_SDS`); anything else is
/// false.
fn parse_go_bool(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

impl Proxy {
    /// Parses an Envoy node into a proxy identity.
    pub(crate) fn from_node(node: &Node) -> Result<Proxy, NodeError> {
        let parts: Vec<&str> = node.id.split('~').collect();
        let [kind, ip, workload, domain] = parts.as_slice() else {
            return Err(NodeError::BadId(node.id.clone()));
        };
        let kind = match *kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" | "ingress" => ProxyKind::Router,
            _ => return Err(NodeError::BadType(node.id.clone())),
        };
        let metadata = node.metadata.as_ref();
        let namespace = metadata_string(metadata, "NAMESPACE")
            .or_else(|| metadata_string(metadata, "CONFIG_NAMESPACE"))
            .or_else(|| workload.split_once('.').map(|(_, namespace)| namespace.to_string()))
            .unwrap_or_else(|| "default".to_string());
        let mut ips: Vec<String> = metadata_string(metadata, "INSTANCE_IPS")
            .map(|list| list.split(',').map(|ip| ip.trim().to_string()).filter(|ip| !ip.is_empty()).collect())
            .unwrap_or_default();
        if ips.is_empty() && !ip.is_empty() {
            ips.push((*ip).to_string());
        }
        let labels = match metadata.and_then(|m| m.fields.get("LABELS")).and_then(|value| value.kind.as_ref()) {
            Some(Kind::StructValue(labels)) => {
                labels.fields.iter().filter_map(|(key, value)| string_value(value).map(|v| (key.clone(), v))).collect()
            }
            // ISTIO_META_LABELS may also arrive as a JSON string.
            Some(Kind::StringValue(text)) => serde_json::from_str::<HashMap<String, String>>(text).unwrap_or_default(),
            _ => HashMap::new(),
        };
        Ok(Proxy {
            kind,
            id: node.id.clone(),
            workload: (*workload).to_string(),
            namespace,
            ips,
            labels,
            dns_domain: (*domain).to_string(),
            istio_version: metadata_string(metadata, "ISTIO_VERSION").unwrap_or_default(),
            metadata: metadata
                .map(|m| m.fields.iter().filter_map(|(key, value)| Some((key.clone(), string_value(value)?))).collect())
                .unwrap_or_default(),
            sni_dnat: metadata_string(metadata, "ROUTER_MODE").as_deref() == Some("sni-dnat"),
            sds: metadata_string(metadata, "SDS").as_deref() == Some("true"),
            sds_token_path: metadata_string(metadata, "SDS_TOKEN_PATH").unwrap_or_default(),
            agent_sds: metadata_string(metadata, "AGENT_SDS").as_deref() == Some("true"),
            user_sds: metadata_string(metadata, "USER_SDS").as_deref().is_some_and(parse_go_bool),
            mixer_filter: node.extensions.iter().any(|extension| extension.name == MIXER_FILTER),
            null_vm_plugins: node
                .extensions
                .iter()
                .filter(|extension| extension.category == NULL_VM_CATEGORY)
                .map(|extension| extension.name.clone())
                .collect(),
            policy_check: PolicyCheckOverrides {
                mode: metadata_string(metadata, "POLICY_CHECK").unwrap_or_default(),
                retries: metadata_string(metadata, "POLICY_CHECK_RETRIES").unwrap_or_default(),
                base_retry_wait: metadata_string(metadata, "POLICY_CHECK_BASE_RETRY_WAIT_TIME").unwrap_or_default(),
                max_retry_wait: metadata_string(metadata, "POLICY_CHECK_MAX_RETRY_WAIT_TIME").unwrap_or_default(),
            },
            locality: node.locality.clone().filter(|locality| !locality.region.is_empty()),
        })
    }

    /// This proxy with the labels (and namespace) of its pod in the Kubernetes registry, when it
    /// announced no labels itself and the registry knows a pod at one of its IPs.
    pub(crate) fn with_registry_pod(&self, push: &crate::model::PushContext) -> Option<Proxy> {
        if !self.labels.is_empty() || push.pods.is_empty() {
            return None;
        }
        let pod = self.ips.iter().find_map(|ip| push.pods.get(ip))?;
        Some(Proxy { labels: pod.labels.clone(), namespace: pod.namespace.clone(), ..self.clone() })
    }

    /// Whether every label in `selector` is on this proxy.
    pub(crate) fn matches(&self, selector: &HashMap<String, String>) -> bool {
        selector.iter().all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value { kind: Some(Kind::StringValue(text.to_string())) }
    }

    #[test]
    fn parses_sidecars_and_gateways_with_metadata() {
        let labels = Struct { fields: [("istio".to_string(), string("ingressgateway"))].into_iter().collect() };
        let metadata = Struct {
            fields: [
                ("NAMESPACE".to_string(), string("istio-system")),
                ("INSTANCE_IPS".to_string(), string("10.1.0.9,fe80::1")),
                ("LABELS".to_string(), Value { kind: Some(Kind::StructValue(labels)) }),
                ("USER_SDS".to_string(), string("True")),
            ]
            .into_iter()
            .collect(),
        };
        let node = Node {
            id: "router~10.1.0.9~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local".into(),
            metadata: Some(metadata),
            ..Default::default()
        };
        let proxy = Proxy::from_node(&node).expect("parse");
        assert_eq!(proxy.kind, ProxyKind::Router);
        assert_eq!(proxy.namespace, "istio-system");
        assert_eq!(proxy.ips, vec!["10.1.0.9", "fe80::1"]);
        assert!(proxy.user_sds, "USER_SDS is read as Go's ParseBool reads it");
        assert!(!parse_go_bool("yes") && parse_go_bool("1") && parse_go_bool("t"));
        assert!(proxy.matches(&HashMap::from([("istio".to_string(), "ingressgateway".to_string())])));
        assert!(!proxy.matches(&HashMap::from([("istio".to_string(), "egressgateway".to_string())])));

        let sidecar = Proxy::from_node(&Node {
            id: "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local".into(),
            ..Default::default()
        })
        .expect("parse");
        assert_eq!((sidecar.namespace.as_str(), sidecar.ips[0].as_str()), ("default", "10.1.0.7"));
        assert!(!sidecar.user_sds);
        assert!(Proxy::from_node(&Node { id: "nonsense".into(), ..Default::default() }).is_err());
        assert!(Proxy::from_node(&Node { id: "mixer~1~a.b~c".into(), ..Default::default() }).is_err());
    }

    #[test]
    fn a_proxy_without_labels_gets_its_pods_from_the_registry() {
        let mut push = crate::model::PushContext::default();
        push.pods.insert(
            "10.1.0.7".into(),
            std::sync::Arc::new(crate::model::PodInfo {
                namespace: "default".into(),
                labels: HashMap::from([("app".to_string(), "reviews".to_string())]),
            }),
        );
        let bare = Proxy::from_node(&Node {
            id: "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local".into(),
            ..Default::default()
        })
        .expect("parse");
        assert_eq!(bare.with_registry_pod(&push).expect("enriched").labels["app"], "reviews");
        let elsewhere = Proxy { ips: vec!["10.9.9.9".into()], ..bare.clone() };
        assert!(elsewhere.with_registry_pod(&push).is_none(), "unknown IP: nothing to add");
    }
}
