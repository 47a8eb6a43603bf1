//! Bad input is rejected at `kubectl apply` by the CRD schema or a CEL rule, with a message that
//! names the field: checked on the real API server, not only against the generated YAML.

use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::yaml;

fn pipeline(spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"}, "spec": spec})
}

fn step(name: &str, extra: Value) -> Value {
    let mut s = json!({
        "name": name, "kind": "Transform",
        "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    });
    s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    s
}

/// Applies `doc` and returns the API server's rejection message, panicking if it was accepted.
async fn rejection(client: &kube::Client, ns: &str, doc: &Value) -> String {
    match yaml::apply(client, ns, doc).await {
        Ok(_) => panic!("the API server accepted an invalid object: {doc:#}"),
        Err(kube::Error::Api(status)) => status.message,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_a_message_naming_the_field() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "cel", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "duplicate step names",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({})), step("a", json!({}))]})),
                "spec.steps: step names must be unique",
            ),
            (
                "dependsOn names no step",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({"dependsOn": ["ghost"]}))]})),
                "spec.steps[].dependsOn: every entry must name a step",
            ),
            (
                "self dependency",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({"dependsOn": ["a"]}))]})),
                "a step cannot depend on itself",
            ),
            (
                "two-step cycle",
                pipeline(json!({"schedule": "0 * * * *", "steps": [
                    step("a", json!({"dependsOn": ["b"]})), step("b", json!({"dependsOn": ["a"]}))]})),
                "dependency cycle",
            ),
            (
                "output produced twice",
                pipeline(json!({"schedule": "0 * * * *", "steps": [
                    step("a", json!({"outputs": ["orders"]})), step("b", json!({"outputs": ["orders"]}))]})),
                "each dataset can be produced by one step only",
            ),
            (
                "neither schedule nor trigger",
                pipeline(json!({"steps": [step("a", json!({}))]})),
                "set spec.schedule, spec.trigger, or both",
            ),
            (
                "step name not a DNS label",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("Extract_All", json!({}))]})),
                "spec.steps[0].name",
            ),
            (
                "unknown step kind",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({"kind": "Load"}))]})),
                "spec.steps[0].kind",
            ),
            (
                "negative retries",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({"retries": {"limit": -1}}))]})),
                "spec.steps[0].retries.limit",
            ),
            (
                "partition size not a duration",
                pipeline(
                    json!({"schedule": "0 * * * *", "partition": {"size": "1 hour"}, "steps": [step("a", json!({}))]}),
                ),
                "spec.partition.size",
            ),
            (
                "pod template field of the wrong type",
                pipeline(json!({"schedule": "0 * * * *", "steps": [step("a", json!({
                    "template": {"spec": {"containers": "busybox"}}}))]})),
                "spec.steps[0].template.spec.containers",
            ),
            (
                "warnAfter above maxAge",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
                       "spec": {"owner": "t", "layer": "Raw", "freshness": {"maxAge": "1h", "warnAfter": "2h"}}}),
                "spec.freshness.warnAfter must not be greater than spec.freshness.maxAge",
            ),
            (
                "unknown layer",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
                       "spec": {"owner": "t", "layer": "Gold"}}),
                "spec.layer",
            ),
            (
                "duplicate contract column",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
                       "spec": {"owner": "t", "layer": "Raw", "contract": {"columns": [
                           {"name": "id", "type": "bigint"}, {"name": "id", "type": "text"}]}}}),
                "spec.contract.columns: column names must be unique",
            ),
            (
                "range start after end",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "b"},
                       "spec": {"pipelineRef": {"name": "p"},
                                "range": {"start": "2026-11-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"}}}),
                "spec.range.start must be before spec.range.end",
            ),
            (
                "parallelism zero",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "b"},
                       "spec": {"pipelineRef": {"name": "p"}, "parallelism": 0,
                                "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}}),
                "spec.parallelism",
            ),
            (
                "budget without quota or limits",
                json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "b"},
                       "spec": {"pipelineRef": {"name": "p"}, "budget": {},
                                "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}}),
                "spec.budget: set resourceQuotaRef, limits, or both",
            ),
        ];
        let mut failures = Vec::new();
        for (case, doc, expected) in &cases {
            let message = rejection(&client, n, doc).await;
            if !message.contains(expected) {
                failures.push(format!("{case}: expected {expected:?} in {message:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await;
}

#[tokio::test]
async fn backfill_range_and_pipeline_are_immutable() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "immutable", |ns| async move {
        let client = ns.client.clone();
        let mut doc = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "b"},
            "spec": {"pipelineRef": {"name": "p"},
                     "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}});
        yaml::apply(&client, &ns.name, &doc).await.expect("valid backfill is accepted");
        doc["spec"]["range"]["end"] = json!("2026-12-01T00:00:00Z");
        let message = rejection(&client, &ns.name, &doc).await;
        assert!(message.contains("spec.range is immutable"), "{message}");
    })
    .await;
}
