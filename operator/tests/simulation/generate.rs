//! Random scenarios: one Pipeline spec per seed (schedule, 1-3 steps with `dependsOn` and CPU
//! requests, history, concurrency, retries, catch-up, starting deadline), one or two Backfills
//! of it over windows around its creation (range, parallelism, reprocess, steps, retries, a
//! ResourceQuota with a reserve), and which fault kinds are on.
//!
//! Not generated: data-aware triggers (no Datasets are modelled), `run-now` annotations, time
//! zones other than UTC, partition size/offset, spec changes after creation, Job caps.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sluice::api::{BackfillSpec, PipelineSpec};

use crate::rng::Rng;

/// The fault kinds a run may inject; shrinking turns them off one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Watch caches lag behind the API server by a random number of events.
    pub lag: bool,
    /// A second replica reconciles the same Pipeline with its own caches.
    pub second_replica: bool,
    /// A replica restarts between two API calls (its in-flight reconcile is dropped, or its
    /// last call lands but the answer is lost) and relists its caches.
    pub restarts: bool,
    /// The clock jumps forward by minutes or hours.
    pub clock_jumps: bool,
    /// Jobs fail (retries in the spec).
    pub job_failures: bool,
    /// Backfills of the Pipeline run (one, sometimes a second over an overlapping range).
    pub backfill: bool,
    /// Deleted Jobs linger with a deletionTimestamp for a while.
    pub terminating: bool,
}

impl Faults {
    pub const ALL: Faults = Faults {
        lag: true,
        second_replica: true,
        restarts: true,
        clock_jumps: true,
        job_failures: true,
        backfill: true,
        terminating: true,
    };

    /// Every fault set with exactly one kind turned off, with its name.
    pub fn without_one(self) -> Vec<(&'static str, Faults)> {
        let mut out = Vec::new();
        let mut push = |name, on: bool, f: Faults| {
            if on {
                out.push((name, f));
            }
        };
        push("lag", self.lag, Faults { lag: false, ..self });
        push("second_replica", self.second_replica, Faults { second_replica: false, ..self });
        push("restarts", self.restarts, Faults { restarts: false, ..self });
        push("clock_jumps", self.clock_jumps, Faults { clock_jumps: false, ..self });
        push("job_failures", self.job_failures, Faults { job_failures: false, ..self });
        push("backfill", self.backfill, Faults { backfill: false, ..self });
        push("terminating", self.terminating, Faults { terminating: false, ..self });
        out
    }
}

/// One seed's Pipeline and the time scale it runs at.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub spec: PipelineSpec,
    /// The schedule's period: the unit of Job durations and clock steps.
    pub period: SignedDuration,
    pub created: Timestamp,
    /// The Backfills (name, spec), over windows of the Pipeline's schedule.
    pub backfills: Vec<(String, BackfillSpec)>,
    /// `spec.hard` of the ResourceQuota `compute`, in milli-CPU.
    pub hard_milli: i64,
}

/// The ResourceQuota the Backfills' budgets name.
pub const QUOTA: &str = "compute";

pub fn scenario(rng: &mut Rng) -> Scenario {
    // Lateness is drawn from an RNG of its own, so that the rest of a seed's scenario and its
    // faults stay what they were before lateness existed.
    let mut late_rng = Rng::new(rng.clone().next_u64() ^ 0x1a7e_1a7e);
    let (schedule, period) = *rng.pick(&[
        ("*/2 * * * * *", 2),
        ("*/5 * * * * *", 5),
        ("*/5 * * * * *", 5),
        ("0 * * * *", 3600),
        ("*/15 * * * *", 900),
    ]);
    let steps = rng.range(1, 3) as usize;
    let names = ["extract", "load", "audit"];
    let backoff = (period / 2).max(1);
    let steps: Vec<_> = (0..steps)
        .map(|i| {
            // Step i depends on one earlier step, or on none.
            let depends: Vec<&str> =
                if i > 0 && rng.chance(70) { vec![names[rng.below(i as u64) as usize]] } else { vec![] };
            json!({
                "name": names[i],
                "kind": if i == 0 { "Extract" } else { "Transform" },
                "dependsOn": depends,
                "retries": {"limit": rng.range(0, 2), "backoffSeconds": rng.range(1, backoff as u64),
                            "maxBackoffSeconds": backoff * 2},
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox",
                    "resources": {"requests": {"cpu": format!("{}m", rng.range(1, 5) * 100)}}}]}},
            })
        })
        .collect();
    let mut spec = json!({
        "schedule": schedule,
        "steps": steps,
        "history": {"successful": rng.range(0, 5), "failed": rng.range(0, 5)},
        "concurrency": {
            "policy": rng.pick(&["Forbid", "Replace", "Queue"]),
            "maxConcurrentRuns": rng.range(1, 3),
            "maxQueued": rng.range(1, 4),
        },
        "catchUp": {"policy": rng.pick(&["Latest", "All", "None"]), "maxRuns": rng.range(1, 5)},
    });
    if rng.chance(30) {
        spec["startingDeadlineSeconds"] = json!(rng.range(1, 3) as i64 * period);
    }
    if late_rng.chance(50) {
        spec["lateness"] = json!({"lookback": late_rng.range(1, 3)});
        let steps = spec["steps"].as_array_mut().expect("steps");
        let opted = late_rng.below(steps.len() as u64) as usize;
        for (i, step) in steps.iter_mut().enumerate() {
            if i == opted || late_rng.chance(30) {
                step["lateRerun"] = json!(true);
            }
        }
    }
    let created: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let created = created + SignedDuration::from_secs(rng.below(period as u64) as i64);
    let spec: PipelineSpec = serde_json::from_value(spec).expect("generated spec");
    let period = SignedDuration::from_secs(period);
    // The reserve covers what the Pipeline's runs can request at once, so that Sluice as a
    // whole stays within `hard`; beyond it, room for the Pipeline's runs again (a backfill
    // counts them too) and for one to a few backfill Jobs.
    let per_run: i64 = spec.steps.iter().map(step_milli).sum();
    let runs = spec.concurrency.as_ref().and_then(|c| c.max_concurrent_runs).unwrap_or(1) as i64 + 1;
    // With lateness the scheduled runs also start late passes (up to `lookback` a tick, each
    // lasting up to 3 periods): the reserve covers those too, as it must in a real namespace.
    let lookback = spec.lateness.as_ref().and_then(|l| l.lookback).unwrap_or(0) as i64;
    let late_milli: i64 = spec.steps.iter().filter(|s| s.late_rerun).map(step_milli).sum();
    let reserve = per_run * runs + late_milli * lookback * 3;
    let biggest = spec.steps.iter().map(step_milli).max().unwrap_or(0);
    let room = biggest * rng.range(1, 4) as i64 + rng.below(300) as i64;
    let backfills = if rng.chance(30) { 2 } else { 1 };
    // TransformsOnly needs a Transform step: without one the Backfill stays pending with no
    // reason given (see the report of the simulation's findings).
    let transforms = spec.steps.len() > 1;
    let backfills =
        (0..backfills).map(|i| (format!("bf{i}"), backfill(rng, created, period, reserve, transforms))).collect();
    Scenario { spec, period, created, backfills, hard_milli: 2 * reserve + room }
}

/// The CPU request of a step's pod, in milli-CPU.
pub fn step_milli(step: &sluice::api::StepSpec) -> i64 {
    let pod = step.template.spec.as_ref().expect("generated template");
    sluice::quota::pod_demand(pod, &Default::default()).amount("requests.cpu") as i64
}

/// A Backfill over windows from a few periods before the Pipeline's creation to a few after.
fn backfill(rng: &mut Rng, created: Timestamp, period: SignedDuration, reserve: i64, transforms: bool) -> BackfillSpec {
    let start = created - period * rng.range(0, 6) as i32;
    let end = created + period * rng.range(1, 8) as i32;
    let spec = json!({
        "pipelineRef": {"name": "orders"},
        "range": {"start": start.to_string(), "end": end.to_string()},
        "steps": if rng.chance(20) && transforms { "TransformsOnly" } else { "All" },
        "reprocess": rng.pick(&["Missing", "Missing", "Failed", "All"]),
        "parallelism": rng.range(1, 8),
        "order": if rng.chance(25) { "NewestFirst" } else { "OldestFirst" },
        "failurePolicy": {"retriesPerPartition": rng.range(0, 2)},
        "budget": {"resourceQuotaRef": {"name": QUOTA}, "reserve": {"requests.cpu": format!("{reserve}m")}},
    });
    serde_json::from_value(spec).expect("generated backfill")
}
