//! Unit tests of cost accounting: usage of one Job, a run's cost, the sums, and the recording
//! of a run's cost by the Pipeline decision exactly when the run finishes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::LimitRangeSpec;
use serde_json::json;

use super::*;
use crate::api::{PipelineStatus, RunPhase};
use crate::plan::pipeline::{Input, decide};
use crate::plan::runs::JobState;
use crate::schedule::Window;

const GI: f64 = (1u64 << 30) as f64;

fn job(value: serde_json::Value) -> Job {
    serde_json::from_value(value).unwrap()
}

/// A Job whose pod has an init container (2 CPU, 1Gi), two containers (500m + 250m CPU,
/// 1Gi + 512Mi) and one GPU, started at 10:00:00 and `status` afterwards.
fn finished_job(status: serde_json::Value) -> Job {
    let mut status = status;
    status["startTime"] = json!("2026-11-24T10:00:00Z");
    job(json!({
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                         "limits": {"nvidia.com/gpu": "1"}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}
            ]
        }}},
        "status": status
    }))
}

#[test]
fn a_finished_job_reserves_its_effective_requests_for_its_run_time() {
    let done = finished_job(json!({
        "completionTime": "2026-11-24T10:01:30Z",
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-24T10:01:31Z"}]
    }));
    let usage = job_usage(&done, &ContainerDefaults::default()).expect("finished");
    assert_eq!(usage.seconds, 90);
    // The init container's 2 CPU is the larger of init and app (0.75); memory 1.5Gi > 1Gi; the
    // GPU request defaults to its limit.
    assert_eq!(usage.reserved, Reserved { cpu: 2000, memory: (3 << 29) * 1000, gpu: 1000 });
    let cost = usage.cost();
    assert_eq!(cost.cpu_seconds, 180.0);
    assert_eq!(cost.memory_byte_seconds, 1.5 * GI * 90.0);
    assert_eq!(cost.gpu_seconds, 90.0);
    assert_eq!(cost.price, None);
}

#[test]
fn a_failed_job_ends_at_its_failed_condition_and_a_running_one_has_no_usage() {
    let failed = finished_job(json!({
        "conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-11-24T10:00:10Z"}]
    }));
    assert_eq!(job_usage(&failed, &ContainerDefaults::default()).unwrap().seconds, 10);
    let running = finished_job(json!({"active": 1}));
    assert_eq!(job_usage(&running, &ContainerDefaults::default()), None);
}

#[test]
fn limit_range_defaults_count_for_containers_without_requests() {
    let bare = job(json!({
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}},
        "status": {"startTime": "2026-11-24T10:00:00Z", "completionTime": "2026-11-24T10:00:04Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}
    }));
    let range: LimitRangeSpec = serde_json::from_value(json!({"limits": [
        {"type": "Container", "defaultRequest": {"cpu": "250m", "memory": "128Mi"}}
    ]}))
    .unwrap();
    let usage = job_usage(&bare, &ContainerDefaults::from_limit_ranges([&range])).unwrap();
    assert_eq!(usage.cost().cpu_seconds, 1.0);
    assert_eq!(usage.cost().memory_byte_seconds, 128.0 * 1024.0 * 1024.0 * 4.0);
    assert_eq!(job_usage(&bare, &ContainerDefaults::default()).unwrap().cost().cpu_seconds, 0.0);
}

#[test]
fn gpus_are_any_vendor_gpu_resource() {
    assert!(is_gpu("nvidia.com/gpu") && is_gpu("amd.com/gpu"));
    assert!(!is_gpu("cpu") && !is_gpu("example.com/gpus") && !is_gpu("gpu"));
}

fn prices() -> Prices {
    Prices { cpu_hour: 0.036, gib_hour: 0.0036, gpu_hour: 1.8, currency: "EUR".into() }
}

#[test]
fn prices_are_per_hour_of_cores_gib_and_gpus() {
    let cost = Reserved { cpu: 2000, memory: (1 << 30) * 1000 * 4, gpu: 0 }.over(3600.0);
    let priced = prices().apply(cost);
    // 2 core-hours x 0.036 + 4 GiB-hours x 0.0036.
    assert_eq!(priced.price, Some(0.0864));
    assert_eq!(priced.currency.as_deref(), Some("EUR"));
}

fn observed(name: &str, step: &str) -> ObservedJob {
    let start: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    ObservedJob {
        name: name.into(),
        run_id: "r".into(),
        step: step.into(),
        attempt: 0,
        window: Window { start, end: start },
        created: start,
        state: JobState::Succeeded { finished: start },
    }
}

fn usage(cpu: Milli, seconds: i64) -> JobUsage {
    JobUsage { reserved: Reserved { cpu, memory: 1000 * 1000, gpu: 0 }, seconds }
}

#[test]
fn a_run_costs_every_attempt_of_every_step() {
    let t: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let steps =
        vec![("extract".to_string(), StepState::Succeeded { finished: t }), ("load".to_string(), StepState::Skipped)];
    let jobs = [observed("e0", "extract"), observed("e1", "extract"), observed("other", "load")];
    let refs: Vec<&ObservedJob> = jobs.iter().collect();
    let inputs = CostInputs {
        usage: BTreeMap::from([("e0".to_string(), usage(1000, 10)), ("e1".to_string(), usage(500, 30))]),
        prices: Some(prices()),
    };
    let cost = run_cost(&steps, &refs, &inputs).expect("usage known");
    assert_eq!(cost.steps.len(), 2);
    let extract = &cost.steps[0];
    assert_eq!((extract.phase.as_str(), extract.attempts, extract.seconds), ("Succeeded", 2, 40));
    assert_eq!(extract.cost.cpu_seconds, 25.0);
    assert_eq!(extract.cost.memory_byte_seconds, 40_000.0);
    assert_eq!(cost.steps[1].phase, "Skipped");
    assert_eq!(cost.steps[1].attempts, 0);
    assert_eq!(cost.total.cpu_seconds, 25.0);
    assert_eq!(cost.total.price, Some(round(25.0 / 3600.0 * 0.036 + 40_000.0 / GI / 3600.0 * 0.0036, 6)));
    // Without any known usage there is no figure to record.
    assert_eq!(run_cost(&steps, &refs, &CostInputs::default()), None);
}

/// The pipeline of the decision test: one step `extract` producing `raw`, and `load`.
fn spec() -> crate::api::PipelineSpec {
    let template = json!({"spec": {"containers": [{"name": "m", "image": "x"}]}});
    serde_json::from_value(json!({"schedule": "0 * * * *", "steps": [
        {"name": "extract", "kind": "Extract", "outputs": ["raw"], "template": template},
        {"name": "load", "kind": "Transform", "dependsOn": ["extract"], "outputs": ["curated"], "template": template}
    ]}))
    .unwrap()
}

fn input<'a>(spec: &'a crate::api::PipelineSpec, status: &'a PipelineStatus, now: &str) -> Input<'a> {
    Input::for_test(spec, status, "2026-11-24T10:20:00Z".parse().unwrap(), now.parse().unwrap())
}

#[test]
fn the_decision_records_a_run_cost_once_when_the_run_finishes() {
    let spec = spec();
    let started = decide(&input(&spec, &PipelineStatus::default(), "2026-11-24T11:00:00.5Z")).status;
    let run = started.active_runs[0].clone();
    let window = Window { start: run.window.start.0, end: run.window.end.0 };
    let done = |step: &str| ObservedJob {
        name: crate::jobs::job_name("p", step, &run.id, 0),
        run_id: run.id.clone(),
        step: step.into(),
        attempt: 0,
        window,
        created: "2026-11-24T11:00:01Z".parse().unwrap(),
        state: JobState::Succeeded { finished: "2026-11-24T11:02:00Z".parse().unwrap() },
    };
    let mut finish = input(&spec, &started, "2026-11-24T11:02:01Z");
    finish.jobs = vec![done("extract"), done("load")];
    finish.cost.usage = finish.jobs.iter().map(|j| (j.name.clone(), usage(2000, 60))).collect();
    let plan = decide(&finish);
    let record = &plan.status.recent_runs[0];
    assert_eq!(record.phase, RunPhase::Succeeded);
    let cost = record.cost.as_ref().expect("a finished run carries its cost");
    assert_eq!(cost.total.cpu_seconds, 240.0);
    let summary = plan.status.cost.clone().expect("summed over recentRuns");
    assert_eq!((summary.runs, summary.total.cpu_seconds), (1, 240.0));

    // The next decision keeps the record as it is (the run is not costed again) and the sum.
    let mut again = input(&spec, &plan.status, "2026-11-24T11:03:00Z");
    again.jobs = finish.jobs.clone();
    again.cost = finish.cost.clone();
    let next = decide(&again);
    assert_eq!(next.status.recent_runs, plan.status.recent_runs);
    assert!(next.finished.is_empty());
    assert_eq!(next.status.cost, Some(summary));

    // The dataset of `extract` is charged for `extract` only.
    let raw = dataset_summary("raw", [(&spec, &plan.status)]).expect("produced");
    assert_eq!((raw.runs, raw.total.cpu_seconds), (1, 120.0));
    assert_eq!(dataset_summary("elsewhere", [(&spec, &plan.status)]), None);
}
