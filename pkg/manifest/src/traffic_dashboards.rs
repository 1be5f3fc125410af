//! 1.4's Mesh, Service and Workload dashboards over the telemetry series (`istio_requests_total`,
//! the duration and size histograms, the TCP byte counters), with mutual-TLS and plain variants
//! of each per-peer query, 1.4's titles, uids and variables.

use serde_json::Value;

use crate::grafana_model::{dashboard, panel, section, target, variable, Kind, Panel};

const QUANTILES: [(&str, &str); 4] = [("0.50", "P50"), ("0.90", "P90"), ("0.95", "P95"), ("0.99", "P99")];

/// A request duration quantile in seconds, from the millisecond histogram (telemetry v2) or
/// the second histogram (Mixer), whichever exists.
fn duration(quantile: &str, filters: &str, by: &str) -> String {
    format!(
        "(histogram_quantile({quantile}, sum(irate(istio_request_duration_milliseconds_bucket{{{filters}}}[1m])) by ({by}le)) / 1000) \
         or histogram_quantile({quantile}, sum(irate(istio_request_duration_seconds_bucket{{{filters}}}[1m])) by ({by}le))"
    )
}

/// The mutual TLS and plain variants of a query: `make(security_filter, legend_suffix)`.
fn by_security(make: impl Fn(&str, &str) -> Vec<(String, String)>) -> Vec<(String, String)> {
    let mut targets = make("connection_security_policy=\"mutual_tls\"", " (🔐mTLS)");
    targets.extend(make("connection_security_policy!=\"mutual_tls\"", ""));
    targets
}

/// The titles of a direction's panels that name the peer: requests by it, TCP bytes received
/// and sent.
struct PeerTitles {
    requests: &'static str,
    received: &'static str,
    sent: &'static str,
}

const FROM_SOURCES: PeerTitles = PeerTitles {
    requests: "Incoming Requests by Source And Response Code",
    received: "Bytes Received from Incoming TCP Connection",
    sent: "Bytes Sent to Incoming TCP Connection",
};

const TO_SERVICE_WORKLOADS: PeerTitles = PeerTitles {
    requests: "Incoming Requests by Destination Workload And Response Code",
    received: "Bytes Received from Incoming TCP Connection",
    sent: "Bytes Sent to Incoming TCP Connection",
};

const TO_DESTINATIONS: PeerTitles = PeerTitles {
    requests: "Outgoing Requests by Destination And Response Code",
    received: "Bytes Received from Outgoing TCP Connection",
    sent: "Bytes Sent on Outgoing TCP Connection",
};

/// The traffic panels of one direction: requests by peer and code, success rate, duration,
/// sizes and TCP bytes, for `filters` and grouped `by` the peer (legend `who`).
fn traffic_panels(reporter: &str, filters: &str, by: &str, who: &str, titles: &PeerTitles) -> Vec<Panel> {
    let all = |security: &str| format!("reporter=\"{reporter}\", {security}, {filters}");
    let requests = by_security(|security, suffix| {
        vec![(
            format!("round(sum(irate(istio_requests_total{{{}}}[5m])) by ({by}, response_code), 0.001)", all(security)),
            format!("{who} : {{{{ response_code }}}}{suffix}"),
        )]
    });
    let success = by_security(|security, suffix| {
        vec![(
            format!(
                "sum(irate(istio_requests_total{{{0}, response_code!~\"5.*\"}}[5m])) by ({by}) / sum(irate(istio_requests_total{{{0}}}[5m])) by ({by})",
                all(security)
            ),
            format!("{who}{suffix}"),
        )]
    });
    let quantiles = |metric: &str| {
        by_security(|security, suffix| {
            QUANTILES
                .iter()
                .map(|(quantile, name)| {
                    (
                        format!(
                            "histogram_quantile({quantile}, sum(irate({metric}_bucket{{{}}}[1m])) by ({by}, le))",
                            all(security)
                        ),
                        format!("{who} {name}{suffix}"),
                    )
                })
                .collect()
        })
    };
    let durations = by_security(|security, suffix| {
        QUANTILES
            .iter()
            .map(|(quantile, name)| {
                (duration(quantile, &all(security), &format!("{by}, ")), format!("{who} {name}{suffix}"))
            })
            .collect()
    });
    let tcp = |metric: &str| {
        by_security(|security, suffix| {
            vec![(
                format!("round(sum(irate({metric}{{{}}}[1m])) by ({by}), 0.001)", all(security)),
                format!("{who}{suffix}"),
            )]
        })
    };
    vec![
        panel(titles.requests, Kind::Graph("ops"), requests),
        panel("Success Rate (non-5xx responses)", Kind::Graph("percentunit"), success),
        panel("Request Duration", Kind::Graph("s"), durations),
        panel("Request Size", Kind::Graph("decbytes"), quantiles("istio_request_bytes")),
        panel("Response Size", Kind::Graph("decbytes"), quantiles("istio_response_bytes")),
        panel(titles.received, Kind::Graph("Bps"), tcp("istio_tcp_received_bytes_total")),
        panel(titles.sent, Kind::Graph("Bps"), tcp("istio_tcp_sent_bytes_total")),
    ]
}

/// Single stats of one subject's traffic as `reporter` sees it.
fn general_stats(reporter: &str, filters: &str, who: &str) -> Vec<Panel> {
    let selector = format!("reporter=\"{reporter}\",{filters}");
    vec![
        panel(
            &format!("{who} Request Volume"),
            Kind::Stat("ops"),
            vec![target(&format!("round(sum(irate(istio_requests_total{{{selector}}}[5m])), 0.001)"), "")],
        ),
        panel(
            &format!("{who} Success Rate (non-5xx responses)"),
            Kind::Stat("percentunit"),
            vec![target(
                &format!(
                    "sum(irate(istio_requests_total{{{selector},response_code!~\"5.*\"}}[5m])) / sum(irate(istio_requests_total{{{selector}}}[5m]))"
                ),
                "",
            )],
        ),
        panel(
            &format!("{who} Request Duration"),
            Kind::Graph("s"),
            QUANTILES
                .iter()
                .filter(|(quantile, _)| *quantile != "0.95")
                .map(|(quantile, name)| target(&duration(quantile, &selector, ""), name))
                .collect(),
        ),
    ]
}

pub(crate) fn mesh() -> Value {
    let counts = [
        ("Virtual Services", "virtualservices", "networking"),
        ("Destination Rules", "destinationrules", "networking"),
        ("Gateways", "gateways", "networking"),
        ("Authentication Mesh Policies", "meshpolicies", "authentication"),
    ];
    let mut stats = vec![
        panel(
            "Global Request Volume",
            Kind::Stat("ops"),
            vec![target("round(sum(irate(istio_requests_total{reporter=\"destination\"}[1m])), 0.001)", "")],
        ),
        panel(
            "Global Success Rate (non-5xx responses)",
            Kind::Stat("percentunit"),
            vec![target(
                "sum(rate(istio_requests_total{reporter=\"destination\", response_code!~\"5.*\"}[1m])) / sum(rate(istio_requests_total{reporter=\"destination\"}[1m]))",
                "",
            )],
        ),
        panel(
            "4xxs",
            Kind::Stat("ops"),
            vec![target("sum(irate(istio_requests_total{reporter=\"destination\", response_code=~\"4.*\"}[1m]))", "")],
        ),
        panel(
            "5xxs",
            Kind::Stat("ops"),
            vec![target("sum(irate(istio_requests_total{reporter=\"destination\", response_code=~\"5.*\"}[1m]))", "")],
        ),
    ];
    for (title, plural, group) in counts {
        stats.push(panel(
            title,
            Kind::Stat("none"),
            vec![target(&format!("sum(galley_istio_{group}_{plural}) / count(up{{job=\"galley\"}})"), "")],
        ));
    }
    let workload = "destination_workload, destination_workload_namespace";
    let joined = |query: String| {
        format!("label_join({query}, \"destination_workload_var\", \".\", \"destination_workload\", \"destination_workload_namespace\")")
    };
    let legend = "{{ destination_workload }}.{{ destination_workload_namespace }}";
    let mut http = vec![target(
        &joined(format!(
            "sum(rate(istio_requests_total{{reporter=\"destination\"}}[1m])) by ({workload}, destination_service)"
        )),
        legend,
    )];
    for (quantile, _) in QUANTILES.iter().filter(|(quantile, _)| *quantile != "0.95") {
        http.push(target(&joined(duration(quantile, "reporter=\"destination\"", &format!("{workload}, "))), legend));
    }
    http.push(target(
        &joined(format!(
            "(sum(rate(istio_requests_total{{reporter=\"destination\", response_code!~\"5.*\"}}[1m])) by ({workload}) / sum(rate(istio_requests_total{{reporter=\"destination\"}}[1m])) by ({workload}))"
        )),
        legend,
    ));
    let tcp = ["istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"]
        .iter()
        .map(|metric| {
            target(
                &joined(format!("sum(rate({metric}{{reporter=\"source\"}}[1m])) by ({workload}, destination_service)")),
                legend,
            )
        })
        .collect();
    dashboard(
        "Istio Mesh Dashboard",
        "G8wLrJIZk",
        Vec::new(),
        vec![
            section(None, stats),
            section(
                None,
                vec![panel("HTTP/GRPC Workloads", Kind::Table, http), panel("TCP Workloads", Kind::Table, tcp)],
            ),
            section(
                None,
                vec![panel(
                    "Istio Components by Version",
                    Kind::Graph("none"),
                    vec![target("sum(istio_build) by (component, tag)", "{{ component }}: {{ tag }}")],
                )],
            ),
        ],
    )
}

fn peers_variable(name: &str, label: &str, reporter_filter: &str, by: &str) -> Value {
    variable(
        name,
        label,
        &format!(
            "query_result( sum(istio_requests_total{{reporter=\"destination\", {reporter_filter}}}) by ({by}) or sum(istio_tcp_sent_bytes_total{{reporter=\"destination\", {reporter_filter}}}) by ({by}))"
        ),
        true,
    )
}

pub(crate) fn service() -> Value {
    let service = "destination_service=~\"$service\"";
    let mut general = general_stats("source", service, "Client");
    general.extend(general_stats("destination", service, "Server"));
    dashboard(
        "Istio Service Dashboard",
        "LJ_uJAvmk",
        vec![
            variable("service", "Service", "label_values(destination_service)", false),
            peers_variable("srcns", "Client Workload Namespace", service, "source_workload_namespace"),
            peers_variable(
                "srcwl",
                "Client Workload",
                &format!("{service}, source_workload_namespace=~\"$srcns\""),
                "source_workload",
            ),
            peers_variable("dstns", "Service Workload Namespace", service, "destination_workload_namespace"),
            peers_variable(
                "dstwl",
                "Service Workload",
                &format!("{service}, destination_workload_namespace=~\"$dstns\""),
                "destination_workload",
            ),
        ],
        vec![
            section(Some("General"), general),
            section(
                Some("Client Workloads"),
                traffic_panels(
                    "source",
                    &format!("{service}, source_workload=~\"$srcwl\", source_workload_namespace=~\"$srcns\""),
                    "source_workload, source_workload_namespace",
                    "{{ source_workload }}.{{ source_workload_namespace }}",
                    &FROM_SOURCES,
                ),
            ),
            section(
                Some("Service Workloads"),
                traffic_panels(
                    "destination",
                    &format!("{service}, destination_workload=~\"$dstwl\", destination_workload_namespace=~\"$dstns\""),
                    "destination_workload, destination_workload_namespace",
                    "{{ destination_workload }}.{{ destination_workload_namespace }}",
                    &TO_SERVICE_WORKLOADS,
                ),
            ),
        ],
    )
}

pub(crate) fn workload() -> Value {
    let inbound = "destination_workload_namespace=~\"$namespace\", destination_workload=~\"$workload\"";
    let outbound = "source_workload_namespace=~\"$namespace\", source_workload=~\"$workload\"";
    let mut general = general_stats("destination", inbound, "Incoming");
    general.push(panel(
        "TCP Server Traffic",
        Kind::Graph("Bps"),
        vec![
            target(&format!("sum(irate(istio_tcp_received_bytes_total{{reporter=\"destination\", {inbound}}}[1m])) by (destination_workload, destination_workload_namespace)"), "Received"),
            target(&format!("sum(irate(istio_tcp_sent_bytes_total{{reporter=\"destination\", {inbound}}}[1m])) by (destination_workload, destination_workload_namespace)"), "Sent"),
        ],
    ));
    dashboard(
        "Istio Workload Dashboard",
        "UbsSZTDik",
        vec![
            variable("namespace", "Namespace", "query_result(sum(istio_requests_total) by (destination_workload_namespace) or sum(istio_tcp_sent_bytes_total) by (destination_workload_namespace))", false),
            variable("workload", "Workload", "query_result((sum(istio_requests_total{destination_workload_namespace=~\"$namespace\"}) by (destination_workload) or sum(istio_requests_total{source_workload_namespace=~\"$namespace\"}) by (source_workload)) or (sum(istio_tcp_sent_bytes_total{destination_workload_namespace=~\"$namespace\"}) by (destination_workload) or sum(istio_tcp_sent_bytes_total{source_workload_namespace=~\"$namespace\"}) by (source_workload)))", false),
            peers_variable("srcns", "Inbound Workload Namespace", inbound, "source_workload_namespace"),
            peers_variable("srcwl", "Inbound Workload", &format!("{inbound}, source_workload_namespace=~\"$srcns\""), "source_workload"),
            variable("dstsvc", "Destination Service", &format!("query_result( sum(istio_requests_total{{reporter=\"source\", {outbound}}}) by (destination_service) or sum(istio_tcp_sent_bytes_total{{reporter=\"source\", {outbound}}}) by (destination_service))"), true),
        ],
        vec![
            section(Some("General"), general),
            section(
                Some("Inbound Workloads"),
                traffic_panels(
                    "destination",
                    &format!("{inbound}, source_workload=~\"$srcwl\", source_workload_namespace=~\"$srcns\""),
                    "source_workload, source_workload_namespace",
                    "{{ source_workload }}.{{ source_workload_namespace }}",
                    &FROM_SOURCES,
                ),
            ),
            section(
                Some("Outbound Services"),
                traffic_panels(
                    "source",
                    &format!("{outbound}, destination_service=~\"$dstsvc\""),
                    "destination_service",
                    "{{ destination_service }}",
                    &TO_DESTINATIONS,
                ),
            ),
        ],
    )
}
