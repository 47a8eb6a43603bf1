//! Unit tests of the Dataset `decide`.

use super::*;
use crate::api::{ColumnSpec, FreshnessState};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec(extra: serde_json::Value) -> DatasetSpec {
    let mut v =
        serde_json::json!({"owner": "team-a", "layer": "Raw", "freshness": {"maxAge": "2h", "warnAfter": "1h"}});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn run(
    id: &str,
    start: &str,
    end: &str,
    finished: &str,
    report: Option<Result<Option<Report>, String>>,
) -> ProducedRun {
    ProducedRun {
        pipeline: "ingest".into(),
        run_id: id.into(),
        step: "extract".into(),
        window: Window { start: ts(start), end: ts(end) },
        finished: ts(finished),
        report,
    }
}

fn decide_at(spec: &DatasetSpec, status: &DatasetStatus, produced: Vec<ProducedRun>, now: &str) -> Plan {
    decide(&Input {
        spec,
        status,
        generation: Some(1),
        now: ts(now),
        produced,
        producers: vec!["ingest".into()],
        consumers: vec![],
        problems: vec![],
    })
}

fn cond<'a>(status: &'a DatasetStatus, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::find(&status.conditions, t).unwrap()
}

#[test]
fn never_produced_is_unknown_without_an_event() {
    let spec = spec(serde_json::json!({}));
    let plan = decide_at(&spec, &DatasetStatus::default(), vec![], "2026-11-24T12:00:00Z");
    assert_eq!(plan.status.freshness.as_ref().unwrap().state, FreshnessState::Unknown);
    assert_eq!(cond(&plan.status, "Fresh").status, "Unknown");
    assert!(plan.events.is_empty());
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn a_successful_run_sets_the_watermark_and_requeues_at_the_warning_threshold() {
    let spec = spec(serde_json::json!({}));
    let r = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(None)));
    let plan = decide_at(&spec, &DatasetStatus::default(), vec![r], "2026-11-24T11:00:06Z");
    let st = &plan.status;
    assert_eq!(st.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"));
    assert_eq!(st.last_updated.as_ref().unwrap().0, ts("2026-11-24T11:00:05Z"));
    assert_eq!(st.produced_by.as_ref().unwrap().run, "r1");
    assert_eq!(st.freshness.as_ref().unwrap().state, FreshnessState::Fresh);
    // Warning at watermark + 1h: 12:00:00, exactly 59m54s from now.
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_secs(59 * 60 + 54)));
    assert_eq!(plan.events[0].reason, "Fresh");
}

#[test]
fn the_state_turns_warning_then_stale_at_the_thresholds_with_events() {
    let spec = spec(serde_json::json!({}));
    let r = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(None)));
    let fresh = decide_at(&spec, &DatasetStatus::default(), vec![r.clone()], "2026-11-24T11:30:00Z").status;
    let warn = decide_at(&spec, &fresh, vec![r.clone()], "2026-11-24T12:00:00Z");
    assert_eq!(warn.status.freshness.as_ref().unwrap().state, FreshnessState::Warning);
    assert_eq!(warn.events[0].reason, "FreshnessWarning");
    assert!(warn.events[0].warning);
    assert_eq!(warn.requeue_after, Some(SignedDuration::from_hours(1)));
    let stale = decide_at(&spec, &warn.status, vec![r], "2026-11-24T13:00:00Z");
    assert_eq!(stale.status.freshness.as_ref().unwrap().state, FreshnessState::Stale);
    assert_eq!(stale.events[0].reason, "Stale");
    assert_eq!(cond(&stale.status, "Fresh").status, "False");
    assert_eq!(stale.requeue_after, None);
}

#[test]
fn the_watermark_never_moves_back_for_an_old_window() {
    let spec = spec(serde_json::json!({}));
    let new = run("new", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(None)));
    let old = run("old", "2026-10-01T00:00:00Z", "2026-10-01T01:00:00Z", "2026-11-24T11:30:00Z", Some(Ok(None)));
    let first = decide_at(&spec, &DatasetStatus::default(), vec![new.clone()], "2026-11-24T11:01:00Z").status;
    let after = decide_at(&spec, &first, vec![new, old.clone()], "2026-11-24T11:31:00Z").status;
    assert_eq!(after.watermark, first.watermark);
    assert_eq!(after.produced_by.as_ref().unwrap().run, "new");
    // Only the old run visible (the new run's Jobs were pruned): still no move back.
    let later = decide_at(&spec, &after, vec![old], "2026-11-24T11:32:00Z").status;
    assert_eq!(later.watermark, first.watermark);
}

#[test]
fn a_reported_watermark_and_rows_are_used() {
    let spec = spec(serde_json::json!({}));
    let report = Report { rows_written: Some(42), watermark: Some(ts("2026-11-24T10:45:00Z")), schema: None };
    let r = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(Some(report))));
    let st = decide_at(&spec, &DatasetStatus::default(), vec![r], "2026-11-24T11:01:00Z").status;
    assert_eq!(st.watermark.as_ref().unwrap().0, ts("2026-11-24T10:45:00Z"));
    assert_eq!(st.rows_written, Some(42));
    assert_eq!(cond(&st, REPORT_VALID).reason, "Reported");
}

#[test]
fn a_malformed_report_is_a_condition_and_an_event_and_the_window_end_is_used() {
    let spec = spec(serde_json::json!({}));
    let r = run(
        "r1",
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00Z",
        "2026-11-24T11:00:05Z",
        Some(Err("report is not valid JSON".into())),
    );
    let plan = decide_at(&spec, &DatasetStatus::default(), vec![r], "2026-11-24T11:01:00Z");
    assert_eq!(plan.status.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"));
    let c = cond(&plan.status, REPORT_VALID);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "MalformedReport"));
    assert!(plan.events.iter().any(|e| e.reason == "MalformedReport" && e.warning));
}

fn col(name: &str, type_: &str, nullable: bool) -> ColumnSpec {
    ColumnSpec { name: name.into(), type_: type_.into(), nullable }
}

#[test]
fn a_dropped_contract_column_flips_schema_conformant_once() {
    let spec = spec(serde_json::json!({"contract": {"policy": "Block", "columns": [
        {"name": "id", "type": "bigint", "nullable": false}, {"name": "amount", "type": "decimal(12,2)"}]}}));
    let good = Report {
        rows_written: None,
        watermark: None,
        schema: Some(vec![col("id", "bigint", false), col("amount", "decimal(12,2)", true)]),
    };
    let r1 = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(Some(good))));
    let first = decide_at(&spec, &DatasetStatus::default(), vec![r1.clone()], "2026-11-24T11:01:00Z");
    assert_eq!(cond(&first.status, "SchemaConformant").status, "True");
    let bad = Report { rows_written: None, watermark: None, schema: Some(vec![col("id", "bigint", false)]) };
    let r2 = run("r2", "2026-11-24T11:00:00Z", "2026-11-24T12:00:00Z", "2026-11-24T12:00:05Z", Some(Ok(Some(bad))));
    let second = decide_at(&spec, &first.status, vec![r1.clone(), r2.clone()], "2026-11-24T12:01:00Z");
    let c = cond(&second.status, "SchemaConformant");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ContractViolated"));
    assert!(c.message.contains("column \"amount\" is missing"), "{}", c.message);
    assert_eq!(second.events.iter().filter(|e| e.reason == "ContractViolated").count(), 1);
    let third = decide_at(&spec, &second.status, vec![r1, r2], "2026-11-24T12:02:00Z");
    assert!(third.events.iter().all(|e| e.reason != "ContractViolated"), "no repeated Event");
    assert_eq!(third.status, second.status, "nothing changed, so no status write");
}

#[test]
fn lineage_is_copied_sorted() {
    let spec = spec(serde_json::json!({}));
    let plan = decide(&Input {
        spec: &spec,
        status: &DatasetStatus::default(),
        generation: Some(1),
        now: ts("2026-11-24T11:00:00Z"),
        produced: vec![],
        producers: vec!["a".into()],
        consumers: vec!["b".into(), "c".into()],
        problems: vec![],
    });
    assert_eq!(plan.status.producers, ["a"]);
    assert_eq!(plan.status.consumers, ["b", "c"]);
}

fn report(
    rows: Option<i64>,
    watermark: Option<&str>,
    schema: Option<Vec<ColumnSpec>>,
) -> Option<Result<Option<Report>, String>> {
    Some(Ok(Some(Report { rows_written: rows, watermark: watermark.map(ts), schema })))
}

fn contract_spec() -> DatasetSpec {
    spec(serde_json::json!({"contract": {"policy": "Block", "columns": [
        {"name": "id", "type": "bigint", "nullable": false}, {"name": "amount", "type": "decimal(12,2)"}]}}))
}

fn good_schema() -> Option<Vec<ColumnSpec>> {
    Some(vec![col("id", "bigint", false), col("amount", "decimal(12,2)", true)])
}

fn broken_schema() -> Option<Vec<ColumnSpec>> {
    Some(vec![col("id", "bigint", false)])
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

// Defect 4: a Complete Job whose pod is not cached yet must not move the watermark to the window
// end, or the report (its earlier watermark, rows and schema) is lost when it arrives.
#[test]
fn a_complete_run_whose_report_is_not_read_yet_waits_for_it() {
    let spec = contract_spec();
    let no_pod = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", None);
    let first = decide_at(&spec, &DatasetStatus::default(), vec![no_pod], "2026-11-24T11:00:06Z");
    assert_eq!(first.status.watermark, None, "nothing is applied before the report is read");
    assert_eq!(first.requeue_after, Some(SignedDuration::from_secs(2)), "looks again soon");
    assert!(reasons(&first).is_empty(), "{:?}", first.events);
    let with_pod = run(
        "r1",
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00Z",
        "2026-11-24T11:00:05Z",
        report(Some(7), Some("2026-11-24T10:45:00Z"), good_schema()),
    );
    let second = decide_at(&spec, &first.status, vec![with_pod], "2026-11-24T11:00:07Z").status;
    assert_eq!(second.watermark.as_ref().unwrap().0, ts("2026-11-24T10:45:00Z"));
    assert_eq!(second.rows_written, Some(7));
    assert_eq!(second.observed_schema, good_schema().unwrap());
    assert_eq!(cond(&second, "SchemaConformant").status, "True");
}

#[test]
fn a_report_that_never_arrives_is_given_up_after_the_grace_with_a_warning() {
    let spec = spec(serde_json::json!({}));
    let no_pod = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", None);
    let waiting = decide_at(&spec, &DatasetStatus::default(), vec![no_pod.clone()], "2026-11-24T11:00:34Z");
    assert_eq!(waiting.status.watermark, None, "still within the grace");
    let given_up = decide_at(&spec, &waiting.status, vec![no_pod.clone()], "2026-11-24T11:00:36Z");
    assert_eq!(given_up.status.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"), "the window end");
    let c = cond(&given_up.status, REPORT_VALID);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "ReportUnavailable"));
    assert!(c.message.contains("run r1") && c.message.contains("within 30s"), "{}", c.message);
    let warning = given_up.events.iter().find(|e| e.reason == "ReportUnavailable").expect("a Warning Event");
    assert!(warning.warning);
    let again = decide_at(&spec, &given_up.status, vec![no_pod], "2026-11-24T11:00:37Z");
    assert!(!reasons(&again).contains(&"ReportUnavailable"), "once");
    // The pod shows up after all: its rows fill in, the watermark does not move back.
    let late = run(
        "r1",
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00Z",
        "2026-11-24T11:00:05Z",
        report(Some(7), Some("2026-11-24T10:45:00Z"), None),
    );
    let filled = decide_at(&spec, &again.status, vec![late], "2026-11-24T11:00:40Z").status;
    assert_eq!(filled.rows_written, Some(7));
    assert_eq!(filled.watermark, given_up.status.watermark);
    assert_eq!(filled.last_updated, given_up.status.last_updated);
}

// Defect 5: a reported watermark is bounded by the run's finish (and now) plus a clock skew.
#[test]
fn a_watermark_in_the_future_is_refused_and_the_window_end_used() {
    let spec = spec(serde_json::json!({}));
    let r = run(
        "r1",
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00Z",
        "2026-11-24T11:00:05Z",
        report(Some(5), Some("2027-06-01T00:00:00Z"), None),
    );
    let plan = decide_at(&spec, &DatasetStatus::default(), vec![r], "2026-11-24T11:01:00Z");
    assert_eq!(plan.status.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"));
    assert_eq!(plan.status.rows_written, Some(5), "the rest of the report is used");
    let c = cond(&plan.status, REPORT_VALID);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "WatermarkOutOfBounds"));
    assert!(c.message.contains("2027-06-01T00:00:00Z") && c.message.contains("plus 5m"), "{}", c.message);
    assert!(plan.events.iter().any(|e| e.reason == "WatermarkOutOfBounds" && e.warning), "{:?}", plan.events);
    // The dataset turns Warning at the window end + 1h as usual, not in 2027.
    assert_eq!(plan.status.freshness.as_ref().unwrap().warn_at.as_ref().unwrap().0, ts("2026-11-24T12:00:00Z"));
}

#[test]
fn a_watermark_within_the_clock_skew_of_the_finish_is_accepted() {
    let spec = spec(serde_json::json!({}));
    let at = |wm: &str, finished: &str| {
        let r = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", finished, report(None, Some(wm), None));
        decide_at(&spec, &DatasetStatus::default(), vec![r], "2026-11-24T11:00:06Z").status.watermark.unwrap().0
    };
    // Finished 11:00:05: up to 11:05:05 is accepted.
    assert_eq!(at("2026-11-24T11:05:05Z", "2026-11-24T11:00:05Z"), ts("2026-11-24T11:05:05Z"));
    assert_eq!(at("2026-11-24T11:05:06Z", "2026-11-24T11:00:05Z"), ts("2026-11-24T11:00:00Z"));
    // A finish time ahead of now (a skewed clock) does not widen the bound beyond now + 5m.
    assert_eq!(at("2026-11-24T11:06:00Z", "2026-11-24T11:10:00Z"), ts("2026-11-24T11:00:00Z"));
}

// Defect 13: every producing run's report is checked against the contract, not only the one
// that moved the watermark.
#[test]
fn a_backfill_of_an_old_window_with_a_broken_schema_is_flagged_without_moving_the_watermark() {
    let spec = contract_spec();
    let r1 = run(
        "r1",
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00Z",
        "2026-11-24T11:00:05Z",
        report(None, None, good_schema()),
    );
    let first = decide_at(&spec, &DatasetStatus::default(), vec![r1.clone()], "2026-11-24T11:01:00Z");
    assert_eq!(cond(&first.status, "SchemaConformant").status, "True");
    let old = run(
        "20261001-0000-1h",
        "2026-10-01T00:00:00Z",
        "2026-10-01T01:00:00Z",
        "2026-11-24T11:30:00Z",
        report(None, None, broken_schema()),
    );
    let second = decide_at(&spec, &first.status, vec![r1.clone(), old.clone()], "2026-11-24T11:31:00Z");
    assert_eq!(second.status.watermark, first.status.watermark, "an old window does not move it");
    let c = cond(&second.status, "SchemaConformant");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ContractViolated"));
    for part in ["20261001-0000-1h", "extract", "2026-10-01T00:00:00Z", "column \"amount\" is missing"] {
        assert!(c.message.contains(part), "{part} in {}", c.message);
    }
    assert_eq!(reasons(&second).iter().filter(|r| **r == "ContractViolated").count(), 1);
    // Decided again on the same Jobs, or after the newer run's Jobs were pruned: nothing changes.
    let third = decide_at(&spec, &second.status, vec![r1.clone(), old.clone()], "2026-11-24T11:32:00Z");
    assert_eq!(third.status, second.status);
    assert!(third.events.is_empty(), "{:?}", third.events);
    // A newer run reporting a conformant schema clears it; the old run is not checked again.
    let r3 = run(
        "r3",
        "2026-11-24T11:00:00Z",
        "2026-11-24T12:00:00Z",
        "2026-11-24T12:00:05Z",
        report(None, None, good_schema()),
    );
    let fourth = decide_at(&spec, &third.status, vec![old.clone(), r3], "2026-11-24T12:01:00Z").status;
    assert_eq!(cond(&fourth, "SchemaConformant").status, "True");
    let fifth = decide_at(&spec, &fourth, vec![old], "2026-11-24T12:02:00Z").status;
    assert_eq!(cond(&fifth, "SchemaConformant").status, "True", "the old run was checked already");
}

#[test]
fn a_run_whose_report_is_pending_is_checked_when_it_arrives_even_after_a_later_run() {
    let spec = contract_spec();
    let pending = run("old", "2026-10-01T00:00:00Z", "2026-10-01T01:00:00Z", "2026-11-24T12:00:05Z", None);
    let later = run(
        "r2",
        "2026-11-24T11:00:00Z",
        "2026-11-24T12:00:00Z",
        "2026-11-24T12:00:06Z",
        report(None, None, good_schema()),
    );
    let first = decide_at(&spec, &DatasetStatus::default(), vec![pending, later.clone()], "2026-11-24T12:00:07Z");
    assert_eq!(first.status.watermark.as_ref().unwrap().0, ts("2026-11-24T12:00:00Z"), "the later run applies");
    assert_eq!(first.requeue_after, Some(SignedDuration::from_secs(2)));
    let arrived = run(
        "old",
        "2026-10-01T00:00:00Z",
        "2026-10-01T01:00:00Z",
        "2026-11-24T12:00:05Z",
        report(None, None, broken_schema()),
    );
    let second = decide_at(&spec, &first.status, vec![arrived, later], "2026-11-24T12:00:08Z");
    let violation = second.events.iter().find(|e| e.reason == "ContractViolated").expect("the old run is checked");
    assert!(violation.note.contains("old"), "{}", violation.note);
}

#[test]
fn a_late_pass_never_moves_the_watermark_past_its_window_nor_back() {
    let spec = spec(serde_json::json!({}));
    // The 10:00 window's own run: watermark 11:00.
    let own =
        run("20261124-1000-1h", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(None)));
    let st = decide_at(&spec, &DatasetStatus::default(), vec![own.clone()], "2026-11-24T11:00:06Z").status;
    assert_eq!(st.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"));
    // A late pass of the 08:00 window finishes at 13:00 and reports "data complete up to now":
    // capped at its window end (09:00), below the watermark, so nothing moves and the Dataset
    // turns Warning at 12:00 and Stale at 13:00 as without it.
    let report = Report { rows_written: Some(7), watermark: Some(ts("2026-11-24T13:00:00Z")), schema: None };
    let late = run(
        "20261124-0800-1h-late3",
        "2026-11-24T08:00:00Z",
        "2026-11-24T09:00:00Z",
        "2026-11-24T13:00:00Z",
        Some(Ok(Some(report.clone()))),
    );
    let plan = decide_at(&spec, &st, vec![own.clone(), late.clone()], "2026-11-24T13:00:01Z");
    assert_eq!(plan.status.watermark.as_ref().unwrap().0, ts("2026-11-24T11:00:00Z"), "not moved by the late pass");
    assert_eq!(plan.status.produced_by.as_ref().unwrap().run, "20261124-1000-1h");
    assert_eq!(plan.status.freshness.as_ref().unwrap().state, FreshnessState::Stale);
    // The same report from the window's own run would have moved it.
    let own_late = ProducedRun { run_id: "20261124-0800-1h".into(), ..late };
    let plan = decide_at(&spec, &st, vec![own, own_late], "2026-11-24T13:00:01Z");
    assert_eq!(plan.status.watermark.as_ref().unwrap().0, ts("2026-11-24T13:00:00Z"));
}
