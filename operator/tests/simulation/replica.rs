//! An operator replica: its watch caches (the Pipeline, the Backfills and the Jobs, each a
//! number of events behind the API server's stream; the Job cache is a real `kube` reflector
//! store), its ledger of created Backfill Jobs (lost on a restart), and the act layer's traits
//! over the model, so `sluice::act::pipeline::reconcile` and `sluice::act::backfill::reconcile`
//! run unchanged.
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

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use sluice::act::backfill::{self as bf, BackfillApi, JobsOf, StatusWrite};
use sluice::act::pipeline::{Observed, PipelineApi};
use sluice::act::{Created, JobApi, Written};
use sluice::api::{Backfill, BackfillStatus, Pipeline, PipelineStatus};
use sluice::controller::job_cache;
use sluice::error::{Error, Result};
use sluice::plan::pipeline::ForeignJob;
use sluice::quota::{ContainerDefaults, InFlight, Launch};

use crate::model::{JobEvent, Server};
use crate::trace::Trace;

/// One replica's caches.
pub struct Replica {
    pub pipeline: Option<Pipeline>,
    pipeline_seen: usize,
    store: Store<Job>,
    writer: Writer<Job>,
    jobs_seen: usize,
    pub backfills: BTreeMap<String, Backfill>,
    backfills_seen: usize,
    /// Backfill Jobs this process created that the cache does not show yet.
    ledger: InFlight,
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
            backfills: server.backfills.clone(),
            backfills_seen: server.backfill_events.len(),
            ledger: InFlight::default(),
        }
    }

    /// How many events each cache is behind: (Pipeline, Jobs, Backfills).
    pub fn lag(&self, server: &Server) -> (usize, usize, usize) {
        (
            server.pipeline_events.len() - self.pipeline_seen,
            server.job_events.len() - self.jobs_seen,
            server.backfill_events.len() - self.backfills_seen,
        )
    }

    /// Applies up to `n` more Backfill events; returns how many.
    pub fn deliver_backfills(&mut self, server: &Server, n: usize) -> usize {
        let end = self.backfills_seen.saturating_add(n).min(server.backfill_events.len());
        for b in &server.backfill_events[self.backfills_seen..end] {
            self.backfills.insert(b.name_any(), b.clone());
        }
        let delivered = end - self.backfills_seen;
        self.backfills_seen = end;
        delivered
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
        self.deliver_backfills(server, usize::MAX);
    }

    /// Jobs with the Pipeline's label that another object controls, including ones being
    /// deleted: the same selection as the Pipeline controller's.
    fn foreign(&self, namespace: &str, pipeline: &Pipeline, uid: &str) -> Vec<ForeignJob> {
        job_cache::foreign_to(&self.store, namespace, pipeline, uid)
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
            cost: Default::default(),
        };
        let server = self.server.lock().unwrap();
        let (lp, lj, _) = replica.lag(&server);
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

impl BackfillApi for SimApi<'_> {
    async fn get_backfill(&self, _namespace: &str, name: &str) -> Result<Option<Backfill>> {
        self.call(format!("get Backfill {name}"), |s| {
            let b = s.backfills.get(name).cloned();
            let said = b.as_ref().map(|b| {
                format!("rv {} ({})", b.resource_version().unwrap_or_default(), bf_summary(b.status.as_ref()))
            });
            (b, said.unwrap_or_else(|| "NotFound".into()))
        })
        .await
    }

    async fn get_job(&self, _namespace: &str, name: &str) -> Result<Option<Job>> {
        self.call(format!("get Job {name}"), |s| {
            let j = s.jobs.get(name).cloned();
            let said = if j.is_some() { "found" } else { "NotFound" };
            (j, said.to_string())
        })
        .await
    }

    async fn get_quota(&self, _namespace: &str, name: &str) -> Result<Option<ResourceQuota>> {
        self.call(format!("get ResourceQuota {name}"), |s| {
            let used = sluice::quota::quota_state(&s.quota).used.get("requests.cpu").copied().unwrap_or(0);
            (Some(s.quota.clone()), format!("used {used}m of {}m", s.hard_milli()))
        })
        .await
    }

    async fn write_status(&self, backfill: &Backfill, status: &BackfillStatus) -> Result<StatusWrite> {
        let what = format!(
            "write {} status at rv {} ({})",
            backfill.name_any(),
            backfill.resource_version().unwrap_or_default(),
            bf_summary(Some(status))
        );
        self.call(what, |s| {
            let written = s.write_backfill_status(backfill, status);
            let said = match &written {
                StatusWrite::Applied(b) => format!("Applied (rv {})", b.resource_version().unwrap_or_default()),
                StatusWrite::Conflict => "Conflict".to_string(),
            };
            (written, said)
        })
        .await
    }

    /// One reconcile of Backfills at a time per replica: the lock has nothing to order.
    async fn lock_launch(&self) {}

    fn unlock_launch(&self) {}

    fn now(&self) -> Timestamp {
        self.server.lock().unwrap().now
    }

    fn observe(&self, backfill: &Backfill, uid: &str, now: Timestamp) -> bf::Observed {
        let mut replica = self.replica.lock().unwrap();
        let pipeline =
            replica.pipeline.clone().filter(|p| p.name_any() == backfill.spec.pipeline_ref.name).map(Arc::new);
        let problems = sluice::validation::backfill(&backfill.spec, pipeline.as_ref().map(|p| &p.spec), &QuotaExists);
        let defaults = ContainerDefaults::default();
        let namespace = backfill.namespace().unwrap_or_default();
        // The store's order is a hash map's: sorted, a run is the same on every process.
        let mut snapshot = replica.store.state();
        snapshot.sort_by_key(|j| j.name_any());
        let of = JobsOf {
            namespace: &namespace,
            uid,
            pipeline: pipeline.as_deref(),
            defaults: &defaults,
            queued: false,
            finished_pods: &Default::default(),
        };
        let jobs = bf::merge_jobs(&snapshot, &mut replica.ledger, &of, now);
        let all: Vec<Arc<Backfill>> = replica.backfills.values().cloned().map(Arc::new).collect();
        let siblings = bf::siblings(&all, &namespace, &backfill.spec.pipeline_ref.name, uid);
        let server = self.server.lock().unwrap();
        let (lp, lj, lb) = replica.lag(&server);
        drop(server);
        let own: Vec<String> =
            jobs.own.iter().map(|j| format!("{}:{}", j.name, crate::world::state(&j.state))).collect();
        let foreign: Vec<&str> = jobs.foreign.iter().map(|f| f.job.name.as_str()).collect();
        self.trace.lock().unwrap().push(format!(
            "r{} observe {} (cache lag: {lp} pipeline, {lj} job, {lb} backfill events; pipeline rv {}): own {own:?} \
             foreign {foreign:?} committed {} pods",
            self.id,
            backfill.name_any(),
            pipeline.as_ref().and_then(|p| p.resource_version()).unwrap_or_default(),
            jobs.committed.len()
        ));
        bf::Observed {
            pipeline,
            problems,
            container_defaults: defaults,
            jobs,
            siblings,
            blocked_inputs: Vec::new(),
            protected: Vec::new(),
        }
    }

    fn free_job_slots(&self, _namespace: &str) -> usize {
        usize::MAX
    }

    fn launched(&self, namespace: &str, job: &str, launch: Launch) {
        self.replica.lock().unwrap().ledger.add(namespace, job, launch);
    }
}

/// A short form of a Backfill status, for the trace.
pub fn bf_summary(status: Option<&BackfillStatus>) -> String {
    let Some(s) = status else { return "no status".into() };
    let ranges = |r: &[sluice::api::WindowRange]| {
        r.iter()
            .map(|r| format!("{}..{}", r.start.0.strftime("%H:%M:%S"), r.end.0.strftime("%H:%M:%S")))
            .collect::<Vec<_>>()
    };
    let complete = s.conditions.iter().find(|c| c.type_ == "Complete").map(|c| c.status.as_str()).unwrap_or("-");
    format!(
        "processed {:?} failed {:?} counts {:?} complete {complete} throttled {:?}",
        ranges(&s.processed_ranges),
        ranges(&s.failed_ranges),
        s.partitions.as_ref().map(|c| (c.pending, c.running, c.succeeded, c.failed, c.skipped)),
        s.throttled.as_ref().map(|t| t.reason.as_str())
    )
}

/// The Backfills' ResourceQuota exists.
struct QuotaExists;

impl sluice::validation::Lookup for QuotaExists {
    fn dataset_exists(&self, _: &str) -> bool {
        false
    }
    fn resource_quota_exists(&self, name: &str) -> bool {
        name == crate::generate::QUOTA
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
