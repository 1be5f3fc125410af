//! `noop`: allows every check for a very long time and grants every quota in full.

use std::time::Duration;

use async_trait::async_trait;

use super::api::{AdapterError, CheckResult, Handler, QuotaArgs, QuotaResult};
use crate::status::Status;
use crate::template::Instance;

/// 1.4's noop validity: a billion seconds, a billion uses.
const FOREVER: Duration = Duration::from_secs(1_000_000_000);

#[derive(Debug)]
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn check(&self, _instance: &Instance) -> Result<CheckResult, AdapterError> {
        Ok(CheckResult { status: Status::ok(), valid_duration: FOREVER, valid_use_count: 1_000_000_000 })
    }

    async fn quota(&self, _instance: &Instance, args: &QuotaArgs) -> Result<QuotaResult, AdapterError> {
        Ok(QuotaResult::granted(args.amount, FOREVER))
    }
}
