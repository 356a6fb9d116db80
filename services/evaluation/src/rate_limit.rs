//! Per-key token buckets for the evaluation routes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets are spread over this many locks, so that two workers rarely wait on each other.
const SHARDS: usize = 16;
/// A shard holding more buckets than this drops the ones that have refilled (they would start full
/// anyway): keys come and go with rotation, and the map must not grow without end.
const PRUNE_ABOVE: usize = 4_096;

/// A token bucket per SDK key: `per_second` tokens a second, holding at most two seconds' worth, so a
/// client may burst after a quiet spell. `per_second == 0` turns limiting off.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    hasher: RandomState,
    shards: Box<[Mutex<Buckets>]>,
}

/// One shard: key id → bucket.
type Buckets = HashMap<Box<str>, Bucket>;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests a second per key (burst: twice that); 0 = unlimited.
    pub fn new(per_second: u32) -> RateLimiter {
        let per_second = f64::from(per_second);
        RateLimiter {
            per_second,
            burst: 2.0 * per_second,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        // A bucket is two numbers written together: a poisoned lock still holds consistent data.
        let mut buckets = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
        }
        let bucket = match buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => buckets.entry(key.into()).or_insert(Bucket { tokens: self.burst, updated: now }),
        };
        bucket.tokens = self.refilled(*bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1: the only form every client parses, and
/// a retry after 0 s would only be refused again.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("per_second", &self.per_second).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_may_burst_two_seconds_worth_and_then_waits_for_tokens() {
        let limiter = RateLimiter::new(5);
        let start = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check_at("k", start).is_ok());
        }
        let wait = limiter.check_at("k", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200));
        assert!(limiter.check_at("k", start + Duration::from_millis(200)).is_ok());
        assert!(limiter.check_at("k", start + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let limiter = RateLimiter::new(1);
        let now = Instant::now();
        assert!(limiter.check_at("a", now).is_ok());
        assert!(limiter.check_at("a", now).is_ok());
        assert!(limiter.check_at("a", now).is_err());
        assert!(limiter.check_at("b", now).is_ok());
    }

    #[test]
    fn a_rate_of_zero_never_limits() {
        let limiter = RateLimiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check_at("k", now).is_ok()));
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let limiter = RateLimiter::new(1);
        let start = Instant::now();
        assert!(limiter.check_at("k", start).is_ok());
        let later = start + Duration::from_secs(3_600);
        assert!(limiter.check_at("k", later).is_ok());
        assert!(limiter.check_at("k", later).is_ok());
        assert!(limiter.check_at("k", later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }
}
