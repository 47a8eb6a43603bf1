//! Unit tests of `decide` (see pipeline.rs).
//!
//! Every test passes the time in. The pipeline under test is hourly (`0 * * * *`, UTC) and has
//! three steps: `extract` -> `load`, and an independent `audit`; `extract` retries once, 30 s after
//! a failure. The run due at tick 11:00 covers [10:00, 11:00) and is called "20261124-1000-1h".
use super::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};

use crate::api::RetrySpec;
use crate::jobs::job_name;

/// When the pipeline was created.
const CREATED: &str = "2026-11-24T10:20:00Z";
/// Just after the first tick of the pipeline (11:00).
const FIRST_TICK: &str = "2026-11-24T11:00:00.5Z";
/// The run due at 11:00.
const FIRST_RUN: &str = "20261124-1000-1h";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn at(s: &str) -> Option<Time> {
    Some(Time(ts(s)))
}

fn template() -> Value {
    json!({"spec": {"containers": [{"name": "m", "image": "x"}]}})
}

/// The hourly pipeline, with the top-level spec fields in `extra` added or replaced.
fn spec_with(extra: Value) -> PipelineSpec {
    let mut spec = json!({
        "schedule": "0 * * * *",
        "steps": [
            {"name": "extract", "kind": "Extract", "retries": {"limit": 1, "backoffSeconds": 30},
             "template": template()},
            {"name": "audit", "kind": "Transform", "template": template()},
            {"name": "load", "kind": "Transform", "dependsOn": ["extract"], "template": template()},
        ]
    });
    for (key, value) in extra.as_object().expect("extra is an object") {
        spec[key] = value.clone();
    }
    serde_json::from_value(spec).unwrap()
}

fn hourly() -> PipelineSpec {
    spec_with(json!({}))
}

/// The hour starting at `start`: the window of the tick one hour later.
fn hour(start: &str) -> Window {
    let start = ts(start);
    Window { start, end: start + SignedDuration::from_hours(1) }
}

/// The input of a decision at `now`, with defaults: no Jobs, no manual trigger, plenty of free
/// Job slots, a valid spec.
fn input<'a>(spec: &'a PipelineSpec, status: &'a PipelineStatus, now: &str) -> Input<'a> {
    Input::for_test(spec, status, ts(CREATED), ts(now))
}

/// A status whose last handled tick was `last`.
fn scheduled_until(last: &str) -> PipelineStatus {
    PipelineStatus { last_schedule_time: at(last), ..Default::default() }
}

/// The status record of a scheduled run of `window` that is in progress.
fn active_record(window: Window) -> RunRecord {
    RunRecord {
        id: window.run_id(),
        window: record_window(&window),
        phase: RunPhase::Running,
        started: Some(Time(window.end + SignedDuration::from_secs(1))),
        finished: None,
        failed_step: None,
        reason: None,
        manual: false,
        cost: None,
        late_pass: None,
    }
}

/// The status record of a scheduled run of `window` that succeeded at `finished`.
fn succeeded_record(window: Window, finished: &str) -> RunRecord {
    RunRecord { phase: RunPhase::Succeeded, finished: at(finished), ..active_record(window) }
}

/// A Job of the scheduled run of `window`, created one second after its tick.
fn job(window: Window, step: &str, attempt: u32, state: JobState) -> ObservedJob {
    job_of(&window.run_id(), window, step, attempt, state)
}

/// A Job of run `run_id` over `window`, created one second after the window's end.
fn job_of(run_id: &str, window: Window, step: &str, attempt: u32, state: JobState) -> ObservedJob {
    ObservedJob {
        name: job_name("p", step, run_id, attempt),
        run_id: run_id.to_string(),
        step: step.to_string(),
        attempt,
        window,
        created: window.end + SignedDuration::from_secs(1),
        state,
    }
}

fn succeeded(finished: &str) -> JobState {
    JobState::Succeeded { finished: ts(finished) }
}

fn failed(finished: &str, reason: &str) -> JobState {
    JobState::Failed { finished: ts(finished), reason: reason.to_string() }
}

/// The three Jobs of the scheduled run of `window`, all succeeded at `finished`.
fn all_succeeded(window: Window, finished: &str) -> Vec<ObservedJob> {
    ["extract", "audit", "load"].into_iter().map(|step| job(window, step, 0, succeeded(finished))).collect()
}

/// The Job the plan should create for `step`'s `attempt` in the scheduled run of `window`.
fn to_create(window: Window, step: &str, attempt: u32) -> JobToCreate {
    JobToCreate { run_id: window.run_id(), window, step: step.to_string(), attempt, demand: () }
}

fn condition<'a>(status: &'a PipelineStatus, type_: &str) -> &'a Condition {
    conditions::find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"))
}

fn event_reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn event<'a>(plan: &'a Plan, reason: &str) -> &'a PlannedEvent {
    plan.events.iter().find(|e| e.reason == reason).unwrap_or_else(|| panic!("no {reason} event in {:#?}", plan.events))
}

fn started_ids(plan: &Plan) -> Vec<&str> {
    plan.started.iter().map(|s| s.run_id.as_str()).collect()
}

fn active_ids(status: &PipelineStatus) -> Vec<&str> {
    status.active_runs.iter().map(|r| r.id.as_str()).collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn names(jobs: &[ObservedJob]) -> Vec<String> {
    sorted(jobs.iter().map(|j| j.name.clone()).collect())
}

/// The status after the first tick started run [10:00, 11:00).
fn after_first_tick(spec: &PipelineSpec) -> PipelineStatus {
    let plan = decide(&input(spec, &PipelineStatus::default(), FIRST_TICK));
    assert_eq!(started_ids(&plan), [FIRST_RUN]);
    plan.status
}

// 1. The first tick of a new pipeline.

#[test]
fn a_new_hourly_pipeline_does_nothing_before_its_first_tick() {
    let spec = hourly();
    let status = PipelineStatus::default();
    let plan = decide(&input(&spec, &status, CREATED));
    assert!(plan.create.is_empty());
    assert!(plan.delete.is_empty());
    assert!(plan.started.is_empty());
    assert!(plan.events.is_empty());
    assert!(plan.status.active_runs.is_empty());
    assert_eq!(plan.status.last_schedule_time, None);
    assert_eq!(plan.status.next_schedule_time, at("2026-11-24T11:00:00Z"));
    assert_eq!(plan.status.observed_generation, Some(1));
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_mins(40)));
    assert!(!conditions::is_true(&plan.status.conditions, types::RUNNING));
    assert!(conditions::is_true(&plan.status.conditions, types::READY));

    let plan = decide(&input(&spec, &status, "2026-11-24T10:59:59.9Z"));
    assert!(plan.create.is_empty() && plan.started.is_empty());
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_millis(100)));
}

#[test]
fn the_first_tick_starts_the_window_before_it_with_its_root_steps_only() {
    let spec = hourly();
    let plan = decide(&input(&spec, &PipelineStatus::default(), FIRST_TICK));
    let window = hour("2026-11-24T10:00:00Z");
    assert_eq!(window.run_id(), FIRST_RUN);

    assert_eq!(plan.started, [StartedRun { run_id: FIRST_RUN.into(), tick: Some(ts("2026-11-24T11:00:00Z")) }]);
    assert_eq!(plan.create, [to_create(window, "extract", 0), to_create(window, "audit", 0)]);
    assert!(plan.delete.is_empty());
    assert_eq!(event_reasons(&plan), ["RunStarted"]);
    assert!(!plan.events[0].warning);
    assert!(plan.events[0].note.contains(FIRST_RUN), "{}", plan.events[0].note);

    let status = &plan.status;
    assert_eq!(status.last_schedule_time, at("2026-11-24T11:00:00Z"));
    assert_eq!(status.next_schedule_time, at("2026-11-24T12:00:00Z"));
    assert_eq!(
        status.active_runs,
        [RunRecord {
            id: FIRST_RUN.into(),
            window: record_window(&window),
            // Running from the decision that creates its Jobs, so seeing them is no write.
            phase: RunPhase::Running,
            started: at(FIRST_TICK),
            finished: None,
            failed_step: None,
            reason: None,
            manual: false,
            cost: None,
            late_pass: None,
        }]
    );
    assert_eq!(status.active_run_count, 1);
    assert_eq!(status.missed_windows, 0);
    assert!(status.recent_runs.is_empty());
    assert_eq!(condition(status, types::RUNNING).status, "True");
    assert_eq!(condition(status, types::RUNNING).reason, "RunsActive");
    // The next look is at the next tick.
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_millis(3_599_500)));
}

#[test]
fn deciding_again_before_the_jobs_are_visible_starts_no_second_run_and_requests_the_same_jobs() {
    let spec = hourly();
    let first = decide(&input(&spec, &PipelineStatus::default(), FIRST_TICK));
    // Cache lag: the Jobs just created are not observed yet.
    let again = decide(&input(&spec, &first.status, "2026-11-24T11:00:01Z"));
    assert!(again.started.is_empty());
    assert!(again.events.is_empty(), "{:?}", again.events);
    // The same Jobs (so the same deterministic names): creating them again is AlreadyExists.
    assert_eq!(again.create, first.create);
    let names = |plan: &Plan| -> Vec<String> {
        plan.create.iter().map(|c| job_name("p", &c.step, &c.run_id, c.attempt)).collect()
    };
    assert_eq!(names(&again), names(&first));
    assert_eq!(again.status.active_runs, first.status.active_runs);
    assert_eq!(again.status.last_schedule_time, first.status.last_schedule_time);
}

// 2. Dependency order and success.

#[test]
fn a_dependent_step_starts_once_its_dependency_succeeded() {
    let spec = hourly();
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");

    // Only the roots are running: nothing new.
    let mut running = input(&spec, &status, "2026-11-24T11:02:00Z");
    running.jobs = vec![job(w, "extract", 0, JobState::Active), job(w, "audit", 0, JobState::Active)];
    let plan = decide(&running);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert_eq!(plan.status.active_runs[0].phase, RunPhase::Running);
    // Started when the decision that created its Jobs was written, not when they were seen.
    assert_eq!(plan.status.active_runs[0].started, at(FIRST_TICK));
    assert_eq!(plan.status.active_runs, status.active_runs);

    let mut extracted = input(&spec, &status, "2026-11-24T11:05:01Z");
    extracted.jobs =
        vec![job(w, "extract", 0, succeeded("2026-11-24T11:05:00Z")), job(w, "audit", 0, JobState::Active)];
    let plan = decide(&extracted);
    assert_eq!(plan.create, [to_create(w, "load", 0)]);
    assert!(plan.started.is_empty());
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
}

/// With Kueue the run's Jobs wait suspended: the run is `Queued` (and still active, holding a
/// `maxConcurrentRuns` slot) until one of them is admitted and runs.
#[test]
fn a_run_whose_jobs_wait_for_kueue_is_queued_then_running_once_one_is_admitted() {
    let spec = hourly();
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let mut queued = input(&spec, &status, "2026-11-24T11:02:00Z");
    queued.jobs = vec![job(w, "extract", 0, JobState::Queued), job(w, "audit", 0, JobState::Queued)];
    let plan = decide(&queued);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
    assert_eq!(plan.status.active_runs[0].phase, RunPhase::Queued);
    assert_eq!(plan.status.last_run_phase, Some(RunPhase::Queued));
    assert_eq!(plan.status.active_run_count, 1);
    let mut admitted = input(&spec, &status, "2026-11-24T11:02:00Z");
    admitted.jobs = vec![job(w, "extract", 0, JobState::Active), job(w, "audit", 0, JobState::Queued)];
    assert_eq!(decide(&admitted).status.active_runs[0].phase, RunPhase::Running);
}

#[test]
fn a_run_whose_steps_all_succeeded_is_recorded_as_succeeded() {
    let spec = hourly();
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let mut done = input(&spec, &status, "2026-11-24T11:20:01Z");
    done.jobs = vec![
        job(w, "extract", 0, succeeded("2026-11-24T11:05:00Z")),
        job(w, "audit", 0, succeeded("2026-11-24T11:03:00Z")),
        job(w, "load", 0, succeeded("2026-11-24T11:20:00Z")),
    ];
    let plan = decide(&done);

    assert!(plan.create.is_empty());
    assert!(plan.delete.is_empty(), "history keeps 3 successful runs by default");
    assert!(plan.status.active_runs.is_empty());
    assert_eq!(plan.status.active_run_count, 0);
    assert_eq!(
        plan.status.recent_runs,
        [RunRecord {
            id: FIRST_RUN.into(),
            window: record_window(&w),
            phase: RunPhase::Succeeded,
            started: at("2026-11-24T11:00:01Z"),
            finished: at("2026-11-24T11:20:00Z"),
            failed_step: None,
            reason: None,
            manual: false,
            cost: None,
            late_pass: None,
        }]
    );
    assert_eq!(event_reasons(&plan), ["RunSucceeded"]);
    assert!(!plan.events[0].warning);
    assert_eq!(
        plan.finished,
        [FinishedRun {
            run_id: FIRST_RUN.into(),
            phase: RunPhase::Succeeded,
            duration: Some(SignedDuration::from_secs(19 * 60 + 59)),
        }]
    );
    assert_eq!(plan.status.last_run_phase, Some(RunPhase::Succeeded));
    assert_eq!(plan.status.success_ratio.as_deref(), Some("1.00"));
    assert_eq!(condition(&plan.status, types::DEGRADED).status, "False");
    assert_eq!(condition(&plan.status, types::RUNNING).status, "False");
    assert_eq!(condition(&plan.status, types::RUNNING).reason, "Idle");

    // Observed again with the Jobs still there: recorded once, no second event.
    let mut later = input(&spec, &plan.status, "2026-11-24T11:25:00Z");
    later.jobs = done.jobs.clone();
    let again = decide(&later);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert!(again.finished.is_empty());
    assert!(again.create.is_empty());
    assert_eq!(again.status.recent_runs, plan.status.recent_runs);
}

// 3. Failures, retries and backoff.

#[test]
fn a_failed_attempt_is_retried_only_after_its_backoff_and_requeue_points_at_the_retry() {
    let spec = hourly();
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let jobs =
        vec![job(w, "extract", 0, failed("2026-11-24T11:05:00Z", "Error")), job(w, "audit", 0, JobState::Active)];

    // Backoff 30 s: due at 11:05:30.
    let mut waiting = input(&spec, &status, "2026-11-24T11:05:10Z");
    waiting.jobs = jobs.clone();
    let plan = decide(&waiting);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_secs(20)));
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
    assert!(plan.status.recent_runs.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);

    let mut due = input(&spec, &plan.status, "2026-11-24T11:05:30Z");
    due.jobs = jobs;
    let plan = decide(&due);
    assert_eq!(plan.create, [to_create(w, "extract", 1)]);
    assert_eq!(plan.status.next_schedule_time, at("2026-11-24T12:00:00Z"));
    // Nothing in backoff any more: the next look is at the next tick.
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_secs(54 * 60 + 30)));
}

#[test]
fn requeue_points_at_the_next_tick_when_it_comes_before_the_retry() {
    let mut spec = hourly();
    spec.steps[0].retries = Some(RetrySpec { limit: Some(1), backoff_seconds: Some(3600), max_backoff_seconds: None });
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    // The retry is due at 12:30, the next tick at 12:00.
    let mut waiting = input(&spec, &status, "2026-11-24T11:40:00Z");
    waiting.jobs =
        vec![job(w, "extract", 0, failed("2026-11-24T11:30:00Z", "Error")), job(w, "audit", 0, JobState::Active)];
    let plan = decide(&waiting);
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_mins(20)));
}

#[test]
fn a_step_failing_its_last_attempt_fails_the_run_and_its_dependents_never_start() {
    let spec = hourly();
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let extract_failed = vec![
        job(w, "extract", 0, failed("2026-11-24T11:05:00Z", "Error")),
        job(w, "extract", 1, failed("2026-11-24T11:06:00Z", "DeadlineExceeded")),
    ];

    // The last attempt failed while the independent branch still runs: the run is not over yet.
    let mut partly = input(&spec, &status, "2026-11-24T11:06:01Z");
    partly.jobs = extract_failed.clone();
    partly.jobs.push(job(w, "audit", 0, JobState::Active));
    let plan = decide(&partly);
    assert!(plan.create.is_empty(), "no retry beyond the limit and no dependent: {:?}", plan.create);
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
    assert!(plan.status.recent_runs.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);

    // The independent branch finished: the run failed.
    let mut over = input(&spec, &plan.status, "2026-11-24T11:07:01Z");
    over.jobs = extract_failed;
    over.jobs.push(job(w, "audit", 0, succeeded("2026-11-24T11:07:00Z")));
    let plan = decide(&over);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert!(plan.status.active_runs.is_empty());
    let record = &plan.status.recent_runs[0];
    assert_eq!(plan.status.recent_runs.len(), 1);
    assert_eq!(record.id, FIRST_RUN);
    assert_eq!(record.phase, RunPhase::Failed);
    assert_eq!(record.failed_step.as_deref(), Some("extract"));
    assert_eq!(record.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(record.finished, at("2026-11-24T11:07:00Z"));
    assert_eq!(plan.status.last_run_phase, Some(RunPhase::Failed));
    assert_eq!(plan.status.success_ratio.as_deref(), Some("0.00"));

    let degraded = condition(&plan.status, types::DEGRADED);
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "RunFailed");
    assert!(degraded.message.contains(FIRST_RUN) && degraded.message.contains("extract"), "{}", degraded.message);
    assert_eq!(condition(&plan.status, types::RUNNING).status, "False");

    let failed = event(&plan, "RunFailed");
    assert!(failed.warning);
    assert!(failed.note.contains(FIRST_RUN) && failed.note.contains("extract"), "{}", failed.note);
    assert_eq!(event_reasons(&plan), ["RunFailed"]);
    assert_eq!(plan.finished[0].phase, RunPhase::Failed);
}

#[test]
fn a_later_successful_run_clears_degraded() {
    let spec = hourly();
    let failed_run = RunRecord {
        phase: RunPhase::Failed,
        finished: at("2026-11-24T10:10:00Z"),
        failed_step: Some("extract".into()),
        reason: Some("Error".into()),
        ..active_record(hour("2026-11-24T09:00:00Z"))
    };
    let w = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(w)],
        recent_runs: vec![failed_run],
        ..Default::default()
    };
    let mut still_failed = input(&spec, &status, "2026-11-24T11:01:00Z");
    still_failed.jobs = vec![job(w, "extract", 0, JobState::Active)];
    let plan = decide(&still_failed);
    assert_eq!(condition(&plan.status, types::DEGRADED).status, "True");

    let mut done = input(&spec, &plan.status, "2026-11-24T11:30:00Z");
    done.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
    let plan = decide(&done);
    assert_eq!(condition(&plan.status, types::DEGRADED).status, "False");
    assert_eq!(plan.status.success_ratio.as_deref(), Some("0.50"));
}

// 4. Catching up after an outage.

#[test]
fn catch_up_latest_starts_only_the_newest_missed_window_and_counts_the_others_missed() {
    let spec = hourly();
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(plan.started, [StartedRun { run_id: FIRST_RUN.into(), tick: Some(ts("2026-11-24T11:00:00Z")) }]);
    assert_eq!(plan.create.len(), 2);
    assert!(plan.status.missed_windows > 0);
    assert!(event(&plan, "WindowsMissed").warning);
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));

    // Counted once: the next decision does not count them again.
    let again = decide(&input(&spec, &plan.status, "2026-11-24T11:00:31Z"));
    assert_eq!(again.status.missed_windows, plan.status.missed_windows);
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn catch_up_all_starts_missed_windows_oldest_first_up_to_max_runs() {
    let spec = spec_with(json!({
        "catchUp": {"policy": "All", "maxRuns": 5},
        "concurrency": {"maxConcurrentRuns": 5},
    }));
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    let expected = ["20261124-0600-1h", "20261124-0700-1h", "20261124-0800-1h", "20261124-0900-1h", "20261124-1000-1h"];
    assert_eq!(started_ids(&plan), expected);
    assert_eq!(plan.started[0].tick, Some(ts("2026-11-24T07:00:00Z")));
    assert_eq!(plan.started[4].tick, Some(ts("2026-11-24T11:00:00Z")));
    assert_eq!(active_ids(&plan.status), expected);
    assert_eq!(plan.create.len(), 10, "two root Jobs per run");
    assert_eq!(plan.create[0], to_create(hour("2026-11-24T06:00:00Z"), "extract", 0));
    assert_eq!(event_reasons(&plan).iter().filter(|r| **r == "RunStarted").count(), 5);
    // Older windows beyond maxRuns are missed.
    assert!(plan.status.missed_windows > 0);
    assert!(event_reasons(&plan).contains(&"WindowsMissed"));
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));
}

#[test]
fn catch_up_all_beyond_max_concurrent_runs_forbids_the_rest() {
    let spec = spec_with(json!({"catchUp": {"policy": "All", "maxRuns": 5}}));
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(started_ids(&plan), ["20261124-0600-1h"]);
    let skipped: Vec<(&str, Option<&str>)> =
        plan.status.skipped_runs.iter().map(|r| (r.id.as_str(), r.reason.as_deref())).collect();
    assert_eq!(
        skipped,
        [
            ("20261124-1000-1h", Some("ConcurrencyLimit")),
            ("20261124-0900-1h", Some("ConcurrencyLimit")),
            ("20261124-0800-1h", Some("ConcurrencyLimit")),
            ("20261124-0700-1h", Some("ConcurrencyLimit")),
        ]
    );
    assert!(plan.status.skipped_runs.iter().all(|r| r.phase == RunPhase::Skipped));
    assert_eq!(event_reasons(&plan).iter().filter(|r| **r == "RunSkipped").count(), 4);
    // Skipped runs are not a run phase to show as "last run".
    assert_eq!(plan.status.last_run_phase, Some(RunPhase::Running));
}

#[test]
fn catch_up_all_beyond_max_concurrent_runs_queues_up_to_max_queued() {
    let spec = spec_with(json!({
        "catchUp": {"policy": "All", "maxRuns": 5},
        "concurrency": {"policy": "Queue", "maxQueued": 2},
    }));
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(started_ids(&plan), ["20261124-0600-1h"]);
    assert_eq!(
        plan.status.queued_windows,
        [record_window(&hour("2026-11-24T07:00:00Z")), record_window(&hour("2026-11-24T08:00:00Z"))]
    );
    let skipped: Vec<(&str, Option<&str>)> =
        plan.status.skipped_runs.iter().map(|r| (r.id.as_str(), r.reason.as_deref())).collect();
    assert_eq!(skipped, [("20261124-1000-1h", Some("QueueFull")), ("20261124-0900-1h", Some("QueueFull"))]);
}

#[test]
fn catch_up_none_starts_nothing_when_the_newest_tick_is_older_than_a_minute() {
    let spec = spec_with(json!({"catchUp": {"policy": "None"}}));
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:02:00Z"));
    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert!(plan.status.active_runs.is_empty());
    assert!(plan.status.missed_windows > 0);
    assert!(event(&plan, "WindowsMissed").warning);
    // The missed ticks are handled: the next decision neither starts nor counts them again.
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));
    assert_eq!(plan.status.next_schedule_time, at("2026-11-24T12:00:00Z"));
    let again = decide(&input(&spec, &plan.status, "2026-11-24T11:03:00Z"));
    assert!(again.started.is_empty());
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.status.missed_windows, plan.status.missed_windows);
}

#[test]
fn catch_up_none_still_starts_a_tick_that_is_on_time() {
    let spec = spec_with(json!({"catchUp": {"policy": "None"}}));
    // Within the 60 s grace, after a long outage: the newest tick runs, the older ones are missed.
    let status = scheduled_until("2026-11-21T11:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:01:00Z"));
    assert_eq!(started_ids(&plan), [FIRST_RUN]);
    assert!(plan.status.missed_windows > 0);

    // On time with nothing missed.
    let status = scheduled_until("2026-11-24T10:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(started_ids(&plan), [FIRST_RUN]);
    assert_eq!(plan.status.missed_windows, 0);
    assert!(!event_reasons(&plan).contains(&"WindowsMissed"));
}

#[test]
fn a_tick_past_its_starting_deadline_is_missed_instead_of_started() {
    let spec = spec_with(json!({"startingDeadlineSeconds": 300}));
    let status = scheduled_until("2026-11-24T10:00:00Z");

    let plan = decide(&input(&spec, &status, "2026-11-24T11:10:00Z"));
    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.missed_windows, 1);
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));
    let missed = event(&plan, "WindowsMissed");
    assert!(missed.note.contains("starting deadline 300s"), "{}", missed.note);

    let plan = decide(&input(&spec, &status, "2026-11-24T11:04:59Z"));
    assert_eq!(started_ids(&plan), [FIRST_RUN]);
    assert_eq!(plan.status.missed_windows, 0);
}

// 5. Concurrency policies.

/// Run [10:00, 11:00) active with both roots running, the 11:00 tick handled.
fn one_active_run() -> (PipelineStatus, Vec<ObservedJob>) {
    let w = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(w)],
        active_run_count: 1,
        ..Default::default()
    };
    (status, vec![job(w, "extract", 0, JobState::Active), job(w, "audit", 0, JobState::Active)])
}

const SECOND_TICK: &str = "2026-11-24T12:00:00.5Z";
const SECOND_RUN: &str = "20261124-1100-1h";

#[test]
fn forbid_skips_a_due_window_while_max_concurrent_runs_are_active() {
    let spec = hourly();
    let (status, jobs) = one_active_run();
    let mut due = input(&spec, &status, SECOND_TICK);
    due.jobs = jobs;
    let plan = decide(&due);
    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert!(plan.delete.is_empty());
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
    assert_eq!(
        plan.status.skipped_runs,
        [RunRecord {
            id: SECOND_RUN.into(),
            window: record_window(&hour("2026-11-24T11:00:00Z")),
            phase: RunPhase::Skipped,
            started: None,
            finished: None,
            failed_step: None,
            reason: Some("ConcurrencyLimit".into()),
            manual: false,
            cost: None,
            late_pass: None,
        }]
    );
    assert_eq!(event_reasons(&plan), ["RunSkipped"]);
    assert!(plan.events[0].warning);
    assert!(plan.events[0].note.contains(SECOND_RUN), "{}", plan.events[0].note);
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T12:00:00Z"));
    assert_eq!(plan.status.last_run_phase, Some(RunPhase::Running));
}

#[test]
fn replace_deletes_the_active_runs_jobs_and_starts_the_new_window() {
    let spec = spec_with(json!({"concurrency": {"policy": "Replace"}}));
    let (status, mut jobs) = one_active_run();
    let w = hour("2026-11-24T10:00:00Z");
    jobs[1] = job(w, "audit", 0, succeeded("2026-11-24T11:10:00Z"));
    let mut due = input(&spec, &status, SECOND_TICK);
    due.jobs = jobs.clone();
    let plan = decide(&due);

    assert_eq!(sorted(plan.delete.clone()), names(&jobs));
    let next = hour("2026-11-24T11:00:00Z");
    assert_eq!(started_ids(&plan), [SECOND_RUN]);
    assert_eq!(plan.create, [to_create(next, "extract", 0), to_create(next, "audit", 0)]);
    assert_eq!(active_ids(&plan.status), [SECOND_RUN]);
    let replaced = &plan.status.skipped_runs[0];
    assert_eq!(plan.status.skipped_runs.len(), 1);
    assert_eq!(replaced.id, FIRST_RUN);
    assert_eq!(replaced.phase, RunPhase::Replaced);
    assert_eq!(replaced.reason.as_deref(), Some("Replaced"));
    assert_eq!(replaced.started, at("2026-11-24T11:00:01Z"));
    assert_eq!(replaced.finished, at(SECOND_TICK));
    assert!(event(&plan, "RunReplaced").note.contains(FIRST_RUN));
    assert!(event_reasons(&plan).contains(&"RunStarted"));

    // Once the replaced Jobs are gone, the replaced run stays replaced.
    let mut later = input(&spec, &plan.status, "2026-11-24T12:00:02Z");
    later.jobs = vec![job(next, "extract", 0, JobState::Active), job(next, "audit", 0, JobState::Active)];
    let again = decide(&later);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert!(again.delete.is_empty());
    assert_eq!(again.status.skipped_runs, plan.status.skipped_runs);
}

#[test]
fn replace_also_deletes_jobs_of_the_replaced_run_that_become_visible_later() {
    let spec = spec_with(json!({"concurrency": {"policy": "Replace"}}));
    let (status, _) = one_active_run();
    // At the tick the old run's Jobs are not in the cache yet (just created, or a next step just
    // launched): nothing to delete in this decision.
    let plan = decide(&input(&spec, &status, SECOND_TICK));
    assert_eq!(plan.status.skipped_runs[0].phase, RunPhase::Replaced);
    assert!(plan.delete.is_empty());

    // They show up a moment later, still running: the replaced run must be stopped.
    let old = hour("2026-11-24T10:00:00Z");
    let next = hour("2026-11-24T11:00:00Z");
    let mut later = input(&spec, &plan.status, "2026-11-24T12:00:05Z");
    later.jobs = vec![
        job(old, "extract", 0, JobState::Active),
        job(next, "extract", 0, JobState::Active),
        job(next, "audit", 0, JobState::Active),
    ];
    let again = decide(&later);
    assert!(
        again.delete.contains(&later.jobs[0].name),
        "the replaced run's Job keeps running: delete = {:?}",
        again.delete
    );
}

#[test]
fn replace_without_an_active_run_to_replace_reports_the_skipped_window() {
    // Two missed windows caught up at once with one slot: the first starts, the second cannot
    // replace an active run (there is none yet) and is recorded Skipped.
    let spec = spec_with(json!({
        "catchUp": {"policy": "All", "maxRuns": 2},
        "concurrency": {"policy": "Replace"},
    }));
    let status = scheduled_until("2026-11-24T09:00:00Z");
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(started_ids(&plan), ["20261124-0900-1h"]);
    assert_eq!(plan.status.skipped_runs[0].id, "20261124-1000-1h");
    assert_eq!(plan.status.skipped_runs[0].phase, RunPhase::Skipped);
    // Every other Skipped record (Forbid, QueueFull) comes with a RunSkipped event.
    assert!(event_reasons(&plan).contains(&"RunSkipped"), "{:?}", plan.events);
}

#[test]
fn queue_keeps_due_windows_up_to_max_queued_and_starts_them_when_the_active_run_finished() {
    let spec = spec_with(json!({"concurrency": {"policy": "Queue", "maxQueued": 1}}));
    let (status, jobs) = one_active_run();
    let queued = hour("2026-11-24T11:00:00Z");

    let mut due = input(&spec, &status, SECOND_TICK);
    due.jobs = jobs.clone();
    let plan = decide(&due);
    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert!(plan.status.skipped_runs.is_empty());
    assert_eq!(plan.status.queued_windows, [record_window(&queued)]);
    assert!(condition(&plan.status, types::RUNNING).message.contains("1 queued"));

    // The next tick finds the queue full: that window is skipped.
    let mut full = input(&spec, &plan.status, "2026-11-24T13:00:00.5Z");
    full.jobs = jobs;
    let plan = decide(&full);
    assert!(plan.started.is_empty());
    assert_eq!(plan.status.queued_windows, [record_window(&queued)]);
    let skipped = &plan.status.skipped_runs[0];
    assert_eq!((skipped.id.as_str(), skipped.phase), ("20261124-1200-1h", RunPhase::Skipped));
    assert_eq!(skipped.reason.as_deref(), Some("QueueFull"));
    assert_eq!(event_reasons(&plan), ["RunSkipped"]);

    // The active run finished: the queued window starts (it was due at no tick of its own now).
    let mut freed = input(&spec, &plan.status, "2026-11-24T13:10:00Z");
    freed.jobs = all_succeeded(hour("2026-11-24T10:00:00Z"), "2026-11-24T13:09:00Z");
    let plan = decide(&freed);
    assert_eq!(plan.started, [StartedRun { run_id: SECOND_RUN.into(), tick: None }]);
    assert_eq!(plan.create, [to_create(queued, "extract", 0), to_create(queued, "audit", 0)]);
    assert!(plan.status.queued_windows.is_empty());
    assert_eq!(active_ids(&plan.status), [SECOND_RUN]);
    assert_eq!(event_reasons(&plan), ["RunSucceeded", "RunStarted"]);
}

// 6. Manual trigger.

#[test]
fn run_now_starts_one_manual_run_of_the_latest_complete_window() {
    let spec = hourly();
    let status = scheduled_until("2026-11-24T11:00:00Z");
    let mut trigger = input(&spec, &status, "2026-11-24T11:30:00Z");
    trigger.run_now = Some("1");
    let plan = decide(&trigger);

    assert_eq!(plan.started.len(), 1);
    let id = plan.started[0].run_id.clone();
    assert!(id.starts_with("20261124-1000-1h-manual-"), "{id}");
    assert_eq!(plan.started[0].tick, None);
    let w = hour("2026-11-24T10:00:00Z");
    let expected =
        |step: &str| JobToCreate { run_id: id.clone(), window: w, step: step.into(), attempt: 0, demand: () };
    assert_eq!(plan.create, [expected("extract"), expected("audit")]);
    assert_eq!(plan.status.last_manual_trigger.as_deref(), Some("1"));
    assert_eq!(active_ids(&plan.status), [id.as_str()]);
    assert!(plan.status.active_runs[0].manual);
    assert_eq!(plan.status.active_runs[0].window, record_window(&w));
    assert!(event(&plan, "RunStarted").note.contains("(manual)"));
    // A manual run does not consume a tick.
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));
}

#[test]
fn the_same_run_now_value_starts_nothing_new_and_a_new_value_starts_another_run() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = scheduled_until("2026-11-24T11:00:00Z");
    let mut trigger = input(&spec, &status, "2026-11-24T11:30:00Z");
    trigger.run_now = Some("1");
    let first = decide(&trigger);
    let id = first.started[0].run_id.clone();

    // The annotation is still "1": nothing new, with or without the Jobs visible.
    let mut same = input(&spec, &first.status, "2026-11-24T11:30:01Z");
    same.run_now = Some("1");
    let plan = decide(&same);
    assert!(plan.started.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(active_ids(&plan.status), [id.as_str()]);

    let mut same = input(&spec, &plan.status, "2026-11-24T11:30:05Z");
    same.run_now = Some("1");
    same.jobs = vec![job_of(&id, w, "extract", 0, JobState::Active), job_of(&id, w, "audit", 0, JobState::Active)];
    let plan = decide(&same);
    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert!(plan.status.active_runs[0].manual);

    // The manual run finished; a new annotation value starts another one.
    let mut again = input(&spec, &plan.status, "2026-11-24T11:45:00Z");
    again.run_now = Some("2");
    again.jobs = ["extract", "audit", "load"]
        .into_iter()
        .map(|step| job_of(&id, w, step, 0, succeeded("2026-11-24T11:40:00Z")))
        .collect();
    let plan = decide(&again);
    assert_eq!(plan.started.len(), 1);
    let second = &plan.started[0].run_id;
    assert!(second.contains("-manual-") && *second != id, "{second} vs {id}");
    assert_eq!(plan.status.last_manual_trigger.as_deref(), Some("2"));
    assert_eq!(plan.status.recent_runs[0].id, id);
    assert!(plan.status.recent_runs[0].manual);
    assert_eq!(plan.status.recent_runs[0].phase, RunPhase::Succeeded);
}

// 7. Suspend.

#[test]
fn a_suspended_pipeline_starts_nothing_but_its_active_runs_continue() {
    let spec = spec_with(json!({"suspend": true}));
    let (status, _) = one_active_run();
    let w = hour("2026-11-24T10:00:00Z");
    let mut due = input(&spec, &status, SECOND_TICK);
    due.jobs = vec![job(w, "extract", 0, succeeded("2026-11-24T11:05:00Z")), job(w, "audit", 0, JobState::Active)];
    due.run_now = Some("1");
    let plan = decide(&due);

    assert!(plan.started.is_empty());
    assert_eq!(plan.create, [to_create(w, "load", 0)]);
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);
    assert_eq!(plan.status.next_schedule_time, None);
    assert_eq!(plan.status.last_schedule_time, at("2026-11-24T11:00:00Z"));
    let suspended = condition(&plan.status, types::SUSPENDED);
    assert_eq!(suspended.status, "True");
    assert_eq!(suspended.reason, "Suspended");
    assert!(plan.events.is_empty(), "{:?}", plan.events);

    // Nothing active: still nothing starts at a due tick.
    let plan = decide(&input(&spec, &PipelineStatus::default(), FIRST_TICK));
    assert!(plan.started.is_empty() && plan.create.is_empty());
    assert_eq!(plan.status.next_schedule_time, None);
}

#[test]
fn an_active_pipeline_reports_suspended_false() {
    let spec = hourly();
    let plan = decide(&input(&spec, &PipelineStatus::default(), CREATED));
    assert_eq!(condition(&plan.status, types::SUSPENDED).status, "False");
}

// 8. Job caps.

#[test]
fn without_free_job_slots_nothing_is_created_and_the_pipeline_looks_again_soon() {
    let spec = hourly();
    let fresh = PipelineStatus::default();
    let mut capped = input(&spec, &fresh, FIRST_TICK);
    capped.free_job_slots = 0;
    let plan = decide(&capped);
    assert!(plan.create.is_empty());
    assert!(plan.requeue_after.is_some_and(|r| r <= CAP_RETRY), "{:?}", plan.requeue_after);
    // The run is started (recorded) and its Jobs follow once slots are free.
    assert_eq!(active_ids(&plan.status), [FIRST_RUN]);

    let w = hour("2026-11-24T10:00:00Z");
    let mut one_slot = input(&spec, &plan.status, "2026-11-24T11:00:05Z");
    one_slot.free_job_slots = 1;
    let plan = decide(&one_slot);
    assert!(plan.started.is_empty());
    assert_eq!(plan.create, [to_create(w, "extract", 0)]);
    assert!(plan.requeue_after.is_some_and(|r| r <= CAP_RETRY), "{:?}", plan.requeue_after);

    let plan = decide(&input(&spec, &plan.status, "2026-11-24T11:00:10Z"));
    assert_eq!(plan.create, [to_create(w, "extract", 0), to_create(w, "audit", 0)]);
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_secs(59 * 60 + 50)));
}

// 9. History.

#[test]
fn history_keeps_the_jobs_of_the_newest_successful_runs_only() {
    let spec = spec_with(json!({"history": {"successful": 1}}));
    let older = hour("2026-11-24T08:00:00Z");
    let newer = hour("2026-11-24T09:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T10:00:00Z"),
        recent_runs: vec![
            succeeded_record(newer, "2026-11-24T10:10:00Z"),
            succeeded_record(older, "2026-11-24T09:10:00Z"),
        ],
        ..Default::default()
    };
    let older_jobs = all_succeeded(older, "2026-11-24T09:10:00Z");
    let newer_jobs = all_succeeded(newer, "2026-11-24T10:10:00Z");
    let mut observed = input(&spec, &status, "2026-11-24T10:30:00Z");
    observed.jobs = [older_jobs.clone(), newer_jobs.clone()].concat();
    let plan = decide(&observed);

    assert_eq!(sorted(plan.delete.clone()), names(&older_jobs));
    assert!(newer_jobs.iter().all(|j| !plan.delete.contains(&j.name)));
    // The records stay; only the Jobs go.
    assert_eq!(plan.status.recent_runs, status.recent_runs);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_run_finishing_now_pushes_the_previously_kept_run_out_of_history() {
    let spec = spec_with(json!({"history": {"successful": 1}}));
    let kept = hour("2026-11-24T09:00:00Z");
    let current = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(current)],
        recent_runs: vec![succeeded_record(kept, "2026-11-24T10:10:00Z")],
        ..Default::default()
    };
    let kept_jobs = all_succeeded(kept, "2026-11-24T10:10:00Z");
    let current_jobs = all_succeeded(current, "2026-11-24T11:20:00Z");
    let mut observed = input(&spec, &status, "2026-11-24T11:30:00Z");
    observed.jobs = [kept_jobs.clone(), current_jobs.clone()].concat();
    let plan = decide(&observed);

    assert_eq!(plan.status.recent_runs[0].id, current.run_id());
    assert_eq!(sorted(plan.delete.clone()), names(&kept_jobs));
}

#[test]
fn history_counts_failed_runs_separately() {
    let spec = spec_with(json!({"history": {"successful": 1, "failed": 0}}));
    let ok = hour("2026-11-24T08:00:00Z");
    let bad = hour("2026-11-24T09:00:00Z");
    let failed_record = RunRecord {
        phase: RunPhase::Failed,
        finished: at("2026-11-24T10:10:00Z"),
        failed_step: Some("audit".into()),
        reason: Some("Error".into()),
        ..active_record(bad)
    };
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T10:00:00Z"),
        recent_runs: vec![failed_record, succeeded_record(ok, "2026-11-24T09:10:00Z")],
        ..Default::default()
    };
    let ok_jobs = all_succeeded(ok, "2026-11-24T09:10:00Z");
    let bad_jobs = vec![
        job(bad, "extract", 0, succeeded("2026-11-24T10:05:00Z")),
        job(bad, "load", 0, succeeded("2026-11-24T10:06:00Z")),
        job(bad, "audit", 0, failed("2026-11-24T10:07:00Z", "Error")),
        job(bad, "audit", 1, failed("2026-11-24T10:08:00Z", "Error")),
        job(bad, "audit", 2, failed("2026-11-24T10:10:00Z", "Error")),
    ];
    let mut observed = input(&spec, &status, "2026-11-24T10:30:00Z");
    observed.jobs = [ok_jobs.clone(), bad_jobs.clone()].concat();
    let plan = decide(&observed);
    assert_eq!(sorted(plan.delete.clone()), names(&bad_jobs));
}

// 10. Invalid spec.

#[test]
fn an_invalid_spec_starts_nothing_and_is_not_ready() {
    let spec = hourly();
    let problem = "spec.steps[].dependsOn: two steps depend on each other (dependency cycle)";
    let fresh = PipelineStatus::default();
    let mut invalid = input(&spec, &fresh, FIRST_TICK);
    invalid.problems = vec![problem.to_string()];
    invalid.run_now = Some("1");
    let plan = decide(&invalid);

    assert!(plan.started.is_empty());
    assert!(plan.create.is_empty());
    assert!(plan.status.active_runs.is_empty());
    assert_eq!(plan.status.last_schedule_time, None);
    assert_eq!(plan.status.next_schedule_time, None);
    let ready = condition(&plan.status, types::READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "InvalidSpec");
    assert_eq!(ready.message, problem);
}

#[test]
fn a_refused_service_account_starts_nothing_and_launches_no_step_of_an_active_run() {
    // The account of `load` lost its label while a run was active: `extract` succeeded, so
    // `load` is next; it is not launched, `audit` (allowed) still is, and no new run starts.
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(w)],
        ..Default::default()
    };
    let refusal =
        crate::tenancy::problem(&crate::tenancy::Refused { step: "load".into(), account: "db-admin".into() }, "team-a");
    let mut observed = input(&spec, &status, "2026-11-24T12:00:00.5Z");
    observed.jobs = vec![job(w, "extract", 0, succeeded("2026-11-24T11:05:00Z"))];
    observed.problems = vec![refusal.clone()];
    observed.refused_steps = BTreeSet::from(["load".to_string()]);
    observed.run_now = Some("1");
    let plan = decide(&observed);
    assert_eq!(plan.create, vec![to_create(w, "audit", 0)]);
    assert!(plan.started.is_empty(), "no new run starts: {:?}", plan.started);
    let ready = condition(&plan.status, types::READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ServiceAccountNotAllowed"));
    assert_eq!(ready.message, refusal);
    assert!(plan.events.is_empty() || plan.events.iter().all(|e| e.reason != "InvalidSpec"));
}

// 11. Status stability.

/// Decides with `status`, then again with the same inputs and the status just decided: the
/// second status must equal the first (an unchanged status is never rewritten).
fn assert_stable(decide_with: impl Fn(&PipelineStatus) -> Plan, status: &PipelineStatus) -> PipelineStatus {
    let first = decide_with(status);
    let second = decide_with(&first.status);
    assert_eq!(second.status, first.status);
    first.status
}

#[test]
fn deciding_again_with_the_decided_status_changes_nothing() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");

    // Idle before the first tick.
    assert_stable(|s| decide(&input(&spec, s, CREATED)), &PipelineStatus::default());
    // The first tick, Jobs not visible yet.
    let status = assert_stable(|s| decide(&input(&spec, s, FIRST_TICK)), &PipelineStatus::default());
    // Running, a step in backoff.
    let running = |s: &PipelineStatus| {
        let mut i = input(&spec, s, "2026-11-24T11:05:10Z");
        i.jobs =
            vec![job(w, "extract", 0, failed("2026-11-24T11:05:00Z", "Error")), job(w, "audit", 0, JobState::Active)];
        decide(&i)
    };
    let status = assert_stable(running, &status);
    // Finished.
    let finished = |s: &PipelineStatus| {
        let mut i = input(&spec, s, "2026-11-24T11:30:00Z");
        i.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
        decide(&i)
    };
    let status = assert_stable(finished, &status);
    assert_eq!(status.recent_runs.len(), 1);

    // A skipped window (Forbid) and a queued window (Queue).
    let (active, jobs) = one_active_run();
    let due = |spec: &PipelineSpec, s: &PipelineStatus| {
        let mut i = input(spec, s, SECOND_TICK);
        i.jobs = jobs.clone();
        decide(&i)
    };
    assert_stable(|s| due(&spec, s), &active);
    let queue = spec_with(json!({"concurrency": {"policy": "Queue"}}));
    assert_stable(|s| due(&queue, s), &active);
    // Suspended, and invalid.
    let suspended = spec_with(json!({"suspend": true}));
    assert_stable(|s| due(&suspended, s), &active);
    assert_stable(
        |s| {
            let mut i = input(&spec, s, FIRST_TICK);
            i.problems = vec!["spec.schedule: bad".into()];
            decide(&i)
        },
        &PipelineStatus::default(),
    );
}

#[test]
fn the_status_does_not_change_while_time_passes_and_nothing_happens() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = after_first_tick(&spec);
    let at_time = |s: &PipelineStatus, now: &str| {
        let mut i = input(&spec, s, now);
        i.jobs = vec![job(w, "extract", 0, JobState::Active), job(w, "audit", 0, JobState::Active)];
        decide(&i).status
    };
    let first = at_time(&status, "2026-11-24T11:01:00Z");
    let later = at_time(&first, "2026-11-24T11:40:00Z");
    assert_eq!(later, first);
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let idle = decide(&input(&spec, &PipelineStatus::default(), CREATED)).status;
    let ready_since = condition(&idle, types::READY).last_transition_time.clone();
    assert_eq!(ready_since, Time(ts(CREATED)));

    let started = decide(&input(&spec, &idle, FIRST_TICK)).status;
    assert_eq!(condition(&started, types::RUNNING).last_transition_time, Time(ts(FIRST_TICK)));

    let mut running = input(&spec, &started, "2026-11-24T11:10:00Z");
    running.jobs = vec![job(w, "extract", 0, succeeded("2026-11-24T11:05:00Z")), job(w, "audit", 0, JobState::Active)];
    let running = decide(&running).status;
    for type_ in [types::READY, types::RUNNING, types::DEGRADED, types::SUSPENDED] {
        assert_eq!(
            condition(&running, type_).last_transition_time,
            condition(&started, type_).last_transition_time,
            "{type_}"
        );
    }

    let mut done = input(&spec, &running, "2026-11-24T11:30:00Z");
    done.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
    let done = decide(&done).status;
    assert_eq!(condition(&done, types::RUNNING).last_transition_time, Time(ts("2026-11-24T11:30:00Z")));
    assert_eq!(condition(&done, types::READY).last_transition_time, ready_since);
    assert_eq!(condition(&done, types::DEGRADED).last_transition_time, Time(ts(CREATED)));
}

#[test]
fn a_manual_run_beside_an_active_run_keeps_a_stable_status() {
    let spec = hourly();
    let (status, jobs) = one_active_run();
    let status = assert_stable(
        |s| {
            let mut i = input(&spec, s, "2026-11-24T11:30:00Z");
            i.jobs = jobs.clone();
            i.run_now = Some("1");
            decide(&i)
        },
        &status,
    );
    assert_eq!(status.active_runs.len(), 2);
}

// Data-aware triggers.

fn triggered(mode: &str) -> PipelineSpec {
    let mut spec = spec_with(
        json!({"trigger": {"datasets": ["orders", "customers"], "mode": mode}, "concurrency": {"maxConcurrentRuns": 5}}),
    );
    spec.schedule = None;
    spec
}

fn upstream(name: &str, watermark: &str, produced: Window) -> Upstream {
    Upstream { name: name.into(), watermark: Some(ts(watermark)), produced_window: Some(produced), blocking: None }
}

#[test]
fn all_mode_runs_once_when_every_upstream_advanced_up_to_the_oldest_watermark() {
    let spec = triggered("All");
    let status = PipelineStatus::default();
    // Only orders has data: All waits.
    let mut i = input(&spec, &status, "2026-11-24T11:00:10Z");
    i.upstream = vec![upstream("orders", "2026-11-24T11:00:00Z", hour("2026-11-24T10:00:00Z"))];
    let plan = decide(&i);
    assert!(plan.started.is_empty());
    // Both advanced: one run over [10:00, 10:30), the oldest watermark.
    i.upstream.push(upstream("customers", "2026-11-24T10:30:00Z", hour("2026-11-24T09:30:00Z")));
    let plan = decide(&i);
    assert_eq!(plan.started.len(), 1);
    let window = Window { start: ts("2026-11-24T09:30:00Z"), end: ts("2026-11-24T10:30:00Z") };
    assert_eq!(plan.started[0].run_id, window.run_id());
    assert_eq!(plan.status.trigger_watermark, at("2026-11-24T10:30:00Z"));
    // The same advance seen again (a restart, a resync) starts nothing.
    let mut again = input(&spec, &plan.status, "2026-11-24T11:00:20Z");
    again.upstream = i.upstream.clone();
    assert!(decide(&again).started.is_empty());
    // The next advance of both starts the next window, from where the last one ended.
    again.upstream = vec![
        upstream("orders", "2026-11-24T12:00:00Z", hour("2026-11-24T11:00:00Z")),
        upstream("customers", "2026-11-24T11:30:00Z", hour("2026-11-24T10:30:00Z")),
    ];
    let next = decide(&again);
    assert_eq!(next.started.len(), 1);
    let window = Window { start: ts("2026-11-24T10:30:00Z"), end: ts("2026-11-24T11:30:00Z") };
    assert_eq!(next.started[0].run_id, window.run_id());
}

#[test]
fn any_mode_runs_when_one_upstream_advanced() {
    let spec = triggered("Any");
    let status = PipelineStatus::default();
    let mut i = input(&spec, &status, "2026-11-24T11:00:10Z");
    i.upstream = vec![upstream("orders", "2026-11-24T11:00:00Z", hour("2026-11-24T10:00:00Z"))];
    let plan = decide(&i);
    assert_eq!(plan.started.len(), 1);
    assert_eq!(plan.started[0].run_id, FIRST_RUN);
}

#[test]
fn a_blocking_upstream_holds_the_trigger_until_its_contract_is_met() {
    let spec = triggered("Any");
    let status = PipelineStatus::default();
    let mut i = input(&spec, &status, "2026-11-24T11:00:10Z");
    let mut orders = upstream("orders", "2026-11-24T11:00:00Z", hour("2026-11-24T10:00:00Z"));
    orders.blocking = Some("column \"amount\" is missing".into());
    i.upstream = vec![orders.clone()];
    let held = decide(&i);
    assert!(held.started.is_empty());
    assert!(held.status.consumed_watermarks.is_empty(), "a held advance is not consumed");
    let c = held.status.conditions.iter().find(|c| c.type_ == HELD).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "UpstreamContractViolated"));
    assert!(held.events.iter().any(|e| e.reason == "InputsHeld"));
    // Still held: no repeated Event.
    let mut again = input(&spec, &held.status, "2026-11-24T11:00:20Z");
    again.upstream = vec![orders.clone()];
    assert!(decide(&again).events.iter().all(|e| e.reason != "InputsHeld"));
    // Contract met again: the held advance runs.
    orders.blocking = None;
    again.upstream = vec![orders];
    let released = decide(&again);
    assert_eq!(released.started.len(), 1);
    assert!(released.events.iter().any(|e| e.reason == "InputsReleased"));
}

// Exactly once (issue 10).

/// A Job of `window`'s scheduled run that a Backfill controls.
fn backfill_job(window: Window, step: &str) -> ForeignJob {
    ForeignJob {
        name: job_name("p", step, &window.run_id(), 0),
        run_id: window.run_id(),
        step: step.into(),
        attempt: 0,
        holder: "Backfill/oct".into(),
        backfill: true,
    }
}

/// Defect 1: a decision on a status that does not show the run (a stale cache after the
/// history pruned its Jobs, or a run that dropped out of the records) must not record it again.
#[test]
fn jobs_of_a_run_that_is_neither_active_nor_recorded_are_pruned_never_recorded_as_a_new_finish() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = scheduled_until("2026-11-24T11:00:00Z");
    let mut observed = input(&spec, &status, "2026-11-24T11:30:00Z");
    observed.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
    let plan = decide(&observed);
    assert!(plan.finished.is_empty(), "recorded again: {:?}", plan.finished);
    assert!(plan.status.recent_runs.is_empty());
    assert!(!event_reasons(&plan).contains(&"RunSucceeded"));
    assert_eq!(sorted(plan.delete.clone()), names(&observed.jobs));
}

/// Defect 1: with `history.successful: 0` a run is recorded and its Jobs deleted in one
/// decision; deciding again on that status (Jobs still cached, or already gone) neither records
/// it again nor relaunches it.
#[test]
fn a_history_zero_run_is_recorded_once_and_never_relaunched() {
    let spec = spec_with(json!({"history": {"successful": 0}}));
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let mut done = input(&spec, &status, "2026-11-24T11:20:01Z");
    done.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
    let plan = decide(&done);
    assert_eq!(plan.finished.len(), 1);
    assert_eq!(sorted(plan.delete.clone()), names(&done.jobs));
    for jobs in [done.jobs.clone(), vec![]] {
        let mut again = input(&spec, &plan.status, "2026-11-24T11:20:02Z");
        again.jobs = jobs;
        let next = decide(&again);
        assert!(next.finished.is_empty() && next.create.is_empty() && next.started.is_empty(), "{next:?}");
    }
}

/// Defect 3: history above 20 runs is honoured, and skipped windows never push finished runs
/// out of `recentRuns`.
#[test]
fn history_beyond_twenty_runs_keeps_every_record_and_its_jobs() {
    let spec = spec_with(json!({"history": {"successful": 30}}));
    let windows: Vec<Window> =
        (0..25).map(|h| hour(&(ts("2026-11-23T00:00:00Z") + SignedDuration::from_hours(h)).to_string())).collect();
    let mut recent: Vec<RunRecord> =
        windows.iter().map(|w| succeeded_record(*w, &(w.end + SignedDuration::from_mins(5)).to_string())).collect();
    recent.reverse();
    let status =
        PipelineStatus { last_schedule_time: at("2026-11-24T01:00:00Z"), recent_runs: recent, ..Default::default() };
    let mut observed = input(&spec, &status, "2026-11-24T01:30:00Z");
    observed.jobs =
        windows.iter().flat_map(|w| all_succeeded(*w, &(w.end + SignedDuration::from_mins(5)).to_string())).collect();
    let plan = decide(&observed);
    assert!(plan.delete.is_empty(), "history.successful 30 prunes {} Jobs", plan.delete.len());
    assert_eq!(plan.status.recent_runs.len(), 25);
    assert!(plan.finished.is_empty());
}

#[test]
fn skipped_windows_are_kept_apart_and_never_push_finished_runs_out() {
    let spec = spec_with(json!({"catchUp": {"policy": "All", "maxRuns": 30}}));
    let finished: Vec<RunRecord> = (0..20)
        .map(|h| {
            let w = hour(&(ts("2026-11-20T00:00:00Z") + SignedDuration::from_hours(h)).to_string());
            succeeded_record(w, &w.end.to_string())
        })
        .rev()
        .collect();
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-23T11:00:00Z"),
        recent_runs: finished.clone(),
        ..Default::default()
    };
    // 24 ticks due with one slot: one starts, 23 are skipped by Forbid.
    let plan = decide(&input(&spec, &status, "2026-11-24T11:00:30Z"));
    assert_eq!(plan.started.len(), 1);
    assert_eq!(plan.status.recent_runs, finished, "finished runs stay recorded");
    assert_eq!(plan.status.skipped_runs.len(), MAX_SKIPPED_RUNS);
    // Found by the simulation (seed 1019): records beyond the bound are still counted.
    assert_eq!(plan.status.skipped_windows, 23);
    assert!(plan.status.skipped_runs.iter().all(|r| r.phase == RunPhase::Skipped));
}

/// Defect 2: a queued window whose first Job a Backfill holds is the Backfill's: it is not
/// started here and does not hold a slot.
#[test]
fn a_queued_window_run_by_a_backfill_is_handed_over_and_frees_its_slot() {
    let spec = spec_with(json!({"concurrency": {"policy": "Queue"}}));
    let taken = hour("2026-11-24T09:00:00Z");
    let next = hour("2026-11-24T08:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        queued_windows: vec![record_window(&taken), record_window(&next)],
        ..Default::default()
    };
    let mut observed = input(&spec, &status, "2026-11-24T11:30:00Z");
    observed.foreign = vec![backfill_job(taken, "extract")];
    let plan = decide(&observed);
    assert_eq!(started_ids(&plan), [next.run_id().as_str()], "the slot goes to the next queued window");
    assert!(plan.create.iter().all(|c| c.run_id != taken.run_id()));
    assert!(plan.status.queued_windows.is_empty());
    let record = plan.status.skipped_runs.iter().find(|r| r.id == taken.run_id()).expect("recorded");
    assert_eq!(record.reason.as_deref(), Some("RunByBackfill"));
    assert!(event(&plan, "RunByBackfill").note.contains("Backfill/oct"));
}

/// Defect 2: an active run whose first Job create met a Backfill's Job (the cache shows it only
/// now) is handed over instead of holding a slot forever.
#[test]
fn an_active_run_whose_first_job_a_backfill_holds_is_handed_over() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(w)],
        ..Default::default()
    };
    let mut observed = input(&spec, &status, "2026-11-24T11:00:05Z");
    observed.foreign = vec![backfill_job(w, "extract"), backfill_job(w, "audit")];
    let plan = decide(&observed);
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert!(plan.status.active_runs.is_empty());
    assert_eq!(plan.status.skipped_runs[0].reason.as_deref(), Some("RunByBackfill"));
}

/// Defect 2: a Job name held by something that is not a Backfill of this pipeline fails the run
/// with the reason, rather than counting as launched.
#[test]
fn a_name_held_by_a_stranger_fails_the_run_with_name_conflict() {
    let spec = hourly();
    let w = hour("2026-11-24T10:00:00Z");
    let status = PipelineStatus {
        last_schedule_time: at("2026-11-24T11:00:00Z"),
        active_runs: vec![active_record(w)],
        ..Default::default()
    };
    let mut observed = input(&spec, &status, "2026-11-24T11:05:00Z");
    observed.jobs = vec![job(w, "extract", 0, succeeded("2026-11-24T11:04:00Z")), job(w, "audit", 0, JobState::Active)];
    observed.foreign = vec![ForeignJob { holder: "no controller".into(), backfill: false, ..backfill_job(w, "load") }];
    let plan = decide(&observed);
    assert!(plan.create.is_empty());
    let record = &plan.status.recent_runs[0];
    assert_eq!((record.phase, record.failed_step.as_deref()), (RunPhase::Failed, Some("load")));
    assert!(record.reason.as_deref().unwrap().starts_with("NameConflict"), "{record:?}");
    assert!(event(&plan, "NameConflict").warning);
    assert_eq!(condition(&plan.status, types::DEGRADED).status, "True");
}

/// Defect 6: in `All` mode, a window complete for every input runs as soon as it is, even when
/// one input was ahead at the last trigger.
#[test]
fn all_mode_runs_once_every_input_is_past_the_last_window_even_if_one_was_ahead() {
    let spec = triggered("All");
    let status = PipelineStatus::default();
    let mut i = input(&spec, &status, "2026-11-24T12:00:10Z");
    i.upstream = vec![
        upstream("orders", "2026-11-24T12:00:00Z", hour("2026-11-24T11:00:00Z")),
        upstream("customers", "2026-11-24T11:00:00Z", hour("2026-11-24T10:00:00Z")),
    ];
    let first = decide(&i);
    assert_eq!(first.status.trigger_watermark, at("2026-11-24T11:00:00Z"));
    // customers catches up to 12:00; orders (ahead) did not move: [11:00, 12:00) is complete.
    let mut next = input(&spec, &first.status, "2026-11-24T12:05:00Z");
    next.upstream = vec![
        upstream("orders", "2026-11-24T12:00:00Z", hour("2026-11-24T11:00:00Z")),
        upstream("customers", "2026-11-24T12:00:00Z", hour("2026-11-24T11:00:00Z")),
    ];
    let plan = decide(&next);
    assert_eq!(started_ids(&plan), [hour("2026-11-24T11:00:00Z").run_id().as_str()]);
}

/// Defect 6: a trigger window that `Forbid` cannot start stays due (not consumed, no hole) and
/// runs, widened, once the slot is free.
#[test]
fn a_trigger_window_that_forbid_cannot_start_stays_due() {
    let mut spec = triggered("Any");
    spec.concurrency = Some(crate::api::ConcurrencySpec { max_concurrent_runs: Some(1), ..Default::default() });
    let busy = hour("2026-11-24T09:00:00Z");
    let status = PipelineStatus {
        active_runs: vec![active_record(busy)],
        trigger_watermark: at("2026-11-24T10:00:00Z"),
        ..Default::default()
    };
    let mut i = input(&spec, &status, "2026-11-24T11:00:10Z");
    i.jobs = vec![job(busy, "extract", 0, JobState::Active), job(busy, "audit", 0, JobState::Active)];
    i.upstream = vec![upstream("orders", "2026-11-24T11:00:00Z", hour("2026-11-24T10:00:00Z"))];
    let plan = decide(&i);
    assert!(plan.started.is_empty());
    assert_eq!(plan.status.trigger_watermark, at("2026-11-24T10:00:00Z"), "not consumed while it cannot start");
    assert!(plan.status.skipped_runs.is_empty());
    // The active run finished and orders advanced again: one run covers the whole gap.
    let mut freed = input(&spec, &plan.status, "2026-11-24T12:00:10Z");
    freed.jobs = all_succeeded(busy, "2026-11-24T11:30:00Z");
    freed.upstream = vec![upstream("orders", "2026-11-24T12:00:00Z", hour("2026-11-24T11:00:00Z"))];
    let plan = decide(&freed);
    let gap = Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-24T12:00:00Z") };
    assert_eq!(started_ids(&plan), [gap.run_id().as_str()]);
}

/// Defect 13: under policy `Block`, a scheduled pipeline that reads the violating Dataset holds:
/// its due window is recorded Skipped with the reason, and it says why in status.
#[test]
fn a_scheduled_pipeline_reading_a_blocked_dataset_holds_and_records_the_window() {
    let mut spec = hourly();
    spec.steps[0].inputs = vec!["orders".into()];
    let status = PipelineStatus::default();
    let mut i = input(&spec, &status, FIRST_TICK);
    i.blocked_inputs = vec!["dataset orders violates its contract (policy Block): column \"id\" is missing".into()];
    let plan = decide(&i);
    assert!(plan.started.is_empty() && plan.create.is_empty());
    assert_eq!(plan.status.skipped_runs[0].reason.as_deref(), Some("InputContractViolated"));
    let held = condition(&plan.status, HELD);
    assert_eq!((held.status.as_str(), held.reason.as_str()), ("True", "UpstreamContractViolated"));
    assert!(held.message.contains("orders"));
    assert!(event_reasons(&plan).contains(&"InputsHeld"));
}

/// Catch-up settings at odds with each other are named in the Ready message (still Ready).
#[test]
fn catch_up_that_cannot_reach_max_runs_is_warned_in_ready() {
    let spec = spec_with(json!({"catchUp": {"policy": "All", "maxRuns": 24}, "startingDeadlineSeconds": 900}));
    let plan = decide(&input(&spec, &PipelineStatus::default(), FIRST_TICK));
    let ready = condition(&plan.status, types::READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Reconciled"));
    assert!(ready.message.contains("spec.catchUp.maxRuns"), "{}", ready.message);
}

/// With `history.successful: 0`, a producing Job is deleted only after its output Dataset has
/// checked the run (its report read, its watermark applied): history never loses a report.
#[test]
fn history_keeps_a_producing_job_until_its_output_dataset_checked_the_run() {
    let mut spec = spec_with(json!({"history": {"successful": 0}}));
    spec.steps[0].outputs = vec!["orders".into()];
    let status = after_first_tick(&spec);
    let w = hour("2026-11-24T10:00:00Z");
    let mut done = input(&spec, &status, "2026-11-24T11:20:01Z");
    done.jobs = all_succeeded(w, "2026-11-24T11:20:00Z");
    let extract = done.jobs.iter().find(|j| j.step == "extract").unwrap().name.clone();
    let key = |finished: &str| Some((ts(finished), "p".to_string(), w.run_id(), "extract".to_string()));
    // The Dataset checked only an older run: the producing Job stays, the others go.
    done.outputs_checked = BTreeMap::from([("orders".to_string(), key("2026-11-24T10:20:00Z"))]);
    let plan = decide(&done);
    assert_eq!(plan.finished.len(), 1, "the run is recorded all the same");
    assert!(!plan.delete.contains(&extract), "deleted before the Dataset read it: {:?}", plan.delete);
    assert_eq!(plan.delete.len(), 2);
    assert!(plan.requeue_after.is_some_and(|r| r <= DATASET_CHECK_RETRY));
    // Checked: it goes.
    let mut later = input(&spec, &plan.status, "2026-11-24T11:20:05Z");
    later.jobs = done.jobs.clone();
    later.outputs_checked = BTreeMap::from([("orders".to_string(), key("2026-11-24T11:20:00Z"))]);
    assert!(decide(&later).delete.contains(&extract));
}
