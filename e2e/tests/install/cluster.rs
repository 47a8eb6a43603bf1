//! The install paths on the local cluster: `helm template` through a server-side dry run, the
//! Helm release lifecycle (install, upgrade, test, uninstall), CRD schema upgrades through Helm,
//! and `kubectl apply` of manifests/install.yaml.
//!
//! The shared cluster already has the Sluice CRDs (applied by the e2e harness, not by Helm), and
//! Helm refuses to adopt objects it did not create. So releases of the real chart use
//! `crds.install=false`, and the CRD lifecycle through Helm (install, schema upgrade, keep on
//! uninstall) is tested on a copy of the chart whose CRDs are renamed into a group of their own:
//! the same schemas, without touching the CRDs other tests use.
//!
//! Nothing runs on kwok's fake nodes: the chart's pods are scheduled, admitted (the namespaces
//! enforce Pod Security "restricted") and marked Running and Ready, but no container starts. So
//! `helm test` passes without running its check; what it would check, the operator running with
//! the chart's rights, is tested in rbac.rs.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::cluster::{artifacts_dir, repo_root};
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::yaml;

use super::tools::{chart_dir, helm_ok, kubectl, poll_until, render_text, unique};

/// Labels a test namespace so that Pod Security admission enforces "restricted" in it.
pub async fn enforce_restricted(client: &kube::Client, namespace: &str) {
    let patch = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"
    }}});
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label namespace");
}

/// Waits until the Deployment has `replicas` available replicas.
async fn wait_available(client: &kube::Client, namespace: &str, name: &str, replicas: i32) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    poll_until(&api, name, Duration::from_secs(90), "available", |d: &Deployment| {
        d.status.as_ref().and_then(|s| s.available_replicas) == Some(replicas)
            && d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
    })
    .await
}

fn minimal_pipeline(api_version: &str, name: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "extract", "kind": "Extract",
            "template": {"spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}
    })
}

#[tokio::test]
async fn helm_template_passes_a_server_side_dry_run() {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    with_namespace(&client, "dryrun", |ns| async move {
        for sets in [vec![], vec![format!("watchNamespace={}", ns.name)]] {
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            let manifest = render_text(&unique("sluice-dry"), &ns.name, &sets);
            let out = tokio::task::spawn_blocking(move || {
                kubectl(
                    &[
                        "apply",
                        "--server-side",
                        "--force-conflicts",
                        "--dry-run=server",
                        "--validate=strict",
                        "-f",
                        "-",
                    ],
                    Some(&manifest),
                )
            })
            .await
            .unwrap();
            assert!(out.ok, "server-side dry run ({sets:?}) rejected:\n{}\n{}", out.stdout, out.stderr);
            for kind in ["customresourcedefinition", "deployment", "serviceaccount", "service", "role", "rolebinding"] {
                assert!(out.stdout.contains(kind), "{kind} in the dry run:\n{}", out.stdout);
            }
        }
    })
    .await;
}

/// What a release leaves in the cluster: objects labelled with its instance.
fn release_objects(release: &str, namespace: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut names = Vec::new();
    for (kinds, scope) in [
        (
            "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,\
             networkpolicies",
            namespace,
        ),
        (
            "clusterroles,clusterrolebindings,customresourcedefinitions,validatingadmissionpolicies,\
             validatingadmissionpolicybindings",
            "",
        ),
    ] {
        let mut args = vec!["get", kinds, "-l", &selector, "-o", "name"];
        if !scope.is_empty() {
            args.extend(["-n", scope]);
        }
        let out = kubectl(&args, None);
        assert!(out.ok, "{}", out.stderr);
        names.extend(out.stdout.lines().map(String::from));
    }
    names
}

#[tokio::test]
async fn helm_install_upgrade_test_and_uninstall() {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "helm", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.clone();
        enforce_restricted(&client, &n).await;
        let release = unique("sluice-helm");
        let chart = chart_dir();
        let chart = chart.to_str().unwrap();

        helm_ok(&["install", &release, chart, "-n", &n, "--set", "crds.install=false", "--wait", "--timeout", "120s"])
            .await;
        // Two replicas admitted under "restricted", with a PodDisruptionBudget.
        wait_available(&client, &n, &release, 2).await;
        let objects = release_objects(&release, &n);
        for want in [
            format!("deployment.apps/{release}"),
            format!("service/{release}"),
            format!("serviceaccount/{release}"),
            format!("role.rbac.authorization.k8s.io/{release}-leader-election"),
            format!("poddisruptionbudget.policy/{release}"),
            format!("clusterrole.rbac.authorization.k8s.io/{release}"),
            format!("clusterrolebinding.rbac.authorization.k8s.io/{release}"),
            format!("clusterrole.rbac.authorization.k8s.io/{release}-edit"),
            format!("clusterrole.rbac.authorization.k8s.io/{release}-view"),
            format!("validatingadmissionpolicy.admissionregistration.k8s.io/{release}-step-service-accounts"),
            format!("validatingadmissionpolicybinding.admissionregistration.k8s.io/{release}-step-service-accounts"),
        ] {
            assert!(objects.contains(&want), "{want} missing after install: {objects:?}");
        }
        // A user's Pipeline, which must outlive the release.
        yaml::apply(&client, &n, &minimal_pipeline("sluice.dev/v1alpha1", "users-pipeline")).await.expect("pipeline");

        // Upgrade with changed values: text logs, three replicas.
        helm_ok(&[
            "upgrade",
            &release,
            chart,
            "-n",
            &n,
            "--reuse-values",
            "--set",
            "operator.logFormat=text",
            "--set",
            "replicaCount=3",
            "--wait",
            "--timeout",
            "120s",
        ])
        .await;
        let deployment = wait_available(&client, &n, &release, 3).await;
        let pod = deployment.spec.template.spec.expect("pod spec");
        let args = pod.containers[0].args.clone().unwrap_or_default();
        assert!(args.contains(&"--log-format=text".to_string()), "upgraded args: {args:?}");

        // helm test: the hook pod is admitted and, on kwok, marked Succeeded without running.
        let out = helm_ok(&["test", &release, "-n", &n, "--timeout", "60s"]).await;
        assert!(out.contains("Phase:          Succeeded") || out.contains("Succeeded"), "{out}");

        helm_ok(&["uninstall", &release, "-n", &n, "--wait", "--timeout", "60s"]).await;
        let left = sluice_e2e::wait::settle(
            Duration::from_secs(30),
            Duration::from_millis(500),
            || std::future::ready(release_objects(&release, &n)),
            |left| left.is_empty(),
        )
        .await;
        assert!(left.is_empty(), "helm uninstall left operator objects behind: {left:?}");
        let pipelines = kubectl(&["get", "pipelines.sluice.dev", "-n", &n, "-o", "name"], None);
        assert_eq!(pipelines.stdout.trim(), "pipeline.sluice.dev/users-pipeline", "{}", pipelines.stderr);
    })
    .await;
}

/// Writes the CRDs of crds/ renamed into `group` (and, when `extra_field`, with one more
/// optional Pipeline spec field) into `dir`, shaped as `sluice-operator crd` writes them.
fn write_renamed_crds(dir: &Path, group: &str, extra_field: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(repo_root().join("crds")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut crd: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap().to_string();
        crd["metadata"]["name"] = format!("{plural}.{group}").into();
        crd["spec"]["group"] = group.into();
        if extra_field && plural == "pipelines" {
            let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
            spec.as_mapping_mut().unwrap().insert(
                "e2eNote".into(),
                serde_yaml::from_str("{type: string, description: Added by the CRD upgrade test.}").unwrap(),
            );
        }
        std::fs::write(dir.join(format!("{plural}.{group}.yaml")), serde_yaml::to_string(&crd).unwrap()).unwrap();
    }
}

/// Regenerates the copied chart's CRD templates from `crds` with the chart's own script.
fn sync_crds(chart: &Path, crds: &Path) {
    let out = std::process::Command::new("bash")
        .arg(chart.join("hack/sync-crds.sh"))
        .env("SLUICE_CRDS_DIR", crds)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn helm_upgrade_applies_crd_schema_changes_and_uninstall_keeps_crds_and_objects() {
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    with_namespace(&client, "helmcrd", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.clone();
        let release = unique("sluice-crd");
        let group = format!("{}.e2e.sluice.dev", unique("g"));
        let work = artifacts_dir().join(&release);
        let chart = work.join("chart");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let copied = std::process::Command::new("cp").arg("-r").arg(chart_dir()).arg(&chart).status().unwrap();
        assert!(copied.success());
        let crd_names: Vec<String> =
            ["pipelines", "datasets", "backfills"].iter().map(|p| format!("{p}.{group}")).collect();

        let result = std::panic::AssertUnwindSafe(async {
            write_renamed_crds(&work.join("crds-v1"), &group, false);
            sync_crds(&chart, &work.join("crds-v1"));
            let chart_path = chart.to_str().unwrap();
            let install =
                ["install", &release, chart_path, "-n", &n, "--set", "replicaCount=1", "--wait", "--timeout", "120s"];
            helm_ok(&install).await;
            for name in &crd_names {
                let out = kubectl(&["get", "crd", name, "-o", "json"], None);
                assert!(out.ok, "{name} not installed by helm: {}", out.stderr);
                let crd: Value = serde_json::from_str(&out.stdout).unwrap();
                assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
                assert_eq!(crd["metadata"]["annotations"]["meta.helm.sh/release-name"], release.as_str());
            }
            let api_version = format!("{group}/v1alpha1");
            // The CRDs are Established shortly after creation.
            let applied = sluice_e2e::wait::settle(
                Duration::from_secs(10),
                Duration::from_millis(200),
                || async {
                    yaml::apply(&client, &n, &minimal_pipeline(&api_version, "kept")).await.map_err(|e| e.to_string())
                },
                Result::is_ok,
            )
            .await;
            applied.expect("a Pipeline of the renamed group");

            // helm upgrade with a changed schema applies it.
            write_renamed_crds(&work.join("crds-v2"), &group, true);
            sync_crds(&chart, &work.join("crds-v2"));
            helm_ok(&["upgrade", &release, chart_path, "-n", &n, "--reuse-values", "--wait", "--timeout", "120s"])
                .await;
            let out = kubectl(&["get", "crd", &crd_names[0], "-o", "json"], None);
            let crd: Value = serde_json::from_str(&out.stdout).unwrap();
            let field =
                &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["e2eNote"];
            assert_eq!(field["type"], "string", "helm upgrade did not apply the new CRD schema");
            let with_field = {
                let mut p = minimal_pipeline(&api_version, "kept");
                p["spec"]["e2eNote"] = json!("accepted by the upgraded schema");
                p
            };
            yaml::apply(&client, &n, &with_field).await.expect("the new field is accepted");

            // helm uninstall keeps the CRDs and the objects in them.
            helm_ok(&["uninstall", &release, "-n", &n, "--wait", "--timeout", "60s"]).await;
            for name in &crd_names {
                assert!(kubectl(&["get", "crd", name], None).ok, "helm uninstall deleted CRD {name}");
            }
            let kept = kubectl(
                &["get", &format!("pipelines.{group}"), "kept", "-n", &n, "-o", "jsonpath={.spec.e2eNote}"],
                None,
            );
            assert!(kept.ok, "the Pipeline did not survive helm uninstall: {}", kept.stderr);
            assert_eq!(kept.stdout, "accepted by the upgraded schema");
        })
        .catch_unwind()
        .await;
        // The renamed CRDs belong to this test only.
        let mut args = vec!["delete", "crd", "--ignore-not-found", "--wait=false"];
        args.extend(crd_names.iter().map(String::as_str));
        kubectl(&args, None);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

use futures::FutureExt;

#[tokio::test]
async fn kubectl_apply_installs_the_bundle() {
    const NAMESPACE: &str = "sluice-system";
    let client = sluice_e2e::cluster::client(&sluice_e2e::cluster::kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    let bundle_path = repo_root().join("manifests/install.yaml");
    let bundle = std::fs::read_to_string(&bundle_path).unwrap();
    // Never apply CRDs that differ from crds/: other tests use the same cluster.
    for doc in sluice_e2e::yaml::documents(&bundle).iter().filter(|d| d["kind"] == "CustomResourceDefinition") {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let want = sluice_e2e::yaml::documents(
            &std::fs::read_to_string(repo_root().join(format!("crds/{name}.yaml"))).unwrap(),
        );
        assert_eq!(doc["spec"], want[0]["spec"], "install.yaml's {name} differs from crds/; run make chart");
    }
    // A namespace left terminating by an earlier run cannot take new objects yet.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    sluice_e2e::wait::settle(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            namespaces.get_opt(NAMESPACE).await.unwrap().is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
        },
        |terminating| !terminating,
    )
    .await;

    let result = std::panic::AssertUnwindSafe(async {
        let path = bundle_path.clone();
        let out = tokio::task::spawn_blocking(move || {
            kubectl(&["apply", "--server-side", "--force-conflicts", "-f", path.to_str().unwrap()], None)
        })
        .await
        .unwrap();
        assert!(out.ok, "kubectl apply -f manifests/install.yaml:\n{}\n{}", out.stdout, out.stderr);
        let ns = namespaces.get(NAMESPACE).await.unwrap();
        assert_eq!(ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");
        wait_available(&client, NAMESPACE, "sluice", 2).await;
        for object in
            ["serviceaccount/sluice", "service/sluice", "poddisruptionbudget/sluice", "role/sluice-leader-election"]
        {
            assert!(kubectl(&["get", object, "-n", NAMESPACE], None).ok, "{object} missing");
        }
        for object in ["clusterrole/sluice", "clusterrolebinding/sluice"] {
            assert!(kubectl(&["get", object], None).ok, "{object} missing");
        }
    })
    .catch_unwind()
    .await;
    // Remove what the bundle created, except the CRDs (shared with the other tests).
    kubectl(&["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false"], None);
    kubectl(&["delete", "clusterrole,clusterrolebinding", "sluice", "--ignore-not-found"], None);
    kubectl(&["delete", "clusterrole", "sluice-edit", "sluice-view", "--ignore-not-found"], None);
    kubectl(
        &[
            "delete",
            "validatingadmissionpolicy,validatingadmissionpolicybinding",
            "sluice-step-service-accounts",
            "--ignore-not-found",
        ],
        None,
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
