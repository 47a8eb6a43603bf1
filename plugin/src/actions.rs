//! The subcommands against the API server.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use sluice::api::{Backfill, Dataset, Pipeline};

use crate::{Command, Output};

/// A client for `context` (or the current one) and that context's namespace.
pub async fn client(context: Option<&str>) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let config = Config::from_kubeconfig(&options).await.context("loading the kubeconfig")?;
    let namespace = Kubeconfig::read()
        .ok()
        .and_then(|k| {
            let name = context.map(str::to_string).or(k.current_context.clone())?;
            k.contexts.into_iter().find(|c| c.name == name)?.context?.namespace
        })
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

/// Runs one subcommand.
pub async fn run(client: &Client, ns: &str, output: Option<Output>, command: Command) -> anyhow::Result<()> {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), ns);
    match command {
        Command::Trigger { pipeline } => {
            let value = jiff::Timestamp::now().to_string();
            let patch = json!({"metadata": {"annotations": {sluice::controller::pipeline::RUN_NOW_ANNOTATION: value}}});
            pipelines.patch(&pipeline, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            println!("pipeline/{pipeline} triggered (run-now {value})");
        }
        Command::Suspend { pipeline } => set_suspend(&pipelines, &pipeline, true).await?,
        Command::Resume { pipeline } => set_suspend(&pipelines, &pipeline, false).await?,
        Command::Backfill { pipeline, from, to, dry_run, reprocess, yes, name } => {
            let request = BackfillRequest { pipeline, from, to, dry_run, reprocess, yes, name };
            backfill(client, ns, output, request).await?
        }
        Command::Status { pipeline } => status(client, ns, output, pipeline.as_deref()).await?,
        Command::Logs { pipeline, run } => logs(client, ns, &pipeline, &run).await?,
    }
    Ok(())
}

async fn set_suspend(api: &Api<Pipeline>, name: &str, suspend: bool) -> anyhow::Result<()> {
    let patch = json!({"spec": {"suspend": suspend}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    println!("pipeline/{name} {}", if suspend { "suspended" } else { "resumed" });
    Ok(())
}

struct BackfillRequest {
    pipeline: String,
    from: String,
    to: String,
    dry_run: bool,
    reprocess: Option<String>,
    yes: bool,
    name: Option<String>,
}

/// Creates the Backfill in dry run, waits for its plan, prints it, and turns the dry run off
/// once confirmed (`--yes`, or `y` on stdin) unless `--dry-run`.
async fn backfill(client: &Client, ns: &str, output: Option<Output>, r: BackfillRequest) -> anyhow::Result<()> {
    let api: Api<Backfill> = Api::namespaced(client.clone(), ns);
    let from: jiff::Timestamp = r.from.parse().context("--from")?;
    let to: jiff::Timestamp = r.to.parse().context("--to")?;
    let name = r.name.unwrap_or_else(|| format!("{}-{}", r.pipeline, from.strftime("%Y%m%d%H%M")));
    let mut spec = json!({"pipelineRef": {"name": r.pipeline}, "dryRun": true,
                          "range": {"start": from.to_string(), "end": to.to_string()}});
    if let Some(reprocess) = r.reprocess {
        spec["reprocess"] = json!(reprocess);
    }
    let object: Backfill = serde_json::from_value(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill",
        "metadata": {"name": name}, "spec": spec}))?;
    api.create(&PostParams::default(), &object).await.with_context(|| format!("creating backfill/{name}"))?;
    let plan = wait_for_plan(&api, &name).await?;
    print_value(output, &json!({"backfill": name, "plan": plan}), || crate::tree::plan(&name, &plan))?;
    if r.dry_run {
        return Ok(());
    }
    if !r.yes && !confirm(&format!("start backfill/{name}? [y/N] "))? {
        println!("backfill/{name} left in dry run");
        return Ok(());
    }
    let patch = json!({"spec": {"dryRun": false}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    println!("backfill/{name} started");
    Ok(())
}

async fn wait_for_plan(api: &Api<Backfill>, name: &str) -> anyhow::Result<Value> {
    for _ in 0..300 {
        let b = api.get(name).await?;
        if let Some(plan) = b.status.as_ref().and_then(|s| s.plan.as_ref()) {
            return Ok(serde_json::to_value(plan)?);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("backfill/{name} has no plan after 60s: is the operator running?")
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn status(client: &Client, ns: &str, output: Option<Output>, only: Option<&str>) -> anyhow::Result<()> {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), ns);
    let datasets: Api<Dataset> = Api::namespaced(client.clone(), ns);
    let mut items = match only {
        Some(name) => vec![pipelines.get(name).await?],
        None => pipelines.list(&ListParams::default()).await?.items,
    };
    items.sort_by_key(|p| p.metadata.name.clone());
    let datasets = datasets.list(&ListParams::default()).await?.items;
    let view = crate::tree::view(&items, &datasets);
    print_value(output, &view, || crate::tree::render(&view))
}

fn print_value(output: Option<Output>, value: &Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    match output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(value)?),
        Some(Output::Yaml) => print!("{}", serde_yaml::to_string(value)?),
        None => print!("{}", text()),
    }
    Ok(())
}

/// The logs of every pod of the run's Jobs, each headed by its Job.
async fn logs(client: &Client, ns: &str, pipeline: &str, run: &str) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "{}={},{}={}",
        sluice::jobs::labels::PIPELINE,
        sluice::jobs::label_value(pipeline),
        sluice::jobs::labels::RUN,
        sluice::jobs::label_value(run)
    );
    let mut found = jobs.list(&ListParams::default().labels(&selector)).await?.items;
    if found.is_empty() {
        bail!("no Jobs of run {run} of pipeline/{pipeline} (pruned by history, or a wrong run id)");
    }
    found.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    for job in found {
        let job_name = job.metadata.name.unwrap_or_default();
        let by_job = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}"));
        for pod in pods.list(&by_job).await?.items {
            let pod_name = pod.metadata.name.unwrap_or_default();
            println!("==> job/{job_name} pod/{pod_name} <==");
            match pods.logs(&pod_name, &LogParams::default()).await {
                Ok(text) => print!("{text}"),
                Err(e) => println!("(no logs: {e})"),
            }
        }
    }
    Ok(())
}
