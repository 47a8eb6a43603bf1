//! OpenLineage run events for step Jobs, sent over HTTP without ever blocking a reconcile.
//!
//! The Job watch that fills the controllers' cache is tapped (see `controller::run`): each change
//! of a Sluice Job goes through [`transition::Tracker`], and the events it calls for are put on a
//! bounded queue with `try_send` (a full queue drops the event, counted and logged). The queue is
//! split in [`SENDERS`] shards by Job UID; each shard's sender takes its events in order, builds
//! each from the caches (the Pipeline's step, the Datasets' locations, the pod's report) and POSTs
//! it, retrying with backoff; so the events of a run (one Job) reach the endpoint in the order
//! they happened, while a slow event holds up only its shard. Delivery is at least once: see
//! [`transition`].

pub mod event;
pub mod transition;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::metrics::Registry;
use tokio::sync::mpsc;

use crate::api::{Dataset, Pipeline, StepKind};
use crate::controller::guard::{Valid, ValidStore};
use crate::jobs::labels;
use event::{DatasetName, RunFacts};
use transition::{JobFacts, Kind, Outcome, Tracker};

/// Where and how events are sent (from the `--lineage-*` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// The endpoint events are POSTed to, e.g. `http://marquez:5000/api/v1/lineage`.
    pub url: String,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <key>` when set (from an environment variable).
    pub api_key: Option<String>,
    /// Prefix of the OpenLineage job namespace; the Kubernetes namespace follows it.
    pub namespace_prefix: String,
    /// Most events waiting to be sent; beyond that new ones are dropped.
    pub queue_capacity: usize,
    /// Attempts per event before it is dropped.
    pub max_attempts: u32,
}

/// Senders working at once, each over its own shard of the queue.
pub const SENDERS: usize = 8;
/// How many Job UIDs the tracker remembers.
const TRACKED_JOBS: usize = 50_000;
/// After a restart, Jobs that finished longer ago than this are taken as reported.
const REPLAY: SignedDuration = SignedDuration::from_mins(15);
/// Longest wait for a finished Job's pod (and its report) to reach the pod cache.
const REPORT_WAIT: Duration = Duration::from_secs(3);

/// Counters of the lineage delivery.
#[derive(Clone)]
pub struct LineageMetrics {
    /// Events delivered, by event type.
    pub sent: IntCounterVec,
    /// Events dropped, by reason (`queue_full`, `delivery_failed`).
    pub dropped: IntCounterVec,
    /// Delivery attempts that failed and were retried.
    pub retries: IntCounterVec,
    /// Events waiting in the queue.
    pub queued: IntGauge,
}

impl LineageMetrics {
    /// Registers the lineage series in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let sent = IntCounterVec::new(
            Opts::new("sluice_lineage_events_sent_total", "OpenLineage events delivered, by event type."),
            &["event_type"],
        )
        .expect("valid metric");
        let dropped = IntCounterVec::new(
            Opts::new("sluice_lineage_events_dropped_total", "OpenLineage events dropped, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new("sluice_lineage_delivery_retries_total", "OpenLineage deliveries retried after a failure."),
            &["event_type"],
        )
        .expect("valid metric");
        let queued = IntGauge::new("sluice_lineage_queue_depth", "OpenLineage events waiting to be sent.")
            .expect("valid metric");
        for c in [&sent, &dropped, &retries] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(queued.clone())).expect("unique metric");
        for reason in ["queue_full", "delivery_failed"] {
            dropped.with_label_values(&[reason]);
        }
        Self { sent, dropped, retries, queued }
    }
}

/// One event to send: its kind and the Job as it was when the change was seen.
pub struct Pending {
    pub kind: Kind,
    pub job: Job,
}

/// The tap on the Job watch: decides which events a change calls for and queues them.
pub struct Tap {
    tracker: Tracker,
    shards: Vec<mpsc::Sender<Pending>>,
    metrics: LineageMetrics,
}

/// The receiving ends of the queue's shards.
pub struct Queue {
    shards: Vec<mpsc::Receiver<Pending>>,
}

/// The shard of a Job: all events of one run go through one sender, in order.
fn shard(uid: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

impl Tap {
    /// Observes one item of the Job watch (after the cache has it).
    pub fn observe(&mut self, item: &Result<watcher::Event<Job>, watcher::Error>) {
        let (job, gone) = match item {
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => (job, false),
            Ok(watcher::Event::Delete(job)) => (job, true),
            Ok(watcher::Event::InitDone) => return self.tracker.list_done(),
            Ok(watcher::Event::Init) | Err(_) => return,
        };
        let Some(uid) = job.uid() else { return };
        for kind in self.tracker.observe(&uid, &JobFacts::of(job, gone), gone) {
            let queue = &self.shards[shard(&uid, self.shards.len())];
            match queue.try_send(Pending { kind, job: job.clone() }) {
                Ok(()) => self.metrics.queued.inc(),
                Err(_) => {
                    self.metrics.dropped.with_label_values(&["queue_full"]).inc();
                    tracing::warn!(job = %job.name_any(), event = kind.as_str(), "OpenLineage queue full; event dropped");
                }
            }
        }
    }
}

/// What the worker reads to build events.
#[derive(Clone)]
pub struct Sources {
    pub pipelines: ValidStore<Pipeline>,
    pub datasets: ValidStore<Dataset>,
    pub pods: Store<Pod>,
}

/// The tap for the Job watch and the receiving end of its queue (`queue_capacity` in all).
pub fn channel(config: &Config, metrics: &LineageMetrics) -> (Tap, Queue) {
    let per_shard = config.queue_capacity.div_ceil(SENDERS).max(1);
    let (senders, receivers) = (0..SENDERS).map(|_| mpsc::channel(per_shard)).unzip();
    let tracker = Tracker::new(TRACKED_JOBS, REPLAY, Timestamp::now());
    (Tap { tracker, shards: senders, metrics: metrics.clone() }, Queue { shards: receivers })
}

/// Sends queued events, each shard in order, until the queue closes.
pub async fn deliver(config: Config, sources: Sources, queue: Queue, metrics: LineageMetrics) {
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the OpenLineage HTTP client; lineage is off");
            return;
        }
    };
    tracing::info!(url = %config.url, senders = SENDERS, "sending OpenLineage events");
    let senders = queue.shards.into_iter().map(|shard| deliver_shard(&client, &config, &sources, shard, &metrics));
    futures::future::join_all(senders).await;
}

async fn deliver_shard(
    client: &reqwest::Client,
    config: &Config,
    sources: &Sources,
    mut queue: mpsc::Receiver<Pending>,
    metrics: &LineageMetrics,
) {
    while let Some(pending) = queue.recv().await {
        metrics.queued.dec();
        let Some(facts) = facts(config, sources, &pending).await else { continue };
        let body = event::run_event(&facts);
        send(client, config, &body, facts.kind, metrics).await;
    }
}

async fn send(client: &reqwest::Client, config: &Config, body: &serde_json::Value, kind: Kind, m: &LineageMetrics) {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=config.max_attempts.max(1) {
        let mut request = client.post(&config.url).header("content-type", "application/json").body(body.to_string());
        if let Some(key) = &config.api_key {
            request = request.bearer_auth(key);
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => {
                m.sent.with_label_values(&[kind.as_str()]).inc();
                return;
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(error) => error.to_string(),
        };
        if attempt == config.max_attempts.max(1) {
            m.dropped.with_label_values(&["delivery_failed"]).inc();
            tracing::warn!(event = kind.as_str(), run_id = %body["run"]["runId"], %failure, attempts = attempt,
                "OpenLineage event dropped after its last attempt");
            return;
        }
        m.retries.with_label_values(&[kind.as_str()]).inc();
        tracing::debug!(event = kind.as_str(), %failure, ?delay, "OpenLineage delivery failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(8));
    }
}

/// The facts of a queued event, from the Job and the caches; `None` for a Job that is not a step.
async fn facts(config: &Config, sources: &Sources, pending: &Pending) -> Option<RunFacts> {
    let job = &pending.job;
    let observed = crate::controller::job_cache::observe(job)?;
    let kube_namespace = job.namespace()?;
    let pipeline_label = job.labels().get(labels::PIPELINE)?.clone();
    let pipeline = find_pipeline(&sources.pipelines, &kube_namespace, &pipeline_label);
    let pipeline_name = pipeline.as_ref().map(|p| p.name_any()).unwrap_or(pipeline_label);
    let step = pipeline.as_ref().and_then(|p| p.spec.steps.iter().find(|s| s.name == observed.step).cloned());
    let namespace = format!("{}{kube_namespace}", config.namespace_prefix);
    let names = |datasets: &[String]| -> Vec<DatasetName> {
        datasets
            .iter()
            .map(|d| {
                let found = sources.datasets.get(d, &kube_namespace);
                event::dataset_name(found.as_ref().and_then(|x| x.spec.location.as_deref()), d, &namespace)
            })
            .collect()
    };
    let facts = JobFacts::of(job, false);
    // The pod's report and exit code matter for a finished Job; an aborted one never finished.
    let pod = match pending.kind {
        Kind::Complete | Kind::Fail => finished_pod(&sources.pods, job).await,
        Kind::Start | Kind::Abort => None,
    };
    let report = pod
        .as_deref()
        .and_then(|p| crate::report::parse(&crate::controller::dataset::termination_message(p)).ok().flatten());
    let (event_time, error) = match (&pending.kind, &facts.outcome) {
        (Kind::Start, _) => (facts.started.unwrap_or(observed.created), None),
        (Kind::Complete, Some(Outcome::Complete { at })) => (*at, None),
        (Kind::Fail, Some(Outcome::Failed { at, message })) => (*at, Some(error_message(message, pod.as_deref()))),
        _ => {
            let now = Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| Timestamp::now());
            (job.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or(now), None)
        }
    };
    Some(RunFacts {
        kind: pending.kind,
        event_time,
        job_uid: job.uid()?,
        namespace: namespace.clone(),
        kube_namespace: kube_namespace.clone(),
        pipeline: pipeline_name,
        step: observed.step,
        step_kind: step.as_ref().map(|s| match s.kind {
            StepKind::Extract => "EXTRACT",
            StepKind::Transform => "TRANSFORM",
        }),
        run_id: observed.run_id,
        window: observed.window,
        inputs: step.as_ref().map(|s| names(&s.inputs)).unwrap_or_default(),
        outputs: step.as_ref().map(|s| names(&s.outputs)).unwrap_or_default(),
        report,
        error,
    })
}

/// The Pipeline a Job's label names (the name, or its hash when longer than a label value).
fn find_pipeline(store: &ValidStore<Pipeline>, namespace: &str, label: &str) -> Option<Valid<Pipeline>> {
    store.get(label, namespace).or_else(|| {
        store.find(|p| p.namespace().as_deref() == Some(namespace) && crate::jobs::label_value(&p.name_any()) == label)
    })
}

/// The finished pod of `job` in the cache, waiting briefly for it: the pod's watch may deliver
/// its final state a moment after the Job's.
async fn finished_pod(pods: &Store<Pod>, job: &Job) -> Option<Arc<Pod>> {
    let uid = job.uid()?;
    let deadline = tokio::time::Instant::now() + REPORT_WAIT;
    loop {
        let ours = pods.find(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid));
        let finished =
            ours.filter(|p| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")));
        if finished.is_some() || tokio::time::Instant::now() >= deadline {
            return finished;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Job's failure reason, with the exit code and reason of the pod's failed container.
fn error_message(job_reason: &str, pod: Option<&Pod>) -> String {
    let container =
        pod.and_then(|p| p.status.as_ref()?.container_statuses.as_ref()).into_iter().flatten().find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                format!(
                    "container {} exited with code {} ({})",
                    c.name,
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("Error")
                )
            })
        });
    match container {
        Some(c) => format!("{job_reason}; {c}"),
        None => job_reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_events_always_go_through_one_shard_and_jobs_spread_over_all() {
        assert_eq!(shard("uid-1", SENDERS), shard("uid-1", SENDERS));
        let used: std::collections::BTreeSet<usize> = (0..200).map(|i| shard(&format!("uid-{i}"), SENDERS)).collect();
        assert_eq!(used.len(), SENDERS);
        assert!(used.iter().all(|s| *s < SENDERS));
    }
}
