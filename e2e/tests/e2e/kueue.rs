//! Sluice with a real Kueue (`sluice_e2e::kueue`: Kueue's manager on the host, its CRDs from its
//! Go module): a Backfill of 40 partitions through a low-priority LocalQueue is throttled by a
//! ClusterQueue's nominal quota (1 CPU for 0.25-CPU pods: 4 at a time), the rest of its
//! `parallelism` waiting suspended and counted `queued`, while the Pipeline's scheduled runs go
//! through a high-priority LocalQueue of the same ClusterQueue and are admitted ahead of the
//! waiting partitions. Prints the timings: time to admit each scheduled run, backfill throughput.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sluice::api::Backfill;
use sluice_e2e::kueue::Kueue;
use sluice_e2e::{TestNamespace, wait};

/// Nominal CPU quota of the ClusterQueue, in millicores, and each step pod's request.
const QUOTA_MILLI: i64 = 1000;
const POD_MILLI: i64 = 250;
const PARTITIONS: i64 = 40;
const PARALLELISM: i64 = 12;
const BACKFILL_QUEUE: &str = "backfills";
const SCHEDULED_QUEUE: &str = "scheduled";

/// A one-step spec whose fake pod runs 4 s requesting 0.25 CPU (only CPU: a resource the
/// ClusterQueue does not cover would make the Workloads inadmissible).
fn steps() -> Value {
    json!([{
        "name": "extract", "kind": "Extract",
        "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "4s"}},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                                              "resources": {"requests": {"cpu": format!("{POD_MILLI}m")}}}]}}
    }])
}

/// The Kueue objects of the test: a ResourceFlavor, a ClusterQueue with `QUOTA_MILLI` of CPU
/// (StrictFIFO: within it, higher priorities first, then creation order), two
/// WorkloadPriorityClasses and the two LocalQueues in `ns`. Cluster-scoped names carry `ns`.
fn kueue_objects(ns: &str) -> Vec<Value> {
    let v = "kueue.x-k8s.io/v1beta2";
    vec![
        json!({"apiVersion": v, "kind": "ResourceFlavor", "metadata": {"name": format!("{ns}-flavor")}, "spec": {}}),
        json!({"apiVersion": v, "kind": "ClusterQueue", "metadata": {"name": ns},
               "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                        "queueingStrategy": "StrictFIFO",
                        "resourceGroups": [{"coveredResources": ["cpu"], "flavors": [{"name": format!("{ns}-flavor"),
                            "resources": [{"name": "cpu", "nominalQuota": format!("{QUOTA_MILLI}m")}]}]}]}}),
        json!({"apiVersion": v, "kind": "WorkloadPriorityClass", "metadata": {"name": format!("{ns}-high")},
               "value": 1000, "description": "scheduled runs"}),
        json!({"apiVersion": v, "kind": "WorkloadPriorityClass", "metadata": {"name": format!("{ns}-low")},
               "value": 10, "description": "backfills"}),
        json!({"apiVersion": v, "kind": "LocalQueue", "metadata": {"name": BACKFILL_QUEUE}, "spec": {"clusterQueue": ns}}),
        json!({"apiVersion": v, "kind": "LocalQueue", "metadata": {"name": SCHEDULED_QUEUE}, "spec": {"clusterQueue": ns}}),
    ]
}

fn kueue_api(client: &kube::Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", kind);
    let plural = format!("{}s", kind.to_lowercase()).replace("classs", "classes");
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// What the test saw of one Job.
#[derive(Debug)]
struct Seen {
    backfill: bool,
    created: Timestamp,
    first_seen: Instant,
    /// When a poll first saw it unsuspended.
    admitted: Option<Instant>,
    finished: bool,
    queue: String,
    priority: String,
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")))
}

/// Everything the polls observed.
#[derive(Default)]
struct Observed {
    jobs: BTreeMap<String, Seen>,
    peak_admitted: usize,
    peak_queued_status: i64,
    peak_running_status: i64,
}

impl Observed {
    /// Takes in one list of the namespace's Jobs (one consistent snapshot): at no snapshot may
    /// more Jobs be admitted and unfinished than the ClusterQueue's quota holds.
    fn jobs(&mut self, jobs: &[Job], now: Instant) {
        let mut admitted = 0;
        for job in jobs {
            let name = job.metadata.name.clone().unwrap_or_default();
            let labels = job.metadata.labels.clone().unwrap_or_default();
            let seen = self.jobs.entry(name).or_insert_with(|| Seen {
                backfill: labels.contains_key("sluice.dev/backfill"),
                created: job.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
                first_seen: now,
                admitted: None,
                finished: false,
                queue: labels.get("kueue.x-k8s.io/queue-name").cloned().unwrap_or_default(),
                priority: labels.get("kueue.x-k8s.io/priority-class").cloned().unwrap_or_default(),
            });
            let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
            if !suspended && seen.admitted.is_none() {
                seen.admitted = Some(now);
            }
            seen.finished |= finished(job);
            if !suspended && !finished(job) {
                admitted += 1;
            }
        }
        self.peak_admitted = self.peak_admitted.max(admitted);
        assert!(
            admitted as i64 <= QUOTA_MILLI / POD_MILLI,
            "{admitted} Jobs admitted at once, the ClusterQueue holds {}",
            QUOTA_MILLI / POD_MILLI
        );
    }

    fn backfill(&mut self, b: &Backfill) {
        let Some(c) = b.status.as_ref().and_then(|s| s.partitions.as_ref()) else { return };
        self.peak_queued_status = self.peak_queued_status.max(c.queued);
        self.peak_running_status = self.peak_running_status.max(c.running);
        assert!(c.running <= QUOTA_MILLI / POD_MILLI, "status counts {} running: {c:?}", c.running);
        assert!(c.running + c.queued <= PARALLELISM, "more in progress than parallelism: {c:?}");
    }
}

/// Deletes what the test made so that Kueue (still running) releases its finalizers: the
/// Sluice objects (their Jobs go with them), then, once the Workloads are gone, the Kueue objects.
async fn clean_up(ns: &TestNamespace) {
    let (client, n) = (&ns.client, ns.name.as_str());
    let dp = DeleteParams::background();
    let _ = sluice_e2e::yaml::sluice_api(client, n, "Backfill").delete("history", &dp).await;
    let _ = sluice_e2e::yaml::sluice_api(client, n, "Pipeline").delete("orders", &dp).await;
    let workloads = kueue_api(client, "Workload", Some(n));
    let left = wait::settle(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async { workloads.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0) },
        |n| *n == 0,
    )
    .await;
    assert_eq!(left, 0, "Kueue's Workloads outlived their Jobs");
    // In reverse order (LocalQueues, priority classes, the ClusterQueue, its flavor), each
    // gone before the next: Kueue holds a ClusterQueue while LocalQueues use it, and a flavor
    // while a ClusterQueue does.
    for doc in kueue_objects(n).iter().rev() {
        let (kind, name) = (doc["kind"].as_str().unwrap(), doc["metadata"]["name"].as_str().unwrap());
        let api = kueue_api(client, kind, (kind == "LocalQueue").then_some(n));
        let _ = api.delete(name, &dp).await;
        let gone = wait::settle(
            Duration::from_secs(30),
            Duration::from_millis(250),
            || async { api.get_opt(name).await.ok().flatten().is_none() },
            |gone| *gone,
        )
        .await;
        assert!(gone, "{kind} {name} is still there 30 s after its deletion");
    }
}

#[tokio::test]
async fn a_backfill_is_throttled_by_a_clusterqueue_and_scheduled_runs_are_admitted_first() {
    let client = sluice_e2e::setup().await;
    let test = "kueue::a_backfill_is_throttled_by_a_clusterqueue_and_scheduled_runs_are_admitted_first";
    let Some(kueue) = Kueue::or_skip(test, &client, &sluice_e2e::cluster::kubeconfig()).await else { return };
    sluice_e2e::namespace::with_namespace(&client, "kueue", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.clone());
        for doc in kueue_objects(&n) {
            ns.apply(&doc).await;
        }
        // Windows of the pipeline's 20-second schedule that are all in the past.
        let now = Timestamp::now();
        let range_end = Timestamp::from_second(now.as_second() - now.as_second() % 20 - 20).unwrap();
        let range_start = range_end - SignedDuration::from_secs(PARTITIONS * 20);
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
            "spec": {"schedule": "*/20 * * * * *", "queueName": SCHEDULED_QUEUE,
                     "workloadPriorityClass": format!("{n}-high"), "steps": steps()}}))
        .await;
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "history",
                "labels": {"kueue.x-k8s.io/queue-name": BACKFILL_QUEUE}},
            "spec": {"pipelineRef": {"name": "orders"},
                     "range": {"start": range_start.to_string(), "end": range_end.to_string()},
                     "parallelism": PARALLELISM, "workloadPriorityClass": format!("{n}-low")}}))
        .await;

        let jobs: Api<Job> = Api::namespaced(client.clone(), &n);
        let backfills: Api<Backfill> = Api::namespaced(client.clone(), &n);
        let started = Instant::now();
        let mut seen = Observed::default();
        let deadline = wait::Deadline::after(Duration::from_secs(300), Duration::from_millis(200));
        let done = loop {
            let listed = jobs.list(&ListParams::default()).await.expect("jobs").items;
            seen.jobs(&listed, Instant::now());
            let b = backfills.get("history").await.expect("backfill");
            seen.backfill(&b);
            let complete = b.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True"));
            if complete {
                break b;
            }
            assert!(deadline.tick().await, "not complete after 300 s: {:#?}", b.status);
        };
        let wall = started.elapsed();
        let status = done.status.clone().unwrap();
        let counts = status.partitions.clone().unwrap();
        assert_eq!((counts.total, counts.succeeded, counts.failed, counts.queued), (PARTITIONS, PARTITIONS, 0, 0));

        // Kueue's quota, not parallelism, was the limit, and the waiting partitions were counted
        // queued, not running.
        assert_eq!(seen.peak_admitted as i64, QUOTA_MILLI / POD_MILLI, "peak admitted");
        assert!(seen.peak_queued_status >= PARALLELISM - QUOTA_MILLI / POD_MILLI - 1, "peak queued {}", seen.peak_queued_status);
        let backfill_jobs: Vec<&Seen> = seen.jobs.values().filter(|j| j.backfill).collect();
        assert_eq!(backfill_jobs.len() as i64, PARTITIONS, "one Job per partition");
        assert!(backfill_jobs.iter().all(|j| j.queue == BACKFILL_QUEUE && j.priority == format!("{n}-low")));

        // Scheduled runs went through their own LocalQueue at the higher priority, and those
        // created while backfill Jobs waited were admitted before them.
        let scheduled: Vec<(&String, &Seen)> = seen.jobs.iter().filter(|(_, j)| !j.backfill).collect();
        assert!(scheduled.iter().all(|(_, j)| j.queue == SCHEDULED_QUEUE && j.priority == format!("{n}-high")));
        let mut ahead = 0;
        let mut admit_times = Vec::new();
        for (name, s) in &scheduled {
            let Some(admitted) = s.admitted else { continue };
            admit_times.push((name.as_str(), admitted.saturating_duration_since(s.first_seen)));
            let overtaken = backfill_jobs
                .iter()
                .filter(|b| b.created < s.created && b.admitted.is_none_or(|a| a > admitted))
                .count();
            if overtaken > 0 {
                ahead += 1;
                eprintln!("scheduled Job {name} was admitted ahead of {overtaken} backfill Job(s) created before it");
            }
        }
        assert!(ahead > 0, "no scheduled run was admitted ahead of waiting backfill Jobs: {scheduled:#?}");
        // Within a few pod durations (4 s each) even on a loaded machine (7 s seen under the
        // full suite): a scheduled run never waits behind the backfill's queue.
        for (name, t) in &admit_times {
            assert!(*t < Duration::from_secs(30), "scheduled Job {name} waited {t:?} for admission");
        }

        let elapsed = status
            .completion_time
            .as_ref()
            .zip(status.start_time.as_ref())
            .map(|(c, s)| c.0.duration_since(s.0).as_secs_f64())
            .unwrap_or_default();
        eprintln!(
            "kueue timings: {PARTITIONS} partitions of 4 s pods under a {QUOTA_MILLI}m ClusterQueue ({} at a time) in {elapsed:.0} s \
             (status start to completion; {wall:.1?} observed): {:.2} partitions/s (ideal {:.2}); peak admitted {}, peak queued in \
             status {}, peak running in status {}; scheduled runs admitted after {:?}",
            QUOTA_MILLI / POD_MILLI,
            PARTITIONS as f64 / elapsed.max(1.0),
            (QUOTA_MILLI / POD_MILLI) as f64 / 4.0,
            seen.peak_admitted,
            seen.peak_queued_status,
            seen.peak_running_status,
            admit_times
        );
        clean_up(&ns).await;
    })
    .await;
    drop(kueue);
}
