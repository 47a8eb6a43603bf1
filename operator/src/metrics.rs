//! Prometheus metrics. One prefix (`sluice_`), base units, `_total` on counters, and never an
//! unbounded value (run id, Job name, error text) as a label.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by controller and result (`success`, `error`), like controller-runtime's
    /// `controller_runtime_reconcile_total`.
    pub reconciles: IntCounterVec,
    /// Reconcile errors by controller and error category.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration by controller.
    pub reconcile_duration: HistogramVec,
    /// Status writes by controller (writes are skipped when nothing changed).
    pub status_writes: IntCounterVec,
    /// Runs started, by namespace and pipeline.
    pub runs_started: IntCounterVec,
    /// Runs finished, by namespace, pipeline and result (`succeeded`, `failed`).
    pub runs_finished: IntCounterVec,
    /// Run duration from the first Job's creation to the last step's end.
    pub run_duration: HistogramVec,
    /// Step attempt duration from Job creation to completion, by step and result.
    pub step_duration: HistogramVec,
    /// Runs in progress, by namespace and pipeline.
    pub active_runs: IntGaugeVec,
    /// Delay from a scheduled tick to the creation of its first Job.
    pub schedule_lag: HistogramVec,
    /// Jobs created, by namespace and kind of owner (`pipeline`, `backfill`).
    pub jobs_created: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("sluice_reconcile_total", "Reconciles by controller and result."),
            &["controller", "result"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new("sluice_reconcile_errors_total", "Reconcile errors by controller and category."),
            &["controller", "category"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("sluice_reconcile_duration_seconds", "Time spent in one reconcile.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            &["controller"],
        )
        .expect("valid metric");
        let status_writes = IntCounterVec::new(
            Opts::new("sluice_status_writes_total", "Status patches written, by controller."),
            &["controller"],
        )
        .expect("valid metric");
        let runs_started = IntCounterVec::new(
            Opts::new("sluice_runs_started_total", "Pipeline runs started."),
            &["namespace", "pipeline"],
        )
        .expect("valid metric");
        let runs_finished = IntCounterVec::new(
            Opts::new("sluice_runs_finished_total", "Pipeline runs finished, by result."),
            &["namespace", "pipeline", "result"],
        )
        .expect("valid metric");
        let run_buckets = vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0];
        let run_duration = HistogramVec::new(
            HistogramOpts::new("sluice_run_duration_seconds", "Duration of finished pipeline runs.")
                .buckets(run_buckets.clone()),
            &["namespace", "pipeline"],
        )
        .expect("valid metric");
        let step_duration = HistogramVec::new(
            HistogramOpts::new("sluice_step_duration_seconds", "Duration of finished step attempts.")
                .buckets(run_buckets),
            &["namespace", "pipeline", "step", "result"],
        )
        .expect("valid metric");
        let active_runs =
            IntGaugeVec::new(Opts::new("sluice_active_runs", "Pipeline runs in progress."), &["namespace", "pipeline"])
                .expect("valid metric");
        let schedule_lag = HistogramVec::new(
            HistogramOpts::new(
                "sluice_schedule_lag_seconds",
                "Delay from a scheduled tick to the creation of its first Job.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            &["namespace", "pipeline"],
        )
        .expect("valid metric");
        let jobs_created = IntCounterVec::new(
            Opts::new("sluice_jobs_created_total", "Jobs created, by owner kind."),
            &["namespace", "owner"],
        )
        .expect("valid metric");
        for c in [&reconciles, &reconcile_errors, &status_writes, &runs_started, &runs_finished, &jobs_created] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        for h in [&reconcile_duration, &run_duration, &step_duration, &schedule_lag] {
            registry.register(Box::new(h.clone())).expect("unique metric");
        }
        registry.register(Box::new(active_runs.clone())).expect("unique metric");
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            runs_started,
            runs_finished,
            run_duration,
            step_duration,
            active_runs,
            schedule_lag,
            jobs_created,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
