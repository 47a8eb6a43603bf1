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
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::apply::write_if_changed;
use super::context::Context;
use super::every_reconcile;
use super::guard::{self, Guarded, Key, Valid, ValidStore};
use super::job_cache;
use crate::api::{Dataset, Pipeline};
use crate::error::{Error, Result};
use crate::jobs::{self, labels};
use crate::plan::dataset::{Input, ProducedRun, decide};
use crate::plan::runs::JobState;
use crate::{report, validation};

#[cfg(test)]
use super::pod_failure::JOB_NAME_LABEL;
use super::pod_failure::pod_of_job;

pub async fn reconcile(obj: Arc<Guarded<Dataset>>, ctx: Arc<Context>) -> Result<Action> {
    every_reconcile::measured(obj, ctx, async |dataset: &Dataset, ctx: &Context| reconcile_dataset(dataset, ctx).await)
        .await
}

async fn reconcile_dataset(dataset: &Dataset, ctx: &Context) -> Result<Action> {
    let namespace = dataset.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let name = dataset.name_any();

    // Observe.
    let pipelines: Vec<Valid<Pipeline>> =
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
    let mut plan = decide(&Input {
        spec: &dataset.spec,
        status: current,
        generation: dataset.meta().generation,
        now: Timestamp::now(),
        produced,
        producers: producers.into_iter().collect(),
        consumers: consumers.into_iter().collect(),
        problems: problems.clone(),
    });
    let kept = pipelines.iter().filter_map(|p| p.status.as_ref().map(|s| (&p.spec, s)));
    plan.status.cost = crate::cost::dataset_summary(&name, kept);

    if !plan.waiting_for_reports.is_empty() {
        tracing::debug!(dataset = %name, runs = ?plan.waiting_for_reports, "waiting for the reports of finished runs");
    }

    // Act.
    if write_if_changed(&ctx.client, dataset, dataset.status.as_ref(), &plan.status).await? {
        ctx.metrics.status_writes.with_label_values(&["dataset"]).inc();
    }
    every_reconcile::publish_events(ctx, dataset, &plan.events, &current.conditions, &problems).await;
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
    let pods: Vec<Arc<Pod>> =
        pods.state().into_iter().filter(|p| p.namespace().as_deref() == Some(namespace)).collect();
    jobs.state()
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace))
        .filter_map(|job| produced_run(job, &pods, producing))
        .collect()
}

/// The (pipeline, step) of `producing` that `job` ran, if any. The pipeline label holds
/// `jobs::label_value` of the name (hashed when longer than 63 characters), so it is compared
/// with that; a Job the Pipeline controls must also name it as its owner (a Backfill's Jobs are
/// owned by the Backfill and carry the same labels).
pub fn producing_step<'a>(job: &Job, producing: &'a BTreeSet<(String, String)>) -> Option<&'a (String, String)> {
    let l = job.labels();
    let (pipeline_label, step) = (l.get(labels::PIPELINE)?, l.get(labels::STEP)?);
    let owner = job.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == Pipeline::kind(&()));
    producing.iter().find(|(pipeline, s)| {
        s == step && jobs::label_value(pipeline) == *pipeline_label && owner.is_none_or(|o| &o.name == pipeline)
    })
}

/// `job` as a run of one of the `producing` steps, if it succeeded, with the report of its
/// succeeded pod among `pods` (the pods of the Job's namespace).
pub fn produced_run(job: &Job, pods: &[Arc<Pod>], producing: &BTreeSet<(String, String)>) -> Option<ProducedRun> {
    let (pipeline, step) = producing_step(job, producing)?;
    let observed = job_cache::observe(job)?;
    let JobState::Succeeded { finished } = observed.state else { return None };
    let report = pods
        .iter()
        .filter(|p| pod_of_job(p, job))
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(|pod| report::parse(&termination_message(pod)));
    Some(ProducedRun {
        pipeline: pipeline.clone(),
        run_id: observed.run_id,
        step: step.clone(),
        window: observed.window,
        finished,
        report,
    })
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
    pipelines: &ValidStore<Pipeline>,
    namespace: Option<String>,
    l: &std::collections::BTreeMap<String, String>,
) -> Vec<Key<Dataset>> {
    let (Some(ns), Some(pipeline), Some(step)) = (namespace, l.get(labels::PIPELINE), l.get(labels::STEP)) else {
        return Vec::new();
    };
    // The label is the name, or (longer than 63 characters) a hash of it: then look further.
    let p = pipelines.get(pipeline, &ns).or_else(|| {
        pipelines
            .find(|p| p.namespace().as_deref() == Some(ns.as_str()) && jobs::label_value(&p.name_any()) == *pipeline)
    });
    let Some(p) = p else { return Vec::new() };
    p.spec.steps.iter().filter(|s| &s.name == step).flat_map(|s| s.outputs.iter()).map(|d| guard::key(d, &ns)).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::jobs::StepJob;
    use crate::schedule::Window;

    const LONG: &str = "orders-ingest-from-the-eu-west-warehouse-into-the-curated-layer-nightly";

    fn pipeline(name: &str) -> Pipeline {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name, "namespace": "team-a", "uid": "p-uid"},
            "spec": {"schedule": "0 * * * *", "steps": [{"name": "extract", "kind": "Extract", "outputs": ["orders"],
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}]}
        }))
        .unwrap()
    }

    /// The Job `jobs::build` makes for run `20261124-1000-1h` of `pipeline`'s step, Complete.
    fn complete_job(pipeline: &Pipeline, uid: &str) -> Job {
        let name = pipeline.name_any();
        let mut job = jobs::build(&StepJob {
            namespace: "team-a",
            pipeline: &name,
            run_id: "20261124-1000-1h",
            window: Window {
                start: "2026-11-24T10:00:00Z".parse().unwrap(),
                end: "2026-11-24T11:00:00Z".parse().unwrap(),
            },
            step: &pipeline.spec.steps[0],
            attempt: 0,
            backfill: None,
            queue: None,
            owner: OwnerReference {
                api_version: "sluice.dev/v1alpha1".into(),
                kind: "Pipeline".into(),
                name: name.clone(),
                uid: "p-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        });
        job.metadata.uid = Some(uid.into());
        job.status = Some(
            serde_json::from_value(serde_json::json!({
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-24T11:00:05Z"}],
                "completionTime": "2026-11-24T11:00:05Z"
            }))
            .unwrap(),
        );
        job
    }

    /// A succeeded pod of `job` (as the Job controller labels and owns it) whose container
    /// terminated with `message`.
    fn pod_of(job: &Job, job_uid: &str, message: &str) -> Arc<Pod> {
        let mut labels = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
        labels.insert(JOB_NAME_LABEL.into(), job.name_any());
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("{}-x1", job.name_any()), "namespace": "team-a", "labels": labels,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
                        "uid": job_uid, "controller": true}]},
                "status": {"phase": "Succeeded", "containerStatuses": [{"name": "main", "image": "busybox",
                    "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": message}}}]}
            }))
            .unwrap(),
        )
    }

    fn producing(pipeline: &str) -> BTreeSet<(String, String)> {
        BTreeSet::from([(pipeline.to_string(), "extract".to_string())])
    }

    #[test]
    fn a_pipeline_with_a_name_longer_than_a_label_value_produces_its_dataset() {
        let p = pipeline(LONG);
        let job = complete_job(&p, "j-uid");
        assert_ne!(job.labels()[labels::PIPELINE], LONG, "the label is hashed");
        let pods = vec![pod_of(&job, "j-uid", r#"{"rowsWritten": 3}"#)];
        let run = produced_run(&job, &pods, &producing(LONG)).expect("the Job is a run of the producing step");
        assert_eq!(run.pipeline, LONG);
        assert_eq!(run.step, "extract");
        assert_eq!(run.finished, "2026-11-24T11:00:05Z".parse::<Timestamp>().unwrap());
        assert_eq!(run.report, Some(Ok(Some(report::Report { rows_written: Some(3), ..Default::default() }))));
        // A Job of another pipeline is not one.
        assert_eq!(produced_run(&job, &pods, &producing("orders-ingest")), None);
    }

    #[test]
    fn the_jobs_and_pods_of_a_long_named_pipeline_wake_its_datasets() {
        let p = pipeline(LONG);
        let (store, mut writer) = reflector::store::<Guarded<Pipeline>>();
        writer.apply_watcher_event(&watcher::Event::Apply(kube::core::DeserializeGuard(Ok(p.clone()))));
        let store = ValidStore::new(store);
        let job = complete_job(&p, "j-uid");
        let pod = pod_of(&job, "j-uid", "");
        for l in [job.labels(), pod.labels()] {
            assert_eq!(datasets_of_step(&store, Some("team-a".into()), l), [guard::key("orders", "team-a")]);
        }
        assert!(datasets_of_step(&store, Some("team-b".into()), job.labels()).is_empty());
    }

    #[test]
    fn the_pod_of_an_earlier_job_with_the_same_name_gives_no_report() {
        let p = pipeline("orders-ingest");
        let job = complete_job(&p, "j-uid-2");
        let earlier = pod_of(&job, "j-uid-1", r#"{"rowsWritten": 3}"#);
        let run = produced_run(&job, &[earlier], &producing("orders-ingest")).unwrap();
        assert_eq!(run.report, None, "the report is not read yet");
    }
}
