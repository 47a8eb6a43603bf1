//! A Backfill reconcile's requests: the fresh read, the status written with its
//! `resourceVersion` before any Job is created, the creates, and the deletes last; what a name
//! conflict means; no write when nothing changed.

use serde_json::{Value, json};

use super::{Call, World, completed, shorts};
use crate::api::{Backfill, Pipeline};
use crate::controller::backfill::reconcile_backfill;

/// An hourly Pipeline created now: the backfill's windows (October 2026) are before it.
fn pipeline() -> Pipeline {
    let template = json!({"spec": {"containers": [{"name": "m", "image": "x"}]}});
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "orders", "namespace": "ns", "uid": "uid-p", "resourceVersion": "1", "generation": 1,
                     "creationTimestamp": jiff::Timestamp::now()},
        "spec": {"schedule": "0 * * * *", "steps": [{"name": "extract", "kind": "Extract", "template": template}]}
    }))
    .unwrap()
}

/// Three hourly partitions, two at a time.
fn backfill() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill",
        "metadata": {"name": "fill", "namespace": "ns", "uid": "uid-b", "generation": 1},
        "spec": {"pipelineRef": {"name": "orders"}, "parallelism": 2,
                 "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T03:00:00Z"}}
    })
}

fn world() -> World {
    let world = World::new("backfills", backfill());
    let mut cluster = world.cluster;
    cluster.cache_pipeline(pipeline());
    World { cluster, ..world }
}

/// One reconcile of the Backfill as the server holds it; the requests it made.
async fn reconcile(world: &World) -> Vec<Call> {
    let before = world.call_count();
    let cached: Backfill = serde_json::from_value(world.object("backfills/fill")).unwrap();
    reconcile_backfill(&cached, &world.ctx).await.unwrap();
    world.calls_since(before)
}

#[tokio::test]
async fn the_status_is_written_on_the_version_read_before_any_job_and_jobs_are_deleted_last() {
    let mut world = world();
    let rv = world.object("backfills/fill")["metadata"]["resourceVersion"].clone();
    let calls = reconcile(&world).await;
    assert!(calls.len() >= 4, "{calls:#?}");
    assert_eq!(shorts(&calls[..4]), ["GET backfills/fill", "PATCH backfills/fill/status", "POST jobs", "POST jobs"]);
    assert_eq!(calls[1].precondition(), rv.as_str(), "conditioned on the version read");
    assert_eq!(world.object("backfills/fill")["status"]["partitions"]["running"], 2);

    // Both Jobs finished: the next reconcile records them, starts the third partition, and only
    // then deletes the finished ones.
    let created = world.jobs();
    for job in &created {
        world.cluster.cache_job(completed(job));
    }
    let rv = world.object("backfills/fill")["metadata"]["resourceVersion"].clone();
    let calls = reconcile(&world).await;
    let order = shorts(&calls);
    let names: Vec<&str> = created.iter().map(|j| j["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(order[..3], ["GET backfills/fill", "PATCH backfills/fill/status", "POST jobs"], "{order:?}");
    assert_eq!(calls[1].precondition(), rv.as_str());
    let processed = &calls[1].body["status"]["processedRanges"];
    assert_eq!(processed, &json!([{"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T02:00:00Z", "count": 2}]));
    let mut deletes: Vec<String> = names.iter().map(|n| format!("DELETE jobs/{n}")).collect();
    let mut last = order[order.len() - 2..].to_vec();
    deletes.sort();
    last.sort();
    assert_eq!(last, deletes, "deletes come last, after the status that records them: {order:?}");
}

#[tokio::test]
async fn a_name_held_by_our_own_job_counts_as_launched() {
    let world = world();
    // An earlier create of this Backfill that neither the cache nor the status shows.
    let first = first_round_jobs().await.remove(0);
    world.server.lock().unwrap().put("jobs", first.clone());
    let calls = reconcile(&world).await;
    let name = first["metadata"]["name"].as_str().unwrap();
    let at = calls.iter().position(|c| c.method == "POST" && c.code == 409).expect("a 409");
    // Partitions are created side by side: another partition's POST may come in between.
    let read = format!("GET jobs/{name}");
    assert!(calls[at + 1..].iter().any(|c| c.short() == read), "the holder is read fresh: {:?}", shorts(&calls));
    let status = &world.object("backfills/fill")["status"];
    assert_eq!(status["partitions"]["running"], 2, "{status}");
    assert!(status.get("nameConflicts").is_none_or(|c| c == &json!([])), "{status}");
}

#[tokio::test]
async fn a_name_held_by_someone_elses_job_is_not_launched_and_is_recorded_as_a_conflict() {
    let world = world();
    let mut squatter = first_round_jobs().await.remove(0);
    squatter["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "other",
                                                        "uid": "uid-other", "controller": true}]);
    squatter["metadata"]["labels"] = json!({});
    let name = squatter["metadata"]["name"].as_str().unwrap().to_string();
    world.server.lock().unwrap().put("jobs", squatter);
    let calls = reconcile(&world).await;
    assert!(calls.iter().any(|c| c.method == "POST" && c.code == 409));
    let status = &world.object("backfills/fill")["status"];
    assert_eq!(status["nameConflicts"], json!([name]), "{status}");
    assert_eq!(status["partitions"]["running"], 1, "the taken partition is not claimed: {status}");
    let events = world.events_with("NameConflict").await;
    assert!(events.iter().any(|e| e["reason"] == "NameConflict"), "{events:?}");
}

#[tokio::test]
async fn nothing_changed_writes_nothing() {
    let mut world = world();
    reconcile(&world).await;
    assert_eq!(world.jobs().len(), 2);
    for job in world.jobs() {
        world.cluster.cache_job(serde_json::from_value(job).unwrap());
    }
    let calls = reconcile(&world).await;
    assert_eq!(shorts(&calls), ["GET backfills/fill"], "the Jobs run, the status stands");
}

/// The Jobs a first reconcile of a fresh Backfill creates (on a server of its own).
async fn first_round_jobs() -> Vec<Value> {
    let world = world();
    reconcile(&world).await;
    world.jobs()
}
