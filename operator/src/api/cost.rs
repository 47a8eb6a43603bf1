//! What runs reserved: the pods' effective requests (the quota arithmetic) times their run time
//! (a Job's `startTime` to its completion), per step, per run, and summed per Pipeline and Dataset.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Resources reserved over time, and their price when the operator is given prices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// CPU-seconds reserved: effective CPU requests in cores times run time in seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Memory byte-seconds reserved: effective memory requests in bytes times run time in
    /// seconds.
    #[serde(default)]
    pub memory_byte_seconds: f64,
    /// GPU-seconds reserved: requests of `nvidia.com/gpu` and any other `*/gpu` extended
    /// resource times run time in seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu_seconds: f64,
    /// The reserved resources priced with the operator's `--price-cpu-hour`,
    /// `--price-gib-hour` and `--price-gpu-hour`, in `currency`; unset without prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Currency of `price` (the operator's `--currency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub currency: Option<String>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// What one step of a finished run reserved, over all its attempts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepCost {
    /// The step's name.
    #[schemars(length(max = 40))]
    pub name: String,
    /// How the step ended: `Succeeded`, `Failed` or `Skipped` (a dependency failed).
    #[schemars(length(max = 16))]
    pub phase: String,
    /// Step Jobs (attempts) that ran.
    #[serde(default)]
    pub attempts: i32,
    /// Run time of the step's Jobs in seconds (from each Job's `startTime` to its end), summed
    /// over attempts.
    #[serde(default)]
    pub seconds: i64,
    /// What the step's Jobs reserved.
    #[serde(default)]
    pub cost: Cost,
}

/// What one finished run reserved: the sum of its steps, and each step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCost {
    /// The run's total.
    #[serde(default)]
    pub total: Cost,
    /// Per step, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub steps: Vec<StepCost>,
}

/// A sum of the cost of several runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSummary {
    /// Finished runs summed (those whose record carries a cost).
    #[serde(default)]
    pub runs: i32,
    /// Their summed cost.
    #[serde(default)]
    pub total: Cost,
}
