//! How Pilot tells Mixer, through a stock Envoy's `ext_authz` filter, what 1.4's `mixer` filter
//! would have known: the route's `ServiceConfig` (the `mixer_attributes` Pilot sets —
//! `destination.uid`, `destination.service.host`, `context.reporter.kind`, … — the quota specs
//! bound to the service, and the fail policy), carried as a per-route context extension.

use base64::Engine;
use istio_api::pb::istio::mixer::v1::config::client::ServiceConfig;
use prost::Message;

/// The context extension that holds the base64 of a serialized `ServiceConfig`.
pub const SERVICE_CONFIG_EXTENSION: &str = "istio.mixer.service_config";

/// A context extension that is not a `ServiceConfig`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceConfigError {
    #[error("context extension {SERVICE_CONFIG_EXTENSION} is not base64: {0}")]
    Base64(String),
    #[error("context extension {SERVICE_CONFIG_EXTENSION} is not a ServiceConfig: {0}")]
    Proto(String),
}

/// The extension's value for `config`.
pub fn encode_service_config(config: &ServiceConfig) -> String {
    base64::engine::general_purpose::STANDARD.encode(config.encode_to_vec())
}

/// The `ServiceConfig` an extension's value holds.
pub fn decode_service_config(text: &str) -> Result<ServiceConfig, ServiceConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| ServiceConfigError::Base64(error.to_string()))?;
    ServiceConfig::decode(bytes.as_slice()).map_err(|error| ServiceConfigError::Proto(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let config = ServiceConfig { disable_check_calls: true, ..Default::default() };
        assert_eq!(decode_service_config(&encode_service_config(&config)), Ok(config));
        assert!(matches!(decode_service_config("!!"), Err(ServiceConfigError::Base64(_))));
        assert!(matches!(decode_service_config("AAAA"), Err(ServiceConfigError::Proto(_))));
    }
}
