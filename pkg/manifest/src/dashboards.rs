//! The Grafana dashboards of the `Grafana` addon, built as Grafana 6 dashboard models: 1.4's
//! Mesh, Service and Workload dashboards over the telemetry series, and its Pilot, Mixer,
//! Galley and Citadel dashboards over the control plane's own metrics, with 1.4's titles, uids
//! (so links into them keep working), variables and PromQL. Panels that only charted Go
//! runtime or cAdvisor series are left out (the components are not Go programs); 1.4's
//! performance dashboard, which was made of those, is left out as a whole.

use serde_json::Value;

use crate::control_dashboards::{citadel, galley, mixer, pilot};
use crate::traffic_dashboards::{mesh, service, workload};

/// Every dashboard by 1.4's file name (without `.json`).
pub(crate) fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("citadel-dashboard", citadel()),
        ("galley-dashboard", galley()),
        ("istio-mesh-dashboard", mesh()),
        ("istio-service-dashboard", service()),
        ("istio-workload-dashboard", workload()),
        ("mixer-dashboard", mixer()),
        ("pilot-dashboard", pilot()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(dashboard: &Value) -> Vec<String> {
        dashboard["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|target| target["expr"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn every_dashboard_has_a_title_uid_and_queries_with_balanced_brackets() {
        let dashboards = all();
        assert_eq!(dashboards.len(), 7);
        let mut uids = std::collections::BTreeSet::new();
        for (name, dashboard) in &dashboards {
            assert!(dashboard["title"].as_str().is_some_and(|title| title.starts_with("Istio ")), "{name}");
            assert!(uids.insert(dashboard["uid"].as_str().expect("uid").to_string()), "{name}: duplicate uid");
            let queries = exprs(dashboard);
            assert!(!queries.is_empty(), "{name}");
            for query in queries {
                for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                    assert_eq!(query.matches(open).count(), query.matches(close).count(), "{name}: {query}");
                }
            }
            // Panels do not overlap: each (x, y) cell is taken once.
            let mut cells = std::collections::BTreeSet::new();
            for panel in dashboard["panels"].as_array().expect("panels") {
                let grid = &panel["gridPos"];
                assert!(cells.insert((grid["x"].as_i64(), grid["y"].as_i64())), "{name}: overlapping {panel}");
                assert!(grid["x"].as_i64().unwrap_or(0) + grid["w"].as_i64().unwrap_or(0) <= 24, "{name}");
            }
        }
    }

    #[test]
    fn the_mesh_dashboard_asks_1_4s_questions() {
        let queries = exprs(&mesh());
        assert!(queries
            .contains(&"round(sum(irate(istio_requests_total{reporter=\"destination\"}[1m])), 0.001)".to_string()));
        assert!(queries
            .iter()
            .any(|q| q == "sum(galley_istio_networking_virtualservices) / count(up{job=\"galley\"})"));
        let workload = exprs(&workload());
        assert!(workload.iter().any(|q| q.contains("istio_request_duration_seconds_bucket")
            && q.contains("connection_security_policy=\"mutual_tls\"")
            && q.contains("destination_workload=~\"$workload\"")));
    }
}
