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
