//! Quota prefetch (1.4's `QuotaPrefetch`): tokens are asked of Mixer ahead of need, in amounts
//! that follow the recent request rate, and spent locally; a request never waits for Mixer.
//! The first request for a new counter passes on an optimistic allotment while the first
//! allocation is in flight; when Mixer grants less than asked, the allotment shrinks to the
//! grant and the counter stops prefetching eagerly (CLOSE) for a while.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Requests are counted over this window (in 20 buckets) to size allocations.
const PREDICT_WINDOW: Duration = Duration::from_millis(1000);
const BUCKETS: u32 = 20;
const MIN_PREFETCH: i64 = 10;
/// After a short grant, how long before asking again.
const CLOSE_WAIT: Duration = Duration::from_millis(500);
/// How long optimistic and fail-open tokens last.
const OPTIMISTIC_EXPIRY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Slot {
    available: i64,
    expires: Instant,
    id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Close,
}

/// An allocation to ask Mixer for (best effort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub amount: i64,
    /// The optimistic slot added for it, if any.
    slot: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Prefetch {
    slots: VecDeque<Slot>,
    buckets: VecDeque<(Instant, i64)>,
    mode: Mode,
    last_prefetch: Option<Instant>,
    in_flight: bool,
    next_id: u64,
}

impl Default for Prefetch {
    fn default() -> Prefetch {
        Prefetch {
            slots: VecDeque::new(),
            buckets: VecDeque::new(),
            mode: Mode::Open,
            last_prefetch: None,
            in_flight: false,
            next_id: 1,
        }
    }
}

impl Prefetch {
    fn available(&self, now: Instant) -> i64 {
        self.slots.iter().filter(|slot| slot.expires >= now).map(|slot| slot.available).sum()
    }

    fn recent_requests(&mut self, now: Instant) -> i64 {
        while self.buckets.front().is_some_and(|(at, _)| now.duration_since(*at) >= PREDICT_WINDOW) {
            self.buckets.pop_front();
        }
        self.buckets.iter().map(|(_, count)| count).sum()
    }

    fn count(&mut self, amount: i64, now: Instant) {
        let bucket = PREDICT_WINDOW / BUCKETS;
        match self.buckets.back_mut() {
            Some((at, count)) if now.duration_since(*at) < bucket => *count += amount,
            _ => self.buckets.push_back((now, amount)),
        }
    }

    fn attempt_prefetch(&mut self, amount: i64, now: Instant) -> Option<Allocation> {
        if self.mode == Mode::Close
            && (self.in_flight || self.last_prefetch.is_some_and(|at| now.duration_since(at) < CLOSE_WAIT))
        {
            return None;
        }
        let available = self.available(now);
        let desired = self.recent_requests(now).max(MIN_PREFETCH);
        if !((available < desired / 2 && !self.in_flight) || available < amount) {
            return None;
        }
        let requested = amount.max(desired);
        let mut slot = None;
        if available == 0 && self.mode == Mode::Open {
            let id = self.next_id;
            self.next_id += 1;
            self.slots.push_back(Slot { available: requested, expires: now + OPTIMISTIC_EXPIRY, id });
            slot = Some(id);
        }
        self.in_flight = true;
        self.last_prefetch = Some(now);
        Some(Allocation { amount: requested, slot })
    }

    fn consume(&mut self, mut amount: i64, now: Instant) {
        while amount > 0 {
            let Some(front) = self.slots.front_mut() else { break };
            if front.expires < now || front.available == 0 {
                self.slots.pop_front();
                continue;
            }
            let taken = front.available.min(amount);
            front.available -= taken;
            amount -= taken;
            if front.available == 0 {
                self.slots.pop_front();
            }
        }
    }

    /// Whether `amount` may pass now, and an allocation to ask for if one is due.
    pub(crate) fn check(&mut self, amount: i64, now: Instant) -> (bool, Option<Allocation>) {
        let allocation = self.attempt_prefetch(amount, now);
        self.count(amount, now);
        self.slots.retain(|slot| slot.expires >= now && slot.available > 0);
        let pass = self.available(now) >= amount;
        if pass {
            self.consume(amount, now);
        }
        (pass, allocation)
    }

    /// Mixer's answer to an allocation: `granted` (negative: the call failed, treated as a full
    /// grant, failing open) valid for `expiration`.
    pub(crate) fn granted(&mut self, allocation: Allocation, granted: i64, expiration: Duration, now: Instant) {
        self.in_flight = false;
        let (granted, expiration) =
            if granted < 0 { (allocation.amount, OPTIMISTIC_EXPIRY) } else { (granted, expiration) };
        match allocation.slot {
            Some(id) => {
                let mut shortfall = allocation.amount - granted;
                if let Some(slot) = self.slots.iter_mut().find(|slot| slot.id == id) {
                    let taken = slot.available.min(shortfall);
                    slot.available -= taken;
                    shortfall -= taken;
                    if slot.available > 0 {
                        slot.expires = now + expiration;
                    }
                }
                for slot in self.slots.iter_mut() {
                    if shortfall <= 0 {
                        break;
                    }
                    let taken = slot.available.min(shortfall);
                    slot.available -= taken;
                    shortfall -= taken;
                }
                self.slots.retain(|slot| slot.available > 0);
            }
            None if granted > 0 => {
                let id = self.next_id;
                self.next_id += 1;
                self.slots.push_back(Slot { available: granted, expires: now + expiration, id });
            }
            None => {}
        }
        self.mode = if granted == allocation.amount { Mode::Open } else { Mode::Close };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_grant_shrinks_the_optimistic_allotment() {
        // 1.4's case: the server allows 5; Check(1) passes and prefetches 10, granted 5 → 4
        // left; Check(5) fails without asking again; Check(4) passes.
        let now = Instant::now();
        let mut prefetch = Prefetch::default();
        let (pass, allocation) = prefetch.check(1, now);
        assert!(pass);
        let allocation = allocation.expect("prefetches");
        assert_eq!(allocation.amount, 10);
        prefetch.granted(allocation, 5, Duration::from_secs(1), now);
        let later = now + Duration::from_millis(1);
        let (pass, allocation) = prefetch.check(5, later);
        assert!(!pass);
        assert!(allocation.is_none(), "CLOSE mode waits before asking again");
        assert!(prefetch.check(4, later).0);
    }

    #[test]
    fn the_memquota_sample_passes_two_then_refuses() {
        // Mixer allows 2 in the window; best-effort allocations get what is left.
        let now = Instant::now();
        let mut prefetch = Prefetch::default();
        let mut left = 2;
        let mut passed = Vec::new();
        for n in 0..4 {
            let at = now + Duration::from_millis(n * 10);
            let (pass, allocation) = prefetch.check(1, at);
            if let Some(allocation) = allocation {
                let granted = allocation.amount.min(left);
                left -= granted;
                prefetch.granted(allocation, granted, Duration::from_secs(5), at);
            }
            passed.push(pass);
        }
        assert_eq!(passed, [true, true, false, false]);
    }

    #[test]
    fn a_failed_allocation_fails_open() {
        let now = Instant::now();
        let mut prefetch = Prefetch::default();
        let (_, allocation) = prefetch.check(1, now);
        prefetch.granted(allocation.expect("prefetches"), -1, Duration::ZERO, now);
        assert!((0..9).all(|_| prefetch.check(1, now).0));
    }
}
