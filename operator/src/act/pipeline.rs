//! One Pipeline reconcile after the observation: decide, then act in the order that keeps every
//! window exactly once.
//!
//! 1. Decide on what was observed (the Pipeline as cached, its Jobs, the datasets it names).
//! 2. Write the decided status with the Pipeline's `resourceVersion` as precondition, whenever
//!    the decision changes the status or creates or deletes anything. A decision that creates
//!    Jobs but leaves the status as it was raises `status.fencingToken`: a write of an unchanged
//!    object succeeds without a new `resourceVersion`, so without it two replicas deciding on
//!    one version could both pass the precondition and both create. A decision made on a
//!    stale Pipeline (the cache has not shown the operator's own last write yet, or a second
//!    replica wrote meanwhile) fails here and acts on nothing; it is decided again once the
//!    cache shows the newer Pipeline (the watch event of that write wakes it; the controller
//!    also requeues soon). So a finished run is recorded before its Jobs can disappear, and a
//!    run started is recorded before its Jobs exist. No fresh read: the operator needs no `get`
//!    on Pipelines.
//! 3. Create the Jobs. `AlreadyExists` counts as launched only when the Job holding the name is
//!    controlled by this Pipeline and carries the same run, step and attempt; otherwise it is a
//!    name conflict: the run's other Jobs are not created in this reconcile (so a window's Jobs
//!    never end up split between two owners) and the next decision sees the other owner's Job.
//! 4. Delete the Jobs the written status allows to go (history, replaced runs).

use std::collections::BTreeMap;
use std::future::Future;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};

use super::claim::{Claim, claim, controlled_by};
use super::{JobApi, Written};
use crate::api::{Pipeline, PipelineStatus};
use crate::error::{Error, Result};
use crate::jobs::{self, StepJob, labels};
use crate::plan::pipeline::{CheckedKey, ForeignJob, Input, JobToCreate, Plan, Upstream, decide};
use crate::plan::runs::ObservedJob;

/// What the reconciler observed besides the Pipeline itself.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The Pipeline's own Jobs that are not being deleted.
    pub jobs: Vec<ObservedJob>,
    /// Jobs with the Pipeline's label that another object controls.
    pub foreign: Vec<ForeignJob>,
    /// The datasets of `trigger.datasets`.
    pub upstream: Vec<Upstream>,
    /// Why Datasets that steps read hold new runs (contract violated under policy `Block`).
    pub blocked_inputs: Vec<String>,
    /// Jobs that may still be created under the Job caps.
    pub free_job_slots: usize,
    /// Validation problems of the spec.
    pub problems: Vec<String>,
    /// The last run each existing output Dataset has checked (see `plan::pipeline::Input`).
    pub outputs_checked: BTreeMap<String, Option<CheckedKey>>,
    /// Steps whose ServiceAccount the namespace does not allow (also in `problems`).
    pub refused_steps: std::collections::BTreeSet<String>,
    /// What the Pipeline's finished Jobs reserved, and the operator's prices.
    pub cost: crate::cost::CostInputs,
}

/// Reading and writing Pipelines, and observing what a Pipeline's decision needs.
pub trait PipelineApi: JobApi {
    /// Writes `status` on the condition that the Pipeline is still at `pipeline`'s
    /// `resourceVersion`.
    fn write_status(
        &self,
        pipeline: &Pipeline,
        status: &PipelineStatus,
    ) -> impl Future<Output = Result<Written>> + Send;
    /// Observes the Jobs, datasets and slots that `pipeline`'s decision needs (from caches).
    fn observe(&self, pipeline: &Pipeline) -> Observed;
}

/// A name conflict met while creating a run's Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameConflict {
    pub run_id: String,
    pub job: String,
    /// Who holds the name, for example `Backfill/oct`.
    pub holder: String,
}

/// What a reconcile did: `Conflict` when the status changed since the cached Pipeline.
pub type Outcome = super::Outcome<Acted>;

/// A decision that was recorded and acted on.
#[derive(Debug)]
pub struct Acted {
    /// The Pipeline the decision was made on.
    pub pipeline: Pipeline,
    pub observed: Observed,
    pub plan: Plan,
    /// Whether the status write changed the status.
    pub status_changed: bool,
    /// Jobs created in this reconcile.
    pub created: Vec<JobToCreate>,
    pub conflicts: Vec<NameConflict>,
    /// Jobs the API server refused: the Job name and the message.
    pub rejected: Vec<(String, String)>,
}

/// Decides for `pipeline` (as cached) at `now` and acts, as described in the module
/// documentation.
pub async fn reconcile<A: PipelineApi>(api: &A, pipeline: &Pipeline, now: Timestamp) -> Result<Outcome> {
    if pipeline.meta().deletion_timestamp.is_some() {
        return Ok(Outcome::Gone);
    }
    let observed = api.observe(pipeline);
    let mut plan = decide(&input(pipeline, &observed, now));
    let unchanged = pipeline.status.as_ref() == Some(&plan.status)
        || (pipeline.status.is_none() && plan.status == PipelineStatus::default());
    let held = |c: &JobToCreate| {
        observed.foreign.iter().any(|f| f.run_id == c.run_id && f.step == c.step && f.attempt == c.attempt)
    };
    if unchanged && plan.create.iter().any(|c| !held(c)) {
        plan.status.fencing_token += 1;
    }
    if !unchanged || !plan.create.is_empty() || !plan.delete.is_empty() {
        match api.write_status(pipeline, &plan.status).await? {
            Written::Applied => {}
            Written::Conflict => return Ok(Outcome::Conflict),
            Written::Gone => return Ok(Outcome::Gone),
        }
    }
    let mut acted = Acted {
        pipeline: pipeline.clone(),
        observed,
        plan,
        status_changed: !unchanged,
        created: Vec::new(),
        conflicts: Vec::new(),
        rejected: Vec::new(),
    };
    create_jobs(api, &mut acted).await?;
    let namespace = pipeline.namespace().unwrap_or_default();
    for name in &acted.plan.delete {
        api.delete_job(&namespace, name).await?;
    }
    Ok(Outcome::Acted(Box::new(acted)))
}

/// The decision's input from the Pipeline and what was observed.
pub fn input<'a>(pipeline: &'a Pipeline, observed: &'a Observed, now: Timestamp) -> Input<'a> {
    static NO_STATUS: std::sync::LazyLock<PipelineStatus> = std::sync::LazyLock::new(PipelineStatus::default);
    Input {
        spec: &pipeline.spec,
        status: pipeline.status.as_ref().unwrap_or(&NO_STATUS),
        generation: pipeline.meta().generation,
        created: pipeline.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now),
        now,
        jobs: observed.jobs.clone(),
        foreign: observed.foreign.clone(),
        run_now: pipeline.annotations().get(RUN_NOW_ANNOTATION).map(String::as_str),
        free_job_slots: observed.free_job_slots,
        problems: observed.problems.clone(),
        refused_steps: observed.refused_steps.clone(),
        upstream: observed.upstream.clone(),
        blocked_inputs: observed.blocked_inputs.clone(),
        name: pipeline.metadata.name.as_deref().unwrap_or_default(),
        outputs_checked: observed.outputs_checked.clone(),
        cost: observed.cost.clone(),
    }
}

/// Annotation that starts one run of the latest complete window; change its value (for example
/// to the current time) to start another.
pub const RUN_NOW_ANNOTATION: &str = "sluice.dev/run-now";

async fn create_jobs<A: JobApi>(api: &A, acted: &mut Acted) -> Result<()> {
    let uid = acted.pipeline.uid().ok_or(Error::MissingObjectKey("uid"))?;
    for create in &acted.plan.create {
        if acted.conflicts.iter().any(|c| c.run_id == create.run_id) {
            continue;
        }
        let Some(job) = build_job(&acted.pipeline, create) else { continue };
        let name = job.name_any();
        match claim(api.create_job(&job).await?, &uid) {
            Claim::Launched => acted.created.push(create.clone()),
            Claim::Ours(existing) if same_run(&existing, &job) => {
                tracing::debug!(job = %name, "already launched");
            }
            Claim::Ours(existing) | Claim::Taken(Some(existing)) => acted.conflicts.push(NameConflict {
                run_id: create.run_id.clone(),
                job: name,
                holder: holder(&existing),
            }),
            Claim::Taken(None) => acted.conflicts.push(NameConflict {
                run_id: create.run_id.clone(),
                job: name,
                holder: "a Job being deleted".to_string(),
            }),
            Claim::Rejected(message) => acted.rejected.push((name, message)),
        }
    }
    Ok(())
}

/// The Job for one planned creation, `None` when the step is not in the spec.
pub fn build_job(pipeline: &Pipeline, create: &JobToCreate) -> Option<Job> {
    let step = pipeline.spec.steps.iter().find(|s| s.name == create.step)?;
    let mut owner = pipeline.controller_owner_ref(&()).unwrap_or_default();
    owner.uid = pipeline.uid().unwrap_or_default();
    let queue = crate::kueue::pipeline_queue(crate::kueue::Asked::pipeline(pipeline));
    Some(jobs::build(&StepJob {
        namespace: &pipeline.namespace().unwrap_or_default(),
        pipeline: &pipeline.name_any(),
        run_id: &create.run_id,
        window: create.window,
        step,
        attempt: create.attempt,
        backfill: None,
        owner,
        queue: queue.as_ref(),
    }))
}

/// Whether `existing` is the launch `wanted` stands for: controlled by the same owner, for the
/// same run, step and attempt.
pub fn same_launch(existing: &Job, wanted: &Job, owner_uid: &str) -> bool {
    controlled_by(existing, owner_uid) && same_run(existing, wanted)
}

/// Whether `existing` carries the pipeline, run, step and attempt labels of `wanted`.
fn same_run(existing: &Job, wanted: &Job) -> bool {
    let label = |j: &Job, key: &str| j.labels().get(key).cloned();
    [labels::PIPELINE, labels::RUN, labels::STEP, labels::ATTEMPT]
        .iter()
        .all(|key| label(existing, key) == label(wanted, key))
}

/// Who controls a Job, for messages: `Kind/name`, or `no controller`.
pub fn holder(job: &Job) -> String {
    job.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| format!("{}/{}", o.kind, o.name))
        .unwrap_or_else(|| "no controller".to_string())
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
