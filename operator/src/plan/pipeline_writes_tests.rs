//! How many status writes one scheduled run of a one-step pipeline costs.
use super::*;

use serde_json::json;

use crate::jobs::job_name;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn minutely() -> PipelineSpec {
    serde_json::from_value(json!({
        "schedule": "* * * * *",
        "steps": [{"name": "s", "kind": "Extract",
                   "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}]
    }))
    .unwrap()
}

fn decide_at(spec: &PipelineSpec, status: &PipelineStatus, now: Timestamp, jobs: Vec<ObservedJob>) -> Plan {
    decide(&Input { jobs, ..Input::for_test(spec, status, ts("2026-11-24T10:00:30Z"), now) })
}

fn job(plan_create: &JobToCreate, created: Timestamp, state: JobState) -> ObservedJob {
    ObservedJob {
        name: job_name("p", &plan_create.step, &plan_create.run_id, plan_create.attempt),
        run_id: plan_create.run_id.clone(),
        step: plan_create.step.clone(),
        attempt: plan_create.attempt,
        window: plan_create.window,
        created,
        state,
    }
}

/// Replays `minutes` runs of the minutely pipeline (each Job seen added 40 ms after its tick's
/// decision and finished 2 s later) and returns, per decision, its label and whether it changed
/// the status.
fn replay(minutes: u32) -> Vec<(&'static str, bool)> {
    let spec = minutely();
    let mut status = decide_at(&spec, &PipelineStatus::default(), ts("2026-11-24T10:00:31Z"), vec![]).status;
    let mut jobs: Vec<ObservedJob> = vec![];
    let mut decisions = vec![];
    let mut observe = |label, now: Timestamp, jobs: &[ObservedJob], status: &mut PipelineStatus| {
        let plan = decide_at(&spec, status, now, jobs.to_vec());
        decisions.push((label, plan.status != *status));
        *status = plan.status.clone();
        plan
    };
    for minute in 1..=minutes {
        let tick = ts(&format!("2026-11-24T10:{minute:02}:00Z"));
        let plan = observe("tick", tick + SignedDuration::from_millis(20), &jobs, &mut status);
        assert_eq!(plan.create.len(), 1, "minute {minute}: one Job per tick");
        jobs.push(job(&plan.create[0], tick + SignedDuration::from_millis(50), JobState::Active));
        observe("job added", tick + SignedDuration::from_millis(60), &jobs, &mut status);
        let finished = tick + SignedDuration::from_secs(2);
        jobs.last_mut().unwrap().state = JobState::Succeeded { finished };
        let plan = observe("job done", finished + SignedDuration::from_millis(100), &jobs, &mut status);
        jobs.retain(|j| !plan.delete.contains(&j.name));
    }
    decisions
}

#[test]
fn a_run_costs_two_status_writes_the_tick_and_the_finish() {
    let decisions = replay(6);
    for (label, wrote) in &decisions {
        assert_eq!(*wrote, *label != "job added", "{label}: {decisions:?}");
    }
}

#[test]
fn seeing_the_job_it_created_keeps_the_run_running_since_the_tick() {
    let spec = minutely();
    let status = decide_at(&spec, &PipelineStatus::default(), ts("2026-11-24T10:00:31Z"), vec![]).status;
    let tick = ts("2026-11-24T10:01:00.020Z");
    let plan = decide_at(&spec, &status, tick, vec![]);
    let run = &plan.status.active_runs[0];
    assert_eq!((run.phase, run.started.as_ref().map(|t| t.0)), (RunPhase::Running, Some(tick)));
    let added = job(&plan.create[0], tick + SignedDuration::from_millis(30), JobState::Active);
    let seen = decide_at(&spec, &plan.status, tick + SignedDuration::from_millis(40), vec![added]);
    assert_eq!(seen.status, plan.status);
    assert!(seen.create.is_empty());
}
