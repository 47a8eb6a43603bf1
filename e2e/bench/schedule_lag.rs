//! Benchmark: schedule lag, from a tick to the creation of its run's first Job, for one pipeline
//! and for 100 pipelines sharing a schedule. Prints figures; asserts nothing about speed.
//!
//! `cargo test -p sluice-e2e --test bench_schedule_lag -- --ignored --nocapture` (or `make bench`).

use std::time::Duration;

use serde_json::json;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::operator::{http_get, shared_http_addr};
use sluice_e2e::yaml;

fn pipeline(name: &str) -> serde_json::Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": "*/10 * * * * *", "history": {"successful": 1, "failed": 1},
                 "steps": [{"name": "extract", "kind": "Extract",
                            "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "200ms"}},
                                         "spec": {"containers": [{"name": "m", "image": "example.com/x:1"}]}}}]}})
}

/// (count, sum, buckets) of `sluice_schedule_lag_seconds` for one namespace.
fn lag_histogram(metrics: &str, namespace: &str) -> (f64, f64, Vec<(f64, f64)>) {
    let ns = format!("namespace=\"{namespace}\"");
    let mut count = 0.0;
    let mut sum = 0.0;
    let mut buckets: std::collections::BTreeMap<String, f64> = Default::default();
    for line in metrics.lines().filter(|l| l.starts_with("sluice_schedule_lag_seconds") && l.contains(&ns)) {
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if line.starts_with("sluice_schedule_lag_seconds_count") {
            count += value;
        } else if line.starts_with("sluice_schedule_lag_seconds_sum") {
            sum += value;
        } else if let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) {
            *buckets.entry(le.to_string()).or_default() += value;
        }
    }
    let mut buckets: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(le, v)| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (count, sum, buckets)
}

/// The upper bound of the bucket holding quantile `q`.
fn quantile(buckets: &[(f64, f64)], count: f64, q: f64) -> f64 {
    buckets.iter().find(|(_, c)| *c >= q * count).map(|(le, _)| *le).unwrap_or(f64::NAN)
}

async fn measure(client: &kube::Client, pipelines: usize, ticks: usize) {
    let label = format!("lag{pipelines}");
    with_namespace(client, &label, |ns| async move {
        for i in 0..pipelines {
            yaml::apply(&ns.client, &ns.name, &pipeline(&format!("p{i:03}"))).await.expect("pipeline");
        }
        let addr = shared_http_addr().expect("the harness started the operator");
        let wanted = (pipelines * ticks) as f64;
        let timeout = Duration::from_secs((ticks * 10 + 30) as u64);
        let read = || async { lag_histogram(&http_get(addr, "/metrics").await.expect("metrics").1, &ns.name) };
        let last = sluice_e2e::wait::settle(timeout, Duration::from_secs(1), read, |l| l.0 >= wanted).await;
        let (count, sum, buckets) = last;
        println!(
            "schedule lag, {pipelines} pipeline(s) sharing `*/10 * * * * *`: {count} runs, mean {:.3}s, p50 <= {}s, p99 <= {}s, max bucket <= {}s",
            sum / count.max(1.0),
            quantile(&buckets, count, 0.5),
            quantile(&buckets, count, 0.99),
            quantile(&buckets, count, 1.0),
        );
        for i in 0..pipelines {
            let patch = json!({"spec": {"suspend": true}});
            let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                ns.client.clone(),
                &ns.name,
                &kube::discovery::ApiResource {
                    group: "sluice.dev".into(),
                    version: "v1alpha1".into(),
                    api_version: "sluice.dev/v1alpha1".into(),
                    kind: "Pipeline".into(),
                    plural: "pipelines".into(),
                },
            );
            let _ = api.patch(&format!("p{i:03}"), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await;
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn schedule_lag_one_and_hundred_pipelines() {
    let client = sluice_e2e::setup().await;
    measure(&client, 1, 3).await;
    measure(&client, 100, 3).await;
}
