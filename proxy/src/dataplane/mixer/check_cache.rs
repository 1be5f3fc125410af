//! The client's check cache (1.4's `CheckCache`): Mixer's answer is kept under a key made of the
//! values of exactly the attributes it referenced, for as long and as many uses as it allows
//! (`valid_duration`, `valid_use_count`), so every request that agrees on those attributes is
//! answered here. A lookup tries each shape of referenced attributes seen so far.

use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::wire::referenced::Shape;
use istio_attribute::MapBag;

use super::config::{Status, INTERNAL};
use super::lru::Lru;

/// 1.4's cache size.
pub(crate) const DEFAULT_ENTRIES: usize = 10_000;

#[derive(Debug, Clone)]
struct Element {
    status: Status,
    directive: Option<mixer::RouteDirective>,
    expires: Option<Instant>,
    /// Uses left; negative: unlimited.
    uses: i32,
}

impl Element {
    fn expired(&self, now: Instant) -> bool {
        self.uses == 0 || self.expires.is_some_and(|expires| now > expires)
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cached {
    pub status: Status,
    pub directive: Option<mixer::RouteDirective>,
}

#[derive(Debug)]
pub(crate) struct CheckCache {
    entries: Lru<Element>,
    shapes: Vec<Shape>,
    fail_open: bool,
}

impl CheckCache {
    pub(crate) fn new(entries: usize, fail_open: bool) -> CheckCache {
        CheckCache { entries: Lru::new(entries), shapes: Vec::new(), fail_open }
    }

    /// The cached answer for a request, if one applies (a use is counted).
    pub(crate) fn lookup(&mut self, request: &MapBag, now: Instant) -> Option<Cached> {
        if !self.entries.enabled() {
            return None;
        }
        for shape in &self.shapes {
            let Some(signature) = shape.signature(request, "") else { continue };
            let Some(element) = self.entries.get_mut(signature) else { continue };
            if element.expired(now) {
                self.entries.remove(signature);
                return None;
            }
            if element.uses > 0 {
                element.uses -= 1;
            }
            // An UNAVAILABLE answer counts as a miss, as 1.4's did.
            if element.status.code == super::config::UNAVAILABLE {
                return None;
            }
            return Some(Cached { status: element.status.clone(), directive: element.directive.clone() });
        }
        None
    }

    /// 1.4's conversion: an INTERNAL answer is OK when failing open.
    fn convert(&self, status: Status) -> Status {
        if status.code == INTERNAL && self.fail_open {
            Status::ok()
        } else {
            status
        }
    }

    /// Keeps Mixer's answer to `request` (when its referenced attributes allow), and returns
    /// the status to act on.
    pub(crate) fn store(&mut self, request: &MapBag, response: &mixer::CheckResponse, now: Instant) -> Status {
        let Some(precondition) = &response.precondition else {
            return Status::new(3, "CheckResponse doesn't have PreconditionResult");
        };
        let status = self.convert(Status::from_proto(precondition.status.as_ref()));
        if !self.entries.enabled() {
            return status;
        }
        let referenced = precondition.referenced_attributes.clone().unwrap_or_default();
        let shape = match Shape::from_proto(&referenced, request) {
            Ok(shape) => shape,
            Err(error) => {
                tracing::debug!(%error, "check answer not cached");
                return status;
            }
        };
        let Some(signature) = shape.signature(request, "") else {
            tracing::warn!("Response referenced does not match request. Request attributes are not cached");
            return status;
        };
        if !self.shapes.contains(&shape) {
            self.shapes.push(shape);
        }
        let expires = precondition.valid_duration.as_ref().map(|d| {
            now + Duration::from_millis(
                u64::try_from(d.seconds.max(0) * 1000 + i64::from(d.nanos.max(0)) / 1_000_000).unwrap_or(0),
            )
        });
        let element = Element {
            status: status.clone(),
            directive: precondition.route_directive.clone(),
            expires,
            uses: precondition.valid_use_count,
        };
        self.entries.insert(signature, element);
        status
    }
}

#[cfg(test)]
mod tests {
    use istio_api::pb::istio::mixer::v1::check_response::PreconditionResult;
    use istio_attribute::wire::referenced::Recorder;
    use istio_attribute::{Lookup, Tracker, Value};

    use super::*;

    fn request(value: &str) -> MapBag {
        MapBag::new().with("target.service", Value::String(value.to_string().into()))
    }

    fn answer(code: i32, uses: i32, duration_ms: Option<i64>) -> mixer::CheckResponse {
        let mut recorder = Recorder::default();
        recorder.attribute("target.service", Lookup::Found);
        mixer::CheckResponse {
            precondition: Some(PreconditionResult {
                status: Some(istio_api::pb::google::rpc::Status { code, ..Default::default() }),
                valid_duration: duration_ms
                    .map(|ms| prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }),
                valid_use_count: uses,
                referenced_attributes: Some(recorder.to_proto(222)),
                route_directive: None,
            }),
            quotas: Default::default(),
        }
    }

    #[test]
    fn answers_expire_by_use_count_and_by_time() {
        let now = Instant::now();
        let mut cache = CheckCache::new(DEFAULT_ENTRIES, false);
        assert!(cache.lookup(&request("a"), now).is_none());
        cache.store(&request("a"), &answer(0, 3, None), now);
        let hits = (0..4).filter(|_| cache.lookup(&request("a"), now).is_some()).count();
        assert_eq!(hits, 3, "exactly the allowed uses");
        cache.store(&request("a"), &answer(0, 100, Some(10)), now);
        assert!(cache.lookup(&request("a"), now + Duration::from_millis(1)).is_some());
        assert!(cache.lookup(&request("a"), now + Duration::from_millis(11)).is_none());
    }

    #[test]
    fn keys_are_the_referenced_values() {
        let now = Instant::now();
        let mut cache = CheckCache::new(DEFAULT_ENTRIES, false);
        cache.store(&request("a"), &answer(7, 100, None), now);
        assert_eq!(cache.lookup(&request("a"), now).map(|c| c.status.code), Some(7));
        assert!(cache.lookup(&request("b"), now).is_none());
        cache.store(&request("b"), &answer(0, 100, None), now);
        assert_eq!(cache.lookup(&request("b"), now).map(|c| c.status.code), Some(0));
        assert_eq!(cache.lookup(&request("a"), now).map(|c| c.status.code), Some(7));
    }

    #[test]
    fn a_disabled_cache_and_fail_open_conversion() {
        let now = Instant::now();
        let mut off = CheckCache::new(0, false);
        off.store(&request("a"), &answer(0, 100, None), now);
        assert!(off.lookup(&request("a"), now).is_none());
        let mut open = CheckCache::new(10, true);
        assert_eq!(open.store(&request("a"), &answer(INTERNAL, 100, None), now), Status::ok());
        let missing = mixer::CheckResponse::default();
        assert_eq!(open.store(&request("a"), &missing, now).code, 3);
    }
}
