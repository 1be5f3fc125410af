//! How Pilot tells Mixer, through a stock Envoy's `ext_authz` filter, what 1.4's `mixer` filter
//! would have known: the route's `ServiceConfig` (the `mixer_attributes` Pilot sets —
//! `destination.uid`, `destination.service.host`, `context.reporter.kind`, … — the quota specs
//! bound to the service, and the fail policy), carried as a per-route context extension. The
//! network `ext_authz` filter has no context extensions: there the same value travels as the
//! check call's gRPC metadata ([`SERVICE_CONFIG_METADATA`]), set in the filter's gRPC service.

use base64::Engine;
use istio_api::pb::istio::mixer::v1::config::client::ServiceConfig;
use istio_api::pb::istio::mixer::v1::Attributes;
use prost::Message;

/// The context extension that holds the base64 of a serialized `ServiceConfig`.
pub const SERVICE_CONFIG_EXTENSION: &str = "istio.mixer.service_config";

/// The gRPC metadata entry (the network filter's `initial_metadata`) with the same value.
pub const SERVICE_CONFIG_METADATA: &str = "x-istio-mixer-service-config";

/// A context extension that is not a `ServiceConfig`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceConfigError {
    #[error("context extension {SERVICE_CONFIG_EXTENSION} is not base64: {0}")]
    Base64(String),
    #[error("context extension {SERVICE_CONFIG_EXTENSION} is not a ServiceConfig: {0}")]
    Proto(String),
}

/// `ServiceConfig`'s attribute fields, encoded by [`canonical_bytes`] itself.
const MIXER_ATTRIBUTES_FIELD: u32 = 3;
const FORWARD_ATTRIBUTES_FIELD: u32 = 8;

/// The extension's value for `config`: the same config always gives the same text, so the
/// listeners and routes that carry it change only when it does.
pub fn encode_service_config(config: &ServiceConfig) -> String {
    base64::engine::general_purpose::STANDARD.encode(canonical_bytes(config))
}

/// `config`'s protobuf encoding with the attributes in name order. A prost map encodes in its
/// hash order, which differs from one map to the next; map entries are repeated fields, so the
/// attributes are written one entry at a time, sorted, after the other fields.
fn canonical_bytes(config: &ServiceConfig) -> Vec<u8> {
    let mut rest = config.clone();
    let mixer = rest.mixer_attributes.take();
    let forward = rest.forward_attributes.take();
    let mut bytes = rest.encode_to_vec();
    for (field, attributes) in [(MIXER_ATTRIBUTES_FIELD, mixer), (FORWARD_ATTRIBUTES_FIELD, forward)] {
        let Some(attributes) = attributes else { continue };
        let mut names: Vec<&String> = attributes.attributes.keys().collect();
        names.sort();
        let mut inner = Vec::new();
        for name in names {
            let entry =
                Attributes { attributes: [(name.clone(), attributes.attributes[name].clone())].into_iter().collect() };
            inner.extend(entry.encode_to_vec());
        }
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(inner.len() as u64, &mut bytes);
        bytes.extend(inner);
    }
    bytes
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
    fn equal_configs_encode_alike() {
        use istio_api::pb::istio::mixer::v1::attributes::{attribute_value, AttributeValue};
        let text = |value: &str| AttributeValue { value: Some(attribute_value::Value::StringValue(value.into())) };
        let names: Vec<String> = (0..12).map(|index| format!("attribute.{index}")).collect();
        let config = |order: &mut dyn Iterator<Item = &String>| ServiceConfig {
            mixer_attributes: Some(Attributes { attributes: order.map(|name| (name.clone(), text(name))).collect() }),
            forward_attributes: Some(Attributes { attributes: [("source.uid".to_string(), text("x"))].into() }),
            disable_report_calls: true,
            ..Default::default()
        };
        let forwards = config(&mut names.iter());
        let backwards = config(&mut names.iter().rev());
        assert_eq!(encode_service_config(&forwards), encode_service_config(&backwards));
        assert_eq!(decode_service_config(&encode_service_config(&forwards)).unwrap(), forwards);
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let config = ServiceConfig { disable_check_calls: true, ..Default::default() };
        assert_eq!(decode_service_config(&encode_service_config(&config)), Ok(config));
        assert!(matches!(decode_service_config("!!"), Err(ServiceConfigError::Base64(_))));
        assert!(matches!(decode_service_config("AAAA"), Err(ServiceConfigError::Proto(_))));
    }
}
