//! The collector's front page (`GET /`, what `istioctl dashboard zipkin` opens): the services
//! that reported spans and the recent traces as a table (start, root span, services, spans,
//! duration), each linking to its spans in Zipkin's JSON. No scripts; a view without traces
//! says so.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use crate::query::TraceQuery;
use crate::span::Span;
use crate::store::Store;

/// Traces listed on the page.
const LISTED: &str = "25";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
fn format_time(micros: u64) -> String {
    let seconds = (micros / 1_000_000) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// One table row per trace.
fn row(trace: &[Span]) -> String {
    let root = trace.iter().find(|span| span.parent_id.is_none()).or(trace.first());
    let services: BTreeSet<&str> = trace.iter().filter_map(Span::local_service).collect();
    let start = trace.iter().filter_map(|span| span.timestamp).min();
    let end = trace.iter().filter_map(|span| Some(span.timestamp? + span.duration.unwrap_or(0))).max();
    let duration = match (start, end) {
        (Some(start), Some(end)) => format!("{:.2} ms", (end - start) as f64 / 1000.0),
        _ => "-".into(),
    };
    let id = trace.first().map(|span| span.trace_id.as_str()).unwrap_or_default();
    let root = root.map_or_else(String::new, |span| {
        format!("{}: {}", span.local_service().unwrap_or("?"), span.name.as_deref().unwrap_or("?"))
    });
    format!(
        "<tr><td>{}</td><td><a href=\"/api/v2/trace/{id}\">{}</a></td><td>{}</td><td>{}</td><td>{duration}</td></tr>",
        start.map(format_time).unwrap_or_default(),
        escape(&root),
        escape(&services.into_iter().collect::<Vec<_>>().join(", ")),
        trace.len(),
    )
}

/// Renders the page for the query string's `serviceName` (all services without one).
pub fn render(store: &Store, params: &HashMap<String, String>) -> String {
    let mut query = params.clone();
    query.insert("limit".into(), LISTED.into());
    // The newest traces, however old.
    query.entry("lookback".into()).or_insert_with(|| u64::MAX.to_string());
    let traces = TraceQuery::parse(&query).map(|query| store.find(&query)).unwrap_or_default();
    let selected = params.get("serviceName").map(String::as_str).unwrap_or_default();
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Traces</title><style>\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}</style></head><body>\
         <h1>Traces</h1><form method=\"get\"><label>Service <select name=\"serviceName\">\
         <option value=\"\">all</option>",
    );
    for service in store.services() {
        let chosen = if service == selected { " selected" } else { "" };
        let _ = write!(page, "<option{chosen}>{}</option>", escape(&service));
    }
    page.push_str("</select></label> <button>Find traces</button></form>");
    if traces.is_empty() {
        page.push_str(
            "<p id=\"empty\">No traces yet. Send requests through the mesh; the proxies report their spans here \
             (the demo traces every request).</p>",
        );
    } else {
        page.push_str(
            "<table><tr><th>Start (UTC)</th><th>Root span</th><th>Services</th><th>Spans</th><th>Duration</th></tr>",
        );
        for trace in &traces {
            page.push_str(&row(trace));
        }
        page.push_str("</table>");
    }
    page.push_str(
        "<p>Zipkin's API: <a href=\"/api/v2/services\">/api/v2/services</a>, \
         <a href=\"/api/v2/traces\">/api/v2/traces</a>, /api/v2/trace/{id}.</p></body></html>",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Endpoint;

    #[test]
    fn times_and_rows() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_733_400_000_000_000), "2024-12-05 12:00:00");
        let mut store = Store::new(10);
        let page = render(&store, &HashMap::new());
        assert!(page.contains("No traces yet"), "{page}");
        store.insert(vec![Span {
            trace_id: "00000000000000ab".into(),
            id: "0000000000000001".into(),
            name: Some("productpage.default.svc.cluster.local:9080/<x>".into()),
            timestamp: Some(1_733_400_000_000_000),
            duration: Some(2500),
            local_endpoint: Some(Endpoint { service_name: Some("istio-ingressgateway".into()), ..Endpoint::default() }),
            ..Span::default()
        }]);
        let page = render(&store, &HashMap::new());
        assert!(page.contains("<a href=\"/api/v2/trace/00000000000000ab\">istio-ingressgateway: productpage.default.svc.cluster.local:9080/&lt;x&gt;</a>"), "{page}");
        assert!(page.contains("<td>2.50 ms</td>"), "{page}");
        assert!(page.contains("<option>istio-ingressgateway</option>"), "{page}");
    }
}
