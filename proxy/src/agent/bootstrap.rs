//! The Envoy v3 bootstrap the agent writes for `--binaryPath`: what 1.4's
//! `envoy_bootstrap_v2.json` template held, in today's API. ADS to the discovery address (over
//! mutual TLS with /etc/certs under MUTUAL_TLS), the admin API on loopback, the Prometheus
//! listener on 15090 (`--statsPort`) that exposes `/stats/prometheus`, the node agent's SDS socket when SDS is
//! on, and the Zipkin collector and tracer when tracing is on.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::args::{split_host_port, AddressError, AgentArgs, ControlPlaneAuthPolicy};
use super::node::NodeIdentity;

/// Cluster names the bootstrap defines (Pilot's config refers to `sds-grpc` and `zipkin`).
pub(crate) const XDS_CLUSTER: &str = "xds-grpc";
pub(crate) const SDS_CLUSTER: &str = "sds-grpc";
pub(crate) const ZIPKIN_CLUSTER: &str = "zipkin";
pub(crate) const PROMETHEUS_CLUSTER: &str = "prometheus_stats";

/// Builds the bootstrap for this node.
/// Flags a bootstrap cannot be built from.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootstrapError {
    #[error(transparent)]
    Discovery(AddressError),
    #[error("--zipkinAddress: {0}")]
    Zipkin(AddressError),
}

pub(crate) fn bootstrap(node: &NodeIdentity, args: &AgentArgs) -> Result<Value, BootstrapError> {
    let (discovery_host, discovery_port) =
        split_host_port(&args.discovery_address).map_err(BootstrapError::Discovery)?;
    let mut xds = upstream_cluster(XDS_CLUSTER, &discovery_host, discovery_port, args);
    xds["typed_extension_protocol_options"] = http2_options();
    // 1.4 lifted the circuit breakers on the xDS connection and kept it alive through NATs.
    xds["circuit_breakers"] = json!({"thresholds": [
        {"priority": "DEFAULT", "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000},
        {"priority": "HIGH", "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}
    ]});
    xds["upstream_connection_options"] = json!({"tcp_keepalive": {"keepalive_time": 300}});
    if args.control_plane_auth_policy == ControlPlaneAuthPolicy::MutualTls {
        xds["transport_socket"] = mutual_tls_to_pilot(args);
    }

    let mut clusters = vec![
        json!({
            "name": PROMETHEUS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "0.250s",
            "load_assignment": {"cluster_name": PROMETHEUS_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": socket_address("127.0.0.1", args.proxy_admin_port)}}
            ]}]}
        }),
        xds,
    ];
    if node.sds() {
        let path = args.sds_uds_path.strip_prefix("unix:").unwrap_or(&args.sds_uds_path);
        clusters.push(json!({
            "name": SDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": http2_options(),
            "load_assignment": {"cluster_name": SDS_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": path}}}}
            ]}]}
        }));
    }
    let mut bootstrap = json!({
        "node": {
            "id": node.id,
            "cluster": node.cluster,
            "metadata": Value::Object(node.metadata.clone()),
        },
        "admin": {
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/null"
            }}],
            "address": socket_address("127.0.0.1", args.proxy_admin_port),
        },
        "dynamic_resources": {
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "ads_config": {
                "api_type": if args.delta_xds { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}]
            }
        },
        "static_resources": {
            "clusters": clusters,
            "listeners": [prometheus_listener(args.stats_port)],
        },
    });
    if !args.zipkin_address.is_empty() {
        let (host, port) = split_host_port(&args.zipkin_address).map_err(BootstrapError::Zipkin)?;
        let zipkin = upstream_cluster(ZIPKIN_CLUSTER, &host, port, args);
        if let Some(clusters) = bootstrap["static_resources"]["clusters"].as_array_mut() {
            clusters.push(zipkin);
        }
        // The tracer, as 1.4's bootstrap declared it; Pilot turns tracing on per listener.
        bootstrap["tracing"] = json!({"http": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": ZIPKIN_CLUSTER,
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
                "trace_id_128bit": true,
                "shared_span_context": false
            }
        }});
    }
    if let Some(locality) = node.locality() {
        bootstrap["node"]["locality"] = locality;
    }
    Ok(bootstrap)
}

/// A cluster reaching `host:port`: STATIC for an IP, STRICT_DNS (re-resolved every
/// `--dnsRefreshRate`) for a name.
fn upstream_cluster(name: &str, host: &str, port: u16, args: &AgentArgs) -> Value {
    let is_ip = host.parse::<IpAddr>().is_ok();
    let mut cluster = json!({
        "name": name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": format!("{:.3}s", args.connect_timeout.as_secs_f64()),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket_address(host, port)}}
        ]}]}
    });
    if !is_ip {
        cluster["dns_refresh_rate"] = json!(format!("{:.3}s", args.dns_refresh_rate.as_secs_f64()));
        cluster["dns_lookup_family"] = json!("V4_ONLY");
    }
    cluster
}

fn socket_address(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

fn http2_options() -> Value {
    json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}
    }})
}

/// Mutual TLS to Pilot with the workload certificate, checking Pilot's SPIFFE name.
fn mutual_tls_to_pilot(args: &AgentArgs) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": istio_pki::files::DEFAULT_CERT_CHAIN},
                    "private_key": {"filename": istio_pki::files::DEFAULT_KEY}
                }],
                "validation_context": {
                    "trusted_ca": {"filename": istio_pki::files::DEFAULT_ROOT_CERT},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": args.pilot_san()}}]
                }
            }
        }
    })
}

/// The listener Prometheus scrapes: `:15090/stats/prometheus` forwarded to the admin API.
fn prometheus_listener(port: u16) -> Value {
    json!({
        "name": format!("0.0.0.0_{port}"),
        "address": socket_address("0.0.0.0", port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "stats",
                "codec_type": "AUTO",
                "route_config": {"virtual_hosts": [{
                    "name": "backend",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": PROMETHEUS_CLUSTER}}]
                }]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                }}]
            }
        }]}]
    })
}

#[cfg(test)]
mod tests {
    use super::super::node::Role;
    use super::*;
    use crate::agent::args::parse;

    fn build(flags: &[&str], env: &[(&str, &str)]) -> Value {
        let args = parse(&[&["proxy"], flags].concat()).expect("flags");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let node = NodeIdentity::build(Role::Sidecar, &args, &env).expect("node");
        bootstrap(&node, &args).expect("bootstrap")
    }

    /// Every generated bootstrap must be a valid Envoy v3 Bootstrap message (field names,
    /// enum values and typed configs are checked against Envoy's own descriptors).
    fn assert_valid(bootstrap: &Value) {
        let mut with_type = serde_json::Map::new();
        with_type.insert("@type".into(), json!(istio_xds::type_url::BOOTSTRAP));
        with_type.extend(bootstrap.as_object().expect("object").clone());
        istio_xds::json::any_from_json(&Value::Object(with_type)).expect("a valid v3 Bootstrap");
    }

    #[test]
    fn the_istio_locality_label_is_the_nodes_locality() {
        let bootstrap = build(
            &["--discoveryAddress", "istio-pilot.istio-system:15010"],
            &[
                ("POD_NAME", "a"),
                ("INSTANCE_IP", "10.0.0.1"),
                ("ISTIO_METAJSON_LABELS", r#"{"istio-locality":"r1.z2"}"#),
            ],
        );
        assert_valid(&bootstrap);
        assert_eq!(bootstrap["node"]["locality"], json!({"region": "r1", "zone": "z2", "sub_zone": ""}));
    }

    #[test]
    fn default_sidecar_bootstrap() {
        let bootstrap = build(
            &["--discoveryAddress", "istio-pilot.istio-system:15010", "--proxyAdminPort", "15000"],
            &[("POD_NAME", "a"), ("POD_NAMESPACE", "default"), ("INSTANCE_IP", "10.0.0.1")],
        );
        assert_valid(&bootstrap);
        assert_eq!(bootstrap["node"]["id"], "sidecar~10.0.0.1~a.default~default.svc.cluster.local");
        assert!(bootstrap["node"].get("locality").is_none());
        let clusters = bootstrap["static_resources"]["clusters"].as_array().expect("clusters");
        let names: Vec<&str> = clusters.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, [PROMETHEUS_CLUSTER, XDS_CLUSTER]);
        assert_eq!(clusters[1]["type"], "STRICT_DNS");
        assert_eq!(clusters[1]["dns_refresh_rate"], "300.000s");
        assert!(clusters[1].get("transport_socket").is_none());
        assert_eq!(bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"], 15090);
    }

    #[test]
    fn delta_xds_is_asked_for_with_the_flag() {
        let bootstrap = build(&["--deltaXds", "--discoveryAddress", "10.0.0.2:15010"], &[("INSTANCE_IP", "10.0.0.1")]);
        assert_valid(&bootstrap);
        assert_eq!(bootstrap["dynamic_resources"]["ads_config"]["api_type"], "DELTA_GRPC");
    }

    #[test]
    fn mutual_tls_sds_and_zipkin() {
        let bootstrap = build(
            &[
                "--discoveryAddress",
                "10.1.1.1:15011",
                "--controlPlaneAuthPolicy",
                "MUTUAL_TLS",
                "--zipkinAddress",
                "zipkin.istio-system:9411",
            ],
            &[("SDS_ENABLED", "true"), ("INSTANCE_IP", "10.0.0.1")],
        );
        assert_valid(&bootstrap);
        let clusters = bootstrap["static_resources"]["clusters"].as_array().expect("clusters");
        let names: Vec<&str> = clusters.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, [PROMETHEUS_CLUSTER, XDS_CLUSTER, SDS_CLUSTER, ZIPKIN_CLUSTER]);
        assert_eq!(clusters[1]["type"], "STATIC");
        let tls = &clusters[1]["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            tls["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account"
        );
        assert_eq!(
            clusters[2]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"],
            "/var/run/sds/uds_path"
        );
    }
}
