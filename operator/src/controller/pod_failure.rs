//! Why a failed step's container ended, from its pod in the cache: the Job's own condition only
//! says `BackoffLimitExceeded`, while the kubelet records `OOMKilled`, an exit code or a start
//! error on the container. Pure functions over cached objects.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::ResourceExt;

/// Label the Job controller puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Whether `pod` is a pod of `job`: controlled by it (by uid, so a pod of an earlier Job of the
/// same name is not), or, when either has no uid, labelled with its name.
pub fn pod_of_job(pod: &Pod, job: &Job) -> bool {
    let controller = pod.owner_references().iter().find(|o| o.controller == Some(true));
    match (controller, job.uid()) {
        (Some(o), Some(uid)) => o.uid == uid,
        _ => pod.labels().get(JOB_NAME_LABEL).map(String::as_str) == Some(job.name_any().as_str()),
    }
}

/// The first container of `pod` that terminated unsuccessfully, with its name.
fn failed_container(pod: &Pod) -> Option<(&str, &ContainerStateTerminated)> {
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    init.chain(status.container_statuses.iter().flatten()).find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then_some((c.name.as_str(), t))
    })
}

/// `job_reason` (the Job's Failed condition) with what its failed pod's container says. A
/// container reason other than the generic `Error` (`OOMKilled`, `StartError`, ...) leads, so
/// that the CamelCase head of the text, which Backfills record as the partition's reason, names
/// it: "OOMKilled: container main exited 137; BackoffLimitExceeded: ...". Otherwise the exit
/// code is appended. Unchanged when no pod of the Job in `pods` has a failed container.
pub fn explain(job_reason: &str, job: &Job, pods: &[Arc<Pod>]) -> String {
    let Some((name, t)) = pods.iter().filter(|p| pod_of_job(p, job)).find_map(|p| failed_container(p)) else {
        return job_reason.to_string();
    };
    match t.reason.as_deref() {
        Some(reason) if reason != "Error" && !reason.is_empty() => {
            format!("{reason}: container {name} exited {}; {job_reason}", t.exit_code)
        }
        _ => format!("{job_reason} (container {name} exited {})", t.exit_code),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job() -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "n", "uid": "job-uid"}})).unwrap()
    }

    fn pod(owner: &str, terminated: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "n", "ownerReferences": [{"apiVersion": "batch/v1",
                    "kind": "Job", "name": "j", "uid": owner, "controller": true}]},
                "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0, "state": {"terminated": terminated}}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_oom_kill_leads_the_reason() {
        let pods = [pod("job-uid", json!({"exitCode": 137, "reason": "OOMKilled"}))];
        assert_eq!(
            explain("BackoffLimitExceeded: Job has reached the specified backoff limit", &job(), &pods),
            "OOMKilled: container main exited 137; BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
    }

    #[test]
    fn a_plain_error_appends_the_exit_code() {
        let pods = [pod("job-uid", json!({"exitCode": 3, "reason": "Error"}))];
        assert_eq!(explain("BackoffLimitExceeded", &job(), &pods), "BackoffLimitExceeded (container main exited 3)");
    }

    #[test]
    fn pods_of_other_jobs_and_successful_containers_change_nothing() {
        let other = [pod("other-uid", json!({"exitCode": 137, "reason": "OOMKilled"}))];
        assert_eq!(explain("DeadlineExceeded", &job(), &other), "DeadlineExceeded");
        let ok = [pod("job-uid", json!({"exitCode": 0, "reason": "Completed"}))];
        assert_eq!(explain("DeadlineExceeded", &job(), &ok), "DeadlineExceeded");
        assert_eq!(explain("DeadlineExceeded", &job(), &[]), "DeadlineExceeded");
    }
}
