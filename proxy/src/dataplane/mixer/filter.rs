//! The `mixer` filters as Pilot configures them (1.4's `HttpClientConfig` on the connection
//! manager, `TcpClientConfig` on a filter chain), as plain settings: the client they use is
//! found by [`super::client::MixerClient::for_filter`] when traffic comes, so config parsing
//! does not reach the upstream machinery.

use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_attribute::wire::compressed::from_attributes;
use istio_attribute::MapBag;

use super::config::{ServiceSettings, Transport};

/// Which filter a client serves: each filter config has its own caches (as each 1.4 filter
/// had), kept across updates that leave it unchanged.
fn scope(config: &impl prost::Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.encode_to_vec().hash(&mut hasher);
    hasher.finish()
}

/// The HTTP filter.
#[derive(Debug)]
pub(crate) struct HttpMixer {
    pub transport: Transport,
    /// The filter config's identity, for its client's caches.
    pub scope: u64,
    pub attributes: MapBag,
    pub forward: MapBag,
    /// Gateways do not trust `x-istio-attributes` from outside.
    pub ignore_forwarded: bool,
    /// The default service's settings, for routes that carry none.
    pub default_service: ServiceSettings,
}

impl HttpMixer {
    pub(crate) fn from_proto(config: &mcc::HttpClientConfig) -> HttpMixer {
        let default_service = config
            .service_configs
            .get(&config.default_destination_service)
            .map(ServiceSettings::from_proto)
            .unwrap_or_default();
        HttpMixer {
            transport: Transport::from_proto(config.transport.as_ref()),
            scope: scope(config),
            attributes: config.mixer_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            forward: config.forward_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            ignore_forwarded: config.ignore_forwarded_attributes,
            default_service,
        }
    }
}

/// The network filter.
#[derive(Debug)]
pub(crate) struct TcpMixer {
    pub transport: Transport,
    pub scope: u64,
    pub attributes: MapBag,
    pub disable_check: bool,
    pub disable_report: bool,
    /// How often a long connection reports (1.4: every 10 s).
    pub report_interval: std::time::Duration,
}

impl TcpMixer {
    pub(crate) fn from_proto(config: &mcc::TcpClientConfig) -> TcpMixer {
        TcpMixer {
            transport: Transport::from_proto(config.transport.as_ref()),
            scope: scope(config),
            attributes: config.mixer_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            disable_check: config.disable_check_calls,
            disable_report: config.disable_report_calls,
            report_interval: config
                .report_interval
                .as_ref()
                .and_then(|interval| std::time::Duration::try_from(*interval).ok())
                .filter(|interval| !interval.is_zero())
                .unwrap_or(std::time::Duration::from_secs(10)),
        }
    }
}
