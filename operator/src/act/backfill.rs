//! One Backfill reconcile: read, observe, decide, then act in the order that keeps every
//! partition exactly once and the quota within its budget.
//!
//! 1. Read the Backfill fresh from the API server: every decision builds on the last status
//!    written (its processed ranges), which the cache may not show yet. Read fresh too the Jobs
//!    recorded in `status.nameConflicts`, to see whether they are still held by others.
//! 2. Take the launch lock (held until the creates are done, so that concurrent decisions of
//!    this process see each other's Jobs), then observe from the caches (the Pipeline, the Jobs
//!    merged with the ledger of created Jobs the cache does not show yet, other Backfills) and
//!    only then read the ResourceQuota fresh, so that a Job the cache shows with a pod is
//!    already counted in the quota's `used` (see `quota::in_flight`).
//! 3. Decide (`plan::backfill::decide`).
//! 4. Write the status on the condition that the Backfill is still at the version read (always
//!    when the plan creates Jobs), before any Job is created: two replicas, or a reconcile that
//!    read before another wrote, never both act on one status. A conflict acts on nothing.
//! 5. Create the Jobs, partitions side by side and the Jobs of a partition in order.
//!    `AlreadyExists` counts as launched only when the Job holding the name is this backfill's
//!    ([`CreateRound`]); each created Job is remembered in the ledger.
//! 6. Release the lock; record what the creates found (partitions that did not start, names
//!    held by others) in a second conditional write when it changes the status.
//! 7. Delete the Jobs of the partitions the written status records (side by side).
//!
//! A crash between any two steps loses nothing: no window is recorded as done before its Jobs
//! have finished, and a repeated create is absorbed by `AlreadyExists`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Resource, ResourceExt};

use super::JobApi;
use super::claim::{Claim, claim, controlled_by};
use crate::api::{Backfill, BackfillStatus, Pipeline};
use crate::controller::job_cache;
use crate::error::{Error, Result};
use crate::jobs::{self, StepJob};
use crate::plan::backfill::protect::ProtectedHold;
use crate::plan::backfill::ranges::RangeSet;
use crate::plan::backfill::records::{ForeignJob, Owner, Records, Sibling};
use crate::plan::backfill::{
    BlockedInput, CreateRound, Created, Input, JobToCreate, MAX_NAME_CONFLICTS, PipelineView, Plan, Settled, decide,
};
use crate::plan::runs::{JobState, ObservedJob};
use crate::quota::{self, Budget, ContainerDefaults, InFlight, Launch, PodCharge, PodDemand, QuotaBudget, Round};

/// What a conditional status write of a Backfill did.
#[derive(Clone, Debug)]
pub enum StatusWrite {
    /// Written: the Backfill as it is now (its new `resourceVersion`).
    Applied(Box<Backfill>),
    /// The Backfill changed since it was read: nothing was written.
    Conflict,
}

/// What the reconciler observes from the caches, under the launch lock.
pub struct Observed {
    /// The referenced Pipeline, if cached.
    pub pipeline: Option<Arc<Pipeline>>,
    /// Validation problems of the spec.
    pub problems: Vec<String>,
    /// LimitRange defaults of the namespace.
    pub container_defaults: ContainerDefaults,
    /// The Jobs of the namespace, merged with the ledger ([`merge_jobs`]).
    pub jobs: ObservedJobs,
    /// Other Backfills of the same Pipeline.
    pub siblings: Vec<Sibling>,
    /// Datasets read by the Pipeline's steps whose contract (`policy: Block`) is violated.
    pub blocked_inputs: Vec<BlockedInput>,
    /// Protected Datasets (`spec.pauseWhen.datasetsStale`) that are stale or missing.
    pub protected: Vec<ProtectedHold>,
}

/// Reading and writing Backfills, and what a Backfill's decision needs.
pub trait BackfillApi: JobApi {
    /// Reads the Backfill from the API server.
    fn get_backfill(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<Backfill>>> + Send;
    /// Reads a Job from the API server.
    fn get_job(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<Job>>> + Send;
    /// Reads a ResourceQuota from the API server.
    fn get_quota(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<ResourceQuota>>> + Send;
    /// Writes `status` on the condition that the Backfill is still at `backfill`'s
    /// `resourceVersion`.
    fn write_status(
        &self,
        backfill: &Backfill,
        status: &BackfillStatus,
    ) -> impl Future<Output = Result<StatusWrite>> + Send;
    /// Takes the launch lock, held until [`BackfillApi::unlock_launch`] (or the end of the
    /// reconcile).
    fn lock_launch(&self) -> impl Future<Output = ()> + Send;
    fn unlock_launch(&self);
    /// The current time (read once the lock is held).
    fn now(&self) -> Timestamp;
    /// Observes from the caches what `backfill`'s decision needs; prunes the ledger.
    fn observe(&self, backfill: &Backfill, uid: &str, now: Timestamp) -> Observed;
    /// Free Job slots under the operator's Job caps (`usize::MAX` when uncapped).
    fn free_job_slots(&self, namespace: &str) -> usize;
    /// The operator's prices (for dry-run plans); none by default.
    fn prices(&self) -> Option<crate::cost::Prices> {
        None
    }

    /// Remembers a Job just created in the in-flight ledger (which the Job caps count too).
    fn launched(&self, namespace: &str, job: &str, launch: Launch);
}

/// What a reconcile did: `Gone` when the Backfill is gone or being deleted, `Conflict` when its
/// status changed since the fresh read.
pub type Outcome = super::Outcome<Acted>;

/// A decision that was recorded and acted on.
#[derive(Debug)]
pub struct Acted {
    /// The Backfill as read fresh, before the decision.
    pub backfill: Backfill,
    pub quota: Option<ResourceQuota>,
    /// The plan, with the status as the creates settled it.
    pub plan: Plan,
    /// What the creates found.
    pub settled: Settled,
    /// Status writes that changed something (0, 1 or 2).
    pub status_writes: usize,
    /// The second write (what the creates found) conflicted: decide again soon.
    pub settle_conflict: bool,
    /// Names of the Jobs created.
    pub created: Vec<String>,
    /// Jobs the API server refused.
    pub rejected: Vec<Rejected>,
}

/// A Job the API server refused.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub job: String,
    pub step: String,
    pub message: String,
}

/// Reads `cached` fresh, decides and acts, as described in the module documentation.
pub async fn reconcile<A: BackfillApi>(api: &A, cached: &Backfill) -> Result<Outcome> {
    let namespace = cached.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let Some(backfill) = api.get_backfill(&namespace, &cached.name_any()).await? else { return Ok(Outcome::Gone) };
    if backfill.meta().deletion_timestamp.is_some() {
        return Ok(Outcome::Gone);
    }
    let uid = backfill.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let pipeline_name = backfill.spec.pipeline_ref.name.clone();

    // Job names found held by Jobs that are not Sluice's, read fresh: are they still?
    let known = backfill.status.as_ref().map(|s| s.name_conflicts.as_slice()).unwrap_or_default();
    let name_conflicts = still_squatted(api, &namespace, known, &uid, &pipeline_name).await?;

    api.lock_launch().await;
    let now = api.now();
    let observed = api.observe(&backfill, &uid, now);
    let queued = queue_of(&backfill, observed.pipeline.as_deref()).is_some();
    // With a Kueue queue, Kueue's quota governs: no ResourceQuota admission, no read of it.
    let quota = match backfill.spec.budget.as_ref().and_then(|b| b.resource_quota_ref.as_ref()) {
        Some(r) if !queued => api.get_quota(&namespace, &r.name).await?,
        _ => None,
    };
    let free_job_slots = api.free_job_slots(&namespace);
    let pipeline = observed.pipeline.clone();
    let facts = Facts { uid: &uid, quota: quota.as_ref(), free_job_slots, name_conflicts, now, prices: api.prices() };
    let held: Vec<(String, String, u32)> =
        observed.jobs.foreign.iter().map(|f| (f.job.run_id.clone(), f.job.step.clone(), f.job.attempt)).collect();
    let mut plan = decide_on(&backfill, observed, facts);
    let creates_free_name = plan.create.iter().any(|c| !held.contains(&(c.run_id.clone(), c.step.clone(), c.attempt)));
    if backfill.status.as_ref() == Some(&plan.status) && creates_free_name {
        // An unchanged write keeps the resourceVersion, so a second replica deciding on the
        // same version would pass the precondition too: make the write change the object.
        // (A name another owner visibly holds cannot be created, so it needs no fence.)
        plan.status.fencing_token += 1;
    }

    // First the status, on the condition that the Backfill is still at the version the
    // decision read; skipped when unchanged, unless the plan creates Jobs (then the fencing
    // token above has changed it).
    let written = if backfill.status.as_ref() != Some(&plan.status) || !plan.create.is_empty() {
        match api.write_status(&backfill, &plan.status).await? {
            StatusWrite::Applied(b) => Some(*b),
            StatusWrite::Conflict => return Ok(Outcome::Conflict),
        }
    } else {
        None
    };
    let mut acted = Acted {
        backfill,
        quota,
        plan,
        settled: Settled { status: BackfillStatus::default(), admitted: 0, new_conflicts: vec![], retry: None },
        status_writes: usize::from(written.is_some()),
        settle_conflict: false,
        created: Vec::new(),
        rejected: Vec::new(),
    };
    let round = create_jobs(api, &mut acted, pipeline.as_deref(), &uid, now).await?;
    api.unlock_launch();

    // What the creates found: partitions that did not start, names held by others.
    acted.settled = round.settle(&acted.plan, acted.backfill.meta().generation, now);
    if acted.settled.status != acted.plan.status {
        let base = written.as_ref().unwrap_or(&acted.backfill);
        match api.write_status(base, &acted.settled.status).await? {
            StatusWrite::Applied(_) => acted.status_writes += 1,
            // Replaced since: the next decision finds the same again.
            StatusWrite::Conflict => acted.settle_conflict = true,
        }
    }
    acted.plan.status = acted.settled.status.clone();
    delete_jobs(api, &namespace, &acted.plan.delete).await?;
    Ok(Outcome::Acted(Box::new(acted)))
}

/// Deletes the Jobs `names`, [`IN_FLIGHT`] at a time; the first failure is returned once the
/// deletes in flight have ended.
async fn delete_jobs<A: BackfillApi>(api: &A, namespace: &str, names: &[String]) -> Result<()> {
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut failed = None;
    for name in names {
        if pending.len() >= IN_FLIGHT
            && let Some(Err(error)) = pending.next().await
        {
            failed.get_or_insert(error);
        }
        pending.push(api.delete_job(namespace, name));
    }
    while let Some(done) = pending.next().await {
        if let Err(error) = done {
            failed.get_or_insert(error);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// What a Backfill's decision reads besides the Backfill and the caches.
struct Facts<'a> {
    uid: &'a str,
    quota: Option<&'a ResourceQuota>,
    free_job_slots: usize,
    name_conflicts: Vec<String>,
    now: Timestamp,
    prices: Option<crate::cost::Prices>,
}

/// Decides for `backfill` on what was observed (pure).
fn decide_on(backfill: &Backfill, observed: Observed, facts: Facts<'_>) -> Plan {
    let Facts { uid, quota, free_job_slots, name_conflicts, now, prices } = facts;
    let Observed { pipeline, mut problems, container_defaults, jobs, siblings, blocked_inputs, protected } = observed;
    let queue = queue_of(backfill, pipeline.as_deref());
    problems.extend(crate::kueue::problems(crate::kueue::Asked::backfill(backfill), queue.as_ref()));
    // Kueue's quota governs the Jobs of a queue: the ResourceQuota admits nothing for them.
    let quota = quota.filter(|_| queue.is_none());
    let budget = budget(backfill, quota, &jobs, &mut problems);
    let records = Records::new(pipeline.as_ref().and_then(|p| p.status.as_ref()), jobs.foreign, siblings);
    let default_status = BackfillStatus::default();
    decide(&Input {
        spec: &backfill.spec,
        status: backfill.status.as_ref().unwrap_or(&default_status),
        generation: backfill.meta().generation,
        uid,
        now,
        pipeline: pipeline.as_ref().map(|p| PipelineView {
            name: &backfill.spec.pipeline_ref.name,
            spec: &p.spec,
            status: p.status.as_ref(),
            created: p.meta().creation_timestamp.as_ref().map_or(now, |t| t.0),
        }),
        jobs: jobs.own,
        records,
        container_defaults,
        budget,
        free_job_slots,
        problems,
        blocked_inputs,
        protected,
        name_conflicts,
        prices,
        queued: queue.is_some(),
    })
}

/// The Kueue queue of `backfill`'s Jobs (its own, else the Pipeline's).
pub fn queue_of(backfill: &Backfill, pipeline: Option<&Pipeline>) -> Option<crate::kueue::Queue> {
    crate::kueue::backfill_queue(crate::kueue::Asked::backfill(backfill), pipeline.map(crate::kueue::Asked::pipeline))
}

/// Most Job creates (and deletes) of one Backfill reconcile in flight at once. Partitions are
/// created side by side; the Jobs of one partition one after another, in plan order.
pub const IN_FLIGHT: usize = 32;

/// What the API server answered to one planned create.
struct Answer<'p> {
    create: &'p JobToCreate,
    job: String,
    claim: Result<Claim>,
}

/// Creates the plan's Jobs: the partitions side by side ([`IN_FLIGHT`] at a time), the Jobs of
/// one partition in order, skipping the rest of a partition once one of its names is found held
/// by another owner (or its create failed). Every answer is recorded in plan order, every
/// created Job in the ledger, before the first failed create (if any) is returned.
async fn create_jobs<A: BackfillApi>(
    api: &A,
    acted: &mut Acted,
    pipeline: Option<&Pipeline>,
    uid: &str,
    now: Timestamp,
) -> Result<CreateRound> {
    let partitions = partition_jobs(&acted.backfill, &acted.plan.create, pipeline, uid);
    // In plan order, at most IN_FLIGHT partitions at once (no closures: the reconcile future
    // must stay provably Send).
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut answers: Vec<Vec<Answer<'_>>> = Vec::new();
    for jobs in partitions {
        if pending.len() >= IN_FLIGHT
            && let Some(done) = pending.next().await
        {
            answers.push(done);
        }
        pending.push_back(create_partition(api, uid, jobs));
    }
    while let Some(done) = pending.next().await {
        answers.push(done);
    }
    let namespace = acted.backfill.namespace().unwrap_or_default();
    let name = acted.backfill.name_any();
    let pipeline_name = acted.backfill.spec.pipeline_ref.name.clone();
    let mut round = CreateRound::default();
    let mut failed = None;
    for Answer { create, job: job_name, claim: answered } in answers.into_iter().flatten() {
        let answered = match answered {
            Ok(answered) => answered,
            Err(error) => {
                failed.get_or_insert(error);
                continue;
            }
        };
        let outcome = match answered {
            Claim::Launched => {
                api.launched(&namespace, &job_name, launch(uid, create, now));
                acted.created.push(job_name.clone());
                Created::Yes
            }
            Claim::Ours(_) => Created::Yes,
            Claim::Taken(existing) => {
                // Gone again since: a run of the window had it; look again soon.
                let holder = existing.map_or(Created::TakenByRun, |j| holder(&j, uid, &pipeline_name));
                tracing::info!(job = %job_name, backfill = %name, ?holder, "Job name taken by another owner");
                holder
            }
            Claim::Rejected(message) => {
                acted.rejected.push(Rejected { job: job_name.clone(), step: create.step.clone(), message });
                Created::Refused
            }
        };
        round.record(create, &job_name, outcome);
    }
    failed.map_or(Ok(round), Err)
}

/// The plan's Jobs grouped by partition (run), in plan order; steps missing from the Pipeline
/// are left out.
fn partition_jobs<'p>(
    backfill: &Backfill,
    creates: &'p [JobToCreate],
    pipeline: Option<&Pipeline>,
    uid: &str,
) -> Vec<Vec<(&'p JobToCreate, Job)>> {
    let namespace = backfill.namespace().unwrap_or_default();
    let name = backfill.name_any();
    let mut partitions: Vec<Vec<(&JobToCreate, Job)>> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let queue = queue_of(backfill, pipeline);
    for create in creates {
        let Some(step) = pipeline.and_then(|p| p.spec.steps.iter().find(|s| s.name == create.step)) else {
            continue;
        };
        let job = jobs::build(&StepJob {
            namespace: &namespace,
            pipeline: &backfill.spec.pipeline_ref.name,
            run_id: &create.run_id,
            window: create.window,
            step,
            attempt: create.attempt,
            backfill: Some(&name),
            owner: owner_reference(backfill, uid),
            queue: queue.as_ref(),
        });
        let at = *index.entry(create.run_id.as_str()).or_insert_with(|| {
            partitions.push(Vec::new());
            partitions.len() - 1
        });
        partitions[at].push((create, job));
    }
    partitions
}

/// Creates one partition's Jobs in order; stops after a name held by another owner or a failed
/// create (the rest of the partition waits for the next decision).
async fn create_partition<'p, A: BackfillApi>(
    api: &A,
    uid: &str,
    jobs: Vec<(&'p JobToCreate, Job)>,
) -> Vec<Answer<'p>> {
    let mut answers = Vec::new();
    for (create, job) in jobs {
        let answered = api.create_job(&job).await.map(|created| claim(created, uid));
        let stop = matches!(answered, Err(_) | Ok(Claim::Taken(_)));
        answers.push(Answer { create, job: job.name_any(), claim: answered });
        if stop {
            break;
        }
    }
    answers
}

/// How soon to decide again after what a reconcile found, besides the plan's own
/// `requeue_after`: `create_retry` after a refused create, `conflict_retry` after a conflicting
/// second write, the settled retry after a taken name.
pub fn retry_after(
    acted: &Acted,
    create_retry: SignedDuration,
    conflict_retry: SignedDuration,
) -> Option<SignedDuration> {
    let mut retry: Option<SignedDuration> = None;
    let mut sooner = |d: SignedDuration| retry = Some(retry.map_or(d, |r| r.min(d)));
    if !acted.rejected.is_empty() {
        sooner(create_retry);
    }
    if let Some(r) = acted.settled.retry {
        sooner(r);
    }
    // A conflicting second write replaces the retry (the next decision finds the same again).
    if acted.settle_conflict {
        retry = Some(conflict_retry);
    }
    match (acted.plan.requeue_after, retry) {
        (Some(p), Some(r)) => Some(p.min(r)),
        (p, r) => p.or(r),
    }
}

/// The ledger entry of a created Job: its pod is not counted by the quota yet.
fn launch(uid: &str, create: &JobToCreate, now: Timestamp) -> Launch {
    Launch {
        owner_uid: uid.to_string(),
        run_id: create.run_id.clone(),
        step: create.step.clone(),
        attempt: create.attempt,
        window: create.window,
        demand: create.demand.clone(),
        created: now,
    }
}

/// Who holds the name of `job`, which a create of this backfill (`uid`) found taken: this
/// backfill (already launched), a Sluice run of the Pipeline that the Job cache and so the
/// records will show (the Pipeline's or another backfill's), or a Job that is not Sluice's.
pub fn holder(job: &Job, uid: &str, pipeline: &str) -> Created {
    if controlled_by(job, uid) {
        return Created::Yes;
    }
    let labels = job.labels();
    let sluice = labels.get(jobs::labels::MANAGED_BY).map(String::as_str) == Some(jobs::labels::MANAGED_BY_VALUE)
        && labels.get(jobs::labels::PIPELINE) == Some(&jobs::label_value(pipeline));
    if sluice && job_cache::observe(job).is_some() { Created::TakenByRun } else { Created::Squatted }
}

/// Of the `names` recorded as held by Jobs that are not Sluice's, those that still are (fresh
/// reads, at most [`MAX_NAME_CONFLICTS`]).
async fn still_squatted<A: BackfillApi>(
    api: &A,
    namespace: &str,
    names: &[String],
    uid: &str,
    pipeline: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in names.iter().take(MAX_NAME_CONFLICTS) {
        if let Some(job) = api.get_job(namespace, name).await?
            && holder(&job, uid, pipeline) == Created::Squatted
        {
            out.push(name.clone());
        }
    }
    Ok(out)
}

fn owner_reference(backfill: &Backfill, uid: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    let mut owner = backfill.controller_owner_ref(&()).unwrap_or_default();
    owner.uid = uid.to_string();
    owner
}

/// What the Jobs of the namespace tell a backfill.
#[derive(Debug)]
pub struct ObservedJobs {
    /// Its own Jobs, including created ones the cache does not show yet.
    pub own: Vec<ObservedJob>,
    /// Jobs of the same pipeline owned by others.
    pub foreign: Vec<ForeignJob>,
    /// Pods not counted by the quota yet (any Sluice Job of the namespace).
    pub uncounted: Vec<PodDemand>,
    /// Pods of every unfinished Sluice Job of the namespace, counted or not.
    pub committed: Vec<PodDemand>,
    /// Pods of its own unfinished Jobs.
    pub own_pods: Vec<PodDemand>,
}

/// Whose Jobs [`merge_jobs`] sorts, and how their pods are charged.
pub struct JobsOf<'a> {
    pub namespace: &'a str,
    pub uid: &'a str,
    pub pipeline: Option<&'a Pipeline>,
    pub defaults: &'a ContainerDefaults,
    /// The backfill's Jobs go to a Kueue queue: those only the ledger shows were created
    /// suspended, so they are queued.
    pub queued: bool,
    /// The uids of the Jobs whose pod the Pod cache shows finished: the quota no longer counts
    /// it, though the Job controller may not have marked the Job finished yet (it batches Job
    /// status updates, up to a second later).
    pub finished_pods: &'a HashSet<String>,
}

/// The Jobs of a namespace as a backfill counts them: those of the cache `snapshot` and those of
/// the `ledger` of created Jobs that the snapshot does not show. The ledger is pruned against
/// the same snapshot (not against the cache as it is a moment later), so a Job is counted in
/// exactly one of them: one the cache received after the snapshot stays in the ledger.
pub fn merge_jobs(snapshot: &[Arc<Job>], ledger: &mut InFlight, of: &JobsOf<'_>, now: Timestamp) -> ObservedJobs {
    let JobsOf { namespace, uid, pipeline, defaults, queued, finished_pods } = *of;
    let mut out = ObservedJobs { own: vec![], foreign: vec![], uncounted: vec![], committed: vec![], own_pods: vec![] };
    let pipeline_label = pipeline.map(|p| jobs::label_value(&p.name_any()));
    let pipeline_uid = pipeline.and_then(|p| p.uid());
    let in_namespace: Vec<&Arc<Job>> =
        snapshot.iter().filter(|j| j.metadata.namespace.as_deref() == Some(namespace)).collect();
    for job in &in_namespace {
        if job.metadata.deletion_timestamp.is_some() {
            // Being deleted (a replaced run, a pruned one): its pod may still write the
            // window, so another owner's Job keeps the window busy until it is gone.
            if let Some(foreign) = foreign_job(job, uid, pipeline_label.as_deref(), pipeline_uid.as_deref()) {
                out.foreign.push(foreign);
            }
            continue;
        }
        let demand = || {
            quota::pod_demand(&job.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default(), defaults)
        };
        let pod_finished = job.metadata.uid.as_ref().is_some_and(|u| finished_pods.contains(u));
        let charge = if pod_finished { PodCharge::Released } else { quota::pod_charge(job) };
        if charge == PodCharge::NotYetCreated {
            out.uncounted.push(demand());
        }
        if charge != PodCharge::Released {
            out.committed.push(demand());
        }
        let Some(observed) = job_cache::observe(job) else { continue };
        if controlled_by(job, uid) {
            if charge != PodCharge::Released {
                out.own_pods.push(demand());
            }
            out.own.push(observed);
        } else if let Some(foreign) = foreign_job(job, uid, pipeline_label.as_deref(), pipeline_uid.as_deref()) {
            out.foreign.push(foreign);
        }
    }
    // Jobs created by this process that the snapshot does not show.
    let shown: BTreeSet<(&str, &str)> =
        snapshot.iter().filter_map(|j| Some((j.metadata.namespace.as_deref()?, j.metadata.name.as_deref()?))).collect();
    ledger.prune(now, |ns, name| shown.contains(&(ns, name)));
    for (name, launch) in ledger.in_namespace(namespace) {
        out.uncounted.push(launch.demand.clone());
        out.committed.push(launch.demand.clone());
        if launch.owner_uid == uid {
            out.own_pods.push(launch.demand.clone());
            out.own.push(ObservedJob {
                name: name.to_string(),
                run_id: launch.run_id.clone(),
                step: launch.step.clone(),
                attempt: launch.attempt,
                window: launch.window,
                created: launch.created,
                state: if queued { JobState::Queued } else { JobState::Active },
            });
        }
    }
    out
}

/// `job` as a Job of the pipeline (labelled `pipeline_label`) that the Backfill `uid` does not
/// control, or `None`.
fn foreign_job(job: &Job, uid: &str, pipeline_label: Option<&str>, pipeline_uid: Option<&str>) -> Option<ForeignJob> {
    let label = job.labels().get(jobs::labels::PIPELINE).map(String::as_str);
    if controlled_by(job, uid) || pipeline_label.is_none() || label != pipeline_label {
        return None;
    }
    let observed = job_cache::observe(job)?;
    let controller = job.owner_references().iter().find(|o| o.controller == Some(true));
    let owner = match controller {
        Some(o) if Some(o.uid.as_str()) == pipeline_uid => Owner::Pipeline,
        Some(o) if o.kind == Backfill::kind(&()) => Owner::Backfill(o.uid.clone()),
        _ => Owner::Unknown,
    };
    Some(ForeignJob { job: observed, owner })
}

/// Other Backfills of the same pipeline among `backfills` (a cache's), as records.
pub fn siblings(
    backfills: &[impl Deref<Target = Backfill>],
    namespace: &str,
    pipeline: &str,
    uid: &str,
) -> Vec<Sibling> {
    backfills
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace) && b.spec.pipeline_ref.name == pipeline)
        .filter(|b| b.uid().as_deref() != Some(uid))
        .map(|b| {
            let status = b.status.clone().unwrap_or_default();
            Sibling {
                uid: b.uid().unwrap_or_default(),
                processed: RangeSet::from_status(&status.processed_ranges),
                succeeded: RangeSet::from_status(&status.succeeded_ranges),
                failed: RangeSet::from_status(&status.failed_ranges),
            }
        })
        .collect()
}

/// The budget of the backfill; invalid quantities in the spec become problems. `quota` is
/// `None` for a backfill with a Kueue queue (not read): Kueue's quota governs, and only
/// `spec.budget.limits` are Sluice's to apply.
pub fn budget(
    backfill: &Backfill,
    quota: Option<&ResourceQuota>,
    observed: &ObservedJobs,
    problems: &mut Vec<String>,
) -> Budget {
    let spec = backfill.spec.budget.as_ref();
    let mut parse = |field: &str, map: Option<&BTreeMap<String, Quantity>>, round| {
        map.map(|m| quota::parse_amounts(m, round)).transpose().unwrap_or_else(|e| {
            problems.push(format!("spec.budget.{field}: {e}"));
            None
        })
    };
    let reserve = parse("reserve", spec.and_then(|b| b.reserve.as_ref()), Round::Up).unwrap_or_default();
    let limits = parse("limits", spec.and_then(|b| b.limits.as_ref()), Round::Down);
    let quota = quota.map(|q| {
        let state = quota::quota_state(q);
        let uncounted = quota::uncounted(&observed.uncounted, &state.hard);
        let committed = quota::uncounted(&observed.committed, &state.hard);
        QuotaBudget { state, reserve, uncounted, committed }
    });
    let own_in_use = limits.as_ref().map(|l| quota::total(&observed.own_pods, l)).unwrap_or_default();
    Budget { quota, limits, own_in_use }
}

#[cfg(test)]
#[path = "backfill_tests.rs"]
mod tests;
