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
fn a_late_report_of_the_same_run_fills_rows_without_moving_time() {
    let spec = spec(serde_json::json!({}));
    let no_pod = run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", None);
    let first = decide_at(&spec, &DatasetStatus::default(), vec![no_pod], "2026-11-24T11:00:06Z").status;
    assert_eq!(first.rows_written, None);
    let report = Report { rows_written: Some(7), watermark: None, schema: None };
    let with_pod =
        run("r1", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", "2026-11-24T11:00:05Z", Some(Ok(Some(report))));
    let second = decide_at(&spec, &first, vec![with_pod], "2026-11-24T11:00:07Z").status;
    assert_eq!(second.rows_written, Some(7));
    assert_eq!(second.last_updated, first.last_updated);
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
