//! Cost accounting on a real control plane: a run's recorded cost equals its pods' effective
//! requests times each Job's run time as the Jobs' own `startTime` and `completionTime` say,
//! summed per Pipeline and per Dataset, priced at the operator's prices, and counted once in
//! the `sluice_step_*_total` counters.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::operator::{self, CURRENCY, PRICE_CPU_HOUR, PRICE_GIB_HOUR};
use sluice_e2e::{wait, yaml};

const MI: f64 = 1024.0 * 1024.0;

/// A step with an init container (300m, 32Mi) and an app container (200m, 64Mi): it reserves
/// max(init, app) = 300m CPU and 64Mi memory.
fn step(name: &str, deps: &[&str], duration: &str, outputs: &[&str]) -> Value {
    let requests = |cpu: &str, mem: &str| json!({"requests": {"cpu": cpu, "memory": mem}});
    json!({
        "name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" },
        "dependsOn": deps, "outputs": outputs,
        "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": duration}},
                     "spec": {"initContainers": [{"name": "init", "image": "example.com/init:1",
                                                  "resources": requests("300m", "32Mi")}],
                              "containers": [{"name": "main", "image": "example.com/step:1",
                                              "resources": requests("200m", "64Mi")}]}}
    })
}

/// CPU-seconds and memory byte-seconds a step Job reserved, from its own timestamps.
fn expected(job: &Job) -> (f64, f64) {
    let status = job.status.as_ref().expect("status");
    let start = status.start_time.as_ref().expect("startTime").0;
    let end = status.completion_time.as_ref().expect("completionTime").0;
    let secs = end.duration_since(start).as_secs() as f64;
    (0.3 * secs, 64.0 * MI * secs)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

async fn metric(addr: &str, series: &str) -> Option<f64> {
    let (_, body) = operator::http_get(addr, "/metrics").await.ok()?;
    body.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_finished_run_records_requests_times_run_time_once() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "cost", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let spec = json!({"schedule": "0 0 1 1 *", "steps": [
            step("extract", &[], "2s", &["raw"]), step("load", &["extract"], "3s", &[])]});
        let pipeline = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
                              "metadata": {"name": "orders"}, "spec": spec});
        let dataset = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "raw"},
                             "spec": {"owner": "team-a", "layer": "Raw"}});
        yaml::apply(&client, n, &dataset).await.expect("dataset");
        yaml::apply(&client, n, &pipeline).await.expect("pipeline");
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": "1"}}});
        pipelines.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("trigger");

        let obj =
            wait::until(&pipelines, "orders", Duration::from_secs(120), "a run with its cost", |o: &DynamicObject| {
                o.data["status"]["recentRuns"][0]["cost"].is_object()
            })
            .await;
        let status = obj.data["status"].clone();
        let run = &status["recentRuns"][0];
        assert_eq!(run["phase"], "Succeeded", "{run:#}");
        let jobs = Api::<Job>::namespaced(client.clone(), n).list(&ListParams::default()).await.expect("jobs").items;
        assert_eq!(jobs.len(), 2);
        let (mut cpu, mut mem) = (0.0, 0.0);
        for job in &jobs {
            let step = &job.metadata.labels.as_ref().unwrap()["sluice.dev/step"];
            let recorded = run["cost"]["steps"].as_array().unwrap().iter().find(|s| &s["name"] == step).unwrap();
            let (c, m) = expected(job);
            println!("step {step}: {recorded}; expected cpu {c} memory {m}");
            assert!(c > 0.0, "the Job ran for at least a second");
            assert!(close(recorded["cost"]["cpuSeconds"].as_f64().unwrap(), c), "{step}: {recorded} vs {c}");
            assert!(close(recorded["cost"]["memoryByteSeconds"].as_f64().unwrap(), m), "{step}: {recorded} vs {m}");
            assert_eq!(recorded["attempts"], 1);
            (cpu, mem) = (cpu + c, mem + m);
        }
        let total = &run["cost"]["total"];
        assert!(close(total["cpuSeconds"].as_f64().unwrap(), cpu), "{total} vs {cpu}");
        assert!(close(status["cost"]["total"]["cpuSeconds"].as_f64().unwrap(), cpu), "{:#}", status["cost"]);
        assert_eq!(status["cost"]["runs"], 1);

        if let Some(addr) = operator::shared_http_addr() {
            let price = cpu / 3600.0 * PRICE_CPU_HOUR + mem / (1024.0 * MI) / 3600.0 * PRICE_GIB_HOUR;
            assert!((total["price"].as_f64().unwrap() - price).abs() < 2e-6, "{total} vs {price}");
            assert_eq!(total["currency"], CURRENCY);
            // Counted once, also after later reconciles (the Pipeline is touched to wake it).
            let touch = json!({"metadata": {"annotations": {"touch": "x"}}});
            pipelines.patch("orders", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("touch");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut counted = 0.0;
            for step in ["extract", "load"] {
                let series =
                    format!(r#"sluice_step_cpu_seconds_total{{namespace="{n}",pipeline="orders",step="{step}"}}"#);
                counted += metric(addr, &series).await.unwrap_or_else(|| panic!("missing {series}"));
            }
            assert!(close(counted, cpu), "counters {counted} vs {cpu}");
        }

        // The Dataset `raw` is charged for its producing step, `extract`, only.
        let datasets = yaml::sluice_api(&client, n, "Dataset");
        let raw = wait::until(&datasets, "raw", Duration::from_secs(30), "costed", |o: &DynamicObject| {
            o.data["status"]["cost"]["runs"] == 1
        })
        .await;
        let extract = run["cost"]["steps"].as_array().unwrap().iter().find(|s| s["name"] == "extract").unwrap();
        assert_eq!(raw.data["status"]["cost"]["total"]["cpuSeconds"], extract["cost"]["cpuSeconds"]);
    })
    .await;
}
