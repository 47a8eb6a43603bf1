//! Benchmark: a 1,000-partition backfill on the local cluster under a ResourceQuota, next to
//! the pipeline's scheduled runs. Prints the wall time, the peak of concurrent pods against what
//! the quota allows, and the size of the Backfill object at the end; asserts only what must
//! hold whatever the speed (every window once, no quota refusal).
//!
//! `cargo test -p sluice-e2e --test bench_backfill -- --ignored --nocapture`
//! (`SLUICE_BENCH_PARTITIONS` changes the number of partitions.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use sluice::api::Backfill;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::operator::{http_get, shared_http_addr};
use sluice_e2e::{usage, yaml};

const QUOTA_CPU_MILLI: i64 = 10_000;
const RESERVE_CPU_MILLI: i64 = 2_000;
const STEP_CPU_MILLI: i64 = 500;

/// The sum of a counter's samples for `namespace`-independent series matching `prefix`.
fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
#[ignore = "benchmark: run by hand"]
async fn a_thousand_partition_backfill() {
    let partitions: i64 = std::env::var("SLUICE_BENCH_PARTITIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "bench-backfill", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let seen = usage::watch(&client, n);
        yaml::apply(&client, n, &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": format!("{QUOTA_CPU_MILLI}m")}}}))
        .await
        .expect("quota");
        // Minutely windows; the pipeline keeps running on schedule during the backfill.
        let now = Timestamp::now();
        let end = Timestamp::from_second(now.as_second() - now.as_second() % 60 - 60).expect("time");
        let start = end - SignedDuration::from_mins(partitions);
        yaml::apply(&client, n, &json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "events"},
            "spec": {"schedule": "* * * * *", "history": {"successful": 2, "failed": 2},
                "steps": [{"name": "load", "kind": "Extract",
                    "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "1s"}},
                        "spec": {"containers": [{"name": "m", "image": "example.com/load:1",
                            "resources": {"requests": {"cpu": format!("{STEP_CPU_MILLI}m")}}}]}}}]}}))
        .await
        .expect("pipeline");
        let metrics_before = match shared_http_addr() {
            Some(addr) => http_get(addr, "/metrics").await.map(|(_, m)| m).unwrap_or_default(),
            None => String::new(),
        };
        let started = Instant::now();
        yaml::apply(&client, n, &json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "year"},
            "spec": {"pipelineRef": {"name": "events"}, "range": {"start": start.to_string(), "end": end.to_string()},
                "parallelism": 50,
                "budget": {"resourceQuotaRef": {"name": "compute"}, "reserve": {"requests.cpu": format!("{RESERVE_CPU_MILLI}m")}}}}))
        .await
        .expect("backfill");
        let api: Api<Backfill> = Api::namespaced(client.clone(), n);
        let complete = |b: &Backfill| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
        };
        let read = || async { api.get("year").await.expect("backfill") };
        let done = sluice_e2e::wait::settle(Duration::from_secs(3600), Duration::from_millis(500), read, complete).await;
        assert!(complete(&done), "not done after an hour: {:#?}", done.status);
        let wall = started.elapsed();
        let size = serde_json::to_vec(&done).expect("json").len();
        let status_size = serde_json::to_vec(&done.status).expect("json").len();
        let counts = done.status.as_ref().and_then(|s| s.partitions.clone()).expect("counts");
        let events: Api<Event> = Api::namespaced(client.clone(), n);
        let refusals = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.message.as_deref().is_some_and(|m| m.contains("exceeded quota")))
            .count();
        let metrics_after = match shared_http_addr() {
            Some(addr) => http_get(addr, "/metrics").await.map(|(_, m)| m).unwrap_or_default(),
            None => String::new(),
        };
        let writes = metric(&metrics_after, "sluice_status_writes_total{controller=\"backfill\"}")
            - metric(&metrics_before, "sluice_status_writes_total{controller=\"backfill\"}");
        let reconciles = metric(&metrics_after, "sluice_reconcile_total{controller=\"backfill\"")
            - metric(&metrics_before, "sluice_reconcile_total{controller=\"backfill\"");

        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let jobs = seen.backfill_jobs("year");
        let windows: BTreeSet<&str> = jobs.iter().map(|j| j.run.as_str()).collect();
        let backfill = seen.peak(|j| j.is_some_and(|j| j.backfill == "year"));
        let all = seen.peak(|_| true);
        let fit = (QUOTA_CPU_MILLI - RESERVE_CPU_MILLI) / STEP_CPU_MILLI;
        println!("backfill of {partitions} partitions (1 step of {STEP_CPU_MILLI}m CPU, pods run 1 s, parallelism 50)");
        println!("  quota requests.cpu {QUOTA_CPU_MILLI}m, reserve {RESERVE_CPU_MILLI}m: {fit} backfill pods fit");
        println!("  wall time                       {:.1} s ({:.1} partitions/s)", wall.as_secs_f64(), partitions as f64 / wall.as_secs_f64());
        println!("  result                          {} succeeded, {} failed, {} skipped", counts.succeeded, counts.failed, counts.skipped);
        println!("  Jobs created                    {} for {} windows", jobs.len(), windows.len());
        println!("  peak backfill pods              {} ({}m CPU) of {fit} that fit", backfill.pods, backfill.millicores);
        println!("  peak pods in the namespace      {} ({}m CPU) of quota {}m", all.pods, all.millicores, QUOTA_CPU_MILLI);
        println!("  quota refusals                  {refusals}");
        println!("  Backfill object at the end      {size} bytes (status {status_size} bytes)");
        println!("  backfill reconciles             {reconciles:.0}, status writes {writes:.0}");
        assert_eq!((jobs.len(), windows.len()), (partitions as usize, partitions as usize), "every window exactly once");
        assert_eq!(refusals, 0);
        assert!(all.millicores <= QUOTA_CPU_MILLI);
    })
    .await;
}
