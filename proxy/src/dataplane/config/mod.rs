//! Envoy v3 resources compiled into the data plane's own model. Compiling is where bad config
//! is caught: every error names the resource and the field, and the xDS client NACKs the whole
//! update with it while the last good config keeps serving.

pub(crate) mod cluster;
pub(crate) mod listener;
pub(crate) mod matcher;
pub(crate) mod route;
pub(crate) mod route_match;
pub(crate) mod tls_source;

use std::time::Duration;

/// A resource the data plane cannot apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError { field: field.to_string(), reason: reason.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The longest duration the data plane uses (ten years): longer ones mean "never" anyway, and
/// capping them keeps deadline arithmetic from overflowing.
const LONGEST: u64 = 10 * 365 * 24 * 3600;

/// A protobuf duration as a std one (negative values become zero, huge ones ten years).
pub(crate) fn duration(value: &envoy_types::pb::google::protobuf::Duration) -> Duration {
    let seconds = u64::try_from(value.seconds).unwrap_or(0).min(LONGEST);
    let nanos = u32::try_from(value.nanos).unwrap_or(0);
    Duration::new(seconds, nanos)
}
