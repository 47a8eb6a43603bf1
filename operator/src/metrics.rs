//! Prometheus metrics. One prefix (`sluice_`), base units, `_total` on counters, and never an
//! unbounded value (run id, Job name, error text) as a label.

pub mod controller_runtime;
pub mod cost;
mod families;
pub mod prune;
pub mod registry;

use std::sync::{Arc, OnceLock};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
pub use registry::Registry;

/// One dataset's freshness inputs, read from the watch cache at scrape time.
pub struct DatasetSample {
    pub namespace: String,
    pub name: String,
    /// `spec.owner`, a label of every dataset series so that alerts can be routed to owners.
    pub owner: String,
    /// Seconds since the epoch of the watermark, if produced.
    pub watermark: Option<f64>,
    /// The objective (`maxAge`) in seconds, if set.
    pub max_age: Option<f64>,
    /// The contract's state, if the dataset has a contract and its schema was checked.
    pub contract: Option<ContractSample>,
}

/// A dataset's contract as last checked (its `SchemaConformant` condition).
pub struct ContractSample {
    /// True when the reported schema violates the contract.
    pub violated: bool,
    /// What a violation does: `Warn` or `Block`.
    pub policy: &'static str,
}

type DatasetSource = Arc<OnceLock<Box<dyn Fn() -> Vec<DatasetSample> + Send + Sync>>>;
type ObjectSource = Arc<OnceLock<Box<dyn Fn() -> prune::LiveObjects + Send + Sync>>>;
type InvalidSource = Arc<OnceLock<Box<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>>>;

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    /// Backfill partitions, admissions, throttles and quota headroom.
    pub backfill: BackfillMetrics,
    /// Age of each dataset's watermark at scrape time.
    pub dataset_freshness: GaugeVec,
    /// Each dataset's freshness objective (`maxAge`).
    pub dataset_objective: GaugeVec,
    /// 1 when a dataset is past its objective, else 0.
    pub dataset_stale: IntGaugeVec,
    /// Each dataset's watermark as a Unix timestamp (alert on `time() - this`).
    pub dataset_watermark: GaugeVec,
    /// 1 while a dataset's reported schema violates its contract, else 0, by policy.
    pub dataset_contract_violated: IntGaugeVec,
    dataset_source: DatasetSource,
    object_source: ObjectSource,
    /// Watched objects that do not deserialize (skipped), by kind, at scrape time.
    pub objects_invalid: IntGaugeVec,
    invalid_source: InvalidSource,
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
    /// Retries started: Jobs created for a step's second or later attempt, by pipeline and step.
    pub step_retries: IntCounterVec,
    /// controller-runtime's series (`controller_runtime_*`, `workqueue_*`).
    pub runtime: controller_runtime::ControllerRuntimeMetrics,
    /// OpenLineage delivery: events sent, dropped, retried, queued.
    pub lineage: crate::lineage::LineageMetrics,
    /// What finished step Jobs reserved (CPU-, memory-, GPU-seconds, price).
    pub cost: cost::CostMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let reconciles = families::Reconciles::register(r);
        let runs = families::Runs::register(r);
        let datasets = families::Datasets::register(r);
        Self {
            reconciles: reconciles.reconciles,
            reconcile_errors: reconciles.errors,
            reconcile_duration: reconciles.duration,
            status_writes: reconciles.status_writes,
            runs_started: runs.started,
            runs_finished: runs.finished,
            run_duration: runs.duration,
            step_duration: runs.step_duration,
            active_runs: runs.active,
            schedule_lag: runs.schedule_lag,
            jobs_created: runs.jobs_created,
            step_retries: runs.step_retries,
            dataset_freshness: datasets.freshness,
            dataset_objective: datasets.objective,
            dataset_watermark: datasets.watermark,
            dataset_stale: datasets.stale,
            dataset_contract_violated: datasets.contract_violated,
            objects_invalid: int_gauge(
                r,
                "sluice_objects_invalid",
                "Watched Sluice objects that do not deserialize and are skipped.",
                &["kind"],
            ),
            runtime: controller_runtime::ControllerRuntimeMetrics::register(r),
            lineage: crate::lineage::LineageMetrics::register(r),
            backfill: BackfillMetrics::register(r),
            cost: cost::CostMetrics::register(r),
            dataset_source: Arc::default(),
            object_source: Arc::default(),
            invalid_source: Arc::default(),
            registry,
        }
    }

    /// Sets where the dataset gauges are read from at scrape time (the watch cache), so ages are
    /// exact when scraped and deleted datasets disappear.
    pub fn set_dataset_source(&self, source: impl Fn() -> Vec<DatasetSample> + Send + Sync + 'static) {
        let _ = self.dataset_source.set(Box::new(source));
    }

    /// Sets where the live Pipelines, Backfills and budgeted ResourceQuotas are read from at
    /// scrape time (the watch caches): the series of deleted ones are removed.
    pub fn set_object_source(&self, source: impl Fn() -> prune::LiveObjects + Send + Sync + 'static) {
        let _ = self.object_source.set(Box::new(source));
    }

    /// Removes the series of Pipelines, Backfills and ResourceQuotas that no longer exist.
    fn prune_deleted(&self) {
        let Some(source) = self.object_source.get() else { return };
        let live = source();
        let pipelines = ("pipeline", &live.pipelines);
        prune::retain(&self.runs_started, pipelines);
        prune::retain(&self.runs_finished, pipelines);
        prune::retain(&self.active_runs, pipelines);
        prune::retain(&self.run_duration, pipelines);
        prune::retain(&self.step_duration, pipelines);
        prune::retain(&self.schedule_lag, pipelines);
        self.cost.prune(&live.pipelines);
        let b = &self.backfill;
        let backfills = ("backfill", &live.backfills);
        prune::retain(&b.partitions, backfills);
        prune::retain(&b.admissions, backfills);
        prune::retain(&b.throttles, backfills);
        prune::retain(&b.throttled, backfills);
        prune::retain(&b.quota_headroom, ("resourcequota", &live.quotas));
    }

    /// Sets where the count of invalid objects per kind is read from at scrape time.
    pub fn set_invalid_source(&self, source: impl Fn() -> Vec<(&'static str, usize)> + Send + Sync + 'static) {
        let _ = self.invalid_source.set(Box::new(source));
    }

    fn refresh_invalid(&self) {
        let Some(source) = self.invalid_source.get() else { return };
        for (kind, count) in source() {
            self.objects_invalid.with_label_values(&[kind]).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    fn refresh_datasets(&self) {
        let Some(source) = self.dataset_source.get() else { return };
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        for g in [&self.dataset_freshness, &self.dataset_objective, &self.dataset_watermark] {
            g.reset();
        }
        self.dataset_stale.reset();
        self.dataset_contract_violated.reset();
        for d in source() {
            let labels = [d.namespace.as_str(), d.name.as_str(), d.owner.as_str()];
            if let Some(contract) = &d.contract {
                let series = [labels[0], labels[1], contract.policy];
                self.dataset_contract_violated.with_label_values(&series).set(i64::from(contract.violated));
            }
            if let Some(max_age) = d.max_age {
                self.dataset_objective.with_label_values(&labels).set(max_age);
            }
            if let Some(wm) = d.watermark {
                let age = (now - wm).max(0.0);
                self.dataset_watermark.with_label_values(&labels).set(wm);
                self.dataset_freshness.with_label_values(&labels).set(age);
                let stale = d.max_age.is_some_and(|m| age >= m);
                self.dataset_stale.with_label_values(&labels).set(i64::from(stale));
            }
        }
    }

    /// A step Job was created for `attempt` (0 is the first) by an owner of kind `owner`.
    pub fn job_created(&self, namespace: &str, owner: &str, pipeline: &str, step: &str, attempt: u32) {
        self.jobs_created.with_label_values(&[namespace, owner]).inc();
        if attempt > 0 {
            self.step_retries.with_label_values(&[namespace, pipeline, step]).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.refresh_datasets();
        self.prune_deleted();
        self.runtime.refresh();
        self.refresh_invalid();
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// A counter family, registered in `registry`.
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// A histogram family, registered in `registry`.
fn histogram(registry: &Registry, opts: HistogramOpts, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(opts, labels).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// An integer gauge family, registered in `registry`.
fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// A float gauge family, registered in `registry`.
fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

#[cfg(test)]
mod tests;

/// Backfill metrics. Labels are namespaces, object names, phases, reasons and quota resource
/// names: all bounded by the objects in the cluster, never by partitions.
#[derive(Clone)]
pub struct BackfillMetrics {
    /// Partitions by phase (`pending`, `running`, `succeeded`, `failed`, `skipped`).
    pub partitions: IntGaugeVec,
    /// Partitions admitted (started).
    pub admissions: IntCounterVec,
    /// Decisions that held admissions back, by reason (`QuotaExhausted`, `ParallelismReached`,
    /// `BudgetLimitReached`, `JobCapReached`, `WaitingForSchedule`, `WindowsBusy`, `Suspended`).
    pub throttles: IntCounterVec,
    /// One series per throttle reason: 1 for the reason admissions are held back at the
    /// backfill's last decision (the status's `throttled`), 0 for the others.
    pub throttled: IntGaugeVec,
    /// Headroom of a ResourceQuota beyond a backfill's reserve after its last decision, in the
    /// resource's base unit (cores, bytes, pods); negative when scheduled runs use the reserve.
    pub quota_headroom: GaugeVec,
}

impl BackfillMetrics {
    fn register(registry: &Registry) -> Self {
        let partitions = IntGaugeVec::new(
            Opts::new("sluice_backfill_partitions", "Backfill partitions by phase."),
            &["namespace", "backfill", "phase"],
        )
        .expect("valid metric");
        let admissions = IntCounterVec::new(
            Opts::new("sluice_backfill_admissions_total", "Backfill partitions admitted."),
            &["namespace", "backfill"],
        )
        .expect("valid metric");
        let throttles = IntCounterVec::new(
            Opts::new("sluice_backfill_throttles_total", "Backfill decisions that held admissions back, by reason."),
            &["namespace", "backfill", "reason"],
        )
        .expect("valid metric");
        let throttled = IntGaugeVec::new(
            Opts::new("sluice_backfill_throttled", "1 for the reason the backfill's admissions are held back, else 0."),
            &["namespace", "backfill", "reason"],
        )
        .expect("valid metric");
        let quota_headroom = GaugeVec::new(
            Opts::new(
                "sluice_backfill_quota_headroom",
                "ResourceQuota headroom beyond the backfill reserve, in base units.",
            ),
            &["namespace", "resourcequota", "resource"],
        )
        .expect("valid metric");
        registry.register(Box::new(partitions.clone())).expect("unique metric");
        registry.register(Box::new(admissions.clone())).expect("unique metric");
        registry.register(Box::new(throttles.clone())).expect("unique metric");
        registry.register(Box::new(throttled.clone())).expect("unique metric");
        registry.register(Box::new(quota_headroom.clone())).expect("unique metric");
        Self { partitions, admissions, throttles, throttled, quota_headroom }
    }
}
