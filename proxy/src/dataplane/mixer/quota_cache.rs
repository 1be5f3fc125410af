//! The client's quota cache (1.4's `QuotaCache`): once a request's check was answered from the
//! check cache, its quotas are decided locally by each counter's prefetch, and allocations are
//! asked of Mixer in the background. Counters are keyed by the attributes Mixer's quota answer
//! referenced (with the quota's name); a new counter starts as the quota's pending element. A
//! request whose check went to Mixer asks for its quotas in the same call instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::quota_spec::Requirement;
use istio_attribute::wire::referenced::Shape;
use istio_attribute::MapBag;

use super::config::{Status, RESOURCE_EXHAUSTED, UNAVAILABLE};
use super::lru::Lru;
use super::prefetch::{Allocation, Prefetch};

/// 1.4's cache size.
pub(crate) const DEFAULT_ENTRIES: usize = 10_000;
/// A grant without a `valid_duration` lasts a minute.
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(60);

type Counter = Arc<Mutex<Prefetch>>;

fn lock(counter: &Counter) -> std::sync::MutexGuard<'_, Prefetch> {
    counter.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How one quota of a request is decided.
#[derive(Debug)]
enum Decision {
    /// Decided here; an allocation may be due for the counter (`pending`: a counter not yet
    /// keyed, to be cached under the answer's referenced attributes).
    Local { passed: bool, allocation: Option<(Counter, Allocation, bool)> },
    /// Asked of Mixer with the check (no cache): the charge, not best effort.
    Remote,
}

/// One quota of one request.
#[derive(Debug)]
pub(crate) struct Item {
    name: String,
    charge: i64,
    decision: Decision,
}

#[derive(Debug)]
pub(crate) struct QuotaCache {
    counters: Lru<Counter>,
    shapes: HashMap<String, Vec<Shape>>,
    pending: HashMap<String, Counter>,
}

impl QuotaCache {
    pub(crate) fn new(entries: usize) -> QuotaCache {
        QuotaCache { counters: Lru::new(entries), shapes: HashMap::new(), pending: HashMap::new() }
    }

    fn counter(&mut self, name: &str, request: &MapBag) -> (Counter, bool) {
        for shape in self.shapes.get(name).into_iter().flatten() {
            if let Some(signature) = shape.signature(request, name) {
                if let Some(counter) = self.counters.get_mut(signature) {
                    return (counter.clone(), false);
                }
            }
        }
        (self.pending.entry(name.to_string()).or_default().clone(), true)
    }

    /// How each of a request's quotas is decided; `use_cache` when its check was a cache hit.
    pub(crate) fn plan(
        &mut self,
        request: &MapBag,
        requirements: &[Requirement],
        use_cache: bool,
        now: Instant,
    ) -> Vec<Item> {
        requirements
            .iter()
            .map(|requirement| {
                let decision = if use_cache && self.counters.enabled() {
                    let (counter, pending) = self.counter(&requirement.quota, request);
                    let (passed, allocation) = lock(&counter).check(requirement.charge, now);
                    Decision::Local { passed, allocation: allocation.map(|allocation| (counter, allocation, pending)) }
                } else {
                    Decision::Remote
                };
                Item { name: requirement.quota.clone(), charge: requirement.charge, decision }
            })
            .collect()
    }

    /// Whether every quota was decided here (no answer needed to finish the request).
    pub(crate) fn decided(items: &[Item]) -> bool {
        items.iter().all(|item| matches!(item.decision, Decision::Local { .. }))
    }

    /// The quotas to ask Mixer for: allocations (best effort) and undecided charges.
    pub(crate) fn request_quotas(items: &[Item]) -> HashMap<String, mixer::check_request::QuotaParams> {
        items
            .iter()
            .filter_map(|item| match &item.decision {
                Decision::Remote => Some((
                    item.name.clone(),
                    mixer::check_request::QuotaParams { amount: item.charge, best_effort: false },
                )),
                Decision::Local { allocation: Some((_, allocation, _)), .. } => Some((
                    item.name.clone(),
                    mixer::check_request::QuotaParams { amount: allocation.amount, best_effort: true },
                )),
                Decision::Local { allocation: None, .. } => None,
            })
            .collect()
    }

    /// The quotas' status before Mixer answers: refusals decided here.
    pub(crate) fn local_status(items: &[Item]) -> Status {
        let refused: Vec<&str> = items
            .iter()
            .filter(|item| matches!(item.decision, Decision::Local { passed: false, .. }))
            .map(|item| item.name.as_str())
            .collect();
        exhausted(&refused)
    }

    /// Feeds Mixer's answer (`None`: the call failed) to the counters, caches new ones, and
    /// returns the quotas' status.
    pub(crate) fn answered(
        &mut self,
        request: &MapBag,
        items: &[Item],
        response: Option<&mixer::CheckResponse>,
        now: Instant,
    ) -> Status {
        let mut refused = Vec::new();
        for item in items {
            let result = response.and_then(|response| response.quotas.get(&item.name));
            if response.is_some() && result.is_none() {
                tracing::warn!("Quota response did not have quota for: {}", item.name);
            }
            match &item.decision {
                Decision::Remote => {
                    // Fail open on no answer or an unavailable quota backend.
                    let passed = result.is_none_or(|result| {
                        result.status.as_ref().is_some_and(|status| status.code == UNAVAILABLE)
                            || result.granted_amount > 0
                    });
                    if !passed {
                        refused.push(item.name.as_str());
                    }
                }
                Decision::Local { passed, allocation } => {
                    if !passed {
                        refused.push(item.name.as_str());
                    }
                    let Some((counter, allocation, pending)) = allocation else { continue };
                    let (granted, expiration) = match result {
                        Some(result) => (
                            result.granted_amount,
                            result.valid_duration.as_ref().map_or(DEFAULT_EXPIRATION, |d| {
                                Duration::from_secs(u64::try_from(d.seconds.max(0)).unwrap_or(0))
                                    + Duration::from_nanos(u64::try_from(d.nanos.max(0)).unwrap_or(0))
                            }),
                        ),
                        None => (-1, DEFAULT_EXPIRATION),
                    };
                    lock(counter).granted(*allocation, granted, expiration, now);
                    if *pending {
                        if let Some(result) = result {
                            self.keep(&item.name, request, counter, result);
                        }
                    }
                }
            }
        }
        exhausted(&refused)
    }

    /// Caches a pending counter under the attributes its quota answer referenced.
    fn keep(&mut self, name: &str, request: &MapBag, counter: &Counter, result: &mixer::check_response::QuotaResult) {
        let referenced = result.referenced_attributes.clone().unwrap_or_default();
        let Ok(shape) = Shape::from_proto(&referenced, request) else { return };
        let Some(signature) = shape.signature(request, name) else {
            tracing::warn!("Quota response referenced does not match request. Request attributes are not cached");
            return;
        };
        if self.counters.contains(signature) {
            return;
        }
        let shapes = self.shapes.entry(name.to_string()).or_default();
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
        self.counters.insert(signature, counter.clone());
        if self.pending.get(name).is_some_and(|pending| Arc::ptr_eq(pending, counter)) {
            self.pending.remove(name);
        }
    }
}

fn exhausted(names: &[&str]) -> Status {
    if names.is_empty() {
        Status::ok()
    } else {
        Status::new(RESOURCE_EXHAUSTED, format!("Quota is exhausted for: {}", names.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use istio_attribute::wire::referenced::Recorder;
    use istio_attribute::{Lookup, Tracker, Value};

    use super::*;

    fn charge() -> Vec<Requirement> {
        vec![Requirement { quota: "RequestCount".into(), charge: 1 }]
    }

    fn answer(granted: i64, user: &str) -> mixer::CheckResponse {
        let mut recorder = Recorder::default();
        recorder.attribute("source.name", Lookup::Found);
        let _ = user;
        mixer::CheckResponse {
            precondition: None,
            quotas: [(
                "RequestCount".to_string(),
                mixer::check_response::QuotaResult {
                    valid_duration: Some(prost_types::Duration { seconds: 10, nanos: 0 }),
                    granted_amount: granted,
                    status: None,
                    referenced_attributes: Some(recorder.to_proto(222)),
                },
            )]
            .into(),
        }
    }

    fn user(name: &str) -> MapBag {
        MapBag::new().with("source.name", Value::String(name.to_string().into()))
    }

    #[test]
    fn without_the_cache_the_charge_is_asked_and_judged() {
        let mut cache = QuotaCache::new(DEFAULT_ENTRIES);
        let now = Instant::now();
        let items = cache.plan(&user("a"), &charge(), false, now);
        assert!(!QuotaCache::decided(&items));
        assert_eq!(
            QuotaCache::request_quotas(&items)["RequestCount"],
            mixer::check_request::QuotaParams { amount: 1, best_effort: false }
        );
        assert_eq!(cache.answered(&user("a"), &items, Some(&answer(1, "a")), now), Status::ok());
        let items = cache.plan(&user("a"), &charge(), false, now);
        assert_eq!(
            cache.answered(&user("a"), &items, Some(&answer(0, "a")), now).message,
            "Quota is exhausted for: RequestCount"
        );
        // No answer at all: fail open.
        let items = cache.plan(&user("a"), &charge(), false, now);
        assert!(cache.answered(&user("a"), &items, None, now).is_ok());
    }

    #[test]
    fn with_the_cache_only_the_first_of_ten_passes_when_nothing_is_granted() {
        let mut cache = QuotaCache::new(DEFAULT_ENTRIES);
        let now = Instant::now();
        let mut passed = 0;
        for n in 0..10 {
            let at = now + Duration::from_millis(n * 600);
            let items = cache.plan(&user("a"), &charge(), true, at);
            assert!(QuotaCache::decided(&items));
            if QuotaCache::local_status(&items).is_ok() {
                passed += 1;
            }
            let response = answer(0, "a");
            let quotas = QuotaCache::request_quotas(&items);
            cache.answered(&user("a"), &items, (!quotas.is_empty()).then_some(&response), at);
        }
        assert_eq!(passed, 1);
    }
}
