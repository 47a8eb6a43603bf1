//! How long to wait before retrying a failed reconcile. Pure: the attempt count, the jitter and
//! the clock are parameters.
//!
//! User input never makes a reconcile fail (invalid specs are reported in status), so almost
//! every failure is transient (the API server restarting, overloaded or unreachable, a conflict):
//! those retry on a short capped backoff, so that work resumes within seconds of the API server
//! coming back. Anything else (a 403 from missing RBAC, a bug) backs off longer. Neither ever
//! pushes an object's known next tick (a schedule time, a freshness deadline) further out.

use std::time::Duration;

use jiff::Timestamp;

/// First delay after a transient failure; doubles per consecutive failure.
pub const TRANSIENT_BASE: Duration = Duration::from_millis(500);
/// Longest delay after a transient failure: a due window waits at most this long (plus one
/// reconcile) after the API server is back, within the 5 s the outage tests allow.
pub const TRANSIENT_CAP: Duration = Duration::from_secs(2);
/// First delay after any other failure; doubles per consecutive failure.
pub const PERSISTENT_BASE: Duration = Duration::from_secs(1);
/// Longest delay after any other failure.
pub const PERSISTENT_CAP: Duration = Duration::from_secs(300);

/// One failed reconcile of an object.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    /// Whether the error goes away by itself ([`crate::error::Error::is_transient`]).
    pub transient: bool,
    /// Consecutive failures of this object, this one included (at least 1).
    pub attempt: u32,
    /// A number in `[0, 1)` that spreads retries of many objects failing at once.
    pub jitter: f64,
    /// When the object next has work due regardless of the failure, if known.
    pub next_tick: Option<Timestamp>,
}

/// The delay before the next attempt: `base * 2^(attempt-1)` capped, with "equal jitter" (a
/// uniform value between half and all of it), and never later than a next tick still ahead.
pub fn delay(failure: Failure, now: Timestamp) -> Duration {
    let (base, cap) =
        if failure.transient { (TRANSIENT_BASE, TRANSIENT_CAP) } else { (PERSISTENT_BASE, PERSISTENT_CAP) };
    let exponent = failure.attempt.saturating_sub(1).min(20);
    let full = base.saturating_mul(1 << exponent).min(cap);
    let jitter = if failure.jitter.is_finite() { failure.jitter.clamp(0.0, 1.0) } else { 0.0 };
    let jittered = full.mul_f64(0.5 + jitter / 2.0).min(cap);
    match failure.next_tick.map(|tick| tick.duration_since(now)) {
        // A tick still ahead caps the delay; a tick already due does not (retrying at once in a
        // loop would only hammer an API server that is down).
        Some(until) if until.is_positive() => jittered.min(until.unsigned_abs()),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn failure(transient: bool, attempt: u32, jitter: f64) -> Failure {
        Failure { transient, attempt, jitter, next_tick: None }
    }

    #[test]
    fn transient_failures_start_at_half_a_second_and_never_exceed_two() {
        assert_eq!(delay(failure(true, 1, 1.0), now()), Duration::from_millis(500));
        assert_eq!(delay(failure(true, 2, 1.0), now()), Duration::from_secs(1));
        assert_eq!(delay(failure(true, 3, 1.0), now()), Duration::from_secs(2));
        for attempt in [4, 5, 10, 64, u32::MAX] {
            assert_eq!(delay(failure(true, attempt, 1.0), now()), TRANSIENT_CAP, "{attempt}");
        }
    }

    #[test]
    fn jitter_spreads_between_half_and_all_of_the_delay() {
        assert_eq!(delay(failure(true, 3, 0.0), now()), Duration::from_secs(1));
        assert_eq!(delay(failure(true, 3, 0.5), now()), Duration::from_millis(1500));
        assert_eq!(delay(failure(true, 20, 0.0), now()), Duration::from_secs(1));
        // Out-of-range jitter is clamped, not trusted.
        assert_eq!(delay(failure(true, 3, 7.0), now()), Duration::from_secs(2));
        assert_eq!(delay(failure(true, 3, f64::NAN), now()), Duration::from_secs(1));
    }

    #[test]
    fn other_failures_back_off_to_five_minutes() {
        assert_eq!(delay(failure(false, 1, 1.0), now()), Duration::from_secs(1));
        assert_eq!(delay(failure(false, 7, 1.0), now()), Duration::from_secs(64));
        assert_eq!(delay(failure(false, 30, 1.0), now()), PERSISTENT_CAP);
    }

    #[test]
    fn a_next_tick_ahead_is_never_delayed() {
        let tick = |s: i64| Some(now() + jiff::SignedDuration::from_secs(s));
        let long = Failure { next_tick: tick(2), ..failure(false, 30, 1.0) };
        assert_eq!(delay(long, now()), Duration::from_secs(2));
        let short = Failure { next_tick: tick(60), ..failure(true, 1, 1.0) };
        assert_eq!(delay(short, now()), Duration::from_millis(500));
        // A tick already due does not turn the backoff into a busy loop.
        let due = Failure { next_tick: tick(-5), ..failure(true, 3, 1.0) };
        assert_eq!(delay(due, now()), Duration::from_secs(2));
        let at_now = Failure { next_tick: tick(0), ..failure(true, 1, 1.0) };
        assert_eq!(delay(at_now, now()), Duration::from_millis(500));
    }
}
