//! `decide` for a Backfill: spec + the Pipeline + this backfill's Jobs + records of other runs +
//! the quota budget + now -> Jobs to create, Jobs to delete, the new status, Events and when to
//! look again. Pure: no client, no clock.
//!
//! # State
//! Nothing per window is kept in status. What this backfill has done is
//! - `processedRanges`: the windows it is done with (succeeded, failed or skipped), exact and
//!   compact, because partitions finish roughly in order;
//! - its Jobs: the partitions in progress, derived like a Pipeline's runs (`plan::runs`).
//!
//! A partition's Jobs are deleted once its window is recorded in a status that has been
//! written, so the record, not the Jobs, stops a finished window from being started again (the
//! Jobs of the newest failed partitions are kept for inspection). Everything else is pending:
//! the next partitions are found by walking the windows in order from the first one, jumping
//! over processed ranges ([`scan`]), so a decision costs a few steps for any number of
//! partitions.
//!
//! # Idempotency
//! A partition's run id is its window's run id, the one the Pipeline's scheduled run of that
//! window has, so its Jobs have the Pipeline's deterministic names: creating one that exists
//! yields `AlreadyExists`, never a second run. When that run id may have named Jobs already
//! (Jobs of it exist, the Pipeline's status records a run of it, or another backfill is done
//! with the window) and `reprocess` selects the window anyway, the run id gets a suffix derived
//! from the Backfill's UID (`-b<hash>`), still the same on every decision: a Job name is never
//! created again after its Job was deleted. Once a partition has Jobs, their run id is used. Retries are further
//! Jobs with deterministic names (`-aN`). A restart at any moment therefore repeats creations,
//! which `AlreadyExists` absorbs when the existing Job is this backfill's, and never launches
//! anything twice. A name held by another owner is never taken as launched ([`CreateRound`]):
//! the partition is not admitted, and a holder that is not Sluice's is shown as `NameConflict`.
//!
//! # Windows and the schedule
//! The windows are those of the Pipeline's schedule and partition settings as they were when
//! the backfill started (`status.partitionBasis`), so the total and the processed ranges always
//! count the same windows; `Complete`, once True, stays True until the spec changes.
//! Windows whose tick the Pipeline's schedule has not handled yet (later than both the
//! Pipeline's creation and its `lastScheduleTime`) are the schedule's: they stay pending until
//! the schedule has run or passed them, so a backfill never races a scheduled run for a window.
//!
//! # Inputs
//! While a Dataset that a backfilled step reads violates its contract with `policy: Block`, no
//! new partition starts and no step that reads it is launched (`InputContractViolated`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backfill_partitions::{Partitions, Scan, Verdict, describe, pinned_basis, rule_of, scan};
use super::backfill_ranges::RangeSet;
use super::backfill_records::{Records, verdict};
use super::backfill_status::{self as summary, Outcome, reasons};
use super::ready::{PlannedEvent, ready_condition};
use super::runs::{ObservedJob, RunState, StepState, derive_run};
use crate::api::conditions::{self, types};
use crate::api::{
    BackfillOrder, BackfillSpec, BackfillStatus, BackfillSteps, FailurePolicy, PartitionCounts, PartitionFailure,
    PipelineSpec, PipelineStatus, RetrySpec, StepKind, StepSpec, Throttle,
};
use crate::jobs::job_name;
use crate::quota::{Admission, Budget, ContainerDefaults, Milli, NeverFits, PodDemand, pod_demand};
use crate::schedule::{Schedule, Window};

/// Most partitions a backfill may hold (its range is checked once, when the schedule changes).
pub const MAX_PARTITIONS: u64 = 1_000_000;
/// Most windows one decision walks; the next decision continues at once.
pub const MAX_SCAN_STEPS: usize = 5_000;
/// Most entries of `succeededRanges` and `failedRanges`.
pub const MAX_RANGES: usize = 100;
/// Most entries of `nameConflicts`.
pub const MAX_NAME_CONFLICTS: usize = 10;
/// Most entries of `recentFailures`.
pub const MAX_RECENT_FAILURES: usize = 10;
/// The Jobs of this many most recent failed partitions are kept for inspection.
pub const KEEP_FAILED_JOBS: usize = 3;
/// Retries per failed step when `failurePolicy.retriesPerPartition` is not set.
pub const DEFAULT_RETRIES: i32 = 2;
/// How long to wait before looking again at windows whose runs are in progress elsewhere.
pub const BUSY_RETRY: SignedDuration = SignedDuration::from_secs(10);
/// How long to wait for a free Job slot under the operator's Job caps.
pub const CAP_RETRY: SignedDuration = SignedDuration::from_secs(5);
/// How soon to look again at inputs whose contract is violated (a Dataset's change does not
/// wake a Backfill).
pub const CONTRACT_RETRY: SignedDuration = SignedDuration::from_secs(30);
/// How soon to look again after a Job name turned out to be held by a Sluice run of the
/// Pipeline that the caches do not show yet.
pub const TAKEN_RETRY: SignedDuration = SignedDuration::from_secs(1);
/// How soon to look again at Job names held by Jobs that are not Sluice's (see
/// [`CreateRound`]).
pub const NAME_CONFLICT_RETRY: SignedDuration = SignedDuration::from_secs(60);
/// How soon to continue a walk that reached [`MAX_SCAN_STEPS`].
pub const SCAN_CONTINUE: SignedDuration = SignedDuration::from_millis(10);

/// The referenced Pipeline as observed.
#[derive(Clone, Copy, Debug)]
pub struct PipelineView<'a> {
    pub name: &'a str,
    pub spec: &'a PipelineSpec,
    pub status: Option<&'a PipelineStatus>,
    pub created: Timestamp,
}

/// What the Backfill reconciler observed.
pub struct Input<'a> {
    pub spec: &'a BackfillSpec,
    pub status: &'a BackfillStatus,
    pub generation: Option<i64>,
    /// The Backfill's UID: the suffix of its own run ids.
    pub uid: &'a str,
    pub now: Timestamp,
    /// `None` when the Pipeline does not exist (then `problems` says so).
    pub pipeline: Option<PipelineView<'a>>,
    /// This backfill's Jobs that are not being deleted, including the ones created but not in
    /// the watch cache yet.
    pub jobs: Vec<ObservedJob>,
    /// Records of other runs of the same pipeline.
    pub records: Records,
    /// LimitRange defaults of the namespace, for the pods' requests.
    pub container_defaults: ContainerDefaults,
    /// The quota budget and own limits.
    pub budget: Budget,
    /// Jobs that may still be created under the operator's Job caps.
    pub free_job_slots: usize,
    /// Problems found by validation; when any, nothing starts.
    pub problems: Vec<String>,
    /// Datasets whose contract (`policy: Block`) is violated: no partition reading one starts.
    pub blocked_inputs: Vec<BlockedInput>,
    /// Names of Jobs this backfill would create that exist under another owner and are not
    /// Sluice Jobs of the Pipeline (checked just before this decision): the partitions that
    /// need them wait.
    pub name_conflicts: Vec<String>,
}

/// A Dataset whose contract has `policy: Block` and whose `SchemaConformant` condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedInput {
    pub dataset: String,
    /// The violation, from the `SchemaConformant` condition.
    pub message: String,
}

/// A Job to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobToCreate {
    pub run_id: String,
    pub window: Window,
    pub step: String,
    pub attempt: u32,
    /// What its pod will be charged by the quota.
    pub demand: PodDemand,
}

/// The decision.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub create: Vec<JobToCreate>,
    /// Jobs of recorded partitions: delete them only after `status` has been written.
    pub delete: Vec<String>,
    pub status: BackfillStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue_after: Option<SignedDuration>,
    /// Run ids of the partitions started by this decision.
    pub admitted: Vec<String>,
    /// Partitions that finished (succeeded, failed) as observed by this decision.
    pub finished: (usize, usize),
    /// Headroom beyond the reserve left by this decision, per quota key.
    pub headroom: Vec<(String, Milli)>,
}

/// A partition in progress.
struct Active {
    run_id: String,
    window: Window,
    /// `None` when the Pipeline is gone and the steps are unknown.
    run: Option<RunState>,
}

fn event(warning: bool, reason: &'static str, note: String) -> PlannedEvent {
    PlannedEvent { warning, reason, note }
}

/// The Pipeline spec that backfill runs follow: each step retried
/// `failurePolicy.retriesPerPartition` times with the step's own backoff.
pub fn runs_spec(pipeline: &PipelineSpec, policy: Option<&FailurePolicy>) -> PipelineSpec {
    let retries = policy.and_then(|p| p.retries_per_partition).unwrap_or(DEFAULT_RETRIES).max(0);
    let mut spec = pipeline.clone();
    for step in &mut spec.steps {
        let mut r: RetrySpec = step.retries.clone().unwrap_or_default();
        r.limit = Some(retries);
        step.retries = Some(r);
    }
    spec
}

/// The steps a backfill runs.
pub fn selected_steps(spec: &PipelineSpec, steps: BackfillSteps) -> Vec<&StepSpec> {
    spec.steps.iter().filter(|s| steps == BackfillSteps::All || s.kind == StepKind::Transform).collect()
}

/// The run id of a new partition for `window`: the Pipeline's run id of the window, or, when
/// Jobs of that run id exist already, the same with a suffix derived from the Backfill's UID.
pub fn run_id_for(window: &Window, taken: bool, uid: &str) -> String {
    let id = window.run_id();
    if taken { format!("{id}-b{}", short_hash(uid)) } else { id }
}

fn short_hash(value: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// The instant up to which the Pipeline's schedule has handled its ticks: windows whose tick is
/// later may still be started by it.
pub fn schedule_horizon(pipeline: &PipelineView<'_>) -> Timestamp {
    let last = pipeline.status.and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
    last.map_or(pipeline.created, |l| l.max(pipeline.created))
}

/// Admits one Job, or says why not.
fn try_launch(
    admission: &mut Admission<'_>,
    slots: &mut usize,
    demand: &PodDemand,
    quota: Option<&str>,
) -> Result<(), Throttle> {
    if *slots == 0 {
        return Err(summary::throttle(reasons::JOB_CAP_REACHED, "the operator's Job caps are reached".into()));
    }
    admission.try_admit(demand).map_err(|r| summary::refused(&r, quota))?;
    *slots -= 1;
    Ok(())
}

/// Decides what to do for one Backfill.
pub fn decide(input: &Input<'_>) -> Plan {
    let spec = input.spec;
    let now = input.now;
    let mut plan = Plan::default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    let mut problems = input.problems.clone();

    // The Pipeline: the steps this backfill runs, its schedule and the windows inside the range.
    let pipeline = input.pipeline.as_ref();
    let run_spec = pipeline.map(|p| runs_spec(p.spec, spec.failure_policy.as_ref()));
    let steps: Vec<&StepSpec> = run_spec.as_ref().map(|s| selected_steps(s, spec.steps)).unwrap_or_default();
    if let Some(p) = pipeline
        && steps.is_empty()
    {
        problems.push(format!("spec.steps: TransformsOnly, but Pipeline {:?} has no Transform steps", p.name));
    }
    // The windows: of the basis pinned at the start, so that the total and the processed ranges
    // always count the same windows, whatever the Pipeline's schedule does later.
    let started = status.start_time.is_some() || !status.processed_ranges.is_empty() || !input.jobs.is_empty();
    let basis = pinned_basis(status.partition_basis.as_ref(), started, pipeline.map(|p| p.spec));
    let schedule = basis.as_ref().and_then(|b| Schedule::parse(&b.schedule, b.time_zone.as_deref()).ok());
    let rule = basis.as_ref().map(rule_of).unwrap_or_default();
    let range = Window { start: spec.range.start.0, end: spec.range.end.0 };
    let partitions = schedule.as_ref().map(|s| Partitions::new(s, rule, range, spec.order));
    if let (Some(p), Some(b)) = (&partitions, &basis)
        && (status.partition_basis.as_ref() != Some(b) || status.partitions.is_none())
    {
        let total = p.count(MAX_PARTITIONS) as i64;
        status.partitions = Some(PartitionCounts { total, ..Default::default() });
        status.partition_schedule = Some(describe(&b.schedule, b.time_zone.as_deref(), rule));
        status.partition_basis = Some(b.clone());
    }
    // A backfill complete for this generation stays complete: only a spec change reopens it.
    let settled = conditions::is_true(&input.status.conditions, types::COMPLETE)
        && input.status.observed_generation == input.generation;
    let total = status.partitions.as_ref().map_or(0, |c| c.total);
    if total as u64 > MAX_PARTITIONS {
        problems.push(format!("spec.range holds more than {MAX_PARTITIONS} partitions; split the backfill"));
    }
    let next_start = |end: Timestamp| partitions.as_ref().and_then(|p| p.next_start(end));

    // Observe this backfill's partitions: finished ones are recorded, the rest are in progress.
    let mut processed = RangeSet::from_status(&status.processed_ranges);
    let mut succeeded = RangeSet::from_status(&status.succeeded_ranges);
    let mut failed = RangeSet::from_status(&status.failed_ranges);
    let mut recent_failures = status.recent_failures.clone();
    let mut by_run: BTreeMap<&str, Vec<&ObservedJob>> = BTreeMap::new();
    for job in &input.jobs {
        by_run.entry(job.run_id.as_str()).or_default().push(job);
    }
    let mut active: Vec<Active> = Vec::new();
    let mut newly_failed: Vec<PartitionFailure> = Vec::new();
    for (run_id, jobs) in &by_run {
        let window = jobs[0].window;
        if processed.contains(&window) {
            continue;
        }
        let Some(run_spec) = &run_spec else {
            active.push(Active { run_id: run_id.to_string(), window, run: None });
            continue;
        };
        let run = derive_run(run_spec, &steps, run_id, window, jobs, now);
        if !run.finished() {
            active.push(Active { run_id: run_id.to_string(), window, run: Some(run) });
            continue;
        }
        processed.insert(window, next_start);
        match run.failed_step() {
            None => {
                succeeded.insert(window, next_start);
                plan.finished.0 += 1;
            }
            Some((step, reason)) => {
                failed.insert(window, next_start);
                plan.finished.1 += 1;
                plan.events.push(event(
                    true,
                    "PartitionFailed",
                    format!("partition [{}, {}) failed at step {step}: {reason}", window.start, window.end),
                ));
                newly_failed.push(PartitionFailure {
                    window_start: Time(window.start),
                    step: Some(step.to_string()),
                    reason: failure_reason(reason),
                    message: Some(truncate(reason, 256)),
                });
            }
        }
    }
    newly_failed.sort_by_key(|f| std::cmp::Reverse(f.window_start.0));
    recent_failures.splice(0..0, newly_failed);
    recent_failures.truncate(MAX_RECENT_FAILURES);

    // Jobs of recorded windows go, except those of the newest failures.
    let kept: BTreeSet<Timestamp> = recent_failures.iter().take(KEEP_FAILED_JOBS).map(|f| f.window_start.0).collect();
    plan.delete = input
        .jobs
        .iter()
        .filter(|j| processed.contains(&j.window) && !kept.contains(&j.window.start))
        .map(|j| j.name.clone())
        .collect();

    // What holds the backfill back.
    let demands: BTreeMap<&str, PodDemand> = steps
        .iter()
        .map(|s| (s.name.as_str(), pod_demand(&s.template.spec.clone().unwrap_or_default(), &input.container_defaults)))
        .collect();
    let mut admission = Admission::new(&input.budget);
    let quota_name = input.budget.quota.as_ref().map(|q| q.state.name.as_str());
    let never_fits: Option<(&str, NeverFits)> =
        demands.iter().find_map(|(step, d)| admission.never_fits(d).map(|n| (*step, n)));
    let max_failed = spec.failure_policy.as_ref().and_then(|p| p.max_failed_partitions);
    let failed_stop = max_failed.is_some_and(|m| failed.count() >= i64::from(m));
    let invalid = !problems.is_empty() || partitions.is_none();
    let halted = settled || invalid || spec.suspend || failed_stop || never_fits.is_some();
    // Inputs whose contract blocks: no new partition starts, no step that reads one.
    let blocked: Vec<&BlockedInput> =
        input.blocked_inputs.iter().filter(|b| steps.iter().any(|s| s.inputs.contains(&b.dataset))).collect();
    // Job names held by Jobs that are not Sluice's: the partitions that need them wait.
    let conflicts: BTreeSet<&str> = input.name_conflicts.iter().map(String::as_str).collect();
    let pipeline_name = pipeline.map_or("", |p| p.name);
    let mut conflict_hits: Vec<String> = Vec::new();
    let reads_blocked = |step: &str| {
        steps.iter().any(|s| s.name == step && s.inputs.iter().any(|i| blocked.iter().any(|b| &b.dataset == i)))
    };

    // Launch: the next steps of partitions in progress first, then new partitions.
    let mut throttle: Option<Throttle> = None;
    let mut slots = input.free_job_slots;
    let mut wake: Option<Timestamp> = None;
    match spec.order {
        BackfillOrder::OldestFirst => active.sort_by_key(|a| (a.window.start, a.run_id.clone())),
        BackfillOrder::NewestFirst => active.sort_by_key(|a| (std::cmp::Reverse(a.window.start), a.run_id.clone())),
    }
    if !halted {
        wake = active.iter().filter_map(|a| a.run.as_ref()?.next_wake()).min();
        'active: for a in &active {
            let Some(run) = &a.run else { continue };
            for (step, state) in &run.steps {
                let StepState::Launch { attempt } = state else { continue };
                let Some(demand) = demands.get(step.as_str()) else { continue };
                if reads_blocked(step) {
                    continue;
                }
                let name = job_name(pipeline_name, step, &a.run_id, *attempt);
                if conflicts.contains(name.as_str()) {
                    conflict_hits.push(name);
                    continue;
                }
                if let Err(t) = try_launch(&mut admission, &mut slots, demand, quota_name) {
                    throttle = Some(t);
                    break 'active;
                }
                plan.create.push(JobToCreate {
                    run_id: a.run_id.clone(),
                    window: a.window,
                    step: step.clone(),
                    attempt: *attempt,
                    demand: demand.clone(),
                });
            }
        }
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(1) as usize;
    let want = parallelism.saturating_sub(active.len());
    let mut walk = Scan::default();
    let hold_new = halted || !blocked.is_empty();
    if let (false, None, Some(p), Some(view), Some(run_spec)) = (hold_new, &throttle, &partitions, pipeline, &run_spec)
    {
        let running: BTreeSet<Window> = active.iter().map(|a| a.window).collect();
        let new_run = |w: &Window| {
            let run_id = run_id_for(w, input.records.window_id_used(w), input.uid);
            let run = derive_run(run_spec, &steps, &run_id, *w, &[], now);
            (run_id, run)
        };
        let first_conflict = |w: &Window| {
            let (run_id, run) = new_run(w);
            run.steps.iter().find_map(|(step, state)| {
                let StepState::Launch { attempt } = state else { return None };
                Some(job_name(pipeline_name, step, &run_id, *attempt)).filter(|n| conflicts.contains(n.as_str()))
            })
        };
        walk = scan(p, schedule_horizon(view), &processed, &running, want, MAX_SCAN_STEPS, |w| {
            match verdict(spec.reprocess, input.records.of(w)) {
                Verdict::Select if !conflicts.is_empty() => match first_conflict(w) {
                    Some(name) => {
                        conflict_hits.push(name);
                        Verdict::Held
                    }
                    None => Verdict::Select,
                },
                v => v,
            }
        });
        for w in &walk.skipped {
            processed.insert(*w, next_start);
        }
        'new: for window in &walk.selected {
            let (run_id, run) = new_run(window);
            let mut started = false;
            for (step, state) in &run.steps {
                let StepState::Launch { attempt } = state else { continue };
                let Some(demand) = demands.get(step.as_str()) else { continue };
                if let Err(t) = try_launch(&mut admission, &mut slots, demand, quota_name) {
                    throttle = Some(t);
                    break;
                }
                started = true;
                plan.create.push(JobToCreate {
                    run_id: run_id.clone(),
                    window: *window,
                    step: step.clone(),
                    attempt: *attempt,
                    demand: demand.clone(),
                });
            }
            if started {
                plan.admitted.push(run_id.clone());
                active.push(Active { run_id, window: *window, run: Some(run) });
            }
            if throttle.is_some() {
                break 'new;
            }
        }
    }

    // Counts and what holds the backfill back, if anything.
    let done = processed.count();
    let c = summary::counts(total, done, succeeded.count(), failed.count(), active.len() as i64);
    if spec.suspend {
        throttle = Some(summary::throttle(reasons::SUSPENDED, "spec.suspend is true: no new Job starts".into()));
    } else if !blocked.is_empty() && !settled && (c.pending > 0 || c.running > 0) {
        throttle = Some(summary::contract_violated(&blocked));
    } else if !conflict_hits.is_empty() {
        conflict_hits.dedup();
        throttle = Some(summary::name_conflict(&conflict_hits));
    } else if throttle.is_none() && !halted && c.pending > 0 {
        throttle = if active.len() >= parallelism {
            Some(summary::throttle(
                reasons::PARALLELISM_REACHED,
                format!("{} partition(s) in progress, spec.parallelism is {parallelism}", active.len()),
            ))
        } else if let Some(w) = walk.waiting.filter(|_| walk.selected.len() < want) {
            Some(summary::throttle(
                reasons::WAITING_FOR_SCHEDULE,
                format!("window [{}, {}) is not yet handled by the Pipeline's schedule", w.start, w.end),
            ))
        } else if walk.busy > 0 && walk.selected.len() < want {
            Some(summary::throttle(
                reasons::WINDOWS_BUSY,
                format!("{} window(s) have runs in progress elsewhere", walk.busy),
            ))
        } else {
            None
        };
    }
    let failure = if settled {
        None
    } else if let Some((step, never)) = &never_fits {
        Some((reasons::QUOTA_NEVER_FITS, format!("step {step}: {}", never.describe(quota_name.unwrap_or("?")))))
    } else if failed_stop {
        Some((
            reasons::MAX_FAILED_PARTITIONS,
            format!(
                "{} partition(s) failed, spec.failurePolicy.maxFailedPartitions is {}",
                c.failed,
                max_failed.unwrap_or(0)
            ),
        ))
    } else {
        None
    };
    let complete = settled || (!invalid && failure.is_none() && done >= total && active.is_empty());
    let outcome = Outcome {
        complete,
        failed: failure,
        suspended: spec.suspend,
        invalid: invalid && !settled,
        throttle: throttle.clone(),
    };

    // Status.
    let previous = input.status;
    if status.start_time.is_none() && !active.is_empty() {
        let earliest = input.jobs.iter().map(|j| j.created).min().unwrap_or(now).min(now);
        status.start_time = Some(Time(earliest));
        plan.events.push(event(false, "Started", format!("backfill started: {total} partition(s) in range")));
    }
    let terminal = outcome.complete || outcome.failed.is_some();
    status.completion_time = match (&previous.completion_time, terminal) {
        (Some(t), true) => Some(t.clone()),
        (None, true) => Some(Time(now)),
        (_, false) => None,
    };
    status.estimated_completion_time = if terminal {
        None
    } else {
        summary::estimate(
            previous.estimated_completion_time.as_ref(),
            status.start_time.as_ref().map(|t| t.0),
            now,
            &c,
            plan.finished.0 + plan.finished.1,
        )
    };
    status.progress = Some(summary::progress(&c));
    status.partitions = Some(c.clone());
    status.processed_ranges = processed.to_status();
    succeeded.bound(MAX_RANGES);
    failed.bound(MAX_RANGES);
    status.succeeded_ranges = succeeded.to_status();
    status.failed_ranges = failed.to_status();
    status.recent_failures = recent_failures;
    status.throttled = throttle;
    status.name_conflicts = if settled { Vec::new() } else { input.name_conflicts.clone() };
    let mut desired = summary::conditions(&outcome, &c, max_failed);
    desired.push(ready_condition(&problems));
    status.conditions = conditions::merge(&previous.conditions, &desired, input.generation, &Time(now));

    // Events on transitions only, so a repeated decision repeats none.
    let was = |t: &str| conditions::is_true(&previous.conditions, t);
    if outcome.complete && !was(types::COMPLETE) {
        plan.events.push(event(false, "Completed", c_summary(&c)));
    }
    if let Some((reason, message)) = &outcome.failed
        && !(was(types::FAILED)
            && conditions::find(&previous.conditions, types::FAILED).is_some_and(|f| f.reason == *reason))
    {
        plan.events.push(event(true, reason, message.clone()));
    }
    let was_suspended = previous.throttled.as_ref().is_some_and(|t| t.reason == reasons::SUSPENDED);
    if spec.suspend && !was_suspended {
        plan.events.push(event(false, "Suspended", "no new Job starts; running ones finish".into()));
    } else if !spec.suspend && was_suspended {
        plan.events.push(event(false, "Resumed", "admitting partitions again".into()));
    }
    plan.events.extend(super::backfill_events::throttle(
        previous.throttled.as_ref(),
        status.throttled.as_ref(),
        c.pending > 0 && !outcome.complete && outcome.failed.is_none(),
    ));

    // When to look again: a retry's backoff ending, a free Job slot, windows busy elsewhere, or
    // the rest of a walk. Quota, Pipeline and own-Job changes wake the backfill by themselves.
    let mut next: Option<SignedDuration> = wake.map(|t| t.duration_since(now).max(SignedDuration::from_millis(10)));
    let mut sooner = |d: SignedDuration| next = Some(next.map_or(d, |n| n.min(d)));
    if walk.exhausted {
        // A walk that recorded skipped windows continues at once; one that only passed over
        // windows busy elsewhere waits like them.
        sooner(if walk.skipped.is_empty() { BUSY_RETRY } else { SCAN_CONTINUE });
    }
    if walk.busy > 0 {
        sooner(BUSY_RETRY);
    }
    if status.throttled.as_ref().is_some_and(|t| t.reason == reasons::JOB_CAP_REACHED) {
        sooner(CAP_RETRY);
    }
    if status.throttled.as_ref().is_some_and(|t| t.reason == reasons::INPUT_CONTRACT_VIOLATED) {
        sooner(CONTRACT_RETRY);
    }
    if !conflict_hits.is_empty() {
        sooner(NAME_CONFLICT_RETRY);
    }
    plan.requeue_after = next;
    if let Some(quota) = &input.budget.quota {
        plan.headroom =
            quota.state.hard.keys().filter_map(|k| admission.quota_free(k).map(|free| (k.clone(), free))).collect();
    }
    plan.status = status;
    plan
}

/// What the API server answered to one planned Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// Created now, or it existed already as this backfill's.
    Yes,
    /// The name is held by a Sluice Job of the Pipeline (its own run of the window, or another
    /// backfill's) that the caches do not show yet.
    TakenByRun,
    /// The name is held by a Job that is neither this backfill's nor a Sluice Job of the
    /// Pipeline.
    Squatted,
    /// Refused for another reason (reported as an Event).
    Refused,
}

/// The creates of one plan as they are made, and what they change of the plan.
///
/// A name that another owner holds is never "launched": no further Job of that partition is
/// created in this round (so a window's Jobs are not split between two owners), the partition
/// is not admitted, and one held by a Job that is not Sluice's is shown (`NameConflict`,
/// `status.nameConflicts`) and looked at again after [`NAME_CONFLICT_RETRY`]: such a Job does
/// not go away by itself, and its deletion wakes nothing (Sluice watches only its own Jobs),
/// so a fixed retry of a minute bounds both the cost (one read a minute) and the delay once it
/// is gone; an exponential backoff would save nothing worth its per-object state.
#[derive(Clone, Debug, Default)]
pub struct CreateRound {
    /// Runs one of whose Job names another owner holds.
    held: BTreeSet<String>,
    /// Runs of which a Job was created (or already was this backfill's).
    created: BTreeSet<String>,
    /// Names held by Jobs that are not Sluice's, in the order found.
    squatted: Vec<String>,
    taken_by_run: bool,
}

/// A plan after its creates.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// The status that records the creates' outcome (the plan's when every create went through).
    pub status: BackfillStatus,
    /// Partitions actually started.
    pub admitted: usize,
    /// Job names newly found held by Jobs that are not Sluice's: a Warning Event each.
    pub new_conflicts: Vec<String>,
    /// When to look again because of a taken name.
    pub retry: Option<SignedDuration>,
}

impl CreateRound {
    /// Whether to create `create`: not once another Job of its run was found held by another
    /// owner.
    pub fn attempt(&self, create: &JobToCreate) -> bool {
        !self.held.contains(&create.run_id)
    }

    /// Records what the API server answered to `create`, named `job`.
    pub fn record(&mut self, create: &JobToCreate, job: &str, outcome: Created) {
        match outcome {
            Created::Yes => {
                self.created.insert(create.run_id.clone());
            }
            Created::TakenByRun => {
                self.held.insert(create.run_id.clone());
                self.taken_by_run = true;
            }
            Created::Squatted => {
                self.held.insert(create.run_id.clone());
                if !self.squatted.iter().any(|s| s == job) {
                    self.squatted.push(job.to_string());
                }
            }
            Created::Refused => {}
        }
    }

    /// What the creates change of `plan`: partitions that did not start are pending again and
    /// not admitted; names held by Jobs that are not Sluice's are recorded and shown.
    pub fn settle(self, plan: &Plan, generation: Option<i64>, now: Timestamp) -> Settled {
        let mut status = plan.status.clone();
        let started = |run: &&String| self.created.contains(*run) && !self.held.contains(*run);
        let admitted = plan.admitted.iter().filter(started).count();
        let unstarted = plan.admitted.iter().filter(|r| !self.created.contains(*r)).count() as i64;
        if let Some(c) = status.partitions.as_mut().filter(|_| unstarted > 0) {
            c.running = (c.running - unstarted).max(0);
            c.pending += unstarted;
        }
        let known = &plan.status.name_conflicts;
        let new_conflicts: Vec<String> = self.squatted.iter().filter(|s| !known.contains(s)).cloned().collect();
        if !self.squatted.is_empty() {
            status.name_conflicts.extend(new_conflicts.iter().cloned());
            status.name_conflicts.truncate(MAX_NAME_CONFLICTS);
            let outranked = status
                .throttled
                .as_ref()
                .is_some_and(|t| t.reason == reasons::SUSPENDED || t.reason == reasons::INPUT_CONTRACT_VIOLATED);
            if !outranked {
                let throttle = summary::name_conflict(&self.squatted);
                let desired = summary::throttled_condition(Some(&throttle));
                status.conditions = conditions::merge(&status.conditions, &[desired], generation, &Time(now));
                status.throttled = Some(throttle);
            }
        }
        let mut retry = None;
        if !self.squatted.is_empty() {
            retry = Some(NAME_CONFLICT_RETRY);
        }
        if self.taken_by_run {
            retry = Some(TAKEN_RETRY);
        }
        Settled { status, admitted, new_conflicts, retry }
    }
}

/// The reason of a step failure: the Job condition's reason ("BackoffLimitExceeded",
/// "DeadlineExceeded") that starts the observed failure text, else "StepFailed".
fn failure_reason(text: &str) -> String {
    let head = text.split(':').next().unwrap_or_default().trim();
    let camel = !head.is_empty() && head.len() <= 64 && head.chars().all(|c| c.is_ascii_alphanumeric());
    if camel && head.starts_with(|c: char| c.is_ascii_uppercase()) { head.to_string() } else { "StepFailed".into() }
}

/// At most `max` bytes of `text`, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn c_summary(c: &PartitionCounts) -> String {
    format!("{} succeeded, {} failed, {} skipped of {} partitions", c.succeeded, c.failed, c.skipped, c.total)
}

#[cfg(test)]
#[path = "backfill_tests.rs"]
mod tests;
