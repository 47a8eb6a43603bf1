//! The operator's own metric families, registered in groups: reconciles, pipeline runs and
//! datasets. [`super::Metrics::new`] puts them together with the controller-runtime, lineage and
//! Backfill families.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec};

use super::{Registry, counter, gauge, histogram, int_gauge};

/// Reconciles, their errors and duration, and status writes, by controller.
pub(super) struct Reconciles {
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub status_writes: IntCounterVec,
}

impl Reconciles {
    pub fn register(r: &Registry) -> Self {
        let duration_buckets = vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
        Self {
            reconciles: counter(
                r,
                "sluice_reconcile_total",
                "Reconciles by controller and result.",
                &["controller", "result"],
            ),
            errors: counter(
                r,
                "sluice_reconcile_errors_total",
                "Reconcile errors by controller and category.",
                &["controller", "category"],
            ),
            duration: histogram(
                r,
                HistogramOpts::new("sluice_reconcile_duration_seconds", "Time spent in one reconcile.")
                    .buckets(duration_buckets),
                &["controller"],
            ),
            status_writes: counter(
                r,
                "sluice_status_writes_total",
                "Status patches written, by controller.",
                &["controller"],
            ),
        }
    }
}

/// Pipeline runs: started, finished, their duration and their steps', runs in progress,
/// schedule lag, the Jobs created and the retries.
pub(super) struct Runs {
    pub started: IntCounterVec,
    pub finished: IntCounterVec,
    pub duration: HistogramVec,
    pub step_duration: HistogramVec,
    pub active: IntGaugeVec,
    pub schedule_lag: HistogramVec,
    pub jobs_created: IntCounterVec,
    pub step_retries: IntCounterVec,
}

impl Runs {
    pub fn register(r: &Registry) -> Self {
        let pipeline = ["namespace", "pipeline"];
        Self {
            started: counter(r, "sluice_runs_started_total", "Pipeline runs started.", &pipeline),
            finished: counter(
                r,
                "sluice_runs_finished_total",
                "Pipeline runs finished, by result.",
                &["namespace", "pipeline", "result"],
            ),
            duration: histogram(
                r,
                run_histogram("sluice_run_duration_seconds", "Duration of finished pipeline runs."),
                &pipeline,
            ),
            step_duration: histogram(
                r,
                run_histogram("sluice_step_duration_seconds", "Duration of finished step attempts."),
                &["namespace", "pipeline", "step", "result"],
            ),
            active: int_gauge(r, "sluice_active_runs", "Pipeline runs in progress.", &pipeline),
            schedule_lag: histogram(r, schedule_lag(), &pipeline),
            jobs_created: counter(
                r,
                "sluice_jobs_created_total",
                "Jobs created, by owner kind.",
                &["namespace", "owner"],
            ),
            step_retries: counter(
                r,
                "sluice_step_retries_total",
                "Step retries started (Jobs of a second or later attempt).",
                &["namespace", "pipeline", "step"],
            ),
        }
    }
}

/// A histogram of run or step durations: seconds to hours.
fn run_histogram(name: &str, help: &str) -> HistogramOpts {
    let buckets = vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0];
    HistogramOpts::new(name, help).buckets(buckets)
}

fn schedule_lag() -> HistogramOpts {
    HistogramOpts::new("sluice_schedule_lag_seconds", "Delay from a scheduled tick to the creation of its first Job.")
        .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
}

/// Each dataset's freshness, objective, watermark, staleness and contract state.
pub(super) struct Datasets {
    pub freshness: GaugeVec,
    pub objective: GaugeVec,
    pub watermark: GaugeVec,
    pub stale: IntGaugeVec,
    pub contract_violated: IntGaugeVec,
}

impl Datasets {
    pub fn register(r: &Registry) -> Self {
        let dataset = ["namespace", "dataset", "owner"];
        Self {
            freshness: gauge(r, "sluice_dataset_freshness_seconds", "Age of the dataset's watermark.", &dataset),
            objective: gauge(
                r,
                "sluice_dataset_freshness_objective_seconds",
                "The dataset's maxAge objective.",
                &dataset,
            ),
            watermark: gauge(
                r,
                "sluice_dataset_watermark_timestamp_seconds",
                "The dataset's watermark (Unix time).",
                &dataset,
            ),
            stale: int_gauge(r, "sluice_dataset_stale", "1 when the dataset is past maxAge.", &dataset),
            contract_violated: int_gauge(
                r,
                "sluice_dataset_contract_violated",
                "1 while the dataset's schema violates its contract.",
                &["namespace", "dataset", "policy"],
            ),
        }
    }
}
