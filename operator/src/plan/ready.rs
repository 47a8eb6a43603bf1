//! The `Ready` condition from the problems the validation found.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::conditions::{DesiredCondition, reasons, types};

/// An Event the reconciler should publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The Event for a change of the `Ready` condition: a Warning when the spec becomes invalid or
/// its problems change, a Normal event when it becomes valid again; nothing otherwise, so a
/// repeated reconcile never repeats an Event.
pub fn ready_event(previous: Option<&Condition>, desired: &DesiredCondition) -> Option<PlannedEvent> {
    let was_invalid = previous.is_some_and(|p| p.status == "False" && invalid_reason(&p.reason).is_some());
    if !desired.status {
        let same = previous.is_some_and(|p| was_invalid && p.reason == desired.reason && p.message == desired.message);
        return (!same).then(|| PlannedEvent {
            warning: true,
            reason: invalid_reason(&desired.reason).unwrap_or(reasons::INVALID_SPEC),
            note: desired.message.clone(),
        });
    }
    was_invalid.then(|| PlannedEvent { warning: false, reason: "SpecValid", note: "the spec is valid again".into() })
}

/// The reasons `ready_condition` gives a spec with problems.
fn invalid_reason(reason: &str) -> Option<&'static str> {
    [reasons::INVALID_SPEC, reasons::SERVICE_ACCOUNT_NOT_ALLOWED].into_iter().find(|r| *r == reason)
}

/// `Ready=True` when there are no problems, else `Ready=False` with the problems joined into the
/// message and reason `ServiceAccountNotAllowed` when a step's ServiceAccount is refused (the
/// security refusal is named first), `InvalidSpec` otherwise.
pub fn ready_condition(problems: &[String]) -> DesiredCondition {
    if problems.is_empty() {
        return DesiredCondition::new(types::READY, true, reasons::RECONCILED, "spec is valid");
    }
    let reason = if problems.iter().any(|p| crate::tenancy::is_refusal(p)) {
        reasons::SERVICE_ACCOUNT_NOT_ALLOWED
    } else {
        reasons::INVALID_SPEC
    };
    DesiredCondition::new(types::READY, false, reason, problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_make_it_not_ready() {
        let c = ready_condition(&["spec.schedule: bad".into(), "spec.timeZone: bad".into()]);
        assert!(!c.status);
        assert_eq!(c.reason, "InvalidSpec");
        assert_eq!(c.message, "spec.schedule: bad; spec.timeZone: bad");
        assert!(ready_condition(&[]).status);
    }

    fn condition(reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: if reason == "Reconciled" { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-24T10:00:00Z".parse().unwrap(),
            ),
        }
    }

    #[test]
    fn events_only_on_change() {
        let bad = ready_condition(&["spec.schedule: bad".into()]);
        let good = ready_condition(&[]);
        assert!(ready_event(None, &bad).unwrap().warning);
        assert_eq!(ready_event(Some(&condition("InvalidSpec", "spec.schedule: bad")), &bad), None);
        assert!(ready_event(Some(&condition("InvalidSpec", "other")), &bad).is_some());
        assert_eq!(ready_event(Some(&condition("InvalidSpec", "x")), &good).unwrap().reason, "SpecValid");
        assert_eq!(ready_event(Some(&condition("Reconciled", "spec is valid")), &good), None);
        assert_eq!(ready_event(None, &good), None);
    }

    #[test]
    fn a_refused_service_account_has_its_own_reason_and_event() {
        let refusal = crate::tenancy::problem(
            &crate::tenancy::Refused { step: "extract".into(), account: "db-admin".into() },
            "team-a",
        );
        let c = ready_condition(&["spec.schedule: bad".into(), refusal.clone()]);
        assert_eq!(c.reason, "ServiceAccountNotAllowed");
        let event = ready_event(None, &c).unwrap();
        assert_eq!((event.warning, event.reason), (true, "ServiceAccountNotAllowed"));
        assert_eq!(ready_event(Some(&condition("ServiceAccountNotAllowed", &c.message)), &c), None);
        // Fixing the account but not the schedule: a new Warning with the remaining reason.
        let rest = ready_condition(&["spec.schedule: bad".into()]);
        assert_eq!(
            ready_event(Some(&condition("ServiceAccountNotAllowed", &c.message)), &rest).unwrap().reason,
            "InvalidSpec"
        );
        let good = ready_condition(&[]);
        assert_eq!(
            ready_event(Some(&condition("ServiceAccountNotAllowed", &refusal)), &good).unwrap().reason,
            "SpecValid"
        );
    }
}
