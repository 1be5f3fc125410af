//! `memquota`: quotas counted in Mixer's memory. A quota with a `validDuration` is a rate limit
//! over a rolling window of 100 ms ticks (at most `maxAmount` granted in any `validDuration`);
//! one without is a plain counter that callers release by asking for negative amounts. Each
//! distinct set of dimension values has its own counter; the first override whose dimensions all
//! match picks the limit. A repeated deduplication id gets the answer it got before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use istio_api::pb::adapter::memquota::config::Params;
use istio_attribute::{value::ip_from_bytes, OwnedValue, Value};

use super::api::{
    decode_params, duration, has_field, AdapterError, BuildContext, BuildError, Handler, QuotaArgs, QuotaResult,
};

/// The proto the handler\'s params decode into.
const PARAMS: &str = "adapter.memquota.config.Params";
use crate::template::Instance;

const TICK: Duration = Duration::from_millis(100);

/// A limit: how much, over how long (zero: no window, a plain counter).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    pub(crate) max_amount: i64,
    pub(crate) valid_duration: Duration,
}

#[derive(Debug, Clone)]
struct Quota {
    limit: Limit,
    /// `(dimensions, limit)` in order; the first whose dimensions all match wins.
    overrides: Vec<(BTreeMap<String, String>, Limit)>,
}

/// A rolling window: amounts granted per tick, newest last.
#[derive(Debug)]
struct Window {
    capacity: i64,
    ticks: usize,
    slots: std::collections::VecDeque<(u64, i64)>,
    used: i64,
}

impl Window {
    fn new(limit: &Limit) -> Window {
        let seconds = limit.valid_duration.as_secs_f64().ceil().max(1.0);
        // Sub-second windows round up to a second, as 1.4's did.
        let ticks = (seconds as usize) * 10;
        Window { capacity: limit.max_amount, ticks, slots: std::collections::VecDeque::new(), used: 0 }
    }

    fn roll(&mut self, tick: u64) {
        let oldest = tick.saturating_sub(self.ticks as u64 - 1);
        while let Some((at, amount)) = self.slots.front().copied() {
            if at >= oldest {
                break;
            }
            self.used -= amount;
            self.slots.pop_front();
        }
    }

    fn allocate(&mut self, tick: u64, amount: i64, best_effort: bool) -> i64 {
        self.roll(tick);
        let available = self.capacity - self.used;
        let granted = if amount <= available {
            amount
        } else if best_effort {
            available.max(0)
        } else {
            0
        };
        if granted > 0 {
            self.used += granted;
            match self.slots.back_mut() {
                Some((at, slot)) if *at == tick => *slot += granted,
                _ => self.slots.push_back((tick, granted)),
            }
        }
        granted
    }

    fn release(&mut self, tick: u64, mut amount: i64) -> i64 {
        self.roll(tick);
        let mut released = 0;
        while amount > 0 {
            let Some((_, slot)) = self.slots.back_mut() else { break };
            let taken = (*slot).min(amount);
            *slot -= taken;
            amount -= taken;
            released += taken;
            self.used -= taken;
            if *slot == 0 {
                self.slots.pop_back();
            }
        }
        released
    }
}

#[derive(Debug, Default)]
struct Counters {
    windows: HashMap<String, Window>,
    plain: HashMap<String, i64>,
    /// Answers by deduplication id, this generation and the one before.
    recent: HashMap<String, (i64, Instant)>,
    older: HashMap<String, (i64, Instant)>,
    rotated_at: Option<Instant>,
}

#[derive(Debug)]
pub struct MemQuota {
    quotas: HashMap<String, Quota>,
    dedup_window: Duration,
    counters: Mutex<Counters>,
    started: Instant,
}

pub(super) fn build(context: &BuildContext<'_>) -> Result<Arc<MemQuota>, BuildError> {
    let params: Params = decode_params(PARAMS, context.params)?;
    let dedup_window = if has_field(context.params, "minDeduplicationDuration", "min_deduplication_duration") {
        duration(params.min_deduplication_duration.as_ref())
    } else {
        Duration::from_secs(1)
    };
    if dedup_window.is_zero() {
        return Err(BuildError::Invalid(vec![(
            "minDeduplicationDuration".to_string(),
            format!("deduplication window of {} is invalid, must be > 0", istio_duration::format(dedup_window)),
        )]));
    }
    let mut quotas = HashMap::new();
    for quota in &params.quotas {
        let limit = Limit { max_amount: quota.max_amount, valid_duration: duration(quota.valid_duration.as_ref()) };
        let overrides = quota
            .overrides
            .iter()
            .map(|o| {
                let dimensions = o.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                (dimensions, Limit { max_amount: o.max_amount, valid_duration: duration(o.valid_duration.as_ref()) })
            })
            .collect();
        quotas.insert(quota.name.clone(), Quota { limit, overrides });
    }
    for instance in context.instances {
        if !quotas.contains_key(&*instance.name) {
            return Err(BuildError::Instantiation(format!("did not find limit defined for quota {}", instance.name)));
        }
    }
    Ok(Arc::new(MemQuota { quotas, dedup_window, counters: Mutex::new(Counters::default()), started: Instant::now() }))
}

/// Whether an instance's dimension value is the override's text (compared in its own type).
pub(crate) fn dimension_matches(value: Option<&OwnedValue>, wanted: &str) -> bool {
    match value {
        None => wanted.is_empty(),
        Some(Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text)) => {
            text == wanted
        }
        Some(Value::Int64(number)) => wanted.parse::<i64>().is_ok_and(|parsed| parsed == *number),
        Some(Value::Double(number)) => wanted.parse::<f64>().is_ok_and(|parsed| parsed == *number),
        Some(Value::Bool(flag)) => wanted.parse::<bool>().is_ok_and(|parsed| parsed == *flag),
        Some(Value::Duration(nanos)) => {
            istio_duration::parse_signed_nanos(wanted).is_some_and(|parsed| parsed == i128::from(*nanos))
        }
        Some(Value::Timestamp(at)) => {
            istio_attribute::Timestamp::parse_rfc3339(wanted).is_some_and(|parsed| parsed == *at)
        }
        Some(Value::IpAddress(bytes) | Value::Bytes(bytes)) => ip_from_bytes(bytes)
            .map(istio_attribute::value::canonical_ip)
            .is_some_and(|address| address.to_string() == wanted),
        Some(Value::StringMap(map)) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort();
            let text: Vec<String> = entries.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.join("&") == wanted
        }
    }
}

/// The counter key of an instance: its name and every dimension value, sorted by dimension.
pub(crate) fn counter_key(name: &str, dimensions: &BTreeMap<&str, &OwnedValue>) -> String {
    let mut key = name.to_string();
    for (dimension, value) in dimensions {
        key.push(';');
        key.push_str(dimension);
        key.push('=');
        match value {
            Value::StringMap(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort();
                for (k, v) in entries {
                    key.push_str(k);
                    key.push_str(v);
                }
            }
            other => key.push_str(&other.to_string()),
        }
    }
    key
}

impl MemQuota {
    fn tick(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_millis() / TICK.as_millis()) as u64
    }

    fn limit_for<'q>(quota: &'q Quota, dimensions: &BTreeMap<&str, &OwnedValue>) -> &'q Limit {
        quota
            .overrides
            .iter()
            .find(|(wanted, _)| {
                wanted.iter().all(|(key, text)| dimension_matches(dimensions.get(key.as_str()).copied(), text))
            })
            .map_or(&quota.limit, |(_, limit)| limit)
    }

    fn allocate(&self, instance: &Instance, args: &QuotaArgs, now: Instant) -> QuotaResult {
        let Some(quota) = self.quotas.get(&*instance.name) else { return QuotaResult::granted(0, Duration::ZERO) };
        let dimensions = instance.map_field("dimensions");
        let limit = Self::limit_for(quota, &dimensions).clone();
        let key = counter_key(&instance.name, &dimensions);
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two generations of ids: one window old at most, and the one before.
        match counters.rotated_at.map(|at| now.duration_since(at)) {
            Some(elapsed) if elapsed < self.dedup_window => {}
            Some(elapsed) if elapsed < self.dedup_window * 2 => {
                counters.older = std::mem::take(&mut counters.recent);
                counters.rotated_at = Some(now);
            }
            _ => {
                counters.older.clear();
                counters.recent.clear();
                counters.rotated_at = Some(now);
            }
        }
        if !args.deduplication_id.is_empty() {
            let previous =
                counters.recent.get(&args.deduplication_id).or_else(|| counters.older.get(&args.deduplication_id));
            if let Some((amount, expires)) = previous.copied() {
                return QuotaResult::granted(amount, expires.saturating_duration_since(now));
            }
        }
        let tick = self.tick(now);
        let (amount, valid_duration) = if args.amount == 0 {
            (0, Duration::ZERO)
        } else if limit.valid_duration.is_zero() {
            let used = counters.plain.entry(key.clone()).or_insert(0);
            if args.amount > 0 {
                let available = limit.max_amount - *used;
                let granted = if args.amount <= available {
                    args.amount
                } else if args.best_effort {
                    available.max(0)
                } else {
                    0
                };
                *used += granted;
                (granted, Duration::ZERO)
            } else {
                let freed = args.amount.checked_neg().unwrap_or(i64::MAX).min(*used);
                *used -= freed;
                if *used == 0 {
                    counters.plain.remove(&key);
                }
                (freed, Duration::ZERO)
            }
        } else {
            let window = counters.windows.entry(key.clone()).or_insert_with(|| Window::new(&limit));
            if args.amount > 0 {
                let granted = window.allocate(tick, args.amount, args.best_effort);
                (granted, if granted > 0 { limit.valid_duration } else { Duration::ZERO })
            } else {
                let freed = window.release(tick, args.amount.checked_neg().unwrap_or(i64::MAX));
                if window.used == 0 {
                    counters.windows.remove(&key);
                }
                (freed, Duration::ZERO)
            }
        };
        if !args.deduplication_id.is_empty() {
            counters.recent.insert(args.deduplication_id.clone(), (amount, now + valid_duration));
        }
        QuotaResult::granted(amount, valid_duration)
    }
}

#[async_trait]
impl Handler for MemQuota {
    async fn quota(&self, instance: &Instance, args: &QuotaArgs) -> Result<QuotaResult, AdapterError> {
        Ok(self.allocate(instance, args, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::{InstanceBuilder, Template};

    fn sample_params() -> serde_json::Value {
        json!({"quotas": [{
            "name": "requestcountquota.instance.istio-system",
            "maxAmount": 500,
            "validDuration": "1s",
            "overrides": [
                {"dimensions": {"destination": "reviews"}, "maxAmount": 1, "validDuration": "5s"},
                {"dimensions": {"destination": "productpage", "source": "10.28.11.20"}, "maxAmount": 500, "validDuration": "1s"},
                {"dimensions": {"destination": "productpage"}, "maxAmount": 2, "validDuration": "5s"},
            ],
        }]})
    }

    fn memquota(params: &serde_json::Value, instances: &[Arc<InstanceBuilder>]) -> Result<Arc<MemQuota>, BuildError> {
        let environment = crate::env::Environment::default();
        build(&BuildContext { handler: "quotahandler.istio-system", params, instances, environment: &environment })
    }

    fn instance(dimensions: &[(&str, &str)]) -> Instance {
        Instance {
            name: "requestcountquota.instance.istio-system".into(),
            template: Template::Quota,
            fields: dimensions
                .iter()
                .map(|(k, v)| (format!("dimensions.{k}").into(), Value::String(v.to_string().into())))
                .collect(),
        }
    }

    fn ask(id: &str) -> QuotaArgs {
        QuotaArgs { quota: "requestcountquota".into(), amount: 1, best_effort: false, deduplication_id: id.into() }
    }

    #[test]
    fn the_first_matching_override_limits_each_dimension_set() {
        let quota = memquota(&sample_params(), &[]).expect("builds");
        let start = Instant::now();
        let page = instance(&[("destination", "productpage"), ("source", "10.0.0.1")]);
        let granted: Vec<i64> = (0..4).map(|n| quota.allocate(&page, &ask(&format!("a{n}")), start).amount).collect();
        assert_eq!(granted, [1, 1, 0, 0]);
        // Another client has its own counter; the special source has 500.
        let other = instance(&[("destination", "productpage"), ("source", "10.0.0.2")]);
        assert_eq!(quota.allocate(&other, &ask("b"), start).amount, 1);
        let special = instance(&[("destination", "productpage"), ("source", "10.28.11.20")]);
        assert!((0..10).all(|n| quota.allocate(&special, &ask(&format!("s{n}")), start).amount == 1));
        // The window rolls: five seconds later there is room again.
        let later = start + Duration::from_millis(5100);
        let result = quota.allocate(&page, &ask("c"), later);
        assert_eq!((result.amount, result.valid_duration), (1, Duration::from_secs(5)));
    }

    #[test]
    fn a_repeated_deduplication_id_gets_the_same_answer() {
        let quota = memquota(&sample_params(), &[]).expect("builds");
        let now = Instant::now();
        let reviews = instance(&[("destination", "reviews")]);
        assert_eq!(quota.allocate(&reviews, &ask("same"), now).amount, 1);
        assert_eq!(quota.allocate(&reviews, &ask("same"), now).amount, 1, "a retry is not charged again");
        assert_eq!(quota.allocate(&reviews, &ask("next"), now).amount, 0);
    }

    #[test]
    fn counters_without_a_window_are_released_by_negative_amounts() {
        let params = json!({"quotas": [{"name": "q.instance.ns", "maxAmount": 2}]});
        let quota = memquota(&params, &[]).expect("builds");
        let q = Instance { name: "q.instance.ns".into(), template: Template::Quota, fields: BTreeMap::new() };
        let now = Instant::now();
        let mut args = QuotaArgs { quota: "q".into(), amount: 2, best_effort: false, deduplication_id: String::new() };
        assert_eq!(quota.allocate(&q, &args, now).amount, 2);
        assert_eq!(quota.allocate(&q, &args, now).amount, 0);
        args.amount = -1;
        assert_eq!(quota.allocate(&q, &args, now).amount, 1);
        args.amount = 2;
        args.best_effort = true;
        assert_eq!(quota.allocate(&q, &args, now).amount, 1);
    }

    #[test]
    fn an_instance_without_a_limit_is_refused() {
        let types = std::collections::HashMap::<&str, istio_attribute::ValueType>::new();
        let builder = InstanceBuilder::new(
            "requestcountquota.instance.istio-system",
            Template::Quota,
            &json!({}),
            &serde_json::Value::Null,
            &types,
        )
        .expect("compiles");
        let params = json!({"quotas": [{"name": "other.instance.istio-system", "maxAmount": 1}]});
        let error = memquota(&params, &[Arc::new(builder)]).expect_err("no limit");
        assert_eq!(
            error.to_string(),
            "adapter instantiation error: did not find limit defined for quota requestcountquota.instance.istio-system"
        );
        let error = memquota(&json!({"minDeduplicationDuration": "0s"}), &[]).expect_err("zero window");
        assert!(error.to_string().contains("deduplication window of 0s is invalid, must be > 0"), "{error}");
    }
}
