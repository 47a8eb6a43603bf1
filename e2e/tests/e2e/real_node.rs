//! Steps that really run: containers on the local cluster's real node (kubelet, containerd,
//! runc; `e2e/cluster/node-up.sh`) from the locally built busybox image. A step's own
//! `/dev/termination-log` report reaches its Dataset; a real non-zero exit is a failed attempt and
//! is retried; `activeDeadlineSeconds` kills a running container; a container over its memory
//! limit is OOM-killed and the run says so. Skipped, saying why, on a cluster without a real node
//! (`SLUICE_REAL_NODE=0`).

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::real_node::{self, RealNode};
use sluice_e2e::{cluster, wait, yaml};

/// A pipeline of one step (output `outputs`) running `script` on the real node.
fn pipeline(node: &RealNode, name: &str, script: &str, step: Value) -> Value {
    let mut s = json!({"name": "main", "kind": "Extract", "template": node.template(script, json!({}))});
    s.as_object_mut().unwrap().extend(step.as_object().unwrap().clone());
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"schedule": "0 0 1 1 *", "steps": [s]}})
}

async fn run_now(client: &kube::Client, ns: &str, name: &str) {
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": "1"}}});
    yaml::sluice_api(client, ns, "Pipeline")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("run-now");
}

/// The Pipeline's status once its first run finished.
async fn finished_run(client: &kube::Client, ns: &str, name: &str) -> Value {
    let api = yaml::sluice_api(client, ns, "Pipeline");
    let done = |o: &DynamicObject| {
        serde_json::to_value(o).unwrap()["status"]["recentRuns"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["phase"] == "Succeeded" || r["phase"] == "Failed"))
    };
    let obj = wait::until(&api, name, Duration::from_secs(180), "a finished run", done).await;
    serde_json::to_value(obj).unwrap()["status"].clone()
}

async fn pods(client: &kube::Client, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("pods").items
}

/// The terminated state of a pod's first container, as JSON.
fn terminated(pod: &Pod) -> Value {
    let status = serde_json::to_value(pod.status.clone()).unwrap();
    status["containerStatuses"][0]["state"]["terminated"].clone()
}

/// The pod ran on the real node, in a container containerd started (kwok's fakes have none).
fn assert_ran_for_real(pod: &Pod, node: &RealNode) {
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()), "pod not on the real node");
    let status = serde_json::to_value(pod.status.clone()).unwrap();
    let id = status["containerStatuses"][0]["containerID"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("containerd://"), "container id {id:?} is not containerd's");
}

#[tokio::test]
async fn a_real_steps_termination_log_report_reaches_its_dataset() {
    let Some(node) = real_node::or_skip("a_real_steps_termination_log_report_reaches_its_dataset") else { return };
    sluice_e2e::in_namespace("real-report", |ns| async move {
        let (client, n, t0) = (ns.client.clone(), ns.name.as_str(), Instant::now());
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "orders"},
            "spec": {"owner": "team-a", "layer": "Raw", "contract": {"policy": "Warn",
                "columns": [{"name": "id", "type": "bigint", "nullable": false}]}}}))
            .await;
        // The row count is computed in the container, the watermark is the window start the
        // operator passed in the environment: both can only come from the process that ran.
        let script = r#"rows=$(seq 1 37 | wc -l)
printf '{"rowsWritten": %s, "watermark": "%s", "schema": [{"name": "id", "type": "bigint", "nullable": false}]}' \
  "$rows" "$SLUICE_PARTITION_START" >/dev/termination-log"#;
        ns.apply(&pipeline(&node, "ingest", script, json!({"outputs": ["orders"]}))).await;
        run_now(&client, n, "ingest").await;
        let st = finished_run(&client, n, "ingest").await;
        let run = &st["recentRuns"][0];
        assert_eq!(run["phase"], "Succeeded", "{st:#}");

        let datasets = yaml::sluice_api(&client, n, "Dataset");
        let ds = wait::until(&datasets, "orders", Duration::from_secs(60), "reported", |o: &DynamicObject| {
            serde_json::to_value(o).unwrap()["status"]["rowsWritten"] == 37
        })
        .await;
        let ds = serde_json::to_value(ds).unwrap()["status"].clone();
        let wm: jiff::Timestamp = ds["watermark"].as_str().unwrap().parse().unwrap();
        let start: jiff::Timestamp = run["window"]["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(wm, start, "watermark from the container's SLUICE_PARTITION_START: {ds:#}");
        assert_eq!(ds["observedSchema"], json!([{"name": "id", "type": "bigint", "nullable": false}]));
        assert_eq!(wait::condition(&json!({"status": ds}), "SchemaConformant").unwrap().0, "True");

        let pods = pods(&client, n).await;
        assert_eq!(pods.len(), 1);
        assert_ran_for_real(&pods[0], &node);
        assert_eq!(terminated(&pods[0])["exitCode"], 0);
        println!("real report test: {:.1}s", t0.elapsed().as_secs_f64());
    })
    .await;
}

#[tokio::test]
async fn a_real_non_zero_exit_is_a_failed_attempt_and_is_retried() {
    let Some(node) = real_node::or_skip("a_real_non_zero_exit_is_a_failed_attempt_and_is_retried") else { return };
    sluice_e2e::in_namespace("real-retry", |ns| async move {
        let (client, n, t0) = (ns.client.clone(), ns.name.as_str(), Instant::now());
        let script = r#"echo "attempt $SLUICE_ATTEMPT of $SLUICE_STEP"
if [ "$SLUICE_ATTEMPT" = 0 ]; then echo "failing on purpose" >&2; exit 3; fi"#;
        let retries = json!({"retries": {"limit": 2, "backoffSeconds": 1, "maxBackoffSeconds": 1}});
        ns.apply(&pipeline(&node, "flaky", script, retries)).await;
        run_now(&client, n, "flaky").await;
        let st = finished_run(&client, n, "flaky").await;
        assert_eq!(st["recentRuns"][0]["phase"], "Succeeded", "{st:#}");

        let jobs = Api::<Job>::namespaced(client.clone(), n).list(&ListParams::default()).await.expect("jobs").items;
        let attempt = |j: &Job| j.metadata.labels.as_ref().and_then(|l| l.get("sluice.dev/attempt")).cloned();
        let mut attempts: Vec<String> = jobs.iter().filter_map(attempt).collect();
        attempts.sort();
        assert_eq!(attempts, ["0", "1"], "one failed attempt, one retry");
        let pods = pods(&client, n).await;
        let first = pods
            .iter()
            .find(|p| p.metadata.labels.as_ref().unwrap()["sluice.dev/attempt"] == "0")
            .expect("pod of attempt 0");
        assert_ran_for_real(first, &node);
        assert_eq!(terminated(first)["exitCode"], 3, "the real exit code");
        assert_eq!(first.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));
        // The container's own output, through the kubelet (the node's address must be usable).
        let name = first.metadata.name.clone().unwrap();
        let (ok, out, err) = cluster::run_kubectl(&["logs", "-n", n, &name]);
        assert!(ok, "kubectl logs: {err}");
        assert!(out.contains("attempt 0 of main") && out.contains("failing on purpose"), "{out}");
        println!("real retry test: {:.1}s", t0.elapsed().as_secs_f64());
    })
    .await;
}

#[tokio::test]
async fn active_deadline_seconds_kills_a_real_container() {
    let Some(node) = real_node::or_skip("active_deadline_seconds_kills_a_real_container") else { return };
    sluice_e2e::in_namespace("real-deadline", |ns| async move {
        let (client, n, t0) = (ns.client.clone(), ns.name.as_str(), Instant::now());
        let mut p = pipeline(
            &node,
            "slow",
            "echo started; sleep 600",
            json!({
            "activeDeadlineSeconds": 3, "retries": {"limit": 0}}),
        );
        p["spec"]["steps"][0]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
        ns.apply(&p).await;
        run_now(&client, n, "slow").await;
        // It really started: the container ran (Running, with containerd's id) before the deadline.
        let running = wait::poll(Duration::from_secs(60), "the container running", || async {
            pods(&client, n).await.into_iter().find(|p| {
                let s = serde_json::to_value(p.status.clone()).unwrap();
                s["containerStatuses"][0]["state"]["running"].is_object()
            })
        })
        .await;
        assert_ran_for_real(&running, &node);

        let st = finished_run(&client, n, "slow").await;
        let run = &st["recentRuns"][0];
        assert_eq!(run["phase"], "Failed", "{st:#}");
        assert!(run["reason"].as_str().unwrap_or_default().contains("DeadlineExceeded"), "{run:#}");
        // Killed, not finished: the container is gone or terminated long before its 600 s sleep.
        let name = running.metadata.name.clone().unwrap();
        let api = Api::<Pod>::namespaced(client.clone(), n);
        let stopped = wait::poll(Duration::from_secs(60), "the container stopped", || async {
            match api.get_opt(&name).await.expect("pod") {
                None => Some("deleted".to_string()),
                Some(p) if terminated(&p).is_object() => Some(format!("terminated {}", terminated(&p))),
                Some(_) => None,
            }
        })
        .await;
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(120), "took {took:?}");
        println!("real deadline test: {:.1}s, container {stopped}", took.as_secs_f64());
    })
    .await;
}

#[tokio::test]
async fn a_real_container_over_its_memory_limit_is_oom_killed_and_reported_so() {
    let Some(node) = real_node::or_skip("a_real_container_over_its_memory_limit_is_oom_killed_and_reported_so") else {
        return;
    };
    sluice_e2e::in_namespace("real-oom", |ns| async move {
        let (client, n, t0) = (ns.client.clone(), ns.name.as_str(), Instant::now());
        // dd reads 256 MiB into one buffer: far over the 32 MiB limit.
        let mut p =
            pipeline(&node, "hungry", "dd if=/dev/zero of=/dev/null bs=256M count=1", json!({"retries": {"limit": 0}}));
        p["spec"]["steps"][0]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "32Mi"}});
        ns.apply(&p).await;
        run_now(&client, n, "hungry").await;
        let st = finished_run(&client, n, "hungry").await;
        let run = &st["recentRuns"][0];
        assert_eq!(run["phase"], "Failed", "{st:#}");

        let pods = pods(&client, n).await;
        assert_ran_for_real(&pods[0], &node);
        let t = terminated(&pods[0]);
        assert_eq!((t["reason"].as_str(), t["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{t:#}");
        let reason = run["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("OOMKilled: container main exited 137"), "the run's reason: {reason}");
        println!("real OOM test: {:.1}s", t0.elapsed().as_secs_f64());
    })
    .await;
}
