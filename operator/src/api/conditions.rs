//! Kubernetes-convention conditions: keyed by type, CamelCase reasons, `lastTransitionTime` that
//! changes only when the status flips, `observedGeneration` on each condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types used by Sluice kinds.
pub mod types {
    pub const READY: &str = "Ready";
    pub const RUNNING: &str = "Running";
    pub const DEGRADED: &str = "Degraded";
    pub const SUSPENDED: &str = "Suspended";
    pub const FRESH: &str = "Fresh";
    pub const SCHEMA_CONFORMANT: &str = "SchemaConformant";
    pub const PROGRESSING: &str = "Progressing";
    pub const THROTTLED: &str = "Throttled";
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
}

/// Condition reasons shared by the kinds.
pub mod reasons {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A step names a ServiceAccount the namespace does not allow for Sluice steps.
    pub const SERVICE_ACCOUNT_NOT_ALLOWED: &str = "ServiceAccountNotAllowed";
    pub const RECONCILED: &str = "Reconciled";
}

/// A condition as the deciding code wants it, without timestamps. `status` is True or False;
/// `unknown` makes it Unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub unknown: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, unknown: false, reason: reason.into(), message: message.into() }
    }

    /// A condition whose status is Unknown.
    pub fn unknown(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status: false, unknown: true, reason: reason.into(), message: message.into() }
    }

    fn status_str(&self) -> &'static str {
        match (self.unknown, self.status) {
            (true, _) => "Unknown",
            (false, true) => "True",
            (false, false) => "False",
        }
    }
}

/// Merges desired conditions into the current list. A condition whose status is unchanged keeps
/// its `lastTransitionTime`; reason, message and observedGeneration are refreshed. Conditions of
/// types not in `desired` are kept as they are. The result is sorted by type, so that equal
/// inputs give equal lists and an unchanged status is never rewritten.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> =
        current.iter().filter(|c| !desired.iter().any(|d| d.type_ == c.type_)).cloned().collect();
    for d in desired {
        let status = d.status_str();
        let previous = current.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: d.type_.to_string(),
            status: status.to_string(),
            reason: d.reason.clone(),
            message: d.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of this type is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let t0 = time("2026-11-24T10:00:00Z");
        let t1 = time("2026-11-24T11:00:00Z");
        let first = merge(&[], &[DesiredCondition::new("Ready", true, "Reconciled", "ok")], Some(1), &t0);
        let second = merge(&first, &[DesiredCondition::new("Ready", true, "Reconciled", "still ok")], Some(2), &t1);
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_when_status_flips() {
        let t0 = time("2026-11-24T10:00:00Z");
        let t1 = time("2026-11-24T11:00:00Z");
        let first = merge(&[], &[DesiredCondition::new("Ready", true, "Reconciled", "ok")], Some(1), &t0);
        let second = merge(&first, &[DesiredCondition::new("Ready", false, "InvalidSpec", "bad")], Some(1), &t1);
        assert_eq!(second[0].last_transition_time, t1);
        assert_eq!(second[0].status, "False");
        assert_eq!(second[0].reason, "InvalidSpec");
    }

    #[test]
    fn other_types_are_kept_and_output_is_sorted() {
        let t0 = time("2026-11-24T10:00:00Z");
        let first = merge(&[], &[DesiredCondition::new("Running", false, "Idle", "")], Some(1), &t0);
        let second = merge(&first, &[DesiredCondition::new("Degraded", false, "Healthy", "")], Some(1), &t0);
        let types: Vec<_> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Degraded", "Running"]);
        assert!(!is_true(&second, "Running"));
    }
}
