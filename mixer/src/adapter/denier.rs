//! `denier`: answers every check with the configured status (by default `FAILED_PRECONDITION`,
//! valid 5 s or 1000 uses), and grants no quota.

use std::time::Duration;

use async_trait::async_trait;
use istio_api::pb::adapter::denier::config::Params;

use super::api::{
    decode_params, duration, has_field, AdapterError, BuildContext, BuildError, CheckResult, Handler, QuotaArgs,
    QuotaResult,
};

/// The proto the handler\'s params decode into.
const PARAMS: &str = "adapter.denier.config.Params";
use crate::status::{Status, FAILED_PRECONDITION};
use crate::template::Instance;

#[derive(Debug)]
pub struct Denier {
    result: CheckResult,
}

pub(super) fn build(context: &BuildContext<'_>) -> Result<Denier, BuildError> {
    let params: Params = decode_params(PARAMS, context.params)?;
    let status = match (&params.status, has_field(context.params, "status", "status")) {
        (Some(status), true) => Status::from_proto(status),
        _ => Status::new(FAILED_PRECONDITION, ""),
    };
    let valid_duration = if has_field(context.params, "validDuration", "valid_duration") {
        duration(params.valid_duration.as_ref())
    } else {
        Duration::from_secs(5)
    };
    let valid_use_count =
        if has_field(context.params, "validUseCount", "valid_use_count") { params.valid_use_count } else { 1000 };
    Ok(Denier { result: CheckResult { status, valid_duration, valid_use_count } })
}

#[async_trait]
impl Handler for Denier {
    async fn check(&self, _instance: &Instance) -> Result<CheckResult, AdapterError> {
        Ok(self.result.clone())
    }

    async fn quota(&self, _instance: &Instance, _args: &QuotaArgs) -> Result<QuotaResult, AdapterError> {
        Ok(QuotaResult::granted(0, Duration::ZERO))
    }
}
