//! The dashboards of 1.4's Grafana (Istio Mesh, Service and Workload dashboards), from the same
//! PromQL over the telemetry in Prometheus: single stats (request volume, success rate, 4xx,
//! 5xx, latency percentiles), tables of workloads, and time series over the last half hour.
//! Every panel without data says so, and a dashboard without any says why.

use std::fmt::Write;
use std::time::Duration;

use crate::chart::{self, Line};
use crate::page::{escape, no_data, notice, number, url_value};
use crate::promql::duration_quantile;
use crate::sources::{Sample, SourceError, Sources};

/// How far back the charts go, and their resolution.
const CHART_SPAN: Duration = Duration::from_secs(30 * 60);
const CHART_STEP: Duration = Duration::from_secs(15);

/// How a single stat's value reads.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// Operations per second.
    Rate,
    /// A share, as a percentage.
    Percent,
    /// Seconds, shown in milliseconds.
    Millis,
    /// Bytes per second.
    Bytes,
}

fn format_value(value: f64, format: Format) -> String {
    match format {
        Format::Rate => format!("{} ops", number(value, 3)),
        Format::Percent => format!("{}%", number(value * 100.0, 2)),
        Format::Millis => format!("{} ms", number(value * 1000.0, 1)),
        Format::Bytes => format!("{} B/s", number(value, 1)),
    }
}

/// What a dashboard is about: the whole mesh, one service, or one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Mesh,
    Service(String),
    Workload { name: String, namespace: String },
}

/// Names that may go into PromQL label matchers unquoted (service hosts, workloads, namespaces).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Subject {
    fn title(&self) -> String {
        match self {
            Subject::Mesh => "Istio Mesh Dashboard".into(),
            Subject::Service(service) => format!("Istio Service Dashboard: {service}"),
            Subject::Workload { name, namespace } => format!("Istio Workload Dashboard: {name}.{namespace}"),
        }
    }

    /// The label matchers selecting the subject's traffic as its server side sees it.
    fn inbound(&self) -> String {
        match self {
            Subject::Mesh => "reporter=\"destination\"".into(),
            Subject::Service(service) => format!("reporter=\"destination\", destination_service=\"{service}\""),
            Subject::Workload { name, namespace } => format!(
                "reporter=\"destination\", destination_workload=\"{name}\", destination_workload_namespace=\"{namespace}\""
            ),
        }
    }
}

struct Stat {
    title: &'static str,
    query: String,
    format: Format,
}

struct Chart {
    title: &'static str,
    query: String,
    /// The labels that name a line.
    legend: &'static [&'static str],
    unit: &'static str,
}

fn stats(subject: &Subject, window: &str) -> Vec<Stat> {
    let inbound = subject.inbound();
    let volume = format!("sum(rate(istio_requests_total{{{inbound}}}[{window}]))");
    let quantile = |q: &str| duration_quantile(q, &inbound, window, "");
    let mut stats = vec![
        Stat { title: "Request volume", query: volume.clone(), format: Format::Rate },
        Stat {
            title: "Success rate (non-5xx responses)",
            query: format!("sum(rate(istio_requests_total{{{inbound}, response_code!~\"5.*\"}}[{window}])) / {volume}"),
            format: Format::Percent,
        },
        Stat {
            title: "4xxs",
            query: format!("sum(rate(istio_requests_total{{{inbound}, response_code=~\"4.*\"}}[{window}]))"),
            format: Format::Rate,
        },
        Stat {
            title: "5xxs",
            query: format!("sum(rate(istio_requests_total{{{inbound}, response_code=~\"5.*\"}}[{window}]))"),
            format: Format::Rate,
        },
    ];
    if *subject != Subject::Mesh {
        stats.extend([
            Stat { title: "Request duration P50", query: quantile("0.50"), format: Format::Millis },
            Stat { title: "Request duration P90", query: quantile("0.90"), format: Format::Millis },
            Stat { title: "Request duration P99", query: quantile("0.99"), format: Format::Millis },
            Stat {
                title: "TCP received bytes",
                query: format!("sum(rate(istio_tcp_received_bytes_total{{{inbound}}}[{window}]))"),
                format: Format::Bytes,
            },
            Stat {
                title: "TCP sent bytes",
                query: format!("sum(rate(istio_tcp_sent_bytes_total{{{inbound}}}[{window}]))"),
                format: Format::Bytes,
            },
        ]);
    }
    stats
}

fn charts(subject: &Subject, window: &str) -> Vec<Chart> {
    let inbound = subject.inbound();
    let mut charts = match subject {
        Subject::Mesh => vec![Chart {
            title: "Request volume by service",
            query: format!("sum(rate(istio_requests_total{{{inbound}}}[{window}])) by (destination_service)"),
            legend: &["destination_service"],
            unit: "ops",
        }],
        _ => vec![
            Chart {
                title: "Incoming requests by source and response code",
                query: format!(
                    "sum(rate(istio_requests_total{{{inbound}}}[{window}])) by (source_workload, source_workload_namespace, response_code)"
                ),
                legend: &["source_workload", "source_workload_namespace", "response_code"],
                unit: "ops",
            },
            Chart {
                title: "Incoming request duration by source (P99)",
                query: duration_quantile("0.99", &inbound, window, "source_workload"),
                legend: &["source_workload"],
                unit: "s",
            },
            Chart {
                title: "Bytes received from incoming TCP connections",
                query: format!(
                    "sum(rate(istio_tcp_received_bytes_total{{{inbound}}}[{window}])) by (source_workload)"
                ),
                legend: &["source_workload"],
                unit: "B/s",
            },
        ],
    };
    if let Subject::Workload { name, namespace } = subject {
        charts.push(Chart {
            title: "Outgoing requests by destination and response code",
            query: format!(
                "sum(rate(istio_requests_total{{reporter=\"source\", source_workload=\"{name}\", source_workload_namespace=\"{namespace}\"}}[{window}])) by (destination_service, response_code)"
            ),
            legend: &["destination_service", "response_code"],
            unit: "ops",
        });
    }
    charts
}

/// The mesh dashboard's table of HTTP workloads (1.4's "HTTP/GRPC Workloads").
fn workload_table(samples: &[Sample], p99: &[Sample]) -> String {
    if samples.is_empty() {
        return no_data("No HTTP or gRPC requests reached a workload in this window.");
    }
    let mut table = String::from(
        "<table id=\"workloads\"><tr><th>Service</th><th>Workload</th><th>Requests</th><th>P99 latency</th><th>Success rate</th></tr>",
    );
    let mut rows: Vec<&Sample> = samples.iter().collect();
    rows.sort_by(|a, b| a.label("destination_service").cmp(b.label("destination_service")));
    for sample in rows {
        let (service, workload, namespace) = (
            sample.label("destination_service"),
            sample.label("destination_workload"),
            sample.label("destination_workload_namespace"),
        );
        let latency = p99
            .iter()
            .find(|other| {
                other.label("destination_workload") == workload && other.label("destination_service") == service
            })
            .map_or("-".to_string(), |other| format_value(other.value, Format::Millis));
        let success = sample.labels.get("success").cloned().unwrap_or_else(|| "-".into());
        let _ = write!(
            table,
            "<tr><td><a href=\"/dashboards/service?service={}\">{}</a></td><td><a href=\"/dashboards/workload?workload={}&amp;namespace={}\">{}.{}</a></td><td>{}</td><td>{latency}</td><td>{success}</td></tr>",
            url_value(service),
            escape(service),
            url_value(workload),
            url_value(namespace),
            escape(workload),
            escape(namespace),
            format_value(sample.value, Format::Rate),
        );
    }
    table.push_str("</table>");
    table
}

/// Renders a dashboard; the window is a PromQL range (`1m`, `5m`).
pub async fn render(sources: &Sources, subject: &Subject, window: &str) -> String {
    let stats = stats(subject, window);
    let charts = charts(subject, window);
    let stat_answers = futures_join(stats.iter().map(|stat| sources.query(&stat.query))).await;
    let chart_answers =
        futures_join(charts.iter().map(|chart| sources.query_range(&chart.query, CHART_SPAN, CHART_STEP))).await;
    let mut body = String::new();
    let mut errors = Vec::new();
    let mut any_data = false;
    // The charts span the data they have: at least five minutes, at most half an hour.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let earliest = chart_answers
        .iter()
        .flat_map(|answer| answer.iter().flatten())
        .flat_map(|series| series.points.first())
        .map(|(time, _)| *time)
        .fold(now, f64::min);
    let range = (earliest.min(now - 300.0).max(now - CHART_SPAN.as_secs_f64()), now);
    body.push_str("<div class=\"stats\">");
    for (index, (stat, answer)) in stats.iter().zip(stat_answers).enumerate() {
        let value = match answer {
            Ok(samples) => match samples.first() {
                Some(sample) => Some(format_value(sample.value, stat.format)),
                // With traffic, a count of nothing (no 4xx, no TCP) is zero, not missing.
                None if any_data && index > 0 && !matches!(stat.format, Format::Millis | Format::Percent) => {
                    Some(format_value(0.0, stat.format))
                }
                None => None,
            },
            Err(error) => {
                errors.push(error);
                None
            }
        };
        any_data |= value.is_some();
        let _ = write!(
            body,
            "<div class=\"stat\">{}<b>{}</b></div>",
            escape(stat.title),
            value.unwrap_or_else(|| "No data".into())
        );
    }
    body.push_str("</div>");
    if *subject == Subject::Mesh {
        let inbound = subject.inbound();
        let by = "destination_service, destination_workload, destination_workload_namespace";
        let table_queries = [
            format!("sum(rate(istio_requests_total{{{inbound}}}[{window}])) by ({by})"),
            format!(
                "sum(rate(istio_requests_total{{{inbound}, response_code!~\"5.*\"}}[{window}])) by ({by}) / sum(rate(istio_requests_total{{{inbound}}}[{window}])) by ({by})"
            ),
            duration_quantile("0.99", &inbound, window, by),
        ];
        let (volume, success, p99) = tokio::join!(
            sources.query(&table_queries[0]),
            sources.query(&table_queries[1]),
            sources.query(&table_queries[2])
        );
        match (volume, success, p99) {
            (Ok(mut volume), Ok(success), Ok(p99)) => {
                for sample in &mut volume {
                    let share = success.iter().find(|other| other.labels == sample.labels).map(|other| other.value);
                    if let Some(share) = share {
                        sample.labels.insert("success".into(), format_value(share, Format::Percent));
                    }
                }
                any_data |= !volume.is_empty();
                body.push_str("<h2>HTTP/GRPC workloads</h2>");
                body.push_str(&workload_table(&volume, &p99));
            }
            (volume, success, p99) => errors.extend([volume.err(), success.err(), p99.err()].into_iter().flatten()),
        }
    }
    body.push_str("<div class=\"panels\">");
    for (chart, answer) in charts.iter().zip(chart_answers) {
        let _ = write!(body, "<div class=\"panel\"><h2>{}</h2>", escape(chart.title));
        match answer {
            Ok(series) => {
                let lines: Vec<Line<'_>> = series
                    .iter()
                    .map(|series| Line {
                        legend: chart
                            .legend
                            .iter()
                            .map(|label| series.labels.get(*label).map(String::as_str).unwrap_or("?"))
                            .collect::<Vec<_>>()
                            .join(" · "),
                        series,
                    })
                    .collect();
                match chart::render(&lines, chart.unit, range) {
                    Some(svg) => {
                        any_data = true;
                        body.push_str(&svg);
                    }
                    None => body.push_str(&no_data("No data in the last 30 minutes.")),
                }
            }
            Err(error) => errors.push(error),
        }
        body.push_str("</div>");
    }
    body.push_str("</div>");
    let mut head = window_links(subject, window);
    for error in dedup(errors) {
        head.push_str(&notice(&error));
    }
    if !any_data {
        head.push_str(&no_data(&match subject {
            Subject::Mesh => {
                "No traffic has been reported yet: send requests through the mesh (Prometheus scrapes every 15 s)."
                    .to_string()
            }
            Subject::Service(service) => format!("No traffic to {service} has been reported in this window."),
            Subject::Workload { name, namespace } => {
                format!("No traffic to or from {name}.{namespace} has been reported in this window.")
            }
        }));
    }
    crate::page::frame(&subject.title(), "/dashboards", &(head + &body))
}

/// Links to the same dashboard over other windows.
fn window_links(subject: &Subject, window: &str) -> String {
    let base = match subject {
        Subject::Mesh => "/dashboards?".to_string(),
        Subject::Service(service) => format!("/dashboards/service?service={}&amp;", url_value(service)),
        Subject::Workload { name, namespace } => {
            format!("/dashboards/workload?workload={}&amp;namespace={}&amp;", url_value(name), url_value(namespace))
        }
    };
    let mut links = String::from("<p>Window: ");
    for option in ["1m", "5m", "15m"] {
        if option == window {
            let _ = write!(links, "<b>{option}</b> ");
        } else {
            let _ = write!(links, "<a href=\"{base}window={option}\">{option}</a> ");
        }
    }
    links.push_str("</p>");
    links
}

fn dedup(errors: Vec<SourceError>) -> Vec<String> {
    let mut messages: Vec<String> = errors.into_iter().map(|error| error.to_string()).collect();
    messages.dedup();
    messages.truncate(3);
    messages
}

/// Runs the futures concurrently, answers in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_1_4s_and_names_are_checked() {
        let stats = stats(&Subject::Service("reviews.default.svc.cluster.local".into()), "1m");
        assert_eq!(
            stats[1].query,
            "sum(rate(istio_requests_total{reporter=\"destination\", destination_service=\"reviews.default.svc.cluster.local\", response_code!~\"5.*\"}[1m])) / sum(rate(istio_requests_total{reporter=\"destination\", destination_service=\"reviews.default.svc.cluster.local\"}[1m]))"
        );
        assert!(valid_name("productpage-v1") && valid_name("reviews.default.svc.cluster.local"));
        assert!(!valid_name("x\"}or vector(1)") && !valid_name(""));
        assert_eq!(format_value(0.9876, Format::Percent), "98.76%");
        assert_eq!(format_value(0.0421, Format::Millis), "42.1 ms");
    }
}
