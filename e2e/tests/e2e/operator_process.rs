//! The operator process: health, readiness and metrics endpoints, and graceful shutdown.

use std::time::Duration;

use sluice_e2e::operator::{http_get, spawn_operator, wait_ready};
use sluice_e2e::wait;

#[tokio::test]
async fn serves_health_metrics_and_stops_on_sigterm() {
    let client = sluice_e2e::setup().await;
    // Something for the second replica to reconcile.
    let ns = sluice_e2e::TestNamespace::create(&client, "process").await;
    let dataset = serde_json::json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
        "spec": {"owner": "team-a", "layer": "Raw"}});
    sluice_e2e::yaml::apply(&client, &ns.name, &dataset).await.expect("dataset");
    let kubeconfig = sluice_e2e::cluster::kubeconfig();
    // A second replica of its own, so stopping it leaves the shared one running; limited to this
    // namespace, so that other tests running meanwhile keep one operator.
    let only = ns.name.clone();
    let (mut child, addr) = tokio::task::spawn_blocking(move || {
        spawn_operator(&kubeconfig, "operator-sigterm", &["--log-format", "json", "--namespace", &only])
    })
    .await
    .expect("spawned");
    wait_ready(&addr).await;
    assert_eq!(http_get(&addr, "/healthz").await.expect("healthz").0, 200);
    let metrics = wait::settle(
        Duration::from_secs(10),
        wait::EVERY,
        || async {
            let (code, body) = http_get(&addr, "/metrics").await.expect("metrics");
            assert_eq!(code, 200);
            body
        },
        |metrics| metrics.contains(r#"sluice_reconcile_total{controller="dataset",result="success"}"#),
    )
    .await;
    assert!(metrics.contains(r#"sluice_reconcile_total{controller="dataset",result="success"}"#), "{metrics}");
    // controller-runtime's names, beside Sluice's own.
    for series in [
        r#"controller_runtime_reconcile_total{controller="dataset",result="success"}"#,
        r#"controller_runtime_reconcile_total{controller="pipeline",result="error"} 0"#,
        r#"controller_runtime_reconcile_errors_total{controller="backfill"} 0"#,
        r#"controller_runtime_reconcile_time_seconds_bucket{controller="dataset",le="0.005"}"#,
        r#"controller_runtime_max_concurrent_reconciles{controller="dataset"} 32"#,
        r#"controller_runtime_active_workers{controller="dataset"}"#,
        r#"workqueue_work_duration_seconds_count{controller="dataset",name="dataset"}"#,
        r#"workqueue_retries_total{controller="dataset",name="dataset"} 0"#,
        r#"workqueue_longest_running_processor_seconds{controller="dataset",name="dataset"}"#,
    ] {
        assert!(metrics.contains(series), "missing {series}:\n{metrics}");
    }
    ns.delete().await;

    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let exited = || std::future::ready(child.try_wait().expect("wait"));
    let status = wait::poll_every(Duration::from_secs(10), wait::EVERY, exited).await;
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("the operator exits within 10s of SIGTERM");
    assert!(status.success(), "exit status {status}");
}
