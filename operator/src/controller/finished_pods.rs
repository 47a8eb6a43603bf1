//! Pods that finished before their Job shows it. The Job controller batches Job status updates
//! (a second or so after the pod's last change), while the ResourceQuota stops counting a pod as
//! soon as its phase is Succeeded or Failed. A backfill bound by its quota reads the pods, so
//! that the next partition takes the room as soon as the quota's `used` frees it, and is woken
//! by the pod's change rather than by its Job's.

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

/// The pod's phase is final: it will not run again (Sluice's Jobs never restart a pod).
pub fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The uid and name of the Job that controls `pod`.
fn controlling_job(pod: &Pod) -> Option<(&str, &str)> {
    let owner = pod.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Job")?;
    Some((owner.uid.as_str(), owner.name.as_str()))
}

/// The uids of the Jobs of `namespace` whose pod the cache shows finished.
pub fn jobs_with_finished_pods(pods: &Store<Pod>, namespace: &str) -> HashSet<String> {
    pods.state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && finished(p))
        .filter_map(|p| controlling_job(p).map(|(uid, _)| uid.to_string()))
        .collect()
}

/// The Job (from the Job cache) of a finished pod, for the wake of its owner.
pub fn job_of_finished(pod: &Pod, jobs: &Store<Job>) -> Option<std::sync::Arc<Job>> {
    if !finished(pod) {
        return None;
    }
    let (uid, name) = controlling_job(pod)?;
    let job = jobs.get(&ObjectRef::new(name).within(pod.metadata.namespace.as_deref()?))?;
    (job.metadata.uid.as_deref() == Some(uid)).then_some(job)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ns: &str, job_uid: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns, "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job_uid, "controller": true}]},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn only_finished_pods_of_the_namespace_release_their_jobs() {
        let (store, mut writer) = reflector::store::<Pod>();
        for p in [pod("a", "ns", "u1", "Succeeded"), pod("b", "ns", "u2", "Running"), pod("c", "ns", "u3", "Failed")]
            .into_iter()
            .chain([pod("d", "other", "u4", "Succeeded")])
        {
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        let mut uids: Vec<String> = jobs_with_finished_pods(&store, "ns").into_iter().collect();
        uids.sort();
        assert_eq!(uids, ["u1", "u3"]);
    }

    #[test]
    fn a_finished_pod_names_its_job_only_when_the_uid_matches() {
        let (jobs, mut writer) = reflector::store::<Job>();
        let job: Job =
            serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}})).unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(job));
        assert!(job_of_finished(&pod("a", "ns", "u1", "Succeeded"), &jobs).is_some());
        assert!(job_of_finished(&pod("a", "ns", "u1", "Running"), &jobs).is_none(), "not finished");
        assert!(job_of_finished(&pod("a", "ns", "old", "Succeeded"), &jobs).is_none(), "an older Job of the name");
    }
}
