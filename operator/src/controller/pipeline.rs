//! Pipeline reconciler: observe (the pipeline, its Jobs from the cache, the datasets it names,
//! the free Job slots), decide (`plan::pipeline::decide`), act (create and delete Jobs, then one
//! status write, Events and metrics).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::job_cache;
use super::ready;
use super::status::write_if_changed;
use kube::runtime::reflector::ObjectRef;

use crate::api::conditions::{self, types};
use crate::api::{DriftPolicy, Pipeline, RunPhase, StepSpec};
use crate::error::{Error, Result};
use crate::jobs::{self, StepJob};
use crate::plan::pipeline::Upstream;
use crate::plan::pipeline::{Input, Plan, decide};
use crate::plan::runs::JobState;
use crate::schedule::Window;
use crate::validation;

/// Annotation that starts one run of the latest complete window; change its value (for example
/// to the current time) to start another.
pub const RUN_NOW_ANNOTATION: &str = "sluice.dev/run-now";

pub async fn reconcile(obj: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |pipeline: &Pipeline, ctx: &Context| reconcile_pipeline(pipeline, ctx).await).await
}

async fn reconcile_pipeline(pipeline: &Pipeline, ctx: &Context) -> Result<Action> {
    let namespace = pipeline.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let name = pipeline.name_any();
    let uid = pipeline.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let now = Timestamp::now();

    // Observe. With Job caps, the launch lock is held from counting free slots to creating the
    // Jobs, so concurrent reconciles cannot both take the last slot; without caps there is
    // nothing to count and reconciles launch in parallel.
    let mut launch = if ctx.job_caps.is_capped() { Some(ctx.launch.lock().await) } else { None };
    let jobs = job_cache::owned_by(&ctx.jobs, &namespace, &uid);
    let free_job_slots = launch.as_mut().map_or(usize::MAX, |l| l.free_slots(&ctx.jobs, &namespace, ctx.job_caps));
    let problems = validation::pipeline(&pipeline.spec, &ctx.namespace(&namespace));
    let default_status = Default::default();
    let current = pipeline.status.as_ref().unwrap_or(&default_status);
    let input = Input {
        spec: &pipeline.spec,
        status: current,
        generation: pipeline.meta().generation,
        created: pipeline.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now),
        now,
        jobs: jobs.clone(),
        run_now: pipeline.annotations().get(RUN_NOW_ANNOTATION).map(String::as_str),
        free_job_slots,
        problems: problems.clone(),
        upstream: upstream(ctx, &namespace, pipeline),
    };

    // Decide.
    let plan = decide(&input);

    // Act: Jobs first, so that a crash before the status write repeats the same (idempotent)
    // creations rather than losing them.
    let api_jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut create_failed = false;
    for create in &plan.create {
        let Some(step) = pipeline.spec.steps.iter().find(|s| s.name == create.step) else { continue };
        let job = build_job(pipeline, &namespace, &uid, step, create);
        let job_name = job.name_any();
        match api_jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                if let Some(launch) = launch.as_mut() {
                    launch.add(&namespace, &job_name);
                }
                ctx.metrics.jobs_created.with_label_values(&[namespace.as_str(), "pipeline"]).inc();
                if create.attempt == 0
                    && let Some(started) = plan.started.iter().find(|s| s.run_id == create.run_id)
                    && let Some(tick) = started.tick
                {
                    let lag = Timestamp::now().duration_since(tick).as_secs_f64().max(0.0);
                    ctx.metrics.schedule_lag.with_label_values(&[namespace.as_str(), name.as_str()]).observe(lag);
                }
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(job = %job_name, "already launched");
            }
            Err(kube::Error::Api(status)) => {
                // Rejected (invalid pod template, quota, admission): say so, try again later.
                create_failed = true;
                let note = format!("could not create Job {job_name} for step {}: {}", create.step, status.message);
                ctx.event(pipeline, EventType::Warning, "JobCreateFailed", note, "CreateJob").await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    drop(launch);
    for job_name in &plan.delete {
        match api_jobs.delete(job_name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }

    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    if write_if_changed(&api, pipeline, pipeline.status.as_ref(), &plan.status).await? {
        ctx.metrics.status_writes.with_label_values(&["pipeline"]).inc();
    }
    ready::publish_events(ctx, pipeline, &plan.events, &current.conditions, &problems).await;
    record_metrics(ctx, &namespace, &name, &plan, &jobs);

    let mut requeue = plan.requeue_after.map(|d| Duration::from_millis(d.as_millis().max(0) as u64));
    if create_failed {
        requeue = Some(requeue.map_or(Duration::from_secs(30), |r| r.min(Duration::from_secs(30))));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

fn build_job(
    pipeline: &Pipeline,
    namespace: &str,
    uid: &str,
    step: &StepSpec,
    create: &crate::plan::pipeline::JobToCreate,
) -> Job {
    let mut owner = pipeline.controller_owner_ref(&()).unwrap_or_default();
    owner.uid = uid.to_string();
    jobs::build(&StepJob {
        namespace,
        pipeline: &pipeline.name_any(),
        run_id: &create.run_id,
        window: create.window,
        step,
        attempt: create.attempt,
        backfill: None,
        owner,
    })
}

fn record_metrics(ctx: &Context, namespace: &str, name: &str, plan: &Plan, jobs: &[crate::plan::runs::ObservedJob]) {
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
        for job in jobs.iter().filter(|j| j.run_id == finished.run_id) {
            let (result, end) = match &job.state {
                JobState::Succeeded { finished } => ("succeeded", *finished),
                JobState::Failed { finished, .. } => ("failed", *finished),
                JobState::Active => continue,
            };
            let secs = end.duration_since(job.created).as_secs_f64().max(0.0);
            m.step_duration.with_label_values(&[namespace, name, job.step.as_str(), result]).observe(secs);
        }
    }
}

/// The trigger datasets as observed in the cache.
fn upstream(ctx: &Context, namespace: &str, pipeline: &Pipeline) -> Vec<Upstream> {
    let Some(trigger) = &pipeline.spec.trigger else { return Vec::new() };
    trigger
        .datasets
        .iter()
        .filter_map(|name| {
            let dataset = ctx.datasets.get(&ObjectRef::new(name).within(namespace))?;
            let status = dataset.status.as_ref();
            let blocks = dataset.spec.contract.as_ref().is_some_and(|c| c.policy == DriftPolicy::Block);
            let violation = status
                .and_then(|s| conditions::find(&s.conditions, types::SCHEMA_CONFORMANT))
                .filter(|c| c.status == "False")
                .map(|c| c.message.clone());
            Some(Upstream {
                name: name.clone(),
                watermark: status.and_then(|s| s.watermark.as_ref()).map(|t| t.0),
                produced_window: status
                    .and_then(|s| s.produced_by.as_ref())
                    .and_then(|p| p.window.as_ref())
                    .map(|w| Window { start: w.start.0, end: w.end.0 }),
                blocking: violation.filter(|_| blocks),
            })
        })
        .collect()
}

/// Names of the Datasets a Pipeline refers to (inputs, outputs, trigger).
pub fn referenced_datasets(pipeline: &Pipeline) -> impl Iterator<Item = &str> {
    let steps = pipeline.spec.steps.iter().flat_map(|s| s.inputs.iter().chain(s.outputs.iter()));
    let trigger = pipeline.spec.trigger.iter().flat_map(|t| t.datasets.iter());
    steps.chain(trigger).map(String::as_str)
}
