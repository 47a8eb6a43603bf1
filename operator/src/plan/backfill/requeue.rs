//! Stage 7 of a Backfill's decision: when to look again: a retry's backoff ending, a free Job
//! slot, windows busy elsewhere, inputs whose contract blocks, names held by others, or the rest
//! of a walk, a quota without room (bounding a lagging watch). Quota, Pipeline and own-Job changes
//! wake the backfill by themselves. Pure.

use jiff::{SignedDuration, Timestamp};

use super::launch::Launches;
use super::summary::reasons;
use super::{BUSY_RETRY, CAP_RETRY, CONTRACT_RETRY, NAME_CONFLICT_RETRY, PROTECT_RETRY, QUOTA_RETRY, SCAN_CONTINUE};
use crate::api::Throttle;

/// The soonest of the reasons to look again, if any.
pub fn after(now: Timestamp, launches: &Launches, throttled: Option<&Throttle>) -> Option<SignedDuration> {
    let mut next: Option<SignedDuration> =
        launches.wake.map(|t| t.duration_since(now).max(SignedDuration::from_millis(10)));
    let mut sooner = |d: SignedDuration| next = Some(next.map_or(d, |n| n.min(d)));
    let walk = &launches.walk;
    if walk.exhausted {
        // A walk that recorded skipped windows continues at once; one that only passed over
        // windows busy elsewhere waits like them.
        sooner(if walk.skipped.is_empty() { BUSY_RETRY } else { SCAN_CONTINUE });
    }
    if walk.busy > 0 {
        sooner(BUSY_RETRY);
    }
    let reason = throttled.map(|t| t.reason.as_str());
    if reason == Some(reasons::JOB_CAP_REACHED) {
        sooner(CAP_RETRY);
    }
    if reason == Some(reasons::QUOTA_EXHAUSTED) {
        sooner(QUOTA_RETRY);
    }
    if reason == Some(reasons::INPUT_CONTRACT_VIOLATED) {
        sooner(CONTRACT_RETRY);
    }
    if matches!(reason, Some(reasons::PROTECTED_DATASET_STALE | reasons::PROTECTED_DATASET_MISSING)) {
        sooner(PROTECT_RETRY);
    }
    if !launches.conflict_hits.is_empty() {
        sooner(NAME_CONFLICT_RETRY);
    }
    next
}
