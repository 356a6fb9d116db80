//! Reconnect delays: exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Doubles from `min` up to `max`; each delay handed out is drawn uniformly from `[base / 2, base]`, so
/// that many SDKs cut off at once (a streaming replica restarting) do not all come back at once.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff { min, max, base: min }
    }

    /// The next delay (jittered), doubling the base for the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = jitter(self.base, &mut rand::rng());
        self.base = self.base.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the first delay: after a connection that worked.
    pub(crate) fn reset(&mut self) {
        self.base = self.min;
    }

    /// The longest base delay.
    pub(crate) fn max(&self) -> Duration {
        self.max
    }
}

/// A delay drawn uniformly from `[base / 2, base]` (whole milliseconds, at least 1 ms).
pub(crate) fn jitter(base: Duration, rng: &mut impl Rng) -> Duration {
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rng.random_range(millis / 2..=millis).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_minimum_up_to_the_maximum_with_jitter_below_each_base() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let bases = [100, 200, 400, 800, 1_000, 1_000];
        for base in bases {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!((base / 2..=base).contains(&delay), "delay {delay} ms for base {base} ms");
        }
    }

    #[test]
    fn a_reset_starts_again_from_the_minimum() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays_over_the_upper_half_of_the_base() {
        let mut rng = rand::rng();
        let delays: Vec<u64> =
            (0..1_000).map(|_| jitter(Duration::from_millis(1_000), &mut rng).as_millis() as u64).collect();
        assert!(delays.iter().all(|d| (500..=1_000).contains(d)));
        // Not one value: 1 000 draws from 501 values all equal would be astronomically unlikely.
        assert!(delays.iter().any(|&d| d != delays[0]), "no jitter at all");
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::from_millis(1));
    }

    #[test]
    fn nonsense_bounds_are_straightened() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(backoff.max(), Duration::from_millis(1));
        assert_eq!(backoff.next_delay(), Duration::from_millis(1));
    }
}
