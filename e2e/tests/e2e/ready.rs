//! The controllers validate what only the operator can check and report it in status: the
//! `Ready` condition with `observedGeneration`, reason `InvalidSpec` and a Warning Event.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use sluice_e2e::cluster::{example_files, run_kubectl};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::operator::Spawned;
use sluice_e2e::{wait, yaml};

const TIMEOUT: Duration = Duration::from_secs(90);

fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    yaml::sluice_api(client, ns, kind)
}

fn as_json(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).expect("json")
}

/// Waits for Ready with `status` and reason, at the object's current generation.
async fn wait_ready(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    status: &'static str,
    reason: &'static str,
) -> Value {
    let obj = wait::until(
        &api(client, ns, kind),
        name,
        TIMEOUT,
        &format!("Ready={status} ({reason})"),
        move |o: &DynamicObject| {
            let v = as_json(o);
            let generation = v["metadata"]["generation"].as_i64();
            wait::condition(&v, "Ready").is_some_and(|(s, r, _)| s == status && r == reason)
                && v["status"]["observedGeneration"].as_i64() == generation
        },
    )
    .await;
    as_json(&obj)
}

async fn warning_events(client: &kube::Client, ns: &str, name: &str) -> Vec<Event> {
    wait::events(client, ns)
        .await
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) && e.type_.as_deref() == Some("Warning")
        })
        .collect()
}

fn simple_pipeline(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "schedule": "0 * * * *",
        "steps": [{"name": "extract", "kind": "Extract",
                   "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}]
    });
    spec.as_object_mut().unwrap().extend(spec_extra.as_object().unwrap().clone());
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn the_examples_apply_and_become_ready() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "examples", |ns| async move {
        let client = ns.client.clone();
        let mut objects = Vec::new();
        for file in example_files() {
            let text = std::fs::read_to_string(&file).expect("readable");
            for doc in yaml::documents(&text) {
                yaml::apply(&client, &ns.name, &doc).await.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                if doc["apiVersion"] == "sluice.dev/v1alpha1" {
                    objects.push((
                        doc["kind"].as_str().unwrap().to_string(),
                        doc["metadata"]["name"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        assert!(objects.len() >= 5, "examples hold the datasets, the pipeline and the backfill: {objects:?}");
        for (kind, name) in &objects {
            wait_ready(&client, &ns.name, kind, name, "True", "Reconciled").await;
        }
        // `kubectl get sluice` lists all three kinds with their columns.
        let (ok, out, err) = run_kubectl(&["get", "sluice", "-n", &ns.name]);
        assert!(ok, "{err}");
        for expected in [
            "pipeline.sluice.dev/orders-ingest",
            "dataset.sluice.dev/orders",
            "backfill.sluice.dev/orders-october",
            "SCHEDULE",
            "LAYER",
            "PROGRESS",
        ] {
            assert!(out.contains(expected), "`kubectl get sluice` lacks {expected}:\n{out}");
        }
    })
    .await;
}

#[tokio::test]
async fn controller_only_checks_set_invalid_spec_with_an_event() {
    sluice_e2e::in_namespace("invalid", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let cases = [
            ("bad-cron", simple_pipeline("bad-cron", json!({"schedule": "0 25 * * *"})), "spec.schedule"),
            ("bad-tz", simple_pipeline("bad-tz", json!({"timeZone": "Europe/Atlantis"})), "spec.timeZone"),
            (
                "cycle",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "cycle"},
                       "spec": {"schedule": "0 * * * *", "steps": [
                           {"name": "a", "kind": "Transform", "dependsOn": ["c"], "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                           {"name": "b", "kind": "Transform", "dependsOn": ["a"], "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                           {"name": "c", "kind": "Transform", "dependsOn": ["b"], "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}]}}),
                "dependency cycle a -> c -> b -> a",
            ),
        ];
        for (name, doc, _) in &cases {
            yaml::apply(&client, n, doc).await.unwrap_or_else(|e| panic!("{name} is accepted by the schema: {e}"));
        }
        for (name, _, expected) in &cases {
            let obj = wait_ready(&client, n, "Pipeline", name, "False", "InvalidSpec").await;
            let (_, _, message) = wait::condition(&obj, "Ready").unwrap();
            assert!(message.contains(expected), "{name}: {message}");
            // A Warning Event names the problem too.
            let events = wait::settle(
                Duration::from_secs(10),
                Duration::from_millis(200),
                || warning_events(&client, n, name),
                |events| !events.is_empty(),
            )
            .await;
            let event = events.first().unwrap_or_else(|| panic!("no Warning Event for {name}"));
            assert_eq!(event.reason.as_deref(), Some("InvalidSpec"));
            assert!(event.note.as_deref().unwrap_or_default().contains(expected), "{name}: {:?}", event.note);
        }
        // Fixing the spec makes it Ready at the new generation.
        ns.apply(&simple_pipeline("bad-cron", json!({"schedule": "0 23 * * *"}))).await;
        wait_ready(&client, n, "Pipeline", "bad-cron", "True", "Reconciled").await;
    })
    .await;
}

#[tokio::test]
async fn missing_references_resolve_when_the_object_appears() {
    sluice_e2e::in_namespace("refs", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let mut pipeline = simple_pipeline("ingest", json!({}));
        pipeline["spec"]["steps"][0]["outputs"] = json!(["raw-events"]);
        ns.apply(&pipeline).await;
        let backfill = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "bf"},
            "spec": {"pipelineRef": {"name": "ingest-later"}, "budget": {"resourceQuotaRef": {"name": "compute"}},
                     "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}}});
        ns.apply(&backfill).await;

        let obj = wait_ready(&client, n, "Pipeline", "ingest", "False", "InvalidSpec").await;
        assert!(wait::condition(&obj, "Ready").unwrap().2.contains("Dataset \"raw-events\" does not exist"));
        let obj = wait_ready(&client, n, "Backfill", "bf", "False", "InvalidSpec").await;
        let message = wait::condition(&obj, "Ready").unwrap().2;
        assert!(message.contains("spec.pipelineRef") && message.contains("spec.budget.resourceQuotaRef"), "{message}");

        // Creating what they refer to wakes them: no polling, the watches map it back.
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "raw-events"},
            "spec": {"owner": "team-a", "layer": "Raw"}}))
            .await;
        wait_ready(&client, n, "Pipeline", "ingest", "True", "Reconciled").await;
        ns.apply(&simple_pipeline("ingest-later", json!({}))).await;
        ns.apply(&json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": "4"}}}))
            .await;
        wait_ready(&client, n, "Backfill", "bf", "True", "Reconciled").await;
    })
    .await;
}

#[tokio::test]
async fn status_is_not_rewritten_when_nothing_changed() {
    sluice_e2e::in_namespace("quiet", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
            "spec": {"owner": "team-a", "layer": "Raw"}}))
            .await;
        let first = wait_ready(&client, n, "Dataset", "d", "True", "Reconciled").await;
        let transition = wait::condition(&first, "Ready").unwrap();
        // A label change is not a spec change, but it does trigger a reconcile. The shared
        // operator's metrics count every namespace's reconciles, so an operator of this namespace
        // alone shows that it happened: its Dataset reconciles go up by one once it has reconciled
        // the relabelled object (it has no other Dataset, and one with no freshness objective is
        // not requeued). Its first reconcile of `d` must not rewrite the status either.
        let own = Spawned::in_namespace("operator-quiet", n).await;
        let dataset_reconciles = || own.metric_sum("sluice_reconcile_total", &[r#"controller="dataset""#]);
        let idle = || own.metric_sum("controller_runtime_active_workers", &[r#"controller="dataset""#]);
        let before = wait::poll(Duration::from_secs(30), "the namespace's operator to reconcile d", || async {
            let count = dataset_reconciles().await;
            (count >= 1.0 && idle().await == 0.0).then_some(count)
        })
        .await;
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "d", "labels": {"touched": "yes"}}, "spec": {"owner": "team-a", "layer": "Raw"}}))
            .await;
        wait::poll(Duration::from_secs(30), "the namespace's operator to reconcile the relabelled d", || async {
            (dataset_reconciles().await > before).then_some(())
        })
        .await;
        let after = as_json(&api(&client, n, "Dataset").get("d").await.expect("get"));
        assert_eq!(after["status"], first["status"], "status changed without a reason");
        let managers: Vec<_> = after["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["manager"] == "sluice-operator")
            .collect();
        assert_eq!(managers.len(), 1, "the operator writes status with one field manager");
        assert_eq!(managers[0]["subresource"], "status", "the operator writes status only");
        assert_eq!(wait::condition(&after, "Ready").unwrap(), transition);
    })
    .await;
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() {
    let _client = sluice_e2e::setup().await;
    for (path, expected) in [
        ("pipeline.spec.steps.dependsOn", "must succeed before this step starts"),
        ("dataset.spec.freshness.maxAge", "Oldest the watermark may be"),
        ("backfill.spec.budget.reserve", "kept free for scheduled runs"),
    ] {
        let (ok, out, err) = run_kubectl(&["explain", path]);
        assert!(ok, "{path}: {err}");
        assert!(out.contains(expected), "{path}:\n{out}");
    }
}
