//! Dataset reconciler: observe (the dataset, the successful Jobs of the steps that output it and
//! their pods' termination messages, the pipelines naming it), decide
//! (`plan::dataset::decide`), act (one status write, Events).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::job_cache;
use super::ready;
use super::status::write_if_changed;
use crate::api::{Dataset, Pipeline};
use crate::error::{Error, Result};
use crate::jobs::labels;
use crate::plan::dataset::{Input, ProducedRun, decide};
use crate::plan::runs::JobState;
use crate::{report, validation};

/// Label the Job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

pub async fn reconcile(obj: Arc<Dataset>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |dataset: &Dataset, ctx: &Context| reconcile_dataset(dataset, ctx).await).await
}

async fn reconcile_dataset(dataset: &Dataset, ctx: &Context) -> Result<Action> {
    let namespace = dataset.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let name = dataset.name_any();

    // Observe.
    let pipelines: Vec<Arc<Pipeline>> =
        ctx.pipelines.state().into_iter().filter(|p| p.namespace().as_deref() == Some(namespace.as_str())).collect();
    let producing: BTreeSet<(String, String)> = pipelines
        .iter()
        .flat_map(|p| p.spec.steps.iter().filter(|s| s.outputs.contains(&name)).map(|s| (p.name_any(), s.name.clone())))
        .collect();
    let producers: BTreeSet<String> = producing.iter().map(|(p, _)| p.clone()).collect();
    let consumers: BTreeSet<String> = pipelines
        .iter()
        .filter(|p| {
            p.spec.steps.iter().any(|s| s.inputs.contains(&name))
                || p.spec.trigger.as_ref().is_some_and(|t| t.datasets.contains(&name))
        })
        .map(|p| p.name_any())
        .collect();
    let produced = produced_runs(&ctx.jobs, &ctx.pods, &namespace, &producing);
    let default_status = Default::default();
    let current = dataset.status.as_ref().unwrap_or(&default_status);
    let problems = validation::dataset(&dataset.spec);

    // Decide.
    let plan = decide(&Input {
        spec: &dataset.spec,
        status: current,
        generation: dataset.meta().generation,
        now: Timestamp::now(),
        produced,
        producers: producers.into_iter().collect(),
        consumers: consumers.into_iter().collect(),
        problems: problems.clone(),
    });

    // Act.
    let api: Api<Dataset> = Api::namespaced(ctx.client.clone(), &namespace);
    if write_if_changed(&api, dataset, dataset.status.as_ref(), &plan.status).await? {
        ctx.metrics.status_writes.with_label_values(&["dataset"]).inc();
    }
    ready::publish_events(ctx, dataset, &plan.events, &current.conditions, &problems).await;
    Ok(match plan.requeue_after {
        Some(d) => Action::requeue(Duration::from_millis(d.as_millis().max(1) as u64)),
        None => Action::await_change(),
    })
}

/// The successful Jobs of the given (pipeline, step) pairs, with their pods' reports.
fn produced_runs(
    jobs: &Store<Job>,
    pods: &Store<Pod>,
    namespace: &str,
    producing: &BTreeSet<(String, String)>,
) -> Vec<ProducedRun> {
    if producing.is_empty() {
        return Vec::new();
    }
    let pods = pods.state();
    jobs.state()
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace))
        .filter_map(|job| {
            let l = job.labels();
            let key = (l.get(labels::PIPELINE)?.clone(), l.get(labels::STEP)?.clone());
            if !producing.contains(&key) {
                return None;
            }
            let observed = job_cache::observe(job)?;
            let JobState::Succeeded { finished } = observed.state else { return None };
            let job_name = job.name_any();
            let report = pods
                .iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(namespace) && p.labels().get(JOB_NAME_LABEL) == Some(&job_name)
                })
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
                .map(|pod| report::parse(&termination_message(pod)));
            Some(ProducedRun {
                pipeline: key.0,
                run_id: observed.run_id,
                step: key.1,
                window: observed.window,
                finished,
                report,
            })
        })
        .collect()
}

/// The first non-empty termination message of a pod's containers.
pub fn termination_message(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .find(|m| !m.trim().is_empty())
        .unwrap_or_default()
}

/// The Datasets (in the Job's or pod's namespace) that the step behind these labels outputs.
pub fn datasets_of_step(
    pipelines: &Store<Pipeline>,
    namespace: Option<String>,
    l: &std::collections::BTreeMap<String, String>,
) -> Vec<ObjectRef<Dataset>> {
    let (Some(ns), Some(pipeline), Some(step)) = (namespace, l.get(labels::PIPELINE), l.get(labels::STEP)) else {
        return Vec::new();
    };
    let Some(p) = pipelines.get(&ObjectRef::new(pipeline).within(&ns)) else { return Vec::new() };
    p.spec
        .steps
        .iter()
        .filter(|s| &s.name == step)
        .flat_map(|s| s.outputs.iter())
        .map(|d| ObjectRef::new(d).within(&ns))
        .collect()
}
