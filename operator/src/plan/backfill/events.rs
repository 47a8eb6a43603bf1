//! Stage 6 of a Backfill's decision, its Events: on transitions only (completed, failed,
//! suspended and resumed, admissions held back and released), so a repeated decision repeats
//! none. Pure.

use super::summary::{Outcome, reasons};
use crate::api::conditions::{self, types};
use crate::api::{BackfillStatus, PartitionCounts, Throttle};
use crate::plan::ready::PlannedEvent;

/// Reason of the Event when admissions start being held back, or held back for another reason.
pub const THROTTLED: &str = "Throttled";
/// Reason of the Event when admissions are no longer held back.
pub const UNTHROTTLED: &str = "Unthrottled";

fn describe(t: &Throttle) -> String {
    match &t.message {
        Some(m) if !m.is_empty() => format!("{}: {m}", t.reason),
        _ => t.reason.clone(),
    }
}

/// `Throttled` (with the reason) when admissions become held back or the reason changes,
/// `Unthrottled` (naming what held them) when they are released while partitions are still
/// pending. Suspension has its own `Suspended` and `Resumed` Events, so it is left out here; a
/// change only in the message (free quota moving) is no new Event.
pub fn throttle(previous: Option<&Throttle>, current: Option<&Throttle>, pending: bool) -> Option<PlannedEvent> {
    let own = |t: Option<&Throttle>| t.filter(|t| t.reason != reasons::SUSPENDED).cloned();
    match (own(previous), own(current)) {
        (before, Some(now)) if before.as_ref().is_none_or(|b| b.reason != now.reason) => Some(PlannedEvent {
            warning: false,
            reason: THROTTLED,
            note: format!("admissions held back: {}", describe(&now)),
        }),
        (Some(before), None) if pending && current.is_none() => Some(PlannedEvent {
            warning: false,
            reason: UNTHROTTLED,
            note: format!("admitting partitions again (was {})", before.reason),
        }),
        _ => None,
    }
}

/// Reason of the Event when protected Datasets no longer hold admissions.
pub const PROTECTED_DATASETS_FRESH: &str = "ProtectedDatasetsFresh";

/// A Warning with the throttle's own reason (`ProtectedDatasetStale`, `ProtectedDatasetMissing`)
/// when protected Datasets start holding admissions, and `ProtectedDatasetsFresh` when they stop.
/// Their own reasons, because Events aggregate by reason: a pause is told apart from other
/// throttles, and its note names the Datasets.
pub fn protection(previous: Option<&Throttle>, current: Option<&Throttle>) -> Option<PlannedEvent> {
    let protected = |t: Option<&Throttle>| {
        t.filter(|t| matches!(t.reason.as_str(), reasons::PROTECTED_DATASET_STALE | reasons::PROTECTED_DATASET_MISSING))
            .cloned()
    };
    match (protected(previous), protected(current)) {
        (before, Some(now)) if before.as_ref().is_none_or(|b| b.reason != now.reason) => Some(PlannedEvent {
            warning: true,
            reason: if now.reason == reasons::PROTECTED_DATASET_STALE {
                reasons::PROTECTED_DATASET_STALE
            } else {
                reasons::PROTECTED_DATASET_MISSING
            },
            note: now.message.unwrap_or_default(),
        }),
        (Some(_), None) => Some(PlannedEvent {
            warning: false,
            reason: PROTECTED_DATASETS_FRESH,
            note: "protected Datasets are fresh: admitting partitions again".into(),
        }),
        _ => None,
    }
}

/// The Events of the change from `previous` to `current` with `outcome`.
pub fn transitions(
    previous: &BackfillStatus,
    current: &BackfillStatus,
    outcome: &Outcome,
    suspend: bool,
) -> Vec<PlannedEvent> {
    let event = |warning, reason, note| PlannedEvent { warning, reason, note };
    let mut events = Vec::new();
    let was = |t: &str| conditions::is_true(&previous.conditions, t);
    let c = current.partitions.clone().unwrap_or_default();
    if outcome.complete && !was(types::COMPLETE) {
        events.push(event(false, "Completed", completed(&c)));
    }
    if let Some((reason, message)) = &outcome.failed
        && !(was(types::FAILED)
            && conditions::find(&previous.conditions, types::FAILED).is_some_and(|f| f.reason == *reason))
    {
        events.push(event(true, reason, message.clone()));
    }
    let was_suspended = previous.throttled.as_ref().is_some_and(|t| t.reason == reasons::SUSPENDED);
    if suspend && !was_suspended {
        events.push(event(false, "Suspended", "no new Job starts; running ones finish".into()));
    } else if !suspend && was_suspended {
        events.push(event(false, "Resumed", "admitting partitions again".into()));
    }
    let pending = c.pending > 0 && !outcome.complete && outcome.failed.is_none();
    events.extend(throttle(previous.throttled.as_ref(), current.throttled.as_ref(), pending));
    events.extend(protection(previous.throttled.as_ref(), current.throttled.as_ref()));
    events
}

fn completed(c: &PartitionCounts) -> String {
    format!("{} succeeded, {} failed, {} skipped of {} partitions", c.succeeded, c.failed, c.skipped, c.total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(reason: &str, message: &str) -> Throttle {
        serde_json::from_value(serde_json::json!({"reason": reason, "message": message})).unwrap()
    }

    #[test]
    fn throttling_and_release_are_announced_with_the_reason() {
        let quota = t(reasons::QUOTA_EXHAUSTED, "requests.cpu needed 1, free 0.5");
        let e = throttle(None, Some(&quota), true).unwrap();
        assert_eq!(
            (e.reason, e.note.as_str()),
            (THROTTLED, "admissions held back: QuotaExhausted: requests.cpu needed 1, free 0.5")
        );
        assert!(throttle(Some(&quota), Some(&t(reasons::QUOTA_EXHAUSTED, "free 0.2")), true).is_none(), "same reason");
        let other = throttle(Some(&quota), Some(&t(reasons::PARALLELISM_REACHED, "")), true).unwrap();
        assert_eq!(other.note, "admissions held back: ParallelismReached");
        let released = throttle(Some(&quota), None, true).unwrap();
        assert_eq!(
            (released.reason, released.note.as_str()),
            (UNTHROTTLED, "admitting partitions again (was QuotaExhausted)")
        );
        assert!(throttle(Some(&quota), None, false).is_none(), "nothing left to admit: no release to announce");
        assert!(throttle(None, None, true).is_none());
    }

    #[test]
    fn a_protection_pause_and_its_end_have_their_own_events() {
        let stale = t(reasons::PROTECTED_DATASET_STALE, "Dataset daily is Stale (older than maxAge 12s)");
        let e = protection(None, Some(&stale)).unwrap();
        assert_eq!(
            (e.warning, e.reason, e.note.as_str()),
            (true, "ProtectedDatasetStale", "Dataset daily is Stale (older than maxAge 12s)")
        );
        assert!(protection(Some(&stale), Some(&stale)).is_none(), "once per pause");
        let missing = t(reasons::PROTECTED_DATASET_MISSING, "no Dataset named x exists");
        assert_eq!(protection(Some(&stale), Some(&missing)).unwrap().reason, "ProtectedDatasetMissing");
        let quota = t(reasons::QUOTA_EXHAUSTED, "");
        assert_eq!(protection(Some(&stale), Some(&quota)).unwrap().reason, PROTECTED_DATASETS_FRESH);
        assert_eq!(protection(Some(&stale), None).unwrap().reason, PROTECTED_DATASETS_FRESH);
        assert!(protection(None, Some(&quota)).is_none());
    }

    #[test]
    fn suspension_is_left_to_its_own_events() {
        let suspended = t(reasons::SUSPENDED, "spec.suspend is true");
        assert!(throttle(None, Some(&suspended), true).is_none());
        assert!(throttle(Some(&suspended), None, true).is_none());
        // Suspended while throttled by quota: no Unthrottled, as admissions are still held.
        assert!(throttle(Some(&t(reasons::QUOTA_EXHAUSTED, "")), Some(&suspended), true).is_none());
    }
}
