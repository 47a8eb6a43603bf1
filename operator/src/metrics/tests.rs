use super::*;

fn sample(name: &str, contract: Option<ContractSample>) -> DatasetSample {
    DatasetSample {
        namespace: "team-a".into(),
        name: name.into(),
        owner: "team-a".into(),
        watermark: None,
        max_age: None,
        contract,
    }
}

#[test]
fn contract_gauge_shows_checked_contracts_by_policy_and_forgets_deleted_datasets() {
    let metrics = Metrics::new();
    let present = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let seen = present.clone();
    metrics.set_dataset_source(move || {
        let mut all =
            vec![sample("orders", Some(ContractSample { violated: false, policy: "Warn" })), sample("unchecked", None)];
        if seen.load(std::sync::atomic::Ordering::SeqCst) {
            all.push(sample("events", Some(ContractSample { violated: true, policy: "Block" })));
        }
        all
    });
    let text = metrics.render();
    for line in [
        r#"sluice_dataset_contract_violated{dataset="events",namespace="team-a",policy="Block"} 1"#,
        r#"sluice_dataset_contract_violated{dataset="orders",namespace="team-a",policy="Warn"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains(r#"sluice_dataset_contract_violated{dataset="unchecked""#));
    present.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(!metrics.render().contains(r#"dataset="events""#), "a deleted dataset's series disappears");
}

#[test]
fn retries_count_jobs_of_later_attempts_per_step() {
    let metrics = Metrics::new();
    metrics.job_created("team-a", "pipeline", "orders", "extract", 0);
    metrics.job_created("team-a", "pipeline", "orders", "extract", 1);
    metrics.job_created("team-a", "backfill", "orders", "extract", 2);
    metrics.job_created("team-a", "pipeline", "orders", "load", 0);
    let text = metrics.render();
    for line in [
        r#"sluice_step_retries_total{namespace="team-a",pipeline="orders",step="extract"} 2"#,
        r#"sluice_jobs_created_total{namespace="team-a",owner="pipeline"} 3"#,
        r#"sluice_jobs_created_total{namespace="team-a",owner="backfill"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains(r#"step="load""#), "a first attempt is no retry");
}

#[test]
fn every_family_is_listed_with_its_type_and_labels() {
    let metrics = Metrics::new();
    let families = metrics.registry.families();
    let find = |name: &str| families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(find("sluice_step_duration_seconds").kind, "histogram");
    assert_eq!(find("sluice_step_duration_seconds").labels, ["namespace", "pipeline", "step", "result"]);
    assert_eq!(find("sluice_step_retries_total").kind, "counter");
    assert_eq!(find("sluice_dataset_contract_violated").labels, ["namespace", "dataset", "policy"]);
    assert_eq!(find("controller_runtime_reconcile_total").kind, "counter");
    assert_eq!(find("sluice_lineage_queue_depth").kind, "gauge");
    let exposed = metrics.registry.gather().len();
    assert!(families.len() > exposed, "families without series are listed too ({} vs {exposed})", families.len());
}
