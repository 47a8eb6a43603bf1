//! Prometheus metrics. One prefix (`sluice_`), base units, `_total` on counters, and never an
//! unbounded value (run id, Job name, error text) as a label.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

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
            Opts::new(
                "sluice_reconcile_total",
                "Reconciles by controller and result.",
            ),
            &["controller", "result"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "sluice_reconcile_errors_total",
                "Reconcile errors by controller and category.",
            ),
            &["controller", "category"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_reconcile_duration_seconds",
                "Time spent in one reconcile.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            &["controller"],
        )
        .expect("valid metric");
        let status_writes = IntCounterVec::new(
            Opts::new(
                "sluice_status_writes_total",
                "Status patches written, by controller.",
            ),
            &["controller"],
        )
        .expect("valid metric");
        for c in [&reconciles, &reconcile_errors, &status_writes] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(reconcile_duration.clone()))
            .expect("unique metric");
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
