//! The in-memory API server: one Pipeline and its Jobs, resourceVersions from one global
//! counter, status writes with a resourceVersion precondition, Job creates that answer
//! `AlreadyExists`, deletes (immediate, or through a terminating phase with a
//! deletionTimestamp), one watch stream per resource type, and the Job controller (a Job becomes
//! Complete or Failed with conditions and completionTime at a random time after it was created).
//!
//! Not modelled: pods, the garbage collector (nothing is deleted through owner references),
//! field managers and merge semantics (a status write replaces the whole status), spec
//! changes, deleting the Pipeline, admission rejections, Events.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sluice::act::{Created, Written};
use sluice::api::{Pipeline, PipelineStatus};
use sluice::jobs::{annotations, labels};

use crate::rng::Rng;

/// A change on a watch stream of Jobs.
#[derive(Clone, Debug)]
pub enum JobEvent {
    Applied(Job),
    Deleted(Job),
}

/// What happened on the server that an invariant looks at, in order.
#[derive(Clone, Debug)]
pub enum Fact {
    /// A Job was created (not an `AlreadyExists`).
    Created { name: String },
    /// A Job of the Pipeline was deleted; `recorded` says whether its run was recorded
    /// (recentRuns or skippedRuns) in the status at that moment.
    Deleted { name: String, run_id: String, recorded: bool, foreign: bool },
    /// A Job succeeded: its step and window.
    Succeeded { name: String, step: String, window: (String, String) },
    /// A status write changed the status.
    Status { before: Option<Box<PipelineStatus>>, after: Box<PipelineStatus> },
    /// A reconcile outcome reported these runs finished (metrics, Events).
    Reported { run_id: String },
}

/// When and how a created Job ends.
#[derive(Clone, Copy, Debug)]
pub struct JobFate {
    pub finish_at: Timestamp,
    pub fails: bool,
}

/// How the Job controller decides a new Job's fate, and how deletes behave.
#[derive(Clone, Debug)]
pub struct Rules {
    pub rng: Rng,
    pub min_run: SignedDuration,
    pub max_run: SignedDuration,
    pub fail_percent: u64,
    /// Share of deletes that leave the Job terminating for a while.
    pub linger_percent: u64,
}

#[derive(Debug)]
pub struct Server {
    pub now: Timestamp,
    pub rules: Rules,
    rv: u64,
    pub pipeline: Option<Pipeline>,
    pub jobs: BTreeMap<String, Job>,
    /// Every Pipeline version, in order (the Pipeline watch stream).
    pub pipeline_events: Vec<Pipeline>,
    pub job_events: Vec<JobEvent>,
    pub fates: BTreeMap<String, JobFate>,
    pub facts: Vec<Fact>,
}

impl Server {
    pub fn new(now: Timestamp, rules: Rules) -> Self {
        Self {
            now,
            rules,
            rv: 0,
            pipeline: None,
            jobs: BTreeMap::new(),
            pipeline_events: Vec::new(),
            job_events: Vec::new(),
            fates: BTreeMap::new(),
            facts: Vec::new(),
        }
    }

    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub fn create_pipeline(&mut self, mut pipeline: Pipeline) {
        pipeline.metadata.resource_version = Some(self.bump());
        self.pipeline_events.push(pipeline.clone());
        self.pipeline = Some(pipeline);
    }

    pub fn status(&self) -> Option<&PipelineStatus> {
        self.pipeline.as_ref().and_then(|p| p.status.as_ref())
    }

    /// A status write on the condition that the Pipeline is still at `read`'s resourceVersion.
    /// A write that changes nothing keeps the resourceVersion, like the real API server.
    pub fn write_status(&mut self, read: &Pipeline, status: &PipelineStatus) -> Written {
        let Some(current) = self.pipeline.as_ref() else { return Written::Gone };
        if current.metadata.resource_version != read.metadata.resource_version {
            return Written::Conflict;
        }
        let unchanged = current.status.as_ref() == Some(status)
            || (current.status.is_none() && *status == PipelineStatus::default());
        if unchanged {
            return Written::Applied;
        }
        let before = current.status.clone();
        let rv = self.bump();
        let p = self.pipeline.as_mut().unwrap();
        p.status = Some(status.clone());
        p.metadata.resource_version = Some(rv);
        self.pipeline_events.push(p.clone());
        self.facts.push(Fact::Status { before: before.map(Box::new), after: Box::new(status.clone()) });
        Written::Applied
    }

    /// Creates `job`, or answers `AlreadyExists` with the Job that holds the name.
    pub fn create_job(&mut self, job: &Job) -> Created {
        let name = job.name_any();
        if let Some(existing) = self.jobs.get(&name) {
            return Created::Exists(Some(Box::new(existing.clone())));
        }
        let r = &mut self.rules;
        let span = (r.max_run - r.min_run).as_millis().max(0) as u64;
        let run = r.min_run + SignedDuration::from_millis(r.rng.below(span + 1) as i64);
        let fate = JobFate { finish_at: self.now + run, fails: r.rng.chance(r.fail_percent) };
        let mut job = job.clone();
        job.metadata.resource_version = Some(self.bump());
        job.metadata.uid = Some(format!("job-uid-{}", self.rv));
        job.metadata.creation_timestamp = Some(Time(self.now));
        self.job_events.push(JobEvent::Applied(job.clone()));
        self.jobs.insert(name.clone(), job);
        self.fates.insert(name.clone(), fate);
        self.facts.push(Fact::Created { name });
        Created::Created
    }

    /// Deletes a Job: at once, or (sometimes) by setting its deletionTimestamp first.
    pub fn delete_job(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else { return };
        if job.metadata.deletion_timestamp.is_some() {
            return;
        }
        let run_id = job.labels().get(labels::RUN).cloned().unwrap_or_default();
        let recorded =
            self.status().is_some_and(|s| s.recent_runs.iter().chain(&s.skipped_runs).any(|r| r.id == run_id));
        let foreign = !job.owner_references().iter().any(|o| o.kind == "Pipeline");
        self.facts.push(Fact::Deleted { name: name.to_string(), run_id, recorded, foreign });
        if self.rules.rng.chance(self.rules.linger_percent) {
            let rv = self.bump();
            let job = self.jobs.get_mut(name).unwrap();
            job.metadata.deletion_timestamp = Some(Time(self.now));
            job.metadata.resource_version = Some(rv);
            self.job_events.push(JobEvent::Applied(job.clone()));
        } else {
            self.finalize(name);
        }
    }

    /// Removes a Job for good.
    pub fn finalize(&mut self, name: &str) {
        if let Some(job) = self.jobs.remove(name) {
            self.bump();
            self.job_events.push(JobEvent::Deleted(job));
        }
    }

    /// Jobs that are due to finish and still running, not being deleted.
    pub fn due_jobs(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.metadata.deletion_timestamp.is_none() && j.status.is_none())
            .filter(|(n, _)| self.fates.get(*n).is_some_and(|f| f.finish_at <= self.now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn terminating_jobs(&self) -> Vec<String> {
        self.jobs.iter().filter(|(_, j)| j.metadata.deletion_timestamp.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// The Job controller ends a Job as its fate says.
    pub fn finish_job(&mut self, name: &str) {
        let Some(fate) = self.fates.get(name).copied() else { return };
        let now = Time(self.now);
        let rv = self.bump();
        let Some(job) = self.jobs.get_mut(name) else { return };
        let condition = |type_: &str, reason: &str| JobCondition {
            type_: type_.to_string(),
            status: "True".to_string(),
            reason: Some(reason.to_string()),
            message: None,
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        };
        job.status = Some(if fate.fails {
            JobStatus {
                failed: Some(1),
                conditions: Some(vec![
                    condition("FailureTarget", "BackoffLimitExceeded"),
                    condition("Failed", "BackoffLimitExceeded"),
                ]),
                ..Default::default()
            }
        } else {
            JobStatus {
                succeeded: Some(1),
                completion_time: Some(now.clone()),
                conditions: Some(vec![
                    condition("SuccessCriteriaMet", "CompletionsReached"),
                    condition("Complete", "CompletionsReached"),
                ]),
                ..Default::default()
            }
        });
        job.metadata.resource_version = Some(rv);
        let job = job.clone();
        self.job_events.push(JobEvent::Applied(job.clone()));
        if !fate.fails {
            let annotation = |k: &str| job.annotations().get(k).cloned().unwrap_or_default();
            self.facts.push(Fact::Succeeded {
                name: name.to_string(),
                step: job.labels().get(labels::STEP).cloned().unwrap_or_default(),
                window: (annotation(annotations::WINDOW_START), annotation(annotations::WINDOW_END)),
            });
        }
    }

    pub fn advance(&mut self, by: SignedDuration) {
        self.now += by;
    }
}
