//! An operator replica: its watch caches (the Pipeline and its Jobs, each a number of events
//! behind the API server's stream; the Job cache is a real `kube` reflector store) and the act
//! layer's traits over the model, so `sluice::act::pipeline::reconcile` runs unchanged.
//!
//! Every API call first yields once (returns `Pending`), so the driver can interleave the other
//! replica, cache deliveries, the Job controller, the clock and restarts between any two calls.
//! A call can also land and then "lose its answer" (the replica dies before reading it): it
//! returns an error and the driver restarts the replica.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use sluice::act::pipeline::{Observed, PipelineApi};
use sluice::act::{Created, JobApi, Written};
use sluice::api::{Backfill, Pipeline, PipelineStatus};
use sluice::controller::job_cache;
use sluice::error::{Error, Result};
use sluice::jobs::labels;
use sluice::plan::pipeline::ForeignJob;

use crate::model::{JobEvent, Server};
use crate::trace::Trace;

/// One replica's caches.
pub struct Replica {
    pub pipeline: Option<Pipeline>,
    pipeline_seen: usize,
    store: Store<Job>,
    writer: Writer<Job>,
    jobs_seen: usize,
}

impl Replica {
    /// Caches from a fresh list: exactly what the server has now.
    pub fn listed(server: &Server) -> Self {
        let (store, mut writer) = reflector::store::<Job>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for job in server.jobs.values() {
            writer.apply_watcher_event(&watcher::Event::InitApply(job.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            pipeline: server.pipeline.clone(),
            pipeline_seen: server.pipeline_events.len(),
            store,
            writer,
            jobs_seen: server.job_events.len(),
        }
    }

    /// How many events each cache is behind: (Pipeline, Jobs).
    pub fn lag(&self, server: &Server) -> (usize, usize) {
        (server.pipeline_events.len() - self.pipeline_seen, server.job_events.len() - self.jobs_seen)
    }

    /// Applies up to `n` more Pipeline events; returns how many.
    pub fn deliver_pipeline(&mut self, server: &Server, n: usize) -> usize {
        let end = self.pipeline_seen.saturating_add(n).min(server.pipeline_events.len());
        let delivered = end - self.pipeline_seen;
        if delivered > 0 {
            self.pipeline = Some(server.pipeline_events[end - 1].clone());
        }
        self.pipeline_seen = end;
        delivered
    }

    /// Applies up to `n` more Job events; returns how many.
    pub fn deliver_jobs(&mut self, server: &Server, n: usize) -> usize {
        let end = self.jobs_seen.saturating_add(n).min(server.job_events.len());
        for event in &server.job_events[self.jobs_seen..end] {
            self.writer.apply_watcher_event(&match event {
                JobEvent::Applied(job) => watcher::Event::Apply(job.clone()),
                JobEvent::Deleted(job) => watcher::Event::Delete(job.clone()),
            });
        }
        let delivered = end - self.jobs_seen;
        self.jobs_seen = end;
        delivered
    }

    pub fn sync(&mut self, server: &Server) {
        self.deliver_pipeline(server, usize::MAX);
        self.deliver_jobs(server, usize::MAX);
    }

    /// Jobs with the Pipeline's label that another object controls, including ones being
    /// deleted: the same selection as the Pipeline controller's.
    fn foreign(&self, namespace: &str, pipeline: &Pipeline, uid: &str) -> Vec<ForeignJob> {
        let label = sluice::jobs::label_value(&pipeline.name_any());
        self.store
            .state()
            .iter()
            .filter(|j| j.namespace().as_deref() == Some(namespace) && j.labels().get(labels::PIPELINE) == Some(&label))
            .filter(|j| !j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
            .filter_map(|j| {
                let observed = job_cache::observe(j)?;
                let controller = j.owner_references().iter().find(|o| o.controller == Some(true));
                Some(ForeignJob {
                    name: observed.name,
                    run_id: observed.run_id,
                    step: observed.step,
                    attempt: observed.attempt,
                    holder: sluice::act::pipeline::holder(j),
                    backfill: controller
                        .is_some_and(|o| o.kind == Backfill::kind(&()) && o.api_version == Backfill::api_version(&())),
                })
            })
            .collect()
    }
}

/// Returns `Pending` once, then `Ready`: a point where the driver may do anything else.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The act layer's API for one reconcile of one replica.
pub struct SimApi<'a> {
    pub id: usize,
    pub server: &'a Mutex<Server>,
    pub replica: &'a Mutex<Replica>,
    pub trace: &'a Mutex<Trace>,
    calls: AtomicUsize,
    /// The call (1-based) whose answer is lost.
    lose_answer_at: Option<usize>,
}

impl<'a> SimApi<'a> {
    pub fn new(
        id: usize,
        server: &'a Mutex<Server>,
        replica: &'a Mutex<Replica>,
        trace: &'a Mutex<Trace>,
        lose_answer_at: Option<usize>,
    ) -> Self {
        Self { id, server, replica, trace, calls: AtomicUsize::new(0), lose_answer_at }
    }

    /// One API call: yield, act on the server, trace, maybe lose the answer.
    async fn call<T>(&self, what: String, act: impl FnOnce(&mut Server) -> (T, String) + Send) -> Result<T> {
        YieldOnce(false).await;
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let (out, said) = act(&mut self.server.lock().unwrap());
        let mut trace = self.trace.lock().unwrap();
        trace.push(format!("r{} {what} -> {said}", self.id));
        if self.lose_answer_at == Some(n) {
            trace.push(format!("r{} FAULT restart: the answer of call {n} is lost", self.id));
            return Err(Error::MissingObjectKey("simulated restart"));
        }
        Ok(out)
    }
}

fn rv(p: &Pipeline) -> String {
    p.metadata.resource_version.clone().unwrap_or_default()
}

impl JobApi for SimApi<'_> {
    async fn create_job(&self, job: &Job) -> Result<Created> {
        self.call(format!("create Job {}", job.name_any()), |s| {
            let created = s.create_job(job);
            let said = match &created {
                Created::Created => "Created".to_string(),
                Created::Exists(j) => {
                    format!("AlreadyExists ({})", j.as_deref().map(sluice::act::pipeline::holder).unwrap_or_default())
                }
                Created::Rejected(m) => format!("Rejected {m}"),
            };
            (created, said)
        })
        .await
    }

    async fn delete_job(&self, _namespace: &str, name: &str) -> Result<()> {
        self.call(format!("delete Job {name}"), |s| {
            s.delete_job(name);
            ((), "ok".to_string())
        })
        .await
    }
}

impl PipelineApi for SimApi<'_> {
    async fn write_status(&self, pipeline: &Pipeline, status: &PipelineStatus) -> Result<Written> {
        let what = format!("write status at rv {} ({})", rv(pipeline), crate::world::summary(status));
        self.call(what, |s| {
            let written = s.write_status(pipeline, status);
            let now = s.pipeline.as_ref().map(rv).unwrap_or_default();
            (written, format!("{written:?} (rv {now})"))
        })
        .await
    }

    fn observe(&self, pipeline: &Pipeline) -> Observed {
        let replica = self.replica.lock().unwrap();
        let uid = pipeline.uid().unwrap_or_default();
        let namespace = pipeline.namespace().unwrap_or_default();
        let observed = Observed {
            jobs: job_cache::owned_by(&replica.store, &namespace, &uid),
            foreign: replica.foreign(&namespace, pipeline, &uid),
            upstream: Vec::new(),
            blocked_inputs: Vec::new(),
            refused_steps: Default::default(),
            free_job_slots: usize::MAX,
            problems: sluice::validation::pipeline(&pipeline.spec, &NothingExists),
            outputs_checked: Default::default(),
        };
        let server = self.server.lock().unwrap();
        let (lp, lj) = replica.lag(&server);
        let jobs: Vec<String> =
            observed.jobs.iter().map(|j| format!("{}:{}", j.name, crate::world::state(&j.state))).collect();
        let foreign: Vec<&str> = observed.foreign.iter().map(|f| f.name.as_str()).collect();
        self.trace.lock().unwrap().push(format!(
            "r{} observe rv {} (cache lag: {lp} pipeline, {lj} job events): jobs {jobs:?} foreign {foreign:?}",
            self.id,
            rv(pipeline)
        ));
        observed
    }
}

/// The spec names no Datasets or quotas, so nothing needs to exist.
struct NothingExists;

impl sluice::validation::Lookup for NothingExists {
    fn dataset_exists(&self, _: &str) -> bool {
        false
    }
    fn resource_quota_exists(&self, _: &str) -> bool {
        false
    }
}
