//! The parts of a Backfill's status that summarize a decision: counts, progress, estimated
//! completion, throttle and conditions. Pure.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::BlockedInput;
use crate::api::conditions::{DesiredCondition, types};
use crate::api::{PartitionCounts, Throttle};
use crate::quota::{Refusal, Shortfall, quantity};

/// Throttle reasons.
pub mod reasons {
    pub const QUOTA_EXHAUSTED: &str = "QuotaExhausted";
    pub const BUDGET_LIMIT_REACHED: &str = "BudgetLimitReached";
    pub const PARALLELISM_REACHED: &str = "ParallelismReached";
    pub const JOB_CAP_REACHED: &str = "JobCapReached";
    pub const WAITING_FOR_SCHEDULE: &str = "WaitingForSchedule";
    pub const WINDOWS_BUSY: &str = "WindowsBusy";
    pub const SUSPENDED: &str = "Suspended";
    pub const QUOTA_NEVER_FITS: &str = "QuotaNeverFits";
    pub const MAX_FAILED_PARTITIONS: &str = "MaxFailedPartitionsReached";
    pub const INPUT_CONTRACT_VIOLATED: &str = "InputContractViolated";
    pub const NAME_CONFLICT: &str = "NameConflict";
    pub const DRY_RUN: &str = "DryRun";
    pub const PROTECTED_DATASET_STALE: &str = "ProtectedDatasetStale";
    pub const PROTECTED_DATASET_MISSING: &str = "ProtectedDatasetMissing";

    /// Every reason, in the order above.
    pub const ALL: [&str; 14] = [
        QUOTA_EXHAUSTED,
        BUDGET_LIMIT_REACHED,
        PARALLELISM_REACHED,
        JOB_CAP_REACHED,
        WAITING_FOR_SCHEDULE,
        WINDOWS_BUSY,
        SUSPENDED,
        QUOTA_NEVER_FITS,
        MAX_FAILED_PARTITIONS,
        INPUT_CONTRACT_VIOLATED,
        NAME_CONFLICT,
        DRY_RUN,
        PROTECTED_DATASET_STALE,
        PROTECTED_DATASET_MISSING,
    ];
}

/// Counts by phase. `processed` holds succeeded, failed and skipped windows.
pub fn counts(total: i64, processed: i64, succeeded: i64, failed: i64, running: i64) -> PartitionCounts {
    PartitionCounts {
        total,
        pending: (total - processed - running).max(0),
        running,
        succeeded,
        failed,
        skipped: (processed - succeeded - failed).max(0),
        queued: 0,
    }
}

/// Moves `queued` of the running partitions to `queued`: they wait for Kueue, none of their
/// Jobs runs.
pub fn split_queued(c: &mut PartitionCounts, queued: usize) {
    let queued = (queued as i64).min(c.running);
    c.running -= queued;
    c.queued = queued;
}

/// "done/total (pct%)", where done counts succeeded, failed and skipped partitions; 100% only
/// when all are done.
pub fn progress(c: &PartitionCounts) -> String {
    let done = c.succeeded + c.failed + c.skipped;
    let pct = if done >= c.total { 100 } else { (done * 100 / c.total).min(99) };
    format!("{done}/{} ({pct}%)", c.total)
}

/// The estimated completion from the throughput since `start`: the remaining partitions at the
/// rate at which partitions finished so far. Recomputed only when a partition finished in this
/// decision (`previous` is kept otherwise), so that the status does not change on every
/// reconcile.
pub fn estimate(
    previous: Option<&Time>,
    start: Option<Timestamp>,
    now: Timestamp,
    c: &PartitionCounts,
    finished_now: usize,
) -> Option<Time> {
    if finished_now == 0 {
        return previous.cloned();
    }
    let finished = c.succeeded + c.failed;
    let remaining = c.pending + c.running + c.queued;
    let start = start?;
    if finished <= 0 || remaining <= 0 {
        return None;
    }
    let elapsed = now.duration_since(start).as_millis().max(0);
    let millis = i64::try_from(elapsed.saturating_mul(i128::from(remaining)) / i128::from(finished)).ok()?;
    now.checked_add(SignedDuration::from_millis(millis)).ok().map(Time)
}

fn quantity_of(key: &str, value: i128) -> Quantity {
    Quantity(quantity::format(key, value))
}

fn shortfall_throttle(reason: &str, s: &Shortfall, context: &str) -> Throttle {
    Throttle {
        reason: reason.to_string(),
        message: Some(format!("{} ({context})", s.describe())),
        resource: Some(s.key.clone()),
        needed: Some(quantity_of(&s.key, s.needed)),
        free: Some(quantity_of(&s.key, s.free)),
    }
}

/// The throttle for a refused admission.
pub fn refused(refusal: &Refusal, quota: Option<&str>) -> Throttle {
    match refusal {
        Refusal::Quota(s) => shortfall_throttle(
            reasons::QUOTA_EXHAUSTED,
            s,
            &format!("ResourceQuota {}, beyond the reserve and Jobs not yet counted", quota.unwrap_or("?")),
        ),
        Refusal::Limit(s) => shortfall_throttle(reasons::BUDGET_LIMIT_REACHED, s, "spec.budget.limits"),
    }
}

/// A throttle without resource details.
pub fn throttle(reason: &str, message: String) -> Throttle {
    Throttle { reason: reason.to_string(), message: Some(message), resource: None, needed: None, free: None }
}

/// The throttle for inputs whose contract (`policy: Block`) is violated, naming them.
pub fn contract_violated(blocked: &[&BlockedInput]) -> Throttle {
    let named: Vec<String> = blocked.iter().map(|b| format!("Dataset {} ({})", b.dataset, b.message)).collect();
    let verb = if named.len() == 1 { "violates its contract" } else { "violate their contracts" };
    throttle(
        reasons::INPUT_CONTRACT_VIOLATED,
        format!("{} {verb} with policy Block: no partition reading it starts", named.join(", ")),
    )
}

/// The throttle for Job names held by Jobs that are not Sluice's, naming the first.
pub fn name_conflict(jobs: &[String]) -> Throttle {
    let more = match jobs.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more, see status.nameConflicts)", n - 1),
    };
    throttle(
        reasons::NAME_CONFLICT,
        format!(
            "Job {}{more} exists and is neither this Backfill's nor a Sluice Job of the Pipeline: the partition \
             that needs the name waits until that Job is deleted",
            jobs.first().map_or("?", String::as_str)
        ),
    )
}

/// The Throttled condition for a throttle (or none).
pub fn throttled_condition(throttle: Option<&Throttle>) -> DesiredCondition {
    match throttle {
        Some(t) => {
            DesiredCondition::new(types::THROTTLED, true, t.reason.clone(), t.message.clone().unwrap_or_default())
        }
        None => DesiredCondition::new(types::THROTTLED, false, "NotThrottled", "no admission is held back"),
    }
}

/// How a decision ended, for the conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Every partition is processed and none runs.
    pub complete: bool,
    /// Why the backfill failed (reason, message), if it did.
    pub failed: Option<(&'static str, String)>,
    pub suspended: bool,
    /// The spec has problems (reported in Ready).
    pub invalid: bool,
    pub throttle: Option<Throttle>,
}

/// Progressing, Throttled, Complete and Failed.
pub fn conditions(outcome: &Outcome, c: &PartitionCounts, max_failed: Option<i32>) -> Vec<DesiredCondition> {
    let mut summary = format!(
        "{} of {} partitions done ({} succeeded, {} failed, {} skipped), {} running",
        c.succeeded + c.failed + c.skipped,
        c.total,
        c.succeeded,
        c.failed,
        c.skipped,
        c.running
    );
    if c.queued > 0 {
        summary.push_str(&format!(", {} queued in Kueue", c.queued));
    }
    let progressing = if outcome.complete {
        DesiredCondition::new(types::PROGRESSING, false, "Complete", summary.clone())
    } else if let Some((reason, message)) = &outcome.failed {
        DesiredCondition::new(types::PROGRESSING, false, *reason, message.clone())
    } else if outcome.invalid {
        DesiredCondition::new(
            types::PROGRESSING,
            false,
            "InvalidSpec",
            "the spec has problems; see the Ready condition",
        )
    } else if outcome.suspended {
        DesiredCondition::new(types::PROGRESSING, false, reasons::SUSPENDED, "spec.suspend is true: no new Job starts")
    } else {
        DesiredCondition::new(types::PROGRESSING, true, "PartitionsRemaining", summary.clone())
    };
    let throttled = throttled_condition(outcome.throttle.as_ref());
    let complete = if outcome.complete {
        let reason = if c.failed > 0 { "CompletedWithFailures" } else { "AllPartitionsProcessed" };
        DesiredCondition::new(types::COMPLETE, true, reason, summary.clone())
    } else {
        DesiredCondition::new(types::COMPLETE, false, "PartitionsRemaining", summary.clone())
    };
    let failed = match &outcome.failed {
        Some((reason, message)) => DesiredCondition::new(types::FAILED, true, *reason, message.clone()),
        None => DesiredCondition::new(
            types::FAILED,
            false,
            "WithinFailurePolicy",
            match max_failed {
                Some(max) => format!("{} partition(s) failed; the backfill stops at {max}", c.failed),
                None => format!("{} partition(s) failed; no maxFailedPartitions", c.failed),
            },
        ),
    };
    vec![progressing, throttled, complete, failed]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn counts_and_progress() {
        let c = counts(100, 30, 20, 5, 4);
        assert_eq!(
            c,
            PartitionCounts { total: 100, pending: 66, running: 4, succeeded: 20, failed: 5, skipped: 5, queued: 0 }
        );
        assert_eq!(progress(&c), "30/100 (30%)");
        assert_eq!(progress(&counts(3, 2, 2, 0, 1)), "2/3 (66%)");
        assert_eq!(progress(&counts(1000, 999, 999, 0, 1)), "999/1000 (99%)", "100% only when done");
        assert_eq!(progress(&counts(3, 3, 3, 0, 0)), "3/3 (100%)");
        assert_eq!(progress(&counts(0, 0, 0, 0, 0)), "0/0 (100%)");
    }

    #[test]
    fn estimate_from_throughput_only_when_partitions_finish() {
        let start = ts("2026-11-24T10:00:00Z");
        let now = ts("2026-11-24T11:00:00Z");
        // 10 finished in an hour, 20 remaining: two more hours.
        let c = counts(30, 10, 10, 0, 2);
        let eta = estimate(None, Some(start), now, &c, 1).unwrap();
        assert_eq!(eta.0, ts("2026-11-24T13:00:00Z"));
        // Nothing finished now: the previous estimate stays (no status churn).
        assert_eq!(estimate(Some(&eta), Some(start), ts("2026-11-24T11:30:00Z"), &c, 0), Some(eta));
        assert_eq!(estimate(None, Some(start), now, &counts(10, 10, 10, 0, 0), 1), None, "nothing remains");
    }

    #[test]
    fn quota_refusal_carries_needed_and_free() {
        let refusal = Refusal::Quota(Shortfall { key: "requests.cpu".into(), needed: 1000, free: 500 });
        let t = refused(&refusal, Some("compute"));
        assert_eq!(t.reason, "QuotaExhausted");
        assert_eq!(t.needed, Some(Quantity("1".into())));
        assert_eq!(t.free, Some(Quantity("0.5".into())));
        assert!(t.message.unwrap().starts_with("requests.cpu needed 1, free 0.5 (ResourceQuota compute"));
    }

    #[test]
    fn conditions_for_each_outcome() {
        let c = counts(10, 10, 9, 1, 0);
        let done = conditions(&Outcome { complete: true, ..Default::default() }, &c, None);
        let by_type = |cs: &[DesiredCondition], t: &str| cs.iter().find(|d| d.type_ == t).cloned().unwrap();
        assert!(by_type(&done, "Complete").status);
        assert_eq!(by_type(&done, "Complete").reason, "CompletedWithFailures");
        assert!(!by_type(&done, "Progressing").status);
        assert!(!by_type(&done, "Failed").status);
        let failed = Outcome { failed: Some((reasons::QUOTA_NEVER_FITS, "too big".into())), ..Default::default() };
        let cs = conditions(&failed, &counts(10, 0, 0, 0, 0), None);
        assert!(by_type(&cs, "Failed").status);
        assert_eq!(by_type(&cs, "Failed").reason, "QuotaNeverFits");
        assert!(!by_type(&cs, "Complete").status);
        let suspended = Outcome {
            suspended: true,
            throttle: Some(throttle(reasons::SUSPENDED, "spec.suspend is true".into())),
            ..Default::default()
        };
        let cs = conditions(&suspended, &counts(10, 2, 2, 0, 1), Some(3));
        assert_eq!(by_type(&cs, "Progressing").reason, "Suspended");
        assert!(by_type(&cs, "Throttled").status);
        assert_eq!(by_type(&cs, "Failed").message, "0 partition(s) failed; the backfill stops at 3");
    }
}
