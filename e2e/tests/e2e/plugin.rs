//! The `kubectl-sluice` plugin binary against the real control plane: trigger, suspend and
//! resume, a backfill dry run, and `status -o json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

/// The plugin binary, built with cargo when missing.
fn plugin() -> PathBuf {
    let root = sluice_e2e::cluster::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let path = target.join("debug/kubectl-sluice");
    if !path.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "sluice-plugin", "--bin", "kubectl-sluice"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building kubectl-sluice failed");
    }
    path
}

/// Runs the plugin in namespace `ns`; panics unless it succeeds; returns its stdout.
async fn sluice(ns: &str, args: &[&str]) -> String {
    let mut command = Command::new(plugin());
    command.arg("-n").arg(ns).args(args).env("KUBECONFIG", sluice_e2e::cluster::kubeconfig());
    let out = tokio::task::spawn_blocking(move || command.output().expect("plugin runs")).await.expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "kubectl-sluice {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn step(name: &str, deps: &[&str]) -> Value {
    json!({"name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" }, "dependsOn": deps,
           "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "1s"}},
                        "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}})
}

#[tokio::test]
async fn the_plugin_triggers_suspends_plans_and_shows_status() {
    let client = sluice_e2e::setup().await;
    with_namespace(&client, "plugin", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let pipeline = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
            "spec": {"schedule": "0 * * * *", "steps": [step("extract", &[]), step("load", &["extract"])]}});
        yaml::apply(&client, n, &pipeline).await.expect("pipeline");
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        wait::until(&pipelines, "orders", Duration::from_secs(60), "Ready", |o: &DynamicObject| {
            wait::condition(&serde_json::to_value(o).unwrap(), "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;

        sluice(n, &["trigger", "orders"]).await;
        wait::until(&pipelines, "orders", Duration::from_secs(120), "run Succeeded", |o: &DynamicObject| {
            o.data["status"]["recentRuns"][0]["phase"] == "Succeeded"
        })
        .await;
        let status: Value = serde_json::from_str(&sluice(n, &["status", "orders", "-o", "json"]).await).expect("json");
        let run = &status["pipelines"][0]["runs"][0];
        assert_eq!(run["phase"], "Succeeded", "{status:#}");
        let steps: Vec<&str> = run["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(steps, ["extract", "load"]);
        assert!(run["cost"]["cpuSeconds"].as_f64().unwrap() > 0.0, "{run:#}");
        let text = sluice(n, &["status"]).await;
        assert!(text.contains("pipeline/orders") && text.contains("└── extract Succeeded"), "{text}");

        sluice(n, &["suspend", "orders"]).await;
        assert_eq!(pipelines.get("orders").await.unwrap().data["spec"]["suspend"], true);
        sluice(n, &["resume", "orders"]).await;
        assert_eq!(pipelines.get("orders").await.unwrap().data["spec"]["suspend"], false);

        let out = sluice(
            n,
            &[
                "backfill",
                "orders",
                "--from",
                "2026-10-01T00:00:00Z",
                "--to",
                "2026-10-01T04:00:00Z",
                "--dry-run",
                "--name",
                "oct",
                "-o",
                "json",
            ],
        )
        .await;
        let planned: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            (planned["plan"]["windows"].as_i64(), planned["plan"]["jobs"].as_i64()),
            (Some(4), Some(8)),
            "{out}"
        );
        // Durations measured by the manual run.
        assert_eq!(planned["plan"]["steps"][0]["durationBasis"], "Measured", "{out}");
        let backfill = yaml::sluice_api(&client, n, "Backfill").get("oct").await.expect("backfill");
        assert_eq!(backfill.data["spec"]["dryRun"], true);
        let backfill_jobs = Api::<Job>::namespaced(client.clone(), n)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| j.metadata.owner_references.iter().flatten().any(|o| o.kind == "Backfill"))
            .count();
        assert_eq!(backfill_jobs, 0, "a dry run creates no Job");
    })
    .await;
}
