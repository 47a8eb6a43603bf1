//! The Backfill controller on a real control plane: admission within a real ResourceQuota
//! (never more pods than fit, no quota refusal, room for a scheduled run), suspend and resume,
//! `QuotaNeverFits`, a transforms-only reprocess, retries then failure, and deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use sluice::api::{Backfill, Pipeline};
use sluice_e2e::usage::{self, SeenJob};
use sluice_e2e::wait;

/// A step whose fake pod runs `duration` requesting `cpu` (no requests when `None`), failing
/// when `fail`.
fn step(name: &str, kind: &str, deps: &[&str], cpu: Option<&str>, duration: &str, fail: bool) -> Value {
    let mut annotations = json!({"kwok.sluice.dev/duration": duration});
    if fail {
        annotations["kwok.sluice.dev/outcome"] = json!("fail");
    }
    let resources = cpu.map_or(json!({}), |cpu| json!({"requests": {"cpu": cpu, "memory": "64Mi"}}));
    json!({
        "name": name, "kind": kind, "dependsOn": deps,
        "retries": {"backoffSeconds": 1, "maxBackoffSeconds": 2},
        "template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1", "resources": resources}]}}
    })
}

fn pipeline(name: &str, schedule: &str, suspend: bool, steps: Vec<Value>) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"schedule": schedule, "suspend": suspend, "steps": steps}})
}

/// A suspended hourly Pipeline `orders` of one Extract step: only Backfills run it.
fn backfill_only(cpu: Option<&str>, duration: &str, fail: bool) -> Value {
    pipeline("orders", "0 * * * *", true, vec![step("extract", "Extract", &[], cpu, duration, fail)])
}

fn backfill(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": name}, "spec": spec})
}

fn quota(name: &str, cpu: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
           "spec": {"hard": {"requests.cpu": cpu}}})
}

/// `hours` hourly windows from 2026-10-01T00:00Z.
fn hours(hours: i64) -> Value {
    let start: Timestamp = "2026-10-01T00:00:00Z".parse().unwrap();
    json!({"start": start.to_string(), "end": (start + SignedDuration::from_hours(hours)).to_string()})
}

fn backfills(client: &kube::Client, ns: &str) -> Api<Backfill> {
    Api::namespaced(client.clone(), ns)
}

fn condition(b: &Backfill, type_: &str) -> Option<(String, String, String)> {
    let c = b.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls the Backfill until `check` holds, or panics after `timeout` with the last status.
/// (Polling rather than a watch: a watch that falls behind a compaction fails with 410.)
async fn poll_until(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Backfill) -> bool,
) -> Backfill {
    let b = wait::settle(
        timeout,
        Duration::from_millis(250),
        || async { backfills(client, ns).get(name).await.expect("backfill") },
        &check,
    )
    .await;
    assert!(check(&b), "{name} not {what} after {timeout:?}: {:#?}", b.status);
    b
}

/// Waits until condition `type_` has `status` at the Backfill's current generation, as
/// `kubectl wait --for=condition=<type_>` would.
async fn wait_condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> Backfill {
    poll_until(client, ns, name, timeout, &format!("{type_}={status}"), |b: &Backfill| {
        let generation = b.metadata.generation;
        b.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .is_some_and(|c| c.status == status && c.observed_generation == generation)
    })
    .await
}

/// Partition counts of a Backfill.
fn counts(b: &Backfill) -> Option<sluice::api::PartitionCounts> {
    b.status.as_ref()?.partitions.clone()
}

fn label<'a>(labels: Option<&'a BTreeMap<String, String>>, key: &str) -> &'a str {
    labels.and_then(|l| l.get(key)).map(String::as_str).unwrap_or_default()
}

/// Events in `ns` that say the quota refused something.
async fn quota_refusals(client: &kube::Client, ns: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .filter(|m| m.contains("exceeded quota"))
        .collect()
}

async fn live_jobs(client: &kube::Client, ns: &str) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test]
async fn a_quota_throttled_backfill_never_overruns_and_leaves_room_for_scheduled_runs() {
    sluice_e2e::in_namespace("bf-quota", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        // Quota 4 CPU, steps of 1 CPU, reserve 1 CPU: three backfill pods at a time, and room for
        // the pipeline's scheduled run every 20 s.
        ns.apply(&quota("compute", "4")).await;
        let seen = usage::watch(&client, n);
        let now = Timestamp::now();
        let range_end = Timestamp::from_second(now.as_second() - now.as_second() % 20 - 20).unwrap();
        let range_start = range_end - SignedDuration::from_secs(50 * 20);
        ns.apply(&pipeline(
            "orders",
            "*/20 * * * * *",
            false,
            vec![step("extract", "Extract", &[], Some("1"), "1s", false)],
        ))
        .await;
        ns.apply(&backfill(
            "history",
            json!({
                "pipelineRef": {"name": "orders"},
                "range": {"start": range_start.to_string(), "end": range_end.to_string()},
                "parallelism": 10,
                "budget": {"resourceQuotaRef": {"name": "compute"}, "reserve": {"requests.cpu": "1"}}
            }),
        ))
        .await;

        // While it runs, the quota is what holds it back.
        let reasons = std::sync::Mutex::new(BTreeSet::new());
        let started = std::time::Instant::now();
        let complete = |b: &Backfill| condition(b, "Complete").is_some_and(|c| c.0 == "True");
        let done = wait::settle(
            Duration::from_secs(300),
            Duration::from_millis(500),
            || {
                let reasons = &reasons;
                async {
                    let b = backfills(&client, n).get("history").await.expect("backfill");
                    if let Some(t) = b.status.as_ref().and_then(|s| s.throttled.as_ref()) {
                        reasons.lock().unwrap().insert(t.reason.clone());
                    }
                    assert!(condition(&b, "Failed").is_none_or(|c| c.0 == "False"), "{:#?}", b.status);
                    b
                }
            },
            complete,
        )
        .await;
        assert!(complete(&done), "not complete after 300 s: {:#?}", done.status);
        let reasons = reasons.into_inner().unwrap();
        let wall = started.elapsed();
        let status = done.status.clone().unwrap();
        let counts = status.partitions.clone().unwrap();
        assert_eq!((counts.total, counts.succeeded, counts.failed, counts.skipped), (50, 50, 0, 0), "{status:#?}");
        assert_eq!(status.succeeded_ranges.len(), 1);
        assert_eq!(status.succeeded_ranges[0].count, 50);
        assert!(reasons.contains("QuotaExhausted"), "throttle reasons seen: {reasons:?}");
        assert_eq!(condition(&done, "Throttled").unwrap().0, "False");
        assert!(status.start_time.is_some() && status.completion_time.is_some());

        {
            let seen = seen.lock().unwrap();
            // Every window exactly once: one Job (attempt 0) per run, 50 runs.
            let jobs = seen.backfill_jobs("history");
            let runs: BTreeSet<&str> = jobs.iter().map(|j| j.run.as_str()).collect();
            assert_eq!((jobs.len(), runs.len()), (50, 50), "{jobs:#?}");
            assert!(jobs.iter().all(|j| j.attempt == "0" && j.step == "extract"));
            // Never more pods than fit: 3 CPU for the backfill, 4 in all.
            let backfill_peak = seen.peak(|j| j.is_some_and(|j| j.backfill == "history"));
            let total_peak = seen.peak(|_| true);
            assert!(backfill_peak.millicores <= 3000, "backfill pods requested {backfill_peak:?} at once");
            assert!(total_peak.millicores <= 4000, "pods requested {total_peak:?} at once");
            assert_eq!(backfill_peak.pods, 3, "the quota, not parallelism (10), was the limit");
            // Scheduled runs started on time while the backfill ran.
            let scheduled: Vec<&SeenJob> = seen.jobs().filter(|j| j.backfill.is_empty()).collect();
            let during: Vec<&&SeenJob> = scheduled
                .iter()
                .filter(|j| status.start_time.as_ref().is_some_and(|s| j.created > s.0))
                .filter(|j| status.completion_time.as_ref().is_some_and(|c| j.created < c.0))
                .collect();
            assert!(!during.is_empty(), "no scheduled run during the {wall:?} backfill: {scheduled:#?}");
            for j in &during {
                let lag = j.created.duration_since(j.window_end.expect("window annotation"));
                assert!(lag < SignedDuration::from_secs(5), "scheduled run {} started {lag:?} after its tick", j.run);
            }
        }
        // No pod was refused for quota, and the scheduled runs succeeded.
        let refusals = quota_refusals(&client, n).await;
        assert!(refusals.is_empty(), "{refusals:#?}");
        let p: Api<Pipeline> = Api::namespaced(client.clone(), n);
        let recent = p.get("orders").await.expect("pipeline").status.unwrap_or_default().recent_runs;
        assert!(recent.iter().any(|r| r.phase == sluice::api::RunPhase::Succeeded), "{recent:#?}");
        // The record stays; the Jobs go.
        let left = wait::settle(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async {
                live_jobs(&client, n)
                    .await
                    .iter()
                    .filter(|j| label(j.metadata.labels.as_ref(), "sluice.dev/backfill") == "history")
                    .count()
            },
            |left| *left == 0,
        )
        .await;
        assert_eq!(left, 0, "finished partitions' Jobs are deleted");
        let size = serde_json::to_vec(&done).unwrap().len();
        assert!(size < 8 * 1024, "the Backfill is {size} bytes");
        eprintln!("50-partition backfill: {wall:?}, Backfill object {size} bytes");
    })
    .await;
}

#[tokio::test]
async fn suspend_stops_new_jobs_and_resume_continues() {
    sluice_e2e::in_namespace("bf-suspend", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = usage::watch(&client, n);
        // The pipeline itself is suspended: only the backfill runs.
        ns.apply(&backfill_only(Some("100m"), "2s", false)).await;
        let mut doc =
            backfill("history", json!({"pipelineRef": {"name": "orders"}, "range": hours(8), "parallelism": 2}));
        ns.apply(&doc).await;
        poll_until(&client, n, "history", Duration::from_secs(30), "two partitions running", |b: &Backfill| {
            counts(b).is_some_and(|c| c.running == 2)
        })
        .await;

        doc["spec"]["suspend"] = json!(true);
        ns.apply(&doc).await;
        let b = wait_condition(&client, n, "history", "Progressing", "False", Duration::from_secs(30)).await;
        assert_eq!(condition(&b, "Progressing").unwrap().1, "Suspended");
        assert_eq!(condition(&b, "Throttled").unwrap().1, "Suspended");
        usage::caught_up(&seen, &client, n).await;
        let jobs_at_suspend = seen.lock().unwrap().backfill_jobs("history").len();
        // Running partitions finish; no new Job starts. The status that shows none running was
        // written by the reconcile that saw the last one finish: a launch it decided would be in
        // that status (written before its Jobs). The watch must have caught up with the Jobs the
        // API server lists before it is counted.
        let b = poll_until(&client, n, "history", Duration::from_secs(30), "running ones finished", |b: &Backfill| {
            counts(b).is_some_and(|c| c.running == 0)
        })
        .await;
        usage::caught_up(&seen, &client, n).await;
        assert_eq!(
            seen.lock().unwrap().backfill_jobs("history").len(),
            jobs_at_suspend,
            "a Job started while suspended"
        );
        let done_at_suspend = b.status.unwrap().partitions.unwrap().succeeded;
        assert!((2..8).contains(&done_at_suspend), "{done_at_suspend}");

        doc["spec"]["suspend"] = json!(false);
        ns.apply(&doc).await;
        let b = wait_condition(&client, n, "history", "Complete", "True", Duration::from_secs(90)).await;
        assert_eq!(b.status.unwrap().partitions.unwrap().succeeded, 8);
        let seen = seen.lock().unwrap();
        let runs: BTreeSet<&str> = seen.backfill_jobs("history").iter().map(|j| j.run.as_str()).collect();
        assert_eq!(
            (seen.backfill_jobs("history").len(), runs.len()),
            (8, 8),
            "resumed where it stopped, each window once"
        );
    })
    .await;
}

#[tokio::test]
async fn a_partition_larger_than_the_quota_allows_fails_at_once() {
    sluice_e2e::in_namespace("bf-never", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&quota("compute", "4")).await;
        ns.apply(&backfill_only(Some("3500m"), "1s", false)).await;
        ns.apply(&backfill(
            "history",
            json!({
                "pipelineRef": {"name": "orders"}, "range": hours(4),
                "budget": {"resourceQuotaRef": {"name": "compute"}, "reserve": {"requests.cpu": "1"}}
            }),
        ))
        .await;
        let b = wait_condition(&client, n, "history", "Failed", "True", Duration::from_secs(30)).await;
        let (_, reason, message) = condition(&b, "Failed").unwrap();
        assert_eq!(reason, "QuotaNeverFits");
        assert!(message.contains("requests.cpu needed 3.5") && message.contains("compute"), "{message}");
        assert_eq!(condition(&b, "Complete").unwrap().0, "False");
        assert!(live_jobs(&client, n).await.is_empty(), "nothing was started");
    })
    .await;
}

#[tokio::test]
async fn a_transforms_only_reprocess_re_derives_without_extracting() {
    sluice_e2e::in_namespace("bf-transforms", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = usage::watch(&client, n);
        // Steps without requests are charged the LimitRange default: 1 CPU each under a 2 CPU
        // quota with a 1 CPU reserve, so one pod at a time.
        ns.apply(&quota("compute", "2")).await;
        ns.apply(&json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
            "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "1"}, "default": {"cpu": "1"}}]}}))
            .await;
        ns.apply(&pipeline(
            "orders",
            "0 * * * *",
            true,
            vec![
                step("extract", "Extract", &[], None, "500ms", false),
                step("stage", "Transform", &["extract"], None, "500ms", false),
                step("curate", "Transform", &["stage"], None, "500ms", false),
            ],
        ))
        .await;
        let budget = json!({"resourceQuotaRef": {"name": "compute"}, "reserve": {"cpu": "1"}});
        // First the missing history, every step.
        ns.apply(&backfill(
            "initial",
            json!({
                "pipelineRef": {"name": "orders"}, "range": hours(3), "parallelism": 3, "budget": budget
            }),
        ))
        .await;
        wait_condition(&client, n, "initial", "Complete", "True", Duration::from_secs(120)).await;
        // Then a fix in the transforms: re-derive the same windows from raw, without extracting.
        ns.apply(&backfill(
            "rederive",
            json!({
                "pipelineRef": {"name": "orders"}, "range": hours(3), "parallelism": 3,
                "steps": "TransformsOnly", "reprocess": "All", "budget": budget
            }),
        ))
        .await;
        let b = wait_condition(&client, n, "rederive", "Complete", "True", Duration::from_secs(120)).await;
        assert_eq!(b.status.unwrap().partitions.unwrap().succeeded, 3);
        // A missing-only backfill of the same range finds nothing missing.
        ns.apply(&backfill("gaps", json!({"pipelineRef": {"name": "orders"}, "range": hours(3)}))).await;
        let b = wait_condition(&client, n, "gaps", "Complete", "True", Duration::from_secs(30)).await;
        let counts = b.status.unwrap().partitions.unwrap();
        assert_eq!((counts.skipped, counts.succeeded), (3, 0));

        {
            let seen = seen.lock().unwrap();
            let steps = |b: &str| seen.backfill_jobs(b).iter().map(|j| j.step.clone()).collect::<Vec<_>>();
            let initial = steps("initial");
            assert_eq!(initial.len(), 9);
            let rederive = steps("rederive");
            assert_eq!(rederive.len(), 6, "{rederive:?}");
            assert!(rederive.iter().all(|s| s != "extract"), "{rederive:?}");
            assert!(steps("gaps").is_empty());
            // Within a partition, curate starts after stage.
            for run in seen.backfill_jobs("rederive").iter().map(|j| &j.run).collect::<BTreeSet<_>>() {
                let of = |step: &str| {
                    seen.backfill_jobs("rederive")
                        .into_iter()
                        .find(|j| &j.run == run && j.step == step)
                        .unwrap()
                        .created
                };
                assert!(of("curate") >= of("stage"), "run {run}");
            }
            let peak = seen.peak(|_| true);
            assert_eq!(peak.pods, 1, "one pod at a time under the LimitRange default: {peak:?}");
        }
        assert!(quota_refusals(&client, n).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_failing_partition_is_retried_then_recorded_and_stops_the_backfill() {
    sluice_e2e::in_namespace("bf-fail", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = usage::watch(&client, n);
        ns.apply(&backfill_only(Some("100m"), "300ms", true)).await;
        ns.apply(&backfill(
            "history",
            json!({
                "pipelineRef": {"name": "orders"}, "range": hours(3), "parallelism": 1,
                "failurePolicy": {"retriesPerPartition": 1, "maxFailedPartitions": 2}
            }),
        ))
        .await;
        let b = wait_condition(&client, n, "history", "Failed", "True", Duration::from_secs(60)).await;
        assert_eq!(condition(&b, "Failed").unwrap().1, "MaxFailedPartitionsReached");
        let status = b.status.clone().unwrap();
        let counts = status.partitions.unwrap();
        assert_eq!((counts.failed, counts.succeeded, counts.pending), (2, 0, 1), "the third window never starts");
        assert_eq!(status.failed_ranges.iter().map(|r| r.count).sum::<i64>(), 2);
        assert_eq!(status.recent_failures.len(), 2);
        assert_eq!(status.recent_failures[0].step.as_deref(), Some("extract"));
        assert_eq!(status.recent_failures[0].reason, "BackoffLimitExceeded");
        assert!(
            status.recent_failures[0].message.as_deref().unwrap_or_default().contains("BackoffLimitExceeded"),
            "{:?}",
            status.recent_failures
        );
        usage::caught_up(&seen, &client, n).await;
        {
            let seen = seen.lock().unwrap();
            let jobs = seen.backfill_jobs("history");
            let attempts: BTreeMap<&str, BTreeSet<&str>> = jobs.iter().fold(BTreeMap::new(), |mut m, j| {
                m.entry(j.run.as_str()).or_default().insert(j.attempt.as_str());
                m
            });
            assert_eq!(attempts.len(), 2, "{attempts:?}");
            assert!(attempts.values().all(|a| a == &BTreeSet::from(["0", "1"])), "one retry each: {attempts:?}");
            // Backoff: the retry starts at least 1 s after the first attempt.
            for run in attempts.keys() {
                let at = |a: &str| jobs.iter().find(|j| j.run == *run && j.attempt == a).unwrap().created;
                assert!(at("1").duration_since(at("0")) >= SignedDuration::from_secs(1), "run {run}");
            }
        }
        // The failed partitions' Jobs are kept for inspection.
        assert_eq!(live_jobs(&client, n).await.len(), 4);
        let events: Api<Event> = Api::namespaced(client.clone(), n);
        let warnings: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter_map(|e| e.reason)
            .collect();
        assert!(
            warnings.iter().any(|r| r == "PartitionFailed")
                && warnings.iter().any(|r| r == "MaxFailedPartitionsReached"),
            "{warnings:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn deleting_a_backfill_stops_its_running_jobs() {
    sluice_e2e::in_namespace("bf-delete", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&backfill_only(Some("100m"), "10m", false)).await;
        ns.apply(&backfill("history", json!({"pipelineRef": {"name": "orders"}, "range": hours(4), "parallelism": 2})))
            .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), n);
        let running = wait::settle(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                pods.list(&ListParams::default())
                    .await
                    .expect("pods")
                    .items
                    .iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                    .count()
            },
            |running| *running == 2,
        )
        .await;
        assert_eq!(running, 2);
        backfills(&client, n).delete("history", &DeleteParams::background()).await.expect("delete");
        // The garbage collector removes them; under load that takes a while.
        let left = wait::settle(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                (live_jobs(&client, n).await.len(), pods.list(&ListParams::default()).await.expect("pods").items.len())
            },
            |left| *left == (0, 0),
        )
        .await;
        assert_eq!(left, (0, 0), "(Jobs, pods) left after deleting the Backfill");
    })
    .await;
}
