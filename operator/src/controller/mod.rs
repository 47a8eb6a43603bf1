//! The controllers: one per kind, each observe -> decide -> act. Kubernetes I/O lives here only.

pub mod backfill;
pub mod context;
pub mod cost;
pub mod dataset;
pub mod guard;
pub mod job_cache;
pub mod kube_jobs;
pub mod live_objects;
pub mod object;
pub mod pipeline;
pub mod ready;
pub mod samples;
pub mod status;
pub mod wakes;
pub mod watch_backoff;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, CustomResourceExt, ResourceExt};

use crate::api::{Backfill, Dataset, Pipeline};
use crate::metrics::Metrics;
use crate::server::Readiness;
use context::{Caches, Context};
use guard::{Guarded, ValidStore};
use object::SluiceObject as _;
use watch_backoff::watch_backoff;

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch this namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Most reconciles running at once, per controller.
    pub concurrency: u16,
    /// Reporting instance for Events (the pod name).
    pub instance: Option<String>,
    /// Caps on running Sluice Jobs per namespace and in total.
    pub job_caps: job_cache::JobCaps,
    /// Where OpenLineage events go; none sent when `None`.
    pub lineage: Option<crate::lineage::Config>,
    /// Prices that turn reserved resources into a currency figure; none when `None`.
    pub prices: Option<crate::cost::Prices>,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Waits until the Sluice CRDs are installed and established, logging what is missing.
pub async fn wait_for_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names = [Pipeline::crd_name(), Dataset::crd_name(), Backfill::crd_name()];
    loop {
        let mut missing = Vec::new();
        for name in names {
            let established = match crds.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                Ok(None) => false,
                Err(error) => {
                    tracing::warn!(%error, crd = name, "could not read CRD");
                    false
                }
            };
            if !established {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            tracing::info!("Sluice CRDs are established");
            return;
        }
        tracing::error!(
            ?missing,
            "Sluice CRDs are not installed or not established; install them with `sluice-operator crd | kubectl apply --server-side -f -` or the Helm chart. Retrying in 5s"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Waits until `store` has its initial list. Re-polls on a short timer: kube's ready signal wakes
/// only the most recent of several concurrent waiters, and the controller itself waits on it too.
async fn synced<K>(store: &reflector::Store<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => {
                tracing::debug!(cache = name, "cache synced");
                return true;
            }
            Ok(Err(_)) => {
                tracing::error!(cache = name, "cache writer dropped before it synced");
                return false;
            }
            Err(_) => continue,
        }
    }
}

/// A watch of `api` that fills a new cache (without managedFields) and retries within 2 s
/// after an error: the cache and the stream of touched objects, for triggers.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (reflector::Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, config)
        .backoff(watch_backoff())
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// The watch caches the metrics read at scrape time: dataset freshness and contracts, the
/// live objects whose series stay, and the objects that do not deserialize.
fn metric_sources(
    metrics: &Metrics,
    pipelines: &ValidStore<Pipeline>,
    datasets: &ValidStore<Dataset>,
    backfills: &ValidStore<Backfill>,
) {
    let freshness_source = datasets.clone();
    metrics.set_dataset_source(move || freshness_source.state().iter().map(|d| samples::dataset(d)).collect());
    metrics.set_object_source(live_objects::source(pipelines.clone(), backfills.clone()));
    let (pipelines, datasets, backfills) = (pipelines.clone(), datasets.clone(), backfills.clone());
    metrics.set_invalid_source(move || {
        vec![
            ("Pipeline", pipelines.invalid_count()),
            ("Dataset", datasets.invalid_count()),
            ("Backfill", backfills.invalid_count()),
        ]
    });
}

/// Sets `readiness` once every cache has its initial list.
async fn ready_when_synced(caches: Caches, dataset_store: ValidStore<Dataset>, readiness: Readiness) {
    let synced = synced(caches.pipelines.raw(), "pipelines").await
        && synced(dataset_store.raw(), "datasets").await
        && synced(caches.datasets.raw(), "datasets (pipeline view)").await
        && synced(caches.backfills.raw(), "backfills").await
        && synced(&caches.quotas, "resourcequotas").await
        && synced(&caches.jobs, "jobs").await
        && synced(&caches.pods, "pods").await
        && synced(&caches.limit_ranges, "limitranges").await
        && synced(&caches.allowed_accounts, "serviceaccounts").await;
    if synced {
        tracing::info!("caches synced; ready");
        readiness.set(true);
    }
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    tokio::select! {
        _ = wait_for_crds(&client) => {}
        _ = shutdown.clone() => return,
    }
    let wc = watcher::Config::default().any_semantic();
    let config = controller::Config::default().concurrency(settings.concurrency);

    // Every watch retries within 2 s after an error (watch_backoff.rs): after an API server
    // outage the caches catch up at once. Sluice kinds are watched through DeserializeGuard
    // (guard.rs): an object that does not deserialize is skipped, not a failed list.
    let pipelines = Controller::new(api::<Guarded<Pipeline>>(&client, &settings.namespace), wc.clone())
        .with_config(config.clone())
        .trigger_backoff(watch_backoff());
    let datasets = Controller::new(api::<Guarded<Dataset>>(&client, &settings.namespace), wc.clone())
        .with_config(config.clone())
        .trigger_backoff(watch_backoff());
    let backfills = Controller::new(api::<Guarded<Backfill>>(&client, &settings.namespace), wc.clone())
        .with_config(config)
        .trigger_backoff(watch_backoff());
    let pipeline_store = ValidStore::new(pipelines.store());
    let dataset_store = ValidStore::new(datasets.store());
    let backfill_store = ValidStore::new(backfills.store());

    let (quota_store, quota_stream) = cached(api::<ResourceQuota>(&client, &settings.namespace), wc.clone());

    // Sluice's Jobs, cached once (without managedFields) for the Job caps and run state; a
    // change to an owned Job wakes its Pipeline at once.
    let (job_store, job_writer) = reflector::store::<Job>();
    let job_wc = watcher::Config::default().any_semantic().labels(&format!(
        "{}={}",
        crate::jobs::labels::MANAGED_BY,
        crate::jobs::labels::MANAGED_BY_VALUE
    ));
    // OpenLineage: the same watch, after the cache has the change, tells the lineage tap.
    let (mut lineage_tap, lineage_queue) = match &settings.lineage {
        Some(config) => {
            let (tap, queue) = crate::lineage::channel(config, &metrics.lineage);
            (Some(tap), Some((config.clone(), queue)))
        }
        None => (None, None),
    };
    let job_stream = watcher(api::<Job>(&client, &settings.namespace), job_wc)
        .backoff(watch_backoff())
        .modify(|j| j.managed_fields_mut().clear())
        .reflect(job_writer)
        .inspect(move |item| lineage_tap.iter_mut().for_each(|tap| tap.observe(item)))
        .touched_objects();
    // The same stream, after the cache has the change, wakes the Backfill that owns the Job.
    let (backfill_jobs, backfill_job_triggers) = futures::channel::mpsc::unbounded();
    // Likewise the Datasets that the Job's step outputs (a step finished: the watermark may move).
    let (dataset_jobs, dataset_job_triggers) = futures::channel::mpsc::unbounded();
    let step_outputs = pipeline_store.clone();
    let job_stream = job_stream.inspect(move |job| {
        if let Ok(job) = job {
            if let Some(owner) = backfill::controlling_backfill(job) {
                let _ = backfill_jobs.unbounded_send(owner);
            }
            for dataset in dataset::datasets_of_step(&step_outputs, job.namespace(), job.labels()) {
                let _ = dataset_jobs.unbounded_send(dataset);
            }
        }
    });
    let pipelines = pipelines.owns_stream(job_stream);

    // ServiceAccounts allowed for steps (labelled), metadata only: a label added or removed
    // wakes the Pipelines that run as the account and the Backfills of the namespace.
    let account_wc = watcher::Config::default().any_semantic().labels(&format!(
        "{}={}",
        crate::tenancy::ALLOW_LABEL,
        crate::tenancy::ALLOW_VALUE
    ));
    let (backfill_accounts, backfill_account_triggers) = futures::channel::mpsc::unbounded();
    let (account_store, account_stream) =
        cached(api::<kube::core::PartialObjectMeta<ServiceAccount>>(&client, &settings.namespace), account_wc);
    let account_stream = account_stream.inspect(move |account| {
        if let Ok(account) = account {
            let _ = backfill_accounts.unbounded_send(account.namespace());
        }
    });
    let by_account = pipeline_store.clone();
    let pipelines = pipelines.watches_stream(account_stream, move |account| {
        let pipelines = by_account.state();
        wakes::pipelines_running_as(pipelines.iter().map(|p| &**p), &account.namespace(), &account.name_any())
    });
    // LimitRanges give the default requests that backfill quota admission counts.
    let (limit_range_store, limit_range_stream) = cached(api::<LimitRange>(&client, &settings.namespace), wc.clone());

    // Datasets: woken by the Jobs of the steps that output them (a step finished), their pods (the
    // report arrived) and the Pipelines that name them (lineage). Pods of Sluice Jobs are cached
    // for their termination messages.
    let pod_wc = watcher::Config::default().any_semantic().labels(crate::jobs::labels::STEP);
    let (pod_store, pod_stream) = cached(api::<Pod>(&client, &settings.namespace), pod_wc);
    let pod_outputs = pipeline_store.clone();
    // Triggers come from the streams that fill the caches the reconcilers read, after the cache
    // has the change, so a reconcile never reads an older state than the event that woke it.
    let datasets = datasets
        .reconcile_on(dataset_job_triggers)
        .watches_stream(pod_stream, move |pod| dataset::datasets_of_step(&pod_outputs, pod.namespace(), pod.labels()))
        .watches(api::<Guarded<Pipeline>>(&client, &settings.namespace), wc.clone(), |pipeline| match &pipeline.0 {
            Ok(pipeline) => wakes::datasets_named_by(pipeline),
            Err(_) => Vec::new(),
        });

    // A Dataset appearing or going away changes the validity of the pipelines that name it.
    // The Pipeline controller reads Datasets from this cache, filled by the same stream that wakes
    // it, so an upstream watermark seen in the event is seen by the reconcile too.
    let by_dataset = pipeline_store.clone();
    let (dataset_view, dataset_stream) = cached(api::<Guarded<Dataset>>(&client, &settings.namespace), wc.clone());
    let dataset_view = ValidStore::new(dataset_view);
    let pipelines = pipelines.watches_stream(dataset_stream, move |dataset| {
        let pipelines = by_dataset.state();
        wakes::pipelines_naming(pipelines.iter().map(|p| &**p), &dataset.namespace(), &dataset.name_any())
    });
    // A Pipeline or ResourceQuota appearing or changing wakes the backfills that name it.
    let by_pipeline = backfill_store.clone();
    let by_quota = backfill_store.clone();
    let by_limit_range = backfill_store.clone();
    let by_account_namespace = backfill_store.clone();
    let account_wakes = backfill_account_triggers
        .flat_map(move |namespace| futures::stream::iter(backfill::in_namespace(&by_account_namespace, namespace)));
    let backfills = backfills
        .reconcile_on(backfill_job_triggers)
        .reconcile_on(account_wakes)
        .watches_stream(limit_range_stream, move |l| backfill::in_namespace(&by_limit_range, l.namespace()))
        .watches(api::<Guarded<Pipeline>>(&client, &settings.namespace), wc.clone(), move |pipeline| {
            let backfills = by_pipeline.state();
            wakes::backfills_of_pipeline(backfills.iter().map(|b| &**b), &pipeline.namespace(), &pipeline.name_any())
        })
        .watches_stream(quota_stream, move |quota| {
            let backfills = by_quota.state();
            wakes::backfills_of_quota(backfills.iter().map(|b| &**b), &quota.namespace(), &quota.name_any())
        });

    let reporter = Reporter { controller: "sluice-operator".into(), instance: settings.instance.clone() };
    let recorder = Recorder::new(client.clone(), reporter);
    metric_sources(&metrics, &pipeline_store, &dataset_store, &backfill_store);
    let caches = Caches {
        pipelines: pipeline_store.clone(),
        datasets: dataset_view.clone(),
        backfills: backfill_store.clone(),
        quotas: quota_store.clone(),
        jobs: job_store.clone(),
        pods: pod_store.clone(),
        limit_ranges: limit_range_store.clone(),
        allowed_accounts: account_store.clone(),
    };
    if let Some((config, queue)) = lineage_queue {
        let sources = crate::lineage::Sources {
            pipelines: pipeline_store.clone(),
            datasets: dataset_view.clone(),
            pods: pod_store.clone(),
        };
        tokio::spawn(crate::lineage::deliver(config, sources, queue, metrics.lineage.clone()));
    }
    for controller in [Pipeline::CONTROLLER, Dataset::CONTROLLER, Backfill::CONTROLLER] {
        metrics.runtime.init_controller(controller, settings.concurrency);
    }
    tokio::spawn(ready_when_synced(caches.clone(), dataset_store, readiness.clone()));
    let ctx = Context::new(client.clone(), recorder, metrics, caches, settings.job_caps, readiness.clone());
    let _ = ctx.prices.set(settings.prices.clone());

    let pipelines = pipelines
        .graceful_shutdown_on(shutdown.clone())
        .run(pipeline::reconcile, ready::error_policy, Arc::clone(&ctx))
        .for_each(|_| async {});
    let datasets = datasets
        .graceful_shutdown_on(shutdown.clone())
        .run(dataset::reconcile, ready::error_policy, Arc::clone(&ctx))
        .for_each(|_| async {});
    let backfills = backfills
        .graceful_shutdown_on(shutdown.clone())
        .run(backfill::reconcile, ready::error_policy, Arc::clone(&ctx))
        .for_each(|_| async {});
    futures::future::join3(pipelines, datasets, backfills).await;
    readiness.set(false);
    tracing::info!("controllers stopped");
}
