//! Who a step may run as, on the real API server, with a Pipeline author impersonated: user
//! `alice` holds only the chart's `<release>-edit` ClusterRole in the namespace (Pipelines,
//! Datasets, Backfills; no pods). The chart's ValidatingAdmissionPolicy refuses her Pipelines
//! whose steps run as an account not labelled `sluice.dev/steps-allowed=true`, at apply, naming
//! step and account; she may use a labelled account. An account that loses its label after its
//! Pipeline was admitted (as in a cluster where the policy came later, or none is installed) is
//! refused by the operator: Ready=False reason ServiceAccountNotAllowed, a Warning Event and no
//! Job, for the Pipeline, for an edit of it and for a Backfill of it; labelled again, both run.
//! The namespace enforces Pod Security "restricted" and every step template here passes it.
//!
//! References never cross namespaces: a Backfill, trigger or quota reference naming another
//! namespace is refused at apply.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

use super::cluster::enforce_restricted;
use super::tools::{OperatorProcess, kubectl, poll_until, render, unique};

const USER: &str = "alice";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A step template that passes Pod Security "restricted", with `pod` fields added.
fn template(pod: Value) -> Value {
    let mut spec = json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "main", "image": "example.com/step:1",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
    });
    spec.as_object_mut().unwrap().extend(pod.as_object().unwrap().clone());
    json!({"metadata": {"annotations": {"kwok.sluice.dev/duration": "300ms"}}, "spec": spec})
}

/// A yearly Pipeline (runs only when asked) with one step `extract` whose pod has `pod` fields.
fn pipeline(name: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": "0 0 1 1 *", "steps": [
            {"name": "extract", "kind": "Extract", "retries": {"limit": 0}, "template": template(pod)}
        ]}
    })
}

/// `kubectl apply` of `doc` as `alice`: (accepted, what kubectl printed).
fn apply_as_user(ns: &str, doc: &Value) -> (bool, String) {
    let out = kubectl(&["apply", "-n", ns, "--as", USER, "-f", "-"], Some(&doc.to_string()));
    (out.ok, format!("{}{}", out.stdout, out.stderr).trim().to_string())
}

fn refused(ns: &str, doc: &Value, step: &str, account: &str) -> String {
    let (ok, out) = apply_as_user(ns, doc);
    assert!(!ok, "{} was admitted: {out}", doc["metadata"]["name"]);
    for want in [format!("spec.steps[{step}]"), format!("ServiceAccount \"{account}\" is not allowed")] {
        assert!(out.contains(&want), "the refusal names {want}: {out}");
    }
    out
}

fn admitted(ns: &str, doc: &Value) {
    let (ok, out) = apply_as_user(ns, doc);
    assert!(ok, "{} was refused: {out}", doc["metadata"]["name"]);
}

async fn account(client: &kube::Client, ns: &str, name: &str, allowed: bool) {
    let label = if allowed { json!("true") } else { Value::Null };
    let doc = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
    yaml::apply(client, ns, &doc).await.expect("service account");
    let patch = json!({"metadata": {"labels": {"sluice.dev/steps-allowed": label}}});
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label service account");
}

async fn may(client: &kube::Client, ns: &str, group: &str, resource: &str, verb: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
        "user": USER, "groups": ["system:authenticated"],
        "resourceAttributes": {"namespace": ns, "group": group, "resource": resource, "verb": verb}}}))
    .unwrap();
    let out = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.unwrap();
    out.status.is_some_and(|s| s.allowed)
}

/// Waits for Ready with `status` and `reason` at the object's current generation.
async fn ready(client: &kube::Client, ns: &str, kind: &str, name: &str, status: &str, reason: &str) -> Value {
    let api = yaml::sluice_api(client, ns, kind);
    let what = format!("Ready={status} ({reason})");
    let obj = poll_until(&api, name, TIMEOUT, &what, |o: &DynamicObject| {
        let v = serde_json::to_value(o).unwrap();
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && wait::condition(&v, "Ready").is_some_and(|(s, r, _)| s == status && r == reason)
    })
    .await;
    serde_json::to_value(obj).unwrap()
}

async fn jobs(client: &kube::Client, ns: &str, selector: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)).await.unwrap().items
}

/// Waits for a Job of pipeline `name` and returns its pod spec.
async fn first_job(client: &kube::Client, ns: &str, name: &str) -> k8s_openapi::api::core::v1::PodSpec {
    let job = wait::poll(Duration::from_secs(60), &format!("a Job of {name}"), || async {
        jobs(client, ns, &format!("sluice.dev/pipeline={name}")).await.into_iter().next()
    })
    .await;
    job.spec.unwrap().template.spec.unwrap()
}

async fn warning_events(client: &kube::Client, ns: &str, name: &str, reason: &str) -> usize {
    let count = || async {
        wait::events(client, ns)
            .await
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
            .count()
    };
    wait::settle(Duration::from_secs(10), Duration::from_millis(200), count, |n| *n > 0).await
}

/// The chart's policy, binding and `-edit` ClusterRole, rendered as a release of its own whose
/// binding covers `ns` only (so other tests' namespaces are untouched); deleted when dropped.
struct Installed {
    objects: Vec<(String, String)>,
}

impl Installed {
    async fn new(client: &kube::Client, ns: &str) -> (Self, String) {
        let release = unique("tenancy");
        let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
        let docs = render(&release, ns, &[&format!("--set-json=admissionPolicy.namespaceSelector={selector}")]);
        let mut objects = Vec::new();
        let mut edit_role = String::new();
        for doc in docs.iter().filter(|d| {
            d["kind"] == "ValidatingAdmissionPolicy"
                || d["kind"] == "ValidatingAdmissionPolicyBinding"
                || d["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
        }) {
            yaml::apply(client, ns, doc).await.unwrap_or_else(|e| panic!("{}: {e}", doc["kind"]));
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            if doc["kind"] == "ClusterRole" {
                edit_role = name.clone();
            }
            objects.push((doc["kind"].as_str().unwrap().to_lowercase(), name));
        }
        assert_eq!(objects.len(), 3, "policy, binding, edit role: {objects:?}");
        (Self { objects }, edit_role)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (kind, name) in &self.objects {
            kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"], None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_author_runs_pods_only_as_allowed_service_accounts() {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "tenancy", |test_ns| async move {
        let client = test_ns.client.clone();
        let ns = test_ns.name.as_str();
        enforce_restricted(&client, ns).await;
        let (_installed, edit_role) = Installed::new(&client, ns).await;
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice-sluice"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": edit_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]
        });
        yaml::apply(&client, ns, &binding).await.expect("rolebinding");
        account(&client, ns, "runner", false).await;
        account(&client, ns, "etl", true).await;
        account(&client, ns, "legacy", true).await;
        // RBAC is eventually consistent too: wait until alice may author pipelines.
        wait::settle(
            Duration::from_secs(5),
            wait::EVERY,
            || may(&client, ns, "sluice.dev", "pipelines", "create"),
            |ok| *ok,
        )
        .await;
        assert!(may(&client, ns, "sluice.dev", "backfills", "create").await, "alice may create Backfills");
        assert!(!may(&client, ns, "", "pods", "create").await, "alice may not create pods");
        assert!(!may(&client, ns, "", "serviceaccounts", "patch").await, "alice may not label accounts");

        let name = format!("{}-0", unique("tenancy-op"));
        let mut operator = OperatorProcess::start(
            &sluice_e2e::cluster::kubeconfig(),
            &name,
            &[&format!("--namespace={ns}")],
            "info,sluice=debug",
        );
        operator.wait_ready().await;

        // At apply: refused for an account without the label (also through the deprecated
        // field), once the policy is in force (policies take effect within a second or so).
        let bad = pipeline("as-runner", json!({"serviceAccountName": "runner"}));
        let refusal = || {
            let (ok, out) = apply_as_user(ns, &bad);
            if ok {
                kubectl(&["delete", "pipeline", "as-runner", "-n", ns, "--wait=false"], None);
            }
            std::future::ready((!ok).then_some(out))
        };
        let message =
            wait::poll_every(Duration::from_secs(10), Duration::from_millis(200), refusal).await.unwrap_or_default();
        assert!(!message.is_empty(), "the policy never refused {bad}");
        let message = refused(ns, &bad, "extract", "runner");
        println!("a refused apply prints:\n{message}");
        refused(ns, &pipeline("as-runner-old", json!({"serviceAccount": "runner"})), "extract", "runner");

        // Allowed: a labelled account, and no account (default, without a token).
        admitted(ns, &pipeline("as-etl", json!({"serviceAccountName": "etl"})));
        admitted(ns, &pipeline("plain", json!({})));
        for p in ["as-etl", "plain"] {
            ready(&client, ns, "Pipeline", p, "True", "Reconciled").await;
            let mut run = pipeline(p, json!({}));
            run["metadata"]["annotations"] = json!({"sluice.dev/run-now": "1"});
            if p == "as-etl" {
                run["spec"]["steps"][0]["template"] = template(json!({"serviceAccountName": "etl"}));
            }
            admitted(ns, &run);
        }
        let etl = first_job(&client, ns, "as-etl").await;
        assert_eq!(etl.service_account_name.as_deref(), Some("etl"));
        let plain = first_job(&client, ns, "plain").await;
        assert_eq!((plain.service_account_name, plain.automount_service_account_token), (None, Some(false)));
        // Editing an admitted Pipeline to an account without the label: refused.
        refused(ns, &pipeline("as-etl", json!({"serviceAccountName": "runner"})), "extract", "runner");

        // The operator: `legacy` loses its label after its Pipeline was admitted.
        admitted(ns, &pipeline("as-legacy", json!({"serviceAccountName": "legacy"})));
        ready(&client, ns, "Pipeline", "as-legacy", "True", "Reconciled").await;
        account(&client, ns, "legacy", false).await;
        let obj = ready(&client, ns, "Pipeline", "as-legacy", "False", "ServiceAccountNotAllowed").await;
        let (_, _, why) = wait::condition(&obj, "Ready").unwrap();
        assert!(why.contains("spec.steps[extract]: ServiceAccount \"legacy\" is not allowed"), "{why}");
        assert!(warning_events(&client, ns, "as-legacy", "ServiceAccountNotAllowed").await > 0, "a Warning Event");
        // An edit (new generation) asking for a run, and a Backfill: decided, and no Job.
        let mut edited = pipeline("as-legacy", json!({"serviceAccountName": "legacy"}));
        edited["spec"]["history"] = json!({"successful": 2});
        edited["metadata"]["annotations"] = json!({"sluice.dev/run-now": "1"});
        admitted(ns, &edited);
        let backfill = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "legacy-jan"},
            "spec": {"pipelineRef": {"name": "as-legacy"},
                     "range": {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}
        });
        admitted(ns, &backfill);
        ready(&client, ns, "Pipeline", "as-legacy", "False", "ServiceAccountNotAllowed").await;
        ready(&client, ns, "Backfill", "legacy-jan", "False", "ServiceAccountNotAllowed").await;
        assert!(warning_events(&client, ns, "legacy-jan", "ServiceAccountNotAllowed").await > 0);
        assert!(jobs(&client, ns, "sluice.dev/pipeline=as-legacy").await.is_empty(), "no Job runs as legacy");

        // Labelled again: the label change wakes both; the asked-for run and the backfill run.
        account(&client, ns, "legacy", true).await;
        ready(&client, ns, "Pipeline", "as-legacy", "True", "Reconciled").await;
        ready(&client, ns, "Backfill", "legacy-jan", "True", "Reconciled").await;
        let legacy = first_job(&client, ns, "as-legacy").await;
        assert_eq!(legacy.service_account_name.as_deref(), Some("legacy"));

        // Nothing ever ran as `runner`; every pod passed "restricted" (the Jobs got pods).
        let all = jobs(&client, ns, "app.kubernetes.io/managed-by=sluice-operator").await;
        for job in &all {
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            assert_ne!(pod.service_account_name.as_deref(), Some("runner"), "{:?}", job.metadata.name);
        }
        poll_until(&yaml::sluice_api(&client, ns, "Pipeline"), "plain", TIMEOUT, "run Succeeded", |o| {
            let v = serde_json::to_value(o).unwrap();
            v["status"]["recentRuns"].as_array().is_some_and(|r| r.iter().any(|r| r["phase"] == "Succeeded"))
        })
        .await;
        operator.signal(libc::SIGTERM);
        let _ = operator.exited(Duration::from_secs(20)).await;
    })
    .await;
}

#[tokio::test]
async fn references_never_cross_namespaces() {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "refs", |test_ns| async move {
        let ns = test_ns.name.as_str();
        let backfill = |spec: Value| {
            let mut s = json!({"pipelineRef": {"name": "orders"},
                               "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}});
            s.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "b"}, "spec": s})
        };
        let mut trigger = pipeline("t", json!({}));
        trigger["spec"]["trigger"] = json!({"datasets": ["other-team/orders"]});
        let mut input = pipeline("i", json!({}));
        input["spec"]["steps"][0]["inputs"] = json!(["other-team/orders"]);
        let cases = [
            (
                backfill(json!({"pipelineRef": {"name": "orders", "namespace": "other-team"}})),
                "spec.pipelineRef.namespace",
            ),
            (backfill(json!({"pipelineRef": {"name": "other-team/orders"}})), "spec.pipelineRef.name"),
            (
                backfill(json!({"budget": {"resourceQuotaRef": {"name": "q", "namespace": "other-team"}}})),
                "spec.budget.resourceQuotaRef.namespace",
            ),
            (
                backfill(json!({"budget": {"resourceQuotaRef": {"name": "other-team/q"}}})),
                "spec.budget.resourceQuotaRef.name",
            ),
            (trigger, "spec.trigger.datasets[0]"),
            (input, "spec.steps[0].inputs[0]"),
        ];
        for (doc, field) in cases {
            let out = kubectl(&["apply", "-n", ns, "-f", "-"], Some(&doc.to_string()));
            let printed = format!("{}{}", out.stdout, out.stderr);
            assert!(!out.ok, "{doc} was accepted");
            assert!(printed.contains(field), "the refusal names {field}: {printed}");
        }
    })
    .await;
}
