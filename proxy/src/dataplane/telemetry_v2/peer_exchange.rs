//! `envoy.wasm.metadata_exchange` as 1.4.6 ran it. On every request the peer's
//! `x-envoy-peer-metadata` and `x-envoy-peer-metadata-id` headers are taken off and kept as the
//! downstream peer; a proxy that is not on an inbound listener (a client sidecar, a gateway)
//! then sets its own on the request. On every response the same headers are taken off as the
//! upstream peer, and a proxy that is not on an outbound listener (a server sidecar) sets its
//! own. So neither application sees them, and each side's stats know the other.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::node_info::{decode_peer, LocalNode, NodeInfo};

pub(crate) const METADATA_HEADER: &str = "x-envoy-peer-metadata";
pub(crate) const ID_HEADER: &str = "x-envoy-peer-metadata-id";

/// A peer known from its headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    pub id: String,
    pub info: NodeInfo,
}

/// Takes the peer's headers off `headers`: `None` when it sent no id (then its metadata is not
/// used either, as 1.4.6's peer cache worked by id).
fn take_peer(headers: &mut HeaderMap) -> Option<Peer> {
    let metadata = headers.remove(METADATA_HEADER);
    let id = headers.remove(ID_HEADER);
    let id = id.as_ref().and_then(|id| id.to_str().ok()).filter(|id| !id.is_empty())?.to_string();
    let info = metadata.as_ref().and_then(|value| value.to_str().ok()).map(decode_peer).unwrap_or_default();
    Some(Peer { id, info })
}

fn set_own(headers: &mut HeaderMap, local: &LocalNode) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if !local.header_value.is_empty() {
        set(METADATA_HEADER, &local.header_value);
    }
    if !local.id.is_empty() {
        set(ID_HEADER, &local.id);
    }
}

/// The request side: the downstream peer, and this proxy's headers added unless `inbound`.
pub(crate) fn on_request(local: &LocalNode, headers: &mut HeaderMap, inbound: bool) -> Option<Peer> {
    let peer = take_peer(headers);
    if !inbound {
        set_own(headers, local);
    }
    peer
}

/// The response side: the upstream peer, and this proxy's headers added when `inbound`.
pub(crate) fn on_response(local: &LocalNode, headers: &mut HeaderMap, inbound: bool) -> Option<Peer> {
    let peer = take_peer(headers);
    if inbound {
        set_own(headers, local);
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};

    fn local(id: &str, workload: &str) -> LocalNode {
        let node = Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: [("WORKLOAD_NAME".to_string(), Value { kind: Some(Kind::StringValue(workload.into())) })]
                    .into(),
            }),
            ..Default::default()
        };
        LocalNode::from_node(Some(&node))
    }

    /// A client sidecar and a server sidecar: each learns the other, and the headers never
    /// reach either application.
    #[test]
    fn client_and_server_learn_each_other() {
        let client = local("sidecar~10.0.0.1~productpage-v1-1.default~default.svc.cluster.local", "productpage-v1");
        let server = local("sidecar~10.0.0.2~reviews-v1-1.default~default.svc.cluster.local", "reviews-v1");

        let mut request = HeaderMap::new();
        request.insert(METADATA_HEADER, HeaderValue::from_static("forged"));
        assert_eq!(on_request(&client, &mut request, false), None, "an app's own header without an id is dropped");
        let at_server = on_request(&server, &mut request, true).expect("the client's headers");
        assert_eq!(at_server.info.workload_name, "productpage-v1");
        assert!(request.get(METADATA_HEADER).is_none() && request.get(ID_HEADER).is_none(), "the server app sees none");

        let mut response = HeaderMap::new();
        assert_eq!(on_response(&server, &mut response, true), None);
        let at_client = on_response(&client, &mut response, false).expect("the server's headers");
        assert_eq!(at_client.id, server.id);
        assert_eq!(at_client.info.workload_name, "reviews-v1");
        assert!(response.is_empty(), "the client app sees none");
    }
}
