//! A large Backfill of a one-step pipeline: without a binding quota (its rate against L), and
//! under a binding ResourceQuota (its rate against the quota-bound ideal = quota / (requests x
//! pod duration), the quota's utilisation over the run, and quota refusals).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use sluice::api::Backfill;

use super::report::{self, Row};
use super::{Bench, objects};

/// The pods' run time without a budget.
pub const UNBOUND_POD: &str = "1000ms";

/// A binding quota: `quota_milli` of requests.cpu, pods asking `step_milli`, running `pod_secs`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub quota_milli: i64,
    pub step_milli: i64,
    pub pod_secs: f64,
}

impl Budget {
    /// Partitions per second if the quota were always full.
    pub fn ideal(&self) -> f64 {
        self.quota_milli as f64 / (self.step_milli as f64 * self.pod_secs)
    }
}

/// Samples every 200 ms the CPU requested by the namespace's pods that the quota counts.
fn sample_usage(client: &kube::Client, namespace: &str) -> Arc<Mutex<Vec<(Timestamp, i64)>>> {
    let (store, writer) = reflector::store::<Pod>();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let stream = watcher(pods, watcher::Config::default()).reflect(writer).applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let into = samples.clone();
    tokio::spawn(async move {
        loop {
            let used: i64 = store
                .state()
                .iter()
                .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
                .map(|p| crate::usage::millicores(p))
                .sum();
            into.lock().unwrap_or_else(|e| e.into_inner()).push((Timestamp::now(), used));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    samples
}

fn complete(b: &Backfill) -> bool {
    let conditions = b.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Creates the pipeline, the quota (with `budget`) and the Backfill; returns the wall time
/// until the Backfill is done and the quota refusals.
async fn backfill(client: &kube::Client, ns: &str, partitions: i64, budget: Option<Budget>) -> (f64, usize, Backfill) {
    let (cpu, duration) = budget.map_or((None, UNBOUND_POD.to_string()), |b| {
        (Some(format!("{}m", b.step_milli)), format!("{}ms", (b.pod_secs * 1000.0) as i64))
    });
    let template = objects::pod_template(&duration, cpu.as_deref());
    let mut pipeline = objects::pipeline("events", "* * * * *", &template);
    pipeline["spec"]["suspend"] = json!(true);
    crate::yaml::apply(client, ns, &pipeline).await.expect("pipeline");
    let now = Timestamp::now();
    let end = Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(60) - 60).expect("time");
    let start = end - SignedDuration::from_mins(partitions);
    let mut spec = json!({"pipelineRef": {"name": "events"}, "range": {"start": start.to_string(), "end": end.to_string()},
        "parallelism": 1000});
    if let Some(b) = budget {
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": format!("{}m", b.quota_milli)}}});
        crate::yaml::apply(client, ns, &quota).await.expect("quota");
        tokio::time::sleep(Duration::from_secs(2)).await;
        spec["budget"] = json!({"resourceQuotaRef": {"name": "compute"}});
    }
    let started = std::time::Instant::now();
    let doc =
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "bench"}, "spec": spec});
    crate::yaml::apply(client, ns, &doc).await.expect("backfill");
    let api: Api<Backfill> = Api::namespaced(client.clone(), ns);
    let read = || async { api.get("bench").await.expect("backfill") };
    let done = crate::wait::settle(Duration::from_secs(3600), Duration::from_millis(250), read, complete).await;
    let wall = started.elapsed().as_secs_f64();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let listed = events.list(&Default::default()).await.expect("events").items;
    let refused: Vec<&Event> =
        listed.iter().filter(|e| e.message.as_deref().is_some_and(|m| m.contains("exceeded quota"))).collect();
    for e in refused.iter().take(3) {
        let at = e.last_timestamp.as_ref().or(e.first_timestamp.as_ref()).map(|t| t.0.to_string());
        println!("  refusal at {}: {}", at.unwrap_or_default(), e.message.as_deref().unwrap_or_default());
    }
    let refusals = refused.len();
    (wall, refusals, done)
}

/// Runs one Backfill of `partitions` (with `budget`, or none) and adds its rows.
pub async fn run(bench: &Bench, partitions: i64, budget: Option<Budget>) {
    let ns = if budget.is_some() { "bench-backfill-quota" } else { "bench-backfill" };
    objects::fresh_namespace(&bench.client, ns).await;
    let samples = sample_usage(&bench.client, ns);
    let from = Timestamp::now();
    let (wall, refusals, done) = backfill(&bench.client, ns, partitions, budget).await;
    let to = Timestamp::now();
    let counts = done.status.as_ref().and_then(|s| s.partitions.clone()).unwrap_or_default();
    let events = crate::audit::read_settled(&bench.client, ns).await;
    let w = super::writes::count(&events, super::writes::is_sluice, from, to);
    let rate = partitions as f64 / wall;
    println!(
        "  backfill {partitions} partitions ({budget:?}): {wall:.1} s, {rate:.1}/s, {} succeeded, {} failed, {} skipped of {}; refusals {refusals}; writes {w:?}",
        counts.succeeded, counts.failed, counts.skipped, counts.total
    );
    let scale = format!("{partitions} partitions");
    report::add(Row::ratio(
        "backfill Jobs created per partition",
        &scale,
        w.job_creates as f64 / partitions as f64,
        "exactly once",
        1.0,
    ));
    report::add(
        Row::ratio(
            "backfill API writes per partition",
            &scale,
            w.object_writes() as f64 / partitions as f64,
            "target",
            2.0,
        )
        .within_peer(),
    );
    match budget {
        None => {
            let l = bench.limit.unwrap_or(f64::NAN);
            report::add(Row::ratio("backfill rate, no binding quota (/s)", &scale, rate, "L", l).ratio_at_least(0.8));
            let c = bench.completion.unwrap_or(f64::NAN);
            report::add(
                Row::ratio("backfill rate, no binding quota (/s)", &scale, rate, "C (bare client)", c)
                    .ratio_at_least(0.8),
            );
        }
        Some(b) => {
            report::add(
                Row::ratio("backfill rate, binding quota (/s)", &scale, rate, "quota-bound ideal", b.ideal())
                    .ratio_at_least(0.9),
            );
            let samples = samples.lock().unwrap_or_else(|e| e.into_inner());
            let during: Vec<i64> = samples.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, m)| *m).collect();
            let mean = during.iter().sum::<i64>() as f64 / during.len().max(1) as f64;
            report::add(
                Row::ratio("backfill quota utilisation", &scale, mean / b.quota_milli as f64, "target", 0.9)
                    .ratio_at_least(1.0),
            );
            report::add(Row::ratio("backfill quota refusals", &scale, refusals as f64, "target", 0.0).within_peer());
        }
    }
    objects::delete_namespace(&bench.client, ns).await;
}
