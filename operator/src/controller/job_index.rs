//! Indexes of the Job cache, so that a reconcile reads the Jobs of one owner (or with one
//! Pipeline's label) without walking every cached Job: by controlling owner's uid, and by
//! namespace and `sluice.dev/pipeline` label.
//!
//! Kept beside the reflector from the same watch events, as a superset of the cache: a Job is
//! added before the cache has it ([`JobIndex::before`]) and removed after the cache dropped it
//! ([`JobIndex::after`]); after a relist the index is rebuilt from exactly what was listed.
//! Readers look every indexed name up in the cache and apply the same filters as a full walk, so
//! a stale index entry costs a lookup, never a wrong answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::jobs::labels;

/// The keys a Job is indexed under.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Keys {
    owner: Option<String>,
    pipeline: Option<(String, String)>,
}

fn keys(job: &Job) -> Keys {
    let owner = job.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone());
    let pipeline = job.labels().get(labels::PIPELINE).map(|l| (job.namespace().unwrap_or_default(), l.clone()));
    Keys { owner, pipeline }
}

#[derive(Default)]
struct Maps {
    by_owner: HashMap<String, HashSet<ObjectRef<Job>>>,
    by_pipeline: HashMap<(String, String), HashSet<ObjectRef<Job>>>,
    /// The keys of each Job as the cache has it.
    keys: HashMap<ObjectRef<Job>, Keys>,
    /// What a relist in progress has listed.
    relist: Option<HashMap<ObjectRef<Job>, Keys>>,
}

impl Maps {
    fn add(&mut self, at: &ObjectRef<Job>, k: &Keys) {
        if let Some(owner) = &k.owner {
            self.by_owner.entry(owner.clone()).or_default().insert(at.clone());
        }
        if let Some(pipeline) = &k.pipeline {
            self.by_pipeline.entry(pipeline.clone()).or_default().insert(at.clone());
        }
    }

    fn remove(&mut self, at: &ObjectRef<Job>, k: &Keys) {
        if let Some(owner) = &k.owner
            && let Some(set) = self.by_owner.get_mut(owner)
        {
            set.remove(at);
            if set.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        if let Some(pipeline) = &k.pipeline
            && let Some(set) = self.by_pipeline.get_mut(pipeline)
        {
            set.remove(at);
            if set.is_empty() {
                self.by_pipeline.remove(pipeline);
            }
        }
    }
}

/// The Job cache's indexes (cheap to clone: shared).
#[derive(Clone, Default)]
pub struct JobIndex(Arc<RwLock<Maps>>);

impl JobIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Before the reflector applies `event`: adds what it brings.
    pub fn before(&self, event: &watcher::Event<Job>) {
        let mut maps = self.write();
        match event {
            watcher::Event::Init => maps.relist = Some(HashMap::new()),
            watcher::Event::Apply(job) => maps.add(&ObjectRef::from_obj(job), &keys(job)),
            watcher::Event::InitApply(job) => {
                let (at, k) = (ObjectRef::from_obj(job), keys(job));
                maps.add(&at, &k);
                maps.relist.get_or_insert_default().insert(at, k);
            }
            watcher::Event::InitDone | watcher::Event::Delete(_) => {}
        }
    }

    /// After the reflector applied `event`: removes what the cache no longer has.
    pub fn after(&self, event: &watcher::Event<Job>) {
        let mut maps = self.write();
        match event {
            watcher::Event::Apply(job) => {
                let (at, k) = (ObjectRef::from_obj(job), keys(job));
                if let Some(old) = maps.keys.insert(at.clone(), k.clone())
                    && old != k
                {
                    maps.remove(&at, &old);
                    maps.add(&at, &k);
                }
            }
            watcher::Event::Delete(job) => {
                let at = ObjectRef::from_obj(job);
                let old = maps.keys.remove(&at).unwrap_or_default();
                maps.remove(&at, &old);
                maps.remove(&at, &keys(job));
            }
            watcher::Event::InitDone => {
                if let Some(listed) = maps.relist.take() {
                    let mut rebuilt = Maps::default();
                    for (at, k) in &listed {
                        rebuilt.add(at, k);
                    }
                    rebuilt.keys = listed;
                    *maps = rebuilt;
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn lookup(store: &Store<Job>, refs: Option<&HashSet<ObjectRef<Job>>>) -> Vec<Arc<Job>> {
        refs.into_iter().flatten().filter_map(|r| store.get(r)).collect()
    }

    /// The cached Jobs whose controlling owner has `uid` (and possibly a few more: filter).
    pub fn owned(&self, store: &Store<Job>, uid: &str) -> Vec<Arc<Job>> {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        Self::lookup(store, maps.by_owner.get(uid))
    }

    /// The cached Jobs of `namespace` labelled `sluice.dev/pipeline=<label>` (and possibly a few
    /// more: filter).
    pub fn labelled(&self, store: &Store<Job>, namespace: &str, label: &str) -> Vec<Arc<Job>> {
        let maps = self.0.read().unwrap_or_else(|e| e.into_inner());
        Self::lookup(store, maps.by_pipeline.get(&(namespace.to_string(), label.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use watcher::Event;

    use super::*;

    fn job(name: &str, owner: &str, pipeline: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"sluice.dev/pipeline": pipeline},
                "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "name": pipeline,
                    "uid": owner, "controller": true}]},
        }))
        .unwrap()
    }

    /// Feeds `event` through the index and the reflector in the order of the Job watch.
    fn feed(index: &JobIndex, writer: &mut reflector::store::Writer<Job>, event: Event<Job>) {
        index.before(&event);
        writer.apply_watcher_event(&event);
        index.after(&event);
    }

    fn names(jobs: Vec<Arc<Job>>) -> Vec<String> {
        let mut names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn finds_jobs_by_owner_and_label_through_changes_deletes_and_relists() {
        let (store, mut writer) = reflector::store::<Job>();
        let index = JobIndex::default();
        feed(&index, &mut writer, Event::Apply(job("a", "u1", "p")));
        feed(&index, &mut writer, Event::Apply(job("b", "u1", "p")));
        feed(&index, &mut writer, Event::Apply(job("c", "u2", "q")));
        assert_eq!(names(index.owned(&store, "u1")), ["a", "b"]);
        assert_eq!(names(index.labelled(&store, "ns", "q")), ["c"]);
        // A new owner and label move the Job.
        feed(&index, &mut writer, Event::Apply(job("b", "u2", "q")));
        assert_eq!(names(index.owned(&store, "u1")), ["a"]);
        assert_eq!(names(index.owned(&store, "u2")), ["b", "c"]);
        feed(&index, &mut writer, Event::Delete(job("c", "u2", "q")));
        assert_eq!(names(index.labelled(&store, "ns", "q")), ["b"]);
        // A relist that no longer shows a: gone from the index with the cache.
        for event in [Event::Init, Event::InitApply(job("b", "u2", "q")), Event::InitDone] {
            feed(&index, &mut writer, event);
        }
        assert!(index.owned(&store, "u1").is_empty());
        assert_eq!(names(index.owned(&store, "u2")), ["b"]);
        assert_eq!(index.0.read().unwrap().keys.len(), 1);
    }
}
