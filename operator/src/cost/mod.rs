//! Cost accounting: what a step Job reserved is its pod's effective requests, computed as the
//! quota admission charges them ([`crate::quota::pod_demand`]: init containers, sidecars,
//! overhead, LimitRange defaults), times its run time, from the Job's `status.startTime` to its
//! `completionTime` (or the time of its `Failed` condition). Pure: Jobs and prices are passed in.
//!
//! A run's cost is recorded once, in the status write that records the run finished (the
//! write carries the Pipeline's `resourceVersion` as precondition); the counters are added only
//! after that write succeeded, so a restart or a stale cache never counts a run twice.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;

use crate::api::{Cost, CostSummary, PipelineSpec, PipelineStatus, RunCost, StepCost};
use crate::plan::runs::{ObservedJob, StepState};
use crate::quota::{ContainerDefaults, Milli, PodDemand, pod_demand};

const GIB: f64 = (1u64 << 30) as f64;

/// What one pod reserves while it runs, in thousandths of the base unit (millicores,
/// millibytes, milli-GPUs), as the quota arithmetic counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu: Milli,
    pub memory: Milli,
    pub gpu: Milli,
}

/// Whether `resource` is a GPU: `nvidia.com/gpu` and any other `<vendor>/gpu`.
pub fn is_gpu(resource: &str) -> bool {
    resource.ends_with("/gpu")
}

impl Reserved {
    /// The effective requests of a pod demand.
    pub fn of(demand: &PodDemand) -> Self {
        let get = |name: &str| demand.requests.get(name).copied().unwrap_or(0);
        let gpu = demand.requests.iter().filter(|(k, _)| is_gpu(k)).map(|(_, v)| *v).sum();
        Self { cpu: get("cpu"), memory: get("memory"), gpu }
    }

    /// What a pod with `spec` reserves, with the namespace's LimitRange defaults.
    pub fn of_pod(spec: &k8s_openapi::api::core::v1::PodSpec, defaults: &ContainerDefaults) -> Self {
        Self::of(&pod_demand(spec, defaults))
    }

    /// This reservation held for `seconds`, unpriced.
    pub fn over(&self, seconds: f64) -> Cost {
        let per_second = |m: Milli| m as f64 / 1000.0 * seconds;
        Cost {
            cpu_seconds: round(per_second(self.cpu), 3),
            memory_byte_seconds: round(per_second(self.memory), 0),
            gpu_seconds: round(per_second(self.gpu), 3),
            price: None,
            currency: None,
        }
    }
}

/// What one finished step Job reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobUsage {
    pub reserved: Reserved,
    /// Run time in seconds: `startTime` to the end (0 when the Job never started).
    pub seconds: i64,
}

impl JobUsage {
    pub fn cost(&self) -> Cost {
        self.reserved.over(self.seconds as f64)
    }
}

/// The usage of a finished Job (`None` while it runs), its pods charged with `defaults`.
pub fn job_usage(job: &Job, defaults: &ContainerDefaults) -> Option<JobUsage> {
    let status = job.status.as_ref()?;
    let end = finished_at(job)?;
    let seconds = status.start_time.as_ref().map_or(0, |s| end.duration_since(s.0).as_secs().max(0));
    let spec = job.spec.as_ref()?.template.spec.as_ref()?;
    Some(JobUsage { reserved: Reserved::of_pod(spec, defaults), seconds })
}

/// When a Job finished: its `completionTime`, or the time of its true `Complete`/`Failed`
/// condition.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let done = conditions.iter().find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))?;
    status.completion_time.as_ref().or(done.last_transition_time.as_ref()).map(|t| t.0)
}

/// Prices of reserved resources, per hour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prices {
    pub cpu_hour: f64,
    pub gib_hour: f64,
    pub gpu_hour: f64,
    pub currency: String,
}

impl Prices {
    /// `cost` with its price set.
    pub fn apply(&self, mut cost: Cost) -> Cost {
        let hours = |s: f64| s / 3600.0;
        let price = hours(cost.cpu_seconds) * self.cpu_hour
            + hours(cost.memory_byte_seconds / GIB) * self.gib_hour
            + hours(cost.gpu_seconds) * self.gpu_hour;
        cost.price = Some(round(price, 6));
        cost.currency = Some(self.currency.clone());
        cost
    }
}

/// `value` rounded to `digits` decimals, so sums print without float noise.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Adds `b` to `a`; prices are summed over the costs that have one.
pub fn add(a: &mut Cost, b: &Cost) {
    a.cpu_seconds = round(a.cpu_seconds + b.cpu_seconds, 3);
    a.memory_byte_seconds = round(a.memory_byte_seconds + b.memory_byte_seconds, 0);
    a.gpu_seconds = round(a.gpu_seconds + b.gpu_seconds, 3);
    a.price = match (a.price, b.price) {
        (None, None) => None,
        (x, y) => Some(round(x.unwrap_or(0.0) + y.unwrap_or(0.0), 6)),
    };
    if a.currency.is_none() {
        a.currency = b.currency.clone();
    }
}

/// What the Pipeline decision needs to cost its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostInputs {
    /// Usage of the Pipeline's finished Jobs, by Job name.
    pub usage: BTreeMap<String, JobUsage>,
    /// Prices, when the operator was given any.
    pub prices: Option<Prices>,
}

impl CostInputs {
    fn priced(&self, cost: Cost) -> Cost {
        match &self.prices {
            Some(p) => p.apply(cost),
            None => cost,
        }
    }
}

/// The cost of a finished run: per step (spec order), over all the step's Jobs of the run;
/// `None` when the usage of none of them is known.
pub fn run_cost(steps: &[(String, StepState)], jobs: &[&ObservedJob], inputs: &CostInputs) -> Option<RunCost> {
    if !jobs.iter().any(|j| inputs.usage.contains_key(&j.name)) {
        return None;
    }
    let mut total = Cost::default();
    let mut out = Vec::new();
    for (name, state) in steps {
        let mut step = StepCost { name: name.clone(), phase: phase(state).to_string(), ..Default::default() };
        let mut reserved = Cost::default();
        for usage in jobs.iter().filter(|j| &j.step == name).filter_map(|j| inputs.usage.get(&j.name)) {
            step.attempts += 1;
            step.seconds += usage.seconds;
            add(&mut reserved, &usage.cost());
        }
        step.cost = inputs.priced(reserved);
        add(&mut total, &step.cost);
        out.push(step);
    }
    Some(RunCost { total, steps: out })
}

fn phase(state: &StepState) -> &'static str {
    match state {
        StepState::Succeeded { .. } => "Succeeded",
        StepState::Failed { .. } => "Failed",
        StepState::Skipped => "Skipped",
        _ => "Running",
    }
}

/// The sum over the kept finished runs of a Pipeline (`None` when none has a cost).
pub fn pipeline_summary(status: &PipelineStatus) -> Option<CostSummary> {
    let mut summary = CostSummary::default();
    for cost in status.recent_runs.iter().filter_map(|r| r.cost.as_ref()) {
        summary.runs += 1;
        add(&mut summary.total, &cost.total);
    }
    (summary.runs > 0).then_some(summary)
}

/// The cost of producing `dataset`: the producing steps' costs in the kept runs of each
/// Pipeline (`None` when no producing step has a recorded cost).
pub fn dataset_summary<'a>(
    dataset: &str,
    pipelines: impl IntoIterator<Item = (&'a PipelineSpec, &'a PipelineStatus)>,
) -> Option<CostSummary> {
    let mut summary = CostSummary::default();
    for (spec, status) in pipelines {
        let producing: Vec<&str> =
            spec.steps.iter().filter(|s| s.outputs.iter().any(|o| o == dataset)).map(|s| s.name.as_str()).collect();
        if producing.is_empty() {
            continue;
        }
        for cost in status.recent_runs.iter().filter_map(|r| r.cost.as_ref()) {
            let steps: Vec<&StepCost> = cost.steps.iter().filter(|s| producing.contains(&s.name.as_str())).collect();
            if steps.is_empty() {
                continue;
            }
            summary.runs += 1;
            for step in steps {
                add(&mut summary.total, &step.cost);
            }
        }
    }
    (summary.runs > 0).then_some(summary)
}
