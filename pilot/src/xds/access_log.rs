//! Access logs on every HTTP connection manager and TCP proxy, when the mesh config asks for
//! them (`accessLogFile`, as the demo profile sets `/dev/stdout`): a file log in Istio 1.4's
//! text format, or `accessLogFormat` when given.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, substitution_format_string, DataSource, SubstitutionFormatString,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use prost::{Message, Name};

use super::any;
use crate::model::MeshSettings;

/// Istio 1.4's text format (`EnvoyTextLogFormat13`).
pub(crate) const ISTIO_TEXT_FORMAT: &str =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% \"%DYNAMIC_METADATA(istio.mixer:status)%\" \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" \
%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \
\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% \
%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

const FILE_LOGGER: &str = "envoy.access_loggers.file";

/// The access log the mesh config asks for, if any.
pub(crate) fn mesh_access_log(mesh: &MeshSettings) -> Option<AccessLog> {
    if mesh.access_log_file.is_empty() {
        return None;
    }
    let format =
        if mesh.access_log_format.is_empty() { ISTIO_TEXT_FORMAT.to_string() } else { mesh.access_log_format.clone() };
    let file = FileAccessLog {
        path: mesh.access_log_file.clone(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(format)),
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    Some(AccessLog {
        name: FILE_LOGGER.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(file))),
        ..Default::default()
    })
}

/// Adds the mesh's access log to every connection manager and TCP proxy of `listeners`.
pub(crate) fn add_access_logs(listeners: &mut [Listener], mesh: &MeshSettings) {
    let Some(log) = mesh_access_log(mesh) else { return };
    for listener in listeners {
        for chain in listener.filter_chains.iter_mut().chain(listener.default_filter_chain.iter_mut()) {
            add_to_chain(chain, &log);
        }
    }
}

fn add_to_chain(chain: &mut FilterChain, log: &AccessLog) {
    for network_filter in &mut chain.filters {
        let Some(filter::ConfigType::TypedConfig(config)) = &mut network_filter.config_type else { continue };
        if config.type_url == HttpConnectionManager::type_url() {
            if let Ok(mut manager) = HttpConnectionManager::decode(config.value.as_slice()) {
                if manager.access_log.is_empty() {
                    manager.access_log.push(log.clone());
                    config.value = manager.encode_to_vec();
                }
            }
        } else if config.type_url == TcpProxy::type_url() {
            if let Ok(mut proxy) = TcpProxy::decode(config.value.as_slice()) {
                if proxy.access_log.is_empty() {
                    proxy.access_log.push(log.clone());
                    config.value = proxy.encode_to_vec();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_no_log() {
        assert!(mesh_access_log(&MeshSettings::default()).is_none());
    }

    #[test]
    fn logs_are_added_to_connection_managers_and_tcp_proxies() {
        let mesh = MeshSettings { access_log_file: "/dev/stdout".into(), ..MeshSettings::default() };
        let mut listeners = vec![Listener {
            filter_chains: vec![
                FilterChain {
                    filters: vec![envoy_types::pb::envoy::config::listener::v3::Filter {
                        name: "envoy.filters.network.tcp_proxy".into(),
                        config_type: Some(filter::ConfigType::TypedConfig(any(TcpProxy::default()))),
                    }],
                    ..Default::default()
                },
                FilterChain {
                    filters: vec![envoy_types::pb::envoy::config::listener::v3::Filter {
                        name: "envoy.filters.network.http_connection_manager".into(),
                        config_type: Some(filter::ConfigType::TypedConfig(any(HttpConnectionManager::default()))),
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
        add_access_logs(&mut listeners, &mesh);
        let typed = |index: usize| match &listeners[0].filter_chains[index].filters[0].config_type {
            Some(filter::ConfigType::TypedConfig(config)) => config.value.clone(),
            _ => Vec::new(),
        };
        let proxy = TcpProxy::decode(typed(0).as_slice()).expect("tcp proxy");
        assert_eq!(proxy.access_log.len(), 1);
        let manager = HttpConnectionManager::decode(typed(1).as_slice()).expect("manager");
        let Some(access_log::ConfigType::TypedConfig(file)) = &manager.access_log[0].config_type else {
            panic!("typed")
        };
        let file = FileAccessLog::decode(file.value.as_slice()).expect("file log");
        assert_eq!(file.path, "/dev/stdout");
    }
}
