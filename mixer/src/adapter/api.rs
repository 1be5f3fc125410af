//! What adapters and the rest of Mixer share: the handler interface (check, quota, generate,
//! report), the results handlers give, what a handler is built from, and helpers for reading
//! adapter params.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use istio_attribute::MapBag;
use serde_json::Value as Json;

use crate::env::Environment;
use crate::status::Status;
use crate::template::{Instance, InstanceBuilder};

/// A check adapter's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub status: Status,
    pub valid_duration: Duration,
    pub valid_use_count: i32,
}

impl CheckResult {
    /// The answer that says nothing (status OK, no validity): "no opinion".
    pub fn none() -> CheckResult {
        CheckResult { status: Status::ok(), valid_duration: Duration::ZERO, valid_use_count: 0 }
    }

    pub fn is_none(&self) -> bool {
        *self == CheckResult::none()
    }
}

/// What a quota request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaArgs {
    pub quota: String,
    pub amount: i64,
    pub best_effort: bool,
    /// Repeats of one request (retries) carry the same id and get the same answer.
    pub deduplication_id: String,
}

/// A quota adapter's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaResult {
    pub status: Status,
    pub amount: i64,
    pub valid_duration: Duration,
}

impl QuotaResult {
    pub fn granted(amount: i64, valid_duration: Duration) -> QuotaResult {
        QuotaResult { status: Status::ok(), amount, valid_duration }
    }
}

/// A handler that failed at request time (Mixer answers `INTERNAL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AdapterError(pub String);

/// A built handler.
#[async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// A check template's instance.
    async fn check(&self, instance: &Instance) -> Result<CheckResult, AdapterError> {
        Err(AdapterError(format!("template {} is not supported", instance.template.name())))
    }

    /// A quota instance.
    async fn quota(&self, instance: &Instance, args: &QuotaArgs) -> Result<QuotaResult, AdapterError> {
        let _ = args;
        Err(AdapterError(format!("template {} is not supported", instance.template.name())))
    }

    /// An attribute generator's instance: the output fields by name.
    async fn generate(&self, instance: &Instance) -> Result<MapBag, AdapterError> {
        Err(AdapterError(format!("template {} is not supported", instance.template.name())))
    }

    /// Report instances (the policy adapters ignore them).
    async fn report(&self, instances: &[Instance]) -> Result<(), AdapterError> {
        let _ = instances;
        Ok(())
    }
}

/// A batch handled instance by instance: the failures, joined, fail it; the rest was handled.
pub(crate) fn each_handled(failures: impl IntoIterator<Item = String>) -> Result<(), AdapterError> {
    let failures: Vec<String> = failures.into_iter().collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AdapterError(failures.join("; ")))
    }
}

/// What an adapter is built from.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The handler's runtime name (`quotahandler.istio-system`).
    pub handler: &'a str,
    /// The handler's params (JSON, as written).
    pub params: &'a Json,
    /// Every instance the rules route to this handler.
    pub instances: &'a [Arc<InstanceBuilder>],
    /// Where `kubernetesenv` finds pods.
    pub environment: &'a Environment,
}

/// A handler whose config is wrong: `field: message` entries, as 1.4 listed them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("adapter validation failed : {}", render(.0))]
    Invalid(Vec<(String, String)>),
    #[error("adapter instantiation error: {0}")]
    Instantiation(String),
}

fn render(errors: &[(String, String)]) -> String {
    errors.iter().map(|(field, message)| format!("{field}: {message}")).collect::<Vec<_>>().join("; ")
}

/// Decodes an adapter's params, refusing unknown fields with the decoder's message.
pub(crate) fn decode_params<T: prost::Message + Default>(proto: &str, params: &Json) -> Result<T, BuildError> {
    let params = if params.is_null() { Json::Object(Default::default()) } else { params.clone() };
    istio_api::json::decode(proto, &params)
        .map_err(|error| BuildError::Invalid(vec![("params".to_string(), error.to_string())]))
}

/// Whether the params (as written) set a field (by its JSON or proto name).
pub(crate) fn has_field(params: &Json, json_name: &str, proto_name: &str) -> bool {
    params.get(json_name).is_some() || params.get(proto_name).is_some()
}

/// A protobuf duration as a std duration (negative ones as zero).
pub(crate) fn duration(value: Option<&prost_types::Duration>) -> Duration {
    value
        .map(|d| {
            let nanos = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
            Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
        })
        .unwrap_or_default()
}
