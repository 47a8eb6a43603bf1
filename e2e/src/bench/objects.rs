//! The objects the benchmarks create, many at a time: Pipelines and CronJobs with the same
//! one-step pod template, Datasets, and the namespaces they live in.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};

/// How many creates are in flight at once when the harness sets up objects.
pub const SETUP_IN_FLIGHT: usize = 16;

/// The pod template both arms run: one container, completed by kwok after `duration`.
pub fn pod_template(duration: &str, cpu: Option<&str>) -> Value {
    let mut container = json!({"name": "main", "image": "example.com/step:1"});
    if let Some(cpu) = cpu {
        container["resources"] = json!({"requests": {"cpu": cpu}});
    }
    json!({"metadata": {"annotations": {"kwok.sluice.dev/duration": duration}},
           "spec": {"restartPolicy": "Never", "containers": [container]}})
}

/// A one-step Pipeline on `schedule` keeping one finished run of each kind.
pub fn pipeline(name: &str, schedule: &str, template: &Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": schedule, "history": {"successful": 1, "failed": 1},
                 "steps": [{"name": "extract", "kind": "Extract", "template": template}]}})
}

/// A CronJob on `schedule` with the same template, keeping one finished Job of each kind.
pub fn cronjob(name: &str, schedule: &str, template: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": schedule, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"spec": {"backoffLimit": 0, "template": template}}}})
}

/// A Dataset with freshness objective `max_age`.
pub fn dataset(name: &str, max_age: &str) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name},
        "spec": {"owner": "bench", "layer": "Raw", "freshness": {"maxAge": max_age}}})
}

/// The API resource of a document's kind (Sluice kinds, CronJob, Job, ResourceQuota).
pub fn resource(doc: &Value) -> ApiResource {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let kind = doc["kind"].as_str().expect("kind");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

/// Creates every document in `namespace` (all of one kind), `SETUP_IN_FLIGHT` at a time.
pub async fn create_all(client: &Client, namespace: &str, docs: Vec<Value>) {
    let Some(first) = docs.first() else { return };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource(first));
    futures::stream::iter(docs)
        .map(|doc| {
            let api = api.clone();
            async move {
                let object: DynamicObject = serde_json::from_value(doc).expect("object");
                api.create(&PostParams::default(), &object).await.map(|_| ())
            }
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("creating objects in {namespace}: {e}"));
}

/// Creates namespace `name` (deleting a leftover first) and waits for its default
/// ServiceAccount (pods are refused until it exists).
pub async fn fresh_namespace(client: &Client, name: &str) {
    delete_namespace(client, name).await;
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"sluice.dev/bench": "true"}}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace created");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    crate::wait::poll(Duration::from_secs(60), "the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await;
}

/// How long a bench namespace may take to go: the 1,000 CronJobs of N = 1,000 with their Jobs
/// and pods took more than 300 s on a loaded 2-core machine (2026-12-02).
const NAMESPACE_GONE_WITHIN: Duration = Duration::from_secs(1200);

/// Deletes namespace `name` and waits (up to [`NAMESPACE_GONE_WITHIN`]) until it is gone.
pub async fn delete_namespace(client: &Client, name: &str) {
    let api = Api::<Namespace>::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    crate::wait::poll(NAMESPACE_GONE_WITHIN, &format!("namespace {name} to go"), || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
}
