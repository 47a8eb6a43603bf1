//! A Pipeline reconcile's requests: the decision on the cached Pipeline is written with its
//! `resourceVersion` before its Jobs are created, and a finished run is recorded before its
//! Jobs are deleted; a name held by another owner stops the run's creates; no write when
//! nothing changed; a write that conflicts (the cache was stale) is decided again on a fresh read.

use jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::{Call, World, completed, shorts};
use crate::api::Pipeline;
use crate::controller::pipeline::reconcile_pipeline;

/// A daily Pipeline with two root steps, created three days ago, keeping no successful runs.
fn pipeline() -> Value {
    let template = json!({"spec": {"containers": [{"name": "m", "image": "x"}]}});
    let created = Timestamp::now() - SignedDuration::from_hours(72);
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-p", "generation": 1, "creationTimestamp": created},
        "spec": {"schedule": "0 0 * * *", "history": {"successful": 0},
                 "steps": [{"name": "extract", "kind": "Extract", "template": template},
                           {"name": "audit", "kind": "Transform", "template": template}]}
    })
}

fn world() -> World {
    World::new("pipelines", pipeline())
}

/// One reconcile of `cached`; the requests it made.
async fn reconcile(world: &World, cached: &Value) -> Vec<Call> {
    let before = world.call_count();
    let cached: Pipeline = serde_json::from_value(cached.clone()).unwrap();
    reconcile_pipeline(&cached, &world.ctx).await.unwrap();
    world.calls_since(before)
}

#[tokio::test]
async fn a_run_is_recorded_before_its_jobs_exist_and_its_finish_before_they_go() {
    let mut world = world();
    let cached = world.object("pipelines/p");
    let calls = reconcile(&world, &cached).await;
    assert_eq!(shorts(&calls), ["PATCH pipelines/p/status", "POST jobs", "POST jobs"]);
    assert_eq!(calls[0].precondition(), cached["metadata"]["resourceVersion"].as_str());
    assert_eq!(calls[0].body["status"]["activeRuns"].as_array().map(Vec::len), Some(1));

    // The run's Jobs finished; the cache shows them and the Pipeline as written.
    let jobs = world.jobs();
    for job in &jobs {
        world.cluster.cache_job(completed(job));
    }
    let cached = world.object("pipelines/p");
    let calls = reconcile(&world, &cached).await;
    let mut expected: Vec<String> =
        jobs.iter().map(|j| format!("DELETE jobs/{}", j["metadata"]["name"].as_str().unwrap())).collect();
    expected.sort();
    expected.insert(0, "PATCH pipelines/p/status".to_string());
    let mut order = shorts(&calls);
    order[1..].sort();
    assert_eq!(order, expected, "the finish is recorded, then the Jobs go");
    assert_eq!(calls[0].precondition(), cached["metadata"]["resourceVersion"].as_str());
    assert!(calls[0].body["status"]["activeRuns"].as_array().is_none_or(Vec::is_empty), "{}", calls[0].body);

    // The cache shows the Jobs gone: nothing changed, nothing is written.
    for job in &jobs {
        world.cluster.job_event(watcher::Event::Delete(completed(job)));
    }
    let cached = world.object("pipelines/p");
    assert_eq!(shorts(&reconcile(&world, &cached).await), Vec::<String>::new());
}

#[tokio::test]
async fn a_stale_cached_pipeline_is_decided_again_on_a_fresh_read() {
    let world = world();
    let stale = world.object("pipelines/p");
    reconcile(&world, &stale).await;
    let fresh = world.object("pipelines/p");
    // The cache still shows the Pipeline before that write: the decision's write conflicts,
    // the Pipeline is read fresh and decided again on what was recorded: its run is active and
    // its Jobs were created. The cache does not show them yet, so the creates are repeated
    // after a write on the fresh version, and each 409 is read and found to be ours.
    let calls = reconcile(&world, &stale).await;
    assert_eq!(shorts(&calls)[..2], ["PATCH pipelines/p/status", "GET pipelines/p"]);
    assert_eq!(calls[0].code, 409);
    assert!(
        calls[2..]
            .iter()
            .all(|c| c.precondition().is_none_or(|rv| Some(rv) == fresh["metadata"]["resourceVersion"].as_str())),
        "writes after the fresh read carry its resourceVersion"
    );
    assert!(!calls.iter().any(|c| c.short() == "POST jobs" && c.code == 201), "nothing launched twice");
}

#[tokio::test]
async fn a_name_held_by_another_owner_is_read_and_stops_the_runs_creates() {
    // The run's first Job, under the same name, created by a Backfill.
    let first = world();
    reconcile(&first, &first.object("pipelines/p")).await;
    let mut held = first.jobs().remove(0);
    held["metadata"]["ownerReferences"] = json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill",
                                                  "name": "oct", "uid": "uid-b", "controller": true}]);
    let name = held["metadata"]["name"].as_str().unwrap().to_string();

    let world = world();
    world.server.lock().unwrap().put("jobs", held);
    let calls = reconcile(&world, &world.object("pipelines/p")).await;
    assert_eq!(shorts(&calls), ["PATCH pipelines/p/status", "POST jobs", &format!("GET jobs/{name}")]);
    assert_eq!(calls[1].code, 409);
    let events = world.events_with("NameConflict").await;
    let conflict = events.iter().find(|e| e["reason"] == "NameConflict").expect("a NameConflict Event");
    assert!(conflict["note"].as_str().unwrap().contains("Backfill/oct"), "{conflict}");
}

#[tokio::test]
async fn a_name_held_by_our_own_job_of_the_same_run_is_already_launched() {
    let first = world();
    reconcile(&first, &first.object("pipelines/p")).await;
    let ours = first.jobs().remove(0);
    let name = ours["metadata"]["name"].as_str().unwrap().to_string();

    let world = world();
    world.server.lock().unwrap().put("jobs", ours);
    let calls = reconcile(&world, &world.object("pipelines/p")).await;
    let expected = ["PATCH pipelines/p/status", "POST jobs", &format!("GET jobs/{name}"), "POST jobs"];
    assert_eq!(shorts(&calls), expected, "the run's other Job is still created");
    assert_eq!((calls[1].code, calls[3].code), (409, 201));
    // Events are published in the background: give them time to arrive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let events = world.events();
    assert!(!events.iter().any(|e| e["reason"] == "NameConflict"), "{events:?}");
}
