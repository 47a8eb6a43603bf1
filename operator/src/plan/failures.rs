//! Consecutive reconcile failures per object, for the retry backoff ([`super::retry`]) and for
//! the Warning Event a persistent failure earns. Pure: the clock and whether an object still
//! exists are parameters.
//!
//! A failure is persistent when it is not transient, or when a transient one repeats
//! [`WARN_AFTER`] times in a row. Warnings are rate-limited twice, so that a flapping API
//! server does not flood Events: at most one per object per [`WARN_EVERY`] (remembered across
//! successes, which a flapping API server interleaves), and at most [`WARN_BURST`] per
//! [`WARN_EVERY`] in all.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use jiff::{SignedDuration, Timestamp};

/// Transient failures in a row that make a failure persistent.
pub const WARN_AFTER: u32 = 5;
/// Shortest time between two warnings about one object.
pub const WARN_EVERY: SignedDuration = SignedDuration::from_mins(5);
/// Most warnings about all objects within [`WARN_EVERY`].
pub const WARN_BURST: usize = 20;

/// What one failure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Consecutive failures of the object, this one included.
    pub attempt: u32,
    /// Whether to publish a Warning Event about it.
    pub warn: bool,
}

#[derive(Clone, Debug, Default)]
struct Record {
    attempts: u32,
    warned: Option<Timestamp>,
}

/// Failures by object key.
#[derive(Clone, Debug)]
pub struct Failures<K> {
    records: HashMap<K, Record>,
    /// When the recent warnings (within [`WARN_EVERY`]) were given, oldest first.
    recent: VecDeque<Timestamp>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Self { records: HashMap::new(), recent: VecDeque::new() }
    }
}

impl<K: Eq + Hash + Clone> Failures<K> {
    /// Counts a failure of `key` at `now`.
    pub fn failed(&mut self, key: &K, transient: bool, now: Timestamp) -> Verdict {
        let record = self.records.entry(key.clone()).or_default();
        record.attempts = record.attempts.saturating_add(1);
        let persistent = !transient || record.attempts >= WARN_AFTER;
        let quiet = record.warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        while self.recent.front().is_some_and(|at| now.duration_since(*at) >= WARN_EVERY) {
            self.recent.pop_front();
        }
        let warn = persistent && quiet && self.recent.len() < WARN_BURST;
        if warn {
            record.warned = Some(now);
            self.recent.push_back(now);
        }
        Verdict { attempt: record.attempts, warn }
    }

    /// Ends the failures in a row of `key` (its last warning is kept while it rate-limits).
    pub fn succeeded(&mut self, key: &K, now: Timestamp) {
        let Some(record) = self.records.get_mut(key) else { return };
        record.attempts = 0;
        if record.warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            self.records.remove(key);
        }
    }

    /// Forgets the objects for which `exists` is false (deleted ones).
    pub fn retain(&mut self, exists: impl Fn(&K) -> bool) {
        self.records.retain(|key, _| exists(key));
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn transient_failures_warn_once_they_repeat_and_others_at_once() {
        let mut f = Failures::default();
        let verdicts: Vec<Verdict> = (1..=WARN_AFTER as i64).map(|i| f.failed(&"a", true, t(i))).collect();
        assert!(verdicts[..WARN_AFTER as usize - 1].iter().all(|v| !v.warn), "{verdicts:?}");
        assert_eq!(verdicts.last(), Some(&Verdict { attempt: WARN_AFTER, warn: true }));
        assert_eq!(f.failed(&"b", false, t(0)), Verdict { attempt: 1, warn: true });
    }

    #[test]
    fn one_object_is_warned_about_at_most_once_per_interval_even_when_it_flaps() {
        let mut f = Failures::default();
        assert!(f.failed(&"a", false, t(0)).warn);
        f.succeeded(&"a", t(1));
        let again = f.failed(&"a", false, t(2));
        assert_eq!(again, Verdict { attempt: 1, warn: false }, "the success reset the count, not the rate limit");
        assert!(f.failed(&"a", false, t(WARN_EVERY.as_secs())).warn);
        // Once the interval has passed, a success forgets the object entirely.
        f.succeeded(&"a", t(2 * WARN_EVERY.as_secs()));
        assert!(f.is_empty());
    }

    #[test]
    fn warnings_about_all_objects_are_capped_per_interval() {
        let mut f = Failures::default();
        let warned = (0..WARN_BURST + 5).filter(|i| f.failed(i, false, t(*i as i64)).warn).count();
        assert_eq!(warned, WARN_BURST);
        assert!(f.failed(&1000, false, t(WARN_EVERY.as_secs() + 1)).warn, "the oldest warnings expired");
    }

    #[test]
    fn a_deleted_object_is_forgotten_and_a_successful_one_restarts_at_one() {
        let mut f = Failures::default();
        for i in 0..3 {
            f.failed(&"gone", true, t(i));
            f.failed(&"kept", true, t(i));
        }
        f.retain(|key| *key != "gone");
        assert_eq!(f.len(), 1);
        assert_eq!(f.failed(&"gone", true, t(10)).attempt, 1, "a recreated object starts afresh");
        f.succeeded(&"kept", t(11));
        assert_eq!(f.failed(&"kept", true, t(12)).attempt, 1);
    }
}
