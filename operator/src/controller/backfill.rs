//! Backfill reconciler: observe (the Backfill and its ResourceQuota fresh from the API server;
//! the Pipeline, the Jobs, other Backfills and LimitRanges from the caches), decide
//! (`plan::backfill::decide`), act (write the status, create Jobs, then delete the Jobs of the
//! partitions the written status records; Events and metrics).
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
//! the cache has it), when its ResourceQuota, Pipeline or a LimitRange of its namespace changes,
//! and at precise times (a retry's backoff ending); never on a periodic resync. Deleting a
//! Backfill deletes its Jobs through their owner references (background propagation), which
//! stops their pods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::job_cache;
use super::ready;
use super::status::FIELD_MANAGER;
use crate::api::conditions::{self, types};
use crate::api::{Backfill, BackfillStatus, BackfillSteps, DriftPolicy, Pipeline, StepKind};
use crate::error::{Error, Result};
use crate::jobs::{self, StepJob};
use crate::plan::backfill::{
    BlockedInput, CreateRound, Created, Input, JobToCreate, MAX_NAME_CONFLICTS, PipelineView, Plan, decide,
};
use crate::plan::backfill_ranges::RangeSet;
use crate::plan::backfill_records::{ForeignJob, Owner, Records, Sibling};
use crate::plan::backfill_status::reasons;
use crate::plan::runs::{JobState, ObservedJob};
use crate::quota::{self, Budget, ContainerDefaults, InFlight, Launch, PodCharge, PodDemand, QuotaBudget, Round};
use crate::validation;

/// How soon to look again after the API server refused a Job.
const CREATE_RETRY: Duration = Duration::from_secs(30);
/// How soon to decide again after the status changed under a decision.
const CONFLICT_RETRY: Duration = Duration::from_millis(100);

pub async fn reconcile(obj: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |backfill: &Backfill, ctx: &Context| reconcile_backfill(backfill, ctx).await).await
}

/// The Backfill that controls `job`, if any: a change of the Job wakes it.
pub fn controlling_backfill(job: &Job) -> Option<ObjectRef<Backfill>> {
    let owner = job.owner_references().iter().find(|o| o.controller == Some(true))?;
    (owner.kind == Backfill::kind(&()) && owner.api_version == Backfill::api_version(&()))
        .then(|| ObjectRef::new(&owner.name).within(job.namespace().as_deref().unwrap_or_default()))
}

/// The Backfills in `namespace`, woken by a change that concerns all of them (a LimitRange).
pub fn in_namespace(store: &Store<Backfill>, namespace: Option<String>) -> Vec<ObjectRef<Backfill>> {
    store.state().iter().filter(|b| b.namespace() == namespace).map(|b| ObjectRef::from_obj(&**b)).collect()
}

async fn reconcile_backfill(cached: &Backfill, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let name = cached.name_any();
    let api: Api<Backfill> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(backfill) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    if backfill.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = backfill.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let pipeline = ctx.pipelines.get(&ObjectRef::new(&backfill.spec.pipeline_ref.name).within(&namespace));
    let mut problems =
        validation::backfill(&backfill.spec, pipeline.as_ref().map(|p| &p.spec), &ctx.namespace(&namespace));
    // The Pipeline's templates run as written: the accounts of the steps this backfill runs
    // must be allowed in the namespace, whoever created the Backfill.
    if let Some(p) = &pipeline {
        let transforms_only = backfill.spec.steps == BackfillSteps::TransformsOnly;
        let steps = p.spec.steps.iter().filter(|s| !transforms_only || s.kind == StepKind::Transform);
        problems.extend(ctx.refused_steps(&namespace, steps).0);
    }

    // Job names found held by Jobs that are not Sluice's, read fresh: are they still?
    let api_jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipeline_name = backfill.spec.pipeline_ref.name.as_str();
    let known = backfill.status.as_ref().map(|s| s.name_conflicts.as_slice()).unwrap_or_default();
    let name_conflicts = still_squatted(&api_jobs, known, &uid, pipeline_name).await?;

    // Observe. The launch lock is held from reading the Jobs and the quota to creating Jobs, so
    // that concurrent decisions (other backfills, pipelines) see each other's Jobs.
    let mut launch = ctx.launch.lock().await;
    let now = Timestamp::now();
    let defaults = container_defaults(ctx, &namespace);
    let observed = observe_jobs(ctx, &namespace, &uid, pipeline.as_deref(), &defaults, now);
    let quota = match backfill.spec.budget.as_ref().and_then(|b| b.resource_quota_ref.as_ref()) {
        Some(r) => Api::<ResourceQuota>::namespaced(ctx.client.clone(), &namespace).get_opt(&r.name).await?,
        None => None,
    };
    let budget = budget(&backfill, quota.as_ref(), &observed, &mut problems);
    let free_job_slots = launch.free_slots(&ctx.jobs, &namespace, ctx.job_caps);
    let records = Records::new(
        pipeline.as_ref().and_then(|p| p.status.as_ref()),
        observed.foreign,
        siblings(ctx, &namespace, &backfill.spec.pipeline_ref.name, &uid),
    );
    let default_status = Default::default();
    let current = backfill.status.as_ref().unwrap_or(&default_status);
    let plan = decide(&Input {
        spec: &backfill.spec,
        status: current,
        generation: backfill.meta().generation,
        uid: &uid,
        now,
        pipeline: pipeline.as_ref().map(|p| PipelineView {
            name: &backfill.spec.pipeline_ref.name,
            spec: &p.spec,
            status: p.status.as_ref(),
            created: p.meta().creation_timestamp.as_ref().map_or(now, |t| t.0),
        }),
        jobs: observed.own,
        records,
        container_defaults: defaults,
        budget,
        free_job_slots,
        problems,
        blocked_inputs: blocked_inputs(ctx, &namespace, pipeline.as_deref()),
        name_conflicts,
    });

    // Act: first the status, on the condition that the Backfill is still at the version the
    // decision read; then the Jobs; then the deletions the written status allows. A decision
    // made from a status that has been replaced since (a second replica, a stale read) so
    // creates and deletes nothing. A crash between the status and the Jobs loses nothing: no
    // window is recorded as done before its Jobs have finished.
    let written = match write_status(&api, &backfill, &plan.status, !plan.create.is_empty()).await {
        Ok(written) => written,
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 => {
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        Err(error) => return Err(error),
    };
    if written.is_some() {
        ctx.metrics.status_writes.with_label_values(&["backfill"]).inc();
    }
    let mut retry: Option<Duration> = None;
    let mut round = CreateRound::default();
    for create in &plan.create {
        if !round.attempt(create) {
            continue;
        }
        let Some(step) = pipeline.as_ref().and_then(|p| p.spec.steps.iter().find(|s| s.name == create.step)) else {
            continue;
        };
        let job = jobs::build(&StepJob {
            namespace: &namespace,
            pipeline: pipeline_name,
            run_id: &create.run_id,
            window: create.window,
            step,
            attempt: create.attempt,
            backfill: Some(&name),
            owner: owner_reference(&backfill, &uid),
        });
        let job_name = job.name_any();
        let outcome = match api_jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                launch.add(&namespace, &job_name);
                remember(ctx, &namespace, &job_name, &uid, create, now);
                ctx.metrics.jobs_created.with_label_values(&[namespace.as_str(), "backfill"]).inc();
                Created::Yes
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Gone again since: a run of the window had it; look again soon.
                let holder =
                    api_jobs.get_opt(&job_name).await?.map_or(Created::TakenByRun, |j| holder(&j, &uid, pipeline_name));
                if holder != Created::Yes {
                    tracing::info!(job = %job_name, backfill = %name, ?holder, "Job name taken by another owner");
                }
                holder
            }
            Err(kube::Error::Api(status)) => {
                retry = Some(retry.map_or(CREATE_RETRY, |r| r.min(CREATE_RETRY)));
                let note = format!("could not create Job {job_name} for step {}: {}", create.step, status.message);
                ctx.event(&backfill, EventType::Warning, "JobCreateFailed", note, "CreateJob").await;
                Created::Refused
            }
            Err(error) => return Err(error.into()),
        };
        round.record(create, &job_name, outcome);
    }
    drop(launch);
    // What the creates found: partitions that did not start, names held by others.
    let settled = round.settle(&plan, backfill.meta().generation, now);
    if let Some(r) = settled.retry {
        let r = Duration::from_millis(r.as_millis().max(0) as u64);
        retry = Some(retry.map_or(r, |q| q.min(r)));
    }
    if settled.status != plan.status {
        let base = written.as_ref().unwrap_or(&backfill);
        match write_status(&api, base, &settled.status, false).await {
            Ok(_) => ctx.metrics.status_writes.with_label_values(&["backfill"]).inc(),
            // Replaced since: the next decision finds the same again.
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 => retry = Some(CONFLICT_RETRY),
            Err(error) => return Err(error),
        }
    }
    for job in &settled.new_conflicts {
        let note = format!(
            "Job {job} exists and is neither this Backfill's nor a Sluice Job of Pipeline {pipeline_name}: \
             the partition that needs the name waits until that Job is deleted"
        );
        ctx.event(&backfill, EventType::Warning, reasons::NAME_CONFLICT, note, "CreateJob").await;
    }
    let plan = Plan { status: settled.status, ..plan };
    for job_name in &plan.delete {
        match api_jobs.delete(job_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    ready::publish_events(ctx, &backfill, &plan.events, &current.conditions, &ready_problems(&plan)).await;
    record_metrics(ctx, &namespace, &name, quota.as_ref(), &plan, settled.admitted);

    let mut requeue = plan.requeue_after.map(|d| Duration::from_millis(d.as_millis().max(0) as u64));
    if let Some(r) = retry {
        requeue = Some(requeue.map_or(r, |q| q.min(r)));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Writes `status` on the condition that the Backfill is still at the version the decision read
/// (server-side apply with `metadata.resourceVersion`): a decision made from a status that
/// another writer has replaced since fails with a conflict instead of overwriting newer records
/// or launching on their strength. Skipped when the status is unchanged, unless `always` (a
/// plan that creates Jobs always checks; an unchanged apply writes nothing). Returns the
/// Backfill as written, if written.
async fn write_status(
    api: &Api<Backfill>,
    backfill: &Backfill,
    status: &BackfillStatus,
    always: bool,
) -> Result<Option<Backfill>> {
    if backfill.status.as_ref() == Some(status) && !always {
        return Ok(None);
    }
    let value = serde_json::to_value(status).map_err(|source| Error::Serialize { what: "status", source })?;
    let patch = serde_json::json!({
        "apiVersion": Backfill::api_version(&()),
        "kind": Backfill::kind(&()),
        "metadata": {"resourceVersion": backfill.resource_version()},
        "status": value,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(Some(api.patch_status(&backfill.name_any(), &params, &Patch::Apply(&patch)).await?))
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
fn container_defaults(ctx: &Context, namespace: &str) -> ContainerDefaults {
    let ranges = ctx.limit_ranges.state();
    ContainerDefaults::from_limit_ranges(
        ranges.iter().filter(|l| l.namespace().as_deref() == Some(namespace)).filter_map(|l| l.spec.as_ref()),
    )
}

/// Who holds the name of `job`, which a create of this backfill (`uid`) found taken: this
/// backfill (already launched), a Sluice run of the Pipeline that the Job cache and so the
/// records will show (the Pipeline's or another backfill's), or a Job that is not Sluice's.
fn holder(job: &Job, uid: &str, pipeline: &str) -> Created {
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
async fn still_squatted(api: &Api<Job>, names: &[String], uid: &str, pipeline: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in names.iter().take(MAX_NAME_CONFLICTS) {
        if let Some(job) = api.get_opt(name).await?
            && holder(&job, uid, pipeline) == Created::Squatted
        {
            out.push(name.clone());
        }
    }
    Ok(out)
}

fn controlled_by(job: &Job, uid: &str) -> bool {
    job.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

fn owner_reference(backfill: &Backfill, uid: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    let mut owner = backfill.controller_owner_ref(&()).unwrap_or_default();
    owner.uid = uid.to_string();
    owner
}

/// Remembers a created Job until the cache shows it: its pod is not counted by the quota yet.
fn remember(ctx: &Context, namespace: &str, job_name: &str, uid: &str, create: &JobToCreate, now: Timestamp) {
    let launch = Launch {
        owner_uid: uid.to_string(),
        run_id: create.run_id.clone(),
        step: create.step.clone(),
        attempt: create.attempt,
        window: create.window,
        demand: create.demand.clone(),
        created: now,
    };
    ctx.in_flight.lock().unwrap_or_else(|e| e.into_inner()).add(namespace, job_name, launch);
}

/// What the Jobs of the namespace tell a backfill.
struct ObservedJobs {
    /// Its own Jobs, including created ones the cache does not show yet.
    own: Vec<ObservedJob>,
    /// Jobs of the same pipeline owned by others.
    foreign: Vec<ForeignJob>,
    /// Pods not counted by the quota yet (any Sluice Job of the namespace).
    uncounted: Vec<PodDemand>,
    /// Pods of every unfinished Sluice Job of the namespace, counted or not.
    committed: Vec<PodDemand>,
    /// Pods of its own unfinished Jobs.
    own_pods: Vec<PodDemand>,
}

fn observe_jobs(
    ctx: &Context,
    namespace: &str,
    uid: &str,
    pipeline: Option<&Pipeline>,
    defaults: &ContainerDefaults,
    now: Timestamp,
) -> ObservedJobs {
    // The ledger first, then the snapshot it is pruned against: every Job is in exactly one.
    let mut ledger = ctx.in_flight.lock().unwrap_or_else(|e| e.into_inner());
    let snapshot = ctx.jobs.state();
    merge_jobs(&snapshot, &mut ledger, &JobsOf { namespace, uid, pipeline, defaults }, now)
}

/// Whose Jobs [`merge_jobs`] sorts, and how their pods are charged.
struct JobsOf<'a> {
    namespace: &'a str,
    uid: &'a str,
    pipeline: Option<&'a Pipeline>,
    defaults: &'a ContainerDefaults,
}

/// The Jobs of a namespace as a backfill counts them: those of the cache `snapshot` and those of
/// the `ledger` of created Jobs that the snapshot does not show. The ledger is pruned against
/// the same snapshot (not against the cache as it is a moment later), so a Job is counted in
/// exactly one of them: one the cache received after the snapshot stays in the ledger.
fn merge_jobs(snapshot: &[Arc<Job>], ledger: &mut InFlight, of: &JobsOf<'_>, now: Timestamp) -> ObservedJobs {
    let JobsOf { namespace, uid, pipeline, defaults } = *of;
    let mut out = ObservedJobs { own: vec![], foreign: vec![], uncounted: vec![], committed: vec![], own_pods: vec![] };
    let pipeline_label = pipeline.map(|p| jobs::label_value(&p.name_any()));
    let pipeline_uid = pipeline.and_then(|p| p.uid());
    let in_namespace: Vec<&Arc<Job>> = snapshot
        .iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace) && j.metadata.deletion_timestamp.is_none())
        .collect();
    for job in &in_namespace {
        let demand = || {
            quota::pod_demand(&job.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default(), defaults)
        };
        let charge = quota::pod_charge(job);
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
        } else if pipeline_label.is_some() && job.labels().get(jobs::labels::PIPELINE) == pipeline_label.as_ref() {
            let controller = job.owner_references().iter().find(|o| o.controller == Some(true));
            let owner = match controller {
                Some(o) if Some(&o.uid) == pipeline_uid.as_ref() => Owner::Pipeline,
                Some(o) if o.kind == Backfill::kind(&()) => Owner::Backfill(o.uid.clone()),
                _ => Owner::Unknown,
            };
            out.foreign.push(ForeignJob { job: observed, owner });
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
                state: JobState::Active,
            });
        }
    }
    out
}

/// The Datasets the Pipeline's steps read (`steps[].inputs`) whose contract has `policy: Block`
/// and is violated (`SchemaConformant` False), from the Dataset cache.
fn blocked_inputs(ctx: &Context, namespace: &str, pipeline: Option<&Pipeline>) -> Vec<BlockedInput> {
    let Some(pipeline) = pipeline else { return Vec::new() };
    let inputs: BTreeSet<&str> = pipeline.spec.steps.iter().flat_map(|s| s.inputs.iter()).map(String::as_str).collect();
    inputs
        .into_iter()
        .filter_map(|name| {
            let dataset = ctx.datasets.get(&ObjectRef::new(name).within(namespace))?;
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

/// Other Backfills of the same pipeline, as records.
fn siblings(ctx: &Context, namespace: &str, pipeline: &str, uid: &str) -> Vec<Sibling> {
    ctx.backfills
        .state()
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

/// The budget of the backfill; invalid quantities in the spec become problems.
fn budget(
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
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("skipped", c.skipped),
        ] {
            m.partitions.with_label_values(&[namespace, name, phase]).set(value);
        }
    }
    m.admissions.with_label_values(&[namespace, name]).inc_by(admitted as u64);
    if let Some(t) = &plan.status.throttled {
        m.throttles.with_label_values(&[namespace, name, t.reason.as_str()]).inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PipelineSpec;
    use crate::schedule::Window;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pipeline() -> Pipeline {
        let spec: PipelineSpec = serde_json::from_value(serde_json::json!({
            "schedule": "0 * * * *",
            "steps": [{"name": "extract", "kind": "Extract", "template": {"spec": {"containers": [
                {"name": "main", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}}]
        }))
        .unwrap();
        let mut p = Pipeline::new("orders", spec);
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("pipeline-uid".into());
        p
    }

    fn backfill_owner(uid: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: Backfill::api_version(&()).into(),
            kind: Backfill::kind(&()).into(),
            name: "fill".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// A Job of window `h` (hour of Oct 1) that the backfill `uid` created, no pod yet.
    fn backfill_job(p: &Pipeline, h: i64, uid: &str) -> (Job, Launch) {
        let start = ts("2026-10-01T00:00:00Z") + jiff::SignedDuration::from_hours(h);
        let window = Window { start, end: start + jiff::SignedDuration::from_hours(1) };
        let run_id = window.run_id();
        let job = jobs::build(&StepJob {
            namespace: "ns",
            pipeline: "orders",
            run_id: &run_id,
            window,
            step: &p.spec.steps[0],
            attempt: 0,
            backfill: Some("fill"),
            owner: backfill_owner(uid),
        });
        let launch = Launch {
            owner_uid: uid.into(),
            run_id,
            step: "extract".into(),
            attempt: 0,
            window,
            demand: quota::pod_demand(p.spec.steps[0].template.spec.as_ref().unwrap(), &ContainerDefaults::default()),
            created: ts("2026-11-24T12:00:00Z"),
        };
        (job, launch)
    }

    #[test]
    fn every_job_is_counted_once_whether_in_the_snapshot_or_in_the_ledger() {
        let p = pipeline();
        let now = ts("2026-11-24T12:00:01Z");
        let defaults = ContainerDefaults::default();
        let of = JobsOf { namespace: "ns", uid: "me", pipeline: Some(&p), defaults: &defaults };
        let (seen, seen_launch) = backfill_job(&p, 0, "me");
        let (late, late_launch) = backfill_job(&p, 1, "me");
        let mut ledger = InFlight::default();
        ledger.add("ns", &seen.name_any(), seen_launch);
        ledger.add("ns", &late.name_any(), late_launch);
        // The snapshot was taken before the cache received `late` (which the cache may show by
        // the time the ledger is pruned: that must not matter).
        let snapshot = vec![Arc::new(seen.clone())];
        let observed = merge_jobs(&snapshot, &mut ledger, &of, now);
        let mut own: Vec<String> = observed.own.iter().map(|j| j.name.clone()).collect();
        own.sort();
        assert_eq!(own, [seen.name_any(), late.name_any()], "each Job in exactly one of snapshot and ledger");
        assert_eq!(observed.uncounted.len(), 2, "both pods are still to be counted by the quota");
        assert_eq!(observed.committed.len(), 2);
        assert_eq!(observed.own_pods.len(), 2);
        // The ledger keeps what the snapshot did not show, for the next decision.
        assert_eq!(ledger.in_namespace("ns").map(|(n, _)| n.to_string()).collect::<Vec<_>>(), [late.name_any()]);
    }

    #[test]
    fn a_taken_name_is_ours_a_sluice_runs_or_squatted() {
        let p = pipeline();
        let (mine, _) = backfill_job(&p, 0, "me");
        assert_eq!(holder(&mine, "me", "orders"), Created::Yes);
        // Another backfill's, or the Pipeline's run of the window: the records will show it.
        assert_eq!(holder(&mine, "other", "orders"), Created::TakenByRun);
        let mut pipelines = mine.clone();
        pipelines.metadata.owner_references = None;
        assert_eq!(holder(&pipelines, "me", "orders"), Created::TakenByRun);
        // Not Sluice's, another pipeline's, or without what the Job cache needs: squatted.
        let mut foreign = mine.clone();
        foreign.metadata.labels = None;
        assert_eq!(holder(&foreign, "other", "orders"), Created::Squatted);
        assert_eq!(holder(&mine, "other", "payments"), Created::Squatted);
        let mut bare = mine.clone();
        bare.metadata.annotations = None;
        assert_eq!(holder(&bare, "other", "orders"), Created::Squatted);
    }
}
