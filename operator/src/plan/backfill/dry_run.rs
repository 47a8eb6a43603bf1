//! The plan of a Backfill dry run: the windows left to run after `reprocess`, what each
//! partition's pods reserve (the quota arithmetic), the expected step durations (measured in the
//! Pipeline's `recentRuns`, or a stated default), the estimated CPU-, memory- and GPU-hours and
//! price, and the wall time under parallelism, quota headroom and limits. Pure.

use std::collections::BTreeMap;

use super::halt::Demands;
use crate::api::{BackfillPlan, Cost, PipelineStatus, PlannedStep, StepSpec};
use crate::cost::{Prices, Reserved, round};
use crate::quota::{Budget, Milli};

/// Expected run time of a step without measured history, in seconds.
pub const DEFAULT_STEP_SECONDS: i64 = 300;

/// The mean run time of `step`'s successful runs in `status.recentRuns`, if any.
pub fn measured_seconds(status: Option<&PipelineStatus>, step: &str) -> Option<i64> {
    let samples: Vec<i64> = status?
        .recent_runs
        .iter()
        .filter_map(|r| r.cost.as_ref())
        .flat_map(|c| c.steps.iter())
        .filter(|s| s.name == step && s.phase == "Succeeded" && s.attempts > 0)
        .map(|s| s.seconds / i64::from(s.attempts))
        .collect();
    (!samples.is_empty()).then(|| (samples.iter().sum::<i64>() / samples.len() as i64).max(1))
}

/// What the plan depends on.
pub struct Basis<'a> {
    pub steps: &'a [&'a StepSpec],
    pub demands: &'a Demands<'a>,
    pub pipeline_status: Option<&'a PipelineStatus>,
    pub budget: &'a Budget,
    pub parallelism: i64,
    pub prices: Option<&'a Prices>,
}

/// The plan for `windows` partitions.
pub fn plan(basis: &Basis<'_>, windows: i64) -> BackfillPlan {
    let mut steps = Vec::new();
    let mut per_partition = Cost::default();
    for step in basis.steps {
        let reserved = basis.demands.get(step.name.as_str()).map(Reserved::of).unwrap_or_default();
        let measured = measured_seconds(basis.pipeline_status, &step.name);
        let seconds = measured.unwrap_or(DEFAULT_STEP_SECONDS);
        crate::cost::add(&mut per_partition, &reserved.over(seconds as f64));
        steps.push(PlannedStep {
            name: step.name.clone(),
            cpu: reserved.cpu as f64 / 1000.0,
            memory_bytes: (reserved.memory / 1000) as f64,
            gpus: reserved.gpu as f64 / 1000.0,
            seconds,
            duration_basis: if measured.is_some() { "Measured" } else { "Default" }.to_string(),
        });
    }
    let n = windows as f64;
    let total = Cost {
        cpu_seconds: per_partition.cpu_seconds * n,
        memory_byte_seconds: per_partition.memory_byte_seconds * n,
        gpu_seconds: per_partition.gpu_seconds * n,
        ..Cost::default()
    };
    let priced = basis.prices.map(|p| p.apply(total.clone()));
    let (concurrency, limited_by) = concurrency(basis);
    let wall = critical_path(basis.steps, &steps);
    let rounds = (windows + concurrency - 1) / concurrency;
    BackfillPlan {
        windows,
        jobs: windows * basis.steps.len() as i64,
        steps,
        cpu_hours: round(total.cpu_seconds / 3600.0, 3),
        memory_gib_hours: round(total.memory_byte_seconds / (1u64 << 30) as f64 / 3600.0, 3),
        gpu_hours: round(total.gpu_seconds / 3600.0, 3),
        price: priced.as_ref().and_then(|c| c.price),
        currency: priced.and_then(|c| c.currency),
        concurrency,
        limited_by,
        estimated_seconds: rounds * wall,
    }
}

/// Partitions at once: parallelism, or fewer when the quota headroom beyond the reserve or the
/// budget limits hold fewer partitions' largest step pod (steps of a partition run in
/// dependency order; the largest pod bounds what one partition holds at a time). At least 1.
fn concurrency(basis: &Basis<'_>) -> (i64, String) {
    let mut best = (basis.parallelism.max(1), "parallelism".to_string());
    let peak = |key: &str| -> Milli { basis.demands.values().map(|d| d.amount(key)).max().unwrap_or(0) };
    let mut bound = |key: &str, free: Milli, what: &str| {
        let charge = peak(key);
        if charge > 0 {
            let fits = (free.max(0) / charge) as i64;
            if fits < best.0 {
                best = (fits.max(1), format!("{what} {key}"));
            }
        }
    };
    if let Some(quota) = &basis.budget.quota {
        for key in quota.state.hard.keys() {
            bound(key, quota.free(key), "quota");
        }
    }
    if let Some(limits) = &basis.budget.limits {
        for (key, limit) in limits {
            bound(key, limit - basis.budget.own_in_use.get(key).copied().unwrap_or(0), "limits");
        }
    }
    best
}

/// The longest chain of dependent selected steps, in seconds.
fn critical_path(specs: &[&StepSpec], planned: &[PlannedStep]) -> i64 {
    let seconds: BTreeMap<&str, i64> = planned.iter().map(|s| (s.name.as_str(), s.seconds)).collect();
    let mut finish: BTreeMap<&str, i64> = BTreeMap::new();
    // Steps form a DAG (validated); relax as many times as there are steps.
    for _ in 0..specs.len() {
        for step in specs {
            let start = step.depends_on.iter().filter_map(|d| finish.get(d.as_str())).max().copied().unwrap_or(0);
            finish.insert(step.name.as_str(), start + seconds.get(step.name.as_str()).copied().unwrap_or(0));
        }
    }
    finish.values().max().copied().unwrap_or(0)
}

/// One line for the `DryRunPlanned` Event.
pub fn describe(plan: &BackfillPlan) -> String {
    let price = match (&plan.price, &plan.currency) {
        (Some(p), Some(c)) => format!(", about {p:.2} {c}"),
        _ => String::new(),
    };
    let defaults = plan.steps.iter().filter(|s| s.duration_basis == "Default").count();
    let basis = if defaults > 0 {
        format!(" ({defaults} step(s) without history assumed {DEFAULT_STEP_SECONDS}s)")
    } else {
        String::new()
    };
    format!(
        "dry run: {} window(s), {} Job(s), {} CPU-hours, {} GiB-hours{price}; {} at once ({}), about {}s{basis}",
        plan.windows,
        plan.jobs,
        plan.cpu_hours,
        plan.memory_gib_hours,
        plan.concurrency,
        plan.limited_by,
        plan.estimated_seconds
    )
}
