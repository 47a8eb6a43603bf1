//! A Backfill dry run on a real control plane: the plan (windows, Jobs, resources, CPU-hours,
//! wall time under the quota) in status and an Event, no Job while `dryRun` is true, and the
//! real backfill over the same windows once it is turned off.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

fn step(name: &str, deps: &[&str], cpu: &str) -> Value {
    json!({
        "name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" }, "dependsOn": deps,
        "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "1s"}},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                                              "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}}
    })
}

async fn job_count(client: &kube::Client, ns: &str) -> usize {
    Api::<Job>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("jobs").items.len()
}

#[tokio::test]
async fn a_dry_run_plans_without_jobs_and_turning_it_off_runs_the_plan() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "dryrun", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
                           "spec": {"hard": {"requests.cpu": "700m"}}});
        yaml::apply(&client, n, &quota).await.expect("quota");
        let pipeline = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
            "spec": {"schedule": "0 * * * *", "suspend": true,
                     "steps": [step("extract", &[], "200m"), step("load", &["extract"], "100m")]}});
        yaml::apply(&client, n, &pipeline).await.expect("pipeline");
        let backfill = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "oct"},
            "spec": {"pipelineRef": {"name": "orders"}, "dryRun": true, "parallelism": 4,
                     "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T06:00:00Z"},
                     "budget": {"resourceQuotaRef": {"name": "compute"}, "reserve": {"requests.cpu": "200m"}}}});
        yaml::apply(&client, n, &backfill).await.expect("backfill");
        let backfills = yaml::sluice_api(&client, n, "Backfill");
        let planned = wait::until(&backfills, "oct", Duration::from_secs(60), "planned", |o: &DynamicObject| {
            o.data["status"]["plan"].is_object()
        })
        .await;
        let plan = planned.data["status"]["plan"].clone();
        println!("plan: {plan:#}");
        assert_eq!((plan["windows"].as_i64(), plan["jobs"].as_i64()), (Some(6), Some(12)), "{plan:#}");
        // No history: both steps at the stated default of 300 s.
        for s in plan["steps"].as_array().unwrap() {
            assert_eq!((s["durationBasis"].as_str(), s["seconds"].as_i64()), (Some("Default"), Some(300)), "{s}");
        }
        // 6 x (0.2 + 0.1) cores x 300 s = 540 core-seconds.
        assert_eq!(plan["cpuHours"].as_f64(), Some(0.15));
        // 700m - 200m reserve holds two 200m extract pods: 3 rounds of the 600 s chain.
        assert_eq!((plan["concurrency"].as_i64(), plan["limitedBy"].as_str()), (Some(2), Some("quota requests.cpu")));
        assert_eq!(plan["estimatedSeconds"].as_i64(), Some(1800));
        assert_eq!(planned.data["status"]["throttled"]["reason"], "DryRun");
        // The Event follows the status write that recorded the plan.
        let mut events = Vec::new();
        for _ in 0..100 {
            events = wait::events(&client, n).await;
            if events.iter().any(|e| e.reason.as_deref() == Some("DryRunPlanned")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(events.iter().any(|e| e.reason.as_deref() == Some("DryRunPlanned")), "{events:#?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(job_count(&client, n).await, 0, "no Job while dryRun is true");

        let patch = json!({"spec": {"dryRun": false}});
        backfills.patch("oct", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("turn dryRun off");
        let done = wait::until(&backfills, "oct", Duration::from_secs(120), "Complete", |o: &DynamicObject| {
            wait::condition(&serde_json::to_value(o).unwrap(), "Complete").is_some_and(|c| c.0 == "True")
        })
        .await;
        let status = &done.data["status"];
        assert_eq!(status["partitions"]["succeeded"], 6, "{status:#}");
        assert_eq!(status["plan"], plan, "the plan is kept");
    })
    .await;
}
