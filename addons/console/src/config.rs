//! Config status (Kiali's validation and Pilot's sync views in one page): each proxy's sync
//! state with Pilot, per resource type, as `istioctl proxy-status` shows it; the Istio config
//! Pilot holds (what Galley validated and served); and Galley's admission counts, accepted and
//! rejected with the reasons, from its metrics in Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write;

use istio_xds::sync_state::SyncState;

use crate::page::{escape, frame, no_data, notice, number};
use crate::sources::Sources;

const ACCEPTED: &str = "sum(galley_validation_passed) by (resource)";
const REJECTED: &str = "sum(galley_validation_failed) by (resource, reason)";

fn state_class(state: SyncState) -> &'static str {
    match state {
        SyncState::Synced => "ok",
        SyncState::Stale | SyncState::NeverAcknowledged | SyncState::NotSent => "warn",
        SyncState::Nacked => "bad",
    }
}

pub async fn render(sources: &Sources) -> String {
    let (syncz, configz, accepted, rejected) =
        tokio::join!(sources.syncz(), sources.configz(), sources.query(ACCEPTED), sources.query(REJECTED));
    let mut body = String::from("<h2>Proxies</h2>");
    match syncz {
        Err(error) => body.push_str(&notice(&error.to_string())),
        Ok(entries) if entries.is_empty() => body.push_str(&no_data("No proxy is connected to Pilot.")),
        Ok(mut entries) => {
            entries.sort_by_key(|entry| entry["proxy"].as_str().unwrap_or_default().to_string());
            body.push_str("<table id=\"proxies\"><tr><th>Proxy</th><th>CDS</th><th>LDS</th><th>EDS</th><th>RDS</th><th>Version</th></tr>");
            for entry in &entries {
                let _ = write!(body, "<tr class=\"proxy\"><td>{}</td>", escape(entry["proxy"].as_str().unwrap_or("?")));
                for kind in ["cds", "lds", "eds", "rds"] {
                    let state = SyncState::of(entry, kind);
                    let nack = entry["nacks"][kind].as_str().map(|reason| format!(" title=\"{}\"", escape(reason)));
                    let _ =
                        write!(body, "<td class=\"{}\"{}>{state}</td>", state_class(state), nack.unwrap_or_default());
                }
                let version =
                    entry["istio_version"].as_str().filter(|version| !version.is_empty()).unwrap_or("unknown");
                let _ = write!(body, "<td>{}</td></tr>", escape(version));
            }
            body.push_str("</table>");
        }
    }
    body.push_str("<h2>Istio config served to the proxies</h2>");
    match configz {
        Err(error) => body.push_str(&notice(&error.to_string())),
        Ok(items) if items.is_empty() => body.push_str(&no_data("Pilot holds no Istio config.")),
        Ok(items) => {
            let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for item in &items {
                by_kind.entry(item["kind"].as_str().unwrap_or("?")).or_default().push(format!(
                    "{}.{}",
                    item["name"].as_str().unwrap_or("?"),
                    item["namespace"].as_str().unwrap_or("?")
                ));
            }
            body.push_str("<table id=\"config\"><tr><th>Kind</th><th>Objects</th></tr>");
            for (kind, mut names) in by_kind {
                names.sort();
                let _ = write!(body, "<tr><td>{}</td><td>{}</td></tr>", escape(kind), escape(&names.join(", ")));
            }
            body.push_str("</table>");
        }
    }
    body.push_str("<h2>Galley's validation</h2>");
    match (accepted, rejected) {
        (Ok(accepted), Ok(rejected)) if accepted.is_empty() && rejected.is_empty() => {
            body.push_str(&no_data("Galley has not reported any admission yet (Prometheus scrapes it every 15 s)."))
        }
        (Ok(accepted), Ok(rejected)) => {
            body.push_str(
                "<table id=\"validation\"><tr><th>Resource</th><th>Accepted</th><th>Rejected</th><th>Reasons</th></tr>",
            );
            let mut rows: BTreeMap<String, (f64, f64, Vec<String>)> = BTreeMap::new();
            for sample in &accepted {
                rows.entry(sample.label("resource").to_string()).or_default().0 += sample.value;
            }
            for sample in &rejected {
                let row = rows.entry(sample.label("resource").to_string()).or_default();
                row.1 += sample.value;
                row.2.push(sample.label("reason").to_string());
            }
            for (resource, (passed, failed, reasons)) in rows {
                let class = if failed > 0.0 { "bad" } else { "ok" };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
                    escape(&resource),
                    number(passed, 0),
                    number(failed, 0),
                    escape(&reasons.join(", "))
                );
            }
            body.push_str("</table>");
        }
        (accepted, rejected) => {
            for error in [accepted.err(), rejected.err()].into_iter().flatten().take(1) {
                body.push_str(&notice(&error.to_string()));
            }
        }
    }
    frame("Config", "/config", &body)
}
