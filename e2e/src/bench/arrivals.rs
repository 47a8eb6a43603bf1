//! The harness-side watch the fan-in is measured at: when each Job's ADDED event arrived here
//! (local clock), for every Job in the benchmark namespaces (`bench-*`). Metadata only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

/// First arrival of each Job, by (namespace, uid).
#[derive(Clone, Default)]
pub struct Arrivals {
    seen: Arc<Mutex<HashMap<(String, String), Timestamp>>>,
}

impl Arrivals {
    /// Starts watching every namespace; runs for as long as the test process.
    pub fn watch(client: &kube::Client) -> Self {
        let arrivals = Self::default();
        let seen = arrivals.seen.clone();
        let api: Api<PartialObjectMeta<Job>> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .backoff(sluice::controller::watch_backoff::watch_backoff())
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(job) = item else { continue };
                let now = Timestamp::now();
                let namespace = job.namespace().unwrap_or_default();
                if !namespace.starts_with("bench-") {
                    continue;
                }
                let key = (namespace, job.uid().unwrap_or_default());
                seen.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(now);
            }
        });
        arrivals
    }

    /// Seconds from `tick` to the arrival of each Job of `namespace` first seen in
    /// [`tick`, `tick` + `span`).
    pub fn lags(&self, namespace: &str, tick: Timestamp, span: SignedDuration) -> Vec<f64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|((ns, _), at)| ns == namespace && **at >= tick && **at < tick + span)
            .map(|(_, at)| at.duration_since(tick).as_secs_f64())
            .collect()
    }

    /// How many Jobs of `namespace` were first seen at or after `since`.
    pub fn count_since(&self, namespace: &str, since: Timestamp) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().filter(|((ns, _), at)| ns == namespace && **at >= since).count()
    }
}
