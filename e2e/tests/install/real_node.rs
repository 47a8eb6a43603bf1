//! The chart for real: the locally built operator image (`images/sluice-operator`, imported into
//! the real node's containerd) installed by Helm on the real node, in a namespace enforcing Pod
//! Security "restricted". The pods become Ready through their real probes, one takes the Lease
//! and runs a Pipeline whose step runs on the real node, `helm test` really asks a replica's
//! /readyz, and when the leader pod is killed the other replica takes over and acts.
//!
//! The cluster has no kube-proxy and no DNS: the operator reaches the API server at the node's
//! address (KUBERNETES_SERVICE_HOST/PORT through `operator.extraEnv`), and `helm test` is given the
//! leader pod's URL (`tests.url`) instead of the Service's. Skipped, saying why, without a real
//! node.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::cluster::{artifacts_dir, repo_root};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::real_node::{self, RealNode};
use sluice_e2e::{wait, yaml};

use super::cluster::enforce_restricted;
use super::tools::{chart_dir, helm_ok, unique};

/// Builds localhost/sluice-operator:dev from the release binary (cached when unchanged; `make
/// e2e-test` builds the binary first: cargo's lock is held while tests run) and imports it into
/// the real node's containerd.
async fn build_operator_image() {
    let status = tokio::task::spawn_blocking(|| {
        std::process::Command::new("bash")
            .arg(repo_root().join("images/build.sh"))
            .arg("sluice-operator")
            .env("SLUICE_IMAGE_IMPORT", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("images/build.sh runs")
    })
    .await
    .expect("build thread");
    assert!(status.success(), "images/build.sh sluice-operator failed ({status})");
}

/// The release's values: the local image, on the real node, acting on `namespace` only.
fn values(node: &RealNode, namespace: &str) -> Value {
    let mut v = json!({
        "image": {"repository": "localhost/sluice-operator", "tag": "dev", "pullPolicy": "IfNotPresent"},
        "crds": {"install": false},
        "watchNamespace": namespace,
        "operator": {"extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": node.api_host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": node.api_port}]},
        "tests": {"image": {"repository": "localhost/busybox", "tag": "dev", "pullPolicy": "IfNotPresent"}},
    });
    v.as_object_mut().unwrap().extend(node.placement().as_object().unwrap().clone());
    v
}

/// A Pipeline whose step runs on the real node, as "restricted" admits it.
fn pipeline(node: &RealNode) -> Value {
    let mut template = node.template(
        "echo '{\"rowsWritten\": 1}' >/dev/termination-log",
        json!({
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}),
    );
    template["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}});
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "real"},
           "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "extract", "kind": "Extract", "template": template}]}})
}

async fn holder(client: &kube::Client, ns: &str, lease: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt(lease).await.ok().flatten().and_then(|l| l.spec?.holder_identity)
}

/// Waits until the Lease is held by one of the release's Ready pods other than `not`; returns it.
async fn leader(client: &kube::Client, ns: &str, lease: &str, not: Option<&str>, timeout: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait::poll(timeout, "a Ready leader pod", || async {
        let who = holder(client, ns, lease).await.filter(|h| Some(h.as_str()) != not)?;
        let pod = pods.get_opt(&who).await.ok().flatten()?;
        let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(pod)
    })
    .await
}

/// Runs the Pipeline now and waits for run number `n` to have succeeded.
async fn run_and_wait(client: &kube::Client, ns: &str, n: usize) {
    let api = yaml::sluice_api(client, ns, "Pipeline");
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": n.to_string()}}});
    api.patch("real", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("run-now");
    wait::until(&api, "real", Duration::from_secs(120), "run succeeded", |o: &DynamicObject| {
        serde_json::to_value(o).unwrap()["status"]["recentRuns"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|r| r["phase"] == "Succeeded").count() >= n)
    })
    .await;
}

/// The pods of the release's Deployment ran for real: on the real node, in containerd.
async fn assert_operator_pods_real(client: &kube::Client, ns: &str, node: &RealNode) {
    let selector = ListParams::default().labels("app.kubernetes.io/component=operator");
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&selector).await.expect("pods").items;
    assert_eq!(pods.len(), 2, "two replicas");
    for pod in &pods {
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(node.name.as_str()));
        let status = serde_json::to_value(pod.status.clone()).unwrap();
        let id = status["containerStatuses"][0]["containerID"].as_str().unwrap_or_default().to_string();
        assert!(id.starts_with("containerd://"), "{id}");
    }
}

#[tokio::test]
async fn the_chart_runs_the_operator_image_on_the_real_node_and_fails_over() {
    let Some(node) = real_node::or_skip("the_chart_runs_the_operator_image_on_the_real_node_and_fails_over") else {
        return;
    };
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    let t0 = Instant::now();
    build_operator_image().await;
    println!("operator image built and imported in {:.1}s", t0.elapsed().as_secs_f64());
    with_namespace(&client, "chart-real", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.clone());
        enforce_restricted(&client, &n).await;
        let release = unique("sluice-real");
        let values_file = artifacts_dir().join(format!("{release}-values.json"));
        std::fs::write(&values_file, values(&node, &n).to_string()).expect("values file");
        let chart = chart_dir();
        let (chart, values_path) = (chart.to_str().unwrap(), values_file.to_str().unwrap());
        let t1 = Instant::now();
        helm_ok(&["install", &release, chart, "-n", &n, "-f", values_path, "--wait", "--timeout", "180s"]).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &n);
        wait::until(&deployments, &release, Duration::from_secs(120), "2 available", |d: &Deployment| {
            d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
        })
        .await;
        assert_operator_pods_real(&client, &n, &node).await;
        let first = leader(&client, &n, &release, None, Duration::from_secs(60)).await;
        println!("chart installed, both replicas Ready, Lease taken in {:.1}s", t1.elapsed().as_secs_f64());

        ns.apply(&pipeline(&node)).await;
        run_and_wait(&client, &n, 1).await;
        helm_test(&release, &n, chart, &first).await;

        // The leader dies without releasing the Lease: the standby takes over once it expires.
        let first_name = first.metadata.name.clone().unwrap();
        let t2 = Instant::now();
        Api::<Pod>::namespaced(client.clone(), &n)
            .delete(&first_name, &DeleteParams::default().grace_period(0))
            .await
            .expect("kill the leader");
        let second = leader(&client, &n, &release, Some(&first_name), Duration::from_secs(90)).await;
        println!(
            "failover: {} took the Lease {:.1}s after the leader was killed",
            second.metadata.name.clone().unwrap(),
            t2.elapsed().as_secs_f64()
        );
        run_and_wait(&client, &n, 2).await;
        helm_ok(&["uninstall", &release, "-n", &n, "--wait", "--timeout", "60s"]).await;
    })
    .await;
}

/// `helm test`, its pod on the real node asking the leader's /readyz (no Service routing here).
async fn helm_test(release: &str, ns: &str, chart: &str, leader: &Pod) {
    let ip = leader.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("leader pod IP");
    let url = format!("tests.url=http://{ip}:8080/readyz");
    helm_ok(&["upgrade", release, chart, "-n", ns, "--reuse-values", "--set", &url, "--wait", "--timeout", "120s"])
        .await;
    // Succeeded only if wget got a 200 from /readyz (the pod is deleted then: hook-succeeded).
    // Its node selector and toleration put it on the real node, where nothing is faked.
    let out = helm_ok(&["test", release, "-n", ns, "--timeout", "90s"]).await;
    assert!(out.contains("Phase:          Succeeded"), "{out}");
}
