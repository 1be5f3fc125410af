//! `istioctl x xds --address HOST:PORT --node ID [--type cds|lds|rds|eds]… [--meta KEY=VALUE]…`:
//! connect to Pilot's ADS server as the given node and print what Pilot sends, as Envoy's v3 JSON.
//! Like a real Envoy it asks for clusters and listeners first, then for the endpoints of every EDS
//! cluster and the route configurations the listeners name, and ACKs each response — so the
//! output is exactly what that proxy would receive, and the stream shows in `proxy-status`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{value, Struct, Value};
use istio_xds::type_url;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum XdsType {
    Cds,
    Lds,
    Rds,
    Eds,
}

impl XdsType {
    fn type_url(self) -> &'static str {
        match self {
            XdsType::Cds => type_url::CLUSTER,
            XdsType::Lds => type_url::LISTENER,
            XdsType::Rds => type_url::ROUTE,
            XdsType::Eds => type_url::ENDPOINT,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct XdsArgs {
    /// Pilot's xDS address, e.g. 127.0.0.1:15010 (an `http://` prefix is optional).
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub address: String,
    /// Node id to connect as, e.g. `sidecar~10.1.0.7~reviews-v1-1.default~default.svc.cluster.local`.
    #[arg(long)]
    pub node: String,
    /// Which resources to print (repeatable); default: all four.
    #[arg(long = "type", value_enum)]
    pub types: Vec<XdsType>,
    /// Node metadata, as pilot-agent sends `ISTIO_META_*` (repeatable). A value that parses as a
    /// JSON object is sent as a struct, e.g. `--meta 'LABELS={"istio":"ingressgateway"}'`.
    #[arg(long = "meta", value_parser = parse_meta)]
    pub metadata: Vec<(String, String)>,
    /// Give up if the responses do not arrive within this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Announce an extension (a filter the proxy has) in the node, as `CATEGORY/NAME` or just
    /// `NAME` (repeatable), e.g. `--extension mixer` as the built-in data plane announces it.
    #[arg(long = "extension")]
    pub extensions: Vec<String>,
}

/// A `--meta` value that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not KEY=VALUE")]
struct NotKeyValue(String);

fn parse_meta(text: &str) -> Result<(String, String), NotKeyValue> {
    let (key, value) = text.split_once('=').ok_or_else(|| NotKeyValue(text.to_string()))?;
    Ok((key.to_string(), value.to_string()))
}

fn json_to_value(json: serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => value::Kind::NullValue(0),
        serde_json::Value::Bool(flag) => value::Kind::BoolValue(flag),
        serde_json::Value::Number(number) => value::Kind::NumberValue(number.as_f64().unwrap_or_default()),
        serde_json::Value::String(text) => value::Kind::StringValue(text),
        serde_json::Value::Array(items) => value::Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(fields) => value::Kind::StructValue(Struct {
            fields: fields.into_iter().map(|(key, value)| (key, json_to_value(value))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// The node this command presents to Pilot.
pub(crate) fn node(id: &str, metadata: &[(String, String)]) -> Node {
    let fields = metadata
        .iter()
        .map(|(key, text)| {
            let value = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(object @ serde_json::Value::Object(_)) => json_to_value(object),
                _ => Value { kind: Some(value::Kind::StringValue(text.clone())) },
            };
            (key.clone(), value)
        })
        .collect();
    Node { id: id.to_string(), metadata: Some(Struct { fields }), ..Default::default() }
}

fn request(node: &Node, type_url: &str, names: &BTreeSet<String>, ack: Option<&DiscoveryResponse>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node.clone()),
        type_url: type_url.to_string(),
        resource_names: names.iter().cloned().collect(),
        version_info: ack.map(|r| r.version_info.clone()).unwrap_or_default(),
        response_nonce: ack.map(|r| r.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

pub(crate) async fn run(args: XdsArgs) -> anyhow::Result<i32> {
    let wanted: BTreeSet<XdsType> = if args.types.is_empty() {
        [XdsType::Cds, XdsType::Lds, XdsType::Rds, XdsType::Eds].into_iter().collect()
    } else {
        args.types.iter().copied().collect()
    };
    let endpoint = if args.address.contains("://") { args.address.clone() } else { format!("http://{}", args.address) };
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .with_context(|| format!("invalid address {:?}", args.address))?
        .connect_timeout(Duration::from_secs(args.timeout))
        .connect()
        .await
        .with_context(|| format!("cannot connect to Pilot at {}", args.address))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut node = node(&args.node, &args.metadata);
    for extension in &args.extensions {
        let (category, name) = extension.rsplit_once('/').unwrap_or(("envoy.filters.http", extension.as_str()));
        node.extensions.push(envoy_types::pb::envoy::config::core::v3::Extension {
            name: name.to_string(),
            category: category.to_string(),
            ..Default::default()
        });
    }
    let (requests, receiver) = mpsc::unbounded_channel();
    // Clusters and listeners are always fetched: endpoint and route names come from them.
    requests.send(request(&node, type_url::CLUSTER, &BTreeSet::new(), None))?;
    requests.send(request(&node, type_url::LISTENER, &BTreeSet::new(), None))?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
        .await
        .with_context(|| format!("ADS stream to {}", args.address))?
        .into_inner();

    let mut received: BTreeMap<&'static str, DiscoveryResponse> = BTreeMap::new();
    let mut subscribed: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    // Types whose first response is still awaited; RDS and EDS join once their names are known.
    let mut pending: BTreeSet<&'static str> = [type_url::CLUSTER, type_url::LISTENER].into_iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    while !pending.is_empty() {
        let next = match tokio::time::timeout_at(deadline, responses.message()).await {
            Ok(next) => next,
            Err(_) => bail!(
                "no response within {}s for: {}",
                args.timeout,
                pending.into_iter().collect::<Vec<_>>().join(", ")
            ),
        };
        let Some(response) = next.context("ADS stream failed")? else { bail!("Pilot closed the ADS stream") };
        let type_url = [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE, type_url::ENDPOINT]
            .into_iter()
            .find(|t| *t == response.type_url)
            .with_context(|| format!("unexpected type {}", response.type_url))?;
        let names = match type_url {
            type_url::CLUSTER => istio_xds::references::eds_cluster_names(&response.resources),
            type_url::LISTENER => istio_xds::references::rds_route_names(&response.resources),
            _ => BTreeSet::new(),
        };
        let follow_up = match type_url {
            type_url::CLUSTER => Some(type_url::ENDPOINT),
            type_url::LISTENER => Some(type_url::ROUTE),
            _ => None,
        };
        // The ACK repeats what this type subscribed to, as Envoy does.
        let acked_names = subscribed.get(type_url).cloned().unwrap_or_default();
        requests.send(request(&node, type_url, &acked_names, Some(&response)))?;
        if let Some(follow_up) = follow_up {
            if !names.is_empty() && !subscribed.contains_key(follow_up) {
                requests.send(request(&node, follow_up, &names, None))?;
                subscribed.insert(follow_up, names);
                pending.insert(follow_up);
            }
        }
        pending.remove(type_url);
        received.insert(type_url, response);
    }

    let mut printed = Vec::new();
    for kind in wanted {
        match received.get(kind.type_url()) {
            Some(response) => printed.push(istio_xds::json::message_to_json(response)?),
            None => printed.push(serde_json::json!({"typeUrl": kind.type_url(), "resources": []})),
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::Value::Array(printed))?)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_objects_become_structs_and_the_rest_strings() {
        let node = node(
            "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local",
            &[("LABELS".into(), r#"{"istio":"ingressgateway"}"#.into()), ("NAMESPACE".into(), "istio-system".into())],
        );
        let fields = &node.metadata.as_ref().unwrap().fields;
        assert!(matches!(fields["LABELS"].kind, Some(value::Kind::StructValue(_))));
        assert_eq!(fields["NAMESPACE"].kind, Some(value::Kind::StringValue("istio-system".into())));
        assert!(parse_meta("novalue").is_err());
    }
}
