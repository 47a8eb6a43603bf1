//! The in-memory API server: one Pipeline, its Backfills, one ResourceQuota and the Jobs,
//! resourceVersions from one global counter, status writes with a resourceVersion
//! precondition, Job creates that answer `AlreadyExists`, deletes (immediate, or through a
//! terminating phase with a deletionTimestamp), one watch stream per resource type, the Job
//! controller (a Job's pod starts some time after the Job was created, `status.active` 1, and the
//! Job becomes Complete or Failed with conditions and completionTime at a random time after
//! that), and the quota controller (`status.used` recomputed, when it runs, from the pods that
//! have started and not finished: it lags both ways).
//!
//! Not modelled: the garbage collector (nothing is deleted through owner references), quota
//! admission of pods (a pod above `hard` starts anyway; the invariants check what Sluice
//! commits), field managers and merge semantics (a status write replaces the whole status),
//! spec changes, deleting the Pipeline or a Backfill, admission rejections, Events.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sluice::act::backfill::StatusWrite;
use sluice::act::{Created, Written};
use sluice::api::{Backfill, BackfillStatus, Pipeline, PipelineStatus};
use sluice::jobs::{annotations, labels};
use sluice::plan::backfill::ranges::RangeSet;
use sluice::schedule::Window;

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
    /// A Job was created (not an `AlreadyExists`): its controller's UID and window, the other
    /// owners' unfinished Jobs of the same window and the other owners whose status records the
    /// window succeeded, at that moment.
    Created {
        name: String,
        owner: String,
        window: (String, String),
        busy_elsewhere: Vec<String>,
        /// For a late pass's Job: the same owner's unfinished Jobs of the window under another
        /// run id (not being deleted).
        busy_beside: Vec<String>,
        succeeded_elsewhere: Vec<String>,
        /// Whether the Pipeline's status records a run of the Job's run id.
        pipeline_records_run: bool,
    },
    /// A Job was deleted; `recorded` says whether its run was recorded (for a Pipeline Job:
    /// recentRuns or skippedRuns; for a Backfill Job: its window in `processedRanges`) in its
    /// owner's status at that moment.
    Deleted { name: String, run_id: String, recorded: bool, owner: String },
    /// A Job succeeded: its step, window, late pass (`sluice.dev/late-pass`, empty for a
    /// window's own run) and controller's UID.
    Succeeded { name: String, step: String, window: (String, String), pass: String, owner: String },
    /// A status write changed a Backfill's status.
    BackfillStatus { name: String, before: Option<Box<BackfillStatus>>, after: Box<BackfillStatus> },
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
    pub backfills: BTreeMap<String, Backfill>,
    /// Every Backfill version, in order (the Backfill watch stream).
    pub backfill_events: Vec<Backfill>,
    pub quota: ResourceQuota,
}

/// The UID of a Job's controller.
pub fn owner_uid(job: &Job) -> String {
    job.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone()).unwrap_or_default()
}

/// A Job's window, from its annotations.
pub fn window_of(job: &Job) -> (String, String) {
    let annotation = |k: &str| job.annotations().get(k).cloned().unwrap_or_default();
    (annotation(annotations::WINDOW_START), annotation(annotations::WINDOW_END))
}

/// Whether a Job has finished (Complete or Failed).
pub fn finished(job: &Job) -> bool {
    job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| !c.is_empty())
}

/// The CPU its pod requests, in milli-CPU.
pub fn job_milli(job: &Job) -> i64 {
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    sluice::quota::pod_demand(&pod, &Default::default()).amount("requests.cpu") as i64
}

fn cpu(milli: i64) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("requests.cpu".to_string(), Quantity(format!("{milli}m")))])
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
            backfills: BTreeMap::new(),
            backfill_events: Vec::new(),
            quota: ResourceQuota::default(),
        }
    }

    /// Creates the ResourceQuota `name` with `hard` milli-CPU, nothing used.
    pub fn create_quota(&mut self, namespace: &str, name: &str, hard: i64) {
        let mut q = ResourceQuota::default();
        q.metadata.name = Some(name.into());
        q.metadata.namespace = Some(namespace.into());
        q.metadata.resource_version = Some(self.bump());
        q.spec = Some(ResourceQuotaSpec { hard: Some(cpu(hard)), ..Default::default() });
        q.status = Some(ResourceQuotaStatus { hard: Some(cpu(hard)), used: Some(cpu(0)) });
        self.quota = q;
    }

    pub fn hard_milli(&self) -> i64 {
        sluice::quota::quota_state(&self.quota).hard.get("requests.cpu").copied().unwrap_or(0) as i64
    }

    /// The quota controller: `used` from the pods that run now.
    pub fn sync_quota(&mut self) -> i64 {
        let used: i64 = self
            .jobs
            .values()
            .filter(|j| j.status.as_ref().and_then(|s| s.active) == Some(1) && !finished(j))
            .map(job_milli)
            .sum();
        let rv = self.bump();
        self.quota.metadata.resource_version = Some(rv);
        self.quota.status.as_mut().unwrap().used = Some(cpu(used));
        used
    }

    pub fn create_backfill(&mut self, mut backfill: Backfill) {
        backfill.metadata.resource_version = Some(self.bump());
        self.backfill_events.push(backfill.clone());
        self.backfills.insert(backfill.name_any(), backfill);
    }

    /// A Backfill status write on the condition that it is still at `read`'s resourceVersion.
    /// An unchanged write keeps the resourceVersion.
    pub fn write_backfill_status(&mut self, read: &Backfill, status: &BackfillStatus) -> StatusWrite {
        let name = read.name_any();
        let Some(current) = self.backfills.get(&name) else { return StatusWrite::Conflict };
        if current.metadata.resource_version != read.metadata.resource_version {
            return StatusWrite::Conflict;
        }
        if current.status.as_ref() == Some(status) {
            return StatusWrite::Applied(Box::new(current.clone()));
        }
        let before = current.status.clone();
        let rv = self.bump();
        let b = self.backfills.get_mut(&name).unwrap();
        b.status = Some(status.clone());
        b.metadata.resource_version = Some(rv);
        let b = b.clone();
        self.backfill_events.push(b.clone());
        self.facts.push(Fact::BackfillStatus { name, before: before.map(Box::new), after: Box::new(status.clone()) });
        StatusWrite::Applied(Box::new(b))
    }

    /// The unfinished Jobs of other owners than `owner` for `window`.
    fn busy_elsewhere(&self, owner: &str, window: &(String, String)) -> Vec<String> {
        self.jobs
            .values()
            .filter(|j| !finished(j) && owner_uid(j) != owner && window_of(j) == *window)
            .map(|j| j.name_any())
            .collect()
    }

    /// The owners other than `owner` whose current status records `window` succeeded (by the
    /// window's own run: a late pass re-ran only some of its steps).
    fn succeeded_elsewhere(&self, owner: &str, window: &(String, String)) -> Vec<String> {
        let (Ok(start), Ok(end)) = (window.0.parse::<Timestamp>(), window.1.parse::<Timestamp>()) else {
            return Vec::new();
        };
        let w = Window { start, end };
        let mut out = Vec::new();
        let pipeline_uid = self.pipeline.as_ref().and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
        let by_pipeline = self.status().is_some_and(|s| {
            s.recent_runs.iter().any(|r| {
                r.phase == sluice::api::RunPhase::Succeeded
                    && r.late_pass.is_none()
                    && r.window.start.0 == start
                    && r.window.end.0 == end
            })
        });
        if by_pipeline && pipeline_uid != owner {
            out.push("Pipeline/orders".to_string());
        }
        for b in self.backfills.values().filter(|b| b.metadata.uid.as_deref() != Some(owner)) {
            let succeeded = b.status.as_ref().map(|s| RangeSet::from_status(&s.succeeded_ranges)).unwrap_or_default();
            if succeeded.contains(&w) {
                out.push(format!("Backfill/{}", b.name_any()));
            }
        }
        out
    }

    /// Whether the run of a Job being deleted is recorded in its owner's status.
    fn recorded(&self, job: &Job) -> bool {
        let owner = owner_uid(job);
        let run_id = job.labels().get(labels::RUN).cloned().unwrap_or_default();
        if let Some(b) = self.backfills.values().find(|b| b.metadata.uid.as_deref() == Some(owner.as_str())) {
            let (start, end) = window_of(job);
            let (Ok(start), Ok(end)) = (start.parse(), end.parse()) else { return false };
            let processed = b.status.as_ref().map(|s| RangeSet::from_status(&s.processed_ranges)).unwrap_or_default();
            return processed.contains(&Window { start, end });
        }
        self.status().is_some_and(|s| s.recent_runs.iter().chain(&s.skipped_runs).any(|r| r.id == run_id))
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
        let (owner, window) = (owner_uid(&job), window_of(&job));
        let busy_elsewhere = self.busy_elsewhere(&owner, &window);
        let run_of = |j: &Job| j.labels().get(labels::RUN).cloned().unwrap_or_default();
        let busy_beside: Vec<String> = if job.labels().contains_key(labels::LATE_PASS) {
            let own_run = run_of(&job);
            self.jobs
                .values()
                .filter(|j| !finished(j) && j.metadata.deletion_timestamp.is_none())
                .filter(|j| owner_uid(j) == owner && window_of(j) == window && run_of(j) != own_run)
                .map(|j| j.name_any())
                .collect()
        } else {
            Vec::new()
        };
        let succeeded_elsewhere = self.succeeded_elsewhere(&owner, &window);
        let run_id = job.labels().get(labels::RUN).cloned().unwrap_or_default();
        let pipeline_records_run = self
            .status()
            .is_some_and(|s| s.active_runs.iter().chain(&s.recent_runs).chain(&s.skipped_runs).any(|r| r.id == run_id));
        self.job_events.push(JobEvent::Applied(job.clone()));
        self.jobs.insert(name.clone(), job);
        self.fates.insert(name.clone(), fate);
        self.facts.push(Fact::Created {
            name,
            owner,
            window,
            busy_elsewhere,
            busy_beside,
            succeeded_elsewhere,
            pipeline_records_run,
        });
        Created::Created
    }

    /// Deletes a Job: at once, or (sometimes) by setting its deletionTimestamp first.
    pub fn delete_job(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else { return };
        if job.metadata.deletion_timestamp.is_some() {
            return;
        }
        let run_id = job.labels().get(labels::RUN).cloned().unwrap_or_default();
        let recorded = self.recorded(job);
        let owner = owner_uid(job);
        self.facts.push(Fact::Deleted { name: name.to_string(), run_id, recorded, owner });
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

    /// Jobs whose pod runs and is due to finish, not being deleted.
    pub fn due_jobs(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.metadata.deletion_timestamp.is_none() && !finished(j))
            .filter(|(_, j)| j.status.as_ref().and_then(|s| s.active) == Some(1))
            .filter(|(n, _)| self.fates.get(*n).is_some_and(|f| f.finish_at <= self.now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Jobs whose pod has not started yet, not being deleted.
    pub fn podless_jobs(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.metadata.deletion_timestamp.is_none() && j.status.is_none())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The Job controller starts a Job's pod.
    pub fn start_pod(&mut self, name: &str) {
        let rv = self.bump();
        let Some(job) = self.jobs.get_mut(name) else { return };
        job.status = Some(JobStatus { active: Some(1), ..Default::default() });
        job.metadata.resource_version = Some(rv);
        self.job_events.push(JobEvent::Applied(job.clone()));
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
            self.facts.push(Fact::Succeeded {
                name: name.to_string(),
                step: job.labels().get(labels::STEP).cloned().unwrap_or_default(),
                window: window_of(&job),
                pass: job.labels().get(labels::LATE_PASS).cloned().unwrap_or_default(),
                owner: owner_uid(&job),
            });
        }
    }

    pub fn advance(&mut self, by: SignedDuration) {
        self.now += by;
    }
}
