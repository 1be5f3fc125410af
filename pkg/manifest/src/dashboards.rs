//! The Grafana dashboards of the `Grafana` addon, built as Grafana 6 dashboard models: 1.4's
//! Mesh, Service and Workload dashboards over the telemetry series, and its Pilot, Mixer,
//! Galley and Citadel dashboards over the control plane's own metrics, with 1.4's titles, uids
//! (so links into them keep working), variables and PromQL. Panels that only charted Go
//! runtime or cAdvisor series are left out (the components are not Go programs); 1.4's
//! performance dashboard, which was made of those, is left out as a whole.

use serde_json::{json, Value};

/// How a panel shows its queries.
#[derive(Clone, Copy)]
enum Kind {
    /// One number: `ops`, `percentunit`, `Bps`, `none`.
    Stat(&'static str),
    /// Lines over time, in a unit.
    Graph(&'static str),
    /// One row per series.
    Table,
}

struct Panel {
    title: String,
    kind: Kind,
    targets: Vec<(String, String)>,
}

fn panel(title: &str, kind: Kind, targets: Vec<(String, String)>) -> Panel {
    Panel { title: title.to_string(), kind, targets }
}

fn target(expr: &str, legend: &str) -> (String, String) {
    (expr.to_string(), legend.to_string())
}

/// A section of a dashboard: an optional row title and its panels.
struct Section {
    row: Option<&'static str>,
    panels: Vec<Panel>,
}

fn section(row: Option<&'static str>, panels: Vec<Panel>) -> Section {
    Section { row, panels }
}

/// A query variable (`label_values(destination_service)`), multi-valued with "All" unless it
/// names one subject.
fn variable(name: &str, label: &str, query: &str, multi: bool) -> Value {
    json!({
        "name": name, "label": label, "type": "query", "datasource": "Prometheus", "query": query,
        "refresh": 1, "includeAll": multi, "multi": multi, "allValue": if multi { Value::from(".*") } else { Value::Null },
        "regex": if query.starts_with("query_result") { "/.*[a-z]+=\"([^\"]+)\".*/" } else { "" },
        "sort": 1, "hide": 0,
    })
}

/// The dashboard model: panels laid out left to right, rows spanning the width.
fn dashboard(title: &str, uid: &str, variables: Vec<Value>, sections: Vec<Section>) -> Value {
    let mut panels = Vec::new();
    let (mut x, mut y, mut id) = (0, 0, 1);
    for section in sections {
        if let Some(row) = section.row {
            if x > 0 {
                y += 7;
                x = 0;
            }
            panels.push(json!({"id": id, "type": "row", "title": row, "collapsed": false,
                               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}));
            id += 1;
            y += 1;
        }
        for item in section.panels {
            let width = match item.kind {
                Kind::Stat(_) => 6,
                Kind::Graph(_) => 12,
                Kind::Table => 24,
            };
            if x + width > 24 {
                x = 0;
                y += 7;
            }
            let targets: Vec<Value> = item
                .targets
                .iter()
                .enumerate()
                .map(|(index, (expr, legend))| {
                    let ref_id = char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string();
                    let mut target = json!({"expr": expr, "legendFormat": legend, "refId": ref_id,
                                            "format": "time_series", "intervalFactor": 1});
                    if matches!(item.kind, Kind::Table) {
                        target["format"] = json!("table");
                        target["instant"] = json!(true);
                    }
                    target
                })
                .collect();
            let mut model = json!({"id": id, "title": item.title, "datasource": "Prometheus", "targets": targets,
                                   "gridPos": {"h": 7, "w": width, "x": x, "y": y}});
            match item.kind {
                Kind::Stat(unit) => {
                    model["type"] = json!("singlestat");
                    model["format"] = json!(unit);
                    model["valueName"] = json!("current");
                    model["sparkline"] = json!({"show": true});
                }
                Kind::Graph(unit) => {
                    model["type"] = json!("graph");
                    model["lines"] = json!(true);
                    model["linewidth"] = json!(1);
                    model["legend"] = json!({"show": true, "values": false});
                    model["yaxes"] =
                        json!([{"format": unit, "show": true, "min": 0}, {"format": "short", "show": false}]);
                    model["xaxis"] = json!({"mode": "time", "show": true});
                }
                Kind::Table => {
                    model["type"] = json!("table");
                    model["transform"] = json!("table");
                }
            }
            panels.push(model);
            id += 1;
            x += width;
        }
        if x > 0 {
            x = 0;
            y += 7;
        }
    }
    json!({
        "title": title, "uid": uid, "tags": ["istio"], "editable": false, "schemaVersion": 20, "version": 1,
        "timezone": "browser", "refresh": "10s", "time": {"from": "now-5m", "to": "now"},
        "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels,
    })
}

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

fn mesh() -> Value {
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

fn service() -> Value {
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

fn workload() -> Value {
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

/// Version, memory, CPU and open files of a component's jobs.
fn resource_panels(component: &str, job: &str) -> Vec<Panel> {
    vec![
        panel(
            &format!("{} Versions", capitalised(component)),
            Kind::Graph("none"),
            vec![target(&format!("sum(istio_build{{component=\"{component}\"}}) by (tag)"), "{{ tag }}")],
        ),
        panel(
            "Memory",
            Kind::Graph("bytes"),
            vec![
                target(
                    &format!("sum(process_virtual_memory_bytes{{job=~\"{job}\"}}) by (job)"),
                    "Virtual Memory ({{ job }})",
                ),
                target(
                    &format!("sum(process_resident_memory_bytes{{job=~\"{job}\"}}) by (job)"),
                    "Resident Memory ({{ job }})",
                ),
            ],
        ),
        panel(
            "CPU",
            Kind::Graph("short"),
            vec![target(
                &format!("sum(irate(process_cpu_seconds_total{{job=~\"{job}\"}}[1m])) by (job)"),
                "{{ job }} (self-reported)",
            )],
        ),
        panel(
            "Open Files",
            Kind::Graph("none"),
            vec![target(&format!("sum(process_open_fds{{job=~\"{job}\"}}) by (job)"), "Open FDs ({{ job }})")],
        ),
    ]
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn graph(title: &str, unit: &'static str, targets: &[(&str, &str)]) -> Panel {
    panel(title, Kind::Graph(unit), targets.iter().map(|(expr, legend)| target(expr, legend)).collect())
}

fn pilot() -> Value {
    let pushes: Vec<(String, String)> =
        [("cds", "Cluster"), ("eds", "Endpoints"), ("lds", "Listeners"), ("rds", "Routes")]
            .iter()
            .map(|(kind, legend)| target(&format!("sum(irate(pilot_xds_pushes{{type=\"{kind}\"}}[1m]))"), legend))
            .collect();
    let mut errors: Vec<(String, String)> = ["cds", "eds", "rds", "lds"]
        .iter()
        .map(|kind| {
            let metric = format!("pilot_xds_{kind}_reject{{job=\"pilot\"}}");
            target(
                &format!("sum({metric}) or (absent({metric}) - 1)"),
                &format!("Rejected {} Configs", kind.to_uppercase()),
            )
        })
        .collect();
    errors.push(target("sum(rate(pilot_total_xds_rejects{job=\"pilot\"}[1m]))", "Config Rejection Rate"));
    let push_time = [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p99.9")]
        .iter()
        .map(|(quantile, legend)| {
            target(
                &format!("histogram_quantile({quantile}, sum(rate(pilot_proxy_convergence_time_bucket[1m])) by (le))"),
                legend,
            )
        })
        .collect();
    dashboard(
        "Istio Pilot Dashboard",
        "3--MLVZZk",
        Vec::new(),
        vec![
            section(Some("Resource Usage"), resource_panels("pilot", "pilot")),
            section(
                Some("Pilot Push Information"),
                vec![
                    panel("Pilot Pushes", Kind::Graph("ops"), pushes),
                    panel("Pilot Errors", Kind::Graph("short"), errors),
                    panel("Proxy Push Time", Kind::Graph("s"), push_time),
                    graph(
                        "ADS Monitoring",
                        "short",
                        &[
                            ("pilot_virt_services{job=\"pilot\"}", "Virtual Services"),
                            ("pilot_services{job=\"pilot\"}", "Services"),
                            ("pilot_xds{job=\"pilot\"}", "Connected Endpoints"),
                        ],
                    ),
                    panel(
                        "Clusters with no known endpoints",
                        Kind::Table,
                        vec![target(
                            "sum(pilot_xds_eds_instances{job=\"pilot\", cluster=~\".+\\\\|.+\"}) by (cluster) < 1",
                            "{{cluster}}",
                        )],
                    ),
                ],
            ),
        ],
    )
}

fn mixer() -> Value {
    let quantiles = |metric: &str, by: &str, legend: &str| -> Vec<(String, String)> {
        ["0.5", "0.9", "0.99"]
            .iter()
            .map(|quantile| {
                target(
                    &format!("histogram_quantile({quantile}, sum(irate({metric}[1m])) by ({by}, le))"),
                    &format!("{legend} {quantile}"),
                )
            })
            .collect()
    };
    let config = |title: &str, metric: &str| {
        panel(title, Kind::Graph("none"), vec![target(&format!("scalar(topk(1, max({metric}) by (configID)))"), title)])
    };
    dashboard(
        "Istio Mixer Dashboard",
        "mixer-dashboard",
        vec![variable("adapter", "Adapter", "label_values(adapter)", true)],
        vec![
            section(Some("Resource Usage"), resource_panels("mixer", "istio-telemetry|istio-policy")),
            section(
                Some("Mixer Overview"),
                vec![
                    graph(
                        "Incoming Requests",
                        "ops",
                        &[
                            ("sum(rate(grpc_io_server_completed_rpcs[1m]))", "mixer (Total)"),
                            ("sum(rate(grpc_io_server_completed_rpcs[1m])) by (grpc_server_method)", "mixer ({{ grpc_server_method }})"),
                        ],
                    ),
                    panel(
                        "Response Durations",
                        Kind::Graph("ms"),
                        quantiles("grpc_io_server_server_latency_bucket", "grpc_server_method", "{{ grpc_server_method }}"),
                    ),
                    graph(
                        "Server Error Rate (5xx responses)",
                        "ops",
                        &[(
                            "sum(rate(grpc_server_handled_total{grpc_code=~\"Unknown|Unimplemented|Internal|DataLoss\"}[1m])) by (grpc_method)",
                            "Mixer {{ grpc_method }}",
                        )],
                    ),
                    graph(
                        "Non-successes (4xxs)",
                        "ops",
                        &[(
                            "sum(irate(grpc_server_handled_total{grpc_code!=\"OK\",grpc_service=~\".*Mixer\"}[1m])) by (grpc_method)",
                            "Mixer {{ grpc_method }}",
                        )],
                    ),
                ],
            ),
            section(
                Some("Adapters and Config"),
                vec![
                    graph(
                        "Adapter Dispatch Count",
                        "ops",
                        &[("sum(irate(mixer_runtime_dispatches_total{adapter=~\"$adapter\"}[1m])) by (adapter)", "{{ adapter }}")],
                    ),
                    panel(
                        "Adapter Dispatch Duration",
                        Kind::Graph("s"),
                        quantiles("mixer_runtime_dispatch_duration_seconds_bucket{adapter=~\"$adapter\"}", "adapter", "{{ adapter }} -"),
                    ),
                    config("Rules", "mixer_config_rule_config_count"),
                    config("Instances in Latest Config", "mixer_config_instance_config_count"),
                    config("Handlers in Latest Config", "mixer_config_handler_config_count"),
                    config("Attributes in Latest Config", "mixer_config_attribute_count"),
                ],
            ),
        ],
    )
}

fn galley() -> Value {
    dashboard(
        "Istio Galley Dashboard",
        "TSEY6jLmk",
        Vec::new(),
        vec![
            section(Some("Resource Usage"), resource_panels("galley", "galley")),
            section(
                Some("Runtime"),
                vec![
                    graph(
                        "Event Rates",
                        "short",
                        &[
                            ("sum(rate(galley_runtime_strategy_on_change_total[1m])) * 60", "Strategy Change Events"),
                            ("sum(rate(galley_runtime_processor_events_processed_total[1m])) * 60", "Processed Events"),
                            (
                                "sum(rate(galley_runtime_processor_snapshots_published_total[1m])) * 60",
                                "Snapshot Published",
                            ),
                        ],
                    ),
                    graph(
                        "State Type Instances",
                        "short",
                        &[("sum by (collection) (galley_runtime_state_type_instances_total)", "{{ collection }}")],
                    ),
                ],
            ),
            section(
                Some("Validation"),
                vec![
                    graph(
                        "Resource Validation",
                        "short",
                        &[
                            (
                                "sum(galley_validation_passed{job=\"galley\"}) by (group, version, resource)",
                                "Passed: {{ group }}/{{ version }}/{{resource}}",
                            ),
                            (
                                "sum(galley_validation_failed{job=\"galley\"}) by (group, version, resource, reason)",
                                "Failed: {{ group }}/{{ version }}/{{resource}} ({{ reason}})",
                            ),
                        ],
                    ),
                    graph(
                        "Validation HTTP Errors",
                        "short",
                        &[("sum(galley_validation_http_error{job=\"galley\"}) by (status)", "{{ status }}")],
                    ),
                ],
            ),
            section(
                Some("Mesh Configuration Protocol"),
                vec![
                    graph(
                        "Connected Clients",
                        "short",
                        &[("sum(istio_mcp_clients_total{component=\"galley\"})", "Clients")],
                    ),
                    graph(
                        "Request ACKs",
                        "short",
                        &[(
                            "sum by(collection)(irate(istio_mcp_request_acks_total{component=\"galley\"}[1m]) * 60)",
                            "{{ collection }}",
                        )],
                    ),
                    graph(
                        "Request NACKs",
                        "short",
                        &[("rate(istio_mcp_request_nacks_total{component=\"galley\"}[1m]) * 60", "{{ collection }}")],
                    ),
                ],
            ),
        ],
    )
}

fn citadel() -> Value {
    let counter = |title: &str, metric: &str, legend: &str| {
        graph(title, "short", &[(format!("{metric}{{job=\"citadel\"}}").as_str(), legend)])
    };
    dashboard(
        "Istio Citadel Dashboard",
        "OOyOqb4Wz",
        Vec::new(),
        vec![
            section(Some("Performance"), resource_panels("citadel", "citadel")),
            section(
                Some("General"),
                vec![
                    counter("CSR Requests", "citadel_server_csr_count", "CSR Request Count"),
                    counter("Certificates Issued", "citadel_server_success_cert_issuance_count", "Certificates Issued"),
                ],
            ),
            section(
                Some("Errors"),
                vec![
                    counter(
                        "CSR Creation Errors",
                        "citadel_secret_controller_csr_err_count",
                        "CSR Creation Error Count",
                    ),
                    counter("CSR Parse Errors", "citadel_server_csr_parsing_err_count", "CSR Parse Error Count"),
                    counter(
                        "Authentication Failures",
                        "citadel_server_authentication_failure_count",
                        "Authentication Failure Count",
                    ),
                ],
            ),
            section(
                Some("Secret Controller"),
                vec![
                    counter(
                        "Service Account Secrets Created (due to SA creation)",
                        "citadel_secret_controller_svc_acc_created_cert_count",
                        "SA Secrets Created",
                    ),
                    counter(
                        "Service Account Secrets Deleted (due to SA deletion)",
                        "citadel_secret_controller_svc_acc_deleted_cert_count",
                        "SA Secrets Deleted",
                    ),
                    counter(
                        "Service Account Secrets Recreated (due to errant deletion)",
                        "citadel_secret_controller_secret_deleted_cert_count",
                        "SA Secrets Recreated",
                    ),
                ],
            ),
        ],
    )
}

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
