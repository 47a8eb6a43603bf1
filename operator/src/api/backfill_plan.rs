//! The plan of a Backfill dry run (`spec.dryRun`): what the backfill would run and cost, before
//! anything runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a Backfill would run, reserve and cost, and how long it would take: computed while
/// `spec.dryRun` is true, without creating any Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillPlan {
    /// Windows that would run: those of the range left after `reprocess` (windows recorded by
    /// the Pipeline or other Backfills are skipped unless `reprocess` selects them).
    pub windows: i64,
    /// Step Jobs that would be created (first attempts): `windows` times the selected steps.
    pub jobs: i64,
    /// Each selected step: what its pod reserves and how long it is expected to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub steps: Vec<PlannedStep>,
    /// Estimated CPU core-hours reserved by all the Jobs.
    pub cpu_hours: f64,
    /// Estimated memory GiB-hours reserved by all the Jobs.
    pub memory_gib_hours: f64,
    /// Estimated GPU-hours reserved by all the Jobs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu_hours: f64,
    /// Estimated price at the operator's prices, in `currency`; unset without prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Currency of `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub currency: Option<String>,
    /// Partitions expected to run at once: `spec.parallelism`, or fewer when the quota headroom
    /// beyond the reserve or `budget.limits` fit fewer.
    pub concurrency: i64,
    /// What bounds `concurrency`: `parallelism`, or the quota or limit key, for example
    /// `quota requests.cpu`.
    #[schemars(length(max = 128))]
    pub limited_by: String,
    /// Estimated wall time in seconds: rounds of `concurrency` partitions, each as long as the
    /// partition's longest chain of dependent steps.
    pub estimated_seconds: i64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One step of a dry-run plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The step's name.
    #[schemars(length(max = 40))]
    pub name: String,
    /// CPU cores its pod reserves (effective requests, LimitRange defaults applied).
    pub cpu: f64,
    /// Memory bytes its pod reserves.
    pub memory_bytes: f64,
    /// GPUs its pod reserves.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: f64,
    /// Expected run time of one Job in seconds.
    pub seconds: i64,
    /// Where `seconds` comes from: `Measured` (the mean of the step's successful runs in the
    /// Pipeline's `recentRuns`) or `Default` (no history: a stated default of 300 s).
    #[schemars(length(max = 16))]
    pub duration_basis: String,
}
