//! `istioctl x mcp --address HOST:PORT [--collection C]… [--watch] [--incremental]`: a small MCP
//! sink that subscribes to collections on an MCP server (Galley) and prints every response as
//! JSON, with each resource body decoded from its proto, so a person can see exactly what Pilot
//! and Mixer receive. Each response is ACKed, as a real sink would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use istio_api::kinds;
use istio_api::pb::istio::mcp::v1alpha1::Resources;
use istio_mcp::sink::{SinkStream, Subscription};
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// MCP server address, e.g. 127.0.0.1:9901 (an `http://` prefix is optional).
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub address: String,
    /// Collection to subscribe to (repeatable); default: every collection Galley serves.
    #[arg(long = "collection")]
    pub collections: Vec<String>,
    /// Keep running and print every update.
    #[arg(long)]
    pub watch: bool,
    /// Ask for incremental updates (only changed and removed resources).
    #[arg(long)]
    pub incremental: bool,
    /// Give up if the first responses do not arrive within this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Every collection Galley serves.
pub(crate) fn all_collections() -> Vec<String> {
    let mut collections: Vec<String> = kinds::all().iter().map(|kind| kind.collection.to_string()).collect();
    collections.push(kinds::SYNTHETIC_SERVICE_ENTRIES.to_string());
    collections.push(kinds::MESH_CONFIG.to_string());
    collections
}

/// A response as printable JSON, with bodies decoded.
pub(crate) fn response_json(response: &Resources) -> Value {
    let resources: Vec<Value> = response
        .resources
        .iter()
        .map(|resource| {
            let metadata = resource.metadata.clone().unwrap_or_default();
            let body = resource.body.as_ref().map_or(Value::Null, |any| {
                let message = istio_api::json::type_url_message(&any.type_url);
                istio_api::json::encode_bytes(message, &any.value)
                    .unwrap_or_else(|error| json!({"undecodable": error.to_string()}))
            });
            let mut entry = json!({"name": metadata.name, "version": metadata.version, "body": body});
            if !metadata.labels.is_empty() {
                entry["labels"] = json!(metadata.labels.into_iter().collect::<BTreeMap<_, _>>());
            }
            if !metadata.annotations.is_empty() {
                entry["annotations"] = json!(metadata.annotations.into_iter().collect::<BTreeMap<_, _>>());
            }
            entry
        })
        .collect();
    let mut printed = json!({
        "collection": response.collection,
        "systemVersionInfo": response.system_version_info,
        "incremental": response.incremental,
        "resources": resources,
    });
    if !response.removed_resources.is_empty() {
        printed["removedResources"] = json!(response.removed_resources);
    }
    printed
}

pub(crate) async fn run(args: McpArgs) -> anyhow::Result<i32> {
    let collections = if args.collections.is_empty() { all_collections() } else { args.collections.clone() };
    let subscription = Subscription {
        sink_id: "istioctl-mcp".to_string(),
        collections: collections.clone(),
        incremental: args.incremental,
    };
    let mut stream = SinkStream::open(&args.address, Duration::from_secs(args.timeout), &subscription).await?;
    let mut waiting: BTreeSet<String> = collections.into_iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let stdout = std::io::stdout();
    loop {
        let next = if args.watch && waiting.is_empty() {
            stream.next().await
        } else {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => bail!(
                    "no response within {}s for: {}",
                    args.timeout,
                    waiting.into_iter().collect::<Vec<_>>().join(", ")
                ),
            }
        };
        let Some(response) = next.context("MCP stream failed")? else { break };
        let text = serde_json::to_string_pretty(&response_json(&response))?;
        {
            let mut out = stdout.lock();
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        stream.ack(&response)?;
        waiting.remove(&response.collection);
        if waiting.is_empty() && !args.watch {
            break;
        }
    }
    Ok(0)
}
