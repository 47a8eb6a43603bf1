//! The objects in the watch caches, read by the metrics at scrape time so that the series of
//! deleted Pipelines, Backfills and budgeted ResourceQuotas disappear.

use super::guard::ValidStore;
use kube::ResourceExt;

use crate::api::{Backfill, Pipeline};
use crate::metrics::prune::LiveObjects;

/// Reads the live objects from the Pipeline and Backfill caches.
pub fn source(
    pipelines: ValidStore<Pipeline>,
    backfills: ValidStore<Backfill>,
) -> impl Fn() -> LiveObjects + Send + Sync {
    move || {
        let key = |namespace: Option<String>, name: String| (namespace.unwrap_or_default(), name);
        let mut live = LiveObjects {
            pipelines: pipelines.state().iter().map(|p| key(p.namespace(), p.name_any())).collect(),
            ..LiveObjects::default()
        };
        for b in backfills.state() {
            live.backfills.insert(key(b.namespace(), b.name_any()));
            if let Some(quota) = b.spec.budget.as_ref().and_then(|x| x.resource_quota_ref.as_ref()) {
                live.quotas.insert(key(b.namespace(), quota.name.clone()));
            }
        }
        live
    }
}
