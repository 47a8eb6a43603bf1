//! Job objects from step templates: deterministic names, labels, owner reference and the
//! environment contract of DESIGN.md. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use crate::api::StepSpec;
use crate::schedule::Window;

/// Labels on every Job Sluice creates.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "sluice-operator";
    pub const PIPELINE: &str = "sluice.dev/pipeline";
    pub const RUN: &str = "sluice.dev/run";
    pub const STEP: &str = "sluice.dev/step";
    pub const ATTEMPT: &str = "sluice.dev/attempt";
    pub const BACKFILL: &str = "sluice.dev/backfill";
    /// On the Jobs of a late pass (`spec.lateness`): its distance from the scheduled window.
    pub const LATE_PASS: &str = "sluice.dev/late-pass";
}

/// Annotations on every Job Sluice creates.
pub mod annotations {
    pub const WINDOW_START: &str = "sluice.dev/window-start";
    pub const WINDOW_END: &str = "sluice.dev/window-end";
}

/// Longest Job name: the Job controller copies it into a label value, limited to 63 characters.
pub const MAX_JOB_NAME: usize = 63;

/// The name of the Job of `step`'s `attempt` in run `run_id` of `pipeline`:
/// `<pipeline>-<step>-<run id>` (and `-a<N>` for retries), shortened with a hash of the full name
/// when longer than 63 characters. The same inputs always give the same name, so creating it
/// twice yields `AlreadyExists`, never a duplicate.
pub fn job_name(pipeline: &str, step: &str, run_id: &str, attempt: u32) -> String {
    let full = if attempt == 0 {
        format!("{pipeline}-{step}-{run_id}")
    } else {
        format!("{pipeline}-{step}-{run_id}-a{attempt}")
    };
    if full.len() <= MAX_JOB_NAME {
        return full;
    }
    let hash = short_hash(&full, 4);
    let keep = MAX_JOB_NAME - hash.len() - 1;
    // A dot before the hash's dash would end a DNS label with nothing (`a.-1f2e3d4c`).
    let prefix = full[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// The first `bytes` bytes of the SHA-256 of `value` in hex: the suffix that keeps shortened
/// names, and run ids derived from a value, distinct.
pub fn short_hash(value: &str, bytes: usize) -> String {
    Sha256::digest(value.as_bytes()).iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

/// A label value: at most 63 characters, shortened with a hash when longer.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        return value.to_string();
    }
    let hash = short_hash(value, 4);
    format!("{}-{hash}", value[..54].trim_end_matches(['-', '.', '_']))
}

/// Everything needed to build one step Job.
#[derive(Clone, Debug)]
pub struct StepJob<'a> {
    pub namespace: &'a str,
    pub pipeline: &'a str,
    pub run_id: &'a str,
    pub window: Window,
    pub step: &'a StepSpec,
    pub attempt: u32,
    /// Set for Jobs of a Backfill: its name, added as a label.
    pub backfill: Option<&'a str>,
    /// Owner of the Job (`apiVersion`, `kind`, name, uid): the Pipeline, or the Backfill.
    pub owner: OwnerReference,
    /// The Kueue queue: the Job is created suspended with Kueue's labels ([`crate::kueue`]).
    pub queue: Option<&'a crate::kueue::Queue>,
}

/// Builds the Job: the step's pod template with the SLUICE_* environment added to every
/// container, restartPolicy Never and backoffLimit 0 (Sluice retries by creating the next
/// attempt's Job), the labels and window annotations, and a controller owner reference.
///
/// Nothing else of the template changes: its securityContext, volumes, host namespaces and
/// ServiceAccount are taken as written, so the pod is exactly as strict as the template (and the
/// namespace's Pod Security level judges it). The one default added: a step that runs as the
/// namespace's `default` account gets no ServiceAccount token unless its template sets
/// `automountServiceAccountToken`. Whether the template's account is allowed at all is decided
/// before a Job is built (`tenancy`).
pub fn build(req: &StepJob<'_>) -> Job {
    let name = job_name(req.pipeline, &req.step.name, req.run_id, req.attempt);
    let mut labels = BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGED_BY_VALUE.to_string()),
        (labels::PIPELINE.to_string(), label_value(req.pipeline)),
        (labels::RUN.to_string(), label_value(req.run_id)),
        (labels::STEP.to_string(), req.step.name.clone()),
        (labels::ATTEMPT.to_string(), req.attempt.to_string()),
    ]);
    if let Some(backfill) = req.backfill {
        labels.insert(labels::BACKFILL.to_string(), label_value(backfill));
    }
    if let Some(distance) = crate::plan::late::pass_of(req.run_id) {
        labels.insert(labels::LATE_PASS.to_string(), distance.to_string());
    }
    let annotations = BTreeMap::from([
        (annotations::WINDOW_START.to_string(), req.window.start.to_string()),
        (annotations::WINDOW_END.to_string(), req.window.end.to_string()),
    ]);

    let mut template: PodTemplateSpec = req.step.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let pod_labels = meta.labels.get_or_insert_with(Default::default);
    for key in [labels::PIPELINE, labels::RUN, labels::STEP, labels::ATTEMPT] {
        pod_labels.insert(key.to_string(), labels[key].clone());
    }
    let env = environment(req);
    let mut spec = template.spec.take().unwrap_or_default();
    spec.restart_policy = Some("Never".into());
    if crate::tenancy::account(&req.step.template).is_none() && spec.automount_service_account_token.is_none() {
        spec.automount_service_account_token = Some(false);
    }
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        add_env(container, &env);
    }
    template.spec = Some(spec);

    let mut job = Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(req.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![req.owner.clone()]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: req.step.active_deadline_seconds,
            template,
            ..Default::default()
        }),
        status: None,
    };
    if let Some(queue) = req.queue {
        crate::kueue::enqueue(&mut job, queue);
    }
    job
}

/// The environment contract: SLUICE_PIPELINE, SLUICE_RUN_ID, SLUICE_STEP,
/// SLUICE_PARTITION_START/END (RFC 3339, UTC), SLUICE_INPUTS, SLUICE_OUTPUTS (comma-separated
/// dataset names) and SLUICE_ATTEMPT (0 for the first attempt).
fn environment(req: &StepJob<'_>) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), value_from: None };
    vec![
        var("SLUICE_PIPELINE", req.pipeline.to_string()),
        var("SLUICE_RUN_ID", req.run_id.to_string()),
        var("SLUICE_STEP", req.step.name.clone()),
        var("SLUICE_PARTITION_START", req.window.start.to_string()),
        var("SLUICE_PARTITION_END", req.window.end.to_string()),
        var("SLUICE_INPUTS", req.step.inputs.join(",")),
        var("SLUICE_OUTPUTS", req.step.outputs.join(",")),
        var("SLUICE_ATTEMPT", req.attempt.to_string()),
    ]
}

/// Adds the contract variables, replacing any the user set with the same names.
fn add_env(container: &mut Container, vars: &[EnvVar]) {
    let env = container.env.get_or_insert_with(Vec::new);
    env.retain(|e| !vars.iter().any(|v| v.name == e.name));
    env.extend(vars.iter().cloned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StepKind;

    fn step() -> StepSpec {
        serde_json::from_value(serde_json::json!({
            "name": "extract", "kind": "Extract", "outputs": ["orders"],
            "activeDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"team": "a"}}, "spec": {"containers": [
                {"name": "main", "image": "busybox", "env": [{"name": "SLUICE_STEP", "value": "mine"}, {"name": "KEEP", "value": "1"}]}
            ]}}
        }))
        .unwrap()
    }

    fn request(step: &StepSpec, attempt: u32) -> StepJob<'_> {
        StepJob {
            namespace: "team-a",
            pipeline: "orders-ingest",
            run_id: "20261124-1000-1h",
            window: Window {
                start: "2026-11-24T10:00:00Z".parse().unwrap(),
                end: "2026-11-24T11:00:00Z".parse().unwrap(),
            },
            step,
            attempt,
            backfill: None,
            owner: OwnerReference {
                api_version: "sluice.dev/v1alpha1".into(),
                kind: "Pipeline".into(),
                name: "orders-ingest".into(),
                uid: "uid-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            queue: None,
        }
    }

    #[test]
    fn a_queued_step_job_is_built_suspended_with_kueues_labels_and_the_same_name() {
        let step = step();
        let plain = build(&request(&step, 0));
        assert_eq!(plain.spec.as_ref().unwrap().suspend, None, "no queue: not suspended");
        assert!(!plain.metadata.labels.as_ref().unwrap().contains_key(crate::kueue::QUEUE_LABEL));
        let queue = crate::kueue::Queue { name: "etl-high".into(), priority_class: Some("scheduled".into()) };
        let queued = build(&StepJob { queue: Some(&queue), ..request(&step, 0) });
        assert_eq!(queued.metadata.name, plain.metadata.name, "the queue never changes the name");
        assert_eq!(queued.spec.as_ref().unwrap().suspend, Some(true));
        let l = queued.metadata.labels.as_ref().unwrap();
        assert_eq!(l[crate::kueue::QUEUE_LABEL], "etl-high");
        assert_eq!(l[crate::kueue::PRIORITY_LABEL], "scheduled");
        assert_eq!(l[labels::RUN], "20261124-1000-1h");
    }

    #[test]
    fn names_are_deterministic_and_fit() {
        assert_eq!(job_name("orders", "extract", "20261124-1000-1h", 0), "orders-extract-20261124-1000-1h");
        assert_eq!(job_name("orders", "extract", "20261124-1000-1h", 2), "orders-extract-20261124-1000-1h-a2");
        let long = job_name(&"p".repeat(60), "a-step-with-a-long-name", "20261124-1000-1h", 0);
        assert_eq!(long.len(), 63);
        assert_eq!(long, job_name(&"p".repeat(60), "a-step-with-a-long-name", "20261124-1000-1h", 0));
        assert_ne!(long, job_name(&"p".repeat(60), "a-step-with-a-long-name", "20261124-1100-1h", 0));
    }

    /// Found by the property test `job_names_are_dns_labels_and_deterministic`: a dotted
    /// Pipeline name cut just after a dot gave `….000a0.-fe07f14a`, not a valid Job name.
    #[test]
    fn a_cut_never_leaves_a_dot_before_the_hash() {
        let pipeline = "000a00--a-aa0-a--a00a-0aa-00a-0-0a-aa-a0-0a0-a0.000a0.a";
        let name = job_name(pipeline, "0", "19700101-0000-1h", 0);
        assert!(!name.contains(".-") && name.len() <= MAX_JOB_NAME, "{name}");
    }

    #[test]
    fn job_carries_contract_labels_and_owner() {
        let step = step();
        assert_eq!(step.kind, StepKind::Extract);
        let job = build(&request(&step, 1));
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("orders-ingest-extract-20261124-1000-1h-a1"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["sluice.dev/run"], "20261124-1000-1h");
        assert_eq!(labels["sluice.dev/attempt"], "1");
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].controller, Some(true));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let env: BTreeMap<_, _> = pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(env["SLUICE_STEP"], "extract", "the contract wins over a user value");
        assert_eq!(env["KEEP"], "1");
        assert_eq!(env["SLUICE_PARTITION_START"], "2026-11-24T10:00:00Z");
        assert_eq!(env["SLUICE_PARTITION_END"], "2026-11-24T11:00:00Z");
        assert_eq!(env["SLUICE_OUTPUTS"], "orders");
        assert_eq!(env["SLUICE_ATTEMPT"], "1");
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels["team"], "a");
        assert_eq!(pod_labels["sluice.dev/step"], "extract");
    }

    fn pod_of(template: serde_json::Value) -> k8s_openapi::api::core::v1::PodSpec {
        let step: StepSpec = serde_json::from_value(serde_json::json!({
            "name": "extract", "kind": "Extract", "template": template
        }))
        .unwrap();
        build(&request(&step, 0)).spec.unwrap().template.spec.unwrap()
    }

    #[test]
    fn the_default_account_gets_no_token_unless_asked() {
        let container = serde_json::json!([{"name": "main", "image": "busybox"}]);
        let plain = pod_of(serde_json::json!({"spec": {"containers": container}}));
        assert_eq!(plain.automount_service_account_token, Some(false));
        assert_eq!(plain.service_account_name, None);
        let named_default =
            pod_of(serde_json::json!({"spec": {"serviceAccountName": "default", "containers": container}}));
        assert_eq!(named_default.automount_service_account_token, Some(false));
        let asks = pod_of(serde_json::json!({"spec": {"automountServiceAccountToken": true, "containers": container}}));
        assert_eq!(asks.automount_service_account_token, Some(true));
        let own = pod_of(serde_json::json!({"spec": {"serviceAccountName": "etl", "containers": container}}));
        assert_eq!(own.service_account_name.as_deref(), Some("etl"));
        assert_eq!(own.automount_service_account_token, None, "an allowed account keeps its own token setting");
    }

    #[test]
    fn the_template_is_taken_as_written() {
        // A template that passes Pod Security "restricted", and one that asks for host access:
        // both come out exactly as written, apart from the contract environment and restartPolicy.
        let restricted = serde_json::json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "main", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}}}]}});
        let privileged = serde_json::json!({"spec": {
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "main", "image": "busybox", "securityContext": {"privileged": true}}]}});
        for template in [restricted, privileged] {
            let mut want: k8s_openapi::api::core::v1::PodSpec =
                serde_json::from_value(template["spec"].clone()).unwrap();
            let mut got = pod_of(template);
            assert_eq!(got.restart_policy.as_deref(), Some("Never"));
            assert_eq!(got.automount_service_account_token, Some(false));
            got.restart_policy = None;
            got.automount_service_account_token = None;
            for c in got.containers.iter_mut() {
                c.env = None;
            }
            want.containers.iter_mut().for_each(|c| c.env = None);
            assert_eq!(got, want);
        }
    }
}
