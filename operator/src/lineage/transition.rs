//! Which OpenLineage run events a change of a step Job calls for: a pure function of what was
//! already sent for the Job and its new state, plus a bounded memory of what was sent per Job UID.
//!
//! Semantics (at least once, in order per Job): `START` once the Job has started (or finished
//! without a start time), then exactly one terminal event: `COMPLETE`, `FAIL`, or `ABORT` when the
//! Job is deleted (a Replace, a Backfill deletion) while still running. The memory lives in the
//! process: a re-list of the watch sends nothing twice; after a restart, Jobs still running get
//! their `START` again and Jobs that finished within the replay window their terminal event (a
//! receiver keys on the stable `runId` and event type), while Jobs that finished earlier than that
//! are taken as reported.

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;

/// The kind of run event (OpenLineage `eventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Start,
    Complete,
    Fail,
    Abort,
}

impl Kind {
    /// The `eventType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "START",
            Kind::Complete => "COMPLETE",
            Kind::Fail => "FAIL",
            Kind::Abort => "ABORT",
        }
    }
}

/// How a Job ended, from its conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Complete { at: Timestamp },
    Failed { at: Timestamp, message: String },
}

/// What the lineage of a Job depends on, read from the Job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    pub started: Option<Timestamp>,
    pub outcome: Option<Outcome>,
    /// Set when the Job is being deleted (deletionTimestamp) or is gone (a Delete event).
    pub deleted: bool,
}

impl JobFacts {
    /// The facts of `job`; `gone` when it came in a Delete event.
    pub fn of(job: &Job, gone: bool) -> Self {
        let status = job.status.as_ref();
        let outcome = match crate::controller::job_cache::job_state(job) {
            crate::plan::runs::JobState::Succeeded { finished } => Some(Outcome::Complete { at: finished }),
            crate::plan::runs::JobState::Failed { finished, reason } => {
                Some(Outcome::Failed { at: finished, message: reason })
            }
            crate::plan::runs::JobState::Active | crate::plan::runs::JobState::Queued => None,
        };
        JobFacts {
            started: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            outcome,
            deleted: gone || job.metadata.deletion_timestamp.is_some(),
        }
    }

    fn finished_at(&self) -> Option<Timestamp> {
        match &self.outcome {
            Some(Outcome::Complete { at } | Outcome::Failed { at, .. }) => Some(*at),
            None => None,
        }
    }
}

/// What was sent for one Job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub started: bool,
    pub terminal: bool,
}

/// The events that move a Job from `sent` to `facts`, and what is sent afterwards. A Job deleted
/// before it started gets no event: it never ran.
pub fn transition(sent: Sent, facts: &JobFacts) -> (Vec<Kind>, Sent) {
    if sent.terminal {
        return (Vec::new(), sent);
    }
    let terminal = match &facts.outcome {
        Some(Outcome::Complete { .. }) => Some(Kind::Complete),
        Some(Outcome::Failed { .. }) => Some(Kind::Fail),
        None if facts.deleted => Some(Kind::Abort),
        None => None,
    };
    let ran = sent.started || facts.started.is_some() || facts.outcome.is_some();
    let mut events = Vec::new();
    if !sent.started && ran {
        events.push(Kind::Start);
    }
    if let Some(kind) = terminal
        && ran
    {
        events.push(kind);
    }
    (events, Sent { started: ran, terminal: terminal.is_some() })
}

/// The memory of what was sent, per Job UID, bounded: the oldest entries are forgotten first
/// (the Jobs of Sluice are pruned by history, so in practice this holds the Jobs in the cache).
pub struct Tracker {
    sent: HashMap<String, Sent>,
    order: VecDeque<String>,
    capacity: usize,
    /// Jobs that finished longer than this before the process started, met in its first list,
    /// are taken as reported.
    replay: SignedDuration,
    started: Timestamp,
    first_list_done: bool,
}

impl Tracker {
    pub fn new(capacity: usize, replay: SignedDuration, started: Timestamp) -> Self {
        Self {
            sent: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            replay,
            started,
            first_list_done: false,
        }
    }

    /// The first full list of the watch is over.
    pub fn list_done(&mut self) {
        self.first_list_done = true;
    }

    /// The events for Job `uid` now in state `facts`, remembering them as sent; `gone` when the
    /// Job was deleted (a Delete event), which also forgets it.
    pub fn observe(&mut self, uid: &str, facts: &JobFacts, gone: bool) -> Vec<Kind> {
        let known = self.sent.get(uid).copied();
        let before = match known {
            Some(sent) => sent,
            None if !self.first_list_done && facts.finished_at().is_some_and(|at| at < self.started - self.replay) => {
                Sent { started: true, terminal: true }
            }
            None => Sent::default(),
        };
        let (events, after) = transition(before, facts);
        if gone {
            self.forget(uid);
        } else if known != Some(after) {
            self.remember(uid, after);
        }
        events
    }

    fn remember(&mut self, uid: &str, sent: Sent) {
        if self.sent.insert(uid.to_string(), sent).is_none() {
            self.order.push_back(uid.to_string());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.sent.remove(&old);
                }
            }
        }
    }

    fn forget(&mut self, uid: &str) {
        if self.sent.remove(uid).is_some() {
            self.order.retain(|u| u != uid);
        }
    }

    /// How many Jobs are remembered.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn facts(started: bool, outcome: Option<Outcome>, deleted: bool) -> JobFacts {
        JobFacts { started: started.then(|| at("2026-11-24T10:00:05Z")), outcome, deleted }
    }

    fn complete() -> Option<Outcome> {
        Some(Outcome::Complete { at: at("2026-11-24T10:01:00Z") })
    }

    fn failed() -> Option<Outcome> {
        Some(Outcome::Failed { at: at("2026-11-24T10:01:00Z"), message: "BackoffLimitExceeded".into() })
    }

    #[test]
    fn a_job_starts_then_completes_once() {
        let created = facts(false, None, false);
        assert_eq!(transition(Sent::default(), &created), (vec![], Sent::default()));
        let (events, sent) = transition(Sent::default(), &facts(true, None, false));
        assert_eq!(events, vec![Kind::Start]);
        let (events, sent) = transition(sent, &facts(true, complete(), false));
        assert_eq!(events, vec![Kind::Complete]);
        assert_eq!(transition(sent, &facts(true, complete(), false)).0, vec![]);
        assert_eq!(transition(sent, &facts(true, complete(), true)).0, vec![], "pruned after completing");
    }

    #[test]
    fn a_job_first_seen_finished_gets_start_and_its_terminal_event() {
        assert_eq!(transition(Sent::default(), &facts(true, failed(), false)).0, vec![Kind::Start, Kind::Fail]);
        assert_eq!(transition(Sent::default(), &facts(false, complete(), true)).0, vec![Kind::Start, Kind::Complete]);
    }

    #[test]
    fn a_running_job_deleted_is_aborted_and_one_never_started_is_silent() {
        let (_, sent) = transition(Sent::default(), &facts(true, None, false));
        let (events, after) = transition(sent, &facts(true, None, true));
        assert_eq!(events, vec![Kind::Abort]);
        assert!(after.terminal);
        assert_eq!(transition(Sent::default(), &facts(false, None, true)).0, vec![]);
        // A deleted Job whose final state is finished reports that, not an abort.
        assert_eq!(transition(sent, &facts(true, failed(), true)).0, vec![Kind::Fail]);
    }

    #[test]
    fn the_tracker_never_resends_and_stays_bounded() {
        let mut tracker = Tracker::new(2, SignedDuration::from_mins(15), at("2026-11-24T12:00:00Z"));
        tracker.list_done();
        assert_eq!(tracker.observe("a", &facts(true, None, false), false), vec![Kind::Start]);
        assert_eq!(tracker.observe("a", &facts(true, None, false), false), vec![], "a re-list sends nothing");
        assert_eq!(tracker.observe("b", &facts(true, None, false), false), vec![Kind::Start]);
        assert_eq!(tracker.observe("c", &facts(true, None, false), false), vec![Kind::Start]);
        assert_eq!(tracker.len(), 2, "the oldest is forgotten");
        assert_eq!(tracker.observe("c", &facts(true, None, true), false), vec![Kind::Abort], "deletionTimestamp");
        assert_eq!(tracker.observe("c", &facts(true, None, true), true), vec![], "then the Delete event");
        assert_eq!(tracker.len(), 1, "a deleted Job is forgotten");
    }

    #[test]
    fn after_a_restart_only_recent_outcomes_are_replayed() {
        let mut tracker = Tracker::new(10, SignedDuration::from_mins(15), at("2026-11-24T10:10:00Z"));
        // Finished at 10:01, the process started at 10:10: within 15 minutes, replayed.
        assert_eq!(
            tracker.observe("recent", &facts(true, complete(), false), false),
            vec![Kind::Start, Kind::Complete]
        );
        let mut late = Tracker::new(10, SignedDuration::from_mins(15), at("2026-11-24T11:00:00Z"));
        assert_eq!(late.observe("old", &facts(true, complete(), false), false), vec![]);
        assert_eq!(late.observe("running", &facts(true, None, false), false), vec![Kind::Start]);
        late.list_done();
        // After the first list, a Job seen finished for the first time is reported.
        assert_eq!(late.observe("new", &facts(true, failed(), false), false), vec![Kind::Start, Kind::Fail]);
    }
}
