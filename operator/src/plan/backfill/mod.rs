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
//! With `spec.lateness` the windows the next tick's late passes would re-run are the schedule's
//! too, so a backfill never races a late pass either.
//!
//! # Inputs
//! While a Dataset that a backfilled step reads violates its contract with `policy: Block`, no
//! new partition starts and no step that reads it is launched (`InputContractViolated`).
//!
//! # Protected Datasets
//! While a Dataset named in `spec.pauseWhen.datasetsStale` is Stale or Warning, or does not
//! exist, no new partition starts (`ProtectedDatasetStale`, `ProtectedDatasetMissing`;
//! [`protect`]); partitions in progress continue (their next steps and retries launch). A change
//! of such a Dataset wakes the backfill, so it resumes when they are fresh again.

mod create_round;
pub mod dry_run;
pub mod events;
mod halt;
mod launch;
mod observe;
mod outcome;
pub mod partitions;
pub mod protect;
pub mod ranges;
pub mod records;
mod requeue;
mod status;
pub mod summary;
mod windows;

use jiff::{SignedDuration, Timestamp};

pub use self::create_round::{CreateRound, Created, Settled};
use self::records::Records;
use crate::api::{
    BackfillSpec, BackfillStatus, BackfillSteps, FailurePolicy, PipelineSpec, PipelineStatus, RetrySpec, StepKind,
    StepSpec,
};
use crate::plan::ready::PlannedEvent;
use crate::plan::runs::ObservedJob;
use crate::quota::{Budget, ContainerDefaults, Milli, PodDemand};
use crate::schedule::Window;

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
/// How soon to look again while the quota has no room. A change of the ResourceQuota or of
/// the Backfill's own Jobs wakes it sooner; this bounds the wait when those watches lag (after
/// an API server restart they delivered nothing for up to 10 s), at one fresh read of the
/// Backfill and its quota per period.
pub const QUOTA_RETRY: SignedDuration = SignedDuration::from_secs(2);
/// How soon to look again at inputs whose contract is violated (a Dataset's change does not
/// wake a Backfill).
pub const CONTRACT_RETRY: SignedDuration = SignedDuration::from_secs(30);
/// How soon to look again while protected Datasets hold the backfill. Their changes wake it;
/// this bounds the wait when that watch lags.
pub const PROTECT_RETRY: SignedDuration = SignedDuration::from_secs(30);
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
    /// Protected Datasets (`spec.pauseWhen.datasetsStale`) that hold new partitions now.
    pub protected: Vec<protect::ProtectedHold>,
    /// Names of Jobs this backfill would create that exist under another owner and are not
    /// Sluice Jobs of the Pipeline (checked just before this decision): the partitions that
    /// need them wait.
    pub name_conflicts: Vec<String>,
    /// The operator's prices, for the dry-run plan's price.
    pub prices: Option<crate::cost::Prices>,
    /// Whether the Jobs go to a Kueue queue (`spec.queueName`): created suspended, counted
    /// `queued` until Kueue admits them. `budget` then has no quota (Kueue's governs).
    pub queued: bool,
}

/// A Dataset whose contract has `policy: Block` and whose `SchemaConformant` condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedInput {
    pub dataset: String,
    /// The violation, from the `SchemaConformant` condition.
    pub message: String,
}

/// A Job to create, with what the quota will charge its pod.
pub type JobToCreate = super::runs::JobToCreate<PodDemand>;

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
    if taken { format!("{id}-b{}", crate::jobs::short_hash(uid, 3)) } else { id }
}

/// The instant up to which the Pipeline's schedule has handled its ticks: windows whose tick is
/// later may still be started by it. With `spec.lateness`, moved back to before the windows the
/// next tick's late passes re-run (`late::backfill_horizon`): those are the schedule's too.
pub fn schedule_horizon(pipeline: &PipelineView<'_>) -> Timestamp {
    let last = pipeline.status.and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
    let handled = last.map_or(pipeline.created, |l| l.max(pipeline.created));
    crate::plan::late::backfill_horizon(pipeline.spec, handled, pipeline.created).unwrap_or(handled)
}

/// Decides what to do for one Backfill: the windows of its range, its partitions as observed,
/// what holds it back, the launches, the outcome, the status and Events, and when to look
/// again, each a stage of its own.
pub fn decide(input: &Input<'_>) -> Plan {
    let run_spec = input.pipeline.map(|p| runs_spec(p.spec, input.spec.failure_policy.as_ref()));
    let steps: Vec<&StepSpec> = run_spec.as_ref().map(|s| selected_steps(s, input.spec.steps)).unwrap_or_default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    let basis = windows::basis(input);
    let partitions = basis.partitions(input);
    basis.pin(partitions.as_ref(), &mut status);
    let total = status.partitions.as_ref().map_or(0, |c| c.total);
    let mut problems = input.problems.clone();
    problems.extend(windows::problems(input, &steps, total));

    let mut seen = observe::partitions(input, &status, run_spec.as_ref(), &steps, partitions.as_ref());
    let demands = halt::demands(input, &steps);
    let valid = problems.is_empty() && partitions.is_some();
    let halt = halt::reasons(input, &steps, &demands, valid, &seen.failed);
    let cx = launch::Context {
        input,
        run_spec: run_spec.as_ref(),
        steps: &steps,
        demands: &demands,
        partitions: partitions.as_ref(),
        halt: &halt,
    };
    let mut launched = launch::launches(&cx, &mut seen.active, &mut seen.processed);

    let done = seen.processed.count();
    let running = seen.active.len() as i64;
    let mut counts = summary::counts(total, done, seen.succeeded.count(), seen.failed.count(), running);
    summary::split_queued(
        &mut counts,
        seen.active.iter().filter(|a| queued(a, &launched.create, input.queued)).count(),
    );
    let tally = outcome::Tally {
        counts: &counts,
        done,
        parallelism: input.spec.parallelism.unwrap_or(1).max(1) as usize,
        quota: input.budget.quota.as_ref().map(|q| q.state.name.as_str()),
    };
    let outcome = outcome::outcome(&halt, &mut launched, &tally);

    let mut plan = Plan { finished: seen.finished, delete: std::mem::take(&mut seen.delete), ..Plan::default() };
    plan.events = std::mem::take(&mut seen.events);
    let facts = status::Facts { counts, problems: &problems, idle: running == 0, settled: halt.settled };
    plan.events.extend(status::record(input, &mut status, seen, &outcome, facts));
    if let Some(partitions) = partitions.as_ref().filter(|_| input.spec.dry_run && valid) {
        let windows = windows_to_run(input, partitions);
        dry_run_plan(input, &steps, &demands, windows, &mut status, &mut plan.events);
    }
    plan.events.extend(events::transitions(input.status, &status, &outcome, input.spec.suspend));
    plan.requeue_after = requeue::after(input.now, &launched, status.throttled.as_ref());
    plan.create = launched.create;
    plan.admitted = launched.admitted;
    plan.headroom = launched.headroom;
    plan.status = status;
    plan
}

/// Whether partition `a` waits for Kueue after this decision: none of its steps runs, and one
/// has a queued Job or (with a queue) a Job created now, suspended.
fn queued(a: &observe::Active, create: &[JobToCreate], with_queue: bool) -> bool {
    let Some(run) = &a.run else { return false };
    let creating = with_queue && create.iter().any(|c| c.run_id == a.run_id);
    let running = run.steps.iter().any(|(_, s)| *s == crate::plan::runs::StepState::Running);
    !running && (run.queued() || creating)
}

/// The windows of the range that `reprocess` selects (or that wait for runs elsewhere), walked
/// in order: computed only for a dry run, at most `MAX_PARTITIONS` windows.
fn windows_to_run(input: &Input<'_>, partitions: &partitions::Partitions<'_>) -> i64 {
    let mut count = 0;
    let mut next = partitions.first();
    let mut walked = 0;
    while let Some(w) = next.filter(|_| walked < MAX_PARTITIONS) {
        walked += 1;
        if records::verdict(input.spec.reprocess, input.records.of(&w)) != partitions::Verdict::Skip {
            count += 1;
        }
        next = partitions.after(&w);
    }
    count
}

/// The dry-run plan into `status.plan`, with a `DryRunPlanned` Event when it changed.
fn dry_run_plan(
    input: &Input<'_>,
    steps: &[&StepSpec],
    demands: &halt::Demands<'_>,
    windows: i64,
    status: &mut BackfillStatus,
    events: &mut Vec<PlannedEvent>,
) {
    let basis = dry_run::Basis {
        steps,
        demands,
        pipeline_status: input.pipeline.and_then(|p| p.status),
        budget: &input.budget,
        parallelism: i64::from(input.spec.parallelism.unwrap_or(1).max(1)),
        prices: input.prices.as_ref(),
    };
    let planned = dry_run::plan(&basis, windows);
    if input.status.plan.as_ref() != Some(&planned) {
        events.push(PlannedEvent { warning: false, reason: "DryRunPlanned", note: dry_run::describe(&planned) });
    }
    status.plan = Some(planned);
}

#[cfg(test)]
mod tests;
