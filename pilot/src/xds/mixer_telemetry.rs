//! Mixer reports for a stock Envoy. 1.4's `mixer` filter reported every request and connection
//! to `mixerReportServer`; a proxy that does not announce the filter gets Envoy's gRPC access
//! loggers instead, streaming to the same cluster over Envoy's access log service, which Mixer
//! serves and maps to 1.4's attributes. The log name says whether the inbound or the outbound
//! side wrote the entry (`istio_attribute::access_log`); the proxy's identity is the stream's
//! node. HTTP entries follow `disableMixerHttpReports`, as the filter's reports did.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::ApiVersion;
use envoy_types::pb::envoy::config::listener::v3::{filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig, TcpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use istio_attribute::access_log::{INBOUND_LOG, OUTBOUND_LOG, REQUEST_HEADERS, RESPONSE_HEADERS};
use prost::{Message, Name};

use super::mixer::{grpc_to, http_reports_disabled, report_cluster};

/// 1.4's in-proxy stats plugin (telemetry v2).
const STATS_PLUGIN: &str = "envoy.wasm.stats";
use super::{any, VIRTUAL_INBOUND};
use crate::model::PushContext;
use crate::node::Proxy;

const HTTP_LOGGER: &str = "envoy.access_loggers.http_grpc";
const TCP_LOGGER: &str = "envoy.access_loggers.tcp_grpc";

/// How often Envoy flushes buffered entries (1.4's report batches waited up to a second).
const FLUSH_INTERVAL_SECONDS: i64 = 1;

fn common(log_name: &str, cluster: &str) -> CommonGrpcAccessLogConfig {
    CommonGrpcAccessLogConfig {
        log_name: log_name.to_string(),
        grpc_service: Some(grpc_to(cluster)),
        transport_api_version: ApiVersion::V3 as i32,
        buffer_flush_interval: Some(super::seconds(FLUSH_INTERVAL_SECONDS)),
        ..Default::default()
    }
}

fn http_log(log_name: &str, cluster: &str) -> AccessLog {
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(common(log_name, cluster)),
        additional_request_headers_to_log: REQUEST_HEADERS.iter().map(|name| (*name).to_string()).collect(),
        additional_response_headers_to_log: RESPONSE_HEADERS.iter().map(|name| (*name).to_string()).collect(),
        additional_response_trailers_to_log: RESPONSE_HEADERS.iter().map(|name| (*name).to_string()).collect(),
    };
    AccessLog {
        name: HTTP_LOGGER.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

fn tcp_log(log_name: &str, cluster: &str) -> AccessLog {
    let config = TcpGrpcAccessLogConfig { common_config: Some(common(log_name, cluster)) };
    AccessLog {
        name: TCP_LOGGER.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

/// Adds the report loggers to every connection manager and TCP proxy of a stock Envoy's
/// listeners, when the mesh has a report server. Call after the mesh's file access log is
/// added, which only goes where there is no log yet.
pub(crate) fn add_report_logs(listeners: &mut [Listener], push: &PushContext, proxy: &Proxy) {
    if proxy.mixer_filter {
        return;
    }
    let Some(cluster) = report_cluster(push) else { return };
    // `disableMixerHttpReports` comes with 1.4's in-proxy stats; a proxy that cannot run them
    // (their EnvoyFilter is withheld from it) keeps reporting to Mixer.
    let filters =
        super::config_patch::matching::applicable(&push.envoy_filter_patches, &push.mesh.root_namespace, proxy);
    let stats_withheld = super::config_patch::matching::withholds_plugin(&filters, proxy, STATS_PLUGIN);
    let http_reports = !http_reports_disabled(push) || stats_withheld;
    for listener in listeners {
        let log_name = if listener.name == VIRTUAL_INBOUND { INBOUND_LOG } else { OUTBOUND_LOG };
        let http = http_reports.then(|| http_log(log_name, &cluster));
        let tcp = tcp_log(log_name, &cluster);
        for chain in listener.filter_chains.iter_mut().chain(listener.default_filter_chain.iter_mut()) {
            add_to_chain(chain, http.as_ref(), &tcp);
        }
    }
}

fn add_to_chain(chain: &mut FilterChain, http: Option<&AccessLog>, tcp: &AccessLog) {
    for network_filter in &mut chain.filters {
        let Some(filter::ConfigType::TypedConfig(config)) = &mut network_filter.config_type else { continue };
        if config.type_url == HttpConnectionManager::type_url() {
            let Some(http) = http else { continue };
            if let Ok(mut manager) = HttpConnectionManager::decode(config.value.as_slice()) {
                manager.access_log.push(http.clone());
                config.value = manager.encode_to_vec();
            }
        } else if config.type_url == TcpProxy::type_url() {
            if let Ok(mut proxy) = TcpProxy::decode(config.value.as_slice()) {
                proxy.access_log.push(tcp.clone());
                config.value = proxy.encode_to_vec();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3::Filter;

    use super::*;
    use crate::model::MixerSettings;
    use crate::testing::{push, reviews, sidecar};

    fn listener(name: &str, config: envoy_types::pb::google::protobuf::Any) -> Listener {
        Listener {
            name: name.to_string(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter { name: "f".into(), config_type: Some(filter::ConfigType::TypedConfig(config)) }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn logs(listener: &Listener) -> Vec<AccessLog> {
        let Some(filter::ConfigType::TypedConfig(config)) = &listener.filter_chains[0].filters[0].config_type else {
            panic!("typed")
        };
        match HttpConnectionManager::decode(config.value.as_slice()) {
            Ok(manager) if config.type_url == HttpConnectionManager::type_url() => manager.access_log,
            _ => TcpProxy::decode(config.value.as_slice()).expect("tcp proxy").access_log,
        }
    }

    #[test]
    fn stock_envoys_stream_reports_with_the_side_as_log_name() {
        let mut push = push(reviews(), vec![]);
        let envoy = sidecar("default", "10.1.0.21", &[("app", "reviews")]);
        let fresh = || {
            vec![
                listener(VIRTUAL_INBOUND, any(HttpConnectionManager::default())),
                listener("0.0.0.0_9080", any(HttpConnectionManager::default())),
                listener("10.0.0.1_27017", any(TcpProxy::default())),
            ]
        };
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &envoy);
        assert!(logs(&listeners[0]).is_empty(), "no report server, no reports");

        push.mesh.mixer = MixerSettings {
            report_server: "istio-telemetry.istio-system.svc.cluster.local:9091".into(),
            ..Default::default()
        };
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &envoy);
        let name_of = |log: &AccessLog| {
            let Some(access_log::ConfigType::TypedConfig(config)) = &log.config_type else { panic!("typed") };
            let common = match log.name.as_str() {
                HTTP_LOGGER => HttpGrpcAccessLogConfig::decode(config.value.as_slice()).expect("http").common_config,
                _ => TcpGrpcAccessLogConfig::decode(config.value.as_slice()).expect("tcp").common_config,
            }
            .expect("common");
            let Some(envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(grpc)) =
                common.grpc_service.and_then(|service| service.target_specifier)
            else {
                panic!("envoy grpc")
            };
            (log.name.clone(), common.log_name, grpc.cluster_name)
        };
        let cluster = "outbound|9091||istio-telemetry.istio-system.svc.cluster.local".to_string();
        assert_eq!(name_of(&logs(&listeners[0])[0]), (HTTP_LOGGER.into(), INBOUND_LOG.into(), cluster.clone()));
        assert_eq!(name_of(&logs(&listeners[1])[0]), (HTTP_LOGGER.into(), OUTBOUND_LOG.into(), cluster.clone()));
        assert_eq!(name_of(&logs(&listeners[2])[0]), (TCP_LOGGER.into(), OUTBOUND_LOG.into(), cluster));

        push.mesh.mixer.disable_http_reports = true;
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &envoy);
        assert!(logs(&listeners[1]).is_empty(), "disableMixerHttpReports");
        assert_eq!(logs(&listeners[2]).len(), 1, "TCP reports stay");

        // With 1.4's telemetry v2 stats filter, which a stock Envoy cannot run, it keeps reporting.
        let stats_filter =
            "{applyTo: HTTP_FILTER, match: {context: SIDECAR_OUTBOUND}, patch: {operation: INSERT_BEFORE,
            value: {name: envoy.filters.http.wasm, config: {config: {root_id: stats_outbound, configuration: '{}',
              vm_config: {runtime: envoy.wasm.runtime.null, code: {inline_string: envoy.wasm.stats}}}}}}}";
        let root = push.mesh.root_namespace.clone();
        push.envoy_filter_patches =
            vec![std::sync::Arc::new(crate::xds::config_patch::prepared::tests::envoy_filter(&root, &[stats_filter]))];
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &envoy);
        assert_eq!(logs(&listeners[1]).len(), 1, "an Envoy without the stats plugin keeps HTTP reports");
        let mut with_stats = envoy.clone();
        with_stats.null_vm_plugins.insert(STATS_PLUGIN.to_string());
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &with_stats);
        assert!(logs(&listeners[1]).is_empty(), "a proxy running the stats plugin does not");
        push.envoy_filter_patches.clear();

        let mut builtin = envoy.clone();
        builtin.mixer_filter = true;
        let mut listeners = fresh();
        add_report_logs(&mut listeners, &push, &builtin);
        assert!(logs(&listeners[2]).is_empty(), "the built-in proxy reports through its mixer filter");
    }
}
