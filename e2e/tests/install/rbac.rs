//! The chart's RBAC is enough, and no more: the operator runs outside the cluster impersonating
//! the chart's ServiceAccount (so it has exactly the rights the chart grants it) through the
//! Pipeline, Dataset and Backfill flows, with its API requests logged. Then:
//! - every flow made progress (status, Jobs, Events), and no request was refused;
//! - every request is covered by the chart's rules, and every verb the rules grant was used by
//!   some request, except the documented admission-only rule (`update` on `*/finalizers`) and
//!   the rule used only after a stale cache (`get` on Pipelines, see [`WHEN_STALE_ONLY`]).
//!
//! Both RBAC layouts are tested: all namespaces (one ClusterRole) and one watched namespace
//! (Roles). The operator is started with `--namespace <work namespace>` in both, so that it does
//! not act on other tests' namespaces; for the ClusterRole layout, SubjectAccessReviews show that
//! the same rules hold in every namespace.
//!
//! This binary starts no shared operator, so under `make test` the impersonating operator is the
//! only one acting; the proof itself rests on its own request log (see `events_from`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

use super::permissions::{self, Grant, Permission};
use super::tools::{OperatorProcess, chart_dir, helm_ok, impersonating_kubeconfig, poll_until, unique};

/// Rules the operator never exercises itself: the OwnerReferencesPermissionEnforcement admission
/// plugin (on in OpenShift, off on the local cluster) checks them when a Job with a
/// blockOwnerDeletion owner reference to a Pipeline or Backfill is created.
const ADMISSION_ONLY: [(&str, &str, &str); 2] =
    [("sluice.dev", "pipelines/finalizers", "update"), ("sluice.dev", "backfills/finalizers", "update")];

/// Rules used only on a path the flows cannot force: `get` on a Pipeline is the fresh read after
/// its status write met a stale cache (a 409), which happens under load or after an API server
/// restart. The order of that path is pinned by the mocked-API test
/// `controller::api_order::pipeline::a_stale_cached_pipeline_is_decided_again_on_a_fresh_read`,
/// and the restart chaos test runs it on the real API server; here a request that uses it must
/// still be granted, but a run without one passes.
const WHEN_STALE_ONLY: [(&str, &str, &str); 1] = [("sluice.dev", "pipelines", "get")];

const RUST_LOG: &str = "info,sluice=debug,kube_client::client::builder=debug";

fn sluice_api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "sluice.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sluice.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Waits until `check` holds for the JSON of `kind` `name`, and returns that JSON.
async fn wait_json(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let obj = poll_until(&sluice_api(client, ns, kind), name, Duration::from_secs(90), what, |o: &DynamicObject| {
        check(&serde_json::to_value(o).expect("json"))
    })
    .await;
    serde_json::to_value(obj).expect("json")
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        && wait::condition(obj, type_).is_some_and(|c| c.0 == status)
}

fn step(name: &str, deps: &[&str], outputs: &[&str], fail: bool) -> Value {
    let mut annotations = json!({"kwok.sluice.dev/duration": "500ms"});
    if fail {
        annotations["kwok.sluice.dev/outcome"] = json!("fail");
    }
    json!({
        "name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" },
        "dependsOn": deps, "outputs": outputs, "retries": {"limit": 0},
        "template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                                              "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}
    })
}

async fn run_now(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"sluice.dev/run-now": value}}});
    sluice_api(client, ns, "Pipeline")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("run-now");
}

fn succeeded_runs(obj: &Value) -> usize {
    obj["status"]["recentRuns"].as_array().map_or(0, |r| r.iter().filter(|r| r["phase"] == "Succeeded").count())
}

/// The Pipeline, Dataset and Backfill flows, driven with the admin client while the operator
/// under test acts. Exercises every rule: watches of all kinds, status patches, Job create and
/// delete (history), Job get (a Backfill's Job name taken), Events created and patched (a
/// repeated event), ResourceQuota and the rest.
async fn flows(client: &kube::Client, ns: &str, operator: &OperatorProcess) {
    // A Dataset with a freshness objective, produced by the pipeline below.
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "orders-raw"},
            "spec": {"owner": "e2e", "layer": "Raw", "freshness": {"maxAge": "1h"}}
        }),
    )
    .await
    .expect("dataset");
    wait_json(client, ns, "Dataset", "orders-raw", "Ready", |o| condition_is(o, "Ready", "True")).await;

    // Two manual runs of a two-step pipeline keeping one successful run: the first run's Jobs
    // are deleted.
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
            "spec": {"schedule": "0 0 1 1 *", "history": {"successful": 1, "failed": 1},
                     "steps": [step("extract", &[], &["orders-raw"], false), step("stage", &["extract"], &[], false)]}
        }),
    )
    .await
    .expect("pipeline");
    wait_json(client, ns, "Pipeline", "orders", "Ready", |o| condition_is(o, "Ready", "True")).await;
    run_now(client, ns, "orders", "1").await;
    wait_json(client, ns, "Pipeline", "orders", "1 run Succeeded", |o| succeeded_runs(o) >= 1).await;
    run_now(client, ns, "orders", "2").await;
    let orders = wait_json(client, ns, "Pipeline", "orders", "2 runs Succeeded", |o| succeeded_runs(o) >= 2).await;
    assert_eq!(super::argocd::health("Pipeline", &orders).expect("lua").0, "Healthy");
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let live_runs = || async {
        jobs.list(&ListParams::default().labels("sluice.dev/pipeline=orders"))
            .await
            .expect("jobs")
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| j.metadata.labels.as_ref()?.get("sluice.dev/run").cloned())
            .collect::<BTreeSet<_>>()
    };
    let runs = wait::settle(Duration::from_secs(20), Duration::from_millis(200), live_runs, |r| r.len() == 1).await;
    assert_eq!(runs.len(), 1, "history.successful=1 deleted the older run's Jobs: {runs:?}");

    // A failing run: Degraded.
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "flaky"},
            "spec": {"schedule": "0 0 1 1 *", "steps": [step("extract", &[], &[], true)]}
        }),
    )
    .await
    .expect("pipeline");
    run_now(client, ns, "flaky", "1").await;
    let flaky = wait_json(client, ns, "Pipeline", "flaky", "Degraded", |o| condition_is(o, "Degraded", "True")).await;
    assert_eq!(super::argocd::health("Pipeline", &flaky).expect("lua").0, "Degraded");

    // A Backfill of two hourly windows of a suspended hourly pipeline, within a ResourceQuota
    // budget: its Jobs run and it completes.
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "budget"},
            "spec": {"hard": {"requests.cpu": "100", "requests.memory": "100Gi"}}
        }),
    )
    .await
    .expect("quota");
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "hourly"},
            "spec": {"schedule": "0 * * * *", "suspend": true, "steps": [step("extract", &[], &[], false)]}
        }),
    )
    .await
    .expect("pipeline");
    // A Job of someone else already has the name of the second window's Job: the controller
    // gets it on AlreadyExists, sees it is not its own and retries; once it is gone, it proceeds.
    let window = sluice::schedule::Window {
        start: "2026-10-01T01:00:00Z".parse().unwrap(),
        end: "2026-10-01T02:00:00Z".parse().unwrap(),
    };
    let taken = sluice::jobs::job_name("hourly", "extract", &window.run_id(), 0);
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": taken},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "example.com/other:1"}]}}}
        }),
    )
    .await
    .expect("a Job with the Backfill's Job name");
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": "october"},
            "spec": {"pipelineRef": {"name": "hourly"}, "parallelism": 2,
                     "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T02:00:00Z"},
                     "budget": {"resourceQuotaRef": {"name": "budget"}, "reserve": {"cpu": "1"}}}
        }),
    )
    .await
    .expect("backfill");
    let read_taken = |log: &str| {
        permissions::requests_in_log(log).iter().any(|r| {
            r.permission.resource == "jobs" && r.permission.verb == "get" && r.name.as_deref() == Some(taken.as_str())
        })
    };
    let log = || std::future::ready(operator.log_text());
    wait::settle(Duration::from_secs(30), Duration::from_millis(200), log, |l| read_taken(l)).await;
    assert!(read_taken(&operator.log_text()), "the Backfill controller read the Job that took its name");
    jobs.delete(&taken, &kube::api::DeleteParams::background()).await.expect("delete the other Job");
    let backfill =
        wait_json(client, ns, "Backfill", "october", "Complete", |o| condition_is(o, "Complete", "True")).await;
    assert_eq!(super::argocd::health("Backfill", &backfill).expect("lua").0, "Healthy");

    // Suspending: Suspended.
    let suspend = json!({"spec": {"suspend": true}});
    sluice_api(client, ns, "Pipeline").patch("orders", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    let orders =
        wait_json(client, ns, "Pipeline", "orders", "Suspended", |o| condition_is(o, "Suspended", "True")).await;
    assert_eq!(super::argocd::health("Pipeline", &orders).expect("lua").0, "Suspended");

    // A Job the API server rejects (container names are DNS labels): JobCreateFailed Events,
    // repeated every 30 s, so the recorder patches the event series.
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "rejected"},
            "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "extract", "kind": "Extract",
                "template": {"spec": {"containers": [{"name": "Not_A_DNS_Label", "image": "example.com/step:1"}]}}}]}
        }),
    )
    .await
    .expect("pipeline");
    run_now(client, ns, "rejected", "1").await;
}

/// The operator never writes spec or metadata of users' objects (so Argo CD never sees drift):
/// its field manager owns only fields of the status subresource.
async fn assert_writes_only_status(client: &kube::Client, ns: &str) {
    for kind in ["Pipeline", "Dataset", "Backfill"] {
        for obj in sluice_api(client, ns, kind).list(&ListParams::default()).await.unwrap().items {
            for entry in obj.metadata.managed_fields.unwrap_or_default() {
                if entry.manager.as_deref() == Some("sluice-operator") {
                    assert_eq!(
                        entry.subresource.as_deref(),
                        Some("status"),
                        "{kind} {}: the operator wrote outside status: {entry:?}",
                        obj.metadata.name.unwrap_or_default()
                    );
                }
            }
        }
    }
}

/// Counts the Events the operator under test published in `ns`. Another Sluice operator acting
/// in the namespace (a developer's test run on the same cluster) is reported, not fatal: the
/// proof rests on this operator's own request log, where a missing right shows as a 403 whoever
/// else acts, and authorization precedes "already exists" and "not found".
async fn events_from(client: &kube::Client, ns: &str, instance: &str) -> usize {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.unwrap().items;
    let ours: Vec<&Event> =
        list.iter().filter(|e| e.reporting_controller.as_deref() == Some("sluice-operator")).collect();
    let others: BTreeSet<&str> =
        ours.iter().filter_map(|e| e.reporting_instance.as_deref()).filter(|i| *i != instance).collect();
    if !others.is_empty() {
        println!("note: other Sluice operators also acted in {ns}: {others:?}");
    }
    ours.iter().filter(|e| e.reporting_instance.as_deref() == Some(instance)).count()
}

/// Resolves with the first request of `operator` that the API server refused (403).
async fn first_refusal(operator: &OperatorProcess) -> String {
    loop {
        let requests = permissions::requests_in_log(&operator.log_text());
        if let Some(r) = requests.iter().find(|r| r.status == Some(403)) {
            return format!("{} {:?} in {:?}", r.permission, r.name, r.namespace);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The rules bound to the ServiceAccount by the release (its Roles and ClusterRoles; not the
/// roles for people, `<release>-edit` and `-view`).
async fn release_grants(release: &str, ns: &str) -> Vec<Grant> {
    let manifest = helm_ok(&["get", "manifest", release, "-n", ns]).await;
    sluice_e2e::yaml::documents(&manifest)
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .flat_map(|role| permissions::grants(&role["rules"]))
        .collect()
}

/// Whether the ServiceAccount may `verb` `resource` in every namespace (SubjectAccessReview).
async fn allowed_everywhere(client: &kube::Client, user: &str, group: &str, resource: &str, verb: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": {"group": group, "resource": resource, "verb": verb, "namespace": ""}}
    }))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let out = api.create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
    out.status.is_some_and(|s| s.allowed)
}

async fn operator_with_the_charts_rights(watch_one_namespace: bool) {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "rbac-release", |release_ns| async move {
        let client = release_ns.client.clone();
        with_namespace(&client.clone(), "rbac-work", |work_ns| async move {
            let rel_ns = release_ns.name.as_str();
            let ns = work_ns.name.as_str();
            let release = unique(if watch_one_namespace { "sluice-ns" } else { "sluice-all" });
            let chart = chart_dir();
            let mut install = vec![
                "install", &release, chart.to_str().unwrap(), "-n", rel_ns, "--set", "crds.install=false", "--set",
                "replicaCount=1",
            ];
            let watch = format!("watchNamespace={ns}");
            if watch_one_namespace {
                install.extend(["--set", &watch]);
            }
            helm_ok(&install).await;

            // The Deployment's own arguments, except the address and log format, plus
            // --namespace so that it leaves the other tests' namespaces alone.
            let manifest = helm_ok(&["get", "manifest", &release, "-n", rel_ns]).await;
            let docs = sluice_e2e::yaml::documents(&manifest);
            let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("Deployment");
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            let mut args: Vec<String> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .filter(|a| a != "run" && !a.starts_with("--http-addr") && !a.starts_with("--log-format"))
                .collect();
            if !watch_one_namespace {
                args.push(format!("--namespace={ns}"));
            }
            let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
            let kubeconfig = impersonating_kubeconfig(rel_ns, sa);
            let name = format!("{release}-0");
            let mut operator =
                OperatorProcess::start(&kubeconfig, &name, &args.iter().map(String::as_str).collect::<Vec<_>>(), RUST_LOG);
            operator.wait_ready().await;

            // A right the chart lacks shows as a 403 in the log long before a flow times out.
            tokio::select! {
                () = flows(&client, ns, &operator) => {}
                refused = first_refusal(&operator) => panic!("the chart's RBAC refused {refused}; see {}", operator.log.display()),
            }

            // The rejected Job's Event repeats every 30 s; the recorder patches the series from
            // the third attempt on (the first two regard different object versions).
            let patched_event = |log: &str| {
                permissions::requests_in_log(log)
                    .iter()
                    .any(|r| r.permission.resource == "events" && r.permission.verb == "patch" && r.status.is_some())
            };
            let log = || std::future::ready(operator.log_text());
            wait::settle(Duration::from_secs(90), Duration::from_millis(500), log, |l| patched_event(l)).await;
            assert_writes_only_status(&client, ns).await;
            assert!(events_from(&client, ns, &name).await > 0, "the operator under test published Events");
            let metrics = operator.metrics().await;
            assert!(metrics.contains("sluice_leader 1"), "this replica leads: {metrics}");
            for metric in alert_metrics() {
                assert!(metrics.contains(&metric), "the alerts use {metric}, which /metrics does not show");
            }

            // SIGTERM: reconciles finish, the Lease is released, the process exits 0.
            operator.signal(libc::SIGTERM);
            let status = operator.exited(Duration::from_secs(20)).await.expect("exits after SIGTERM");
            assert!(status.success(), "exit status {status}");

            let grants = release_grants(&release, rel_ns).await;
            let requests = permissions::requests_in_log(&operator.log_text());
            assert!(!requests.is_empty(), "no API requests in {}", operator.log.display());
            let refused: Vec<_> = requests.iter().filter(|r| r.status == Some(403)).collect();
            assert!(refused.is_empty(), "requests the chart's RBAC refused: {refused:#?}");
            let not_granted: BTreeSet<String> = requests
                .iter()
                .filter(|r| !permissions::allows(&grants, r))
                .map(|r| format!("{} {:?}", r.permission, r.name))
                .collect();
            assert!(not_granted.is_empty(), "requests outside the chart's rules: {not_granted:#?}");

            let mut used: BTreeMap<Permission, usize> = BTreeMap::new();
            for r in requests.iter().filter(|r| r.status.is_none()) {
                *used.entry(r.permission.clone()).or_default() += 1;
            }
            let mut unused = Vec::new();
            println!("chart rule -> requests the operator made with it ({}):", if watch_one_namespace { "one namespace" } else { "all namespaces" });
            for grant in &grants {
                let count = used.get(&grant.permission).copied().unwrap_or(0);
                let admission_only = ADMISSION_ONLY.contains(&(
                    grant.permission.group.as_str(),
                    grant.permission.resource.as_str(),
                    grant.permission.verb.as_str(),
                ));
                let when_stale = WHEN_STALE_ONLY.contains(&(
                    grant.permission.group.as_str(),
                    grant.permission.resource.as_str(),
                    grant.permission.verb.as_str(),
                ));
                let note = if admission_only { " (admission only)" } else if when_stale { " (after a stale cache only)" } else { "" };
                println!("  {:<55} {count}{note}", grant.permission.to_string());
                if count == 0 && !admission_only && !when_stale {
                    unused.push(grant.permission.to_string());
                }
            }
            assert!(unused.is_empty(), "granted but never used, so not needed: {unused:?}");

            if !watch_one_namespace {
                // The ClusterRole holds in every namespace, as the operator needs without --namespace.
                let user = format!("system:serviceaccount:{rel_ns}:{sa}");
                for (group, resource, verb) in [
                    ("sluice.dev", "pipelines", "watch"),
                    ("batch", "jobs", "create"),
                    ("events.k8s.io", "events", "create"),
                    ("", "resourcequotas", "list"),
                ] {
                    assert!(allowed_everywhere(&client, &user, group, resource, verb).await, "{verb} {resource} everywhere");
                }
                assert!(!allowed_everywhere(&client, &user, "", "secrets", "get").await, "no access to Secrets");
            }
            helm_ok(&["uninstall", &release, "-n", rel_ns]).await;
        })
        .await;
    })
    .await;
}

/// The operator metrics the chart's alerts use.
fn alert_metrics() -> BTreeSet<String> {
    let docs = super::tools::render(
        "s",
        "n",
        &["metrics.prometheusRule.enabled=true", "--api-versions=monitoring.coreos.com/v1/PrometheusRule"],
    );
    let rule = super::tools::of_kind(&docs, "PrometheusRule")[0];
    let mut names = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            names.extend(
                super::chart::metric_names(r["expr"].as_str().unwrap()).into_iter().filter(|n| !n.contains(':')),
            );
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_is_enough_and_each_rule_is_used() {
    operator_with_the_charts_rights(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespaced_roles_are_enough_and_each_rule_is_used() {
    operator_with_the_charts_rights(true).await;
}
