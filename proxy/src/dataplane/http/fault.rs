//! Fault injection, as Envoy's fault filter does it when the connection manager has one: the
//! route's fault, else the virtual host's; a delay holds the request for its duration, an abort
//! answers with its status instead of forwarding, each with its probability.

use http::{Response, StatusCode};

use super::super::access_log::{LogEntry, ResponseFlag};
use super::super::body::Body;
use super::super::config::listener::HttpManagerConfig;
use super::super::config::matcher::roll;
use super::super::connection_stats::HttpManagerStats;
use super::local;
use super::routing::Selected;

/// Applies the fault for the request's route: waits out a delay that rolls in, and returns the
/// abort response if one rolls in.
pub(crate) async fn inject(
    manager: &HttpManagerConfig,
    stats: &HttpManagerStats,
    selected: &Selected<'_>,
    entry: &mut LogEntry,
) -> Option<Response<Body>> {
    if !manager.fault_filter {
        return None;
    }
    let fault = selected.route.filters.fault.as_ref().or(selected.host.filters.fault.as_ref())?;
    if let Some((delay, probability)) = fault.delay {
        if roll(probability) {
            if let Some(fault_stats) = &stats.fault {
                fault_stats.delays_injected.inc();
            }
            entry.flags.push(ResponseFlag::DelayInjected);
            tokio::time::sleep(delay).await;
        }
    }
    if let Some((status, probability)) = fault.abort {
        if roll(probability) {
            if let Some(fault_stats) = &stats.fault {
                fault_stats.aborts_injected.inc();
            }
            entry.flags.push(ResponseFlag::FaultInjected);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Some(local::reply(status, "fault filter abort"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::http::exchange::Exchange;
    use crate::dataplane::http::routing::select;
    use crate::dataplane::http::testing::{downstream, manager, parts, route_table};
    use crate::dataplane::stats::Stats;
    use serde_json::json;

    fn fault_table(fault: serde_json::Value) -> std::sync::Arc<crate::dataplane::config::route::RouteTable> {
        route_table(json!({"name": "80", "virtual_hosts": [{"name": "h", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}, "typed_per_filter_config": {
                "envoy.filters.http.fault": fault}}]}]}))
    }

    #[tokio::test]
    async fn aborts_and_delays_are_injected_and_counted() {
        let stats = Stats::default();
        let manager_stats = HttpManagerStats::new(&stats, "test", true);
        let abort =
            fault_table(json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
            "delay": {"fixed_delay": "0.001s", "percentage": {"numerator": 100, "denominator": "HUNDRED"}}}));
        let request = parts("GET", "/", &[("host", "a")]);
        let exchange = Exchange::begin(downstream(), &request);
        let selected = select(&abort, &exchange, &request).expect("route");
        let mut entry = LogEntry::default();
        let response = inject(&manager(abort.clone()), &manager_stats, &selected, &mut entry).await.expect("aborted");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(entry.flags, [ResponseFlag::DelayInjected, ResponseFlag::FaultInjected]);
        assert_eq!(stats.counter("http.test.fault.aborts_injected").value(), 1);
        assert_eq!(stats.counter("http.test.fault.delays_injected").value(), 1);

        let mut without_filter = manager(abort.clone());
        without_filter.fault_filter = false;
        let mut entry = LogEntry::default();
        assert!(inject(&without_filter, &manager_stats, &selected, &mut entry).await.is_none(), "no filter, no fault");
        assert!(entry.flags.is_empty());
    }
}
