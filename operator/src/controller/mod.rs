//! The controllers: one per kind, each observe -> decide -> act. Kubernetes I/O lives here only.

pub mod apply;
pub mod backfill;
pub mod context;
pub mod cost;
pub mod dataset;
pub mod every_reconcile;
pub mod finished_pods;
pub mod guard;
pub mod job_cache;
pub mod job_index;
pub mod job_wakes;
mod kinds;
pub mod launched;
pub mod live_objects;
pub mod object;
pub mod pipeline;
pub mod pod_failure;
pub mod samples;
pub mod wakes;
pub mod watch_backoff;

#[cfg(test)]
mod api_order;

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, watcher};
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
    cached_trimmed(api, config, |_| {})
}

/// Like [`cached`], with `trim` also removing what no reader needs before the cache keeps it.
fn cached_trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> (reflector::Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let mut trim = trim;
    let stream = watcher(api, config)
        .backoff(watch_backoff())
        .modify(move |o| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// What the readers of the Pod cache use: metadata (labels, owners) and status (phase, the
/// containers' termination states and messages). The spec (containers, volumes, tolerations)
/// is most of a Pod and nobody reads it.
fn trim_pod(pod: &mut Pod) {
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.host_ips = None;
        status.pod_ips = None;
    }
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
async fn ready_when_synced(caches: Caches, readiness: Readiness) {
    let synced = synced(caches.pipelines.raw(), "pipelines").await
        && synced(caches.datasets.raw(), "datasets").await
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
    let watches = Watches { client: client.clone(), namespace: settings.namespace.clone() };
    let kinds = kinds::Kinds::new(&watches, settings.concurrency);
    let (lineage_tap, lineage_queue) = lineage(&settings, &metrics);
    let jobs = job_watch(&watches, lineage_tap, &kinds.pipeline_store);
    let accounts = account_watch(&watches);
    let (quota_store, quota_stream) = cached(watches.api::<ResourceQuota>(), watches.config());
    // LimitRanges give the default requests that backfill quota admission counts.
    let (limit_range_store, limit_range_stream) = cached(watches.api::<LimitRange>(), watches.config());
    // Pods of Sluice Jobs are cached for their termination messages (step reports), trimmed.
    let pod_wc = watcher::Config::default().any_semantic().labels(crate::jobs::labels::STEP);
    let (pod_store, pod_stream) = cached_trimmed(watches.api::<Pod>(), pod_wc, trim_pod);
    // A finished pod wakes the Backfill of its Job: its quota charge is released (finished_pods).
    let (pod_backfills, finished_pod_backfills) = futures::channel::mpsc::unbounded();
    let job_store = jobs.store.clone();
    let pod_stream = pod_stream.inspect(move |pod| {
        let job = pod.as_ref().ok().and_then(|p| finished_pods::job_of_finished(p, &job_store));
        if let Some(owner) = job.as_deref().and_then(backfill::controlling_backfill) {
            let _ = pod_backfills.unbounded_send(owner);
        }
    });
    let caches = Caches {
        pipelines: kinds.pipeline_store.clone(),
        datasets: kinds.dataset_store.clone(),
        backfills: kinds.backfill_store.clone(),
        quotas: quota_store,
        jobs: jobs.store.clone(),
        job_index: jobs.index.clone(),
        pods: pod_store,
        limit_ranges: limit_range_store,
        allowed_accounts: accounts.store.clone(),
    };
    let wakes = kinds.wakes;
    let pipelines =
        wire_pipelines(kinds.pipelines, jobs.stream, accounts.stream, wakes.pipelines_of_datasets, &caches.pipelines);
    let datasets =
        wire_datasets(kinds.datasets, jobs.datasets, pod_stream, wakes.datasets_of_pipelines, &caches.pipelines);
    let backfill_wakes = BackfillWakes {
        jobs: jobs.backfills,
        accounts: accounts.namespaces,
        limit_ranges: limit_range_stream,
        quotas: quota_stream,
        datasets: wakes.backfills_of_datasets,
        pipelines: wakes.backfills_of_pipelines,
        pods: finished_pod_backfills,
    };
    let backfills = wire_backfills(kinds.backfills, backfill_wakes, &caches.backfills);
    let ctx = context(&settings, client, metrics, caches, lineage_queue, &readiness);
    let pipelines = pipelines.graceful_shutdown_on(shutdown.clone()).run(
        pipeline::reconcile,
        every_reconcile::error_policy,
        Arc::clone(&ctx),
    );
    let datasets = datasets.graceful_shutdown_on(shutdown.clone()).run(
        dataset::reconcile,
        every_reconcile::error_policy,
        Arc::clone(&ctx),
    );
    let backfills =
        backfills.graceful_shutdown_on(shutdown).run(backfill::reconcile, every_reconcile::error_policy, ctx);
    futures::future::join3(
        pipelines.for_each(|_| async {}),
        datasets.for_each(|_| async {}),
        backfills.for_each(|_| async {}),
    )
    .await;
    readiness.set(false);
    tracing::info!("controllers stopped");
}

/// Where the watches look: the client and the namespace (all when `None`).
struct Watches {
    client: Client,
    namespace: Option<String>,
}

impl Watches {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        api(&self.client, &self.namespace)
    }

    /// The watch configuration of unfiltered watches.
    fn config(&self) -> watcher::Config {
        watcher::Config::default().any_semantic()
    }
}

/// The OpenLineage tap on the Job watch and the queue it fills, when lineage is configured.
fn lineage(
    settings: &Settings,
    metrics: &Metrics,
) -> (Option<crate::lineage::Tap>, Option<(crate::lineage::Config, crate::lineage::Queue)>) {
    match &settings.lineage {
        Some(config) => {
            let (tap, queue) = crate::lineage::channel(config, &metrics.lineage);
            (Some(tap), Some((config.clone(), queue)))
        }
        None => (None, None),
    }
}

/// Sluice's Jobs, cached once, and what a change of one wakes.
struct JobWatch<S> {
    store: reflector::Store<Job>,
    /// Indexes of `store` (by owner, by Pipeline label).
    index: job_index::JobIndex,
    /// For the Pipeline controller (`owns_stream`): a change to an owned Job wakes its Pipeline.
    stream: S,
    /// The Backfill that owns a changed Job.
    backfills: UnboundedReceiver<guard::Key<Backfill>>,
    /// The Datasets that a changed Job's step outputs (a step finished: the watermark may move).
    datasets: UnboundedReceiver<guard::Key<Dataset>>,
}

/// Watches Sluice's Jobs (without managedFields) for the Job caps and run state. Every wake
/// and the lineage tap follow the cache: they see a change after the cache has it. Only the
/// changes the reconcilers read wake anyone (`job_wakes`).
fn job_watch(
    watches: &Watches,
    mut lineage_tap: Option<crate::lineage::Tap>,
    pipelines: &ValidStore<Pipeline>,
) -> JobWatch<impl futures::Stream<Item = Result<Job, watcher::Error>> + Send + 'static> {
    let (store, writer) = reflector::store::<Job>();
    let selector = format!("{}={}", crate::jobs::labels::MANAGED_BY, crate::jobs::labels::MANAGED_BY_VALUE);
    let (backfill_jobs, backfills) = futures::channel::mpsc::unbounded();
    let (dataset_jobs, datasets) = futures::channel::mpsc::unbounded();
    let step_outputs = pipelines.clone();
    let mut wakes = job_wakes::JobWakes::default();
    let index = job_index::JobIndex::default();
    let (before, after) = (index.clone(), index.clone());
    let stream = watcher(watches.api::<Job>(), watches.config().labels(&selector))
        .backoff(watch_backoff())
        .modify(|j| j.managed_fields_mut().clear())
        .inspect_ok(move |event| before.before(event))
        .reflect(writer)
        .inspect_ok(move |event| after.after(event))
        .inspect(move |item| lineage_tap.iter_mut().for_each(|tap| tap.observe(item)))
        .filter(move |item| std::future::ready(item.as_ref().map_or(true, |event| wakes.wakes(event))))
        .touched_objects()
        .inspect(move |job| {
            if let Ok(job) = job {
                if let Some(owner) = backfill::controlling_backfill(job) {
                    let _ = backfill_jobs.unbounded_send(owner);
                }
                for dataset in dataset::datasets_of_step(&step_outputs, job.namespace(), job.labels()) {
                    let _ = dataset_jobs.unbounded_send(dataset);
                }
            }
        });
    JobWatch { store, index, stream, backfills, datasets }
}

/// ServiceAccounts allowed for steps (labelled), metadata only, and what a change wakes.
struct AccountWatch<S> {
    store: reflector::Store<PartialObjectMeta<ServiceAccount>>,
    /// For the Pipeline controller: the Pipelines that run as the account.
    stream: S,
    /// The namespace of a changed account: its Backfills.
    namespaces: UnboundedReceiver<Option<String>>,
}

/// Watches the allowed ServiceAccounts: a label added or removed wakes the Pipelines that run as
/// the account and the Backfills of the namespace.
fn account_watch(
    watches: &Watches,
) -> AccountWatch<impl futures::Stream<Item = Result<PartialObjectMeta<ServiceAccount>, watcher::Error>> + Send + 'static>
{
    let selector = format!("{}={}", crate::tenancy::ALLOW_LABEL, crate::tenancy::ALLOW_VALUE);
    let (namespaces_tx, namespaces) = futures::channel::mpsc::unbounded();
    let (store, stream) =
        cached(watches.api::<PartialObjectMeta<ServiceAccount>>(), watches.config().labels(&selector));
    let stream = stream.inspect(move |account| {
        if let Ok(account) = account {
            let _ = namespaces_tx.unbounded_send(account.namespace());
        }
    });
    AccountWatch { store, stream, namespaces }
}

/// The Pipeline controller woken by its Jobs, the allowed accounts its steps run as, and the
/// Datasets it names (appearing or going away changes its validity; their watermarks trigger it).
fn wire_pipelines(
    controller: Controller<Guarded<Pipeline>>,
    jobs: impl futures::Stream<Item = Result<Job, watcher::Error>> + Send + 'static,
    accounts: impl futures::Stream<Item = Result<PartialObjectMeta<ServiceAccount>, watcher::Error>> + Send + 'static,
    datasets: UnboundedReceiver<guard::Key<Pipeline>>,
    store: &ValidStore<Pipeline>,
) -> Controller<Guarded<Pipeline>> {
    let by_account = store.clone();
    controller
        .owns_stream(jobs)
        .watches_stream(accounts, move |account| {
            let pipelines = by_account.state();
            wakes::pipelines_running_as(pipelines.iter().map(|p| &**p), &account.namespace(), &account.name_any())
        })
        .reconcile_on(datasets)
}

/// The Dataset controller woken by the Jobs of the steps that output a Dataset (a step
/// finished), their pods (the report arrived) and the Pipelines that name it (lineage).
/// Triggers come from the streams that fill the caches the reconcilers read, after the cache
/// has the change, so a reconcile never reads an older state than the event that woke it.
fn wire_datasets(
    controller: Controller<Guarded<Dataset>>,
    jobs: UnboundedReceiver<guard::Key<Dataset>>,
    pods: impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    named: UnboundedReceiver<guard::Key<Dataset>>,
    pipelines: &ValidStore<Pipeline>,
) -> Controller<Guarded<Dataset>> {
    let pod_outputs = pipelines.clone();
    controller
        .reconcile_on(jobs)
        .watches_stream(pods, move |pod| dataset::datasets_of_step(&pod_outputs, pod.namespace(), pod.labels()))
        .reconcile_on(named)
}

/// What wakes a Backfill besides itself.
struct BackfillWakes<L, Q> {
    /// Its Jobs.
    jobs: UnboundedReceiver<guard::Key<Backfill>>,
    /// The namespace of an allowed ServiceAccount that changed.
    accounts: UnboundedReceiver<Option<String>>,
    limit_ranges: L,
    quotas: Q,
    /// The Backfills that protect a Dataset that changed, after the Dataset cache has it.
    datasets: UnboundedReceiver<guard::Key<Backfill>>,
    /// The Backfills of a Pipeline that changed.
    pipelines: UnboundedReceiver<guard::Key<Backfill>>,
    /// The Backfill of a Job whose pod finished.
    pods: UnboundedReceiver<guard::Key<Backfill>>,
}

/// The Backfill controller woken by its Jobs, the accounts and LimitRanges of its namespace, the
/// Pipeline and ResourceQuota it names and the Datasets it protects.
fn wire_backfills(
    controller: Controller<Guarded<Backfill>>,
    wakes: BackfillWakes<
        impl futures::Stream<Item = Result<LimitRange, watcher::Error>> + Send + 'static,
        impl futures::Stream<Item = Result<ResourceQuota, watcher::Error>> + Send + 'static,
    >,
    store: &ValidStore<Backfill>,
) -> Controller<Guarded<Backfill>> {
    let (by_quota, by_limit_range, by_account) = (store.clone(), store.clone(), store.clone());
    let account_wakes =
        wakes.accounts.flat_map(move |namespace| futures::stream::iter(backfill::in_namespace(&by_account, namespace)));
    controller
        .reconcile_on(wakes.jobs)
        .reconcile_on(account_wakes)
        .reconcile_on(wakes.datasets)
        .reconcile_on(wakes.pipelines)
        .reconcile_on(wakes.pods)
        .watches_stream(wakes.limit_ranges, move |l| backfill::in_namespace(&by_limit_range, l.namespace()))
        .watches_stream(wakes.quotas, move |quota| {
            let backfills = by_quota.state();
            wakes::backfills_of_quota(backfills.iter().map(|b| &**b), &quota.namespace(), &quota.name_any())
        })
}

/// The controllers' shared context; starts what runs beside them (lineage delivery, the
/// readiness flag once the caches have synced) and the metrics read from the caches.
fn context(
    settings: &Settings,
    client: Client,
    metrics: Metrics,
    caches: Caches,
    lineage_queue: Option<(crate::lineage::Config, crate::lineage::Queue)>,
    readiness: &Readiness,
) -> Arc<Context> {
    let reporter = Reporter { controller: "sluice-operator".into(), instance: settings.instance.clone() };
    let recorder = Recorder::new(client.clone(), reporter);
    metric_sources(&metrics, &caches.pipelines, &caches.datasets, &caches.backfills);
    if let Some((config, queue)) = lineage_queue {
        let sources = crate::lineage::Sources {
            pipelines: caches.pipelines.clone(),
            datasets: caches.datasets.clone(),
            pods: caches.pods.clone(),
        };
        tokio::spawn(crate::lineage::deliver(config, sources, queue, metrics.lineage.clone()));
    }
    for controller in [Pipeline::CONTROLLER, Dataset::CONTROLLER, Backfill::CONTROLLER] {
        metrics.runtime.init_controller(controller, settings.concurrency);
    }
    tokio::spawn(ready_when_synced(caches.clone(), readiness.clone()));
    let ctx = Context::new(client, recorder, metrics, caches, settings.job_caps, readiness.clone());
    let _ = ctx.prices.set(settings.prices.clone());
    ctx
}
