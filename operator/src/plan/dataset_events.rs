//! Events of a Dataset's checks recovering: the contract met again, a valid report after an
//! invalid one. Pure; called from `dataset::decide` with the conditions before and after.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::dataset::REPORT_VALID;
use super::ready::PlannedEvent;
use crate::api::conditions::{self, DesiredCondition, types};

/// Reason of the Event when `SchemaConformant` turns True after False.
pub const CONTRACT_RECOVERED: &str = "ContractRecovered";
/// Reason of the Event when `ReportValid` turns True after False or Unknown.
pub const REPORT_RECOVERED: &str = "ReportRecovered";

/// A Normal Event for each check that was failing in `previous` and passes in `desired`: the
/// contract (`SchemaConformant` False -> True) and the report (`ReportValid` False or Unknown ->
/// True). The violations themselves have their own Warning Events when they happen.
pub fn recoveries(previous: &[Condition], desired: &[DesiredCondition]) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    for (type_, reason, failing) in [
        (types::SCHEMA_CONFORMANT, CONTRACT_RECOVERED, &["False"][..]),
        (REPORT_VALID, REPORT_RECOVERED, &["False", "Unknown"][..]),
    ] {
        let was_failing = conditions::find(previous, type_).is_some_and(|c| failing.contains(&c.status.as_str()));
        let passes = desired.iter().find(|d| d.type_ == type_).is_some_and(|d| d.status && !d.unknown);
        if was_failing && passes {
            let message = desired.iter().find(|d| d.type_ == type_).map(|d| d.message.clone()).unwrap_or_default();
            events.push(PlannedEvent { warning: false, reason, note: message });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "x".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn a_contract_or_report_that_passes_again_is_announced_once() {
        let conforming =
            DesiredCondition::new(types::SCHEMA_CONFORMANT, true, "Conformant", "the schema meets the contract");
        let valid = DesiredCondition::new(REPORT_VALID, true, "Reported", "the report of run r2 is valid");
        let events = recoveries(
            &[condition(types::SCHEMA_CONFORMANT, "False"), condition(REPORT_VALID, "Unknown")],
            &[conforming.clone(), valid.clone()],
        );
        let reasons: Vec<_> = events.iter().map(|e| (e.reason, e.warning, e.note.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (CONTRACT_RECOVERED, false, "the schema meets the contract"),
                (REPORT_RECOVERED, false, "the report of run r2 is valid")
            ]
        );
        let passing = [condition(types::SCHEMA_CONFORMANT, "True"), condition(REPORT_VALID, "True")];
        assert!(recoveries(&passing, &[conforming.clone(), valid]).is_empty(), "no change, no Event");
        assert!(recoveries(&[], &[conforming]).is_empty(), "a first check is no recovery");
        let still = DesiredCondition::new(types::SCHEMA_CONFORMANT, false, "Violated", "missing column id");
        assert!(recoveries(&[condition(types::SCHEMA_CONFORMANT, "False")], &[still]).is_empty());
    }
}
