//! Rules for `networking.istio.io/v1alpha3`: VirtualService, DestinationRule, Gateway,
//! ServiceEntry, Sidecar and EnvoyFilter, following Istio 1.4's checks and messages.

use istio_api::json::JsonError;
use istio_api::kinds::Kind;

mod destination_rule;
mod envoy_filter;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;

use destination_rule::destination_rule;
pub(crate) use destination_rule::locality_lb_setting;
use envoy_filter::envoy_filter;
use gateway::gateway;
use service_entry::service_entry;
use sidecar::sidecar;
use virtual_service::virtual_service;

use super::report::{typed, Report};

pub(super) fn validate(kind: &Kind, spec: &serde_json::Value, report: &mut Report) -> Result<(), JsonError> {
    match kind.kind {
        "VirtualService" => virtual_service(&typed(kind, spec)?, report),
        "DestinationRule" => destination_rule(&typed(kind, spec)?, report),
        "Gateway" => gateway(&typed(kind, spec)?, report),
        "ServiceEntry" => service_entry(&typed(kind, spec)?, report),
        "Sidecar" => sidecar(&typed(kind, spec)?, report),
        "EnvoyFilter" => envoy_filter(&typed(kind, spec)?, report),
        _ => {}
    }
    Ok(())
}
