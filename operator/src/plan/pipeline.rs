//! `decide` for a Pipeline: spec + observed Jobs + current status + now -> Jobs to create, Jobs
//! to delete, the new status, Events and when to look again. Pure: no client, no clock.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ready::{PlannedEvent, ready_condition};
use super::runs::{ObservedJob, RunState, StepState, derive_run};
use crate::api::conditions::{self, DesiredCondition, types};
use crate::api::{
    CatchUpPolicy, ConcurrencyPolicy, PartitionWindow, PipelineSpec, PipelineStatus, RunPhase, RunRecord, StepSpec,
};
use crate::duration;
use crate::schedule::{Schedule, Window, WindowRule};

/// How long a capped pipeline waits before it looks for a free Job slot again.
pub const CAP_RETRY: SignedDuration = SignedDuration::from_secs(5);
/// Grace for an on-time run under catch-up policy `None` (and the default starting deadline).
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_secs(60);
/// Most finished runs kept in `status.recentRuns`.
pub const MAX_RECENT_RUNS: usize = 20;

/// What the Pipeline reconciler observed.
pub struct Input<'a> {
    pub spec: &'a PipelineSpec,
    pub status: &'a PipelineStatus,
    pub generation: Option<i64>,
    /// When the Pipeline was created: the first ticks counted are after it.
    pub created: Timestamp,
    pub now: Timestamp,
    /// This pipeline's Jobs that are not being deleted.
    pub jobs: Vec<ObservedJob>,
    /// Value of the `sluice.dev/run-now` annotation.
    pub run_now: Option<&'a str>,
    /// Jobs that may still be created under the namespace and operator-wide caps.
    pub free_job_slots: usize,
    /// Problems found by validation; when any, nothing starts.
    pub problems: Vec<String>,
    /// The datasets of `trigger.datasets`, as observed (missing ones are left out).
    pub upstream: Vec<Upstream>,
}

/// An upstream dataset of a data-aware trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub watermark: Option<Timestamp>,
    /// The window of the run that produced the watermark.
    pub produced_window: Option<Window>,
    /// Set when the dataset violates its contract under policy `Block`: why.
    pub blocking: Option<String>,
}

/// Condition type saying that a data-aware trigger is held by an upstream contract violation.
pub const HELD: &str = "TriggerHeld";

/// A Job to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobToCreate {
    pub run_id: String,
    pub window: Window,
    pub step: String,
    pub attempt: u32,
}

/// A run that started in this decision, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedRun {
    pub run_id: String,
    /// The tick it was due at (None for manual and queued runs).
    pub tick: Option<Timestamp>,
}

/// A run that finished (as observed in this decision), for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRun {
    pub run_id: String,
    pub phase: RunPhase,
    pub duration: Option<SignedDuration>,
}

/// The decision.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub create: Vec<JobToCreate>,
    /// Names of Jobs to delete (replaced runs, history beyond the limits).
    pub delete: Vec<String>,
    pub status: PipelineStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue_after: Option<SignedDuration>,
    pub started: Vec<StartedRun>,
    pub finished: Vec<FinishedRun>,
    /// Set when a data-aware trigger is held: why.
    pub trigger_held: Option<String>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn record_window(w: &Window) -> PartitionWindow {
    PartitionWindow { start: time(w.start), end: time(w.end) }
}

fn window_of(w: &PartitionWindow) -> Window {
    Window { start: w.start.0, end: w.end.0 }
}

fn event(warning: bool, reason: &'static str, note: String) -> PlannedEvent {
    PlannedEvent { warning, reason, note }
}

/// The window rule of a spec (validated durations; invalid ones fall back to defaults).
pub fn window_rule(spec: &PipelineSpec) -> WindowRule {
    let parse = |v: &Option<String>| v.as_deref().and_then(|d| duration::parse(d).ok());
    let partition = spec.partition.as_ref();
    WindowRule {
        size: partition.and_then(|p| parse(&p.size)).filter(|d| !d.is_zero()),
        offset: partition.and_then(|p| parse(&p.offset)).unwrap_or(SignedDuration::ZERO),
    }
}

/// Decides what to do for one Pipeline.
pub fn decide(input: &Input<'_>) -> Plan {
    let spec = input.spec;
    let now = input.now;
    let mut plan = Plan::default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;

    let ready = ready_condition(&input.problems);
    let schedule = spec
        .schedule
        .as_deref()
        .and_then(|expr| Schedule::parse(expr, spec.time_zone.as_deref()).ok())
        .filter(|_| input.problems.is_empty());
    let rule = window_rule(spec);
    let all_steps: Vec<&StepSpec> = spec.steps.iter().collect();

    // Runs already recorded as finished (including skipped and replaced) are final.
    let finished_ids: BTreeSet<&str> = input.status.recent_runs.iter().map(|r| r.id.as_str()).collect();

    // Observe: every run with Jobs, plus runs recorded active whose Jobs are not in the cache yet.
    let mut jobs_by_run: BTreeMap<&str, Vec<&ObservedJob>> = BTreeMap::new();
    for job in &input.jobs {
        jobs_by_run.entry(job.run_id.as_str()).or_default().push(job);
    }
    let mut runs: BTreeMap<String, (RunState, bool)> = BTreeMap::new();
    for (run_id, jobs) in &jobs_by_run {
        let window = jobs[0].window;
        let manual =
            input.status.active_runs.iter().any(|r| r.id == *run_id && r.manual) || run_id.contains("-manual-");
        runs.insert(run_id.to_string(), (derive_run(spec, &all_steps, run_id, window, jobs, now), manual));
    }
    for record in &input.status.active_runs {
        runs.entry(record.id.clone()).or_insert_with(|| {
            (derive_run(spec, &all_steps, &record.id, window_of(&record.window), &[], now), record.manual)
        });
    }

    // Runs that finished since the last decision.
    let mut newly_finished: Vec<RunRecord> = Vec::new();
    for (run_id, (run, manual)) in &runs {
        if finished_ids.contains(run_id.as_str()) || !run.finished() {
            continue;
        }
        let failed = run.failed_step();
        let phase = if failed.is_some() { RunPhase::Failed } else { RunPhase::Succeeded };
        let record = RunRecord {
            id: run_id.clone(),
            window: record_window(&run.window),
            phase,
            started: run.started.map(time),
            finished: run.finished_at().map(time),
            failed_step: failed.map(|(s, _)| s.to_string()),
            reason: failed.map(|(_, r)| r.to_string()),
            manual: *manual,
        };
        let duration = match (run.started, run.finished_at()) {
            (Some(s), Some(f)) => Some(f.duration_since(s)),
            _ => None,
        };
        plan.finished.push(FinishedRun { run_id: run_id.clone(), phase, duration });
        plan.events.push(match failed {
            Some((step, reason)) => event(true, "RunFailed", format!("run {run_id} failed at step {step}: {reason}")),
            None => event(false, "RunSucceeded", format!("run {run_id} succeeded")),
        });
        newly_finished.push(record);
    }
    let mut active: Vec<(String, RunState, bool)> = runs
        .into_iter()
        .filter(|(id, (run, _))| !finished_ids.contains(id.as_str()) && !run.finished())
        .map(|(id, (run, manual))| (id, run, manual))
        .collect();
    active.sort_by(|a, b| (a.1.window.start, &a.0).cmp(&(b.1.window.start, &b.0)));

    let concurrency = spec.concurrency.clone().unwrap_or_default();
    let max_active = concurrency.max_concurrent_runs.unwrap_or(1).max(1) as usize;
    let max_queued = concurrency.max_queued.unwrap_or(10).max(1) as usize;
    let mut skipped: Vec<RunRecord> = Vec::new();
    let mut queue: Vec<PartitionWindow> = status.queued_windows.clone();
    let mut to_start: Vec<(Window, String, bool, Option<Timestamp>)> = Vec::new();
    let known =
        |id: &str, active: &[(String, RunState, bool)], to_start: &[(Window, String, bool, Option<Timestamp>)]| {
            finished_ids.contains(id)
                || active.iter().any(|(a, _, _)| a == id)
                || to_start.iter().any(|(_, s, _, _)| s == id)
        };

    let suspended = spec.suspend;
    if input.problems.is_empty() && !suspended {
        // Manual trigger: one run of the latest complete window per new annotation value.
        if let (Some(value), Some(schedule)) = (input.run_now, schedule.as_ref())
            && input.status.last_manual_trigger.as_deref() != Some(value)
        {
            status.last_manual_trigger = Some(value.to_string());
            if let Some(window) = schedule.latest_at_or_before(now).and_then(|t| schedule.window_at(t, rule)) {
                let id = format!("{}-manual-{}", window.run_id(), short_hash(value));
                if !known(&id, &active, &to_start) {
                    to_start.push((window, id, true, None));
                }
            }
        }

        // Queued windows start first, in order, as slots free.
        while active.len() + to_start.len() < max_active && !queue.is_empty() {
            let w = window_of(&queue.remove(0));
            let id = w.run_id();
            if !known(&id, &active, &to_start) {
                to_start.push((w, id, false, None));
            }
        }

        // Due ticks since the last one handled.
        let mut due: Vec<(Window, Option<Timestamp>)> = Vec::new();
        if let Some(schedule) = schedule.as_ref() {
            let catch_up = spec.catch_up.clone().unwrap_or_default();
            let limit = match catch_up.policy {
                CatchUpPolicy::All => catch_up.max_runs.unwrap_or(10).max(1) as usize,
                CatchUpPolicy::Latest | CatchUpPolicy::None => 1,
            };
            let after = input.status.last_schedule_time.as_ref().map(|t| t.0).unwrap_or(input.created);
            let (mut ticks, older) = schedule.due_ticks(after, now, limit);
            let mut missed = older;
            if let Some(newest) = ticks.first() {
                status.last_schedule_time = Some(time(*newest));
            }
            let deadline = spec.starting_deadline_seconds.map(SignedDuration::from_secs);
            let on_time = |t: &Timestamp| match (catch_up.policy, deadline) {
                (_, Some(d)) if now.duration_since(*t) > d => false,
                (CatchUpPolicy::None, d) => now.duration_since(*t) <= d.unwrap_or(ON_TIME_GRACE),
                _ => true,
            };
            let before = ticks.len();
            ticks.retain(on_time);
            missed += (before - ticks.len()) as u64;
            if missed > 0 {
                status.missed_windows += missed as i64;
                plan.events.push(event(
                    true,
                    "WindowsMissed",
                    format!(
                        "{missed} due window(s) not run (catch-up policy {:?}{})",
                        catch_up.policy,
                        deadline.map(|d| format!(", starting deadline {}s", d.as_secs())).unwrap_or_default()
                    ),
                ));
            }
            ticks.reverse();
            due.extend(ticks.into_iter().filter_map(|tick| Some((schedule.window_at(tick, rule)?, Some(tick)))));
        }

        // Upstream datasets that advanced: one window from the last trigger window's end to
        // their watermark.
        if let Some(window) = trigger_window(input, &mut status, &mut plan) {
            due.push((window, None));
        }

        {
            for (window, tick) in due {
                let id = window.run_id();
                if known(&id, &active, &to_start) {
                    continue;
                }
                if active.len() + to_start.len() < max_active {
                    to_start.push((window, id, false, tick));
                    continue;
                }
                match concurrency.policy {
                    ConcurrencyPolicy::Forbid => {
                        plan.events.push(event(
                            true,
                            "RunSkipped",
                            format!("window {id} skipped: {max_active} run(s) active and policy Forbid"),
                        ));
                        skipped.push(skipped_record(&window, &id, "ConcurrencyLimit"));
                    }
                    ConcurrencyPolicy::Replace => {
                        if let Some((old_id, old, _)) = (!active.is_empty()).then(|| active.remove(0)) {
                            plan.delete
                                .extend(input.jobs.iter().filter(|j| j.run_id == old_id).map(|j| j.name.clone()));
                            plan.events.push(event(
                                false,
                                "RunReplaced",
                                format!("run {old_id} stopped and replaced by {id} (policy Replace)"),
                            ));
                            let mut record = skipped_record(&old.window, &old_id, "Replaced");
                            record.phase = RunPhase::Replaced;
                            record.started = old.started.map(time);
                            record.finished = Some(time(now));
                            skipped.push(record);
                            to_start.push((window, id, false, tick));
                        } else {
                            plan.events.push(event(
                                true,
                                "RunSkipped",
                                format!("window {id} skipped: {max_active} run(s) starting in this reconcile"),
                            ));
                            skipped.push(skipped_record(&window, &id, "ConcurrencyLimit"));
                        }
                    }
                    ConcurrencyPolicy::Queue => {
                        if queue.len() < max_queued {
                            queue.push(record_window(&window));
                        } else {
                            plan.events.push(event(
                                true,
                                "RunSkipped",
                                format!("window {id} skipped: queue full ({max_queued} windows)"),
                            ));
                            skipped.push(skipped_record(&window, &id, "QueueFull"));
                        }
                    }
                }
            }
        }
    }
    status.queued_windows = queue;

    // Start the new runs: they join the active runs with their root steps ready to launch.
    for (window, id, manual, tick) in to_start {
        let run = derive_run(spec, &all_steps, &id, window, &[], now);
        plan.started.push(StartedRun { run_id: id.clone(), tick });
        plan.events.push(event(
            false,
            "RunStarted",
            format!(
                "run {id} started for window [{}, {}){}",
                window.start,
                window.end,
                if manual { " (manual)" } else { "" }
            ),
        ));
        active.push((id, run, manual));
    }
    // One order for the same set of runs, whatever the order they were found in.
    active.sort_by(|a, b| (a.1.window.start, &a.0).cmp(&(b.1.window.start, &b.0)));

    // Launch what is ready, within the free Job slots; note the earliest retry.
    let mut slots = input.free_job_slots;
    let mut wake: Option<Timestamp> = None;
    let mut capped = false;
    for (id, run, _) in &active {
        for (step, state) in &run.steps {
            if let StepState::Launch { attempt } = state {
                if slots == 0 {
                    capped = true;
                    continue;
                }
                slots -= 1;
                plan.create.push(JobToCreate {
                    run_id: id.clone(),
                    window: run.window,
                    step: step.clone(),
                    attempt: *attempt,
                });
            }
        }
        if let Some(at) = run.next_wake() {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
    }

    // Recent runs: newest first, bounded.
    let mut recent: Vec<RunRecord> = newly_finished.into_iter().chain(skipped).collect();
    recent.sort_by(|a, b| b.window.start.0.cmp(&a.window.start.0).then(b.id.cmp(&a.id)));
    recent.extend(input.status.recent_runs.iter().cloned());
    recent.truncate(MAX_RECENT_RUNS);

    // History: keep the Jobs of the newest `successful` and `failed` finished runs.
    let history = spec.history.clone().unwrap_or_default();
    let keep_ok = history.successful.unwrap_or(3).max(0) as usize;
    let keep_failed = history.failed.unwrap_or(3).max(0) as usize;
    let active_ids: BTreeSet<&str> = active.iter().map(|(id, _, _)| id.as_str()).collect();
    let mut finished_with_jobs: Vec<&RunRecord> = recent
        .iter()
        .filter(|r| {
            matches!(r.phase, RunPhase::Succeeded | RunPhase::Failed) && jobs_by_run.contains_key(r.id.as_str())
        })
        .collect();
    finished_with_jobs.sort_by(|a, b| b.finished.as_ref().map(|t| t.0).cmp(&a.finished.as_ref().map(|t| t.0)));
    let (mut ok_seen, mut failed_seen) = (0, 0);
    let mut prune: BTreeSet<&str> = BTreeSet::new();
    for r in finished_with_jobs {
        let (seen, keep) =
            if r.phase == RunPhase::Succeeded { (&mut ok_seen, keep_ok) } else { (&mut failed_seen, keep_failed) };
        *seen += 1;
        if *seen > keep {
            prune.insert(r.id.as_str());
        }
    }
    // Runs that dropped out of recentRuns but still have Jobs are pruned too.
    for run_id in jobs_by_run.keys() {
        if !active_ids.contains(run_id) && !recent.iter().any(|r| r.id == *run_id) {
            prune.insert(run_id);
        }
    }
    // A replaced run's Jobs that the cache shows only now are stopped too.
    for record in recent.iter().filter(|r| r.phase == RunPhase::Replaced) {
        prune.insert(record.id.as_str());
    }
    for job in &input.jobs {
        if prune.contains(job.run_id.as_str()) && !plan.delete.contains(&job.name) {
            plan.delete.push(job.name.clone());
        }
    }

    // Status.
    status.active_runs = active
        .iter()
        .map(|(id, run, manual)| RunRecord {
            id: id.clone(),
            window: record_window(&run.window),
            phase: if run.started.is_some() { RunPhase::Running } else { RunPhase::Pending },
            started: run.started.map(time),
            finished: None,
            failed_step: None,
            reason: None,
            manual: *manual,
        })
        .collect();
    status.active_run_count = active.len() as i32;
    status.last_run_phase = status
        .active_runs
        .last()
        .map(|r| r.phase)
        .or_else(|| recent.iter().find(|r| r.phase != RunPhase::Skipped).map(|r| r.phase));
    let (ok, failed) = recent.iter().fold((0, 0), |(o, f), r| match r.phase {
        RunPhase::Succeeded => (o + 1, f),
        RunPhase::Failed => (o, f + 1),
        _ => (o, f),
    });
    status.success_ratio = (ok + failed > 0).then(|| format!("{:.2}", ok as f64 / (ok + failed) as f64));
    let newest_finished = recent.iter().find(|r| matches!(r.phase, RunPhase::Succeeded | RunPhase::Failed)).cloned();
    status.recent_runs = recent;
    status.next_schedule_time = match (&schedule, suspended) {
        (Some(s), false) => s.next_after(now).map(time),
        _ => None,
    };

    let running = DesiredCondition::new(
        types::RUNNING,
        !active.is_empty(),
        if active.is_empty() { "Idle" } else { "RunsActive" },
        format!("{} run(s) active, {} queued", active.len(), status.queued_windows.len()),
    );
    let degraded = match newest_finished {
        Some(r) if r.phase == RunPhase::Failed => DesiredCondition::new(
            types::DEGRADED,
            true,
            "RunFailed",
            format!(
                "run {} failed at step {}: {}",
                r.id,
                r.failed_step.as_deref().unwrap_or("?"),
                r.reason.as_deref().unwrap_or("unknown")
            ),
        ),
        _ => DesiredCondition::new(
            types::DEGRADED,
            false,
            "LastRunSucceeded",
            "the most recent finished run succeeded or none finished yet",
        ),
    };
    let suspended_condition = if suspended {
        DesiredCondition::new(types::SUSPENDED, true, "Suspended", "spec.suspend is true: no new runs start")
    } else {
        DesiredCondition::new(types::SUSPENDED, false, "Active", "runs start on schedule")
    };
    let mut desired = vec![ready, running, degraded, suspended_condition];
    if spec.trigger.is_some() {
        desired.push(match &plan.trigger_held {
            Some(why) => DesiredCondition::new(HELD, true, "UpstreamContractViolated", why.clone()),
            None => DesiredCondition::new(HELD, false, "NotHeld", "no upstream dataset blocks the trigger"),
        });
    }
    status.conditions = conditions::merge(&input.status.conditions, &desired, input.generation, &time(now));

    // When to look again: the next tick, the next retry, or a free slot.
    let mut next = status.next_schedule_time.as_ref().map(|t| t.0);
    if let Some(w) = wake {
        next = Some(next.map_or(w, |n| n.min(w)));
    }
    plan.requeue_after = next.map(|t| t.duration_since(now).max(SignedDuration::from_millis(10)));
    if capped {
        plan.requeue_after = Some(plan.requeue_after.map_or(CAP_RETRY, |r| r.min(CAP_RETRY)));
    }
    plan.status = status;
    plan
}

/// The window of a run due because upstream datasets advanced, if one is due. Records the
/// consumed watermarks in `status` (so one advance causes one run, also across restarts: the run
/// id is derived from the window), or holds when an upstream dataset blocks.
///
/// `All` waits until every listed dataset advanced past what the last trigger run consumed and
/// covers up to the oldest of their watermarks; `Any` runs when one advanced and covers up to the
/// newest. The window starts at the end of the last trigger window, or for the first trigger run
/// at the start of the upstream run that produced the data.
fn trigger_window(input: &Input<'_>, status: &mut PipelineStatus, plan: &mut Plan) -> Option<Window> {
    let trigger = input.spec.trigger.as_ref()?;
    let consumed = &input.status.consumed_watermarks;
    let advanced: Vec<&Upstream> = input
        .upstream
        .iter()
        .filter(|u| u.watermark.is_some_and(|w| consumed.get(&u.name).is_none_or(|c| w > c.0)))
        .collect();
    let all_present =
        trigger.datasets.iter().all(|d| input.upstream.iter().any(|u| &u.name == d && u.watermark.is_some()));
    let fire = match trigger.mode {
        crate::api::TriggerMode::All => all_present && advanced.len() == trigger.datasets.len(),
        crate::api::TriggerMode::Any => !advanced.is_empty(),
    };
    let blocking: Vec<String> = input
        .upstream
        .iter()
        .filter_map(|u| {
            u.blocking.as_ref().map(|why| format!("dataset {} violates its contract (policy Block): {why}", u.name))
        })
        .collect();
    let was_held = conditions::is_true(&input.status.conditions, HELD);
    if fire && !blocking.is_empty() {
        if !was_held {
            plan.events.push(event(true, "TriggerHeld", blocking.join("; ")));
        }
        plan.trigger_held = Some(blocking.join("; "));
        return None;
    }
    if was_held && (!fire || blocking.is_empty()) {
        plan.events.push(event(false, "TriggerReleased", "upstream contracts are met again".to_string()));
    }
    if !fire {
        return None;
    }
    let end = match trigger.mode {
        crate::api::TriggerMode::All => input.upstream.iter().filter_map(|u| u.watermark).min()?,
        crate::api::TriggerMode::Any => advanced.iter().filter_map(|u| u.watermark).max()?,
    };
    let start = input
        .status
        .trigger_watermark
        .as_ref()
        .map(|t| t.0)
        .or_else(|| advanced.iter().filter_map(|u| u.produced_window.map(|w| w.start)).min())
        .unwrap_or(end);
    for u in &advanced {
        if let Some(w) = u.watermark {
            status.consumed_watermarks.insert(u.name.clone(), time(w));
        }
    }
    if end <= start {
        return None;
    }
    status.trigger_watermark = Some(time(end));
    Some(Window { start, end })
}

fn skipped_record(window: &Window, id: &str, reason: &str) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        window: record_window(window),
        phase: RunPhase::Skipped,
        started: None,
        finished: None,
        failed_step: None,
        reason: Some(reason.to_string()),
        manual: false,
    }
}

fn short_hash(value: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
