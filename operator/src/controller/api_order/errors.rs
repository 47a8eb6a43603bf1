//! The error policy's requests: a persistent failure publishes one Warning Event naming the
//! failed operation (rate-limited), and a deleted object's failures are forgotten.

use std::sync::{Arc, Mutex};

use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use serde_json::json;

use super::{Cluster, FakeServer, client};
use crate::api::Pipeline;
use crate::controller::ready::{RECONCILE_FAILED, error_policy};
use crate::error::Error;

fn pipeline() -> Pipeline {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-p"},
        "spec": {"schedule": "0 0 * * *", "steps": []}
    }))
    .unwrap()
}

fn forbidden() -> Error {
    let status = kube::core::Status::failure("forbidden", "Forbidden").with_code(403);
    Error::PatchStatus { kind: "Pipeline".into(), name: "p".into(), source: kube::Error::Api(Box::new(status)) }
}

/// Lets the Events that `error_policy` spawned reach the server.
async fn settle(server: &Mutex<FakeServer>, events: usize) {
    for _ in 0..100 {
        if server.lock().unwrap().events.len() >= events {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_persistent_failure_is_published_once_per_interval_and_forgotten_with_its_object() {
    let server = Arc::new(Mutex::new(FakeServer::default()));
    let mut cluster = Cluster::new();
    cluster.cache_pipeline(pipeline());
    let ctx = cluster.context(client(Arc::clone(&server)));
    let obj = Arc::new(DeserializeGuard(Ok(pipeline())));
    for _ in 0..3 {
        error_policy(Arc::clone(&obj), &forbidden(), Arc::clone(&ctx));
    }
    settle(&server, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let events = server.lock().unwrap().events.clone();
    assert_eq!(events.len(), 1, "rate-limited: {events:?}");
    assert_eq!(events[0]["reason"], RECONCILE_FAILED);
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["action"], "PatchStatus");
    let note = events[0]["note"].as_str().unwrap();
    assert!(note.starts_with("writing the status of Pipeline p failed"), "{note}");
    assert!(note.contains("failed 1 time(s) in a row"), "{note}");

    let key = ("pipeline", "ns".to_string(), "p".to_string());
    assert_eq!(ctx.count_failure(&key, true).attempt, 4);
    // Deleted (the cache no longer shows it): a Pipeline created again under the name starts
    // afresh.
    cluster.pipelines.apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(pipeline()))));
    assert_eq!(ctx.count_failure(&key, true).attempt, 1);
}
