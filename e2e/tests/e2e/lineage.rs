//! OpenLineage events of the shared operator, collected by the loopback receiver in
//! `sluice_e2e::lineage` (which refuses every fourth request, so retries happen): a run of two
//! steps, a failing step with a retry, and a run stopped by Replace. Every event is then checked
//! by the official OpenLineage Python client.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

const YEARLY: &str = "0 0 1 1 *";

fn step(name: &str, deps: &[&str], io: Value, annotations: Value) -> Value {
    json!({
        "name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" },
        "dependsOn": deps, "inputs": io.get("inputs").cloned().unwrap_or(json!([])),
        "outputs": io.get("outputs").cloned().unwrap_or(json!([])),
        "retries": {"limit": 1, "backoffSeconds": 1},
        "template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}
    })
}

fn pipeline(name: &str, schedule: &str, concurrency: Value, steps: Vec<Value>) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"schedule": schedule, "concurrency": concurrency, "steps": steps}})
}

async fn run_now(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": value}}});
    let api: Api<DynamicObject> = yaml::sluice_api(client, ns, "Pipeline");
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("run-now");
}

/// The events of `job` (`<pipeline>.<step>`) in the namespace `sluice/<ns>`, in arrival order.
fn events_of(ns: &str, job: &str) -> Vec<(Option<String>, Value)> {
    sluice_e2e::lineage::events()
        .into_iter()
        .filter(|r| r.event["job"]["namespace"] == format!("sluice/{ns}") && r.event["job"]["name"] == job)
        .map(|r| (r.authorization, r.event))
        .collect()
}

fn types(events: &[(Option<String>, Value)]) -> Vec<String> {
    events.iter().map(|(_, e)| e["eventType"].as_str().unwrap_or_default().to_string()).collect()
}

/// Waits until `check` holds for the events of `job`.
async fn wait_events(
    ns: &str,
    job: &str,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<(Option<String>, Value)> {
    let done = |events: &Vec<(Option<String>, Value)>| check(&types(events));
    let events = wait::settle(
        Duration::from_secs(120),
        Duration::from_millis(200),
        || std::future::ready(events_of(ns, job)),
        done,
    )
    .await;
    assert!(done(&events), "{job}: waited 120s for {what}; got {:?}", types(&events));
    events
}

async fn jobs_by_uid(client: &kube::Client, ns: &str) -> BTreeMap<String, Job> {
    let jobs = Api::<Job>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("jobs").items;
    jobs.into_iter().map(|j| (j.metadata.uid.clone().unwrap(), j)).collect()
}

/// The events grouped by runId, in arrival order, as event types.
fn by_run(events: &[(Option<String>, Value)]) -> BTreeMap<String, Vec<String>> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, e) in events {
        runs.entry(e["run"]["runId"].as_str().unwrap().to_string())
            .or_default()
            .push(e["eventType"].as_str().unwrap().into());
    }
    runs
}

#[tokio::test]
async fn step_jobs_send_start_then_one_terminal_event_with_datasets_and_facets() {
    let client = sluice_e2e::setup().await;
    if sluice_e2e::operator::shared_http_addr().is_none() {
        eprintln!("skipped: the operator is external, its lineage endpoint is not this test's receiver");
        return;
    }
    with_namespace(&client, "lineage", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        for (name, location) in [("raw", "s3://lake/raw/orders/"), ("mart", "warehouse.marts.revenue")] {
            let dataset = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name},
                "spec": {"owner": "team-a", "layer": "Raw", "location": location}});
            ns.apply(&dataset).await;
        }
        let report = json!({"rowsWritten": 42, "schema": [{"name": "id", "type": "bigint"}]}).to_string();
        let steps = vec![
            step("extract", &[], json!({"outputs": ["raw"]}), json!({"kwok.sluice.dev/duration": "500ms"})),
            step(
                "curate",
                &["extract"],
                json!({"inputs": ["raw"], "outputs": ["mart"]}),
                json!({"kwok.sluice.dev/duration": "500ms", "kwok.sluice.dev/termination-message": report}),
            ),
        ];
        ns.apply(&pipeline("orders", YEARLY, json!({}), steps)).await;
        let failing = vec![step(
            "load",
            &[],
            json!({}),
            json!({"kwok.sluice.dev/duration": "300ms", "kwok.sluice.dev/outcome": "fail"}),
        )];
        ns.apply(&pipeline("failing", YEARLY, json!({}), failing)).await;
        let slow = vec![step("slow", &[], json!({}), json!({"kwok.sluice.dev/duration": "300s"}))];
        // Every 5 s, each run replacing the one before (a manual run would start beside it).
        let replace = json!({"maxConcurrentRuns": 1, "policy": "Replace"});
        ns.apply(&pipeline("replaced", "*/5 * * * * *", replace, slow)).await;
        for name in ["orders", "failing"] {
            run_now(&client, n, name, "1").await;
        }

        // A run of two steps: START then COMPLETE for each, extract finished before curate starts.
        let extract = wait_events(n, "orders.extract", "START, COMPLETE", |t| t.len() >= 2).await;
        let curate = wait_events(n, "orders.curate", "START, COMPLETE", |t| t.len() >= 2).await;
        assert_eq!(types(&extract), ["START", "COMPLETE"]);
        assert_eq!(types(&curate), ["START", "COMPLETE"]);
        let jobs = jobs_by_uid(&client, n).await;
        for (auth, e) in extract.iter().chain(&curate) {
            assert_eq!(auth.as_deref(), Some("Bearer e2e-lineage-key"), "the API key is sent");
            let run_id = e["run"]["runId"].as_str().unwrap();
            let job = jobs
                .values()
                .find(|j| sluice::lineage::event::job_run_id(j.metadata.uid.as_deref().unwrap()).to_string() == run_id)
                .unwrap_or_else(|| panic!("runId {run_id} is the UUID v5 of one of the Jobs' UIDs"));
            let window = job.metadata.annotations.as_ref().unwrap();
            let nominal = &e["run"]["facets"]["nominalTime"];
            assert_eq!(nominal["nominalStartTime"], window["sluice.dev/window-start"].as_str());
            assert_eq!(nominal["nominalEndTime"], window["sluice.dev/window-end"].as_str());
            let parent = &e["run"]["facets"]["parent"];
            assert_eq!(parent["job"], json!({"namespace": format!("sluice/{n}"), "name": "orders"}));
            assert_eq!(
                parent["run"]["runId"], curate[0].1["run"]["facets"]["parent"]["run"]["runId"],
                "one parent run"
            );
            assert!(e["run"]["facets"].get("errorMessage").is_none());
        }
        assert_eq!(extract[0].1["job"]["facets"]["jobType"]["jobType"], "EXTRACT");
        assert_eq!(
            extract[0].1["outputs"],
            json!([{"namespace": "s3://lake", "name": "raw/orders", "facets": {}, "outputFacets": {}}])
        );
        assert_eq!(curate[1].1["inputs"], json!([{"namespace": "s3://lake", "name": "raw/orders", "facets": {}}]));
        let out = &curate[1].1["outputs"][0];
        assert_eq!(
            (out["namespace"].as_str(), out["name"].as_str()),
            (Some(format!("sluice/{n}").as_str()), Some("warehouse.marts.revenue"))
        );
        assert_eq!(out["facets"]["schema"]["fields"], json!([{"name": "id", "type": "bigint"}]));
        assert_eq!(out["outputFacets"]["outputStatistics"]["rowCount"], 42);
        let time = |e: &Value| e["eventTime"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        assert!(time(&extract[1].1) <= time(&curate[0].1), "curate started after extract completed");
        assert!(time(&curate[0].1) <= time(&curate[1].1));

        // A failing step retried once: two Jobs, two runs, each START then FAIL with the reason.
        let failed =
            wait_events(n, "failing.load", "two runs failed", |t| t.iter().filter(|x| *x == "FAIL").count() == 2).await;
        let runs = by_run(&failed);
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(runs.values().all(|r| r == &["START", "FAIL"]), "{runs:?}");
        for (_, e) in failed.iter().filter(|(_, e)| e["eventType"] == "FAIL") {
            let message = e["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
            assert!(message.contains("BackoffLimitExceeded"), "{message}");
        }

        // Replace: the running Job of the first run is deleted, so its run is aborted.
        // The replacing run's START is delivered on its own (per-run order only), maybe after a
        // retry: wait for it too.
        let replaced = wait_events(n, "replaced.slow", "an ABORT and the replacing run's START", |t| {
            t.iter().any(|x| x == "ABORT") && t.iter().filter(|x| *x == "START").count() >= 2
        })
        .await;
        let runs = by_run(&replaced);
        assert!(runs.values().any(|r| r == &["START", "ABORT"]), "the replaced run: START then ABORT: {runs:?}");
        assert!(runs.len() >= 2, "the replacing run started: {runs:?}");
        assert!(runs.values().all(|r| r == &["START"] || r == &["START", "ABORT"]), "{runs:?}");
        let stop = json!({"spec": {"suspend": true}});
        yaml::sluice_api(&client, n, "Pipeline")
            .patch("replaced", &PatchParams::default(), &Patch::Merge(&stop))
            .await
            .expect("suspend");

        // Nothing was sent twice, and the official client accepts every event unchanged.
        let all: Vec<Value> = sluice_e2e::lineage::events()
            .into_iter()
            .filter(|r| r.event["job"]["namespace"] == format!("sluice/{n}"))
            .map(|r| r.event)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for e in &all {
            assert!(seen.insert((e["run"]["runId"].to_string(), e["eventType"].to_string())), "sent twice: {e}");
        }
        let report = tokio::task::spawn_blocking(move || sluice_e2e::lineage::validate_with_openlineage_client(&all))
            .await
            .expect("joined");
        match report {
            Ok(report) => eprintln!("{report}"),
            Err(report) => panic!("the OpenLineage client rejects an event: {report}"),
        }
        let addr = sluice_e2e::operator::shared_http_addr().unwrap();
        let (_, metrics) = sluice_e2e::operator::http_get(addr, "/metrics").await.expect("metrics");
        // The shared operator sends the events of every test to the same flaky receiver, so
        // drops are not this test's to count: its own events all arrived (above). The drop
        // counters must be exported.
        assert!(metrics.contains(r#"sluice_lineage_events_dropped_total{reason="queue_full"}"#), "{metrics}");
        assert!(metrics.contains(r#"sluice_lineage_events_dropped_total{reason="delivery_failed"}"#), "{metrics}");
        assert!(metrics.contains("sluice_lineage_delivery_retries_total{"), "the receiver's 503s were retried");
    })
    .await;
}
