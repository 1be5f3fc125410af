//! The telemetry task "control plane metrics": every component's monitoring port has the series
//! 1.4.6's Grafana dashboards query, under 1.4's names and types, and the demo's Prometheus
//! answers those dashboards' queries as written.

use super::*;

/// The control-plane metrics 1.4.6's Grafana dashboards query, by component address, as
/// (name, type). Go runtime (`go_*`) and cAdvisor (`container_*`) series have no counterpart;
/// metrics that only appear with their first event (Pilot's rejects, Galley's refusals, MCP
/// NACKs) are covered where the event is made (`pilot/tests/rejects.rs`, `galley/tests`,
/// `pkg/mcp/tests`).
const DASHBOARD_METRICS: [(&str, &[(&str, &str)]); 4] = [
    (
        "10.44.0.10:15014",
        &[
            ("istio_build", "gauge"),
            ("pilot_xds", "gauge"),
            ("pilot_xds_pushes", "counter"),
            ("pilot_services", "gauge"),
            ("pilot_virt_services", "gauge"),
            ("pilot_proxy_convergence_time", "histogram"),
            ("pilot_conflict_inbound_listener", "gauge"),
            ("pilot_conflict_outbound_listener_tcp_over_current_tcp", "gauge"),
            ("pilot_conflict_outbound_listener_tcp_over_current_http", "gauge"),
            ("pilot_conflict_outbound_listener_http_over_current_tcp", "gauge"),
            ("pilot_conflict_outbound_listener_http_over_https", "gauge"),
            ("pilot_xds_eds_instances", "gauge"),
            ("pilot_xds_push_time", "histogram"),
            ("pilot_total_xds_rejects", "counter"),
            ("pilot_rds_expired_nonce", "counter"),
            ("pilot_eds_no_instances", "gauge"),
            ("pilot_duplicate_envoy_clusters", "gauge"),
            ("pilot_inbound_updates", "counter"),
            ("pilot_proxy_queue_time", "histogram"),
            ("istio_mcp_request_acks", "counter"),
            ("istio_mcp_message_sizes_bytes", "histogram"),
            ("istio_mcp_reconnections", "counter"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
        ],
    ),
    (
        "10.44.0.11:15014",
        &[
            ("istio_build", "gauge"),
            ("galley_validation_passed", "counter"),
            ("galley_runtime_processor_snapshots_published", "counter"),
            ("galley_istio_networking_virtualservices", "gauge"),
            ("galley_istio_networking_destinationrules", "gauge"),
            ("galley_istio_networking_gateways", "gauge"),
            ("galley_istio_authentication_meshpolicies", "gauge"),
            ("istio_mcp_clients_total", "gauge"),
            ("istio_mcp_request_acks", "counter"),
            ("istio_mcp_message_sizes_bytes", "histogram"),
            ("galley_runtime_state_type_instances_total", "gauge"),
            ("galley_runtime_processor_events_processed", "counter"),
            ("galley_runtime_processor_snapshot_events_total", "histogram"),
            ("galley_runtime_strategy_on_change", "counter"),
            ("galley_runtime_strategy_timer_resets", "counter"),
            ("galley_runtime_strategy_timer_quiesce_reached", "counter"),
            ("galley_runtime_strategy_timer_max_time_reached", "counter"),
            ("process_cpu_seconds_total", "counter"),
            ("process_open_fds", "gauge"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
        ],
    ),
    (
        "10.44.0.13:15014",
        &[
            ("istio_build", "gauge"),
            ("citadel_secret_controller_secret_deleted_cert_count", "counter"),
            ("citadel_secret_controller_svc_acc_created_cert_count", "counter"),
            ("citadel_secret_controller_svc_acc_deleted_cert_count", "counter"),
            ("citadel_server_authentication_failure_count", "counter"),
            ("citadel_server_csr_count", "counter"),
            ("citadel_server_csr_parsing_err_count", "counter"),
            ("citadel_server_success_cert_issuance_count", "counter"),
            ("citadel_secret_controller_csr_err_count", "counter"),
            ("grpc_server_started", "counter"),
            ("grpc_server_handled", "counter"),
            ("grpc_server_msg_received", "counter"),
            ("grpc_server_msg_sent", "counter"),
            ("grpc_server_handling_seconds", "histogram"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
        ],
    ),
    (
        "10.44.0.15:15014",
        &[
            ("istio_build", "gauge"),
            ("mixer_runtime_dispatches", "counter"),
            ("mixer_runtime_dispatch_duration_seconds", "histogram"),
            ("mixer_config_attribute_count", "gauge"),
            ("mixer_config_handler_config_count", "gauge"),
            ("mixer_config_instance_config_count", "gauge"),
            ("mixer_config_rule_config_count", "gauge"),
            ("mixer_config_rule_config_error_count", "gauge"),
            ("mixer_config_rule_config_match_error_count", "gauge"),
            ("mixer_config_unsatisfied_action_handler_count", "gauge"),
            ("mixer_config_rule_configs_total", "gauge"),
            ("mixer_config_attributes_total", "gauge"),
            ("mixer_handler_new_handlers_total", "gauge"),
            ("mixer_dispatcher_destinations_per_request", "histogram"),
            ("mixer_dispatcher_destinations_per_variety_total", "gauge"),
            ("istio_mcp_request_acks", "counter"),
            ("istio_mcp_reconnections", "counter"),
            ("process_cpu_seconds_total", "counter"),
            ("process_open_fds", "gauge"),
            ("process_resident_memory_bytes", "gauge"),
        ],
    ),
];

pub(super) fn control_plane_metrics(mesh: &LocalMesh) {
    traffic(mesh, 3);
    for (address, metrics) in DASHBOARD_METRICS {
        let (status, text) = e2e::http_get(address, "/metrics");
        assert_eq!(status, 200, "{address}/metrics");
        let missing: Vec<String> = metrics
            .iter()
            .filter(|(name, kind)| !text.lines().any(|line| line == format!("# TYPE {name} {kind}")))
            .map(|(name, kind)| format!("{name} ({kind})"))
            .collect();
        assert!(missing.is_empty(), "{address} lacks 1.4's {missing:?}:\n{text}");
    }
    // Mixer's gRPC calls under OpenCensus' names: the built-in proxy's batched reports are
    // unary calls (a stock Envoy's access-log streams complete only when they close).
    if mesh.plane == Plane::Builtin {
        let (_, mixer) = e2e::http_get("10.44.0.15:15014", "/metrics");
        assert!(
            mixer.contains(
                "grpc_io_server_completed_rpcs{grpc_server_method=\"istio.mixer.v1.Mixer/Report\",grpc_server_status=\"OK\"} "
            ),
            "{mixer}"
        );
        assert!(mixer.contains("# TYPE grpc_io_server_server_latency histogram"), "{mixer}");
    }
    // Counters that 1.4 exposed without `_total` have samples under exactly that name.
    let (_, citadel) = e2e::http_get("10.44.0.13:15014", "/metrics");
    assert!(citadel.lines().any(|line| line.starts_with("citadel_server_csr_count ")), "{citadel}");
    let (_, galley) = e2e::http_get("10.44.0.11:15014", "/metrics");
    assert!(galley.contains("galley_validation_passed{group=\"networking.istio.io\",version=\"v1alpha3\",resource=\"virtualservices\"} "), "{galley}");
    assert!(galley.contains("istio_mcp_clients_total{component=\"galley\"} "), "{galley}");

    // 1.4's dashboards' queries, as written, answered by the demo's Prometheus.
    let queries = [
        "sum(galley_validation_passed{job=\"galley\"}) by (group, version, resource)",
        "sum(galley_istio_networking_virtualservices) / count(up{job=\"galley\"})",
        "istio_mcp_clients_total{component=\"galley\"}",
        "pilot_xds{job=\"pilot\"}",
        "pilot_services{job=\"pilot\"}",
        "citadel_server_csr_count{job=\"citadel\"}",
        "scalar(topk(1, max(mixer_config_rule_config_count) by (configID)))",
        "sum(irate(mixer_runtime_dispatches_total{adapter=~\"prometheus\"}[1m])) by (adapter)",
        "process_resident_memory_bytes{job=\"pilot\"}",
        "sum(istio_build) by (component, tag)",
        "sum(galley_runtime_state_type_instances_total) by (collection)",
        "max(pilot_conflict_inbound_listener{job=\"pilot\"})",
        "pilot_xds_eds_instances{job=\"pilot\",cluster=\"outbound|9080||reviews.default.svc.cluster.local\"}",
        "galley_runtime_strategy_timer_quiesce_reached_total",
        "sum(istio_mcp_message_sizes_bytes_bucket) by (le)",
        "citadel_secret_controller_csr_err_count",
        "sum(grpc_server_handled_total{grpc_service=\"istio.v1.auth.IstioCertificateService\"}) by (grpc_code)",
    ];
    let deadline = Instant::now() + PROMETHEUS_PATIENCE;
    loop {
        traffic(mesh, 3);
        let unanswered: Vec<&str> = queries
            .iter()
            .copied()
            .filter(|query| {
                let result = prometheus_query(query);
                // A scalar answers `[time, "value"]`, a vector a list of series.
                result.is_empty() && !scalar_answers(query)
            })
            .collect();
        if unanswered.is_empty() {
            let builds = prometheus_query("sum(istio_build) by (component, tag)");
            let components: std::collections::BTreeSet<&str> =
                builds.iter().filter_map(|series| series["metric"]["component"].as_str()).collect();
            for component in ["citadel", "galley", "mixer", "pilot"] {
                assert!(components.contains(component), "istio_build has no {component}: {components:?}");
            }
            return;
        }
        assert!(Instant::now() < deadline, "{:?}: Prometheus never answered {unanswered:#?}", mesh.plane);
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Whether a scalar query has a value (instant scalar results are not vectors).
fn scalar_answers(query: &str) -> bool {
    if !query.starts_with("scalar(") {
        return false;
    }
    let output = std::process::Command::new("curl")
        .args(["-s", "-G", "--max-time", "5", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(format!("http://{PROMETHEUS}/api/v1/query"))
        .output()
        .expect("curl runs");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    answer["data"]["result"][1].as_str().and_then(|value| value.parse::<f64>().ok()).is_some_and(f64::is_finite)
}
