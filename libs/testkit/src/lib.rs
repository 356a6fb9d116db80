//! Test helpers for Vexil: real PostgreSQL and Redis, never mocks of them.
//!
//! - [`TestDatabase`] creates a fresh, uniquely named database on the PostgreSQL server named by
//!   [`postgres_admin_url`].
//! - [`RedisServer`] runs a private `redis-server` on a free loopback port, for tests that stop and
//!   restart Redis; tests that only need *a* Redis use the shared one at [`redis_url`].
//! - [`RedisCluster`] runs a private Redis Cluster of N masters.
//! - [`eventually`] waits on a condition with a deadline, instead of sleeping.
//!
//! `scripts/services.sh` (for `scripts/test.sh` to source) makes sure the servers exist and exports
//! `VEXIL_TEST_DATABASE_URL` and `VEXIL_TEST_REDIS_URL`; the defaults below match a local install.
//!
//! The Redis helpers start processes and wait for them synchronously (a few milliseconds for a
//! server, a second or two for a cluster); they may be called from async tests.
#![deny(missing_docs)]

mod postgres;
mod redis;
mod resp;

use std::future::Future;
use std::time::Duration;

pub use postgres::TestDatabase;
pub use redis::{RedisCluster, RedisServer};

/// Environment variable holding the admin URL of the PostgreSQL server for tests.
const DATABASE_URL_VAR: &str = "VEXIL_TEST_DATABASE_URL";
/// Environment variable holding the URL of the shared Redis for tests.
const REDIS_URL_VAR: &str = "VEXIL_TEST_REDIS_URL";

/// Admin URL of the PostgreSQL server for tests: env `VEXIL_TEST_DATABASE_URL`, else
/// `postgres://postgres@127.0.0.1:5432/postgres`.
///
/// Tests may `CREATE DATABASE` on this server; see [`TestDatabase`].
pub fn postgres_admin_url() -> String {
    env_or(DATABASE_URL_VAR, "postgres://postgres@127.0.0.1:5432/postgres")
}

/// URL of the shared Redis for tests: env `VEXIL_TEST_REDIS_URL`, else `redis://127.0.0.1:6379`.
///
/// Tests share this server, so they should use unique key and channel names. Tests that stop or
/// restart Redis start their own [`RedisServer`] instead.
pub fn redis_url() -> String {
    env_or(REDIS_URL_VAR, "redis://127.0.0.1:6379")
}

/// Poll `check` until it returns true or `deadline` passes; returns whether it became true.
///
/// For "wait on the condition, with a deadline" instead of sleeps. `check` always runs at least once,
/// and once more after the deadline has passed, so a condition that becomes true during the last
/// pause is still seen. Pauses between checks start at 5 ms and grow to 100 ms. Time is
/// [`tokio::time`], so tests with a paused clock work too.
///
/// ```no_run
/// # async fn example(cache: std::sync::Arc<std::sync::atomic::AtomicBool>) {
/// use std::{sync::atomic::Ordering, time::Duration};
///
/// let synced = vexil_testkit::eventually(Duration::from_secs(5), || {
///     let cache = cache.clone();
///     async move { cache.load(Ordering::SeqCst) }
/// })
/// .await;
/// assert!(synced, "the cache did not sync within 5 s");
/// # }
/// ```
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    const FIRST_PAUSE: Duration = Duration::from_millis(5);
    const LONGEST_PAUSE: Duration = Duration::from_millis(100);

    let give_up_at = tokio::time::Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    loop {
        if check().await {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= give_up_at {
            return false;
        }
        tokio::time::sleep(pause.min(give_up_at - now)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// The value of environment variable `name`, or `default` when it is unset or blank.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::eventually;

    #[tokio::test]
    async fn eventually_returns_true_once_the_condition_holds() {
        let calls = Arc::new(AtomicU32::new(0));

        let became_true = eventually(Duration::from_secs(5), || {
            let calls = Arc::clone(&calls);
            async move { calls.fetch_add(1, Ordering::SeqCst) + 1 >= 3 }
        })
        .await;

        assert!(became_true);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn eventually_gives_up_at_the_deadline() {
        let deadline = Duration::from_millis(50);
        let started = tokio::time::Instant::now();

        let became_true = eventually(deadline, || async { false }).await;

        assert!(!became_true);
        assert!(started.elapsed() >= deadline, "gave up after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn eventually_checks_once_even_with_a_zero_deadline() {
        let became_true = eventually(Duration::ZERO, || async { true }).await;

        assert!(became_true);
    }
}
