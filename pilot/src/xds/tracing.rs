//! Tracing and traffic direction on the listeners, as 1.4 set them: every HTTP connection
//! manager traces a share of requests (`PILOT_TRACE_SAMPLING`, a percentage) when the mesh
//! config's `enableTracing` is on — the tracer itself (Zipkin) comes from the proxy's bootstrap
//! — and each listener says whether it carries inbound or outbound traffic, which decides the
//! kind of span a proxy reports.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use prost::{Message, Name};

use super::VIRTUAL_INBOUND;
use crate::model::MeshSettings;
use crate::node::ProxyKind;

/// Sets `traffic_direction` on each listener and, with tracing on, sampling on each connection manager.
pub(crate) fn add_tracing(listeners: &mut [Listener], mesh: &MeshSettings, kind: ProxyKind) {
    for listener in listeners {
        let inbound = kind == ProxyKind::Sidecar && listener.name == VIRTUAL_INBOUND;
        listener.traffic_direction =
            if inbound { TrafficDirection::Inbound as i32 } else { TrafficDirection::Outbound as i32 };
        if !mesh.enable_tracing {
            continue;
        }
        for chain in listener.filter_chains.iter_mut().chain(listener.default_filter_chain.iter_mut()) {
            for network_filter in &mut chain.filters {
                let Some(filter::ConfigType::TypedConfig(config)) = &mut network_filter.config_type else { continue };
                if config.type_url != HttpConnectionManager::type_url() {
                    continue;
                }
                let Ok(mut manager) = HttpConnectionManager::decode(config.value.as_slice()) else { continue };
                if manager.tracing.is_none() {
                    manager.tracing = Some(http_connection_manager::Tracing {
                        random_sampling: Some(Percent { value: mesh.trace_sampling }),
                        ..Default::default()
                    });
                    config.value = manager.encode_to_vec();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain};

    fn listener(name: &str) -> Listener {
        Listener {
            name: name.into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(super::super::any(
                        HttpConnectionManager::default(),
                    ))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn sampling(listener: &Listener) -> Option<f64> {
        let Some(filter::ConfigType::TypedConfig(config)) = &listener.filter_chains[0].filters[0].config_type else {
            return None;
        };
        let manager = HttpConnectionManager::decode(config.value.as_slice()).ok()?;
        manager.tracing.and_then(|tracing| tracing.random_sampling).map(|percent| percent.value)
    }

    #[test]
    fn direction_and_sampling() {
        let mesh = MeshSettings { trace_sampling: 100.0, ..MeshSettings::default() };
        let mut listeners = vec![listener(VIRTUAL_INBOUND), listener("0.0.0.0_9080")];
        add_tracing(&mut listeners, &mesh, ProxyKind::Sidecar);
        assert_eq!(listeners[0].traffic_direction, TrafficDirection::Inbound as i32);
        assert_eq!(listeners[1].traffic_direction, TrafficDirection::Outbound as i32);
        assert_eq!(sampling(&listeners[1]), Some(100.0));

        let off = MeshSettings { enable_tracing: false, ..MeshSettings::default() };
        let mut listeners = vec![listener("0.0.0.0_80")];
        add_tracing(&mut listeners, &off, ProxyKind::Router);
        assert_eq!(sampling(&listeners[0]), None);
    }
}
