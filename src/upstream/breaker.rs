//! Circuit breakers: stop calling a provider that keeps failing, and let a single probe
//! find out when it has recovered.
//!
//! A breaker is closed (calls pass) until `failure_threshold` consecutive failures open it;
//! while open, calls are refused for `open_ms`; then it is half-open and lets one probe
//! through, whose outcome closes it again or reopens it. The state is plain memory: in a
//! Worker it lasts as long as the isolate, which is what a breaker wants (a fresh isolate
//! tries again).

use std::collections::BTreeMap;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls pass.
    Closed,
    /// Calls are refused until `until` (unix ms).
    Open {
        /// When the breaker turns half-open.
        until: u64,
    },
    /// One probe, let through at `since` (unix ms), is under way.
    HalfOpen {
        /// When the probe was let through.
        since: u64,
    },
}

/// One provider's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open the breaker (0 counts as 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe; also how long a probe may go
    /// unreported before another is let through.
    pub open_ms: u64,
    state: State,
    failures: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(failure_threshold: u32, open_ms: u64) -> Self {
        Self {
            failure_threshold,
            open_ms,
            state: State::Closed,
            failures: 0,
        }
    }

    /// The current state, as last changed by `allow`, `success` or `failure`.
    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive failures counted while closed.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a call may go out now. When an open breaker's time is up, the call that
    /// asks becomes the probe and the breaker turns half-open; other calls are refused
    /// until the probe is reported. A probe never reported (its request was cancelled)
    /// stops blocking after `open_ms`, and the next call becomes the probe.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let probe_at = match self.state {
            State::Closed => return true,
            State::Open { until } => until,
            State::HalfOpen { since } => since.saturating_add(self.open_ms),
        };
        if now_ms < probe_at {
            return false;
        }
        self.state = State::HalfOpen { since: now_ms };
        true
    }

    /// Reports a call that succeeded: the failure count resets and a half-open breaker
    /// closes. An open breaker stays open: the success came from a call let through
    /// before it opened. The time is taken for symmetry with [`Breaker::failure`]; a
    /// success's effect does not depend on it.
    pub fn success(&mut self, _now_ms: u64) {
        match self.state {
            State::Closed => self.failures = 0,
            State::HalfOpen { .. } => {
                self.state = State::Closed;
                self.failures = 0;
            }
            State::Open { .. } => {}
        }
    }

    /// Reports a call that failed: enough consecutive failures open a closed breaker, and
    /// a failed probe reopens a half-open one. An open breaker's time is not extended by
    /// late failures of calls let through before it opened.
    pub fn failure(&mut self, now_ms: u64) {
        match self.state {
            State::Closed => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.failure_threshold.max(1) {
                    self.open(now_ms);
                }
            }
            State::HalfOpen { .. } => self.open(now_ms),
            State::Open { .. } => {}
        }
    }

    fn open(&mut self, now_ms: u64) {
        self.state = State::Open {
            until: now_ms.saturating_add(self.open_ms),
        };
        self.failures = 0;
    }
}

/// Breakers by provider name, created on a provider's first failure with shared settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakers {
    failure_threshold: u32,
    open_ms: u64,
    by_name: BTreeMap<String, Breaker>,
}

impl Breakers {
    /// No breakers yet; each one made will have these settings.
    pub fn new(failure_threshold: u32, open_ms: u64) -> Self {
        Self {
            failure_threshold,
            open_ms,
            by_name: BTreeMap::new(),
        }
    }

    /// Whether a call to `name` may go out now (see [`Breaker::allow`]).
    pub fn allow(&mut self, name: &str, now_ms: u64) -> bool {
        self.by_name.get_mut(name).is_none_or(|b| b.allow(now_ms))
    }

    /// Reports a successful call to `name`.
    pub fn success(&mut self, name: &str, now_ms: u64) {
        if let Some(b) = self.by_name.get_mut(name) {
            b.success(now_ms);
        }
    }

    /// Reports a failed call to `name`.
    pub fn failure(&mut self, name: &str, now_ms: u64) {
        let (threshold, open_ms) = (self.failure_threshold, self.open_ms);
        self.by_name
            .entry(name.to_owned())
            .or_insert_with(|| Breaker::new(threshold, open_ms))
            .failure(now_ms);
    }

    /// The state of `name`'s breaker; closed when it has none.
    pub fn state(&self, name: &str) -> State {
        self.by_name.get(name).map_or(State::Closed, Breaker::state)
    }

    /// `name`'s breaker, if it has failed before.
    pub fn get(&self, name: &str) -> Option<&Breaker> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(threshold: u32, open_ms: u64, at: u64) -> Breaker {
        let mut b = Breaker::new(threshold, open_ms);
        for _ in 0..threshold.max(1) {
            b.failure(at);
        }
        assert_eq!(
            b.state(),
            State::Open {
                until: at + open_ms
            }
        );
        b
    }

    #[test]
    fn consecutive_failures_open_the_breaker_and_a_success_resets_the_count() {
        let mut b = Breaker::new(3, 1_000);
        b.failure(10);
        b.failure(11);
        assert_eq!((b.state(), b.failures()), (State::Closed, 2));
        assert!(b.allow(12));
        b.success(12);
        assert_eq!(b.failures(), 0);
        b.failure(13);
        b.failure(14);
        assert_eq!(b.state(), State::Closed, "the count restarted");
        b.failure(15);
        assert_eq!(b.state(), State::Open { until: 1_015 });
    }

    #[test]
    fn an_open_breaker_refuses_calls_until_its_time_is_up() {
        let mut b = opened(2, 1_000, 100);
        assert!(!b.allow(100));
        assert!(!b.allow(1_099));
        assert_eq!(b.state(), State::Open { until: 1_100 });
        assert!(b.allow(1_100));
        assert_eq!(b.state(), State::HalfOpen { since: 1_100 });
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let mut b = opened(1, 1_000, 0);
        assert!(b.allow(5_000));
        for t in [5_000, 5_001, 5_999] {
            assert!(!b.allow(t), "second probe at {t}");
        }
        b.success(5_500);
        assert_eq!(b.state(), State::Closed);
        assert!(
            b.allow(5_501) && b.allow(5_501),
            "closed lets everything through"
        );
    }

    #[test]
    fn a_failed_probe_reopens_the_breaker_for_a_full_period() {
        let mut b = opened(1, 1_000, 0);
        assert!(b.allow(1_000));
        b.failure(1_200);
        assert_eq!(b.state(), State::Open { until: 2_200 });
        assert!(!b.allow(2_199));
        assert!(b.allow(2_200));
    }

    #[test]
    fn a_probe_never_reported_stops_blocking_after_the_open_period() {
        let mut b = opened(1, 1_000, 0);
        assert!(b.allow(1_000));
        assert!(!b.allow(1_999));
        assert!(b.allow(2_000), "the lost probe is replaced");
        assert_eq!(b.state(), State::HalfOpen { since: 2_000 });
        assert!(!b.allow(2_000));
    }

    #[test]
    fn late_reports_do_not_change_an_open_breaker() {
        let mut b = opened(1, 1_000, 0);
        b.success(10);
        assert_eq!(b.state(), State::Open { until: 1_000 });
        b.failure(500);
        assert_eq!(b.state(), State::Open { until: 1_000 }, "not extended");
    }

    #[test]
    fn a_zero_threshold_opens_on_the_first_failure_and_times_saturate() {
        let mut b = Breaker::new(0, 50);
        b.failure(0);
        assert_eq!(b.state(), State::Open { until: 50 });
        let mut b = Breaker::new(1, u64::MAX);
        b.failure(10);
        assert_eq!(b.state(), State::Open { until: u64::MAX });
        assert!(!b.allow(u64::MAX - 1));
        assert!(b.allow(u64::MAX));
    }

    #[test]
    fn breakers_are_kept_per_provider() {
        let mut all = Breakers::new(2, 1_000);
        assert!(all.allow("a", 0));
        all.success("a", 0);
        assert!(all.get("a").is_none(), "successes create no breaker");
        all.failure("a", 0);
        all.failure("a", 1);
        all.failure("b", 1);
        assert_eq!(all.state("a"), State::Open { until: 1_001 });
        assert_eq!(all.state("b"), State::Closed);
        assert_eq!(all.get("b").map(Breaker::failures), Some(1));
        assert_eq!(all.state("c"), State::Closed);
        assert!(!all.allow("a", 500));
        assert!(all.allow("b", 500));
        assert!(all.allow("a", 1_001));
        assert!(!all.allow("a", 1_002));
        all.success("a", 1_003);
        assert_eq!(all.state("a"), State::Closed);
    }
}
