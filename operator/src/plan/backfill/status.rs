//! Stage 6 of a Backfill's decision, its status: start and completion times, the estimate,
//! counts and progress, the processed, succeeded and failed ranges, recent failures, the
//! throttle and the conditions. Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::observe::Observed;
use super::summary::{self, Outcome};
use super::{Input, MAX_RANGES};
use crate::api::conditions;
use crate::api::{BackfillStatus, PartitionCounts};
use crate::plan::ready::{PlannedEvent, ready_condition};

/// What the status records besides the decision's outcome.
pub struct Facts<'a> {
    pub counts: PartitionCounts,
    pub problems: &'a [String],
    /// No partition is in progress after the launches.
    pub idle: bool,
    /// Complete for this generation already.
    pub settled: bool,
}

/// Writes the decision into `status` (the previous status with the pinned basis); the
/// `Started` Event when the first partition started.
pub fn record(
    input: &Input<'_>,
    status: &mut BackfillStatus,
    seen: Observed,
    outcome: &Outcome,
    facts: Facts<'_>,
) -> Option<PlannedEvent> {
    let previous = input.status;
    let now = input.now;
    let c = facts.counts;
    let started = start(input, status, facts.idle, c.total);
    let terminal = outcome.complete || outcome.failed.is_some();
    status.completion_time = match (&previous.completion_time, terminal) {
        (Some(t), true) => Some(t.clone()),
        (None, true) => Some(Time(now)),
        (_, false) => None,
    };
    status.estimated_completion_time = if terminal {
        None
    } else {
        let start = status.start_time.as_ref().map(|t| t.0);
        summary::estimate(
            previous.estimated_completion_time.as_ref(),
            start,
            now,
            &c,
            seen.finished.0 + seen.finished.1,
        )
    };
    status.progress = Some(summary::progress(&c));
    status.processed_ranges = seen.processed.to_status();
    let (mut succeeded, mut failed) = (seen.succeeded, seen.failed);
    succeeded.bound(MAX_RANGES);
    failed.bound(MAX_RANGES);
    status.succeeded_ranges = succeeded.to_status();
    status.failed_ranges = failed.to_status();
    status.recent_failures = seen.recent_failures;
    status.throttled = outcome.throttle.clone();
    status.name_conflicts = if facts.settled { Vec::new() } else { input.name_conflicts.clone() };
    let max_failed = input.spec.failure_policy.as_ref().and_then(|p| p.max_failed_partitions);
    let mut desired = summary::conditions(outcome, &c, max_failed);
    desired.push(ready_condition(facts.problems));
    status.conditions = conditions::merge(&previous.conditions, &desired, input.generation, &Time(now));
    status.partitions = Some(c);
    started
}

/// Sets the start time when the first partition is in progress.
fn start(input: &Input<'_>, status: &mut BackfillStatus, idle: bool, total: i64) -> Option<PlannedEvent> {
    if status.start_time.is_some() || idle {
        return None;
    }
    let now: Timestamp = input.now;
    let earliest = input.jobs.iter().map(|j| j.created).min().unwrap_or(now).min(now);
    status.start_time = Some(Time(earliest));
    Some(PlannedEvent {
        warning: false,
        reason: "Started",
        note: format!("backfill started: {total} partition(s) in range"),
    })
}
