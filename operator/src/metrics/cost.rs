//! Cost counters: what finished step Jobs reserved, by namespace, pipeline and step. Added once
//! per finished run, after the status write that records the run succeeded (see
//! [`crate::cost`]), so an operator restart never counts a run twice.

use prometheus::{CounterVec, Opts};

use super::Registry;
use super::prune::{self, Keys};
use crate::api::RunCost;

/// The cost counters.
#[derive(Clone)]
pub struct CostMetrics {
    /// CPU-seconds reserved by finished step Jobs.
    pub cpu_seconds: CounterVec,
    /// Memory byte-seconds reserved by finished step Jobs.
    pub memory_byte_seconds: CounterVec,
    /// GPU-seconds reserved by finished step Jobs.
    pub gpu_seconds: CounterVec,
    /// The price of what finished step Jobs reserved, by currency (with operator prices only).
    pub price: CounterVec,
}

const STEP: [&str; 3] = ["namespace", "pipeline", "step"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl CostMetrics {
    pub fn register(r: &Registry) -> Self {
        Self {
            cpu_seconds: counter(
                r,
                "sluice_step_cpu_seconds_total",
                "CPU-seconds reserved by finished step Jobs (effective requests x run time).",
                &STEP,
            ),
            memory_byte_seconds: counter(
                r,
                "sluice_step_memory_byte_seconds_total",
                "Memory byte-seconds reserved by finished step Jobs (effective requests x run time).",
                &STEP,
            ),
            gpu_seconds: counter(
                r,
                "sluice_step_gpu_seconds_total",
                "GPU-seconds reserved by finished step Jobs (*/gpu requests x run time).",
                &STEP,
            ),
            price: counter(
                r,
                "sluice_step_cost_total",
                "Price of what finished step Jobs reserved, at the operator's prices.",
                &["namespace", "pipeline", "step", "currency"],
            ),
        }
    }

    /// Adds a finished run's cost.
    pub fn add_run(&self, namespace: &str, pipeline: &str, cost: &RunCost) {
        for step in &cost.steps {
            let labels = [namespace, pipeline, step.name.as_str()];
            self.cpu_seconds.with_label_values(&labels).inc_by(step.cost.cpu_seconds.max(0.0));
            self.memory_byte_seconds.with_label_values(&labels).inc_by(step.cost.memory_byte_seconds.max(0.0));
            self.gpu_seconds.with_label_values(&labels).inc_by(step.cost.gpu_seconds.max(0.0));
            if let (Some(price), Some(currency)) = (step.cost.price, step.cost.currency.as_deref()) {
                let labels = [namespace, pipeline, step.name.as_str(), currency];
                self.price.with_label_values(&labels).inc_by(price.max(0.0));
            }
        }
    }

    /// Removes the series of Pipelines that no longer exist.
    pub fn prune(&self, pipelines: &Keys) {
        for vec in [&self.cpu_seconds, &self.memory_byte_seconds, &self.gpu_seconds, &self.price] {
            prune::retain(vec, ("pipeline", pipelines));
        }
    }
}
