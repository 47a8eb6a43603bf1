//! What ran in a namespace, watched in the background: every Job ever created (with its Sluice
//! labels) and every change of the pods that a ResourceQuota counts (not yet Succeeded or
//! Failed), so a test can ask for the peak of concurrent pods and requested CPU afterwards, and
//! how each Job ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
// Watches retry within 2 s after an error, as the operator's do (kube's default backoff can
// leave them stale for most of a minute after an API server restart).

/// A Job as first seen.
#[derive(Clone, Debug)]
pub struct SeenJob {
    pub uid: String,
    pub name: String,
    /// The `sluice.dev/backfill` label; empty for Jobs of scheduled runs.
    pub backfill: String,
    /// The `sluice.dev/pipeline` label.
    pub pipeline: String,
    pub run: String,
    pub step: String,
    pub attempt: String,
    pub created: Timestamp,
    /// The `sluice.dev/window-end` annotation.
    pub window_end: Option<Timestamp>,
    /// `Some(true)` once the Job was seen Complete, `Some(false)` once seen Failed.
    pub succeeded: Option<bool>,
    /// When this watch first saw the Job finished (local clock).
    pub finished_seen: Option<Timestamp>,
}

/// The most pods counted at once, and the most CPU they requested at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peak {
    pub pods: usize,
    pub millicores: i64,
}

/// One change of a pod: counted by the quota (with its CPU request) or not anymore.
#[derive(Clone, Debug)]
struct PodChange {
    uid: String,
    job_uid: String,
    millicores: Option<i64>,
}

/// Everything seen in the namespace so far.
#[derive(Default)]
pub struct Usage {
    /// By UID: a name may be used again once its Job is gone.
    jobs: BTreeMap<String, SeenJob>,
    changes: Vec<PodChange>,
}

impl Usage {
    /// Every Job seen.
    pub fn jobs(&self) -> impl Iterator<Item = &SeenJob> {
        self.jobs.values()
    }

    /// The Jobs of Backfill `name`.
    pub fn backfill_jobs(&self, name: &str) -> Vec<&SeenJob> {
        self.jobs.values().filter(|j| j.backfill == name).collect()
    }

    /// The peak over time of the counted pods whose Job `select` accepts (the Job is `None` if
    /// it was never seen). Computed over the recorded order of pod changes.
    pub fn peak(&self, select: impl Fn(Option<&SeenJob>) -> bool) -> Peak {
        let mut counted: BTreeMap<&str, i64> = BTreeMap::new();
        let mut peak = Peak::default();
        for change in self.changes.iter().filter(|c| select(self.jobs.get(&c.job_uid))) {
            match change.millicores {
                Some(m) => counted.insert(&change.uid, m),
                None => counted.remove(change.uid.as_str()),
            };
            peak.pods = peak.pods.max(counted.len());
            peak.millicores = peak.millicores.max(counted.values().sum());
        }
        peak
    }
}

fn label<'a>(labels: Option<&'a BTreeMap<String, String>>, key: &str) -> &'a str {
    labels.and_then(|l| l.get(key)).map(String::as_str).unwrap_or_default()
}

/// `Some(true)` for a Job with condition Complete, `Some(false)` with Failed, else `None`.
pub fn outcome(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    if holds("Complete") {
        Some(true)
    } else if holds("Failed") {
        Some(false)
    } else {
        None
    }
}

/// The CPU requests of a pod's containers in millicores.
pub fn millicores(pod: &Pod) -> i64 {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
        .map(|q| sluice::quota::quantity::parse(&q.0, sluice::quota::Round::Up).unwrap_or(0) as i64)
        .sum()
}

/// Waits until the watch has seen every Job that the API server lists in `namespace` now, so that
/// what it recorded can be counted.
pub async fn caught_up(usage: &Mutex<Usage>, client: &kube::Client, namespace: &str) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let listed: Vec<String> =
        jobs.list(&Default::default()).await.expect("jobs").items.into_iter().filter_map(|j| j.metadata.uid).collect();
    crate::wait::poll(std::time::Duration::from_secs(30), "the Job watch to see every listed Job", || {
        let seen = listed.iter().all(|uid| usage.lock().unwrap_or_else(|e| e.into_inner()).jobs.contains_key(uid));
        std::future::ready(seen.then_some(()))
    })
    .await;
}

/// Starts watching the Jobs and pods of `namespace` for as long as the test runs.
pub fn watch(client: &kube::Client, namespace: &str) -> Arc<Mutex<Usage>> {
    let usage = Arc::new(Mutex::new(Usage::default()));
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let into = usage.clone();
    tokio::spawn(async move {
        let mut stream = watcher(jobs, watcher::Config::default())
            .backoff(sluice::controller::watch_backoff::watch_backoff())
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            let Ok(job) = item else { continue };
            let name = job.metadata.name.clone().unwrap_or_default();
            let labels = job.metadata.labels.as_ref();
            let annotations = job.metadata.annotations.as_ref();
            let uid = job.metadata.uid.clone().unwrap_or_default();
            let seen = SeenJob {
                uid: uid.clone(),
                name,
                backfill: label(labels, "sluice.dev/backfill").to_string(),
                pipeline: label(labels, "sluice.dev/pipeline").to_string(),
                run: label(labels, "sluice.dev/run").to_string(),
                step: label(labels, "sluice.dev/step").to_string(),
                attempt: label(labels, "sluice.dev/attempt").to_string(),
                created: job.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
                window_end: annotations.and_then(|a| a.get("sluice.dev/window-end")).and_then(|t| t.parse().ok()),
                succeeded: None,
                finished_seen: None,
            };
            let outcome = outcome(&job);
            let mut usage = into.lock().unwrap_or_else(|e| e.into_inner());
            let entry = usage.jobs.entry(uid).or_insert(seen);
            if entry.succeeded.is_none() && outcome.is_some() {
                entry.succeeded = outcome;
                entry.finished_seen = Some(Timestamp::now());
            }
        }
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let into = usage.clone();
    tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default())
            .backoff(sluice::controller::watch_backoff::watch_backoff())
            .boxed();
        while let Some(item) = stream.next().await {
            let (pod, gone) = match item {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                Ok(watcher::Event::Delete(p)) => (p, true),
                _ => continue,
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
            let counted = !gone && phase != "Succeeded" && phase != "Failed";
            let change = PodChange {
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                job_uid: label(pod.metadata.labels.as_ref(), "batch.kubernetes.io/controller-uid").to_string(),
                millicores: counted.then(|| millicores(&pod)),
            };
            into.lock().unwrap_or_else(|e| e.into_inner()).changes.push(change);
        }
    });
    usage
}
