//! The order of API calls in a Pipeline reconcile, against an in-memory API that records every
//! call (the mocked-API tier). What each test pins down is a rule of the module documentation.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::*;
use crate::act::{Created, JobApi, Written};
use crate::controller::job_cache;

/// One API call, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    WriteStatus { precondition: String },
    Create(String),
    Delete(String),
}

/// A single Pipeline on a pretend API server, plus a Job cache the test sets.
struct FakeApi {
    server: Mutex<Pipeline>,
    jobs: Mutex<BTreeMap<String, Job>>,
    /// What the operator's Job cache shows.
    cached_jobs: Vec<Job>,
    calls: Mutex<Vec<Call>>,
}

impl FakeApi {
    fn new(server: Pipeline, existing: Vec<Job>, cached_jobs: Vec<Job>) -> Self {
        let jobs = existing.into_iter().map(|j| (j.name_any(), j)).collect();
        Self { server: Mutex::new(server), jobs: Mutex::new(jobs), cached_jobs, calls: Mutex::default() }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn log(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

impl JobApi for FakeApi {
    async fn create_job(&self, job: &Job) -> Result<Created> {
        self.log(Call::Create(job.name_any()));
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(existing) = jobs.get(&job.name_any()) {
            return Ok(Created::Exists(Some(Box::new(existing.clone()))));
        }
        jobs.insert(job.name_any(), job.clone());
        Ok(Created::Created)
    }

    async fn delete_job(&self, _namespace: &str, name: &str) -> Result<()> {
        self.log(Call::Delete(name.to_string()));
        self.jobs.lock().unwrap().remove(name);
        Ok(())
    }
}

impl PipelineApi for FakeApi {
    async fn write_status(&self, pipeline: &Pipeline, status: &PipelineStatus) -> Result<Written> {
        let precondition = pipeline.resource_version().unwrap_or_default();
        self.log(Call::WriteStatus { precondition: precondition.clone() });
        let mut server = self.server.lock().unwrap();
        if server.resource_version() != Some(precondition.clone()) {
            return Ok(Written::Conflict);
        }
        if server.status.as_ref() != Some(status) {
            server.status = Some(status.clone());
            let next = precondition.parse::<u64>().unwrap_or(0) + 1;
            server.metadata.resource_version = Some(next.to_string());
        }
        Ok(Written::Applied)
    }

    fn observe(&self, pipeline: &Pipeline) -> Observed {
        let uid = pipeline.uid().unwrap_or_default();
        let own = |j: &&Job| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid);
        Observed {
            jobs: self.cached_jobs.iter().filter(own).filter_map(job_cache::observe).collect(),
            foreign: Vec::new(),
            free_job_slots: usize::MAX,
            ..Default::default()
        }
    }
}

const NOW: &str = "2026-11-24T11:00:00.5Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// An hourly pipeline with two root steps, created before the 11:00 tick, at `rv`.
fn pipeline(rv: &str, status: Option<PipelineStatus>, history: i32) -> Pipeline {
    let template = json!({"spec": {"containers": [{"name": "m", "image": "x"}]}});
    let mut p: Pipeline = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-p", "resourceVersion": rv, "generation": 1,
                     "creationTimestamp": "2026-11-24T10:20:00Z"},
        "spec": {"schedule": "0 * * * *", "history": {"successful": history},
                 "steps": [{"name": "extract", "kind": "Extract", "template": template},
                           {"name": "audit", "kind": "Transform", "template": template}]}
    }))
    .unwrap();
    p.status = status;
    p
}

/// The status after the 11:00 tick started run [10:00, 11:00).
fn started_status() -> PipelineStatus {
    let p = pipeline("1", None, 3);
    decide(&input(&p, &Observed { free_job_slots: usize::MAX, ..Default::default() }, now())).status
}

/// The Jobs of the first run as `p` would build them, Complete at 11:10.
fn finished_jobs(p: &Pipeline) -> Vec<Job> {
    let status = started_status();
    let run = &status.active_runs[0];
    ["extract", "audit"]
        .into_iter()
        .map(|step| {
            let create = JobToCreate {
                run_id: run.id.clone(),
                window: crate::schedule::Window { start: run.window.start.0, end: run.window.end.0 },
                step: step.into(),
                attempt: 0,
                demand: (),
            };
            let mut job = build_job(p, &create).unwrap();
            job.status = Some(
                serde_json::from_value(json!({"conditions": [{"type": "Complete", "status": "True",
                    "lastTransitionTime": "2026-11-24T11:10:00Z"}], "completionTime": "2026-11-24T11:10:00Z"}))
                .unwrap(),
            );
            job
        })
        .collect()
}

fn run_reconcile(api: &FakeApi, cached: &Pipeline, at: Timestamp) -> Outcome {
    futures::executor::block_on(reconcile(api, cached, at)).unwrap()
}

#[test]
fn a_new_run_is_recorded_before_its_jobs_are_created() {
    let p = pipeline("1", None, 3);
    let api = FakeApi::new(p.clone(), vec![], vec![]);
    let Outcome::Acted(acted) = run_reconcile(&api, &p, now()) else { panic!("not acted") };
    let calls = api.calls();
    assert_eq!(calls[0], Call::WriteStatus { precondition: "1".into() });
    assert!(matches!(&calls[1..], [Call::Create(_), Call::Create(_)]), "{calls:?}");
    assert_eq!(acted.created.len(), 2);
    assert_eq!(api.server.lock().unwrap().status.as_ref().unwrap().active_runs.len(), 1);
}

/// Defect 1 of issue 10 (the double launch): the history-0 run finished, was recorded and its
/// Jobs deleted; the cache still shows the Pipeline before that write, and no Jobs. On the code
/// before the act layer the reconcile created the run's Jobs again. Now the stale decision's
/// write fails and nothing is created; decided again on the newer Pipeline, nothing is due.
#[test]
fn a_decision_on_a_stale_pipeline_acts_on_nothing_and_is_redone_on_a_fresh_read() {
    let later: Timestamp = "2026-11-24T11:10:01Z".parse().unwrap();
    let cached = pipeline("2", Some(started_status()), 0);
    // The first reconcile after the Jobs finished: record, then delete.
    let api = FakeApi::new(cached.clone(), finished_jobs(&cached), finished_jobs(&cached));
    let Outcome::Acted(first) = run_reconcile(&api, &cached, later) else { panic!("not acted") };
    assert_eq!(first.plan.finished.len(), 1);
    let calls = api.calls();
    assert_eq!(calls[0], Call::WriteStatus { precondition: "2".into() });
    assert!(matches!(&calls[1..], [Call::Delete(_), Call::Delete(_)]), "record before delete: {calls:?}");

    // The next reconcile sees the stale Pipeline (rv 2, run active) and no Jobs.
    let server = api.server.lock().unwrap().clone();
    let api = FakeApi::new(server, vec![], vec![]);
    let outcome = run_reconcile(&api, &cached, later);
    assert_eq!(api.calls(), [Call::WriteStatus { precondition: "2".into() }], "{outcome:?}");
    assert!(matches!(outcome, Outcome::Conflict), "{outcome:?}");
    let fresh = api.server.lock().unwrap().clone();
    let Outcome::Acted(second) = run_reconcile(&api, &fresh, later) else { panic!("not acted") };
    assert!(second.created.is_empty() && second.plan.finished.is_empty(), "{:?}", second.plan);
}

/// Defect 2 of issue 10: a Job name held by a Backfill is a conflict, not a launch, and the
/// run's other Jobs are not created, so a window's Jobs never end up with two owners.
#[test]
fn a_name_held_by_another_owner_is_a_conflict_and_stops_that_runs_creations() {
    let p = pipeline("1", None, 3);
    let status = started_status();
    let run = &status.active_runs[0];
    let mut squatter = finished_jobs(&p).remove(0);
    squatter.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "name": "oct",
            "uid": "uid-b", "controller": true}))
        .unwrap(),
    ]);
    let api = FakeApi::new(p.clone(), vec![squatter], vec![]);
    let Outcome::Acted(acted) = run_reconcile(&api, &p, now()) else { panic!("not acted") };
    assert!(acted.created.is_empty(), "{:?}", acted.created);
    assert_eq!(acted.conflicts.len(), 1);
    assert_eq!(acted.conflicts[0].holder, "Backfill/oct");
    assert_eq!(acted.conflicts[0].run_id, run.id);
    let creates = api.calls().into_iter().filter(|c| matches!(c, Call::Create(_))).count();
    assert_eq!(creates, 1, "the second root step is not created");
}

/// Our own Job under the name (the cache had not shown it yet) is already launched.
#[test]
fn our_own_job_under_the_name_is_already_launched() {
    let p = pipeline("1", None, 3);
    let own = finished_jobs(&p).remove(0);
    let api = FakeApi::new(p.clone(), vec![own], vec![]);
    let Outcome::Acted(acted) = run_reconcile(&api, &p, now()) else { panic!("not acted") };
    assert!(acted.conflicts.is_empty());
    assert_eq!(acted.created.len(), 1, "only the missing Job is new");
}

/// Two replicas decide on one Pipeline version whose status already records the run: each
/// decision creates the run's Jobs and leaves the rest of the status as it was. The first
/// write raises `fencingToken`, so it changes the object and the second replica's write, on
/// the same `resourceVersion`, conflicts: it creates nothing. (An unchanged write would
/// succeed without a new version, and both replicas would act.)
#[test]
fn two_replicas_deciding_on_one_version_cannot_both_create() {
    let cached = pipeline("2", Some(started_status()), 3);
    let api = FakeApi::new(cached.clone(), vec![], vec![]);
    let Outcome::Acted(first) = run_reconcile(&api, &cached, now()) else { panic!("not acted") };
    assert_eq!(first.created.len(), 2, "{:?}", first.plan);
    assert!(!first.status_changed, "the decision itself leaves the status as it was");
    assert_eq!(api.server.lock().unwrap().status.as_ref().unwrap().fencing_token, 1);

    let calls_before = api.calls().len();
    let outcome = run_reconcile(&api, &cached, now());
    assert!(matches!(outcome, Outcome::Conflict), "{outcome:?}");
    assert_eq!(api.calls()[calls_before..], [Call::WriteStatus { precondition: "2".into() }]);
}
