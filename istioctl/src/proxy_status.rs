//! `istioctl proxy-status`: the sync state of every proxy connected to Pilot, from Pilot's
//! `/debug/syncz`, as 1.4 printed it:
//! `NAME CDS LDS EDS RDS PILOT VERSION` with SYNCED, NOT SENT, STALE (sent but not yet
//! acknowledged) or NACKED (the proxy rejected the latest push). On a cluster (`--kubeconfig`,
//! …) Pilot's pod (`istio=pilot` in the Istio namespace) is reached through the API server's
//! port-forward, and the PILOT column names it, as 1.4's did.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use istio_xds::sync_state::SyncState;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ProxyStatusArgs {
    /// `POD[.NAMESPACE]`: compare what Pilot would send this proxy with what it holds.
    pub pod: Option<String>,
    /// Pilot's debug address (its `--httpAddr`); by default the local installation's Pilot,
    /// or 127.0.0.1:8080 without one.
    #[arg(long = "pilot")]
    pub pilot: Option<String>,
    #[command(flatten)]
    pub kube: crate::kube::KubeArgs,
}

/// Renders syncz entries as the proxy-status table.
pub(crate) fn render(entries: &[Value], pilot: &str) -> String {
    render_sources(&[(pilot, entries)], None)
}

/// Renders the syncz entries of one or more Pilots as 1.4's table: every proxy (or, with
/// `only`, those whose name contains it) sorted by name, with the Pilot that reported it.
/// A proxy that did not say its Istio version shows its proxy version with a `*`, as 1.4's.
pub(crate) fn render_sources(sources: &[(&str, &[Value])], only: Option<&str>) -> String {
    let mut sorted: Vec<(&str, &Value)> = sources
        .iter()
        .flat_map(|(pilot, entries)| entries.iter().map(move |entry| (*pilot, entry)))
        .filter(|(_, entry)| only.is_none_or(|name| entry["proxy"].as_str().unwrap_or_default().contains(name)))
        .collect();
    sorted.sort_by_key(|(_, entry)| entry["proxy"].as_str().unwrap_or_default().to_string());
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|(pilot, entry)| {
            let version = match entry["istio_version"].as_str().filter(|v| !v.is_empty()) {
                Some(version) => version.to_string(),
                None => match entry["proxy_version"].as_str().filter(|v| !v.is_empty()) {
                    Some(proxy_version) => format!("{proxy_version}*"),
                    None => "unknown".to_string(),
                },
            };
            vec![
                entry["proxy"].as_str().unwrap_or_default().to_string(),
                SyncState::of(entry, "cds").to_string(),
                SyncState::of(entry, "lds").to_string(),
                SyncState::of(entry, "eds").to_string(),
                SyncState::of(entry, "rds").to_string(),
                pilot.to_string(),
                version,
            ]
        })
        .collect();
    crate::table::render(&["NAME", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION"], &rows)
}

/// A plain HTTP GET against Pilot's debug server.
pub(crate) fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    let address = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).with_context(|| format!("cannot reach Pilot at {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{path} on {address}: {}", head.lines().next().unwrap_or("no response"));
    }
    Ok(body.to_string())
}

/// Pilot's debug address: the given one, the local installation's, or the default.
pub(crate) fn pilot_debug_address(given: Option<&str>) -> String {
    if let Some(address) = given {
        return address.to_string();
    }
    let layout = istio_local::Layout::from_env();
    if layout.install_file().exists() {
        format!("{}:8080", istio_local::install::PILOT.address)
    } else {
        "127.0.0.1:8080".to_string()
    }
}

pub(crate) fn run(args: &ProxyStatusArgs) -> anyhow::Result<i32> {
    let layout = istio_local::Layout::from_env();
    if args.pilot.is_none() && args.kube.wants_cluster(&layout) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (pilot, body) = runtime.block_on(async {
            let client = args.kube.client().await?;
            let namespace = &args.kube.istio_namespace;
            let pilot = crate::kube::first_pod(&client, namespace, "istio=pilot", "Pilot").await?;
            let body = crate::kube::pod_http(&client, namespace, &pilot, 8080, "GET", "/debug/syncz").await?;
            anyhow::Ok((pilot, body))
        })?;
        let entries: Vec<Value> = serde_json::from_str(&body).context("Pilot's /debug/syncz is not a JSON list")?;
        print!("{}", render(&entries, &pilot));
        return Ok(0);
    }
    let pilot = pilot_debug_address(args.pilot.as_deref());
    let body = http_get(&pilot, "/debug/syncz")?;
    let entries: Vec<Value> = serde_json::from_str(&body).context("Pilot's /debug/syncz is not a JSON list")?;
    print!("{}", render(&entries, &pilot));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 1.4.6's writer goldens (`istioctl/pkg/writer/pilot/testdata`).
    fn golden(name: &str) -> String {
        let path = format!("{}/testdata/istio-1.4.6/writer/pilot/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    /// The proxies of 1.4.6's status writer tests, as syncz entries: `proxy1` stale on CDS and
    /// never sent routes, `proxy2` stale on CDS and EDS, `proxy3` never acknowledged.
    fn proxy(name: &str) -> Value {
        match name {
            "proxy1" => json!({"proxy": "proxy1", "istio_version": "1.1", "cluster_sent": "n", "cluster_acked": "m",
                "listener_sent": "n", "listener_acked": "n", "endpoint_sent": "n", "endpoint_acked": "n"}),
            "proxy2" => json!({"proxy": "proxy2", "istio_version": "1.1", "cluster_sent": "n", "cluster_acked": "m",
                "listener_sent": "n", "listener_acked": "n", "endpoint_sent": "n", "endpoint_acked": "m",
                "route_sent": "n", "route_acked": "n"}),
            _ => json!({"proxy": "proxy3", "istio_version": "1.1", "cluster_sent": "n", "listener_acked": "n",
                "endpoint_sent": "n", "route_sent": "n", "route_acked": "n"}),
        }
    }

    #[test]
    fn tables_match_the_1_4_6_writer_goldens() {
        let (one, two, three) = ([proxy("proxy1")], [proxy("proxy2")], [proxy("proxy3")]);
        let multi = render_sources(&[("pilot2", &two), ("pilot3", &three), ("pilot1", &one)], None);
        assert_eq!(multi.trim_end(), golden("multiStatusMultiPilot.txt").trim_end());
        let both = [proxy("proxy2"), proxy("proxy1")];
        assert_eq!(
            render_sources(&[("pilot1", &both)], None).trim_end(),
            golden("multiStatusSinglePilot.txt").trim_end()
        );
        let single = render_sources(&[("pilot1", &one), ("pilot2", &two)], Some("proxy2"));
        assert_eq!(single.trim_end(), golden("singleStatus.txt").trim_end());
        let mut fallback = proxy("proxy2");
        fallback["istio_version"] = json!("");
        fallback["proxy_version"] = json!("1.1");
        let fallback = render_sources(&[("pilot2", &[fallback])], Some("proxy2"));
        assert_eq!(fallback.trim_end(), golden("singleStatusFallback.txt").trim_end());
    }

    #[test]
    fn renders_synced_stale_not_sent_and_nacked() {
        let entries: Vec<Value> = serde_json::from_value(serde_json::json!([
            {"proxy": "productpage-v1.default", "istio_version": "1.4.6", "cluster_sent": "1-1", "cluster_acked": "1-1", "listener_sent": "1-3", "listener_acked": "1-3",
             "endpoint_sent": "1-2", "endpoint_acked": "1-2", "route_sent": "1-4", "route_acked": "1-4", "nacks": {}},
            {"proxy": "istio-ingressgateway-1.istio-system", "istio_version": "", "cluster_sent": "2-5", "cluster_acked": "1-1", "listener_sent": "1-3", "listener_acked": "1-3",
             "endpoint_sent": "", "endpoint_acked": "", "route_sent": "1-4", "route_acked": "1-4", "nacks": {"rds": "bad route"}},
        ]))
        .expect("json");
        let table = render(&entries, "127.0.0.1:8080");
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("CDS") && lines[0].ends_with("VERSION"), "{table}");
        assert!(
            lines[1].starts_with("istio-ingressgateway-1.istio-system")
                && lines[1].contains("STALE")
                && lines[1].contains("NOT SENT")
                && lines[1].contains("NACKED"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("productpage-v1.default")
                && lines[2].matches("SYNCED").count() == 4
                && lines[2].ends_with("1.4.6"),
            "{table}"
        );
    }
}
