//! A Sluice object that the operator's types cannot read does not stop the operator: it is
//! skipped with a Warning Event and the `sluice_objects_invalid` gauge, the operator becomes
//! ready, and the other objects of the namespace keep being reconciled.
//!
//! How the objects are made unreadable: the CRD schema checks `format: date-time`, but Go's
//! parser accepts any number of fractional digits of a second while the Rust time type takes at
//! most nine. So a status timestamp with thirteen digits, written by hand through the status
//! subresource with a JSON merge patch, is stored by the API server and rejected by the operator
//! (the unit test `controller::guard::tests` shows the same value failing the Rust types).

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use sluice_e2e::operator::{Spawned, http_get};
use sluice_e2e::{wait, yaml};

/// More digits of a second than the operator's types accept; the API server stores it.
const UNREADABLE_TIME: &str = "2026-01-01T00:00:00.1234567891234Z";
const INSTANCE: &str = "operator-malformed";

/// Kills the operator process when the test ends, also when it fails.
fn pipeline(name: &str) -> serde_json::Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "extract", "kind": "Extract",
            "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "1s"}},
                "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}})
}

fn ready(obj: &kube::api::DynamicObject) -> bool {
    let value = serde_json::to_value(obj).expect("json");
    wait::condition(&value, "Ready").is_some_and(|c| c.0 == "True")
}

/// Waits until the operator at `addr` exports a metrics line starting with `line`.
async fn metric(addr: &str, line: &str) -> String {
    let exported = |body: &String| body.lines().any(|l| l.starts_with(line));
    let body = wait::settle(
        Duration::from_secs(30),
        wait::EVERY,
        || async { http_get(addr, "/metrics").await.expect("metrics").1 },
        exported,
    )
    .await;
    assert!(exported(&body), "no metric {line:?} within 30s in:\n{body}");
    body
}

#[tokio::test]
async fn an_object_that_does_not_deserialize_is_skipped_and_the_others_still_run() {
    sluice_e2e::in_namespace("malformed", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        let datasets = yaml::sluice_api(&client, n, "Dataset");
        for name in ["good", "bad"] {
            ns.apply(&pipeline(name)).await;
        }
        let dataset = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "bad-dataset"},
            "spec": {"owner": "team-a", "layer": "Raw"}});
        ns.apply(&dataset).await;
        // Both were readable once: the shared operator reconciled them.
        wait::until(&pipelines, "bad", Duration::from_secs(60), "Ready", ready).await;
        wait::until(&datasets, "bad-dataset", Duration::from_secs(60), "Ready", ready).await;

        let status = PatchParams::default();
        let unreadable = Patch::Merge(json!({"status": {"lastScheduleTime": UNREADABLE_TIME}}));
        pipelines.patch_status("bad", &status, &unreadable).await.expect("the API server stores the value");
        let unreadable = Patch::Merge(json!({"status": {"watermark": UNREADABLE_TIME}}));
        datasets.patch_status("bad-dataset", &status, &unreadable).await.expect("the API server stores the value");

        // An operator started while the unreadable objects exist lists them and still gets ready.
        let own = Spawned::in_namespace(INSTANCE, n).await;
        let addr = own.addr.as_str();
        metric(addr, r#"sluice_objects_invalid{kind="Pipeline"} 1"#).await;
        metric(addr, r#"sluice_objects_invalid{kind="Dataset"} 1"#).await;

        // The other Pipeline of the namespace still runs.
        let run_now = Patch::Merge(json!({"metadata": {"annotations": {"sluice.dev/run-now": "1"}}}));
        pipelines.patch("good", &PatchParams::default(), &run_now).await.expect("annotate");
        wait::until(&pipelines, "good", Duration::from_secs(120), "one run Succeeded", |o| {
            let value = serde_json::to_value(o).expect("json");
            value["status"]["recentRuns"].as_array().is_some_and(|r| r.iter().any(|r| r["phase"] == "Succeeded"))
        })
        .await;
        metric(addr, r#"sluice_reconcile_total{controller="pipeline",result="success"}"#).await;

        // The operator said so on the object, and left the object as it was.
        let mut warned = wait::settle(
            Duration::from_secs(30),
            wait::EVERY,
            || async {
                wait::events(&client, n)
                    .await
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("InvalidObject") && e.type_.as_deref() == Some("Warning"))
                    .filter(|e| e.reporting_instance.as_deref() == Some(INSTANCE))
                    .filter_map(|e| e.regarding.and_then(|r| r.name))
                    .collect::<Vec<_>>()
            },
            |warned| warned.contains(&"bad".to_string()) && warned.contains(&"bad-dataset".to_string()),
        )
        .await;
        warned.sort();
        warned.dedup();
        assert_eq!(warned, ["bad", "bad-dataset"], "InvalidObject Warning Events from {INSTANCE}");
        let bad = serde_json::to_value(pipelines.get("bad").await.expect("bad")).expect("json");
        assert_eq!(bad["status"]["lastScheduleTime"], UNREADABLE_TIME);

        // Fixed by hand, the object is read again.
        let fixed = Patch::Merge(json!({"status": {"lastScheduleTime": null}}));
        pipelines.patch_status("bad", &status, &fixed).await.expect("fix");
        metric(addr, r#"sluice_objects_invalid{kind="Pipeline"} 0"#).await;
    })
    .await;
}
