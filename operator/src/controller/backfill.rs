//! Backfill reconciler over the real API server: `act::backfill::reconcile` (the Backfill and
//! its ResourceQuota fresh from the API server; the Pipeline, the Jobs, other Backfills and
//! LimitRanges from the caches; decide; write the status, create Jobs, then delete the Jobs of
//! the partitions the written status records), then Events and metrics.
//!
//! Reads that must not be stale come from the API server:
//! - the Backfill, because every decision builds on the last status written (its processed
//!   ranges), which the cache may not show yet. The decision's status is written on the
//!   condition that it is still the latest, before any Job is created, so two replicas (or a
//!   reconcile that read before another wrote) never both act on one status;
//! - the ResourceQuota, read after the Job cache, so that a Job the cache shows with a pod is
//!   already counted in the quota's `used` (see `quota::in_flight`);
//! - a Job whose create found the name taken, to see who holds it, and the Jobs recorded in
//!   `status.nameConflicts`, to see whether they still do.
//!
//! The in-flight ledger is locked before the Job cache is read and pruned against that same
//! snapshot, so every Job is counted once, in one or the other (`merge_jobs`).
//!
//! Replicas that act at once (without leader election) decide the same Jobs from the same
//! status, whose deterministic names make the second creation `AlreadyExists`. What one replica
//! created and the other's cache does not show yet, the other plans again as its own
//! admission, so neither exceeds the quota. Several Backfills sharing one quota across several
//! acting replicas are not coordinated beyond that: run one leader.
//!
//! The Backfill wakes up when one of its Jobs changes (mapped from the shared Job stream after
//! the cache has it), when its ResourceQuota, Pipeline, a protected Dataset
//! (`spec.pauseWhen.datasetsStale`, after the Dataset cache has the change) or a LimitRange of
//! its namespace changes,
//! and at precise times (a retry's backoff ending); never on a periodic resync. Deleting a
//! Backfill deletes its Jobs through their owner references (background propagation), which
//! stops their pods.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::apply::{self, Patched, Precondition};
use super::context::Context;
use super::every_reconcile;
use super::guard::{self, Guarded, Key, ValidStore};
use super::job_cache;
use crate::act::backfill::{Acted, BackfillApi, JobsOf, Observed, Outcome, StatusWrite, merge_jobs, siblings};
use crate::act::{self, JobApi};
use crate::api::conditions::{self, types};
use crate::api::{Backfill, BackfillStatus, BackfillSteps, DriftPolicy, Pipeline, StepKind};
use crate::error::{Error, Result};
use crate::plan::backfill::protect::{self, ProtectedHold};
use crate::plan::backfill::summary::reasons;
use crate::plan::backfill::{BlockedInput, Plan};
use crate::quota::{ContainerDefaults, Launch};
use crate::validation;

/// How soon to look again after the API server refused a Job.
const CREATE_RETRY: SignedDuration = SignedDuration::from_secs(30);
/// How soon to decide again after the status changed under a decision.
const CONFLICT_RETRY: SignedDuration = SignedDuration::from_millis(100);

pub async fn reconcile(obj: Arc<Guarded<Backfill>>, ctx: Arc<Context>) -> Result<Action> {
    every_reconcile::measured(obj, ctx, async |backfill: &Backfill, ctx: &Context| {
        reconcile_backfill(backfill, ctx).await
    })
    .await
}

/// The Backfill that controls `job`, if any: a change of the Job wakes it.
pub fn controlling_backfill(job: &Job) -> Option<Key<Backfill>> {
    let owner = job.owner_references().iter().find(|o| o.controller == Some(true))?;
    (owner.kind == Backfill::kind(&()) && owner.api_version == Backfill::api_version(&()))
        .then(|| guard::key(&owner.name, job.namespace().as_deref().unwrap_or_default()))
}

/// The Backfills in `namespace`, woken by a change that concerns all of them (a LimitRange).
pub fn in_namespace(store: &ValidStore<Backfill>, namespace: Option<String>) -> Vec<Key<Backfill>> {
    store.state().iter().filter(|b| b.namespace() == namespace).map(|b| guard::key_of(&**b)).collect()
}

pub(crate) async fn reconcile_backfill(cached: &Backfill, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let api = KubeBackfills { ctx, namespace: namespace.clone(), launch: Mutex::new(None) };
    let acted = match crate::act::backfill::reconcile(&api, cached).await? {
        Outcome::Gone => return Ok(Action::await_change()),
        Outcome::Conflict => return Ok(Action::requeue(CONFLICT_RETRY.unsigned_abs())),
        Outcome::Acted(acted) => acted,
    };
    report(ctx, &namespace, &acted).await;
    let requeue = act::backfill::retry_after(&acted, CREATE_RETRY, CONFLICT_RETRY);
    log_decision(&acted, requeue);
    Ok(requeue
        .map_or_else(Action::await_change, |d| Action::requeue(Duration::from_millis(d.as_millis().max(0) as u64))))
}

/// One debug line per recorded decision: Jobs created, why more were not (the Throttled
/// condition) and the quota's `used` as read.
fn log_decision(acted: &Acted, requeue: Option<SignedDuration>) {
    let conditions = &acted.plan.status.conditions;
    let throttled = conditions.iter().find(|c| c.type_ == types::THROTTLED && c.status == "True");
    tracing::debug!(
        backfill = %acted.backfill.name_any(),
        created = acted.created.len(),
        admitted = acted.settled.admitted,
        throttled = throttled.map(|c| c.message.as_str()),
        quota_used = ?acted.quota.as_ref().and_then(|q| q.status.as_ref()?.used.as_ref()),
        requeue_ms = requeue.map(|d| d.as_millis()),
        "decided"
    );
}

/// Events and metrics of a recorded decision.
async fn report(ctx: &Context, namespace: &str, acted: &Acted) {
    let backfill = &acted.backfill;
    let name = backfill.name_any();
    let pipeline_name = backfill.spec.pipeline_ref.name.as_str();
    for _ in 0..acted.status_writes {
        ctx.metrics.status_writes.with_label_values(&["backfill"]).inc();
    }
    for create in &acted.plan.create {
        let job = crate::jobs::job_name(pipeline_name, &create.step, &create.run_id, create.attempt);
        if acted.created.contains(&job) {
            ctx.metrics.job_created(namespace, "backfill", pipeline_name, &create.step, create.attempt);
        }
    }
    for r in &acted.rejected {
        let note = format!("could not create Job {} for step {}: {}", r.job, r.step, r.message);
        ctx.event(backfill, EventType::Warning, "JobCreateFailed", note, "CreateJob").await;
    }
    for job in &acted.settled.new_conflicts {
        let note = format!(
            "Job {job} exists and is neither this Backfill's nor a Sluice Job of Pipeline {pipeline_name}: \
             the partition that needs the name waits until that Job is deleted"
        );
        ctx.event(backfill, EventType::Warning, reasons::NAME_CONFLICT, note, "CreateJob").await;
    }
    let previous = backfill.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    every_reconcile::publish_events(ctx, backfill, &acted.plan.events, previous, &ready_problems(&acted.plan)).await;
    record_metrics(ctx, namespace, &name, acted.quota.as_ref(), &acted.plan, acted.settled.admitted);
}

/// The Backfill API over the real API server and the operator's caches. The launch lock is
/// held in `launch` from `lock_launch` to `unlock_launch` (or the end of the reconcile).
struct KubeBackfills<'a> {
    ctx: &'a Context,
    namespace: String,
    launch: Mutex<Option<tokio::sync::MutexGuard<'a, ()>>>,
}

impl JobApi for KubeBackfills<'_> {
    async fn create_job(&self, job: &Job) -> Result<act::Created> {
        apply::create_job(&self.ctx.client, &self.namespace, job).await
    }

    async fn delete_job(&self, namespace: &str, name: &str) -> Result<()> {
        apply::delete_job(&self.ctx.client, namespace, name).await
    }
}

impl BackfillApi for KubeBackfills<'_> {
    fn prices(&self) -> Option<crate::cost::Prices> {
        self.ctx.prices.get().cloned().flatten()
    }

    async fn get_backfill(&self, namespace: &str, name: &str) -> Result<Option<Backfill>> {
        let api = Api::<Backfill>::namespaced(self.ctx.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| Error::GetObject { kind: "Backfill", name: name.to_string(), source })
    }

    async fn get_job(&self, namespace: &str, name: &str) -> Result<Option<Job>> {
        let api = Api::<Job>::namespaced(self.ctx.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| Error::GetJob { name: name.to_string(), source })
    }

    async fn get_quota(&self, namespace: &str, name: &str) -> Result<Option<ResourceQuota>> {
        let api = Api::<ResourceQuota>::namespaced(self.ctx.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| Error::GetQuota { name: name.to_string(), source })
    }

    /// With the `resourceVersion` precondition (see [`apply::Precondition`]); a Backfill gone
    /// meanwhile is an error (the next reconcile reads it fresh and finds it gone).
    async fn write_status(&self, backfill: &Backfill, status: &BackfillStatus) -> Result<StatusWrite> {
        match apply::write_status(&self.ctx.client, backfill, status, Precondition::ResourceVersion).await? {
            Patched::Applied(written) => Ok(StatusWrite::Applied(written)),
            Patched::Conflict => Ok(StatusWrite::Conflict),
            Patched::Gone => Err(apply::gone(backfill)),
        }
    }

    async fn lock_launch(&self) {
        let guard = self.ctx.launch.lock().await;
        *self.launch.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    }

    fn unlock_launch(&self) {
        self.launch.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn observe(&self, backfill: &Backfill, uid: &str, now: Timestamp) -> Observed {
        let ctx = self.ctx;
        let namespace = self.namespace.as_str();
        let pipeline =
            ctx.pipelines.get(&backfill.spec.pipeline_ref.name, namespace).map(|p| Arc::new(Pipeline::clone(&p)));
        let mut problems =
            validation::backfill(&backfill.spec, pipeline.as_ref().map(|p| &p.spec), &ctx.namespace(namespace));
        // The Pipeline's templates run as written: the accounts of the steps this backfill runs
        // must be allowed in the namespace, whoever created the Backfill.
        if let Some(p) = &pipeline {
            let transforms_only = backfill.spec.steps == BackfillSteps::TransformsOnly;
            let steps = p.spec.steps.iter().filter(|s| !transforms_only || s.kind == StepKind::Transform);
            problems.extend(ctx.refused_steps(namespace, steps).0);
        }
        let defaults = container_defaults(ctx, namespace);
        // The ledger first, then the snapshot it is pruned against: every Job is in exactly one.
        let jobs = {
            let mut ledger = ctx.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let snapshot = ctx.jobs.state();
            let queued = crate::act::backfill::queue_of(backfill, pipeline.as_deref()).is_some();
            let finished_pods = super::finished_pods::jobs_with_finished_pods(&ctx.pods, namespace);
            let of = JobsOf {
                namespace,
                uid,
                pipeline: pipeline.as_deref(),
                defaults: &defaults,
                queued,
                finished_pods: &finished_pods,
            };
            let mut jobs = merge_jobs(&snapshot, &mut ledger, &of, now);
            job_cache::explain_failures(&mut jobs.own, &snapshot, &ctx.pods, namespace);
            jobs
        };
        let siblings = siblings(&ctx.backfills.state(), namespace, &backfill.spec.pipeline_ref.name, uid);
        let blocked_inputs = blocked_inputs(ctx, namespace, pipeline.as_deref());
        let protected = protected(ctx, namespace, backfill);
        Observed { pipeline, problems, container_defaults: defaults, jobs, siblings, blocked_inputs, protected }
    }

    fn free_job_slots(&self, namespace: &str) -> usize {
        let locked = self.launch.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        if locked { self.ctx.free_job_slots(namespace) } else { 0 }
    }

    fn launched(&self, namespace: &str, job: &str, launch: Launch) {
        self.ctx.in_flight.lock().unwrap_or_else(|e| e.into_inner()).add(namespace, job, launch);
    }
}

/// The problems behind the Ready condition the plan wrote, for its Event.
fn ready_problems(plan: &Plan) -> Vec<String> {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .map(|c| vec![c.message.clone()])
        .unwrap_or_default()
}

/// The LimitRange defaults of `namespace`.
pub(super) fn container_defaults(ctx: &Context, namespace: &str) -> ContainerDefaults {
    let ranges = ctx.limit_ranges.state();
    ContainerDefaults::from_limit_ranges(
        ranges.iter().filter(|l| l.namespace().as_deref() == Some(namespace)).filter_map(|l| l.spec.as_ref()),
    )
}

/// The Datasets the Pipeline's steps read (`steps[].inputs`) whose contract has `policy: Block`
/// and is violated (`SchemaConformant` False), from the Dataset cache.
fn blocked_inputs(ctx: &Context, namespace: &str, pipeline: Option<&Pipeline>) -> Vec<BlockedInput> {
    let Some(pipeline) = pipeline else { return Vec::new() };
    let inputs: BTreeSet<&str> = pipeline.spec.steps.iter().flat_map(|s| s.inputs.iter()).map(String::as_str).collect();
    inputs
        .into_iter()
        .filter_map(|name| {
            let dataset = ctx.datasets.get(name, namespace)?;
            let blocks = dataset.spec.contract.as_ref().is_some_and(|c| c.policy == DriftPolicy::Block);
            let violated = dataset
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, types::SCHEMA_CONFORMANT))
                .filter(|c| c.status == "False")?;
            blocks.then(|| BlockedInput { dataset: name.to_string(), message: violated.message.clone() })
        })
        .collect()
}

/// The protected Datasets (`spec.pauseWhen.datasetsStale`) that hold new partitions, from the
/// Dataset cache (whose changes wake the Backfill after the cache has them).
fn protected(ctx: &Context, namespace: &str, backfill: &Backfill) -> Vec<ProtectedHold> {
    let names = backfill.spec.pause_when.as_ref().map(|p| p.datasets_stale.as_slice()).unwrap_or_default();
    names
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|name| {
            let dataset = ctx.datasets.get(name, namespace);
            protect::hold(name, dataset.is_some(), dataset.as_ref().and_then(|d| d.status.as_ref()))
        })
        .collect()
}

fn record_metrics(
    ctx: &Context,
    namespace: &str,
    name: &str,
    quota: Option<&ResourceQuota>,
    plan: &Plan,
    admitted: usize,
) {
    let m = &ctx.metrics.backfill;
    if let Some(c) = &plan.status.partitions {
        for (phase, value) in [
            ("pending", c.pending),
            ("running", c.running),
            ("queued", c.queued),
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("skipped", c.skipped),
        ] {
            m.partitions.with_label_values(&[namespace, name, phase]).set(value);
        }
    }
    m.admissions.with_label_values(&[namespace, name]).inc_by(admitted as u64);
    let throttle = plan.status.throttled.as_ref().map(|t| t.reason.as_str());
    if let Some(reason) = throttle {
        m.throttles.with_label_values(&[namespace, name, reason]).inc();
    }
    // One series per reason, 1 for the current one (a reason outside the list only while current).
    crate::metrics::prune::remove_where(&m.throttled, |l| {
        let reason = l.get("reason").copied();
        l.get("namespace") == Some(&namespace)
            && l.get("backfill") == Some(&name)
            && reason != throttle
            && !reason.is_some_and(|r| reasons::ALL.contains(&r))
    });
    for reason in reasons::ALL.into_iter().chain(throttle) {
        m.throttled.with_label_values(&[namespace, name, reason]).set(i64::from(throttle == Some(reason)));
    }
    if let Some(q) = quota {
        let quota_name = q.name_any();
        for (key, free) in &plan.headroom {
            m.quota_headroom
                .with_label_values(&[namespace, quota_name.as_str(), key.as_str()])
                .set(*free as f64 / 1000.0);
        }
    }
}
