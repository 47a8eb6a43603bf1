//! What every reconciler shares: the client, the caches of watched objects, the event recorder,
//! metrics and per-object failure counts (for the retry backoff).

use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota, ServiceAccount};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::guard::ValidStore;
use super::job_cache::JobCaps;
use super::object::SluiceObject as _;
use crate::api::{Backfill, Dataset, Pipeline};
use crate::metrics::Metrics;
use crate::plan::failures::{Failures, Verdict};
use crate::validation::Lookup;

/// The watch caches the controllers read from.
#[derive(Clone)]
pub struct Caches {
    pub pipelines: ValidStore<Pipeline>,
    pub datasets: ValidStore<Dataset>,
    pub backfills: ValidStore<Backfill>,
    pub quotas: Store<ResourceQuota>,
    pub jobs: Store<Job>,
    /// The Job cache's indexes (by owner, by Pipeline label).
    pub job_index: super::job_index::JobIndex,
    pub pods: Store<Pod>,
    pub limit_ranges: Store<LimitRange>,
    pub allowed_accounts: Store<PartialObjectMeta<ServiceAccount>>,
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub pipelines: ValidStore<Pipeline>,
    pub datasets: ValidStore<Dataset>,
    pub backfills: ValidStore<Backfill>,
    pub quotas: Store<ResourceQuota>,
    pub jobs: Store<Job>,
    /// The Job cache's indexes: a reconcile reads its own Jobs without walking the cache.
    pub job_index: super::job_index::JobIndex,
    /// Pods of Sluice's Jobs, for their termination messages (step reports).
    pub pods: Store<Pod>,
    /// LimitRanges, for the default requests of containers that set none (backfill quota).
    pub limit_ranges: Store<LimitRange>,
    /// ServiceAccounts labelled `sluice.dev/steps-allowed=true` (metadata only): the accounts
    /// steps may run as (`tenancy`).
    pub allowed_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// Jobs created by this process that the cache does not show yet: for the Job caps, and
    /// (Backfill Jobs) with what their pods will ask of the quota. Locked only briefly, while
    /// `launch` is held.
    pub in_flight: Mutex<crate::quota::InFlight>,
    /// Pipeline Jobs created by this process, standing in for the cache until it shows them.
    pub launched: super::launched::Launched,
    pub job_caps: JobCaps,
    /// Held while counting free Job slots and creating Jobs, so the caps hold under concurrent
    /// reconciles.
    pub launch: tokio::sync::Mutex<()>,
    /// Set once every cache has its initial list: before that, a missing object may only be
    /// not listed yet, so reconciles wait.
    pub caches_synced: crate::server::Readiness,
    /// Prices of reserved resources (`--price-*`), set once at start.
    pub prices: std::sync::OnceLock<Option<crate::cost::Prices>>,
    failures: Mutex<Failures<FailureKey>>,
    /// Bounds the Events being published at once.
    event_slots: Arc<tokio::sync::Semaphore>,
}

/// Most Events being published at once (the rest wait their turn, off the reconciles).
pub const EVENTS_IN_FLIGHT: usize = 16;

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        caches: Caches,
        job_caps: JobCaps,
        caches_synced: crate::server::Readiness,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            recorder,
            metrics,
            pipelines: caches.pipelines,
            datasets: caches.datasets,
            backfills: caches.backfills,
            quotas: caches.quotas,
            jobs: caches.jobs,
            job_index: caches.job_index,
            pods: caches.pods,
            limit_ranges: caches.limit_ranges,
            allowed_accounts: caches.allowed_accounts,
            in_flight: Mutex::default(),
            launched: Default::default(),
            job_caps,
            launch: tokio::sync::Mutex::default(),
            caches_synced,
            prices: std::sync::OnceLock::new(),
            failures: Mutex::default(),
            event_slots: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
        })
    }

    /// A view of the caches for one namespace, for the validation lookups.
    pub fn namespace(&self, namespace: &str) -> NamespaceView<'_> {
        NamespaceView { ctx: self, namespace: namespace.to_string() }
    }

    /// The steps of `steps` whose ServiceAccount `namespace` does not allow, and the problems
    /// that say so (for `Ready` and the Warning Event).
    pub fn refused_steps<'a>(
        &self,
        namespace: &str,
        steps: impl IntoIterator<Item = &'a crate::api::StepSpec>,
    ) -> (Vec<String>, std::collections::BTreeSet<String>) {
        let allowed = |account: &str| {
            self.allowed_accounts.get(&ObjectRef::new(account).within(namespace)).is_some_and(|sa| {
                sa.labels().get(crate::tenancy::ALLOW_LABEL).map(String::as_str) == Some(crate::tenancy::ALLOW_VALUE)
            })
        };
        let refused = crate::tenancy::refused(steps, allowed);
        let problems = refused.iter().map(|r| crate::tenancy::problem(r, namespace)).collect();
        (problems, refused.into_iter().map(|r| r.step).collect())
    }

    /// Publishes an Event about `obj` in the background: the reconcile does not wait for it
    /// (at scale, awaiting each Event held a reconcile slot for as long as its Job create and
    /// status write together). At most [`EVENTS_IN_FLIGHT`] are sent at once; a failure to
    /// publish is logged, never fatal. Events record what was done; no decision reads them.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
        action: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(crate::text::clip_marked(&note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        let (recorder, reference, slots) = (self.recorder.clone(), obj.object_ref(&()), self.event_slots.clone());
        let (object, reason) = (obj.name_any(), reason.to_string());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, %object, reason, "could not publish event");
            }
        });
    }

    /// Counts a failed reconcile of `key`: its consecutive failures, this one included, and
    /// whether it earns a Warning Event. Objects deleted meanwhile are forgotten first.
    pub fn count_failure(&self, key: &FailureKey, transient: bool) -> Verdict {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|k| self.exists(k));
        failures.failed(key, transient, jiff::Timestamp::now())
    }

    /// Ends the failures in a row of `key` after a successful reconcile (and forgets objects
    /// deleted meanwhile).
    pub fn reset_backoff(&self, key: &FailureKey) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|k| self.exists(k));
        failures.succeeded(key, jiff::Timestamp::now());
    }

    /// Whether the object of `key` is in its controller's cache.
    fn exists(&self, (controller, namespace, name): &FailureKey) -> bool {
        match *controller {
            Pipeline::CONTROLLER => self.pipelines.raw().get(&ObjectRef::new(name).within(namespace)).is_some(),
            Dataset::CONTROLLER => self.datasets.raw().get(&ObjectRef::new(name).within(namespace)).is_some(),
            Backfill::CONTROLLER => self.backfills.raw().get(&ObjectRef::new(name).within(namespace)).is_some(),
            _ => false,
        }
    }
}

/// The key of an object's failures: its controller, namespace and name.
pub type FailureKey = (&'static str, String, String);

/// The caches seen from one namespace: references never cross namespaces.
pub struct NamespaceView<'a> {
    ctx: &'a Context,
    namespace: String,
}

impl Lookup for NamespaceView<'_> {
    fn dataset_exists(&self, name: &str) -> bool {
        self.ctx.datasets.get(name, &self.namespace).is_some()
    }

    fn resource_quota_exists(&self, name: &str) -> bool {
        self.ctx.quotas.get(&ObjectRef::new(name).within(&self.namespace)).is_some()
    }
}

impl Context {
    /// Free Job slots for `namespace` under the Job caps (call with `launch` held).
    pub fn free_job_slots(&self, namespace: &str) -> usize {
        let mut ledger = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        super::job_cache::free_slots(&self.jobs.state(), &mut ledger, namespace, self.job_caps, jiff::Timestamp::now())
    }
}
