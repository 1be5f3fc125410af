//! Node metadata as the telemetry plugins read it: the local proxy's (its bootstrap node) and
//! each peer's (from its `x-envoy-peer-metadata` header). Only 1.4's NodeInfo fields are read,
//! leniently, as 1.4's parser did: a key of the wrong type reads as empty.

use std::collections::BTreeMap;

use base64::Engine;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use prost::Message;

/// The keys of node metadata a proxy sends its peers unless `EXCHANGE_KEYS` says otherwise
/// (1.4.6's pilot-agent always wrote these).
pub(crate) const DEFAULT_EXCHANGE_KEYS: &str =
    "NAME,NAMESPACE,INSTANCE_IPS,LABELS,OWNER,PLATFORM_METADATA,WORKLOAD_NAME,CANONICAL_TELEMETRY_SERVICE,MESH_ID,SERVICE_ACCOUNT";

/// 1.4's `wasm.common.NodeInfo`: what telemetry knows about a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub owner: String,
    pub workload_name: String,
    pub platform_metadata: BTreeMap<String, String>,
    pub istio_version: String,
    pub mesh_id: String,
}

fn text(value: &Value) -> String {
    match &value.kind {
        Some(Kind::StringValue(text)) => text.clone(),
        _ => String::new(),
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    match &value.kind {
        Some(Kind::StructValue(fields)) => {
            fields.fields.iter().map(|(key, value)| (key.clone(), text(value))).collect()
        }
        _ => BTreeMap::new(),
    }
}

impl NodeInfo {
    /// Reads the NodeInfo fields of node metadata; other keys are ignored.
    pub(crate) fn from_struct(metadata: &Struct) -> NodeInfo {
        let mut info = NodeInfo::default();
        for (key, value) in &metadata.fields {
            match key.as_str() {
                "NAME" => info.name = text(value),
                "NAMESPACE" => info.namespace = text(value),
                "LABELS" => info.labels = string_map(value),
                "OWNER" => info.owner = text(value),
                "WORKLOAD_NAME" => info.workload_name = text(value),
                "PLATFORM_METADATA" => info.platform_metadata = string_map(value),
                "ISTIO_VERSION" => info.istio_version = text(value),
                "MESH_ID" => info.mesh_id = text(value),
                _ => {}
            }
        }
        info
    }

    /// A label's value, empty when the workload has none.
    pub(crate) fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// This proxy as its peers see it: its node id, the encoded metadata it sends, and its own
/// NodeInfo.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalNode {
    pub id: String,
    /// `x-envoy-peer-metadata`: the exchanged keys of the node metadata, a protobuf `Struct`
    /// in base64; empty when there is nothing to send.
    pub header_value: String,
    pub info: NodeInfo,
}

impl LocalNode {
    /// From the bootstrap's node: the keys `EXCHANGE_KEYS` names (1.4.6's list when it names
    /// none) are what peers get.
    pub(crate) fn from_node(node: Option<&Node>) -> LocalNode {
        let Some(node) = node else { return LocalNode::default() };
        let metadata = node.metadata.clone().unwrap_or_default();
        let keys = match metadata.fields.get("EXCHANGE_KEYS").map(|value| &value.kind) {
            Some(Some(Kind::StringValue(keys))) => keys.clone(),
            _ => DEFAULT_EXCHANGE_KEYS.to_string(),
        };
        let exchanged = Struct {
            fields: keys
                .split(',')
                .filter(|key| !key.trim().is_empty())
                .filter_map(|key| metadata.fields.get(key).map(|value| (key.to_string(), value.clone())))
                .collect(),
        };
        let header_value = if exchanged.fields.is_empty() {
            String::new()
        } else {
            base64::engine::general_purpose::STANDARD.encode(sorted_encoding(&exchanged))
        };
        LocalNode { id: node.id.clone(), header_value, info: NodeInfo::from_struct(&metadata) }
    }
}

/// The `Struct`'s encoding with every map's keys in order (at every depth), as 1.4 serialized it:
/// equal metadata, equal bytes. (The generated `Struct` keeps its fields in a hash map.)
fn sorted_encoding(metadata: &Struct) -> Vec<u8> {
    let bytes = metadata.encode_to_vec();
    prost_types::Struct::decode(bytes.as_slice()).map(|sorted| sorted.encode_to_vec()).unwrap_or(bytes)
}

/// Standard base64, padded or not (1.4 decoded either).
const PEER_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A peer's NodeInfo from its header; bad base64 or protobuf reads as an empty peer, as in 1.4.
pub(crate) fn decode_peer(header: &str) -> NodeInfo {
    PEER_BASE64
        .decode(header.trim())
        .ok()
        .and_then(|bytes| Struct::decode(bytes.as_slice()).ok())
        .map(|metadata| NodeInfo::from_struct(&metadata))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value { kind: Some(Kind::StringValue(text.into())) }
    }

    fn node() -> Node {
        let labels =
            Struct { fields: [("app".to_string(), string("reviews")), ("version".to_string(), string("v2"))].into() };
        Node {
            id: "sidecar~10.44.1.5~reviews-v2-1.default~default.svc.cluster.local".into(),
            metadata: Some(Struct {
                fields: [
                    ("NAME".to_string(), string("reviews-v2-1")),
                    ("NAMESPACE".to_string(), string("default")),
                    ("WORKLOAD_NAME".to_string(), string("reviews-v2")),
                    ("LABELS".to_string(), Value { kind: Some(Kind::StructValue(labels)) }),
                    ("ISTIO_VERSION".to_string(), string("1.4.6")),
                    ("INTERCEPTION_MODE".to_string(), string("REDIRECT")),
                ]
                .into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_exchanged_keys_travel_and_come_back_as_node_info() {
        let local = LocalNode::from_node(Some(&node()));
        assert_eq!(local.info.workload_name, "reviews-v2");
        assert_eq!(local.info.istio_version, "1.4.6");
        let peer = decode_peer(&local.header_value);
        assert_eq!(peer.workload_name, "reviews-v2");
        assert_eq!(peer.label("app"), "reviews");
        assert_eq!(peer.namespace, "default");
        assert_eq!(peer.istio_version, "", "ISTIO_VERSION is not among the exchanged keys");
        // Keys are sorted in the encoding, so equal metadata is an equal header.
        assert_eq!(LocalNode::from_node(Some(&node())).header_value, local.header_value);
    }

    #[test]
    fn exchange_keys_choose_what_is_sent_and_garbage_reads_as_an_empty_peer() {
        let mut only_name = node();
        // Keys are not trimmed (" NAMESPACE" is no key), blank ones are skipped.
        only_name.metadata.as_mut().unwrap().fields.insert("EXCHANGE_KEYS".into(), string("NAME, , NAMESPACE"));
        let peer = decode_peer(&LocalNode::from_node(Some(&only_name)).header_value);
        assert_eq!(
            (peer.name.as_str(), peer.namespace.as_str(), peer.workload_name.as_str()),
            ("reviews-v2-1", "", "")
        );
        assert_eq!(decode_peer("not base64!"), NodeInfo::default());
        let mut nothing = node();
        nothing.metadata.as_mut().unwrap().fields.insert("EXCHANGE_KEYS".into(), string("NOT_THERE"));
        assert_eq!(LocalNode::from_node(Some(&nothing)).header_value, "");
    }
}
