//! `sluice-operator`: `run` serves the controllers, `crd` prints the CRDs, `metrics` the metric
//! families, `version` the version.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::FutureExt;
use sluice::controller::{self, Settings};
use sluice::leader::{self, Election, LeaderElectionArgs};
use sluice::metrics::Metrics;
use sluice::server::{self, Readiness};
use sluice::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(name = "sluice-operator", version, about = "Kubernetes operator for ELT pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (kubeconfig from KUBECONFIG or ~/.kube/config, or in-cluster).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Print the metric families the operator defines, leader election's included: one per line,
    /// name, type, comma-separated labels and help, tab-separated (what dashboards may select).
    Metrics,
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "SLUICE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_NAMESPACE")]
    namespace: Option<String>,
    /// Most reconciles running at once, per controller.
    #[arg(long, env = "SLUICE_RECONCILE_CONCURRENCY", default_value_t = 32)]
    reconcile_concurrency: u16,
    /// Most running Sluice Jobs per namespace (unset: no cap). Counted from the watch cache.
    #[arg(long, env = "SLUICE_MAX_RUNNING_JOBS_PER_NAMESPACE")]
    max_running_jobs_per_namespace: Option<usize>,
    /// Most running Sluice Jobs across all watched namespaces (unset: no cap).
    #[arg(long, env = "SLUICE_MAX_RUNNING_JOBS")]
    max_running_jobs: Option<usize>,
    /// Name of this replica, reported in Events (set from the pod name by the chart).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    #[command(flatten)]
    leader_election: LeaderElectionArgs,
    #[command(flatten)]
    lineage: LineageArgs,
    #[command(flatten)]
    prices: PriceArgs,
}

/// Prices of reserved resources: with any of them set, run costs carry a currency figure.
#[derive(clap::Args)]
struct PriceArgs {
    /// Price of one CPU core reserved for one hour.
    #[arg(long, env = "SLUICE_PRICE_CPU_HOUR", value_parser = price)]
    price_cpu_hour: Option<f64>,
    /// Price of one GiB of memory reserved for one hour.
    #[arg(long, env = "SLUICE_PRICE_GIB_HOUR", value_parser = price)]
    price_gib_hour: Option<f64>,
    /// Price of one GPU (`nvidia.com/gpu`, any `*/gpu`) reserved for one hour.
    #[arg(long, env = "SLUICE_PRICE_GPU_HOUR", value_parser = price)]
    price_gpu_hour: Option<f64>,
    /// Currency of the prices, for example USD.
    #[arg(long, env = "SLUICE_CURRENCY", default_value = "USD")]
    currency: String,
}

/// A price flag: a finite number, zero or more.
fn price(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        Ok(p) => Err(format!("a price must be a finite number of zero or more, not {p}")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

impl PriceArgs {
    /// The prices, `None` when no price is set.
    fn prices(&self) -> Option<sluice::cost::Prices> {
        let set = [self.price_cpu_hour, self.price_gib_hour, self.price_gpu_hour];
        set.iter().any(Option::is_some).then(|| sluice::cost::Prices {
            cpu_hour: self.price_cpu_hour.unwrap_or(0.0),
            gib_hour: self.price_gib_hour.unwrap_or(0.0),
            gpu_hour: self.price_gpu_hour.unwrap_or(0.0),
            currency: self.currency.clone(),
        })
    }
}

/// OpenLineage: run events for every step Job, POSTed to an HTTP endpoint.
#[derive(clap::Args)]
struct LineageArgs {
    /// OpenLineage HTTP endpoint events are POSTed to, e.g. http://marquez:5000/api/v1/lineage
    /// (unset: no events).
    #[arg(long, env = "SLUICE_LINEAGE_URL")]
    lineage_url: Option<String>,
    /// Timeout of one delivery attempt, in seconds.
    #[arg(long, env = "SLUICE_LINEAGE_TIMEOUT_SECONDS", default_value_t = 5)]
    lineage_timeout_seconds: u64,
    /// Prefix of the OpenLineage job namespace, followed by the Kubernetes namespace.
    #[arg(long, env = "SLUICE_LINEAGE_NAMESPACE_PREFIX", default_value = "sluice/")]
    lineage_namespace_prefix: String,
    /// Most events waiting for delivery; beyond that new events are dropped (and counted).
    #[arg(long, env = "SLUICE_LINEAGE_QUEUE_CAPACITY", default_value_t = 10_000)]
    lineage_queue_capacity: usize,
    /// Delivery attempts per event (with exponential backoff from 250 ms) before it is dropped.
    #[arg(long, env = "SLUICE_LINEAGE_MAX_ATTEMPTS", default_value_t = 6)]
    lineage_max_attempts: u32,
}

impl LineageArgs {
    /// The lineage settings; the API key comes only from `SLUICE_LINEAGE_API_KEY` (the chart
    /// fills it from a Secret), never from a flag that `ps` would show.
    fn config(&self) -> Option<sluice::lineage::Config> {
        let url = self.lineage_url.clone().filter(|u| !u.trim().is_empty())?;
        Some(sluice::lineage::Config {
            url,
            timeout: std::time::Duration::from_secs(self.lineage_timeout_seconds.max(1)),
            api_key: std::env::var("SLUICE_LINEAGE_API_KEY").ok().filter(|k| !k.is_empty()),
            namespace_prefix: self.lineage_namespace_prefix.clone(),
            queue_capacity: self.lineage_queue_capacity,
            max_attempts: self.lineage_max_attempts,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir: None } => {
            print!("{}", sluice::api::crds_yaml()?);
            Ok(())
        }
        Command::Crd { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for crd in sluice::api::crds() {
                let path = dir.join(sluice::api::crd_file_name(&crd));
                std::fs::write(&path, sluice::api::crd_yaml(&crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Metrics => {
            let metrics = Metrics::new();
            leader::leader_gauge(&metrics);
            for family in metrics.registry.families() {
                println!("{}", family.line());
            }
            Ok(())
        }
        Command::Version => {
            println!("sluice-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(args.instance.as_deref()).await?;
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let shutdown = shutdown_signal().shared();

    let server = tokio::spawn(server::serve(args.http_addr, metrics.clone(), readiness.clone(), shutdown.clone()));
    let election = Election::from_args(&args.leader_election, args.instance.as_deref(), client.default_namespace())?;
    let settings = Settings {
        namespace: args.namespace,
        concurrency: args.reconcile_concurrency,
        instance: args.instance,
        job_caps: sluice::controller::job_cache::JobCaps {
            per_namespace: args.max_running_jobs_per_namespace,
            total: args.max_running_jobs,
        },
        lineage: args.lineage.config(),
        prices: args.prices.prices(),
    };
    match election {
        None => controller::run(client, settings, metrics, readiness, shutdown).await,
        Some(election) => leader::run_controllers(client, election, settings, metrics, readiness, shutdown).await?,
    }
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("HTTP server failed"),
        Err(e) => Err(e).context("HTTP server task failed"),
    }
}

/// A client from the kubeconfig or the pod's service account, whose requests carry
/// [`sluice::telemetry::user_agent`]: an audit log then tells the replicas apart.
///
/// Without kube's built-in retry of 429, 503 and 504 responses: it backs off inside the request
/// (doubling up to 1000 s), so a reconcile that met a starting API server's 503 stayed stuck in
/// its request for seconds after the server was ready, out of reach of the watches' relist. The
/// controllers retry those errors themselves, within 5 s and never past a known tick
/// (`plan::retry`).
async fn client(instance: Option<&str>) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await.context("could not load a Kubernetes client configuration")?;
    config.default_retry = false;
    let agent = sluice::telemetry::user_agent(instance);
    let value = axum::http::HeaderValue::from_str(&agent).with_context(|| format!("invalid user agent {agent:?}"))?;
    config.headers.push((axum::http::header::USER_AGENT, value));
    kube::Client::try_from(config).context("could not build a Kubernetes client")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; finishing reconciles in flight");
}

#[cfg(test)]
mod tests {
    use super::price;

    #[test]
    fn a_price_is_a_finite_number_of_zero_or_more() {
        assert_eq!(price("0.04"), Ok(0.04));
        assert_eq!(price("0"), Ok(0.0));
        assert!(price("-1").unwrap_err().contains("zero or more"));
        assert!(price("inf").is_err());
        assert!(price("NaN").is_err());
        assert!(price("cheap").unwrap_err().contains("not a number"));
    }
}
