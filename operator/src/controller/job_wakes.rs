//! Which changes of a Sluice Job wake its owners (the Pipeline or Backfill, and the Datasets its
//! step outputs). A Job's status changes several times while its pod starts and runs (active,
//! ready, uncounted terminated pods); the reconcilers read only its state (active, succeeded,
//! failed and when), what the quota counts of its pod, whether it is being deleted, and its
//! labels, annotations and owners. A change of none of these wakes nobody: at scale most Job
//! events would otherwise each cost a reconcile of the owner that decides nothing new.
//!
//! Only wakes are filtered: the cache still holds every version (the reflector runs first), and
//! exactly-once never rests on a wake (status writes carry a `resourceVersion` precondition).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::watcher;

use super::job_cache::job_state;
use crate::plan::runs::JobState;
use crate::quota::{PodCharge, pod_charge};

/// What the reconcilers read of a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    state: JobState,
    charge: PodCharge,
    deleting: bool,
    /// A hash of the labels, annotations and owner references.
    meta: u64,
}

fn seen(job: &Job) -> Seen {
    let mut hasher = DefaultHasher::new();
    job.labels().hash(&mut hasher);
    job.annotations().hash(&mut hasher);
    for owner in job.owner_references() {
        (&owner.uid, &owner.kind, &owner.name, owner.controller).hash(&mut hasher);
    }
    Seen {
        state: job_state(job),
        charge: pod_charge(job),
        deleting: job.metadata.deletion_timestamp.is_some(),
        meta: hasher.finish(),
    }
}

/// The last seen version of every Job, by uid.
#[derive(Default)]
pub struct JobWakes {
    last: HashMap<String, Seen>,
    /// The uids listed since the current relist began.
    relisted: Option<HashSet<String>>,
}

impl JobWakes {
    /// Whether `event` should wake the owners: a new Job, a deleted one, every Job of a relist,
    /// and a change of what the reconcilers read.
    pub fn wakes(&mut self, event: &watcher::Event<Job>) -> bool {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(HashSet::new());
                false
            }
            watcher::Event::InitApply(job) => {
                let uid = job.uid().unwrap_or_default();
                self.relisted.get_or_insert_default().insert(uid.clone());
                self.last.insert(uid, seen(job));
                true
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisted.take() {
                    self.last.retain(|uid, _| listed.contains(uid));
                }
                false
            }
            watcher::Event::Apply(job) => {
                let now = seen(job);
                let changed = self.last.get(&job.uid().unwrap_or_default()) != Some(&now);
                if changed {
                    self.last.insert(job.uid().unwrap_or_default(), now);
                }
                changed
            }
            watcher::Event::Delete(job) => {
                self.last.remove(&job.uid().unwrap_or_default());
                true
            }
        }
    }

    /// How many Jobs it remembers.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watcher::Event;

    fn job(uid: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "labels": {"sluice.dev/run": "r1"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn wakes_on_new_finished_relabelled_and_deleted_jobs_only() {
        let mut wakes = JobWakes::default();
        assert!(wakes.wakes(&Event::Apply(job("a", serde_json::json!({})))), "a new Job");
        assert!(!wakes.wakes(&Event::Apply(job("a", serde_json::json!({})))), "the same again");
        assert!(wakes.wakes(&Event::Apply(job("a", serde_json::json!({"active": 1})))), "its pod is counted now");
        assert!(
            !wakes.wakes(&Event::Apply(job("a", serde_json::json!({"active": 1, "ready": 1})))),
            "ready: nothing read"
        );
        let done = serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1});
        assert!(wakes.wakes(&Event::Apply(job("a", done.clone()))), "finished");
        let mut relabelled = job("a", done.clone());
        relabelled.labels_mut().insert("sluice.dev/run".into(), "r2".into());
        assert!(wakes.wakes(&Event::Apply(relabelled)), "labels changed");
        assert!(wakes.wakes(&Event::Delete(job("a", done))), "deleted");
        assert!(wakes.is_empty());
    }

    #[test]
    fn a_relist_wakes_every_job_and_forgets_the_vanished() {
        let mut wakes = JobWakes::default();
        wakes.wakes(&Event::Apply(job("a", serde_json::json!({}))));
        wakes.wakes(&Event::Apply(job("b", serde_json::json!({}))));
        assert!(!wakes.wakes(&Event::Init));
        assert!(wakes.wakes(&Event::InitApply(job("b", serde_json::json!({})))));
        assert!(!wakes.wakes(&Event::InitDone));
        assert_eq!(wakes.len(), 1, "a was not listed again: gone");
        assert!(!wakes.wakes(&Event::Apply(job("b", serde_json::json!({})))));
    }
}
