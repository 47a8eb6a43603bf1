//! Scenario tests of a Backfill dry run: the plan in status, nothing created, then the real run.

use super::*;
use crate::api::{Cost, RunCost, StepCost};

/// extract (1 CPU) -> load (500m CPU), over one day of hourly windows.
fn two_steps() -> PipelineSpec {
    pipeline(&[("extract", "Extract", &[], "1"), ("load", "Transform", &["extract"], "500m")])
}

/// A succeeded pipeline run whose `extract` took `extract` seconds and `load` 60 seconds.
fn measured(hour: i64, extract: i64) -> RunRecord {
    let start = ts("2026-11-23T00:00:00Z") + SignedDuration::from_hours(hour);
    let window = PartitionWindow { start: Time(start), end: Time(start + SignedDuration::from_hours(1)) };
    let step = |name: &str, seconds| StepCost {
        name: name.into(),
        phase: "Succeeded".into(),
        attempts: 1,
        seconds,
        cost: Cost::default(),
    };
    RunRecord {
        id: format!("r{hour}"),
        window,
        phase: RunPhase::Succeeded,
        started: None,
        finished: None,
        failed_step: None,
        reason: None,
        manual: false,
        cost: Some(RunCost { total: Cost::default(), steps: vec![step("extract", extract), step("load", 60)] }),
        late_pass: None,
    }
}

#[test]
fn a_dry_run_plans_from_measured_durations_and_creates_nothing() {
    let mut w = World::new(backfill(serde_json::json!({"dryRun": true, "parallelism": 4})), two_steps());
    w.pipeline_status.recent_runs = vec![measured(0, 100), measured(1, 140)];
    w.budget = quota(3000, 0, 500);
    w.prices = Some(crate::cost::Prices { cpu_hour: 0.04, gib_hour: 0.0, gpu_hour: 0.0, currency: "USD".into() });
    let plan = w.decide();
    assert!(plan.create.is_empty(), "a dry run creates nothing: {:?}", plan.create);
    let p = plan.status.plan.clone().expect("the plan is in status");
    assert_eq!((p.windows, p.jobs), (24, 48));
    assert_eq!(p.steps[0].seconds, 120, "the mean of the measured runs");
    assert_eq!(p.steps[0].duration_basis, "Measured");
    assert_eq!((p.steps[0].cpu, p.steps[1].cpu), (1.0, 0.5));
    // 24 x (1 core x 120 s + 0.5 core x 60 s) = 3600 core-seconds = 1 core-hour.
    assert_eq!(p.cpu_hours, 1.0);
    assert_eq!(p.price, Some(0.04));
    // 2.5 CPU beyond the reserve fit 2 partitions' largest pod (1 CPU): fewer than parallelism 4.
    assert_eq!((p.concurrency, p.limited_by.as_str()), (2, "quota requests.cpu"));
    // 12 rounds of the 180 s chain extract -> load.
    assert_eq!(p.estimated_seconds, 12 * 180);
    assert_eq!(plan.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("DryRun"));
    assert!(plan.events.iter().any(|e| e.reason == "DryRunPlanned" && e.note.contains("24 window(s)")));

    // The same plan again: no second Event.
    w.apply(&plan);
    let again = w.decide();
    assert!(again.create.is_empty());
    assert!(!again.events.iter().any(|e| e.reason == "DryRunPlanned"));

    // dryRun off: the real backfill starts over the same windows, the plan kept.
    w.spec.dry_run = false;
    let real = w.decide();
    assert!(!real.create.is_empty(), "the real run starts");
    assert_eq!(real.status.plan, Some(p));
    assert_eq!(real.status.partitions.as_ref().unwrap().total, 24);
}

#[test]
fn without_history_the_default_duration_is_used_and_said() {
    let w = World::new(backfill(serde_json::json!({"dryRun": true, "parallelism": 3})), two_steps());
    let p = w.decide().status.plan.expect("plan");
    assert!(p.steps.iter().all(|s| s.duration_basis == "Default" && s.seconds == dry_run::DEFAULT_STEP_SECONDS));
    assert_eq!((p.concurrency, p.limited_by.as_str()), (3, "parallelism"));
    assert_eq!(p.estimated_seconds, 8 * 600);
    assert_eq!(p.price, None);
    assert!(dry_run::describe(&p).contains("2 step(s) without history assumed 300s"));
}

#[test]
fn reprocess_decides_which_windows_the_plan_counts() {
    // Windows the Pipeline already ran are skipped by default and counted with reprocess: all.
    let mut w = World::new(backfill(serde_json::json!({"dryRun": true})), two_steps());
    let ran = |hour: i64| {
        let mut r = measured(0, 10);
        let start = ts("2026-10-01T00:00:00Z") + SignedDuration::from_hours(hour);
        let window = crate::schedule::Window { start, end: start + SignedDuration::from_hours(1) };
        r.id = window.run_id();
        r.window = PartitionWindow { start: Time(window.start), end: Time(window.end) };
        r
    };
    w.pipeline_status.recent_runs = vec![ran(0), ran(1), ran(2)];
    let skipped = w.decide().status.plan.expect("plan");
    w.spec.reprocess = serde_json::from_value(serde_json::json!("All")).unwrap();
    let all = w.decide().status.plan.expect("plan");
    assert_eq!((skipped.windows, all.windows), (21, 24), "{skipped:?} {all:?}");
}
