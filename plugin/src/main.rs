//! `kubectl sluice`: trigger, suspend and resume Pipelines, plan and start Backfills, show runs
//! with their cost, and read step logs, with kubectl's `-n`, `--context` and `-o`.

mod actions;
mod tree;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "kubectl-sluice", version, about = "Everyday Sluice actions")]
pub struct Cli {
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Output format (default: text).
    #[arg(short, long, global = true, value_enum)]
    output: Option<Output>,
    #[command(subcommand)]
    command: Command,
}

/// Machine-readable output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start one run of the latest complete window now (the `sluice.dev/run-now` annotation).
    Trigger { pipeline: String },
    /// Stop new runs of a Pipeline (`spec.suspend: true`).
    Suspend { pipeline: String },
    /// Let a suspended Pipeline run again.
    Resume { pipeline: String },
    /// Plan a Backfill as a dry run, print the plan, and start it once confirmed.
    Backfill {
        pipeline: String,
        /// Start of the range (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the range (RFC 3339, exclusive).
        #[arg(long)]
        to: String,
        /// Only plan: leave the Backfill in dry run.
        #[arg(long)]
        dry_run: bool,
        /// `Missing` (default), `Failed` or `All`.
        #[arg(long)]
        reprocess: Option<String>,
        /// Start without asking.
        #[arg(long)]
        yes: bool,
        /// Name of the Backfill (default: `<pipeline>-<from date>`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pipelines with their recent runs, steps, phases, durations and cost; Datasets with freshness.
    Status { pipeline: Option<String> },
    /// The logs of a run's step pods.
    Logs { pipeline: String, run: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let (client, default_ns) = actions::client(cli.context.as_deref()).await?;
    let ns = cli.namespace.clone().unwrap_or(default_ns);
    actions::run(&client, &ns, cli.output, cli.command).await
}
