//! `istio.mixer.v1.Mixer`: `Check` and `Report` over gRPC, as 1.4's proxies call them. Requests
//! carry compressed attributes; a check's answer carries the attributes it looked at, encoded
//! with the caller's dictionary, so the caller can cache it.

use std::sync::Arc;
use std::time::Duration;

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::batch::{check_global_word_count, decode_report, Element};
use istio_attribute::wire::compressed::{decode_lenient, proto_duration};
use istio_attribute::MapBag;
use tonic::{Request, Response, Status as GrpcStatus};

use crate::dispatch::{CheckOutcome, Dispatcher, QuotaRequest, RouteDirective};
use crate::metrics::Metrics;
use crate::table::SharedTable;

/// The Mixer service over the current table.
#[derive(Clone)]
pub struct MixerService {
    pub table: SharedTable,
    pub metrics: Arc<Metrics>,
}

fn duration(value: Duration) -> prost_types::Duration {
    proto_duration(i64::try_from(value.as_nanos()).unwrap_or(i64::MAX))
}

fn directive_proto(directive: &RouteDirective) -> mixer::RouteDirective {
    let operations = |ops: &[crate::dispatch::HeaderOp]| {
        ops.iter()
            .map(|op| mixer::HeaderOperation {
                name: op.name.clone(),
                value: op.value.clone(),
                operation: op.operation,
            })
            .collect()
    };
    mixer::RouteDirective {
        request_header_operations: operations(&directive.request),
        response_header_operations: operations(&directive.response),
        direct_response_code: 0,
        direct_response_body: String::new(),
    }
}

/// The wire answer to a check, referenced attributes in the caller's dictionary.
pub fn check_response(outcome: &CheckOutcome, global_word_count: u32) -> mixer::CheckResponse {
    let count = usize::try_from(global_word_count).unwrap_or(usize::MAX);
    let precondition = mixer::check_response::PreconditionResult {
        status: Some(outcome.status.to_proto()),
        valid_duration: Some(duration(outcome.valid_duration)),
        valid_use_count: outcome.valid_use_count,
        referenced_attributes: Some(outcome.referenced.to_proto(count)),
        route_directive: outcome.directive.as_ref().map(directive_proto),
    };
    let quotas = outcome
        .quotas
        .iter()
        .map(|(name, quota)| {
            let result = mixer::check_response::QuotaResult {
                valid_duration: Some(duration(quota.result.valid_duration)),
                granted_amount: quota.result.amount,
                status: Some(quota.result.status.to_proto()),
                referenced_attributes: Some(quota.referenced.to_proto(count)),
            };
            (name.clone(), result)
        })
        .collect();
    mixer::CheckResponse { precondition: Some(precondition), quotas }
}

impl MixerService {
    /// Runs a check on decoded attributes (also what ext_authz and istioctl's local checks use).
    pub async fn check_bag(
        &self,
        bag: &MapBag,
        quotas: &[QuotaRequest],
        deduplication_id: &str,
    ) -> Result<CheckOutcome, GrpcStatus> {
        self.metrics.checks.inc();
        let table = self.table.load_full();
        let dispatcher = Dispatcher { table: &table, metrics: &self.metrics };
        dispatcher.check(bag, quotas, deduplication_id).await.map_err(|error| GrpcStatus::internal(error.to_string()))
    }
}

#[tonic::async_trait]
impl mixer::mixer_server::Mixer for MixerService {
    async fn check(&self, request: Request<mixer::CheckRequest>) -> Result<Response<mixer::CheckResponse>, GrpcStatus> {
        let request = request.into_inner();
        check_global_word_count(request.global_word_count).map_err(|error| GrpcStatus::internal(error.to_string()))?;
        let attributes = request.attributes.unwrap_or_default();
        let (bag, problems) = decode_lenient(&attributes, &attributes.words);
        for problem in problems {
            tracing::warn!(%problem, "check attribute left out");
        }
        let mut quotas: Vec<QuotaRequest> = request
            .quotas
            .iter()
            .map(|(name, params)| QuotaRequest {
                name: name.clone(),
                amount: params.amount,
                best_effort: params.best_effort,
            })
            .collect();
        quotas.sort_by(|a, b| a.name.cmp(&b.name));
        let outcome = self.check_bag(&bag, &quotas, &request.deduplication_id).await?;
        Ok(Response::new(check_response(&outcome, request.global_word_count)))
    }

    async fn report(
        &self,
        request: Request<mixer::ReportRequest>,
    ) -> Result<Response<mixer::ReportResponse>, GrpcStatus> {
        let request = request.into_inner();
        let mut elements = decode_report(&request).map_err(|error| GrpcStatus::internal(error.to_string()))?;
        let table = self.table.load_full();
        let dispatcher = Dispatcher { table: &table, metrics: &self.metrics };
        let mut errors = Vec::new();
        while let Some(element) = elements.next_element() {
            self.metrics.reports.inc();
            match element {
                Element::Decoded { bag, problems } => {
                    for problem in problems {
                        tracing::warn!(%problem, "report attribute left out");
                    }
                    if let Err(error) = dispatcher.report(bag).await {
                        errors.push(error.to_string());
                    }
                }
                Element::Invalid(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(Response::new(mixer::ReportResponse {}))
        } else {
            Err(GrpcStatus::unknown(errors.join("\n")))
        }
    }
}
