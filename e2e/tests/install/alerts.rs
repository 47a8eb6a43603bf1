//! The chart's alerts, tested the way Prometheus users test theirs: `promtool test rules` cases
//! for every alert (charts/sluice/rule-tests), and a real Prometheus (Debian's package) that
//! scrapes an operator on loopback, evaluates the chart's rules and fires SluiceDatasetStale for
//! a Dataset made stale on purpose.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;
use sluice_e2e::cluster::{self, artifacts_dir};
use sluice_e2e::namespace::with_namespace;

use super::objects::{apply, dataset, operator_for, producer, run_now};
use super::prometheus::{Server, promtool, write_rules};
use super::tools::{chart_dir, unique};

/// A fresh directory under target/e2e.
fn scratch(prefix: &str) -> PathBuf {
    let dir = artifacts_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The alert names of a rules file.
fn alerts_of(rules: &std::path::Path) -> BTreeSet<String> {
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(rules).expect("rules")).expect("YAML");
    let groups = doc["groups"].as_array().expect("groups");
    let rules = groups.iter().flat_map(|g| g["rules"].as_array().expect("rules"));
    rules.filter_map(|r| r["alert"].as_str().map(str::to_string)).collect()
}

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let dir = scratch("rule-tests");
    let rules = write_rules(&dir, &[]);
    let checked = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(checked.ok, "promtool check rules:\n{}{}", checked.stdout, checked.stderr);
    let mut files = Vec::new();
    let mut text = String::new();
    for entry in std::fs::read_dir(chart_dir().join("rule-tests")).expect("rule-tests") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".test.yaml") {
            let copy = dir.join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).expect("copy test file");
            text.push_str(&std::fs::read_to_string(&path).unwrap());
            files.push(copy.to_string_lossy().into_owned());
        }
    }
    files.sort();
    let alerts = alerts_of(&rules);
    assert!(alerts.len() >= 6, "the rendered rules hold every alert: {alerts:?}");
    for alert in &alerts {
        assert!(text.contains(&format!("alertname: {alert}\n")), "no promtool test case for {alert}");
    }
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let start = Instant::now();
    let out = promtool(&args, None);
    assert!(out.ok, "promtool test rules:\n{}{}", out.stdout, out.stderr);
    let cases = text.matches("eval_time:").count();
    println!(
        "promtool test rules: {} files, {cases} cases over {} alerts, {:?}",
        files.len(),
        alerts.len(),
        start.elapsed()
    );
}

/// The firing SluiceDatasetStale alerts of namespace `ns` in Prometheus' /api/v1/alerts.
async fn firing_stale(server: &Server, ns: &str) -> Vec<Value> {
    let data = server.api("/api/v1/alerts").await;
    let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
    alerts
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "SluiceDatasetStale" && a["labels"]["namespace"] == ns)
        .filter(|a| a["state"] == "firing")
        .collect()
}

/// Waits until Prometheus has scraped the operator and holds `dataset`'s stale series at 0.
async fn wait_scraped_fresh(server: &Server, ns: &str, dataset: &str) {
    let query =
        format!("/api/v1/query?query=sluice_dataset_stale%7Bnamespace%3D%22{ns}%22%2Cdataset%3D%22{dataset}%22%7D");
    sluice_e2e::wait::poll(Duration::from_secs(60), &format!("Prometheus to scrape {ns}/{dataset} fresh"), || async {
        (server.api(&query).await["result"][0]["value"][1] == "0").then_some(())
    })
    .await;
}

#[tokio::test]
async fn prometheus_fires_the_stale_dataset_alert_for_a_dataset_made_stale() {
    let client = cluster::client(&cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "alerts", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let op = operator_for(n, "alerts-op").await;
        let dir = scratch("prometheus");
        // The alert's `for:` shortened through its chart value; scrapes and evaluations every second.
        write_rules(&dir, &["metrics.prometheusRule.staleFor=3s"]);
        let server = Server::start(&dir, &op.addr, "1s");
        server.wait_ready().await;
        // The watermark is taken once the operator and Prometheus are up, so the dataset's 20 s of
        // freshness are spent only on the run and a scrape (under CI load the start-up alone
        // once took longer, and the fresh series was never seen).
        // Whole seconds: status times are serialised to the second.
        let watermark = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
        apply(&client, n, &[dataset("late", "team-orders", "20s"), dataset("fresh", "team-crm", "1h")]).await;
        apply(&client, n, &[producer("ingest", &["late", "fresh"], watermark)]).await;
        run_now(&client, n, "ingest").await;
        wait_scraped_fresh(&server, n, "late").await;
        assert!(firing_stale(&server, n).await.is_empty(), "nothing fires while the dataset is fresh");

        let stale_at = watermark + jiff::SignedDuration::from_secs(20);
        let firing = sluice_e2e::wait::settle(
            Duration::from_secs(60),
            Duration::from_millis(250),
            || firing_stale(&server, n),
            |firing| !firing.is_empty(),
        )
        .await;
        let fired_at = Timestamp::now();
        assert_eq!(firing.len(), 1, "one alert, for the stale dataset only: {firing:#?}");
        let labels = &firing[0]["labels"];
        assert_eq!(labels["dataset"], "late");
        assert_eq!(labels["owner"], "team-orders", "routable to the owner");
        assert_eq!(labels["severity"], "warning");
        assert_eq!(firing[0]["annotations"]["summary"], format!("Dataset {n}/late is stale"));
        let after = fired_at.duration_since(stale_at).as_secs_f64();
        println!("SluiceDatasetStale firing {after:.1}s after the dataset's staleAt (staleFor 3s)");
        assert!(after >= 3.0, "fired before staleFor passed: {after}s after staleAt");
        assert!(after < 20.0, "fired {after}s after staleAt");
    })
    .await;
}
