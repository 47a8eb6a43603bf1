//! The Pipeline controller on a real control plane: runs as Jobs in dependency order, retries,
//! concurrency policy, history, suspend, and no duplicate launches across an operator restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::{wait, yaml};

fn pipelines(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    yaml::sluice_api(client, ns, "Pipeline")
}

/// A step whose fake pod runs `duration` and succeeds, or fails when `fail`.
fn step(name: &str, deps: &[&str], duration: &str, fail: bool, retries: Value) -> Value {
    let mut annotations = json!({"kwok.sluice.dev/duration": duration});
    if fail {
        annotations["kwok.sluice.dev/outcome"] = json!("fail");
    }
    json!({
        "name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" },
        "dependsOn": deps, "retries": retries,
        "template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                                              "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}
    })
}

fn pipeline(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec})
}

async fn jobs(client: &kube::Client, ns: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("jobs").items
}

fn label<'a>(job: &'a Job, key: &str) -> &'a str {
    job.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str).unwrap_or_default()
}

async fn status(client: &kube::Client, ns: &str, name: &str) -> Value {
    serde_json::to_value(pipelines(client, ns).get(name).await.expect("pipeline")).expect("json")["status"].clone()
}

async fn wait_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool + Send + 'static,
) -> Value {
    let obj = wait::until(&pipelines(client, ns), name, Duration::from_secs(120), what, move |o: &DynamicObject| {
        check(&serde_json::to_value(o).expect("json")["status"])
    })
    .await;
    serde_json::to_value(obj).expect("json")["status"].clone()
}

async fn annotate(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    pipelines(client, ns).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
}

#[tokio::test]
async fn a_manual_run_executes_steps_in_dependency_order() {
    sluice_e2e::in_namespace("order", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        // Yearly schedule: nothing runs unless asked to.
        ns.apply(&pipeline(
            "orders",
            json!({
                "schedule": "0 0 1 1 *",
                "steps": [step("extract", &[], "1s", false, json!({})),
                          step("stage", &["extract"], "1s", false, json!({})),
                          step("curate", &["stage"], "1s", false, json!({}))]
            }),
        ))
        .await;
        wait_status(&client, n, "orders", "Ready", |s| {
            wait::condition(&json!({"status": s}), "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
        annotate(&client, n, "orders", "sluice.dev/run-now", "1").await;

        let st = wait_status(&client, n, "orders", "one run Succeeded", |s| {
            s["recentRuns"].as_array().is_some_and(|r| r.iter().any(|r| r["phase"] == "Succeeded"))
        })
        .await;
        let run = &st["recentRuns"][0];
        assert_eq!(run["manual"], true);
        let run_id = run["id"].as_str().unwrap().to_string();
        assert!(run_id.contains("-manual-"), "{run_id}");

        let all = jobs(&client, n).await;
        assert_eq!(
            all.len(),
            3,
            "one Job per step: {:?}",
            all.iter().map(|j| j.metadata.name.clone()).collect::<Vec<_>>()
        );
        let by_step: BTreeMap<&str, &Job> = all.iter().map(|j| (label(j, "sluice.dev/step"), j)).collect();
        let created = |s: &str| by_step[s].metadata.creation_timestamp.clone().unwrap().0;
        let completed = |s: &str| by_step[s].status.as_ref().unwrap().completion_time.clone().unwrap().0;
        assert!(created("stage") >= completed("extract"), "stage started before extract finished");
        assert!(created("curate") >= completed("stage"), "curate started before stage finished");

        // The Job carries the owner, the labels and the environment contract.
        let job = by_step["extract"];
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Pipeline", "orders", Some(true)));
        assert_eq!(label(job, "sluice.dev/run"), run_id);
        let env: BTreeMap<String, String> = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect();
        for key in [
            "SLUICE_PIPELINE",
            "SLUICE_RUN_ID",
            "SLUICE_STEP",
            "SLUICE_PARTITION_START",
            "SLUICE_PARTITION_END",
            "SLUICE_INPUTS",
            "SLUICE_OUTPUTS",
            "SLUICE_ATTEMPT",
        ] {
            assert!(env.contains_key(key), "missing {key}");
        }
        assert_eq!(env["SLUICE_RUN_ID"], run_id);
        assert_eq!(env["SLUICE_PARTITION_START"], run["window"]["start"].as_str().unwrap());

        // The same annotation value does not start a second run. An annotation alone does not
        // bump the generation, so the same patch changes a field that does not matter here (the
        // deadline of scheduled runs): once the status is at that generation, the operator has
        // reconciled the object with the old run-now value, and any run it started would be in
        // that status (written before its Jobs).
        let patch = json!({"metadata": {"annotations": {"touch": "x"}}, "spec": {"startingDeadlineSeconds": 3600}});
        let touched =
            pipelines(&client, n).patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("touch");
        let generation = touched.metadata.generation;
        let st = wait_status(&client, n, "orders", "reconciled at the touched generation", move |s| {
            s["observedGeneration"].as_i64() == generation
        })
        .await;
        assert_eq!(st["lastManualTrigger"], "1");
        assert_eq!(jobs(&client, n).await.len(), 3);
        let conditions = json!({"status": st});
        assert_eq!(wait::condition(&conditions, "Degraded").unwrap().0, "False");
        assert_eq!(wait::condition(&conditions, "Running").unwrap().0, "False");
    })
    .await;
}

#[tokio::test]
async fn scheduled_runs_follow_the_cron_and_keep_history() {
    sluice_e2e::in_namespace("schedule", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        // Every 5 seconds (six-field cron), keep the Jobs of 1 successful run.
        ns.apply(&pipeline(
            "tick",
            json!({
                "schedule": "*/5 * * * * *",
                "history": {"successful": 1, "failed": 1},
                "steps": [step("extract", &[], "500ms", false, json!({}))]
            }),
        ))
        .await;
        let st = wait_status(&client, n, "tick", "3 runs Succeeded", |s| {
            s["recentRuns"].as_array().is_some_and(|r| r.iter().filter(|r| r["phase"] == "Succeeded").count() >= 3)
        })
        .await;
        // Windows are consecutive 5 s intervals: every one between the oldest and the newest
        // recorded run is either a finished run or a skipped one (Forbid skips a window whose
        // tick finds the previous run still active, as the CronJob controller does). None is lost.
        let mut windows: Vec<(String, String)> = ["recentRuns", "skippedRuns", "activeRuns"]
            .iter()
            .flat_map(|list| st[*list].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (r["window"]["start"].as_str().unwrap().to_string(), r["window"]["end"].as_str().unwrap().to_string())
            })
            .collect();
        windows.sort();
        windows.dedup();
        let at = |t: &str| t.parse::<jiff::Timestamp>().expect("timestamp").as_second();
        let unrecorded: i64 = windows.windows(2).map(|pair| (at(&pair[1].0) - at(&pair[0].1)) / 5).sum();
        let missed = st["missedWindows"].as_i64().unwrap_or(0);
        assert!(unrecorded <= missed, "{unrecorded} windows neither run, skipped nor counted missed: {st:#?}");
        assert!(st["lastScheduleTime"].is_string() && st["nextScheduleTime"].is_string());
        // History: only the newest successful run's Job is kept (older ones are deleted).
        suspend(&client, n, "tick").await;
        let kept = wait::settle(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async {
                let live: BTreeSet<String> = jobs(&client, n)
                    .await
                    .iter()
                    .filter(|j| j.metadata.deletion_timestamp.is_none())
                    .map(|j| label(j, "sluice.dev/run").to_string())
                    .collect();
                live.len()
            },
            |kept| *kept <= 1,
        )
        .await;
        assert!(kept <= 1, "history.successful=1 keeps at most one run's Jobs, found {kept}");
    })
    .await;
}

async fn suspend(client: &kube::Client, ns: &str, name: &str) {
    let patch = json!({"spec": {"suspend": true}});
    pipelines(client, ns).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("suspend");
    let generation = pipelines(client, ns).get(name).await.expect("get").metadata.generation;
    wait_status(client, ns, name, "Suspended", move |s| {
        s["observedGeneration"].as_i64() == generation
            && wait::condition(&json!({"status": s}), "Suspended").is_some_and(|c| c.0 == "True")
    })
    .await;
}

#[tokio::test]
async fn a_failing_step_is_retried_then_fails_the_run_and_skips_dependents() {
    sluice_e2e::in_namespace("retry", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&pipeline("flaky", json!({
            "schedule": "0 0 1 1 *",
            "steps": [step("extract", &[], "300ms", true, json!({"limit": 2, "backoffSeconds": 1, "maxBackoffSeconds": 2})),
                      step("stage", &["extract"], "300ms", false, json!({}))]
        }))).await;
        annotate(&client, n, "flaky", "sluice.dev/run-now", "go").await;
        let st = wait_status(&client, n, "flaky", "run Failed", |s| {
            s["recentRuns"].as_array().is_some_and(|r| r.iter().any(|r| r["phase"] == "Failed"))
        })
        .await;
        let run = &st["recentRuns"][0];
        assert_eq!(run["failedStep"], "extract");
        let degraded = wait::condition(&json!({"status": st}), "Degraded").unwrap();
        assert_eq!((degraded.0.as_str(), degraded.1.as_str()), ("True", "RunFailed"));
        assert!(degraded.2.contains("extract"), "{}", degraded.2);

        let all = jobs(&client, n).await;
        let attempts: BTreeSet<&str> = all.iter().filter(|j| label(j, "sluice.dev/step") == "extract").map(|j| label(j, "sluice.dev/attempt")).collect();
        assert_eq!(attempts, BTreeSet::from(["0", "1", "2"]), "three attempts, one Job each");
        assert!(all.iter().all(|j| label(j, "sluice.dev/step") != "stage"), "the dependent step never started");
        // Backoff: attempt 2 starts at least 2 s after attempt 1 finished (1 s doubled).
        let job = |a: &str| all.iter().find(|j| label(j, "sluice.dev/attempt") == a).unwrap();
        let failed_at = |j: &Job| j.status.as_ref().unwrap().conditions.as_ref().unwrap().iter()
            .find(|c| c.type_ == "Failed").unwrap().last_transition_time.clone().unwrap().0;
        let gap = job("2").metadata.creation_timestamp.clone().unwrap().0.duration_since(failed_at(job("1")));
        assert!(gap.as_secs_f64() >= 1.0, "backoff before attempt 2 was {gap:?}");
    })
    .await;
}

#[tokio::test]
async fn forbid_skips_windows_while_a_run_is_active() {
    sluice_e2e::in_namespace("forbid", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&pipeline(
            "slow",
            json!({
                "schedule": "*/2 * * * * *",
                "concurrency": {"maxConcurrentRuns": 1, "policy": "Forbid"},
                "steps": [step("extract", &[], "7s", false, json!({}))]
            }),
        ))
        .await;
        let st = wait_status(&client, n, "slow", "a skipped window", |s| {
            s["skippedRuns"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["phase"] == "Skipped" && r["reason"] == "ConcurrencyLimit"))
        })
        .await;
        assert!(st["activeRunCount"].as_i64().unwrap_or(0) <= 1);
        suspend(&client, n, "slow").await;
        let runs: BTreeSet<String> =
            jobs(&client, n).await.iter().map(|j| label(j, "sluice.dev/run").to_string()).collect();
        assert!(runs.len() <= 2, "at most one run at a time over ~8 s: {runs:?}");
    })
    .await;
}

#[tokio::test]
async fn queue_runs_due_windows_in_order_as_slots_free() {
    sluice_e2e::in_namespace("queue", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&pipeline(
            "queued",
            json!({
                "schedule": "*/2 * * * * *",
                "concurrency": {"maxConcurrentRuns": 1, "policy": "Queue", "maxQueued": 2},
                "steps": [step("extract", &[], "3s", false, json!({}))]
            }),
        ))
        .await;
        let st = wait_status(&client, n, "queued", "queued windows and 2 runs done", |s| {
            s["recentRuns"].as_array().is_some_and(|r| r.iter().filter(|r| r["phase"] == "Succeeded").count() >= 2)
        })
        .await;
        assert!(st["queuedWindows"].as_array().map_or(0, |q| q.len()) <= 2, "the queue is bounded");
        suspend(&client, n, "queued").await;
        let st = status(&client, n, "queued").await;
        let done: Vec<&Value> =
            st["recentRuns"].as_array().unwrap().iter().filter(|r| r["phase"] == "Succeeded").collect();
        // Queued windows run oldest first: finished runs, newest first, have decreasing windows.
        for pair in done.windows(2) {
            assert!(pair[0]["window"]["start"].as_str() > pair[1]["window"]["start"].as_str(), "{done:#?}");
        }
    })
    .await;
}

#[tokio::test]
async fn two_operators_at_once_never_launch_the_same_work_twice() {
    sluice_e2e::in_namespace("duplicate", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        // A second replica without leader election: both act on every Pipeline of this
        // namespace (only: other tests running meanwhile keep one operator).
        let kubeconfig = sluice_e2e::cluster::kubeconfig();
        let only = n.to_string();
        let (mut second, addr) = tokio::task::spawn_blocking(move || {
            sluice_e2e::operator::spawn_operator(&kubeconfig, "operator-duplicate", &["--namespace", &only])
        })
        .await
        .expect("spawned");
        sluice_e2e::operator::wait_ready(&addr).await;
        ns.apply(&pipeline("twice", json!({
            "schedule": "*/2 * * * * *",
            "concurrency": {"maxConcurrentRuns": 3},
            "history": {"successful": 100},
            "steps": [step("extract", &[], "300ms", false, json!({})), step("stage", &["extract"], "300ms", false, json!({}))]
        }))).await;
        wait_status(&client, n, "twice", "4 runs Succeeded", |s| {
            s["recentRuns"].as_array().is_some_and(|r| r.iter().filter(|r| r["phase"] == "Succeeded").count() >= 4)
        })
        .await;
        let _ = second.kill();
        let _ = second.wait();
        suspend(&client, n, "twice").await;

        let all = jobs(&client, n).await;
        let mut per_run: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for j in &all {
            per_run.entry(label(j, "sluice.dev/run").to_string()).or_default()
                .push((label(j, "sluice.dev/step").to_string(), label(j, "sluice.dev/attempt").to_string()));
        }
        for (run, steps) in &per_run {
            let mut sorted = steps.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), steps.len(), "run {run} has duplicate Jobs: {steps:?}");
            assert!(steps.iter().all(|(_, attempt)| attempt == "0"), "no retries were needed: {steps:?}");
        }
        // Distinct runs never cover overlapping windows.
        let mut windows: Vec<(String, String)> = all.iter().map(|j| {
            let a = j.metadata.annotations.as_ref().unwrap();
            (a["sluice.dev/window-start"].clone(), a["sluice.dev/window-end"].clone())
        }).collect();
        windows.sort();
        windows.dedup();
        for pair in windows.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlapping windows {pair:?}");
        }
        assert_eq!(windows.len(), per_run.len());
    })
    .await;
}
