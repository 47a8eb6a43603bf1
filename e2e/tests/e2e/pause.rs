//! A Backfill that protects a Dataset (`spec.pauseWhen.datasetsStale`) on a real control plane:
//! it admits partitions while the Dataset is fresh, stops admitting new ones once the Dataset
//! turns Stale (its freshness objective passes with no new run), says why in status and an
//! Event, lets the partitions already running finish, and resumes by itself once a new run makes
//! the Dataset fresh again.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::{usage, wait, yaml};

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A yearly Pipeline `ingest` of one step that outputs `daily` and reports `watermark`.
fn producer(watermark: jiff::Timestamp) -> Value {
    let report = json!({"rowsWritten": 1, "watermark": rfc3339(watermark)});
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "ingest"},
        "spec": {"schedule": "0 0 1 1 *", "concurrency": {"maxConcurrentRuns": 5},
            "steps": [{"name": "load", "kind": "Extract", "outputs": ["daily"],
                "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "200ms",
                    "kwok.sluice.dev/termination-message": report.to_string()}},
                    "spec": {"containers": [{"name": "main", "image": "example.com/load:1"}]}}}]}})
}

/// A suspended hourly Pipeline `orders` (only the Backfill runs it) of one 2 s step.
fn orders() -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
        "spec": {"schedule": "0 * * * *", "suspend": true,
            "steps": [{"name": "extract", "kind": "Extract",
                "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "2s"}},
                    "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}})
}

/// Makes `ingest` run once more (a new manual run) with a report of `watermark`.
async fn produce(client: &kube::Client, ns: &str, watermark: jiff::Timestamp, run: &str) {
    yaml::apply(client, ns, &producer(watermark)).await.expect("producer");
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": run}}});
    let pipelines = yaml::sluice_api(client, ns, "Pipeline");
    pipelines.patch("ingest", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("run-now");
}

/// How far ahead of now a report's watermark is set: the Dataset stays Fresh for maxAge (12 s)
/// plus this after the template is applied, however long its run takes to be scheduled.
const REPORT_MARGIN: i64 = 15;

fn ahead(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds)
}

fn status(o: &DynamicObject) -> Value {
    o.data["status"].clone()
}

/// Partitions started so far (succeeded, failed or running).
fn started(st: &Value) -> i64 {
    let p = &st["partitions"];
    p["succeeded"].as_i64().unwrap_or(0) + p["failed"].as_i64().unwrap_or(0) + p["running"].as_i64().unwrap_or(0)
}

fn throttle_reason(st: &Value) -> Option<&str> {
    st["throttled"]["reason"].as_str()
}

#[tokio::test]
async fn a_backfill_pauses_while_a_protected_dataset_is_stale_and_resumes_when_fresh() {
    sluice_e2e::in_namespace("pause", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let jobs = usage::watch(&client, n);
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "daily"},
            "spec": {"owner": "team-a", "layer": "Curated", "freshness": {"maxAge": "12s"}}}))
            .await;
        let datasets: Api<DynamicObject> = yaml::sluice_api(&client, n, "Dataset");
        let backfills: Api<DynamicObject> = yaml::sluice_api(&client, n, "Backfill");
        let began = Instant::now();
        // The report's watermark is fixed when the template is applied, before the run: ahead of
        // now by a margin (within the 5 minutes of skew a report may claim) so that a run a
        // loaded machine takes seconds to finish does not leave the Dataset Stale at once.
        produce(&client, n, ahead(REPORT_MARGIN), "1").await;
        wait::until(&datasets, "daily", Duration::from_secs(60), "Fresh", |o: &DynamicObject| {
            o.data["status"]["freshness"]["state"] == "Fresh"
        })
        .await;
        ns.apply(&orders()).await;
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "oct"},
            "spec": {"pipelineRef": {"name": "orders"}, "parallelism": 2,
                "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-03T00:00:00Z"},
                "pauseWhen": {"datasetsStale": ["daily"]}}}))
            .await;
        // Fresh: partitions start.
        wait::until(&backfills, "oct", Duration::from_secs(60), "partitions started", |o: &DynamicObject| {
            started(&status(o)) >= 1
        })
        .await;

        // No run of `ingest`: past maxAge the Dataset turns Stale, and the Backfill says so.
        wait::until(&datasets, "daily", Duration::from_secs(60), "Stale", |o: &DynamicObject| {
            o.data["status"]["freshness"]["state"] == "Stale"
        })
        .await;
        let stale_seen = Instant::now();
        let paused = wait::until(&backfills, "oct", Duration::from_secs(30), "paused", |o: &DynamicObject| {
            throttle_reason(&status(o)) == Some("ProtectedDatasetStale")
        })
        .await;
        let pause_delay = stale_seen.elapsed();
        let st = status(&paused);
        let message = st["throttled"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("Dataset daily is Stale"), "{message}");
        let cond = wait::condition(&paused.data, "Throttled").expect("Throttled condition");
        assert_eq!((cond.0.as_str(), cond.1.as_str()), ("True", "ProtectedDatasetStale"));
        let at_pause = started(&st);
        assert!((1..48).contains(&at_pause), "{st:#}");

        // The partitions running at the pause finish; a decision made after that, with free
        // parallelism and pending windows, still starts nothing new.
        let drained = wait::until(&backfills, "oct", Duration::from_secs(60), "drained", |o: &DynamicObject| {
            let st = status(o);
            st["partitions"]["running"] == 0 && throttle_reason(&st) == Some("ProtectedDatasetStale")
        })
        .await;
        let st = status(&drained);
        assert_eq!(started(&st), at_pause, "no partition started while paused: {st:#}");
        assert!(st["partitions"]["pending"].as_i64().unwrap_or(0) > 0, "{st:#}");
        usage::caught_up(&jobs, &client, n).await;
        let launched = jobs.lock().unwrap().backfill_jobs("oct").len() as i64;
        assert_eq!(launched, at_pause, "one Job per started partition, none created while paused");
        let events = wait::events(&client, n).await;
        let throttled = events.iter().any(|e| {
            e.reason.as_deref() == Some("ProtectedDatasetStale")
                && e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains("Dataset daily is Stale"))
        });
        let notes: Vec<_> = events.iter().map(|e| (e.reason.clone(), e.note.clone())).collect();
        assert!(throttled, "a Throttled Event naming the Dataset: {notes:?}");

        // A new run makes the Dataset fresh again: admission resumes by itself.
        produce(&client, n, ahead(REPORT_MARGIN), "2").await;
        wait::until(&datasets, "daily", Duration::from_secs(60), "Fresh again", |o: &DynamicObject| {
            o.data["status"]["freshness"]["state"] == "Fresh"
        })
        .await;
        let fresh_seen = Instant::now();
        let resumed = wait::until(&backfills, "oct", Duration::from_secs(30), "resumed", |o: &DynamicObject| {
            started(&status(o)) > at_pause
        })
        .await;
        let resume_delay = fresh_seen.elapsed();
        assert_ne!(throttle_reason(&status(&resumed)), Some("ProtectedDatasetStale"));
        wait::poll(Duration::from_secs(10), "a ProtectedDatasetsFresh Event", || async {
            let events = wait::events(&client, n).await;
            events.iter().any(|e| e.reason.as_deref() == Some("ProtectedDatasetsFresh")).then_some(())
        })
        .await;
        println!(
            "pause on stale: paused {:.3}s after the Dataset was seen Stale, resumed {:.3}s after it was seen \
             Fresh; {at_pause} partitions started before the pause; test {:.1}s",
            pause_delay.as_secs_f64(),
            resume_delay.as_secs_f64(),
            began.elapsed().as_secs_f64()
        );
    })
    .await;
}
