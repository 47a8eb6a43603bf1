//! Exactly once on a real API server: many Pipelines that keep no history on a seconds schedule,
//! so every finished run's Jobs are deleted right after it is recorded. Before the status was
//! written with a `resourceVersion` precondition, a reconcile that saw the delete events before
//! its own status write relaunched the run (29 of about 620 windows twice in 60 s, issue 10).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::json;
use sluice_e2e::{usage, wait, yaml};

const PIPELINES: usize = 20;
const RUN_FOR: Duration = Duration::from_secs(60);

fn pipeline(name: &str) -> serde_json::Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": "*/2 * * * * *", "history": {"successful": 0, "failed": 0},
                 "concurrency": {"maxConcurrentRuns": 2},
                 "steps": [{"name": "extract", "kind": "Extract",
                            "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "300ms"}},
                                         "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}})
}

/// The sum over this namespace's pipelines of a counter's samples.
fn counter(metrics: &str, name: &str, namespace: &str) -> f64 {
    let ns = format!("namespace=\"{namespace}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&ns))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn history_zero_pipelines_on_a_seconds_schedule_never_create_a_job_name_twice() {
    sluice_e2e::in_namespace("once", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = usage::watch(&client, n);
        for i in 0..PIPELINES {
            ns.apply(&pipeline(&format!("p{i:02}"))).await;
        }
        tokio::time::sleep(RUN_FOR).await;
        // Suspend them all; once each status is Suspended at its new generation with no run
        // active, the operator has stopped starting runs (a run it started would be in that
        // status). Then the watch must have caught up with the Jobs the API server lists.
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        for i in 0..PIPELINES {
            let patch = json!({"spec": {"suspend": true}});
            let suspended = pipelines
                .patch(&format!("p{i:02}"), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .expect("suspend");
            let generation = suspended.metadata.generation;
            wait::until(&pipelines, &format!("p{i:02}"), Duration::from_secs(30), "suspended and idle", move |o| {
                let v = serde_json::to_value(o).expect("json");
                v["status"]["observedGeneration"].as_i64() == generation
                    && wait::condition(&v, "Suspended").is_some_and(|c| c.0 == "True")
                    && v["status"]["activeRunCount"] == 0
            })
            .await;
        }
        usage::caught_up(&seen, &client, n).await;

        let seen = seen.lock().unwrap().jobs().cloned().collect::<Vec<_>>();
        let mut creations: BTreeMap<&str, usize> = BTreeMap::new();
        for job in &seen {
            *creations.entry(job.name.as_str()).or_default() += 1;
        }
        let twice: Vec<(&&str, &usize)> = creations.iter().filter(|(_, c)| **c > 1).collect();
        println!("{} Jobs created for {} names; created more than once: {}", seen.len(), creations.len(), twice.len());
        assert!(creations.len() >= PIPELINES * 5, "too few runs to tell anything: {}", creations.len());
        assert!(twice.is_empty(), "Job names created more than once: {twice:?}");

        // Windows not run are counted, not lost: missed (catch-up) or skipped (concurrency).
        let list = yaml::sluice_api(&client, n, "Pipeline").list(&Default::default()).await.expect("pipelines");
        let (mut missed, mut skipped) = (0, 0);
        for p in &list.items {
            let status = &serde_json::to_value(p).expect("json")["status"];
            missed += status["missedWindows"].as_i64().unwrap_or(0);
            skipped += status["skippedRuns"].as_array().map_or(0, Vec::len);
        }
        println!("windows missed {missed}, skipped records {skipped}");

        if let Some(addr) = sluice_e2e::operator::shared_http_addr() {
            let (_, metrics) = sluice_e2e::operator::http_get(addr, "/metrics").await.expect("metrics");
            let started = counter(&metrics, "sluice_runs_started_total", n);
            let finished = counter(&metrics, "sluice_runs_finished_total", n);
            println!("runs started {started}, finished {finished}");
            assert!(finished <= started, "runs finished {finished} > started {started}: a run recorded twice");
            assert!(started >= creations.len() as f64, "every Job name is one run's step: {started} started");
        }
    })
    .await;
}

/// What the watches saw: the resourceVersion at which each producing Job began to go, and the
/// Dataset's checked-run marker at each of its resourceVersions.
#[derive(Default)]
struct Seen {
    /// Job name -> (finish time, run id, resourceVersion of its first deletion event).
    deleted: BTreeMap<String, (String, String, u64)>,
    /// (resourceVersion, finish time, run id) of each Dataset status seen.
    checked: Vec<(u64, String, String)>,
    /// The Jobs the watch takes to exist (until their Delete event).
    live: BTreeSet<String>,
}

fn rv(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

/// Keeps `live` to the Jobs that exist as far as the watch has seen.
fn track_live(live: &mut BTreeSet<String>, event: &kube::runtime::watcher::Event<Job>) {
    use kube::runtime::watcher::Event;
    match event {
        Event::Init => live.clear(),
        Event::Apply(j) | Event::InitApply(j) => {
            live.insert(j.metadata.name.clone().unwrap_or_default());
        }
        Event::Delete(j) => {
            live.remove(j.metadata.name.as_deref().unwrap_or_default());
        }
        Event::InitDone => {}
    }
}

/// Records the deletion of `ns`'s Jobs and the Dataset `raw`'s `lastCheckedRun` over time.
fn watch_deletions_and_checks(client: &kube::Client, ns: &str) -> Arc<Mutex<Seen>> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (into, jobs) = (seen.clone(), Api::<Job>::namespaced(client.clone(), ns));
    tokio::spawn(async move {
        let mut stream = watcher(jobs, watcher::Config::default()).default_backoff().boxed();
        while let Some(Ok(event)) = stream.next().await {
            track_live(&mut into.lock().unwrap().live, &event);
            let (job, gone) = match event {
                watcher::Event::Apply(j) => (j.clone(), j.metadata.deletion_timestamp.is_some()),
                watcher::Event::Delete(j) => (j, true),
                _ => continue,
            };
            let finished = job.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0.to_string());
            let run = job.metadata.labels.as_ref().and_then(|l| l.get("sluice.dev/run").cloned());
            if let (true, Some(finished), Some(run)) = (gone, finished, run) {
                let name = job.metadata.name.clone().unwrap_or_default();
                into.lock().unwrap().deleted.entry(name).or_insert((finished, run, rv(&job.metadata)));
            }
        }
    });
    let (into, datasets) = (seen.clone(), yaml::sluice_api(client, ns, "Dataset"));
    tokio::spawn(async move {
        let mut stream = watcher(datasets, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(Ok(d)) = stream.next().await {
            let status = serde_json::to_value(&d).expect("json")["status"]["lastCheckedRun"].clone();
            if let (Some(f), Some(r)) = (status["finished"].as_str(), status["run"].as_str()) {
                into.lock().unwrap().checked.push((rv(&d.metadata), f.to_string(), r.to_string()));
            }
        }
    });
    seen
}

/// A Pipeline that keeps no history deletes a run's Jobs right after recording it; a producing
/// Job must still be read by its output Dataset first, or the run's watermark and report are
/// lost. Proven from the watches: every producing Job began to go only after (in etcd's order
/// of resourceVersions) the Dataset recorded a checked-run marker at or past that Job's run.
#[tokio::test]
async fn history_zero_producing_jobs_go_only_after_their_dataset_checked_them() {
    sluice_e2e::in_namespace("oncedata", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = watch_deletions_and_checks(&client, n);
        let dataset = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "raw"},
            "spec": {"owner": "team-a", "layer": "Raw"}});
        ns.apply(&dataset).await;
        let mut producer = pipeline("ingest");
        producer["spec"]["steps"][0]["outputs"] = json!(["raw"]);
        ns.apply(&producer).await;
        // Run until enough producing Jobs went (however loaded the machine is), at most 2 min.
        wait::settle(
            Duration::from_secs(120),
            Duration::from_millis(500),
            || std::future::ready(seen.lock().unwrap().deleted.len()),
            |deleted| *deleted >= 6,
        )
        .await;
        let patch = json!({"spec": {"suspend": true}});
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        pipelines
            .patch("ingest", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("suspend");
        wait::until(&pipelines, "ingest", Duration::from_secs(30), "suspended and idle", |o| {
            let v = serde_json::to_value(o).expect("json");
            wait::condition(&v, "Suspended").is_some_and(|c| c.0 == "True") && v["status"]["activeRunCount"] == 0
        })
        .await;
        // History 0: every Job goes once its Dataset has checked it; then the watch has seen each
        // one go.
        let jobs = Api::<Job>::namespaced(client.clone(), n);
        wait::settle(
            Duration::from_secs(60),
            Duration::from_millis(500),
            || async { jobs.list(&Default::default()).await.expect("jobs").items.is_empty() },
            |empty| *empty,
        )
        .await;
        wait::poll(Duration::from_secs(30), "the Job watch to see every Job go", || {
            std::future::ready(seen.lock().unwrap().live.is_empty().then_some(()))
        })
        .await;

        let seen = seen.lock().unwrap();
        let early: Vec<&String> =
            seen.deleted
                .iter()
                .filter(|(_, (finished, run, deleted_at))| {
                    !seen.checked.iter().any(|(at, f, r)| {
                        at < deleted_at && (f.as_str(), r.as_str()) >= (finished.as_str(), run.as_str())
                    })
                })
                .map(|(name, _)| name)
                .collect();
        println!("{} producing Jobs deleted, {} before their Dataset checked them", seen.deleted.len(), early.len());
        assert!(seen.deleted.len() >= 6, "too few runs to tell anything: {}", seen.deleted.len());
        assert!(early.is_empty(), "Jobs deleted before their Dataset read them: {early:?}");
    })
    .await;
}
