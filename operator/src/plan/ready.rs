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
    let was_invalid = previous.is_some_and(|p| p.reason == reasons::INVALID_SPEC);
    if !desired.status {
        let same = previous.is_some_and(|p| was_invalid && p.message == desired.message);
        return (!same).then(|| PlannedEvent {
            warning: true,
            reason: reasons::INVALID_SPEC,
            note: desired.message.clone(),
        });
    }
    was_invalid.then(|| PlannedEvent { warning: false, reason: "SpecValid", note: "the spec is valid again".into() })
}

/// `Ready=True` when there are no problems, else `Ready=False` with reason `InvalidSpec` and the
/// problems joined into the message.
pub fn ready_condition(problems: &[String]) -> DesiredCondition {
    if problems.is_empty() {
        DesiredCondition::new(types::READY, true, reasons::RECONCILED, "spec is valid")
    } else {
        DesiredCondition::new(types::READY, false, reasons::INVALID_SPEC, problems.join("; "))
    }
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
            status: if reason == "InvalidSpec" { "False" } else { "True" }.into(),
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
}
