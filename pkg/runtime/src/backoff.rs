//! The one backoff every reconnect and restart loop uses: exponential, capped, optionally with
//! jitter, built on backon. A stream to a peer (Galley over MCP, Pilot over xDS, an SDS server)
//! waits longer after each failed attempt and starts over once connected; a supervisor (the
//! agent restarting Envoy, the local platform restarting a container) does the same between
//! restarts.
//!
//! Retrying one request (Envoy's route retry policy) follows Envoy's own rules and is not this.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays that double from a minimum to a cap.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Doubling from `min` to `max`; with `jitter`, each delay gets up to as much again at
    /// random, so many clients of one server do not retry in step.
    pub fn new(min: Duration, max: Duration, jitter: bool) -> Backoff {
        let mut builder =
            ExponentialBuilder::default().with_min_delay(min).with_max_delay(max).with_factor(2.0).without_max_times();
        if jitter {
            builder = builder.with_jitter();
        }
        Backoff { builder, delays: builder.build(), max }
    }

    /// For a client reconnecting to a control-plane server: 250 ms doubling to 5 s, jittered.
    pub fn reconnect() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5), true)
    }

    /// For restarting a process that exited: 1 s doubling to 30 s.
    pub fn restart() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30), false)
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts the iterator does not end; the cap is only a fallback.
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts over from the minimum (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// Sleeps until `at`, or for ever when there is none: a `select!` arm that fires only once a
/// retry is due.
pub async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), false);
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));

        let mut jittered = Backoff::reconnect();
        for expected_base in [250, 500, 1000, 2000, 4000, 5000, 5000] {
            let delay = jittered.next_delay().as_millis() as u64;
            assert!((expected_base..=2 * expected_base).contains(&delay), "{delay} ms for {expected_base} ms");
        }
    }
}
