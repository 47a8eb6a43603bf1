//! Sluice objects the monitoring tests create, and an operator watching only their namespace.

use serde_json::{Value, json};
use sluice_e2e::yaml;

use super::tools::{OperatorProcess, unique};

/// Step resources: a CPU request, which a ResourceQuota on `requests.cpu` requires of every pod.
fn cpu() -> Value {
    json!({"requests": {"cpu": "100m"}})
}

/// A Dataset owned by `owner` whose freshness objective is `max_age`.
pub fn dataset(name: &str, owner: &str, max_age: &str) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name},
           "spec": {"owner": owner, "layer": "Raw", "freshness": {"maxAge": max_age}}})
}

/// A Pipeline (never scheduled) with one step that outputs `outputs`, and whose fake pod
/// reports `watermark` for them.
pub fn producer(name: &str, outputs: &[&str], watermark: jiff::Timestamp) -> Value {
    let report = json!({"rowsWritten": 1, "watermark": watermark.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "load", "kind": "Extract", "outputs": outputs,
               "template": {"metadata": {"annotations": {
                   "kwok.sluice.dev/duration": "200ms",
                   "kwok.sluice.dev/termination-message": report.to_string()}},
                   "spec": {"containers": [{"name": "main", "image": "example.com/load:1", "resources": cpu()}]}}}]}})
}

/// A suspended hourly Pipeline (so a Backfill of it has partitions and no run starts).
pub fn hourly(name: &str) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"schedule": "0 * * * *", "suspend": true, "steps": [{"name": "load", "kind": "Extract",
               "template": {"spec": {"containers": [{"name": "main", "image": "example.com/load:1", "resources": cpu()}]}}}]}})
}

/// A suspended Backfill of two hourly windows of `pipeline`, budgeted against ResourceQuota
/// `quota`.
pub fn suspended_backfill(name: &str, pipeline: &str, quota: &str) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": name},
           "spec": {"pipelineRef": {"name": pipeline}, "suspend": true,
                    "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T02:00:00Z"},
                    "budget": {"resourceQuotaRef": {"name": quota}}}})
}

/// A ResourceQuota on CPU requests.
pub fn quota(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
           "spec": {"hard": {"requests.cpu": "4"}}})
}

/// Applies every document to `ns`, panicking on an error.
pub async fn apply(client: &kube::Client, ns: &str, docs: &[Value]) {
    for doc in docs {
        if let Err(e) = yaml::apply(client, ns, doc).await {
            panic!("applying {} {}: {e}", doc["kind"], doc["metadata"]["name"]);
        }
    }
}

/// Asks for a run of Pipeline `name` now.
pub async fn run_now(client: &kube::Client, ns: &str, name: &str) {
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": "1"}}});
    yaml::sluice_api(client, ns, "Pipeline")
        .patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("run-now");
}

/// Starts an operator watching `ns` only and waits until it is ready.
pub async fn operator_for(ns: &str, prefix: &str) -> OperatorProcess {
    let kubeconfig = sluice_e2e::cluster::kubeconfig();
    let op = OperatorProcess::start(&kubeconfig, &unique(prefix), &[&format!("--namespace={ns}")], "info,sluice=debug");
    op.wait_ready().await;
    op
}
