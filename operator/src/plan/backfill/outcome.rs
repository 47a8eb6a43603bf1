//! Stage 5 of a Backfill's decision: its outcome: complete, failed (a step that never fits
//! the quota, too many failed partitions), and what throttles it, in order of precedence:
//! suspended, inputs whose contract blocks, protected Datasets that are stale, names held by others, then the round's own reason
//! (quota, budget, Job caps) or parallelism, the schedule's windows, windows busy elsewhere.
//! Pure.

use super::halt::Halt;
use super::launch::Launches;
use super::summary::{self, Outcome, reasons};
use crate::api::{PartitionCounts, Throttle};

/// What the outcome depends on besides the halt reasons and the launches.
pub struct Tally<'a> {
    /// Counts after the launches.
    pub counts: &'a PartitionCounts,
    /// Windows processed (succeeded, failed or skipped).
    pub done: i64,
    pub parallelism: usize,
    /// The ResourceQuota's name, when one binds.
    pub quota: Option<&'a str>,
}

/// The outcome of a decision after its launches.
pub fn outcome(halt: &Halt<'_>, launches: &mut Launches, tally: &Tally<'_>) -> Outcome {
    let c = tally.counts;
    let throttle = throttle(halt, launches, c, tally.parallelism);
    let failed = failure(halt, c, tally.quota);
    let done = tally.done;
    let complete = halt.settled || (!halt.invalid && failed.is_none() && done >= c.total && c.running + c.queued == 0);
    Outcome { complete, failed, suspended: halt.suspended, invalid: halt.invalid && !halt.settled, throttle }
}

/// What throttles the backfill, if anything.
fn throttle(halt: &Halt<'_>, launches: &mut Launches, c: &PartitionCounts, parallelism: usize) -> Option<Throttle> {
    if halt.suspended {
        return Some(summary::throttle(reasons::SUSPENDED, "spec.suspend is true: no new Job starts".into()));
    }
    if halt.dry_run && !halt.settled && !halt.invalid {
        return Some(summary::throttle(reasons::DRY_RUN, "spec.dryRun is true: the plan is in status.plan".into()));
    }
    if !halt.blocked.is_empty() && !halt.settled && (c.pending > 0 || c.running + c.queued > 0) {
        return Some(summary::contract_violated(&halt.blocked));
    }
    if !halt.protected.is_empty() && !halt.halted() && c.pending > 0 {
        return Some(super::protect::throttle_for(halt.protected));
    }
    if !launches.conflict_hits.is_empty() {
        launches.conflict_hits.dedup();
        return Some(summary::name_conflict(&launches.conflict_hits));
    }
    if launches.throttle.is_some() || halt.halted() || c.pending == 0 {
        return launches.throttle.clone();
    }
    let (walk, want) = (&launches.walk, launches.want);
    // Queued partitions (waiting for Kueue) hold their parallelism slots too.
    let running = (c.running + c.queued) as usize;
    if running >= parallelism {
        let queued = if c.queued > 0 { format!(" ({} queued in Kueue)", c.queued) } else { String::new() };
        Some(summary::throttle(
            reasons::PARALLELISM_REACHED,
            format!("{running} partition(s) in progress{queued}, spec.parallelism is {parallelism}"),
        ))
    } else if let Some(w) = walk.waiting.filter(|_| walk.selected.len() < want) {
        Some(summary::throttle(
            reasons::WAITING_FOR_SCHEDULE,
            format!("window [{}, {}) is not yet handled by the Pipeline's schedule", w.start, w.end),
        ))
    } else if walk.busy > 0 && walk.selected.len() < want {
        Some(summary::throttle(
            reasons::WINDOWS_BUSY,
            format!("{} window(s) have runs in progress elsewhere", walk.busy),
        ))
    } else {
        None
    }
}

/// Why the backfill failed, if it did: reason and message.
fn failure(halt: &Halt<'_>, c: &PartitionCounts, quota: Option<&str>) -> Option<(&'static str, String)> {
    if halt.settled {
        return None;
    }
    if let Some((step, never)) = &halt.never_fits {
        return Some((reasons::QUOTA_NEVER_FITS, format!("step {step}: {}", never.describe(quota.unwrap_or("?")))));
    }
    if !halt.failed_stop {
        return None;
    }
    let max = halt.max_failed.unwrap_or(0);
    Some((
        reasons::MAX_FAILED_PARTITIONS,
        format!("{} partition(s) failed, spec.failurePolicy.maxFailedPartitions is {max}", c.failed),
    ))
}
