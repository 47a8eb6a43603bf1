//! Reading Sluice's Jobs from the watch cache: their run, step, attempt, window and state, and
//! how many are running per namespace and in total (for the Job caps), without listing.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::job_index::JobIndex;
use crate::api::{Backfill, Pipeline};
use crate::jobs::{annotations, labels};
use crate::plan::pipeline::ForeignJob;
use crate::plan::runs::{JobState, ObservedJob};
use crate::quota::InFlight;
use crate::schedule::Window;
use kube::Resource;

/// The state of a Job from its conditions: finished (Complete, Failed), else `Queued` while it
/// is suspended (created so for Kueue, or suspended again by a preemption: no pod runs), else
/// `Active`.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref()).map(Vec::as_slice).unwrap_or_default();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        let at = c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(|| job_created(job));
        match c.type_.as_str() {
            "Complete" => {
                let finished = status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0).unwrap_or(at);
                return JobState::Succeeded { finished };
            }
            "Failed" => {
                let reason = match (c.reason.as_deref(), c.message.as_deref()) {
                    (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                    (Some(r), _) => r.to_string(),
                    (None, Some(m)) => m.to_string(),
                    (None, None) => "Failed".to_string(),
                };
                return JobState::Failed { finished: at, reason };
            }
            _ => {}
        }
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) { JobState::Queued } else { JobState::Active }
}

fn job_created(job: &Job) -> Timestamp {
    job.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The run, step, attempt and window of a Sluice Job; `None` for a Job without them.
pub fn observe(job: &Job) -> Option<ObservedJob> {
    let labels_map = job.metadata.labels.as_ref()?;
    let annotations_map = job.metadata.annotations.as_ref()?;
    let start: Timestamp = annotations_map.get(annotations::WINDOW_START)?.parse().ok()?;
    let end: Timestamp = annotations_map.get(annotations::WINDOW_END)?.parse().ok()?;
    Some(ObservedJob {
        name: job.name_any(),
        run_id: labels_map.get(labels::RUN)?.clone(),
        step: labels_map.get(labels::STEP)?.clone(),
        attempt: labels_map.get(labels::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
        window: Window { start, end },
        created: job_created(job),
        state: job_state(job),
    })
}

/// The Jobs in the cache whose controlling owner has `owner_uid`, not being deleted.
pub fn owned_by(store: &Store<Job>, namespace: &str, owner_uid: &str) -> Vec<ObservedJob> {
    owned_among(&store.state(), namespace, owner_uid)
}

/// Like [`owned_by`], reading only the Jobs the index names for the owner.
pub fn owned_by_indexed(store: &Store<Job>, index: &JobIndex, namespace: &str, owner_uid: &str) -> Vec<ObservedJob> {
    owned_among(&index.owned(store, owner_uid), namespace, owner_uid)
}

/// The Jobs of `jobs` whose controlling owner has `owner_uid`, not being deleted.
pub fn owned_among(jobs: &[Arc<Job>], namespace: &str, owner_uid: &str) -> Vec<ObservedJob> {
    jobs.iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace) && j.metadata.deletion_timestamp.is_none())
        .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner_uid))
        .filter_map(|j| observe(j))
        .collect()
}

/// Adds to the reason of every failed Job in `observed` what its pod's container ended with
/// (`OOMKilled`, the exit code: see [`super::pod_failure::explain`]), reading the Jobs from
/// `snapshot` and their pods from the pod cache (only when some Job failed).
pub fn explain_failures(observed: &mut [ObservedJob], snapshot: &[Arc<Job>], pods: &Store<Pod>, namespace: &str) {
    if !observed.iter().any(|o| matches!(o.state, JobState::Failed { .. })) {
        return;
    }
    let pods: Vec<Arc<Pod>> =
        pods.state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(namespace)).collect();
    for o in observed.iter_mut() {
        let JobState::Failed { reason, .. } = &mut o.state else { continue };
        let job =
            snapshot.iter().find(|j| j.metadata.namespace.as_deref() == Some(namespace) && j.name_any() == o.name);
        if let Some(job) = job {
            *reason = super::pod_failure::explain(reason, job, &pods);
        }
    }
}

/// Jobs in the cache with `pipeline`'s label that another object controls (not the owner with
/// `owner_uid`), including ones being deleted: their names are still taken.
pub fn foreign_to(store: &Store<Job>, namespace: &str, pipeline: &Pipeline, owner_uid: &str) -> Vec<ForeignJob> {
    foreign_among(&store.state(), namespace, pipeline, owner_uid)
}

/// Like [`foreign_to`], reading only the Jobs the index names for the Pipeline's label.
pub fn foreign_to_indexed(
    store: &Store<Job>,
    index: &JobIndex,
    namespace: &str,
    pipeline: &Pipeline,
    owner_uid: &str,
) -> Vec<ForeignJob> {
    let label = crate::jobs::label_value(&pipeline.name_any());
    foreign_among(&index.labelled(store, namespace, &label), namespace, pipeline, owner_uid)
}

fn foreign_among(jobs: &[Arc<Job>], namespace: &str, pipeline: &Pipeline, owner_uid: &str) -> Vec<ForeignJob> {
    let label = crate::jobs::label_value(&pipeline.name_any());
    jobs.iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace) && j.labels().get(labels::PIPELINE) == Some(&label))
        .filter(|j| !j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner_uid))
        .filter_map(|j| {
            let observed = observe(j)?;
            let controller = j.owner_references().iter().find(|o| o.controller == Some(true));
            Some(ForeignJob {
                name: observed.name,
                run_id: observed.run_id,
                step: observed.step,
                attempt: observed.attempt,
                holder: crate::act::pipeline::holder(j),
                backfill: controller
                    .is_some_and(|o| o.kind == Backfill::kind(&()) && o.api_version == Backfill::api_version(&())),
            })
        })
        .collect()
}

/// Caps on running Sluice Jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobCaps {
    pub per_namespace: Option<usize>,
    pub total: Option<usize>,
}

impl JobCaps {
    /// Whether any cap is set.
    pub fn is_capped(&self) -> bool {
        self.per_namespace.is_some() || self.total.is_some()
    }
}

/// Free Job slots for `namespace` under `caps`, counting the unfinished Jobs of `jobs` (the
/// cache; queued ones too: they are launched and wait only for Kueue)
/// plus those the `ledger` counts as created and not cached yet (pruned against `jobs` first).
/// `usize::MAX` when uncapped.
pub fn free_slots(jobs: &[Arc<Job>], ledger: &mut InFlight, namespace: &str, caps: JobCaps, now: Timestamp) -> usize {
    if !caps.is_capped() {
        return usize::MAX;
    }
    let in_cache: HashSet<(String, String)> =
        jobs.iter().map(|j| (j.namespace().unwrap_or_default(), j.name_any())).collect();
    ledger.prune_pending(now, |ns, name| in_cache.contains(&(ns.to_string(), name.to_string())));
    let (pending_in_ns, pending_total) = ledger.pending(namespace);
    let running = |j: &&Arc<Job>| job_state(j).unfinished() && j.metadata.deletion_timestamp.is_none();
    let total = jobs.iter().filter(running).count() + pending_total;
    let in_ns =
        jobs.iter().filter(running).filter(|j| j.namespace().as_deref() == Some(namespace)).count() + pending_in_ns;
    let free_total = caps.total.map_or(usize::MAX, |cap| cap.saturating_sub(total));
    let free_ns = caps.per_namespace.map_or(usize::MAX, |cap| cap.saturating_sub(in_ns));
    free_total.min(free_ns)
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn job(namespace: &str, name: &str, complete: bool) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "status": if complete {
                serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}]})
            } else {
                serde_json::json!({})
            }
        }))
        .unwrap()
    }

    #[test]
    fn free_slots_count_running_and_pending_jobs_per_namespace_and_in_total() {
        let (store, mut writer) = reflector::store::<Job>();
        for j in [job("a", "a1", false), job("a", "a2", true), job("b", "b1", false)] {
            writer.apply_watcher_event(&watcher::Event::Apply(j));
        }
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let caps = JobCaps { per_namespace: Some(2), total: Some(3) };
        let mut ledger = InFlight::default();
        let free = |ledger: &mut InFlight, ns: &str, caps: JobCaps| free_slots(&store.state(), ledger, ns, caps, now);
        // a: 1 running of 2; total: 2 running of 3.
        assert_eq!(free(&mut ledger, "a", caps), 1);
        // A Job just created and not yet in the cache still takes a slot.
        ledger.add_job("a", "a3", now);
        assert_eq!(free(&mut ledger, "a", caps), 0);
        assert_eq!(free(&mut ledger, "b", caps), 0, "the total cap is reached");
        // Once the cache has it, it is counted once, not twice.
        writer.apply_watcher_event(&watcher::Event::Apply(job("a", "a3", false)));
        assert_eq!(free(&mut ledger, "a", caps), 0);
        writer.apply_watcher_event(&watcher::Event::Apply(job("a", "a3", true)));
        assert_eq!(free(&mut ledger, "a", caps), 1);
        assert_eq!(free(&mut ledger, "c", JobCaps::default()), usize::MAX);
        // One the cache never shows stops taking a slot after the TTL.
        ledger.add_job("a", "a4", now);
        assert_eq!(free(&mut ledger, "a", caps), 0);
        assert_eq!(free_slots(&store.state(), &mut ledger, "a", caps, now + crate::quota::in_flight::PENDING_TTL), 1);
    }

    #[test]
    fn job_state_reads_conditions() {
        assert_eq!(job_state(&job("a", "x", false)), JobState::Active);
        assert!(matches!(job_state(&job("a", "x", true)), JobState::Succeeded { .. }));
    }

    #[test]
    fn a_suspended_job_is_queued_until_kueue_unsuspends_it_and_finished_wins() {
        let suspended = |suspend: bool, complete: bool| {
            let mut j = job("a", "x", complete);
            j.spec = Some(k8s_openapi::api::batch::v1::JobSpec { suspend: Some(suspend), ..Default::default() });
            j
        };
        assert_eq!(job_state(&suspended(true, false)), JobState::Queued);
        assert_eq!(job_state(&suspended(false, false)), JobState::Active, "admitted: unsuspended");
        assert!(matches!(job_state(&suspended(true, true)), JobState::Succeeded { .. }));
        assert!(JobState::Queued.unfinished() && JobState::Active.unfinished());
        // Queued Jobs take Job-cap slots like running ones.
        let (store, mut writer) = reflector::store::<Job>();
        writer.apply_watcher_event(&watcher::Event::Apply(suspended(true, false)));
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let caps = JobCaps { per_namespace: Some(1), total: None };
        assert_eq!(free_slots(&store.state(), &mut InFlight::default(), "a", caps, now), 0);
    }
}
