//! The series controller-runtime defines (`controller_runtime_*` and `workqueue_*`, same names,
//! labels and buckets), beside Sluice's own, so dashboards written for Go operators work.
//!
//! What kube-runtime lets us see is the reconcile itself: its result, duration, errors and the
//! reconciles in flight. Its scheduler does not expose its queue, so `workqueue_depth`,
//! `workqueue_adds_total` and `workqueue_queue_duration_seconds` are not exported: a series
//! that is always zero would say the queue is empty when nobody knows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::runtime::controller::Action;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::metrics::Registry;

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets.
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5,
    1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
];

/// The results controller-runtime counts in `controller_runtime_reconcile_total` (Sluice never
/// asks for an immediate `requeue`, but the series exists at zero as in controller-runtime).
const RESULTS: [&str; 4] = ["success", "error", "requeue", "requeue_after"];

/// controller-runtime's controller and workqueue series.
#[derive(Clone)]
pub struct ControllerRuntimeMetrics {
    reconcile_total: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_time: HistogramVec,
    max_concurrent: IntGaugeVec,
    active_workers: IntGaugeVec,
    work_duration: HistogramVec,
    unfinished_work: GaugeVec,
    longest_running: GaugeVec,
    retries: IntCounterVec,
    in_flight: Arc<Mutex<HashMap<u64, (&'static str, Instant)>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

/// A reconcile in flight; observe it with [`ControllerRuntimeMetrics::finish`].
pub struct InFlight {
    id: u64,
    controller: &'static str,
    started: Instant,
}

impl ControllerRuntimeMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["controller"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let queue = ["name", "controller"];
        let workqueue_buckets = prometheus::exponential_buckets(10e-9, 10.0, 12).expect("valid buckets");
        Self {
            reconcile_total: counter(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
                &["controller", "result"],
            ),
            reconcile_errors: counter(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
                &["controller"],
            ),
            reconcile_time: histogram(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
                &["controller"],
                RECONCILE_BUCKETS.to_vec(),
            ),
            max_concurrent: int_gauge(
                "controller_runtime_max_concurrent_reconciles",
                "Maximum number of concurrent reconciles per controller",
            ),
            active_workers: int_gauge(
                "controller_runtime_active_workers",
                "Number of currently used workers per controller",
            ),
            work_duration: histogram(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                &queue,
                workqueue_buckets,
            ),
            unfinished_work: gauge(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
                &queue,
            ),
            longest_running: gauge(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                &queue,
            ),
            retries: counter("workqueue_retries_total", "Total number of retries handled by workqueue", &queue),
            in_flight: Arc::default(),
            next_id: Arc::default(),
        }
    }

    /// Creates every series of `controller` at zero (as controller-runtime does when a controller
    /// starts) and records its concurrency.
    pub fn init_controller(&self, controller: &str, max_concurrent: u16) {
        for result in RESULTS {
            self.reconcile_total.with_label_values(&[controller, result]);
        }
        self.reconcile_errors.with_label_values(&[controller]);
        self.max_concurrent.with_label_values(&[controller]).set(i64::from(max_concurrent));
        self.active_workers.with_label_values(&[controller]);
        self.retries.with_label_values(&[controller, controller]);
        self.unfinished_work.with_label_values(&[controller, controller]);
        self.longest_running.with_label_values(&[controller, controller]);
    }

    /// A reconcile of `controller` starts.
    pub fn start(&self, controller: &'static str) -> InFlight {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        self.in_flight.lock().expect("in-flight lock").insert(id, (controller, started));
        self.active_workers.with_label_values(&[controller]).inc();
        InFlight { id, controller, started }
    }

    /// A reconcile ends with `result` (`Ok(action)` or an error; an error is retried with backoff).
    pub fn finish<E>(&self, reconcile: InFlight, result: &Result<Action, E>) {
        self.in_flight.lock().expect("in-flight lock").remove(&reconcile.id);
        let c = reconcile.controller;
        self.active_workers.with_label_values(&[c]).dec();
        let seconds = reconcile.started.elapsed().as_secs_f64();
        self.reconcile_time.with_label_values(&[c]).observe(seconds);
        self.work_duration.with_label_values(&[c, c]).observe(seconds);
        let label = match result {
            Ok(action) if *action == Action::await_change() => "success",
            Ok(_) => "requeue_after",
            Err(_) => {
                self.reconcile_errors.with_label_values(&[c]).inc();
                self.retries.with_label_values(&[c, c]).inc();
                "error"
            }
        };
        self.reconcile_total.with_label_values(&[c, label]).inc();
    }

    /// Sets the gauges of work in progress from the reconciles in flight (at scrape time).
    pub fn refresh(&self) {
        let now = Instant::now();
        let mut per_controller: HashMap<&'static str, (f64, f64)> = HashMap::new();
        for (controller, started) in self.in_flight.lock().expect("in-flight lock").values() {
            let age = now.saturating_duration_since(*started).as_secs_f64();
            let entry = per_controller.entry(controller).or_default();
            entry.0 += age;
            entry.1 = entry.1.max(age);
        }
        for labels in self.unfinished_work_controllers() {
            let (sum, longest) = per_controller.get(labels.as_str()).copied().unwrap_or_default();
            self.unfinished_work.with_label_values(&[&labels, &labels]).set(sum);
            self.longest_running.with_label_values(&[&labels, &labels]).set(longest);
        }
    }

    fn unfinished_work_controllers(&self) -> Vec<String> {
        use prometheus::core::Collector;
        self.unfinished_work
            .collect()
            .iter()
            .flat_map(|family| family.get_metric().iter())
            .filter_map(|m| m.get_label().iter().find(|l| l.name() == "controller").map(|l| l.value().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_exposition_uses_controller_runtime_names_labels_and_buckets() {
        let registry = Registry::new();
        let m = ControllerRuntimeMetrics::register(&registry);
        m.init_controller("pipeline", 32);
        let ok = m.start("pipeline");
        m.finish::<()>(ok, &Ok(Action::await_change()));
        let requeue = m.start("pipeline");
        m.finish::<()>(requeue, &Ok(Action::requeue(Duration::from_secs(5))));
        let failed = m.start("pipeline");
        m.finish(failed, &Err(()));
        let _running = m.start("pipeline");
        std::thread::sleep(Duration::from_millis(5));
        m.refresh();
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        for line in [
            "# TYPE controller_runtime_reconcile_total counter",
            r#"controller_runtime_reconcile_total{controller="pipeline",result="success"} 1"#,
            r#"controller_runtime_reconcile_total{controller="pipeline",result="requeue_after"} 1"#,
            r#"controller_runtime_reconcile_total{controller="pipeline",result="error"} 1"#,
            r#"controller_runtime_reconcile_total{controller="pipeline",result="requeue"} 0"#,
            r#"controller_runtime_reconcile_errors_total{controller="pipeline"} 1"#,
            "# TYPE controller_runtime_reconcile_time_seconds histogram",
            r#"controller_runtime_reconcile_time_seconds_bucket{controller="pipeline",le="0.005"}"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{controller="pipeline",le="60"}"#,
            r#"controller_runtime_reconcile_time_seconds_count{controller="pipeline"} 3"#,
            r#"controller_runtime_max_concurrent_reconciles{controller="pipeline"} 32"#,
            r#"controller_runtime_active_workers{controller="pipeline"} 1"#,
            r#"workqueue_work_duration_seconds_bucket{controller="pipeline",name="pipeline",le="0.00000001"}"#,
            r#"workqueue_work_duration_seconds_bucket{controller="pipeline",name="pipeline",le="1000"}"#,
            r#"workqueue_retries_total{controller="pipeline",name="pipeline"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let gauge = |name: &str| -> f64 {
            let prefix = format!(r#"{name}{{controller="pipeline",name="pipeline"}} "#);
            text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
        };
        assert!(gauge("workqueue_unfinished_work_seconds") >= 0.005);
        assert!(gauge("workqueue_longest_running_processor_seconds") >= 0.005);
        assert_eq!(
            text.matches("controller_runtime_reconcile_time_seconds_bucket{").count(),
            41,
            "40 buckets and +Inf"
        );
    }
}
