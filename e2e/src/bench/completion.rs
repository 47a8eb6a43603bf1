//! C: how fast this cluster runs the backfill's Jobs to completion when a bare kube-rs client
//! creates them all at once (128 requests in flight, the top of the L sweep) and only watches.
//! Every Job still needs the Job controller to create its pod, the scheduler to bind it, kwok to
//! run it for the pod's duration and the Job controller to mark the Job Complete; a backfill
//! cannot finish partitions faster than that, whoever creates the Jobs. L only measures the
//! POSTs: C is the bound that the unbound backfill's rate is read against beside L.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};

use super::objects;

/// Requests in flight while creating.
const IN_FLIGHT: usize = 128;

fn job(name: &str, pod_duration: &str) -> Job {
    let template = objects::pod_template(pod_duration, None);
    serde_json::from_value(serde_json::json!({"metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template}}))
    .expect("job")
}

fn finished(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")))
}

/// Waits until `count` Jobs of `api` have finished.
async fn all_finished(api: Api<Job>, count: usize) {
    let mut done = HashSet::new();
    let mut jobs = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
    while done.len() < count {
        match jobs.try_next().await {
            Ok(Some(j)) if finished(&j) => {
                done.insert(j.metadata.name.unwrap_or_default());
            }
            Ok(_) => {}
            Err(e) => eprintln!("  C: watch error {e}; watching again"),
        }
    }
}

/// Creates `count` Jobs whose pods run `pod_duration` in namespace `bench-completion` (deleted
/// afterwards) and returns Jobs finished per second, from the first create to the last finish.
pub async fn measure(client: &kube::Client, count: usize, pod_duration: &str) -> f64 {
    let ns = "bench-completion";
    objects::fresh_namespace(client, ns).await;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let watching = tokio::spawn(all_finished(api.clone(), count));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let (api, job) = (api.clone(), job(&format!("c-{i}"), pod_duration));
            async move { api.create(&PostParams::default(), &job).await.map(|_| ()) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .expect("Jobs created");
    let created = started.elapsed().as_secs_f64();
    watching.await.expect("watch");
    let wall = started.elapsed().as_secs_f64();
    let rate = count as f64 / wall;
    println!("  C: {count} Jobs created in {created:.1} s, all finished after {wall:.1} s: {rate:.1}/s");
    objects::delete_namespace(client, ns).await;
    rate
}
