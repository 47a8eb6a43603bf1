//! The operator's real /metrics, scraped from a running operator: `promtool check metrics` finds
//! nothing, dataset series carry the owner, and the series of a deleted Pipeline, Dataset or
//! Backfill (and of the ResourceQuota it budgeted against) leave with it.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{cluster, yaml};

use super::objects::{apply, dataset, hourly, operator_for, producer, quota, run_now, suspended_backfill};
use super::prometheus::promtool;
use super::tools::OperatorProcess;

/// The series each object leaves in /metrics, by kind and name.
const DOOMED: &[(&str, &str, &str)] = &[
    ("Dataset", "orders", r#"dataset="orders""#),
    ("Pipeline", "ingest", r#"pipeline="ingest""#),
    ("Backfill", "history", r#"backfill="history""#),
    ("Pipeline", "hourly", r#"pipeline="hourly""#),
];
/// Series of objects that stay: removing them would be a bug too.
const KEPT: &[&str] = &[r#"dataset="kept""#, r#"pipeline="keeper""#];

/// Creates the objects, runs both producers once and waits until /metrics shows every series.
async fn populate(client: &kube::Client, ns: &str, op: &OperatorProcess) -> String {
    let now = Timestamp::now();
    apply(client, ns, &[quota("budget"), dataset("orders", "team-orders", "1h"), dataset("kept", "team-kept", "1h")])
        .await;
    apply(client, ns, &[producer("ingest", &["orders"], now), producer("keeper", &["kept"], now)]).await;
    apply(client, ns, &[hourly("hourly"), suspended_backfill("history", "hourly", "budget")]).await;
    run_now(client, ns, "ingest").await;
    run_now(client, ns, "keeper").await;
    let want = [
        format!(r#"sluice_dataset_stale{{dataset="orders",namespace="{ns}","#),
        format!(r#"sluice_runs_finished_total{{namespace="{ns}",pipeline="ingest",result="succeeded"}}"#),
        format!(r#"sluice_runs_finished_total{{namespace="{ns}",pipeline="keeper",result="succeeded"}}"#),
        format!(r#"sluice_backfill_throttled{{backfill="history",namespace="{ns}",reason="Suspended"}} 1"#),
        format!(r#"sluice_backfill_throttled{{backfill="history",namespace="{ns}",reason="QuotaExhausted"}} 0"#),
        format!(r#"sluice_backfill_partitions{{backfill="history",namespace="{ns}",phase="pending"}} 2"#),
        format!(r#"sluice_backfill_quota_headroom{{namespace="{ns}",resource="requests.cpu",resourcequota="budget"}}"#),
    ];
    let wanted = |m: &str| want.iter().all(|w| m.contains(w.as_str())) && KEPT.iter().all(|k| m.contains(k));
    wait_metrics(op, Duration::from_secs(60), "every object's series", wanted).await
}

/// Polls the operator's /metrics until `check` holds; returns that text.
async fn wait_metrics(op: &OperatorProcess, timeout: Duration, what: &str, check: impl Fn(&str) -> bool) -> String {
    let last = sluice_e2e::wait::settle(timeout, Duration::from_millis(200), || op.metrics(), |m| check(m)).await;
    assert!(check(&last), "no {what} in /metrics after {timeout:?}:\n{last}");
    last
}

#[tokio::test]
async fn promtool_check_metrics_is_clean_on_the_operators_metrics() {
    let client = cluster::client(&cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "promlint", |ns| async move {
        let op = operator_for(&ns.name, "promlint-op").await;
        let metrics = populate(&ns.client, &ns.name, &op).await;
        let owner =
            format!(r#"sluice_dataset_stale{{dataset="orders",namespace="{}",owner="team-orders"}} 0"#, ns.name);
        assert!(metrics.contains(&owner), "the dataset's owner is a label: {owner}\n{metrics}");
        let families = metrics.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let out = promtool(&["check", "metrics"], Some(&metrics));
        assert!(out.ok, "promtool check metrics:\n{}{}", out.stdout, out.stderr);
        assert!(out.stdout.trim().is_empty() && out.stderr.trim().is_empty(), "{}{}", out.stdout, out.stderr);
        println!("promtool check metrics: clean on {families} families, {} lines", metrics.lines().count());
    })
    .await;
}

#[tokio::test]
async fn series_of_deleted_objects_leave_metrics() {
    let client = cluster::client(&cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "gone", |ns| async move {
        let op = operator_for(&ns.name, "gone-op").await;
        populate(&ns.client, &ns.name, &op).await;
        let deleted = Instant::now();
        for (kind, name, _) in DOOMED {
            let api = yaml::sluice_api(&ns.client, &ns.name, kind);
            api.delete(name, &Default::default()).await.unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
        }
        let gone = |m: &str| {
            let quota = r#"resourcequota="budget""#;
            DOOMED.iter().all(|(_, _, label)| !m.contains(label)) && !m.contains(quota)
        };
        let metrics = wait_metrics(&op, Duration::from_secs(30), "deleted object's series gone", gone).await;
        println!("series of deleted objects gone {:?} after the deletes", deleted.elapsed());
        for kept in KEPT {
            assert!(metrics.contains(kept), "the series of {kept} must stay:\n{metrics}");
        }
    })
    .await;
}
