//! Pipeline reconciler over the real API server: observe (the Pipeline's Jobs and the datasets
//! it names from the caches, the free Job slots), then `act::pipeline::reconcile` (decide, write
//! the status with a `resourceVersion` precondition, create and delete Jobs), then Events and
//! metrics for what was recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::apply::{self, Patched, Precondition};
use super::context::Context;
use super::every_reconcile;
use super::guard::Guarded;
use super::job_cache;
use crate::act::pipeline::{Acted, Observed, Outcome, PipelineApi};
use crate::act::{Created, JobApi, Written};
use crate::api::conditions::{self, types};
use crate::api::{DriftPolicy, Pipeline, PipelineStatus, RunPhase};
use crate::error::{Error, Result};
use crate::plan::pipeline::{CheckedKey, Plan, Upstream};
use crate::plan::runs::{JobState, ObservedJob};
use crate::schedule::Window;
use crate::validation;

pub use crate::act::pipeline::RUN_NOW_ANNOTATION;

/// How soon to decide again after the status changed under a decision. The watch event of the
/// newer status wakes the Pipeline as soon as the cache has it; this only bounds the wait, and
/// is long enough that a cache left stale (after an API server restart) causes no write storm.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);
/// How soon to look again after a Job name turned out to be held by another object.
const NAME_CONFLICT_RETRY: Duration = Duration::from_secs(1);
/// How soon to look again after the API server refused a Job.
const CREATE_RETRY: Duration = Duration::from_secs(30);

pub async fn reconcile(obj: Arc<Guarded<Pipeline>>, ctx: Arc<Context>) -> Result<Action> {
    every_reconcile::measured(obj, ctx, async |pipeline: &Pipeline, ctx: &Context| {
        reconcile_pipeline(pipeline, ctx).await
    })
    .await
}

pub(crate) async fn reconcile_pipeline(pipeline: &Pipeline, ctx: &Context) -> Result<Action> {
    let namespace = pipeline.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    // With Job caps, the launch lock is held from counting free slots to creating the Jobs, so
    // concurrent reconciles cannot both take the last slot; without caps there is nothing to
    // count and reconciles launch in parallel.
    let launch = if ctx.job_caps.is_capped() { Some(ctx.launch.lock().await) } else { None };
    let free_job_slots = if launch.is_some() { ctx.free_job_slots(&namespace) } else { usize::MAX };
    let api = KubePipelines { ctx, namespace: namespace.clone(), free_job_slots };
    let mut outcome = crate::act::pipeline::reconcile(&api, pipeline, Timestamp::now()).await?;
    if matches!(outcome, Outcome::Conflict) {
        outcome = decide_on_fresh_read(&api, pipeline).await?;
    }
    let acted = match outcome {
        Outcome::Gone => return Ok(Action::await_change()),
        Outcome::Conflict => return Ok(Action::requeue(CONFLICT_RETRY)),
        Outcome::Acted(acted) => acted,
    };
    remember_created(ctx, &acted, launch.is_some());
    drop(launch);
    report(ctx, &namespace, &acted).await;

    let mut requeue = acted.plan.requeue_after.map(|d| Duration::from_millis(d.as_millis().max(0) as u64));
    let mut sooner = |d: Duration| requeue = Some(requeue.map_or(d, |r| r.min(d)));
    let backing_off = !ctx.launched.backing_off(&acted.pipeline.uid().unwrap_or_default(), Timestamp::now()).is_empty();
    if !acted.rejected.is_empty() || backing_off {
        sooner(CREATE_RETRY);
    }
    if !acted.conflicts.is_empty() {
        sooner(NAME_CONFLICT_RETRY);
    }
    log_decision(&acted, requeue);
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// After a conflict the cached Pipeline is behind its status: decide once more on a fresh
/// read, written with that read's `resourceVersion`. The watch catches up by itself, but after
/// an API server restart it lagged the operator's own writes for up to 10 s (e2e restart test),
/// and every decision in that time met the same conflict.
async fn decide_on_fresh_read(api: &KubePipelines<'_>, cached: &Pipeline) -> Result<Outcome> {
    let name = cached.name_any();
    let pipelines: Api<Pipeline> = Api::namespaced(api.ctx.client.clone(), &api.namespace);
    let read = pipelines.get_opt(&name).await;
    let read = read.map_err(|source| Error::GetObject { kind: "Pipeline", name: name.clone(), source })?;
    let Some(fresh) = read else { return Ok(Outcome::Gone) };
    tracing::debug!(
        pipeline = %cached.name_any(),
        cached = cached.resource_version().unwrap_or_default(),
        fresh = fresh.resource_version().unwrap_or_default(),
        "status changed under the decision; deciding again on a fresh read"
    );
    crate::act::pipeline::reconcile(api, &fresh, Timestamp::now()).await
}

/// One debug line per recorded decision: what was started, skipped and deleted, and when the
/// Pipeline is looked at again.
fn log_decision(acted: &Acted, requeue: Option<Duration>) {
    let status = &acted.plan.status;
    tracing::debug!(
        pipeline = %acted.pipeline.name_any(),
        created = ?acted.created.iter().map(|c| (c.run_id.as_str(), c.attempt)).collect::<Vec<_>>(),
        deleted = acted.plan.delete.len(),
        active = status.active_runs.len(),
        skipped_last = ?status.skipped_runs.last().map(|r| r.id.as_str()),
        jobs_seen = acted.observed.jobs.len(),
        requeue_ms = requeue.map(|d| d.as_millis() as u64),
        "decided"
    );
}

/// Events and metrics of a recorded decision.
async fn report(ctx: &Context, namespace: &str, acted: &Acted) {
    let pipeline = &acted.pipeline;
    let name = pipeline.name_any();
    if acted.status_changed {
        ctx.metrics.status_writes.with_label_values(&["pipeline"]).inc();
    }
    for create in &acted.created {
        ctx.metrics.job_created(namespace, "pipeline", &name, &create.step, create.attempt);
        if create.attempt == 0
            && let Some(started) = acted.plan.started.iter().find(|s| s.run_id == create.run_id)
            && let Some(tick) = started.tick
        {
            let lag = Timestamp::now().duration_since(tick).as_secs_f64().max(0.0);
            ctx.metrics.schedule_lag.with_label_values(&[namespace, name.as_str()]).observe(lag);
        }
    }
    for conflict in &acted.conflicts {
        let note = format!(
            "Job {} of run {} is held by {}: not launched; the run is resolved once the cache shows it",
            conflict.job, conflict.run_id, conflict.holder
        );
        ctx.event(pipeline, EventType::Warning, "NameConflict", note, "CreateJob").await;
    }
    for (job, message) in &acted.rejected {
        let note = format!("could not create Job {job}: {message}");
        ctx.event(pipeline, EventType::Warning, "JobCreateFailed", note, "CreateJob").await;
    }
    let previous = pipeline.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    every_reconcile::publish_events(ctx, pipeline, &acted.plan.events, previous, &acted.observed.problems).await;
    record_metrics(ctx, namespace, &name, &acted.plan, &acted.observed);
}

/// The Pipeline API over the real API server and the operator's caches.
struct KubePipelines<'a> {
    ctx: &'a Context,
    namespace: String,
    free_job_slots: usize,
}

impl JobApi for KubePipelines<'_> {
    async fn create_job(&self, job: &Job) -> Result<Created> {
        apply::create_job(&self.ctx.client, &self.namespace, job).await
    }

    async fn delete_job(&self, namespace: &str, name: &str) -> Result<()> {
        apply::delete_job(&self.ctx.client, namespace, name).await?;
        self.ctx.launched.deleted(namespace, name, Timestamp::now());
        Ok(())
    }
}

impl PipelineApi for KubePipelines<'_> {
    /// With the `resourceVersion` precondition (see [`apply::Precondition`]).
    async fn write_status(&self, pipeline: &Pipeline, status: &PipelineStatus) -> Result<Written> {
        Ok(match apply::write_status(&self.ctx.client, pipeline, status, Precondition::ResourceVersion).await? {
            Patched::Applied(_) => Written::Applied,
            Patched::Conflict => Written::Conflict,
            Patched::Gone => Written::Gone,
        })
    }

    fn observe(&self, pipeline: &Pipeline) -> Observed {
        let ctx = self.ctx;
        let uid = pipeline.uid().unwrap_or_default();
        let mut problems = validation::pipeline(&pipeline.spec, &ctx.namespace(&self.namespace));
        let (refusals, mut refused_steps) = ctx.refused_steps(&self.namespace, &pipeline.spec.steps);
        problems.extend(refusals);
        refused_steps.extend(ctx.launched.backing_off(&uid, Timestamp::now()));
        let asked = crate::kueue::Asked::pipeline(pipeline);
        problems.extend(crate::kueue::problems(asked, crate::kueue::pipeline_queue(asked).as_ref()));
        Observed {
            jobs: owned_jobs(ctx, &self.namespace, &uid),
            foreign: job_cache::foreign_to_indexed(&ctx.jobs, &ctx.job_index, &self.namespace, pipeline, &uid),
            upstream: upstream(ctx, &self.namespace, pipeline),
            blocked_inputs: blocked_inputs(ctx, &self.namespace, pipeline),
            free_job_slots: self.free_job_slots,
            problems,
            refused_steps,
            outputs_checked: outputs_checked(ctx, &self.namespace, pipeline),
            cost: super::cost::inputs(ctx, &self.namespace, &uid),
        }
    }
}

/// The Pipeline's Jobs, a failed one's reason saying what its container ended with, with those
/// this process created that the cache does not show yet and without those it deleted that the
/// cache still shows (`launched`).
fn owned_jobs(ctx: &Context, namespace: &str, uid: &str) -> Vec<ObservedJob> {
    let snapshot = ctx.job_index.owned(&ctx.jobs, uid);
    let mut jobs = job_cache::owned_among(&snapshot, namespace, uid);
    job_cache::explain_failures(&mut jobs, &snapshot, &ctx.pods, namespace);
    let cached: BTreeSet<&str> = snapshot.iter().filter_map(|j| j.metadata.name.as_deref()).collect();
    ctx.launched.fill_in(uid, namespace, &cached, &mut jobs, Timestamp::now());
    jobs
}

/// Remembers the Jobs `acted` created (see `launched`), as the next decision would observe them,
/// and, when the Job caps count (`capped`, the launch lock held), in the in-flight ledger; and the
/// steps whose create was refused.
fn remember_created(ctx: &Context, acted: &Acted, capped: bool) {
    let uid = acted.pipeline.uid().unwrap_or_default();
    let now = Timestamp::now();
    let namespace = acted.pipeline.namespace().unwrap_or_default();
    let mut ledger = capped.then(|| ctx.in_flight.lock().unwrap_or_else(|e| e.into_inner()));
    for create in &acted.created {
        let Some(job) = crate::act::pipeline::build_job(&acted.pipeline, create) else { continue };
        if let Some(ledger) = ledger.as_mut() {
            ledger.add_job(&namespace, &job.name_any(), now);
        }
        if let Some(mut observed) = job_cache::observe(&job) {
            observed.created = now;
            ctx.launched.remember(&uid, observed);
        }
    }
    for create in &acted.plan.create {
        let name = crate::jobs::job_name(&acted.pipeline.name_any(), &create.step, &create.run_id, create.attempt);
        if acted.rejected.iter().any(|(rejected, _)| *rejected == name) {
            ctx.launched.refused(&uid, &create.step, now);
        }
    }
}

/// For each Dataset in the cache that a step outputs, the last producing run it has checked.
fn outputs_checked(ctx: &Context, namespace: &str, pipeline: &Pipeline) -> BTreeMap<String, Option<CheckedKey>> {
    pipeline
        .spec
        .steps
        .iter()
        .flat_map(|s| s.outputs.iter())
        .filter_map(|name| {
            let dataset = ctx.datasets.get(name, namespace)?;
            let checked = dataset.status.as_ref().and_then(|s| s.last_checked_run.as_ref());
            Some((name.clone(), checked.map(|c| (c.finished.0, c.pipeline.clone(), c.run.clone(), c.step.clone()))))
        })
        .collect()
}

fn record_metrics(ctx: &Context, namespace: &str, name: &str, plan: &Plan, observed: &Observed) {
    let m = &ctx.metrics;
    let labels = [namespace, name];
    m.runs_started.with_label_values(&labels).inc_by(plan.started.len() as u64);
    m.active_runs.with_label_values(&labels).set(plan.status.active_run_count as i64);
    for finished in &plan.finished {
        let result = if finished.phase == RunPhase::Succeeded { "succeeded" } else { "failed" };
        m.runs_finished.with_label_values(&[namespace, name, result]).inc();
        if let Some(d) = finished.duration {
            m.run_duration.with_label_values(&labels).observe(d.as_secs_f64());
        }
        // Recorded with the status write that just succeeded: counted once.
        let record = plan.status.recent_runs.iter().find(|r| r.id == finished.run_id);
        if let Some(cost) = record.and_then(|r| r.cost.as_ref()) {
            m.cost.add_run(namespace, name, cost);
        }
        for job in observed.jobs.iter().filter(|j| j.run_id == finished.run_id) {
            let (result, end) = match &job.state {
                JobState::Succeeded { finished } => ("succeeded", *finished),
                JobState::Failed { finished, .. } => ("failed", *finished),
                JobState::Active | JobState::Queued => continue,
            };
            let secs = end.duration_since(job.created).as_secs_f64().max(0.0);
            m.step_duration.with_label_values(&[namespace, name, job.step.as_str(), result]).observe(secs);
        }
    }
}

/// Why a Dataset in the cache holds its readers: it violates its contract under policy `Block`.
fn contract_block(ctx: &Context, namespace: &str, name: &str) -> Option<String> {
    let dataset = ctx.datasets.get(name, namespace)?;
    let blocks = dataset.spec.contract.as_ref().is_some_and(|c| c.policy == DriftPolicy::Block);
    let status = dataset.status.as_ref()?;
    conditions::find(&status.conditions, types::SCHEMA_CONFORMANT)
        .filter(|c| blocks && c.status == "False")
        .map(|c| c.message.clone())
}

/// The trigger datasets as observed in the cache.
fn upstream(ctx: &Context, namespace: &str, pipeline: &Pipeline) -> Vec<Upstream> {
    let Some(trigger) = &pipeline.spec.trigger else { return Vec::new() };
    trigger
        .datasets
        .iter()
        .filter_map(|name| {
            let dataset = ctx.datasets.get(name, namespace)?;
            let status = dataset.status.as_ref();
            Some(Upstream {
                name: name.clone(),
                watermark: status.and_then(|s| s.watermark.as_ref()).map(|t| t.0),
                produced_window: status
                    .and_then(|s| s.produced_by.as_ref())
                    .and_then(|p| p.window.as_ref())
                    .map(|w| Window { start: w.start.0, end: w.end.0 }),
                blocking: contract_block(ctx, namespace, name),
            })
        })
        .collect()
}

/// Datasets read by steps (and not trigger datasets) whose contract holds new runs.
fn blocked_inputs(ctx: &Context, namespace: &str, pipeline: &Pipeline) -> Vec<String> {
    let trigger = pipeline.spec.trigger.as_ref().map(|t| t.datasets.as_slice()).unwrap_or_default();
    let mut inputs: Vec<&String> = pipeline.spec.steps.iter().flat_map(|s| s.inputs.iter()).collect();
    inputs.sort();
    inputs.dedup();
    inputs
        .into_iter()
        .filter(|name| !trigger.contains(name))
        .filter_map(|name| {
            contract_block(ctx, namespace, name)
                .map(|why| format!("dataset {name} violates its contract (policy Block): {why}"))
        })
        .collect()
}

/// Whether a step of `pipeline` runs as ServiceAccount `account`.
pub fn runs_as(pipeline: &Pipeline, account: &str) -> bool {
    pipeline.spec.steps.iter().any(|s| crate::tenancy::account(&s.template) == Some(account))
}

/// Names of the Datasets a Pipeline refers to (inputs, outputs, trigger).
pub fn referenced_datasets(pipeline: &Pipeline) -> impl Iterator<Item = &str> {
    let steps = pipeline.spec.steps.iter().flat_map(|s| s.inputs.iter().chain(s.outputs.iter()));
    let trigger = pipeline.spec.trigger.iter().flat_map(|t| t.datasets.iter());
    steps.chain(trigger).map(String::as_str)
}
