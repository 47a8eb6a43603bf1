//! Unit tests of late passes (`spec.lateness`) in the Pipeline's `decide`: the scheduled run at
//! 11:00 covers [10:00, 11:00) and re-runs step `merge` (the only one with `lateRerun`) for the
//! windows of 09:00 and 08:00 under `-late1` and `-late2`.
use super::*;

use serde_json::json;

use crate::jobs::job_name;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn hour(start: &str) -> Window {
    let start = ts(start);
    Window { start, end: start + SignedDuration::from_hours(1) }
}

fn spec(extra: serde_json::Value) -> PipelineSpec {
    let template = json!({"spec": {"containers": [{"name": "m", "image": "x"}]}});
    let mut spec = json!({
        "schedule": "0 * * * *",
        "lateness": {"lookback": 2},
        "steps": [
            {"name": "extract", "kind": "Extract", "template": template},
            {"name": "merge", "kind": "Transform", "dependsOn": ["extract"], "lateRerun": true, "template": template},
        ]
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    serde_json::from_value(spec).unwrap()
}

fn input<'a>(spec: &'a PipelineSpec, status: &'a PipelineStatus, now: &str) -> Input<'a> {
    Input::for_test(spec, status, ts("2026-11-24T07:20:00Z"), ts(now))
}

fn handled_until(last: &str) -> PipelineStatus {
    PipelineStatus { last_schedule_time: Some(Time(ts(last))), ..Default::default() }
}

fn created(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = plan.create.iter().map(|c| job_name("p", &c.step, &c.run_id, c.attempt)).collect();
    names.sort();
    names
}

/// The Jobs a plan creates, as observed once they finished at `at`.
fn finished(plan: &Plan, at: &str) -> Vec<ObservedJob> {
    plan.create
        .iter()
        .map(|c| ObservedJob {
            name: job_name("p", &c.step, &c.run_id, c.attempt),
            run_id: c.run_id.clone(),
            step: c.step.clone(),
            attempt: c.attempt,
            window: c.window,
            created: ts(at),
            state: JobState::Succeeded { finished: ts(at) },
        })
        .collect()
}

#[test]
fn a_scheduled_run_starts_the_late_passes_of_the_previous_windows_with_only_the_opted_in_steps() {
    let spec = spec(json!({}));
    let status = handled_until("2026-11-24T10:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:00.5Z"));
    assert_eq!(
        created(&plan),
        ["p-extract-20261124-1000-1h", "p-merge-20261124-0800-1h-late2", "p-merge-20261124-0900-1h-late1"]
    );
    let active: Vec<(&str, Option<i32>)> =
        plan.status.active_runs.iter().map(|r| (r.id.as_str(), r.late_pass)).collect();
    assert_eq!(
        active,
        [("20261124-0800-1h-late2", Some(2)), ("20261124-0900-1h-late1", Some(1)), ("20261124-1000-1h", None)]
    );
    let late = plan.create.iter().find(|c| c.run_id.ends_with("-late1")).unwrap();
    assert_eq!(late.window, hour("2026-11-24T09:00:00Z"), "the late pass covers the earlier window");
    let started: Vec<(&str, Option<Timestamp>)> = plan.started.iter().map(|s| (s.run_id.as_str(), s.tick)).collect();
    assert!(started.contains(&("20261124-1000-1h", Some(ts("2026-11-24T11:00:00Z")))));
    assert!(started.contains(&("20261124-0900-1h-late1", None)), "no schedule lag sample for a late pass");
    assert!(plan.events.iter().any(|e| e.note.contains("20261124-0900-1h-late1") && e.note.contains("late pass")));
}

#[test]
fn a_restart_or_a_stale_cache_never_starts_a_late_pass_twice_nor_loses_one() {
    let spec = spec(json!({}));
    let status = handled_until("2026-11-24T10:00:00Z");
    let first = decide(&input(&spec, &status, "2026-11-24T11:00:00.5Z"));
    // Decided again on the written status before any Job is visible (restart, stale cache):
    // nothing new starts and the same Jobs are asked for (creating them again is AlreadyExists).
    let again = decide(&input(&spec, &first.status, "2026-11-24T11:00:01Z"));
    assert!(again.started.is_empty());
    assert_eq!(created(&again), created(&first));
    // Decided on the status from before the write (the write failed its precondition): the
    // same decision, the same names.
    let repeated = decide(&input(&spec, &status, "2026-11-24T11:00:01Z"));
    assert_eq!(created(&repeated), created(&first));
    // Every Job finishes: each run is recorded once, with its pass, and starts nothing again.
    let mut i = input(&spec, &first.status, "2026-11-24T11:10:00Z");
    i.jobs = finished(&first, "2026-11-24T11:05:00Z");
    let done = decide(&i);
    let extract_done = done.create.iter().map(|c| c.step.as_str()).collect::<Vec<_>>();
    assert_eq!(extract_done, ["merge"], "only the scheduled run continues (its merge step)");
    let late_records: Vec<(&str, Option<i32>, RunPhase)> =
        done.status.recent_runs.iter().map(|r| (r.id.as_str(), r.late_pass, r.phase)).collect();
    assert_eq!(
        late_records,
        [
            ("20261124-0900-1h-late1", Some(1), RunPhase::Succeeded),
            ("20261124-0800-1h-late2", Some(2), RunPhase::Succeeded)
        ]
    );
    let mut i = input(&spec, &done.status, "2026-11-24T11:20:00Z");
    i.jobs = finished(&first, "2026-11-24T11:05:00Z");
    assert!(decide(&i).started.is_empty(), "recorded late passes never start again");
}

#[test]
fn the_next_tick_re_runs_each_window_under_the_next_pass() {
    let spec = spec(json!({}));
    let plan = decide(&input(&spec, &handled_until("2026-11-24T11:00:00Z"), "2026-11-24T12:00:00.5Z"));
    assert_eq!(
        created(&plan),
        ["p-extract-20261124-1100-1h", "p-merge-20261124-0900-1h-late2", "p-merge-20261124-1000-1h-late1"]
    );
}

#[test]
fn a_late_pass_of_a_window_with_a_run_in_progress_is_recorded_skipped() {
    let spec = spec(json!({"concurrency": {"maxConcurrentRuns": 2}}));
    let mut status = handled_until("2026-11-24T10:00:00Z");
    let w = hour("2026-11-24T09:00:00Z");
    status.active_runs = vec![RunRecord {
        id: w.run_id(),
        window: record_window(&w),
        phase: RunPhase::Running,
        started: Some(Time(w.end)),
        finished: None,
        failed_step: None,
        reason: None,
        manual: false,
        cost: None,
        late_pass: None,
    }];
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:00.5Z"));
    assert!(!created(&plan).iter().any(|n| n.contains("0900-1h-late1")), "{:?}", created(&plan));
    let skipped = plan.status.skipped_runs.iter().find(|r| r.id == "20261124-0900-1h-late1").expect("recorded");
    assert_eq!((skipped.reason.as_deref(), skipped.late_pass), (Some("WindowBusy"), Some(1)));
    assert_eq!(plan.status.skipped_windows, 0, "its window has its own run");
    assert!(created(&plan).contains(&"p-merge-20261124-0800-1h-late2".to_string()));
}

#[test]
fn late_passes_do_not_count_against_max_concurrent_runs() {
    let spec = spec(json!({"concurrency": {"maxConcurrentRuns": 1, "policy": "Forbid"}}));
    let first = decide(&input(&spec, &handled_until("2026-11-24T10:00:00Z"), "2026-11-24T11:00:00.5Z"));
    // The scheduled run finished, the late passes still run at the next tick: it starts.
    let mut i = input(&spec, &first.status, "2026-11-24T12:00:00.5Z");
    let mut jobs = finished(&first, "2026-11-24T11:30:00Z");
    for j in jobs.iter_mut().filter(|j| j.run_id.contains("-late")) {
        j.state = JobState::Active;
    }
    jobs.push(ObservedJob {
        name: job_name("p", "merge", "20261124-1000-1h", 0),
        run_id: "20261124-1000-1h".into(),
        step: "merge".into(),
        attempt: 0,
        window: hour("2026-11-24T10:00:00Z"),
        created: ts("2026-11-24T11:30:00Z"),
        state: JobState::Succeeded { finished: ts("2026-11-24T11:40:00Z") },
    });
    i.jobs = jobs;
    let plan = decide(&i);
    assert!(plan.started.iter().any(|s| s.run_id == "20261124-1100-1h"), "{:?}", plan.started);
    // Window 10:00's late1 starts; window 09:00's late2 waits for nothing but is skipped: its
    // late1 pass is still running.
    assert!(plan.started.iter().any(|s| s.run_id == "20261124-1000-1h-late1"));
    let skipped = plan.status.skipped_runs.iter().find(|r| r.id == "20261124-0900-1h-late2").expect("skipped");
    assert_eq!(skipped.reason.as_deref(), Some("WindowBusy"));
}

#[test]
fn manual_runs_have_no_late_passes() {
    let spec = spec(json!({}));
    let status = handled_until("2026-11-24T11:00:00Z");
    let mut i = input(&spec, &status, "2026-11-24T11:30:00Z");
    i.run_now = Some("1");
    let plan = decide(&i);
    assert_eq!(plan.started.len(), 1);
    assert!(plan.started[0].run_id.contains("-manual-"));
}

#[test]
fn replace_stops_the_oldest_own_run_never_a_late_pass() {
    let spec = spec(json!({"concurrency": {"maxConcurrentRuns": 1, "policy": "Replace"}}));
    let first = decide(&input(&spec, &handled_until("2026-11-24T10:00:00Z"), "2026-11-24T11:00:00.5Z"));
    // At 12:00 every run of 11:00 is still running: the scheduled one is replaced, the late
    // passes (older windows, first in order) run on.
    let mut i = input(&spec, &first.status, "2026-11-24T12:00:00.5Z");
    i.jobs = finished(&first, "2026-11-24T11:00:01Z");
    for j in &mut i.jobs {
        j.state = JobState::Active;
    }
    let plan = decide(&i);
    let replaced: Vec<&str> =
        plan.status.skipped_runs.iter().filter(|r| r.phase == RunPhase::Replaced).map(|r| r.id.as_str()).collect();
    assert_eq!(replaced, ["20261124-1000-1h"]);
    assert_eq!(plan.delete, ["p-extract-20261124-1000-1h"]);
    assert!(plan.status.active_runs.iter().any(|r| r.id == "20261124-0900-1h-late1"));
}
