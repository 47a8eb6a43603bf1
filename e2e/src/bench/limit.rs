//! L: how fast the API server accepts the benchmark's Jobs from a bare kube-rs client, swept
//! over the number of requests in flight. L = the highest create rate whose POST p99 <= 1 s.
//! The Jobs are the fan-in's (same pod template) but suspended, so the Job controller creates
//! no pods and each level measures the API server alone rather than the backlog of the last.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;

use super::objects;
use super::stats::{Summary, summarize};

/// One level of the sweep.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Level {
    pub in_flight: usize,
    pub jobs: usize,
    /// Jobs created per second over the level.
    pub rate: f64,
    /// POST round trips, seconds.
    pub latency: Summary,
}

/// The highest rate among `levels` whose p99 is at most 1 s.
pub fn limit(levels: &[Level]) -> f64 {
    levels.iter().filter(|l| l.latency.p99 <= 1.0).map(|l| l.rate).fold(0.0, f64::max)
}

fn job(name: &str) -> Job {
    let template = objects::pod_template("1s", None);
    serde_json::from_value(serde_json::json!({"metadata": {"name": name},
        "spec": {"suspend": true, "backoffLimit": 0, "template": template}}))
    .expect("job")
}

/// Creates `count` Jobs with `in_flight` requests at once.
async fn level(api: &Api<Job>, in_flight: usize, count: usize) -> Level {
    let started = Instant::now();
    let latencies: Vec<f64> = futures::stream::iter(0..count)
        .map(|i| {
            let (api, job) = (api.clone(), job(&format!("l{in_flight}-{i}")));
            async move {
                let t = Instant::now();
                api.create(&PostParams::default(), &job).await.expect("Job created");
                t.elapsed().as_secs_f64()
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    Level { in_flight, jobs: count, rate, latency: summarize(&latencies) }
}

/// Runs the sweep in namespace `bench-limit` (deleted afterwards); prints each level.
pub async fn sweep(client: &kube::Client, in_flight: &[usize]) -> Vec<Level> {
    let ns = "bench-limit";
    objects::fresh_namespace(client, ns).await;
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut levels = Vec::new();
    for &k in in_flight {
        let l = level(&api, k, 200.max(3 * k)).await;
        println!(
            "  L sweep: in-flight {:>3}: {:>4} Jobs at {:>6.1}/s, POST p50 {:.3} s p99 {:.3} s max {:.3} s",
            k, l.jobs, l.rate, l.latency.p50, l.latency.p99, l.latency.max
        );
        levels.push(l);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    objects::delete_namespace(client, ns).await;
    levels
}
