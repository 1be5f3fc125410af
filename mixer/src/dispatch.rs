//! Dispatch: what Mixer does with one request's attributes against the current table.
//!
//! Every `Check` and every report first runs the attribute generators (`kubernetesenv`), whose
//! outputs fill in attributes the request lacks (never overriding what the proxy sent). A check then calls every check handler whose rule
//! matches and combines their answers (the first refusal's code; every refusal's message as
//! `handler:message`; the shortest validity), adds the rules' header operations to an allowed
//! request, and asks the quota handlers for each quota the caller wants. The attributes looked
//! at along the way are recorded so the caller can cache the answer.

use std::time::Duration;

use istio_attribute::bag::Layered;
use istio_attribute::wire::referenced::Recorder;
use istio_attribute::{Bag, Lookup, MapBag, NoTracking, Tracker};

use crate::adapter::api::{CheckResult, QuotaArgs, QuotaResult};
use crate::metrics::Metrics;
use crate::status::{self, Status};
use crate::table::{Routes, Table};
use crate::template::{Variety, KUBERNETES_OUTPUT_PREFIX};

/// `HeaderOperationTemplate.Operation.REMOVE`.
const REMOVE_OPERATION: i32 = 1;

/// What a check with nothing to say answers: allowed for a minute or 10000 uses.
pub const DEFAULT_VALID_DURATION: Duration = Duration::from_secs(60);
pub const DEFAULT_VALID_USE_COUNT: i32 = 10_000;

/// A header operation for the caller to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOp {
    pub name: String,
    pub value: String,
    /// REPLACE 0, REMOVE 1, APPEND 2.
    pub operation: i32,
}

/// What the caller should do with an allowed request's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDirective {
    pub request: Vec<HeaderOp>,
    pub response: Vec<HeaderOp>,
}

/// A quota the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRequest {
    pub name: String,
    pub amount: i64,
    pub best_effort: bool,
}

/// The answer to a check.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub status: Status,
    pub valid_duration: Duration,
    pub valid_use_count: i32,
    pub directive: Option<RouteDirective>,
    pub referenced: Recorder,
    pub quotas: Vec<(String, QuotaOutcome)>,
}

/// The answer to one quota.
#[derive(Debug, Clone)]
pub struct QuotaOutcome {
    pub result: QuotaResult,
    pub referenced: Recorder,
}

/// A request Mixer could not process (gRPC `INTERNAL` in 1.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("preprocessing attributes failed: {0}")]
    Preprocess(String),
    #[error("performing check operation failed: {0}")]
    Check(String),
    #[error("{0}")]
    Report(String),
}

/// Records lookups, except of attributes only the generators produced (the caller did not
/// send them, so its cache cannot key on them).
struct RequestOnly<'a> {
    recorder: &'a mut Recorder,
    generated: &'a MapBag,
    request: &'a dyn Bag,
}

impl RequestOnly<'_> {
    fn generated_only(&self, name: &str) -> bool {
        self.generated.contains(name) && self.request.get(name).is_none()
    }
}

impl Tracker for RequestOnly<'_> {
    fn attribute(&mut self, name: &str, lookup: Lookup) {
        if !self.generated_only(name) {
            self.recorder.attribute(name, lookup);
        }
    }

    fn map_key(&mut self, map: &str, key: &str, present: bool) {
        if !self.generated_only(map) {
            self.recorder.map_key(map, key, present);
        }
    }
}

/// The namespace whose rules apply: the destination's for a server-side proxy (`inbound`, the
/// default), the source's for a client-side one. The lookups are tracked: the answer depends
/// on them.
pub fn identity_namespace(bag: &dyn Bag, tracker: &mut dyn Tracker) -> String {
    let mut read = |name: &str| {
        let value = bag.get(name);
        tracker.attribute(name, if value.is_some() { Lookup::Found } else { Lookup::Absent });
        value.and_then(|value| value.as_str().map(str::to_string))
    };
    let kind = read("context.reporter.kind").unwrap_or_else(|| "inbound".to_string());
    let attribute = match kind.as_str() {
        "inbound" => "destination.namespace",
        "outbound" => "source.namespace",
        _ => return String::new(),
    };
    read(attribute).unwrap_or_default()
}

fn errors_text(errors: &[String]) -> String {
    match errors {
        [one] => format!("1 error occurred:\n\t* {one}\n\n"),
        many => {
            let listed: String = many.iter().map(|error| format!("\n\t* {error}")).collect();
            format!("{} errors occurred:{listed}\n\n", many.len())
        }
    }
}

/// Dispatches requests against a table.
pub struct Dispatcher<'t> {
    pub table: &'t Table,
    pub metrics: &'t Metrics,
}

impl Dispatcher<'_> {
    /// Runs the attribute generators of `routes`; their outputs, mapped by each instance's
    /// bindings, as a bag to fill in what the request lacks.
    pub async fn preprocess(
        &self,
        routes: &Routes,
        request: &dyn Bag,
        tracker: &mut dyn Tracker,
    ) -> Result<MapBag, DispatchError> {
        let mut generated = MapBag::new();
        let mut errors = Vec::new();
        let mut counted = PerRequest::default();
        for destination in routes.for_variety(Variety::AttributeGenerator) {
            let mut reached = false;
            for group in &destination.groups {
                if !matches(group.condition.as_deref(), request, tracker) {
                    continue;
                }
                for builder in &group.instances {
                    let instance = match builder.build(request, tracker) {
                        Ok(instance) => instance,
                        Err(error) => {
                            errors.push(error);
                            continue;
                        }
                    };
                    counted.instance(&mut reached);
                    let started = std::time::Instant::now();
                    let outputs = match destination.handler.handler.generate(&instance).await {
                        Ok(outputs) => {
                            self.metrics.dispatched(&destination.handler, destination.template, false, started);
                            outputs
                        }
                        Err(error) => {
                            self.metrics.dispatched(&destination.handler, destination.template, true, started);
                            errors.push(error.to_string());
                            continue;
                        }
                    };
                    let mut prefixed = MapBag::new();
                    for (name, value) in outputs.sorted() {
                        prefixed.set(format!("{KUBERNETES_OUTPUT_PREFIX}{name}"), value.clone());
                    }
                    for (attribute, expression) in &builder.bindings {
                        let bag = Layered { top: &prefixed, bottom: request };
                        match expression.evaluate(&bag, &mut NoTracking) {
                            Ok(value) => generated.set(attribute.clone(), value.into_owned()),
                            Err(error) => {
                                errors.push(format!("evaluation failed at [{}]'{attribute}': '{error}'", builder.name))
                            }
                        }
                    }
                }
            }
        }
        counted.record(self.metrics);
        if errors.is_empty() {
            Ok(generated)
        } else {
            Err(DispatchError::Preprocess(errors_text(&errors)))
        }
    }

    /// A check, and the quotas asked for with it.
    pub async fn check(
        &self,
        request: &dyn Bag,
        quotas: &[QuotaRequest],
        deduplication_id: &str,
    ) -> Result<CheckOutcome, DispatchError> {
        let mut recorder = Recorder::default();
        let namespace = identity_namespace(request, &mut recorder);
        let routes = self.table.routes(&namespace);
        let generated = self.preprocess(routes, request, &mut recorder).await?;
        let after_preprocess = recorder.clone();
        // Generated attributes fill in what the request lacks; they never override it.
        let bag = Layered { top: request, bottom: &generated };
        let namespace = {
            let mut tracker = RequestOnly { recorder: &mut recorder, generated: &generated, request };
            identity_namespace(&bag, &mut tracker)
        };
        let routes = self.table.routes(&namespace);

        let mut combined: Option<CheckResult> = None;
        let mut refusals: Vec<String> = Vec::new();
        let mut first_code = status::OK;
        let mut errors = Vec::new();
        {
            let mut tracker = RequestOnly { recorder: &mut recorder, generated: &generated, request };
            let mut counted = PerRequest::default();
            for destination in routes.for_variety(Variety::Check) {
                let mut reached = false;
                for group in &destination.groups {
                    if !matches(group.condition.as_deref(), &bag, &mut tracker) {
                        continue;
                    }
                    for builder in &group.instances {
                        let instance = match builder.build(&bag, &mut tracker) {
                            Ok(instance) => instance,
                            Err(error) => {
                                tracing::warn!(destination = %destination.handler.name, %error, "error creating instance");
                                errors.push(error);
                                continue;
                            }
                        };
                        counted.instance(&mut reached);
                        let started = std::time::Instant::now();
                        let result = match destination.handler.handler.check(&instance).await {
                            Ok(result) => {
                                self.metrics.dispatched(&destination.handler, destination.template, false, started);
                                result
                            }
                            Err(error) => {
                                self.metrics.dispatched(&destination.handler, destination.template, true, started);
                                errors.push(error.to_string());
                                continue;
                            }
                        };
                        if result.is_none() {
                            continue;
                        }
                        if !result.status.is_ok() {
                            if first_code == status::OK {
                                first_code = result.status.code;
                            }
                            refusals.push(format!("{}:{}", destination.handler.name, result.status.message));
                        }
                        combined = Some(match combined {
                            None => result,
                            Some(mut so_far) => {
                                so_far.valid_duration = so_far.valid_duration.min(result.valid_duration);
                                so_far.valid_use_count = so_far.valid_use_count.min(result.valid_use_count);
                                so_far
                            }
                        });
                    }
                }
            }
            counted.record(self.metrics);
        }
        if !errors.is_empty() {
            return Err(DispatchError::Check(errors_text(&errors)));
        }
        let (mut valid_duration, mut valid_use_count) = match &combined {
            Some(result) => (result.valid_duration, result.valid_use_count),
            None => (DEFAULT_VALID_DURATION, DEFAULT_VALID_USE_COUNT),
        };
        let status = if first_code == status::OK { Status::ok() } else { Status::new(first_code, refusals.join(", ")) };

        let mut directive = None;
        if status.is_ok() {
            let mut tracker = RequestOnly { recorder: &mut recorder, generated: &generated, request };
            let found = directives(routes, &bag, &mut tracker);
            if found != RouteDirective::default() {
                if combined.is_none() {
                    (valid_duration, valid_use_count) = (DEFAULT_VALID_DURATION, DEFAULT_VALID_USE_COUNT);
                }
                directive = Some(found);
            }
        }

        let mut quota_outcomes = Vec::new();
        if status.is_ok() {
            for quota in quotas {
                let mut quota_recorder = after_preprocess.clone();
                let args = QuotaArgs {
                    quota: quota.name.clone(),
                    amount: quota.amount,
                    best_effort: quota.best_effort,
                    deduplication_id: format!("{deduplication_id}{}", quota.name),
                };
                let result = {
                    let mut tracker = RequestOnly { recorder: &mut quota_recorder, generated: &generated, request };
                    self.quota(routes, &bag, &args, &mut tracker).await
                };
                let result = result.unwrap_or_else(|error| {
                    tracing::warn!(quota = %quota.name, %error, "quota dispatch failed");
                    QuotaResult { status: Status::ok(), amount: 0, valid_duration: Duration::ZERO }
                });
                quota_outcomes.push((quota.name.clone(), QuotaOutcome { result, referenced: quota_recorder }));
            }
        }
        Ok(CheckOutcome {
            status,
            valid_duration,
            valid_use_count,
            directive,
            referenced: recorder,
            quotas: quota_outcomes,
        })
    }

    async fn quota(
        &self,
        routes: &Routes,
        bag: &dyn Bag,
        args: &QuotaArgs,
        tracker: &mut dyn Tracker,
    ) -> Result<QuotaResult, String> {
        let unlimited = QuotaResult::granted(args.amount, DEFAULT_VALID_DURATION);
        for destination in routes.for_variety(Variety::Quota) {
            for group in &destination.groups {
                for builder in &group.instances {
                    if !builder.short_name().eq_ignore_ascii_case(&args.quota) {
                        continue;
                    }
                    // A rule whose condition does not hold exempts the request.
                    if !matches(group.condition.as_deref(), bag, tracker) {
                        return Ok(unlimited);
                    }
                    let instance = builder.build(bag, tracker)?;
                    let started = std::time::Instant::now();
                    let result = destination.handler.handler.quota(&instance, args).await;
                    self.metrics.dispatched(&destination.handler, destination.template, result.is_err(), started);
                    let mut result = result.map_err(|error| error.to_string())?;
                    if !result.status.is_ok() {
                        result.status.message = format!("{}:{}", destination.handler.name, result.status.message);
                    }
                    return Ok(result);
                }
            }
        }
        tracing::warn!("Requested quota '{}' is not configured", args.quota);
        Ok(unlimited)
    }

    /// A report of one attribute set: the generators, then every report handler that matches.
    pub async fn report(&self, request: &dyn Bag) -> Result<(), DispatchError> {
        let routes = self.table.routes(&identity_namespace(request, &mut NoTracking));
        let generated = self.preprocess(routes, request, &mut NoTracking).await?;
        let bag = Layered { top: request, bottom: &generated };
        let routes = self.table.routes(&identity_namespace(&bag, &mut NoTracking));
        let mut errors = Vec::new();
        let mut counted = PerRequest::default();
        for destination in routes.for_variety(Variety::Report) {
            let mut instances = Vec::new();
            for group in &destination.groups {
                if !matches(group.condition.as_deref(), &bag, &mut NoTracking) {
                    continue;
                }
                for builder in &group.instances {
                    match builder.build(&bag, &mut NoTracking) {
                        Ok(instance) => instances.push(instance),
                        Err(error) => errors.push(error),
                    }
                }
            }
            if instances.is_empty() {
                continue;
            }
            counted.destinations += 1;
            counted.instances += instances.len();
            let started = std::time::Instant::now();
            let result = destination.handler.handler.report(&instances).await;
            self.metrics.dispatched(&destination.handler, destination.template, result.is_err(), started);
            if let Err(error) = result {
                errors.push(error.to_string());
            }
        }
        counted.record(self.metrics);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DispatchError::Report(errors_text(&errors)))
        }
    }
}

/// Handlers reached and instances built by one dispatch, for 1.4's per-request histograms.
#[derive(Default)]
struct PerRequest {
    destinations: usize,
    instances: usize,
}

impl PerRequest {
    /// An instance built for a destination; `reached` marks the destination counted.
    fn instance(&mut self, reached: &mut bool) {
        self.instances += 1;
        if !*reached {
            *reached = true;
            self.destinations += 1;
        }
    }

    fn record(&self, metrics: &Metrics) {
        metrics.per_request(self.destinations, self.instances);
    }
}

/// Whether a group's condition holds; one that fails to evaluate does not.
fn matches(condition: Option<&istio_attribute::Compiled>, bag: &dyn Bag, tracker: &mut dyn Tracker) -> bool {
    let Some(condition) = condition else { return true };
    match condition.evaluate_bool(bag, tracker) {
        Ok(result) => result,
        Err(error) => {
            tracing::debug!(expression = condition.text(), %error, "input set condition evaluation error");
            false
        }
    }
}

/// The header operations of every rule that matches; values that fail or are empty are skipped.
fn directives(routes: &Routes, bag: &dyn Bag, tracker: &mut dyn Tracker) -> RouteDirective {
    let mut directive = RouteDirective::default();
    for group in &routes.directives {
        if !matches(group.condition.as_deref(), bag, tracker) {
            continue;
        }
        for (operations, out) in [(&group.request, &mut directive.request), (&group.response, &mut directive.response)]
        {
            for operation in operations {
                // REMOVE has no value; REPLACE and APPEND without values do nothing.
                if operation.operation == REMOVE_OPERATION {
                    out.push(HeaderOp {
                        name: operation.name.clone(),
                        value: String::new(),
                        operation: operation.operation,
                    });
                    continue;
                }
                for value in &operation.values {
                    match value.evaluate_string(bag, tracker) {
                        Ok(text) if !text.is_empty() => out.push(HeaderOp {
                            name: operation.name.clone(),
                            value: text.into_owned(),
                            operation: operation.operation,
                        }),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(rule = %group.rule, %error, "Failed to evaluate header value"),
                    }
                }
            }
        }
    }
    directive
}
