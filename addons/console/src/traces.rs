//! Traces (Jaeger's role in the demo): the recent traces from the trace collector, of one
//! service or of all, and a trace as a waterfall, each span a bar placed by its start and
//! length under its parent, with its service, name, duration and tags.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use serde_json::Value;

use crate::page::{escape, frame, no_data, notice, number, url_value};
use crate::sources::Sources;

/// Traces the list shows.
const LISTED: usize = 30;

fn service(span: &Value) -> &str {
    span["localEndpoint"]["serviceName"].as_str().unwrap_or("?")
}

fn name(span: &Value) -> &str {
    span["name"].as_str().unwrap_or("?")
}

fn start(span: &Value) -> Option<u64> {
    span["timestamp"].as_u64()
}

fn end(span: &Value) -> Option<u64> {
    Some(start(span)? + span["duration"].as_u64().unwrap_or(0))
}

fn failed(span: &Value) -> bool {
    span["tags"].get("error").is_some()
}

/// The trace's root span (the one without a parent in the trace), or its earliest.
fn root(trace: &[Value]) -> Option<&Value> {
    let ids: BTreeSet<&str> = trace.iter().filter_map(|span| span["id"].as_str()).collect();
    trace
        .iter()
        .find(|span| span["parentId"].as_str().is_none_or(|parent| !ids.contains(parent)))
        .or_else(|| trace.first())
}

fn duration_ms(trace: &[Value]) -> Option<f64> {
    let first = trace.iter().filter_map(start).min()?;
    let last = trace.iter().filter_map(end).max()?;
    Some((last - first) as f64 / 1000.0)
}

/// The list of recent traces, with a service filter.
pub async fn list(sources: &Sources, selected: Option<&str>) -> String {
    let (services, traces) = tokio::join!(sources.trace_services(), sources.traces(selected, LISTED));
    let mut body = String::from("<form method=\"get\" action=\"/traces\"><label>Service <select name=\"service\"><option value=\"\">all</option>");
    for known in services.as_deref().unwrap_or_default() {
        let chosen = if Some(known.as_str()) == selected { " selected" } else { "" };
        let _ = write!(body, "<option{chosen}>{}</option>", escape(known));
    }
    body.push_str("</select></label> <button>Find traces</button></form>");
    match traces {
        Err(error) => body.push_str(&notice(&error.to_string())),
        Ok(traces) if traces.is_empty() => body.push_str(&no_data(
            "No traces yet: send requests through the mesh; the proxies report their spans to the trace collector.",
        )),
        Ok(mut traces) => {
            traces.sort_by_key(|trace| std::cmp::Reverse(trace.iter().filter_map(start).min()));
            body.push_str("<table id=\"traces\"><tr><th>Root span</th><th>Services</th><th>Spans</th><th>Errors</th><th>Duration</th></tr>");
            for trace in &traces {
                let Some(root) = root(trace) else { continue };
                let services: BTreeSet<&str> = trace.iter().map(service).collect();
                let errors = trace.iter().filter(|span| failed(span)).count();
                let _ = write!(
                    body,
                    "<tr class=\"trace\"><td><a href=\"/traces/{}\">{}: {}</a></td><td>{}</td><td>{}</td><td>{errors}</td><td>{}</td></tr>",
                    url_value(root["traceId"].as_str().unwrap_or_default()),
                    escape(service(root)),
                    escape(name(root)),
                    escape(&services.into_iter().collect::<Vec<_>>().join(", ")),
                    trace.len(),
                    duration_ms(trace).map_or("-".into(), |ms| format!("{} ms", number(ms, 2))),
                );
            }
            body.push_str("</table>");
        }
    }
    frame("Traces", "/traces", &body)
}

/// Spans in tree order (each after its parent, siblings by start) with their depth.
fn tree(trace: &[Value]) -> Vec<(&Value, usize)> {
    let ids: BTreeSet<&str> = trace.iter().filter_map(|span| span["id"].as_str()).collect();
    let mut children: HashMap<Option<&str>, Vec<&Value>> = HashMap::new();
    for span in trace {
        let parent = span["parentId"].as_str().filter(|parent| ids.contains(parent));
        children.entry(parent).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|span| start(span));
    }
    let mut ordered = Vec::new();
    let mut stack: Vec<(&Value, usize)> =
        children.get(&None).into_iter().flatten().rev().map(|span| (*span, 0)).collect();
    while let Some((span, depth)) = stack.pop() {
        ordered.push((span, depth));
        if ordered.len() > trace.len() {
            break;
        }
        let id = span["id"].as_str();
        if let Some(kids) = children.get(&id) {
            stack.extend(kids.iter().rev().map(|kid| (*kid, depth + 1)));
        }
    }
    ordered
}

/// One trace as a waterfall.
pub async fn waterfall(sources: &Sources, id: &str) -> String {
    let trace = match sources.trace(id).await {
        Ok(trace) if !trace.is_empty() => trace,
        Ok(_) => return frame("Trace", "/traces", &no_data(&format!("No trace {id} in the collector."))),
        Err(error) => return frame("Trace", "/traces", &notice(&error.to_string())),
    };
    let first = trace.iter().filter_map(start).min().unwrap_or(0);
    let total = trace.iter().filter_map(end).max().unwrap_or(first).saturating_sub(first).max(1) as f64;
    let mut body = format!(
        "<p>Trace <code>{}</code>: {} spans, {} ms.</p><table class=\"waterfall\" id=\"waterfall\">",
        escape(id),
        trace.len(),
        number(total / 1000.0, 2)
    );
    for (span, depth) in tree(&trace) {
        let offset = start(span).unwrap_or(first).saturating_sub(first) as f64 / total * 100.0;
        let width = (span["duration"].as_u64().unwrap_or(0) as f64 / total * 100.0).max(0.5);
        let class = if failed(span) {
            "bar error"
        } else if span["kind"] == "SERVER" {
            "bar server"
        } else {
            "bar"
        };
        let tags: Vec<String> = span["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| format!("{}={}", escape(key), escape(value.as_str().unwrap_or_default())))
            .collect();
        let _ = write!(
            body,
            "<tr class=\"span\"><td style=\"padding-left:{}em;white-space:nowrap\"><b>{}</b> {} <small>{}</small></td>\
             <td style=\"width:50%\"><div class=\"{class}\" style=\"margin-left:{offset:.2}%;width:{width:.2}%\"></div></td>\
             <td style=\"white-space:nowrap\">{} ms</td><td><details><summary>tags</summary><small>{}</small></details></td></tr>",
            depth as f64 * 1.2,
            escape(service(span)),
            escape(name(span)),
            escape(span["kind"].as_str().unwrap_or_default()),
            number(span["duration"].as_u64().unwrap_or(0) as f64 / 1000.0, 2),
            tags.join("<br>"),
        );
    }
    body.push_str("</table><p><a href=\"/traces\">All traces</a></p>");
    frame("Trace", "/traces", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_follow_their_parents() {
        let trace = vec![
            json!({"id": "3", "parentId": "2", "name": "ratings", "timestamp": 30, "duration": 5}),
            json!({"id": "1", "name": "gateway", "timestamp": 10, "duration": 50}),
            json!({"id": "4", "parentId": "1", "name": "details", "timestamp": 40, "duration": 5}),
            json!({"id": "2", "parentId": "1", "name": "reviews", "timestamp": 20, "duration": 20, "tags": {"error": "true"}}),
        ];
        let order: Vec<(&str, usize)> = tree(&trace).into_iter().map(|(span, depth)| (name(span), depth)).collect();
        assert_eq!(order, [("gateway", 0), ("reviews", 1), ("ratings", 2), ("details", 1)]);
        assert_eq!(root(&trace).map(name), Some("gateway"));
        assert_eq!(duration_ms(&trace), Some(0.05));
    }
}
