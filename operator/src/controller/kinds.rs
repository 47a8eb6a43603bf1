//! One watch per Sluice kind. Each fills the kind's only cache (without managedFields) and
//! triggers the kind's own controller; the other controllers that a change concerns are woken
//! from the same stream, after the cache has the change, through channels. Before, Pipelines
//! were watched three times and Datasets twice, and the controllers' caches kept every
//! object's managedFields: at 5,000 Pipelines and 5,000 Datasets that was most of the idle
//! memory and every Pipeline status write was decoded three times.

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, TryStreamExt};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Resource, ResourceExt};

use super::guard::{Guarded, Key, ValidStore};
use super::wakes;
use super::watch_backoff::watch_backoff;
use crate::api::{Backfill, Dataset, Pipeline};

/// The three controllers, before their extra watches, their caches and the wakes that changes
/// of one kind send to the controllers of the others.
pub struct Kinds {
    pub pipelines: Controller<Guarded<Pipeline>>,
    pub datasets: Controller<Guarded<Dataset>>,
    pub backfills: Controller<Guarded<Backfill>>,
    pub pipeline_store: ValidStore<Pipeline>,
    pub dataset_store: ValidStore<Dataset>,
    pub backfill_store: ValidStore<Backfill>,
    pub wakes: KindWakes,
}

/// What a changed Pipeline or Dataset wakes in the other controllers.
pub struct KindWakes {
    /// The Datasets a changed Pipeline names (lineage, producers).
    pub datasets_of_pipelines: UnboundedReceiver<Key<Dataset>>,
    /// The Backfills of a changed Pipeline.
    pub backfills_of_pipelines: UnboundedReceiver<Key<Backfill>>,
    /// The Pipelines that name a changed Dataset (validity, upstream watermarks).
    pub pipelines_of_datasets: UnboundedReceiver<Key<Pipeline>>,
    /// The Backfills that protect a changed Dataset.
    pub backfills_of_datasets: UnboundedReceiver<Key<Backfill>>,
}

/// The senders of [`KindWakes`].
struct WakeSenders {
    datasets_of_pipelines: UnboundedSender<Key<Dataset>>,
    backfills_of_pipelines: UnboundedSender<Key<Backfill>>,
    pipelines_of_datasets: UnboundedSender<Key<Pipeline>>,
    backfills_of_datasets: UnboundedSender<Key<Backfill>>,
}

fn wake_channels() -> (WakeSenders, KindWakes) {
    let (dp, dpr) = unbounded();
    let (bp, bpr) = unbounded();
    let (pd, pdr) = unbounded();
    let (bd, bdr) = unbounded();
    let senders = WakeSenders {
        datasets_of_pipelines: dp,
        backfills_of_pipelines: bp,
        pipelines_of_datasets: pd,
        backfills_of_datasets: bd,
    };
    let receivers = KindWakes {
        datasets_of_pipelines: dpr,
        backfills_of_pipelines: bpr,
        pipelines_of_datasets: pdr,
        backfills_of_datasets: bdr,
    };
    (senders, receivers)
}

/// The objects an event touched: applied, listed or deleted.
fn touched<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => Some(o),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// The watch of one kind: fills `writer` without managedFields, then shows `on_touched` every
/// touched object; yields the applied objects, the kind's own controller's triggers. Retries
/// within 2 s after an error.
fn kind_stream<K>(
    api: Api<Guarded<K>>,
    config: watcher::Config,
    writer: reflector::store::Writer<Guarded<K>>,
    mut on_touched: impl FnMut(&Guarded<K>) + Send + 'static,
) -> impl Stream<Item = Result<Guarded<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(api, config)
        .backoff(watch_backoff())
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok(move |event| touched(event).into_iter().for_each(&mut on_touched))
        .applied_objects()
}

/// Sends every key of `keys` on `tx` (a receiver that went away has stopped its controller).
fn send_all<T>(tx: &UnboundedSender<T>, keys: impl IntoIterator<Item = T>) {
    keys.into_iter().for_each(|k| {
        let _ = tx.unbounded_send(k);
    });
}

impl Kinds {
    /// Every watch, and each controller's merged triggers (kube's default backoff otherwise:
    /// up to 30 s), retry within 2 s after an error (watch_backoff.rs): after an API server
    /// outage the caches catch up at once. Sluice kinds are watched through DeserializeGuard
    /// (guard.rs): an object that does not deserialize is skipped, not a failed list.
    pub fn new(watches: &super::Watches, concurrency: u16) -> Self {
        let (pipeline_reader, pipeline_writer) = reflector::store();
        let (dataset_reader, dataset_writer) = reflector::store();
        let (backfill_reader, backfill_writer) = reflector::store();
        let stores = (
            ValidStore::new(pipeline_reader.clone()),
            ValidStore::new(dataset_reader.clone()),
            ValidStore::new(backfill_reader.clone()),
        );
        let (tx, wakes) = wake_channels();
        let config = watches.config();
        let pipelines = pipeline_stream(watches.api(), config.clone(), pipeline_writer, &stores.2, &tx);
        let datasets = dataset_stream(watches.api(), config.clone(), dataset_writer, (&stores.0, &stores.2), tx);
        let backfills = kind_stream(watches.api(), config, backfill_writer, |_| {});
        let config = controller::Config::default().concurrency(concurrency);
        Self {
            pipelines: Controller::for_stream(pipelines, pipeline_reader)
                .with_config(config.clone())
                .trigger_backoff(watch_backoff()),
            datasets: Controller::for_stream(datasets, dataset_reader)
                .with_config(config.clone())
                .trigger_backoff(watch_backoff()),
            backfills: Controller::for_stream(backfills, backfill_reader)
                .with_config(config)
                .trigger_backoff(watch_backoff()),
            pipeline_store: stores.0,
            dataset_store: stores.1,
            backfill_store: stores.2,
            wakes,
        }
    }
}

/// The Pipeline watch: a changed Pipeline wakes the Datasets it names and its Backfills.
fn pipeline_stream(
    api: Api<Guarded<Pipeline>>,
    config: watcher::Config,
    writer: reflector::store::Writer<Guarded<Pipeline>>,
    backfills: &ValidStore<Backfill>,
    tx: &WakeSenders,
) -> impl Stream<Item = Result<Guarded<Pipeline>, watcher::Error>> + Send + 'static {
    let backfills = backfills.clone();
    let (datasets_tx, backfills_tx) = (tx.datasets_of_pipelines.clone(), tx.backfills_of_pipelines.clone());
    kind_stream(api, config, writer, move |pipeline| {
        if let Ok(p) = &pipeline.0 {
            send_all(&datasets_tx, wakes::datasets_named_by(p));
        }
        let state = backfills.state();
        let of = wakes::backfills_of_pipeline(state.iter().map(|b| &**b), &pipeline.namespace(), &pipeline.name_any());
        send_all(&backfills_tx, of);
    })
}

/// The Dataset watch: a changed Dataset wakes the Pipelines that name it and the Backfills that
/// protect it.
fn dataset_stream(
    api: Api<Guarded<Dataset>>,
    config: watcher::Config,
    writer: reflector::store::Writer<Guarded<Dataset>>,
    stores: (&ValidStore<Pipeline>, &ValidStore<Backfill>),
    tx: WakeSenders,
) -> impl Stream<Item = Result<Guarded<Dataset>, watcher::Error>> + Send + 'static {
    let (pipelines, backfills) = (stores.0.clone(), stores.1.clone());
    kind_stream(api, config, writer, move |dataset| {
        let (namespace, name) = (dataset.namespace(), dataset.name_any());
        let state = pipelines.state();
        send_all(&tx.pipelines_of_datasets, wakes::pipelines_naming(state.iter().map(|p| &**p), &namespace, &name));
        let state = backfills.state();
        send_all(&tx.backfills_of_datasets, wakes::backfills_protecting(state.iter().map(|b| &**b), &namespace, &name));
    })
}
