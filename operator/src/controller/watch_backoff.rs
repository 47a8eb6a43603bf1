//! How long a watch waits before it lists or watches again after an error.
//!
//! kube's default (client-go's: 0.8 s doubling up to 30 s, reset only after 120 s without an
//! error, applied once per watch stream and once more to each controller's merged triggers)
//! left the caches stale for up to 50 s after a 12 s API server outage: the errors of the outage
//! had grown the delay, and the `410 Gone` of the first watch after it (its resourceVersion
//! predates the new server's cache) grew it again. Stale caches meant no launch and a
//! conflicting status write after another (measured by e2e/tests/chaos/restart.rs). An operator
//! with a handful of watches can retry far sooner: 250 ms doubling up to 2 s, back to 250 ms
//! after 30 s without an error. During an outage that is one request per watch every 2 s.

use std::time::Duration;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(2);
const RESET_AFTER: Duration = Duration::from_secs(30);

/// Doubling delays from [`FIRST`] up to [`MAX`], without end.
#[derive(Clone, Debug)]
pub struct Doubling {
    next: Duration,
}

impl Default for Doubling {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(delay)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// The backoff of every watch and controller trigger stream of the operator.
pub fn watch_backoff() -> ResetTimerBackoff<Doubling> {
    ResetTimerBackoff::new(Doubling::default(), RESET_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_a_quarter_second_up_to_two_seconds_and_resets() {
        let mut backoff = Doubling::default();
        let delays: Vec<u128> = backoff.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(FIRST));
    }

    #[test]
    fn never_gives_up() {
        assert_eq!(watch_backoff().take(1000).count(), 1000);
    }
}
