//! The benchmark harness (`make bench`, e2e/bench/compare.rs): Sluice beside its peers on the
//! same API server in the same run. Sections:
//!
//! - [`limit`]: L, the highest rate a bare kube-rs client creates Jobs at with POST p99 <= 1 s.
//! - [`fanin`]: N Pipelines against N CronJobs (the CronJob controller alone in its own
//!   kube-controller-manager, [`cronjob_controller`]) on alternate minutes, measured at a
//!   harness-side watch ([`arrivals`]); API writes per launched Job from the audit log
//!   ([`writes`]); CPU and memory of both processes ([`proc_usage`]).
//! - [`completion`]: C, how fast the cluster runs the same Jobs to completion for a bare client.
//! - [`backfill`]: a large Backfill without (against L and C) and with a binding ResourceQuota.
//! - [`idle`]: RSS at 5,000 Pipelines + 5,000 Datasets, and freshness deadline lag.
//!
//! Every figure goes into one table ([`report`]) with its peer and the ratio.

pub mod arrivals;
pub mod backfill;
pub mod completion;
pub mod cronjob_controller;
pub mod fanin;
pub mod idle;
pub mod limit;
pub mod objects;
pub mod proc_usage;
pub mod report;
pub mod stats;
pub mod writes;

/// Both controllers under test and the shared watch.
pub struct Bench {
    pub client: kube::Client,
    pub operator: crate::process::OperatorProcess,
    pub cronjobs: cronjob_controller::CronJobController,
    pub arrivals: arrivals::Arrivals,
    /// L in Jobs/s, once measured.
    pub limit: Option<f64>,
    /// C in Jobs/s, once measured.
    pub completion: Option<f64>,
}

impl Bench {
    /// Starts the operator (the release build unless `SLUICE_OPERATOR_BIN` says otherwise,
    /// watching all namespaces, RUST_LOG=info) and the CronJob controller-manager.
    pub async fn start() -> Self {
        let kubeconfig = crate::cluster::kubeconfig();
        let client = crate::cluster::client(&kubeconfig).await;
        crate::operator::install_crds(&client).await;
        let operator = crate::process::OperatorProcess::start(&kubeconfig, "bench-operator", &[], "info");
        operator.wait_ready().await;
        let cronjobs = cronjob_controller::CronJobController::start();
        let arrivals = arrivals::Arrivals::watch(&client);
        Self { client, operator, cronjobs, arrivals, limit: None, completion: None }
    }

    /// Restarts both processes, so that each section's peak memory (VmHWM) is its own.
    pub async fn restart(&mut self) {
        self.operator.kill_and_restart().await;
        self.operator.wait_ready().await;
        self.cronjobs = cronjob_controller::CronJobController::start();
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }

    /// (operator, CronJob controller-manager) usage now.
    pub fn usage(&self) -> (proc_usage::ProcUsage, proc_usage::ProcUsage) {
        let read = |pid| proc_usage::read(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
        (read(self.operator.pid().expect("operator runs")), read(self.cronjobs.pid()))
    }
}

/// A list of numbers from environment variable `name`, comma-separated, else `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|n| n.trim().parse().expect("a number")).collect(),
        _ => default.to_vec(),
    }
}

/// Sleeps until `at` (local clock); returns at once when it has passed.
pub async fn sleep_until(at: jiff::Timestamp) {
    let wait = at.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait.as_secs_f64())).await;
    }
}
