//! What one scheduled run writes, counted on the API server's side (its audit log): one Job
//! create, two Pipeline status writes (the run made active before its Job exists, then the run
//! recorded finished, deleting the Job history no longer keeps) and that one delete. Seeing the
//! Job it created is no write, and a reconcile that runs before the watch shows that Job, or
//! drops the one deleted, does not create or delete it again.

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use sluice::api::{Pipeline, RunPhase};
use sluice_e2e::audit::{self, AuditEvent};
use sluice_e2e::wait;

const RUNS: usize = 5;

fn by_operator(e: &&AuditEvent) -> bool {
    e.user_agent.starts_with("sluice-operator/")
}

#[tokio::test]
async fn a_scheduled_run_costs_one_create_and_two_status_writes() {
    sluice_e2e::in_namespace("writes", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "tick"},
            "spec": {"schedule": "*/5 * * * * *", "history": {"successful": 1},
                "steps": [{"name": "extract", "kind": "Extract",
                    "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "300ms"}},
                        "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}}))
            .await;
        let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), n);
        let what = format!("{RUNS} succeeded runs");
        wait::until(&pipelines, "tick", Duration::from_secs(90), &what, |p: &Pipeline| {
            let runs = p.status.as_ref().map(|s| s.recent_runs.as_slice()).unwrap_or_default();
            runs.iter().filter(|r| r.phase == RunPhase::Succeeded).count() >= RUNS
        })
        .await;
        let events = audit::read_settled(&client, n).await;
        let ours: Vec<&AuditEvent> = events.iter().filter(by_operator).collect();
        let creates = ours.iter().filter(|e| e.is_job_create()).count();
        let refused: Vec<&&AuditEvent> =
            ours.iter().filter(|e| e.verb == "create" && e.resource == "jobs" && !e.is_job_create()).collect();
        let deletes: Vec<&&AuditEvent> = ours.iter().filter(|e| e.verb == "delete" && e.resource == "jobs").collect();
        let status_writes = ours
            .iter()
            .filter(|e| e.resource == "pipelines" && e.subresource == "status" && e.is_successful_write())
            .count();
        println!(
            "{creates} Job creates, {status_writes} status writes, {} deletes, {} refused creates (skipped windows after)",
            deletes.len(),
            refused.len()
        );
        assert!(creates >= RUNS, "{creates} Job creates for {RUNS} recorded runs");
        assert!(refused.is_empty(), "creates of Jobs that already existed: {refused:?}");
        // History keeps one succeeded run: every run but the newest lost its Job, once.
        let mut deleted: Vec<&str> = deletes.iter().map(|e| e.name.as_str()).collect();
        deleted.sort_unstable();
        deleted.dedup();
        assert_eq!(deleted.len(), deletes.len(), "a Job deleted twice: {deletes:?}");
        assert!(deletes.len() >= RUNS - 1, "{} deletes for {RUNS} runs kept to one", deletes.len());
        // Per created Job: its tick's write and its finish's. Beside them: the first status (Ready,
        // before any tick), and one per window skipped while a slow run still ran (recorded
        // RunSkipped; read after the audit log, so counted at least as often as written).
        let status = pipelines.get("tick").await.expect("pipeline").status.unwrap_or_default();
        let skipped = status.skipped_windows as usize;
        assert!(
            status_writes <= 2 * creates + skipped + 1,
            "{status_writes} status writes for {creates} runs and {skipped} skipped windows: more than two per run"
        );
    })
    .await;
}
