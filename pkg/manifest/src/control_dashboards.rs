//! 1.4's Pilot, Mixer, Galley and Citadel dashboards over the control plane's own metrics,
//! without the panels that charted only Go runtime or cAdvisor series.

use serde_json::Value;

use crate::grafana_model::{dashboard, panel, section, target, variable, Kind, Panel};

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

pub(crate) fn pilot() -> Value {
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

pub(crate) fn mixer() -> Value {
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

pub(crate) fn galley() -> Value {
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

pub(crate) fn citadel() -> Value {
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
