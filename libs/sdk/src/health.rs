//! The client's state (DESIGN.md §7: initialising, ready, stale, offline) and the age of its data, as a
//! pure function of what the sync has seen.

use std::time::{Duration, Instant};

/// The client's state (DESIGN.md §7). See the [crate documentation](crate#state-and-age-of-the-data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No data yet: evaluations serve the caller's default with `ERROR NOT_READY`.
    Initializing,
    /// The data is current: the stream is connected, or a sync confirmed it within the grace period.
    Ready,
    /// Serving data that no sync has confirmed for longer than the grace period, or only a bootstrap.
    Stale,
    /// Offline mode: never touches the network.
    Offline,
}

/// What the sync knows about its sources. [`Health::state`] derives the [`State`] from it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// Offline mode: never anything else than [`State::Offline`].
    pub(crate) offline: bool,
    /// Some snapshot is being served (from a sync or a bootstrap).
    pub(crate) has_data: bool,
    /// The stream is connected (its response was 200 and it has not ended, failed or gone silent).
    pub(crate) connected: bool,
    /// When a sync source last confirmed the data current: a stream chunk (event or heartbeat) or a poll
    /// answer (200 or 304). `None` while the data only comes from a bootstrap.
    pub(crate) confirmed_at: Option<Instant>,
    /// When the data served was last known current: `confirmed_at`, or for a bootstrap the time the
    /// file was written.
    pub(crate) data_as_of: Option<Instant>,
}

impl Health {
    /// * offline mode → `Offline`;
    /// * no data → `Initializing`;
    /// * data never confirmed by a sync (a bootstrap only) → `Stale`;
    /// * stream connected, or confirmed within `grace` → `Ready`;
    /// * otherwise (stream down and polling failing for longer than `grace`) → `Stale`.
    pub(crate) fn state(&self, now: Instant, grace: Duration) -> State {
        if self.offline {
            return State::Offline;
        }
        if !self.has_data {
            return State::Initializing;
        }
        match self.confirmed_at {
            None => State::Stale,
            Some(_) if self.connected => State::Ready,
            Some(at) if now.saturating_duration_since(at) <= grace => State::Ready,
            Some(_) => State::Stale,
        }
    }

    /// When [`state`](Self::state) will change by itself (`Ready` turning `Stale`), if nothing else
    /// happens.
    pub(crate) fn next_change(&self, now: Instant, grace: Duration) -> Option<Instant> {
        let at = self.confirmed_at?;
        let stale_at = at + grace;
        (!self.offline && self.has_data && !self.connected && stale_at >= now)
            .then(|| stale_at + Duration::from_millis(1))
    }

    /// How old the data is: since it was last confirmed current.
    pub(crate) fn data_age(&self, now: Instant) -> Option<Duration> {
        self.data_as_of.map(|at| now.saturating_duration_since(at))
    }

    /// A sync source confirmed the data (installed it, or said it is still current).
    pub(crate) fn confirm(&mut self, now: Instant) {
        self.has_data = true;
        self.confirmed_at = Some(now);
        self.data_as_of = Some(now);
    }

    /// A sync source is alive (a heartbeat, a `304`); it confirms the data only if a sync installed it
    /// (a bootstrap's data is not what a `304` or a heartbeat vouches for).
    pub(crate) fn alive(&mut self, now: Instant) {
        if self.confirmed_at.is_some() {
            self.confirm(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    fn at(base: Instant, seconds: u64) -> Instant {
        base + Duration::from_secs(seconds)
    }

    #[test]
    fn a_client_without_data_is_initializing_until_a_sync_confirms_some() {
        let t0 = Instant::now();
        let mut health = Health::default();
        assert_eq!(health.state(t0, GRACE), State::Initializing);
        assert_eq!(health.data_age(t0), None);
        health.alive(t0);
        assert_eq!(health.state(t0, GRACE), State::Initializing, "a heartbeat alone brings no data");
        health.confirm(t0);
        assert_eq!(health.state(t0, GRACE), State::Ready);
        assert_eq!(health.data_age(at(t0, 3)), Some(Duration::from_secs(3)));
    }

    #[test]
    fn without_a_stream_the_data_turns_stale_after_the_grace_period_and_ready_when_confirmed() {
        let t0 = Instant::now();
        let mut health = Health::default();
        health.confirm(t0);
        assert_eq!(health.state(at(t0, 10), GRACE), State::Ready);
        assert_eq!(health.next_change(t0, GRACE), Some(at(t0, 10) + Duration::from_millis(1)));
        assert_eq!(health.state(at(t0, 11), GRACE), State::Stale);
        assert_eq!(health.next_change(at(t0, 11), GRACE), None, "stale stays stale by itself");
        health.alive(at(t0, 12));
        assert_eq!(health.state(at(t0, 12), GRACE), State::Ready);
    }

    #[test]
    fn a_connected_stream_keeps_the_client_ready_between_heartbeats() {
        let t0 = Instant::now();
        let mut health = Health { connected: true, ..Health::default() };
        health.confirm(t0);
        assert_eq!(health.state(at(t0, 100), GRACE), State::Ready);
        assert_eq!(health.next_change(t0, GRACE), None);
        health.connected = false;
        assert_eq!(health.state(at(t0, 100), GRACE), State::Stale);
    }

    #[test]
    fn bootstrapped_data_is_stale_until_a_sync_confirms_it() {
        let t0 = Instant::now();
        let written = t0.checked_sub(Duration::from_secs(60)).unwrap_or(t0);
        let mut health = Health { has_data: true, data_as_of: Some(written), ..Health::default() };
        assert_eq!(health.state(t0, GRACE), State::Stale);
        health.connected = true;
        health.alive(t0);
        assert_eq!(health.state(t0, GRACE), State::Stale, "a heartbeat does not vouch for a bootstrap");
        assert!(health.data_age(t0).is_some_and(|age| age >= Duration::from_secs(60) || written == t0));
        health.confirm(t0);
        assert_eq!(health.state(t0, GRACE), State::Ready);
    }

    #[test]
    fn offline_mode_is_offline_whatever_else_happens() {
        let t0 = Instant::now();
        let mut health = Health { offline: true, ..Health::default() };
        assert_eq!(health.state(t0, GRACE), State::Offline);
        health.confirm(t0);
        assert_eq!(health.state(at(t0, 1_000), GRACE), State::Offline);
        assert_eq!(health.next_change(t0, GRACE), None);
    }
}
