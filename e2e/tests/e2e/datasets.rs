//! Datasets on a real control plane: the watermark from step reports, freshness turning Warning
//! and Stale at the deadlines, contracts, data-aware triggers and lineage.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::{wait, yaml};

fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    yaml::sluice_api(client, ns, kind)
}

fn dataset(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name}, "spec": spec})
}

/// A pipeline with one step that outputs `outputs`; its fake pod reports `report`.
fn producer(name: &str, outputs: &[&str], report: &Value, extra: Value) -> Value {
    let mut spec = json!({
        "schedule": "0 0 1 1 *",
        "concurrency": {"maxConcurrentRuns": 5},
        "steps": [{"name": "load", "kind": "Extract", "outputs": outputs,
            "template": {"metadata": {"annotations": {
                "kwok.sluice.dev/duration": "200ms",
                "kwok.sluice.dev/termination-message": report.to_string()}},
                "spec": {"containers": [{"name": "main", "image": "example.com/load:1"}]}}}]
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec})
}

async fn run_now(client: &kube::Client, ns: &str, pipeline: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": value}}});
    api(client, ns, "Pipeline").patch(pipeline, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("run-now");
}

async fn status(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Value {
    serde_json::to_value(api(client, ns, kind).get(name).await.expect("get")).unwrap()["status"].clone()
}

async fn wait_status(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool + Send + 'static,
) -> Value {
    let obj = wait::until(&api(client, ns, kind), name, Duration::from_secs(120), what, move |o: &DynamicObject| {
        check(&serde_json::to_value(o).unwrap()["status"])
    })
    .await;
    serde_json::to_value(obj).unwrap()["status"].clone()
}

fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    wait::condition(&json!({ "status": status }), type_)
}

async fn events_for(client: &kube::Client, ns: &str, name: &str) -> Vec<Event> {
    wait::events(client, ns)
        .await
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[tokio::test]
async fn a_reported_watermark_makes_the_dataset_fresh_then_warning_then_stale_on_time() {
    sluice_e2e::in_namespace("fresh", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&dataset(
            "raw",
            json!({"owner": "team-a", "layer": "Raw", "freshness": {"maxAge": "8s", "warnAfter": "4s"}}),
        ))
        .await;
        // Whole seconds: status times are serialized to the second.
        let watermark = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 2).unwrap();
        let report = json!({"rowsWritten": 1234, "watermark": rfc3339(watermark)});
        ns.apply(&producer("ingest", &["raw"], &report, json!({}))).await;
        run_now(&client, n, "ingest", "1").await;

        let st = wait_status(&client, n, "Dataset", "raw", "Fresh", |s| s["freshness"]["state"] == "Fresh").await;
        assert_eq!(st["rowsWritten"], 1234);
        assert_eq!(st["producedBy"]["pipeline"], "ingest");
        let wm: jiff::Timestamp = st["watermark"].as_str().unwrap().parse().unwrap();
        assert!((wm.as_millisecond() - watermark.as_millisecond()).abs() < 1000, "{wm} vs {watermark}");
        assert_eq!(condition(&st, "ReportValid").unwrap().1, "Reported");

        // Warning at watermark + 4 s, Stale at watermark + 8 s, each within 2 s of its deadline.
        let warn_at: jiff::Timestamp = st["freshness"]["warnAt"].as_str().unwrap().parse().unwrap();
        let stale_at: jiff::Timestamp = st["freshness"]["staleAt"].as_str().unwrap().parse().unwrap();
        let mut seen_warning = None;
        let mut seen_stale = None;
        let deadline = wait::Deadline::after(Duration::from_secs(30), Duration::from_millis(50));
        while seen_stale.is_none() {
            let st = status(&client, n, "Dataset", "raw").await;
            let now = jiff::Timestamp::now();
            match st["freshness"]["state"].as_str() {
                Some("Warning") if seen_warning.is_none() => seen_warning = Some(now),
                Some("Stale") => seen_stale = Some(now),
                _ => {}
            }
            if !deadline.tick().await {
                break;
            }
        }
        let warning_delay = seen_warning.expect("turned Warning").duration_since(warn_at).as_secs_f64();
        let stale_delay = seen_stale.expect("turned Stale").duration_since(stale_at).as_secs_f64();
        println!("freshness transition delay: Warning {warning_delay:.3}s, Stale {stale_delay:.3}s after the deadline");
        assert!((-0.05..2.0).contains(&warning_delay), "Warning {warning_delay}s after warnAt");
        assert!((-0.05..2.0).contains(&stale_delay), "Stale {stale_delay}s after staleAt");
        let st = status(&client, n, "Dataset", "raw").await;
        assert_eq!(condition(&st, "Fresh").unwrap().0, "False");
        let reasons: Vec<String> = events_for(&client, n, "raw").await.into_iter().filter_map(|e| e.reason).collect();
        for r in ["Fresh", "FreshnessWarning", "Stale"] {
            assert!(reasons.iter().any(|x| x == r), "no {r} Event in {reasons:?}");
        }
        // Lineage.
        assert_eq!(st["producers"], json!(["ingest"]));
        // Metrics computed at scrape time from the cache.
        if let Some(addr) = sluice_e2e::operator::shared_http_addr() {
            let (_, metrics) = sluice_e2e::operator::http_get(addr, "/metrics").await.expect("metrics");
            let labels = format!(r#"{{dataset="raw",namespace="{n}",owner="team-a"}}"#);
            assert!(metrics.contains(&format!("sluice_dataset_stale{labels} 1")), "{metrics}");
            assert!(metrics.contains(&format!("sluice_dataset_freshness_objective_seconds{labels} 8")), "{metrics}");
            let age: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("sluice_dataset_freshness_seconds{labels} ")))
                .and_then(|v| v.parse().ok())
                .expect("freshness gauge");
            assert!(age >= 8.0, "age {age}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_old_window_does_not_move_the_watermark_and_a_malformed_report_is_reported() {
    sluice_e2e::in_namespace("oldwindow", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&dataset("raw", json!({"owner": "team-a", "layer": "Raw"}))).await;
        let future = jiff::Timestamp::now();
        ns.apply(&producer("ingest", &["raw"], &json!({"watermark": rfc3339(future)}), json!({}))).await;
        run_now(&client, n, "ingest", "1").await;
        let first = wait_status(&client, n, "Dataset", "raw", "produced", |s| s["watermark"].is_string()).await;

        // A run of an old window (the yearly schedule's window ends 2026-01-01) reporting garbage.
        ns.apply(&producer("ingest", &["raw"], &json!("not a report"), json!({}))).await;
        run_now(&client, n, "ingest", "2").await;
        let st = wait_status(&client, n, "Dataset", "raw", "ReportValid=False", |s| {
            condition(s, "ReportValid").is_some_and(|c| c.0 == "False")
        })
        .await;
        assert_eq!(st["watermark"], first["watermark"], "the old window did not move the watermark");
        assert_eq!(condition(&st, "ReportValid").unwrap().1, "MalformedReport");
        // The Event follows the status write: wait for it.
        let reasons: Vec<String> = wait::settle(
            Duration::from_secs(10),
            Duration::from_millis(250),
            || async { events_for(&client, n, "raw").await.into_iter().filter_map(|e| e.reason).collect() },
            |reasons: &Vec<String>| reasons.iter().any(|r| r == "MalformedReport"),
        )
        .await;
        assert!(reasons.iter().any(|r| r == "MalformedReport"), "{reasons:?}");
    })
    .await;
}

async fn downstream_runs(client: &kube::Client, ns: &str) -> Vec<String> {
    let mut runs: Vec<String> = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("sluice.dev/pipeline=downstream"))
        .await
        .expect("jobs")
        .items
        .iter()
        .filter_map(|j| j.metadata.labels.as_ref()?.get("sluice.dev/run").cloned())
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

#[tokio::test]
async fn a_triggered_pipeline_runs_once_per_advance_and_holds_on_a_blocking_contract_violation() {
    sluice_e2e::in_namespace("trigger", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&dataset("raw", json!({"owner": "team-a", "layer": "Raw",
            "contract": {"policy": "Block", "columns": [{"name": "id", "type": "bigint", "nullable": false}, {"name": "amount", "type": "decimal(12,2)"}]}}))).await;
        ns.apply(&dataset("curated", json!({"owner": "team-b", "layer": "Curated"}))).await;
        let downstream = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "downstream"},
            "spec": {"trigger": {"datasets": ["raw"], "mode": "Any"}, "concurrency": {"maxConcurrentRuns": 3},
                     "steps": [{"name": "transform", "kind": "Transform", "inputs": ["raw"], "outputs": ["curated"],
                                "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "200ms"}},
                                             "spec": {"containers": [{"name": "main", "image": "example.com/dbt:1"}]}}}]}});
        ns.apply(&downstream).await;

        let schema = json!([{"name": "id", "type": "bigint", "nullable": false}, {"name": "amount", "type": "decimal(12,2)", "nullable": true}]);
        let base = jiff::Timestamp::now();
        for (i, minutes) in [(1, 1), (2, 2)] {
            let wm = rfc3339(base + jiff::SignedDuration::from_mins(minutes));
            ns.apply(&producer("ingest", &["raw"], &json!({"watermark": wm, "schema": schema}), json!({}))).await;
            run_now(&client, n, "ingest", &i.to_string()).await;
            wait_status(&client, n, "Dataset", "raw", "advanced", move |s| s["watermark"].as_str().is_some_and(|w| w.starts_with(&wm[..16]))).await;
            wait_status(&client, n, "Pipeline", "downstream", "triggered run done", move |s| {
                s["recentRuns"].as_array().is_some_and(|r| r.iter().filter(|r| r["phase"] == "Succeeded").count() >= i)
            })
            .await;
        }
        // Once the downstream pipeline recorded the latest watermark as consumed, the operator has
        // seen that advance: a second run for it would have been started by then.
        let latest = status(&client, n, "Dataset", "raw").await["watermark"].clone();
        wait_status(&client, n, "Pipeline", "downstream", "the latest watermark consumed", move |s| {
            s["consumedWatermarks"]["raw"] == latest && s["activeRunCount"].as_i64().unwrap_or(0) == 0
        })
        .await;
        assert_eq!(downstream_runs(&client, n).await.len(), 2, "one run per advance");
        let st = status(&client, n, "Dataset", "raw").await;
        assert_eq!(condition(&st, "SchemaConformant").unwrap().0, "True");
        assert_eq!(st["consumers"], json!(["downstream"]));
        let curated = wait_status(&client, n, "Dataset", "curated", "produced by downstream", |s| s["producedBy"]["pipeline"] == "downstream").await;
        assert!(curated["watermark"].is_string());

        // The next report drops a contracted column: SchemaConformant=False, and with Block the
        // downstream pipeline holds instead of running on bad data.
        let bad_schema = json!([{"name": "id", "type": "bigint", "nullable": false}]);
        let wm = rfc3339(base + jiff::SignedDuration::from_mins(3));
        ns.apply(&producer("ingest", &["raw"], &json!({"watermark": wm, "schema": bad_schema}), json!({}))).await;
        run_now(&client, n, "ingest", "3").await;
        let st = wait_status(&client, n, "Dataset", "raw", "SchemaConformant=False", |s| {
            condition(s, "SchemaConformant").is_some_and(|c| c.0 == "False")
        })
        .await;
        assert!(condition(&st, "SchemaConformant").unwrap().2.contains("column \"amount\" is missing"));
        let held = wait_status(&client, n, "Pipeline", "downstream", "InputsHeld", |s| {
            condition(s, "InputsHeld").is_some_and(|c| c.0 == "True")
        })
        .await;
        assert!(condition(&held, "InputsHeld").unwrap().2.contains("raw"));
        // InputsHeld is the operator's decision on the violating data: that advance stays due, not
        // consumed, and a run it started then would be in the same status (written before its Jobs).
        let consumed = held["consumedWatermarks"]["raw"].as_str().unwrap_or_default();
        assert!(!consumed.starts_with(&wm[..16]), "held: the violating advance is consumed: {consumed}");
        assert_eq!(held["activeRunCount"].as_i64().unwrap_or(0), 0, "held: no run on the violating data");
        assert_eq!(downstream_runs(&client, n).await.len(), 2, "held: no run on the violating data");
        let reasons: Vec<String> = events_for(&client, n, "raw").await.into_iter().filter_map(|e| e.reason).collect();
        assert!(reasons.iter().any(|r| r == "ContractViolated"), "{reasons:?}");
    })
    .await;
}
