//! `decide` for a Pipeline: spec + observed Jobs + current status + now -> Jobs to create, Jobs
//! to delete, the new status, Events and when to look again. Pure: no client, no clock.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ready::{PlannedEvent, ready_condition};
use super::runs::{JobState, ObservedJob, RunState, StepState, derive_run};
use crate::api::conditions::{self, DesiredCondition, types};
use crate::api::{
    CatchUpPolicy, ConcurrencyPolicy, PartitionWindow, PipelineSpec, PipelineStatus, RunPhase, RunRecord, StepSpec,
};
use crate::schedule::{Schedule, Window, WindowRule};

/// How long a capped pipeline waits before it looks for a free Job slot again.
pub const CAP_RETRY: SignedDuration = SignedDuration::from_secs(5);
/// Grace for an on-time run under catch-up policy `None` (and the default starting deadline).
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_secs(60);
/// Fewest finished runs kept in `status.recentRuns` (more when `spec.history` keeps more).
pub const MAX_RECENT_RUNS: usize = 20;
/// Most records kept in `status.skippedRuns`.
pub const MAX_SKIPPED_RUNS: usize = 20;

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
    /// Jobs with this pipeline's label that another object controls (a Backfill, or a
    /// squatter): their names are taken.
    pub foreign: Vec<ForeignJob>,
    /// Value of the `sluice.dev/run-now` annotation.
    pub run_now: Option<&'a str>,
    /// Jobs that may still be created under the namespace and operator-wide caps.
    pub free_job_slots: usize,
    /// Problems found by validation; when any, nothing starts.
    pub problems: Vec<String>,
    /// Steps whose ServiceAccount the namespace does not allow (`tenancy`; also in `problems`):
    /// no Job of theirs is created, also for runs already active.
    pub refused_steps: BTreeSet<String>,
    /// The datasets of `trigger.datasets`, as observed (missing ones are left out).
    pub upstream: Vec<Upstream>,
    /// Datasets read by steps (`steps[].inputs`, not already in `upstream`) that hold new runs
    /// because they violate their contract under policy `Block`: one message each.
    pub blocked_inputs: Vec<String>,
    /// The Pipeline's name, as output Datasets record the runs they checked.
    pub name: &'a str,
    /// For each existing Dataset a step outputs: the last producing run it has checked
    /// (`status.lastCheckedRun`), if any. A succeeded Job of such a step is not deleted before
    /// every one of its output Datasets has checked it, so no run's report is lost to history.
    pub outputs_checked: BTreeMap<String, Option<CheckedKey>>,
    /// What the finished Jobs reserved, and prices: a run's cost is recorded when it finishes.
    pub cost: crate::cost::CostInputs,
}

#[cfg(test)]
impl<'a> Input<'a> {
    /// The input of a decision at `now` for tests: pipeline "p" created at `created`,
    /// generation 1, no Jobs, no manual trigger, 100 free Job slots, a valid spec.
    pub fn for_test(spec: &'a PipelineSpec, status: &'a PipelineStatus, created: Timestamp, now: Timestamp) -> Self {
        Input {
            spec,
            status,
            generation: Some(1),
            created,
            now,
            jobs: vec![],
            foreign: vec![],
            run_now: None,
            free_job_slots: 100,
            problems: vec![],
            refused_steps: Default::default(),
            upstream: vec![],
            blocked_inputs: vec![],
            name: "p",
            outputs_checked: BTreeMap::new(),
            cost: Default::default(),
        }
    }
}

/// A Dataset's checked-run marker, ordered as the Dataset checks runs: finish time, pipeline,
/// run id, step.
pub type CheckedKey = (Timestamp, String, String, String);

/// How soon to look again while history waits for output Datasets to check a run.
pub const DATASET_CHECK_RETRY: SignedDuration = SignedDuration::from_secs(2);

/// A Job whose name belongs to one of this pipeline's runs but that another object controls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignJob {
    pub name: String,
    pub run_id: String,
    pub step: String,
    pub attempt: u32,
    /// Who controls it, for messages: `Backfill/oct`, or `no controller`.
    pub holder: String,
    /// Whether a Backfill of this pipeline controls it: the window then is the Backfill's.
    pub backfill: bool,
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

/// Condition type saying that new runs are held because a Dataset the pipeline reads (a step
/// input or a trigger dataset) violates its contract under policy `Block`.
pub const HELD: &str = "InputsHeld";

pub use super::runs::JobToCreate;

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
    /// Set when new runs are held by an input's contract: why.
    pub held: Option<String>,
    /// Set when history keeps Jobs until output Datasets have checked their runs.
    pub waiting_for_datasets: bool,
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

/// A run in progress: recorded in `status.activeRuns` (or starting in this decision).
#[derive(Clone, Debug)]
struct ActiveRun {
    id: String,
    run: RunState,
    manual: bool,
    /// Set for a late pass: its distance (`plan::late`).
    late: Option<u32>,
}

/// What started a run, as its record keeps it.
#[derive(Clone, Copy, Debug, Default)]
struct Origin {
    manual: bool,
    late: Option<u32>,
}

impl Origin {
    fn of(record: &RunRecord) -> Self {
        Origin { manual: record.manual, late: record.late_pass.and_then(|d| u32::try_from(d).ok()) }
    }
}

/// The steps a run runs: every step, or for a late pass those with `lateRerun: true`.
fn run_steps(spec: &PipelineSpec, late: Option<u32>) -> Vec<&StepSpec> {
    if late.is_some() { super::late::steps(spec) } else { spec.steps.iter().collect() }
}

/// A window that may start in this decision.
#[derive(Clone, Debug)]
struct Candidate {
    window: Window,
    id: String,
    manual: bool,
    /// The tick it is due at (scheduled windows only).
    tick: Option<Timestamp>,
    /// Set for the window of a data-aware trigger: what starting it consumes.
    trigger: Option<TriggerWindow>,
    /// Set for a late pass: its distance from the scheduled window that started it.
    late: Option<u32>,
}

impl Candidate {
    fn new(window: Window, id: String) -> Self {
        Self { window, id, manual: false, tick: None, trigger: None, late: None }
    }
}

/// The window a data-aware trigger makes due, and the upstream watermarks it consumes.
#[derive(Clone, Debug)]
struct TriggerWindow {
    end: Timestamp,
    consumed: BTreeMap<String, Timestamp>,
}

/// Everything decided about runs so far: the working state of `decide`.
#[derive(Default)]
struct Runs {
    active: Vec<ActiveRun>,
    to_start: Vec<Candidate>,
    /// Runs recorded finished in this decision (Succeeded, Failed).
    finished: Vec<RunRecord>,
    /// Windows recorded as not run here in this decision (Skipped, Replaced).
    skipped: Vec<RunRecord>,
}

impl Runs {
    /// Whether run `id` is already in progress, starting, or recorded (here or in `recorded`).
    fn knows(&self, id: &str, recorded: &BTreeSet<&str>) -> bool {
        recorded.contains(id)
            || self.active.iter().any(|a| a.id == id)
            || self.to_start.iter().any(|c| c.id == id)
            || self.finished.iter().chain(&self.skipped).any(|r| r.id == id)
    }

    /// Runs counted against `maxConcurrentRuns`: late passes are not.
    fn slots_taken(&self) -> usize {
        self.active.iter().filter(|a| a.late.is_none()).count()
            + self.to_start.iter().filter(|c| c.late.is_none()).count()
    }

    /// Whether `window` has a run in progress or starting here.
    fn window_busy(&self, window: &Window) -> bool {
        self.active.iter().any(|a| a.run.window == *window) || self.to_start.iter().any(|c| c.window == *window)
    }
}

/// Decides what to do for one Pipeline.
///
/// The rules that keep every window exactly once:
/// - a run becomes active in status before any of its Jobs exists (the status write precedes
///   the creations), so Jobs of a run that is neither active nor recorded are leftovers, pruned
///   and never recorded as a new finish;
/// - a run is recorded finished only when it moves out of `activeRuns`, so once;
/// - a window whose Job names another object holds is not run here: a Backfill's window is
///   recorded `Skipped` (`RunByBackfill`), any other holder fails the run (`NameConflict`).
pub fn decide(input: &Input<'_>) -> Plan {
    let spec = input.spec;
    let now = input.now;
    let mut plan = Plan::default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;

    let mut ready = ready_condition(&input.problems);
    let warnings = crate::validation::pipeline_warnings(spec);
    if input.problems.is_empty() && !warnings.is_empty() {
        ready.message = format!("spec is valid; warning: {}", warnings.join("; "));
    }
    let schedule = spec
        .schedule
        .as_deref()
        .and_then(|expr| Schedule::parse(expr, spec.time_zone.as_deref()).ok())
        .filter(|_| input.problems.is_empty());
    let rule = crate::schedule::window_rule(spec);

    // Records: finished runs, and windows that did not run here (older statuses kept both in
    // recentRuns).
    let (old_finished, old_skipped) = split_records(&input.status.recent_runs, &input.status.skipped_runs);
    let recorded: BTreeSet<&str> = old_finished.iter().chain(&old_skipped).map(|r| r.id.as_str()).collect();

    let mut runs = observe_active_runs(input, &recorded, &mut plan);
    let held = held_by_inputs(input);
    plan.held = held.clone();

    if input.problems.is_empty() && !spec.suspend {
        let mut candidates = manual_candidate(input, schedule.as_ref(), rule, &mut status);
        let mut queue: Vec<PartitionWindow> = std::mem::take(&mut status.queued_windows);
        let mut late = Vec::new();
        if let Some(schedule) = schedule.as_ref() {
            let due = due_ticks(input, schedule, rule, &mut status, &mut plan);
            late = late_candidates(input, schedule, rule, &due);
            candidates.extend(due);
        }
        candidates.extend(trigger_candidate(input));
        let concurrency = spec.concurrency.clone().unwrap_or_default();
        let admission = Admission {
            max_active: concurrency.max_concurrent_runs.unwrap_or(1).max(1) as usize,
            max_queued: concurrency.max_queued.unwrap_or(10).max(1) as usize,
            policy: concurrency.policy,
        };
        if let Some(why) = &held {
            hold(candidates, why, &mut runs, &recorded, &mut plan);
        } else {
            dequeue(&mut queue, &admission, input, &recorded, &mut runs, &mut plan);
            for candidate in candidates {
                admit(candidate, &admission, input, &recorded, &mut queue, &mut runs, &mut status, &mut plan);
            }
            for candidate in late {
                admit_late(candidate, input, &recorded, &queue, &mut runs, &mut plan);
            }
        }
        status.queued_windows = queue;
    }

    start_runs(input, &mut runs, &mut plan);
    let wake = launch(input, &runs, &mut plan);
    let recent = history(input, &runs, old_finished, old_skipped, &mut status, &mut plan);
    finish_status(input, schedule.as_ref(), &runs, recent, ready, &mut status, &mut plan);

    plan.requeue_after = look_again(now, &status, &wake, plan.waiting_for_datasets);
    plan.events.extend(super::pipeline_events::suspension(&input.status.conditions, spec.suspend));
    plan.events.extend(super::pipeline_events::retries(&plan.create, &input.jobs));
    plan.status = status;
    plan
}

/// When to look again: the next tick, the next retry, a free slot, or output Datasets'
/// checks.
fn look_again(
    now: Timestamp,
    status: &PipelineStatus,
    wake: &Wake,
    waiting_for_datasets: bool,
) -> Option<SignedDuration> {
    let mut next = status.next_schedule_time.as_ref().map(|t| t.0);
    if let Some(w) = wake.at {
        next = Some(next.map_or(w, |n| n.min(w)));
    }
    let mut after = next.map(|t| t.duration_since(now).max(SignedDuration::from_millis(10)));
    if wake.capped {
        after = Some(after.map_or(CAP_RETRY, |r| r.min(CAP_RETRY)));
    }
    if waiting_for_datasets {
        after = Some(after.map_or(DATASET_CHECK_RETRY, |r| r.min(DATASET_CHECK_RETRY)));
    }
    after
}

/// Finished and skipped records, each newest window first. Skipped and Replaced records that an
/// older status kept in `recentRuns` move to the skipped list.
fn split_records(recent: &[RunRecord], skipped: &[RunRecord]) -> (Vec<RunRecord>, Vec<RunRecord>) {
    let is_finish = |r: &&RunRecord| matches!(r.phase, RunPhase::Succeeded | RunPhase::Failed);
    let finished: Vec<RunRecord> = recent.iter().filter(is_finish).cloned().collect();
    let mut not_run: Vec<RunRecord> = skipped.iter().chain(recent.iter().filter(|r| !is_finish(r))).cloned().collect();
    sort_newest_first(&mut not_run);
    (finished, not_run)
}

fn sort_newest_first(records: &mut [RunRecord]) {
    records.sort_by(|a, b| b.window.start.0.cmp(&a.window.start.0).then(b.id.cmp(&a.id)));
}

/// The runs recorded active, derived from their Jobs; those that finished are recorded, those
/// whose Job names another object holds are handed over or failed.
fn observe_active_runs(input: &Input<'_>, recorded: &BTreeSet<&str>, plan: &mut Plan) -> Runs {
    let mut runs = Runs::default();
    for record in &input.status.active_runs {
        if recorded.contains(record.id.as_str()) || runs.knows(&record.id, recorded) {
            continue;
        }
        let origin = Origin::of(record);
        let steps = run_steps(input.spec, origin.late);
        let own: Vec<&ObservedJob> = input.jobs.iter().filter(|j| j.run_id == record.id).collect();
        let run = derive_run(input.spec, &steps, &record.id, window_of(&record.window), &own, input.now);
        if let Some(foreign) = conflict(&run, &input.foreign) {
            resolve_conflict(&run, foreign, own.is_empty(), origin, input.now, &mut runs, plan);
        } else if run.finished() {
            let cost = crate::cost::run_cost(&run.steps, &own, &input.cost);
            record_finished(&run, origin, cost, &mut runs, plan);
        } else {
            runs.active.push(ActiveRun { id: record.id.clone(), run, manual: origin.manual, late: origin.late });
        }
    }
    runs
}

/// The foreign Job that holds the name of a Job `run` is about to launch, if any.
fn conflict<'a>(run: &RunState, foreign: &'a [ForeignJob]) -> Option<&'a ForeignJob> {
    run.steps.iter().find_map(|(step, state)| match state {
        StepState::Launch { attempt } => {
            foreign.iter().find(|f| f.run_id == run.run_id && &f.step == step && f.attempt == *attempt)
        }
        _ => None,
    })
}

/// A run whose next Job name is held by `foreign`: a Backfill that holds a run not started here
/// runs that window (recorded Skipped, `RunByBackfill`); any other holder fails the run.
fn resolve_conflict(
    run: &RunState,
    foreign: &ForeignJob,
    nothing_launched: bool,
    origin: Origin,
    now: Timestamp,
    runs: &mut Runs,
    plan: &mut Plan,
) {
    if foreign.backfill && nothing_launched {
        plan.events.push(event(
            false,
            "RunByBackfill",
            format!("window {} is run by {}: not started here", run.run_id, foreign.holder),
        ));
        let mut record = skipped_record(&run.window, &run.run_id, "RunByBackfill");
        record.late_pass = origin.late.map(|d| d as i32);
        runs.skipped.push(record);
        return;
    }
    let reason = format!("NameConflict: Job {} is held by {}", foreign.name, foreign.holder);
    plan.events.push(event(
        true,
        "NameConflict",
        format!("run {} failed at step {}: {reason}", run.run_id, foreign.step),
    ));
    let record = RunRecord {
        id: run.run_id.clone(),
        window: record_window(&run.window),
        phase: RunPhase::Failed,
        started: run.started.map(time),
        finished: Some(time(now)),
        failed_step: Some(foreign.step.clone()),
        reason: Some(reason),
        manual: origin.manual,
        cost: None,
        late_pass: origin.late.map(|d| d as i32),
    };
    plan.finished.push(FinishedRun { run_id: run.run_id.clone(), phase: RunPhase::Failed, duration: None });
    runs.finished.push(record);
}

fn record_finished(
    run: &RunState,
    origin: Origin,
    cost: Option<crate::api::RunCost>,
    runs: &mut Runs,
    plan: &mut Plan,
) {
    let failed = run.failed_step();
    let phase = if failed.is_some() { RunPhase::Failed } else { RunPhase::Succeeded };
    let run_id = &run.run_id;
    let duration = run.started.zip(run.finished_at()).map(|(s, f)| f.duration_since(s));
    plan.finished.push(FinishedRun { run_id: run_id.clone(), phase, duration });
    plan.events.push(match failed {
        Some((step, reason)) => event(true, "RunFailed", format!("run {run_id} failed at step {step}: {reason}")),
        None => event(false, "RunSucceeded", format!("run {run_id} succeeded")),
    });
    runs.finished.push(RunRecord {
        id: run_id.clone(),
        window: record_window(&run.window),
        phase,
        started: run.started.map(time),
        finished: run.finished_at().map(time),
        failed_step: failed.map(|(s, _)| s.to_string()),
        reason: failed.map(|(_, r)| r.to_string()),
        manual: origin.manual,
        cost,
        late_pass: origin.late.map(|d| d as i32),
    });
}

/// Why new runs are held: Datasets the pipeline reads that violate their contract under `Block`.
fn held_by_inputs(input: &Input<'_>) -> Option<String> {
    let reasons: Vec<String> = input
        .upstream
        .iter()
        .filter_map(|u| {
            u.blocking.as_ref().map(|why| format!("dataset {} violates its contract (policy Block): {why}", u.name))
        })
        .chain(input.blocked_inputs.iter().cloned())
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// One run of the latest complete window per new value of the run-now annotation.
fn manual_candidate(
    input: &Input<'_>,
    schedule: Option<&Schedule>,
    rule: WindowRule,
    status: &mut PipelineStatus,
) -> Vec<Candidate> {
    let (Some(value), Some(schedule)) = (input.run_now, schedule) else { return Vec::new() };
    if input.status.last_manual_trigger.as_deref() == Some(value) {
        return Vec::new();
    }
    status.last_manual_trigger = Some(value.to_string());
    let Some(window) = schedule.latest_at_or_before(input.now).and_then(|t| schedule.window_at(t, rule)) else {
        return Vec::new();
    };
    let id = format!("{}-manual-{}", window.run_id(), crate::jobs::short_hash(value, 3));
    vec![Candidate { manual: true, ..Candidate::new(window, id) }]
}

/// The scheduled windows due since the last handled tick, oldest first, under the catch-up
/// policy and starting deadline; the others are counted missed.
fn due_ticks(
    input: &Input<'_>,
    schedule: &Schedule,
    rule: WindowRule,
    status: &mut PipelineStatus,
    plan: &mut Plan,
) -> Vec<Candidate> {
    let spec = input.spec;
    let now = input.now;
    {
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
        ticks
            .into_iter()
            .filter_map(|tick| {
                let window = schedule.window_at(tick, rule)?;
                Some(Candidate { tick: Some(tick), ..Candidate::new(window, window.run_id()) })
            })
            .collect()
    }
}

/// The window due because upstream datasets advanced, if any. Nothing is consumed here: the
/// consumed watermarks are recorded only when the window starts or is queued, so a window that
/// cannot start now (Forbid, a full queue, a held input) stays due.
///
/// `All` covers from the end of the last trigger window up to the oldest upstream watermark and
/// is due once every upstream dataset has a watermark past that start; `Any` covers up to the
/// newest watermark and is due once one is past the start. The first trigger window starts at
/// the start of the upstream run that produced the data.
fn trigger_candidate(input: &Input<'_>) -> Option<Candidate> {
    let trigger = input.spec.trigger.as_ref()?;
    let watermarks: Vec<(&Upstream, Timestamp)> =
        input.upstream.iter().filter_map(|u| u.watermark.map(|w| (u, w))).collect();
    let all_present = trigger.datasets.iter().all(|d| watermarks.iter().any(|(u, _)| &u.name == d));
    let end = match trigger.mode {
        crate::api::TriggerMode::All if all_present => watermarks.iter().map(|(_, w)| *w).min()?,
        crate::api::TriggerMode::All => return None,
        crate::api::TriggerMode::Any => watermarks.iter().map(|(_, w)| *w).max()?,
    };
    let start = match input.status.trigger_watermark.as_ref() {
        Some(t) => t.0,
        None => watermarks.iter().filter_map(|(u, _)| u.produced_window.map(|w| w.start)).min().unwrap_or(end),
    };
    if end <= start {
        return None;
    }
    let window = Window { start, end };
    let consumed = watermarks.iter().map(|(u, w)| (u.name.clone(), *w)).collect();
    Some(Candidate { trigger: Some(TriggerWindow { end, consumed }), ..Candidate::new(window, window.run_id()) })
}

/// The concurrency settings with defaults.
struct Admission {
    max_active: usize,
    max_queued: usize,
    policy: ConcurrencyPolicy,
}

/// Inputs hold: no window starts. Scheduled and manual windows are recorded Skipped
/// (`InputContractViolated`, a Backfill can run them later); a trigger window stays due; queued
/// windows stay queued.
fn hold(candidates: Vec<Candidate>, why: &str, runs: &mut Runs, recorded: &BTreeSet<&str>, plan: &mut Plan) {
    for c in candidates.into_iter().filter(|c| c.trigger.is_none()) {
        if runs.knows(&c.id, recorded) {
            continue;
        }
        plan.events.push(event(true, "RunSkipped", format!("window {} skipped: inputs held: {why}", c.id)));
        runs.skipped.push(skipped_record(&c.window, &c.id, "InputContractViolated"));
    }
}

/// Queued windows start first, in order, as slots free.
fn dequeue(
    queue: &mut Vec<PartitionWindow>,
    admission: &Admission,
    input: &Input<'_>,
    recorded: &BTreeSet<&str>,
    runs: &mut Runs,
    plan: &mut Plan,
) {
    while runs.slots_taken() < admission.max_active && !queue.is_empty() {
        let window = window_of(&queue.remove(0));
        let candidate = Candidate::new(window, window.run_id());
        if !runs.knows(&candidate.id, recorded) && !taken_elsewhere(&candidate, input, runs, plan) {
            runs.to_start.push(candidate);
        }
    }
}

/// Whether another object holds the first Job name of `candidate`: then it is handed over
/// (a Backfill) or failed (anyone else) instead of started.
fn taken_elsewhere(candidate: &Candidate, input: &Input<'_>, runs: &mut Runs, plan: &mut Plan) -> bool {
    let Some(foreign) = input.foreign.iter().find(|f| f.run_id == candidate.id) else { return false };
    let steps = run_steps(input.spec, candidate.late);
    let run = derive_run(input.spec, &steps, &candidate.id, candidate.window, &[], input.now);
    let origin = Origin { manual: candidate.manual, late: candidate.late };
    resolve_conflict(&run, foreign, true, origin, input.now, runs, plan);
    true
}

/// A due window: start it when a slot is free (a manual run always), otherwise apply the
/// concurrency policy.
#[allow(clippy::too_many_arguments)]
fn admit(
    candidate: Candidate,
    admission: &Admission,
    input: &Input<'_>,
    recorded: &BTreeSet<&str>,
    queue: &mut Vec<PartitionWindow>,
    runs: &mut Runs,
    status: &mut PipelineStatus,
    plan: &mut Plan,
) {
    let id = candidate.id.clone();
    if runs.knows(&id, recorded) {
        consume_trigger(&candidate, status);
        return;
    }
    if taken_elsewhere(&candidate, input, runs, plan) {
        consume_trigger(&candidate, status);
        return;
    }
    let max_active = admission.max_active;
    // A manual run is asked for explicitly: it starts beside the active runs.
    if candidate.manual || runs.slots_taken() < max_active {
        consume_trigger(&candidate, status);
        runs.to_start.push(candidate);
        return;
    }
    let is_trigger = candidate.trigger.is_some();
    let window = candidate.window;
    let skip = |plan: &mut Plan, runs: &mut Runs, note: String, reason: &str| {
        if is_trigger {
            // Left unconsumed: due again once a slot frees.
            return;
        }
        plan.events.push(event(true, "RunSkipped", note));
        runs.skipped.push(skipped_record(&window, &id, reason));
    };
    match admission.policy {
        ConcurrencyPolicy::Forbid => skip(
            plan,
            runs,
            format!("window {id} skipped: {max_active} run(s) active and policy Forbid"),
            "ConcurrencyLimit",
        ),
        // The oldest active run of a window's own (a late pass is not counted, so not replaced).
        ConcurrencyPolicy::Replace if runs.active.iter().any(|a| a.late.is_none()) => {
            let oldest = runs.active.iter().position(|a| a.late.is_none()).unwrap_or_default();
            let old = runs.active.remove(oldest);
            plan.delete.extend(input.jobs.iter().filter(|j| j.run_id == old.id).map(|j| j.name.clone()));
            plan.events.push(event(
                false,
                "RunReplaced",
                format!("run {} stopped and replaced by {id} (policy Replace)", old.id),
            ));
            let mut record = skipped_record(&old.run.window, &old.id, "Replaced");
            record.phase = RunPhase::Replaced;
            record.started = old.run.started.map(time);
            record.finished = Some(time(input.now));
            record.manual = old.manual;
            record.late_pass = old.late.map(|d| d as i32);
            runs.skipped.push(record);
            consume_trigger(&candidate, status);
            runs.to_start.push(candidate);
        }
        ConcurrencyPolicy::Replace => skip(
            plan,
            runs,
            format!("window {id} skipped: {max_active} run(s) starting in this reconcile"),
            "ConcurrencyLimit",
        ),
        ConcurrencyPolicy::Queue if queue.len() < admission.max_queued => {
            consume_trigger(&candidate, status);
            queue.push(record_window(&candidate.window));
        }
        ConcurrencyPolicy::Queue => {
            skip(plan, runs, format!("window {id} skipped: queue full ({} windows)", admission.max_queued), "QueueFull")
        }
    }
}

/// Records what a trigger window consumed (it started, was queued or is already known).
fn consume_trigger(candidate: &Candidate, status: &mut PipelineStatus) {
    if let Some(trigger) = &candidate.trigger {
        status.trigger_watermark = Some(time(trigger.end));
        for (name, watermark) in &trigger.consumed {
            status.consumed_watermarks.insert(name.clone(), time(*watermark));
        }
    }
}

/// The new runs join the active runs with their root steps ready to launch.
fn start_runs(input: &Input<'_>, runs: &mut Runs, plan: &mut Plan) {
    for c in std::mem::take(&mut runs.to_start) {
        let steps = run_steps(input.spec, c.late);
        let run = derive_run(input.spec, &steps, &c.id, c.window, &[], input.now);
        plan.started.push(StartedRun { run_id: c.id.clone(), tick: c.tick.filter(|_| c.late.is_none()) });
        let how = match (c.manual, c.late) {
            (true, _) => " (manual)".to_string(),
            (false, Some(d)) => format!(" (late pass, {d} window(s) before the scheduled one)"),
            (false, None) => String::new(),
        };
        plan.events.push(event(
            false,
            "RunStarted",
            format!("run {} started for window [{}, {}){how}", c.id, c.window.start, c.window.end),
        ));
        runs.active.push(ActiveRun { id: c.id, run, manual: c.manual, late: c.late });
    }
    // One order for the same set of runs, whatever the order they were found in.
    runs.active.sort_by(|a, b| (a.run.window.start, &a.id).cmp(&(b.run.window.start, &b.id)));
}

/// When the active runs need a look again, and whether the Job caps held a launch back.
struct Wake {
    at: Option<Timestamp>,
    capped: bool,
}

/// Launch what is ready, within the free Job slots, in run and step order.
fn launch(input: &Input<'_>, runs: &Runs, plan: &mut Plan) -> Wake {
    let mut slots = input.free_job_slots;
    let mut wake = Wake { at: None, capped: false };
    for active in &runs.active {
        for (step, state) in &active.run.steps {
            if let StepState::Launch { attempt } = state {
                if input.refused_steps.contains(step) {
                    continue;
                }
                if slots == 0 {
                    wake.capped = true;
                    continue;
                }
                slots -= 1;
                plan.create.push(JobToCreate {
                    run_id: active.id.clone(),
                    window: active.run.window,
                    step: step.clone(),
                    attempt: *attempt,
                    demand: (),
                });
            }
        }
        if let Some(at) = active.run.next_wake() {
            wake.at = Some(wake.at.map_or(at, |w| w.min(at)));
        }
    }
    wake
}

/// Records and history: the finished runs (at least `MAX_RECENT_RUNS`, and every run whose Jobs
/// history keeps) and the skipped windows, newest first; the Jobs of runs beyond the history,
/// of replaced runs and of runs no record or active run names are deleted. Returns the finished
/// records.
fn history(
    input: &Input<'_>,
    runs: &Runs,
    old_finished: Vec<RunRecord>,
    old_skipped: Vec<RunRecord>,
    status: &mut PipelineStatus,
    plan: &mut Plan,
) -> Vec<RunRecord> {
    let history = input.spec.history.clone().unwrap_or_default();
    let keep_ok = history.successful.unwrap_or(3).max(0) as usize;
    let keep_failed = history.failed.unwrap_or(3).max(0) as usize;

    let mut recent: Vec<RunRecord> = runs.finished.clone();
    recent.extend(old_finished);
    sort_newest_first(&mut recent);
    keep_newest(&mut recent, MAX_RECENT_RUNS.max(keep_ok + keep_failed), |r| {
        runs.finished.iter().any(|f| f.id == r.id)
    });
    // A skipped late pass is no window that went unrun: its window has its own record.
    let skipped_windows = runs.skipped.iter().filter(|r| r.phase == RunPhase::Skipped && r.late_pass.is_none());
    status.skipped_windows += skipped_windows.count() as i64;
    let mut skipped: Vec<RunRecord> = runs.skipped.clone();
    skipped.extend(old_skipped);
    sort_newest_first(&mut skipped);
    // A skipped late pass is written at least once (it is not counted in skippedWindows).
    let new_late = |r: &RunRecord| r.late_pass.is_some() && runs.skipped.iter().any(|s| s.id == r.id);
    keep_newest(&mut skipped, MAX_SKIPPED_RUNS, new_late);

    // Keep the Jobs of the newest `successful` and `failed` finished runs and of active runs.
    let mut keep: BTreeSet<&str> = runs.active.iter().map(|a| a.id.as_str()).collect();
    let (mut ok_seen, mut failed_seen) = (0, 0);
    for r in &recent {
        let (seen, limit) =
            if r.phase == RunPhase::Succeeded { (&mut ok_seen, keep_ok) } else { (&mut failed_seen, keep_failed) };
        *seen += 1;
        if *seen <= limit {
            keep.insert(r.id.as_str());
        }
    }
    for job in &input.jobs {
        if keep.contains(job.run_id.as_str()) || plan.delete.contains(&job.name) {
            continue;
        }
        if unchecked_output(input, job) {
            plan.waiting_for_datasets = true;
            continue;
        }
        plan.delete.push(job.name.clone());
    }
    status.skipped_runs = skipped;
    recent
}

/// The first `limit` records, and beyond them those `written_once` says must be written in this
/// status at least once: a run recorded in this decision (a late pass of an old window sorts
/// behind newer windows) is never dropped before any status held it, so its Jobs are never
/// deleted unrecorded.
fn keep_newest(records: &mut Vec<RunRecord>, limit: usize, written_once: impl Fn(&RunRecord) -> bool) {
    let mut i = 0;
    records.retain(|r| {
        i += 1;
        i <= limit || written_once(r)
    });
}

/// Whether `job` succeeded for a step whose output Datasets have not all checked it yet.
fn unchecked_output(input: &Input<'_>, job: &ObservedJob) -> bool {
    let JobState::Succeeded { finished } = job.state else { return false };
    let Some(step) = input.spec.steps.iter().find(|s| s.name == job.step) else { return false };
    let key = (finished, input.name.to_string(), job.run_id.clone(), job.step.clone());
    step.outputs
        .iter()
        .filter_map(|d| input.outputs_checked.get(d))
        .any(|checked| checked.as_ref().is_none_or(|c| *c < key))
}

/// The rest of the status: active runs, phase, ratio, next tick, conditions.
fn finish_status(
    input: &Input<'_>,
    schedule: Option<&Schedule>,
    runs: &Runs,
    recent: Vec<RunRecord>,
    ready: DesiredCondition,
    status: &mut PipelineStatus,
    plan: &mut Plan,
) {
    let spec = input.spec;
    let now = input.now;
    let active = &runs.active;
    status.active_runs = active.iter().map(|a| active_record(a, input, &plan.create)).collect();
    status.active_run_count = active.len() as i32;
    status.last_run_phase = status.active_runs.last().map(|r| r.phase).or_else(|| recent.first().map(|r| r.phase));
    let (ok, failed) = recent.iter().fold((0, 0), |(o, f), r| match r.phase {
        RunPhase::Succeeded => (o + 1, f),
        RunPhase::Failed => (o, f + 1),
        _ => (o, f),
    });
    status.success_ratio = (ok + failed > 0).then(|| format!("{:.2}", ok as f64 / (ok + failed) as f64));
    let newest_finished = recent.first().cloned();
    status.recent_runs = recent;
    status.cost = crate::cost::pipeline_summary(status);
    status.next_schedule_time = match (schedule, spec.suspend) {
        (Some(s), false) => s.next_after(now).map(time),
        _ => None,
    };

    let desired = desired_conditions(input, status, newest_finished.as_ref(), ready, plan);
    status.conditions = conditions::merge(&input.status.conditions, &desired, input.generation, &time(now));
}

/// The `activeRuns` entry of `active`. A run is Running from the decision that creates its first
/// Job, with that decision's time as `started`, and keeps the `started` its record holds: seeing
/// the Job it created is no change, so it costs no status write (only Kueue's suspension, Queued,
/// is one).
fn active_record(active: &ActiveRun, input: &Input<'_>, create: &[JobToCreate]) -> RunRecord {
    let recorded = input.status.active_runs.iter().find(|r| r.id == active.id).and_then(|r| r.started.clone());
    let creating = create.iter().any(|c| c.run_id == active.id);
    let started = recorded.or_else(|| active.run.started.or(creating.then_some(input.now)).map(time));
    RunRecord {
        id: active.id.clone(),
        window: record_window(&active.run.window),
        phase: match started {
            Some(_) if active.run.queued() => RunPhase::Queued,
            Some(_) => RunPhase::Running,
            None => RunPhase::Pending,
        },
        started,
        finished: None,
        failed_step: None,
        reason: None,
        manual: active.manual,
        cost: None,
        late_pass: active.late.map(|d| d as i32),
    }
}

/// Ready, Running, Degraded, Suspended and (for Pipelines that read Datasets) InputsHeld, with
/// the InputsHeld and InputsReleased Events on its transitions.
fn desired_conditions(
    input: &Input<'_>,
    status: &PipelineStatus,
    newest_finished: Option<&RunRecord>,
    ready: DesiredCondition,
    plan: &mut Plan,
) -> Vec<DesiredCondition> {
    let spec = input.spec;
    let active = &status.active_runs;
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
    let suspended_condition = if spec.suspend {
        DesiredCondition::new(types::SUSPENDED, true, "Suspended", "spec.suspend is true: no new runs start")
    } else {
        DesiredCondition::new(types::SUSPENDED, false, "Active", "runs start on schedule")
    };
    let mut desired = vec![ready, running, degraded, suspended_condition];
    let reads_datasets = spec.trigger.is_some() || spec.steps.iter().any(|s| !s.inputs.is_empty());
    if reads_datasets {
        desired.push(match &plan.held {
            Some(why) => DesiredCondition::new(HELD, true, "UpstreamContractViolated", why.clone()),
            None => DesiredCondition::new(HELD, false, "NotHeld", "no input dataset blocks new runs"),
        });
        let was_held = conditions::is_true(&input.status.conditions, HELD);
        match (&plan.held, was_held) {
            (Some(why), false) => plan.events.push(event(true, "InputsHeld", why.clone())),
            (None, true) => {
                plan.events.push(event(false, "InputsReleased", "input contracts are met again".to_string()))
            }
            _ => {}
        }
    }
    desired
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
        cost: None,
        late_pass: None,
    }
}

/// The late passes (`spec.lateness`) of the newest scheduled window due now, nearest first.
/// Only the newest: when a decision catches up several ticks, the older ticks' windows run now
/// themselves, and the late passes of one decision stay at most `late::MAX_LOOKBACK`.
fn late_candidates(input: &Input<'_>, schedule: &Schedule, rule: WindowRule, due: &[Candidate]) -> Vec<Candidate> {
    let Some((tick, newest)) = due.iter().filter_map(|c| c.tick.map(|t| (t, c))).max_by_key(|(t, _)| *t) else {
        return Vec::new();
    };
    super::late::windows(input.spec, schedule, rule, tick, &newest.window, input.created)
        .into_iter()
        .map(|(distance, window)| {
            let id = super::late::run_id(&window, distance);
            Candidate { late: Some(distance), ..Candidate::new(window, id) }
        })
        .collect()
}

/// A late pass: started unless already known, its name held elsewhere, or its window busy (a
/// run in progress or starting here, queued, or a Backfill's Jobs): then it is recorded Skipped
/// (`WindowBusy`) so that it never runs beside another run of the window.
fn admit_late(
    candidate: Candidate,
    input: &Input<'_>,
    recorded: &BTreeSet<&str>,
    queue: &[PartitionWindow],
    runs: &mut Runs,
    plan: &mut Plan,
) {
    if runs.knows(&candidate.id, recorded) || taken_elsewhere(&candidate, input, runs, plan) {
        return;
    }
    let window = candidate.window;
    let own_id = window.run_id();
    let backfilled = input.foreign.iter().any(|f| f.backfill && f.run_id.starts_with(&own_id));
    let running = input.jobs.iter().any(|j| j.window == window && j.state.unfinished());
    let replaced = runs.skipped.iter().any(|r| r.phase == RunPhase::Replaced && window_of(&r.window) == window);
    if runs.window_busy(&window) || queue.iter().any(|q| window_of(q) == window) || backfilled || running || replaced {
        plan.events.push(event(
            true,
            "RunSkipped",
            format!(
                "late pass {} skipped: window [{}, {}) has a run in progress",
                candidate.id, window.start, window.end
            ),
        ));
        let mut record = skipped_record(&window, &candidate.id, "WindowBusy");
        record.late_pass = candidate.late.map(|d| d as i32);
        runs.skipped.push(record);
        return;
    }
    runs.to_start.push(candidate);
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pipeline_late_tests.rs"]
mod late_tests;

#[cfg(test)]
#[path = "pipeline_writes_tests.rs"]
mod writes_tests;
