//! The examples' step templates pass Pod Security "restricted": in a namespace that enforces it,
//! the API server admits their pods (a refused pod would leave the Job without pods and the run
//! would never succeed), and the operator adds nothing that the level forbids.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;
use sluice_e2e::cluster::example_files;
use sluice_e2e::{wait, yaml};

#[tokio::test]
async fn the_examples_run_in_a_restricted_namespace() {
    sluice_e2e::in_namespace("restricted", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                                    "pod-security.kubernetes.io/enforce-version": "latest"}}});
        Api::<Namespace>::all(client.clone())
            .patch(n, &PatchParams::default(), &Patch::Merge(&labels))
            .await
            .expect("label namespace");
        for file in example_files() {
            yaml::apply_all(&client, n, &std::fs::read_to_string(&file).expect("readable")).await;
        }
        let pipelines = yaml::sluice_api(&client, n, "Pipeline");
        let run_now = json!({"metadata": {"annotations": {"sluice.dev/run-now": "restricted"}}});
        pipelines.patch("orders-ingest", &PatchParams::default(), &Patch::Merge(&run_now)).await.expect("run-now");
        wait::until(&pipelines, "orders-ingest", Duration::from_secs(90), "a run Succeeded", |p: &DynamicObject| {
            let v = serde_json::to_value(p).unwrap();
            v["status"]["recentRuns"].as_array().is_some_and(|r| r.iter().any(|r| r["phase"] == "Succeeded"))
        })
        .await;
    })
    .await;
}
