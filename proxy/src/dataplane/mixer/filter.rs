//! The `mixer` filters as Pilot configures them (1.4's `HttpClientConfig` on the connection
//! manager, `TcpClientConfig` on a filter chain), each bound to the shared client of its
//! check cluster.

use std::sync::Arc;

use istio_api::pb::istio::mixer::v1::config::client as mcc;
use istio_attribute::wire::compressed::from_attributes;
use istio_attribute::MapBag;

use super::client::MixerClient;
use super::config::{ServiceSettings, Transport};

/// The HTTP filter.
#[derive(Debug)]
pub(crate) struct HttpMixer {
    pub client: Arc<MixerClient>,
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
            client: MixerClient::shared(Transport::from_proto(config.transport.as_ref())),
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
    pub client: Arc<MixerClient>,
    pub attributes: MapBag,
    pub disable_check: bool,
}

impl TcpMixer {
    pub(crate) fn from_proto(config: &mcc::TcpClientConfig) -> TcpMixer {
        TcpMixer {
            client: MixerClient::shared(Transport::from_proto(config.transport.as_ref())),
            attributes: config.mixer_attributes.as_ref().map(from_attributes).unwrap_or_default(),
            disable_check: config.disable_check_calls,
        }
    }
}
