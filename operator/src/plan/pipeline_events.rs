//! Events of a Pipeline decision beyond the runs themselves: suspension and resumption, and step
//! retries. Pure; called from `pipeline::decide` once the plan is made.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::pipeline::JobToCreate;
use super::ready::PlannedEvent;
use super::runs::{JobState, ObservedJob};
use crate::api::conditions::{self, types};

/// Reason of the Event when `spec.suspend` becomes true.
pub const SUSPENDED: &str = "Suspended";
/// Reason of the Event when `spec.suspend` becomes false again.
pub const RESUMED: &str = "Resumed";
/// Reason of the Event when a step's next attempt is launched after a failure.
pub const STEP_RETRIED: &str = "StepRetried";

/// `Suspended` when a pipeline that was running (`Suspended=False`) becomes suspended, `Resumed`
/// when it stops being suspended; nothing while the state stays (so a repeated decision repeats
/// no Event), nor for a pipeline created suspended. `previous` are the conditions before this
/// decision.
pub fn suspension(previous: &[Condition], suspend: bool) -> Option<PlannedEvent> {
    let was = conditions::find(previous, types::SUSPENDED).map(|c| c.status == "True");
    match (was, suspend) {
        (Some(false), true) => Some(PlannedEvent {
            warning: false,
            reason: SUSPENDED,
            note: "spec.suspend is true: no new runs start; running ones finish".into(),
        }),
        (Some(true), false) => Some(PlannedEvent {
            warning: false,
            reason: RESUMED,
            note: "spec.suspend is false: runs start on schedule again".into(),
        }),
        _ => None,
    }
}

/// One `StepRetried` Event per retry attempt created in this decision, naming the run, the step,
/// the attempt and why the previous attempt failed (from `jobs`, the Pipeline's Jobs).
pub fn retries(create: &[JobToCreate], jobs: &[ObservedJob]) -> Vec<PlannedEvent> {
    create
        .iter()
        .filter(|c| c.attempt > 0)
        .map(|c| {
            let why = jobs
                .iter()
                .find(|j| j.run_id == c.run_id && j.step == c.step && j.attempt + 1 == c.attempt)
                .and_then(|j| match &j.state {
                    JobState::Failed { reason, .. } => Some(format!(": attempt {} failed: {reason}", j.attempt)),
                    _ => None,
                })
                .unwrap_or_default();
            PlannedEvent {
                warning: true,
                reason: STEP_RETRIED,
                note: format!("run {} step {}: starting attempt {}{why}", c.run_id, c.step, c.attempt),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::schedule::Window;

    fn suspended(status: &str) -> Vec<Condition> {
        vec![Condition {
            type_: types::SUSPENDED.into(),
            status: status.into(),
            reason: "x".into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }]
    }

    #[test]
    fn suspend_and_resume_are_announced_once() {
        assert_eq!(suspension(&suspended("False"), true).unwrap().reason, SUSPENDED);
        assert!(suspension(&[], true).is_none(), "created suspended: no change to announce");
        assert_eq!(suspension(&suspended("True"), false).unwrap().reason, RESUMED);
        assert!(suspension(&suspended("True"), true).is_none(), "still suspended");
        assert!(suspension(&suspended("False"), false).is_none());
        assert!(suspension(&[], false).is_none(), "a new pipeline that runs says nothing");
    }

    #[test]
    fn a_retry_names_the_step_attempt_and_the_previous_failure() {
        let window =
            Window { start: "2026-11-24T10:00:00Z".parse().unwrap(), end: "2026-11-24T11:00:00Z".parse().unwrap() };
        let create = |attempt| JobToCreate { run_id: "r1".into(), window, step: "extract".into(), attempt, demand: () };
        let failed = ObservedJob {
            name: "p-extract-r1".into(),
            run_id: "r1".into(),
            step: "extract".into(),
            attempt: 0,
            window,
            created: window.end,
            state: JobState::Failed { finished: window.end, reason: "BackoffLimitExceeded".into() },
        };
        assert!(retries(&[create(0)], &[]).is_empty(), "a first attempt is no retry");
        let events = retries(&[create(1)], &[failed]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, STEP_RETRIED);
        assert!(events[0].warning);
        assert_eq!(events[0].note, "run r1 step extract: starting attempt 1: attempt 0 failed: BackoffLimitExceeded");
    }
}
