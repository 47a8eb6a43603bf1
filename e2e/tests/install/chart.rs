//! The chart without a cluster: lint, the values schema, generated files that must not drift
//! (CRD templates, install.yaml, argocd-cm.yaml), and what the rendered objects must hold.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sluice_e2e::cluster::repo_root;

use super::tools::{chart_dir, helm_local, of_kind, render, render_text};

/// Value sets the chart is rendered with in these tests: the defaults, one watched namespace,
/// one replica without leader election, and monitoring on.
const MONITORING: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "--api-versions=monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions=monitoring.coreos.com/v1/PrometheusRule",
];

fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("defaults", vec![]),
        ("one namespace", vec!["watchNamespace=team-a"]),
        ("single replica", vec!["replicaCount=1", "leaderElection.enabled=false"]),
        ("monitoring", MONITORING.to_vec()),
    ]
}

fn run_script(script: &str) {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join(script))
        .arg("--check")
        .env("HELM", super::tools::helm_bin())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script} --check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chart_lints_strictly() {
    let chart = chart_dir();
    for (what, sets) in variants() {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        for set in &sets {
            if set.starts_with("--") {
                continue; // lint has no --api-versions
            }
            args.extend(["--set", set]);
        }
        let out = helm_local(&args);
        assert!(out.ok, "helm lint --strict ({what}):\n{}{}", out.stdout, out.stderr);
    }
}

#[test]
fn values_schema_and_template_checks_reject_mistakes() {
    let chart = chart_dir();
    for (set, why) in [
        ("replicaCount=0", "replicaCount"),
        ("unknownKey=1", "unknownKey"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("watchNamespace=Team_A", "watchNamespace"),
        ("leaderElection.renewGraceSeconds=20", "renewGraceSeconds"),
        ("metrics.prometheusRule.runSuccessObjective=1.5", "runSuccessObjective"),
    ] {
        let out = helm_local(&["template", "x", chart.to_str().unwrap(), "--set", set]);
        assert!(!out.ok, "--set {set} should be rejected");
        assert!(out.stderr.contains(why), "--set {set}: the error should name {why}: {}", out.stderr);
    }
}

#[test]
fn crd_templates_are_generated_from_the_crds_folder() {
    run_script("charts/sluice/hack/sync-crds.sh");
}

#[test]
fn install_yaml_is_the_chart_rendered_with_defaults() {
    run_script("charts/sluice/hack/render-install.sh");
}

#[test]
fn argocd_cm_holds_the_health_checks() {
    run_script("manifests/argocd/render-cm.sh");
    let cm: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("manifests/argocd/argocd-cm.yaml")).unwrap())
            .unwrap();
    for kind in super::argocd::KINDS {
        let script = std::fs::read_to_string(
            repo_root().join(format!("manifests/argocd/resource_customizations/sluice.dev/{kind}/health.lua")),
        )
        .unwrap();
        assert_eq!(cm["data"][format!("resource.customizations.health.sluice.dev_{kind}")], Value::String(script));
    }
}

/// The rendered CRDs are the top-level crds/ (the API server sees the same spec), plus the
/// chart's labels and the keep policy.
#[test]
fn rendered_crds_are_the_crds_folder_with_keep_policy() {
    let mut expected = BTreeMap::new();
    for entry in std::fs::read_dir(repo_root().join("crds")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in sluice_e2e::yaml::documents(&text) {
            expected.insert(doc["metadata"]["name"].as_str().unwrap().to_string(), doc);
        }
    }
    let docs = render("sluice", "sluice-system", &[]);
    let rendered: BTreeMap<String, &Value> = of_kind(&docs, "CustomResourceDefinition")
        .into_iter()
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_string(), d))
        .collect();
    assert_eq!(rendered.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, crd) in &rendered {
        let want = &expected[name];
        assert_eq!(crd["spec"], want["spec"], "{name}: spec differs from crds/");
        assert_eq!((&crd["apiVersion"], &crd["kind"]), (&want["apiVersion"], &want["kind"]));
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{name}");
        assert_eq!(crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"], "-1", "{name}");
        assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/part-of"], "sluice", "{name}");
    }
    let without = render("sluice", "sluice-system", &["crds.install=false"]);
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty(), "crds.install=false renders no CRD");
}

/// GitOps tools diff what they render against the cluster: the same values must always give the
/// same objects, so no random or time functions in templates.
#[test]
fn rendering_is_deterministic() {
    for (what, sets) in variants() {
        assert_eq!(render_text("r", "ns", &sets), render_text("r", "ns", &sets), "{what}");
    }
    let forbidden = [
        "randAlpha",
        "randNumeric",
        "randAscii",
        "randBytes",
        "uuidv4",
        "now",
        "date",
        "genCA",
        "genPrivateKey",
        "lookup",
    ];
    for entry in walk(&chart_dir().join("templates")) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for action in text.split("{{").skip(1).filter_map(|a| a.split("}}").next()) {
            for word in action.split(|c: char| !c.is_alphanumeric()) {
                assert!(!forbidden.contains(&word), "{}: `{word}` in {{{{{action}}}}}", entry.display());
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// Pod Security "restricted", resources, probes: checked here on the rendered Deployment and by
/// the cluster tests, which install into namespaces that enforce "restricted".
#[test]
fn deployment_is_restricted_with_resources_and_probes() {
    let docs = render("sluice", "sluice-system", &[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    for key in ["cpu", "memory"] {
        assert!(container["resources"]["requests"][key].is_string(), "requests.{key}");
        assert!(container["resources"]["limits"][key].is_string(), "limits.{key}");
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert!(args.contains(&"--leader-election-namespace=sluice-system"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--namespace")), "all namespaces by default: {args:?}");
    assert_eq!(deployment["spec"]["replicas"], 2);

    let one = render("sluice", "sluice-system", &["watchNamespace=team-a"]);
    let args = &of_kind(&one, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().contains(&Value::from("--namespace=team-a")), "{args}");
}

#[test]
fn every_object_carries_the_app_kubernetes_io_labels() {
    for (what, sets) in variants() {
        for doc in render("sluice", "sluice-system", &sets) {
            let labels = &doc["metadata"]["labels"];
            for key in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/part-of",
                "app.kubernetes.io/component",
                "helm.sh/chart",
            ] {
                assert!(labels[key].is_string(), "{what}: {} {} lacks {key}", doc["kind"], doc["metadata"]["name"]);
            }
        }
    }
}

#[test]
fn pod_disruption_budget_only_with_several_replicas() {
    assert_eq!(of_kind(&render("s", "n", &[]), "PodDisruptionBudget").len(), 1);
    assert!(of_kind(&render("s", "n", &["replicaCount=1"]), "PodDisruptionBudget").is_empty());
}

/// No wildcard, no Secrets, and in one-namespace mode nothing cluster-wide but reading the CRDs.
#[test]
fn rbac_has_no_wildcards_and_no_secrets() {
    for (what, sets) in variants() {
        let docs = render("sluice", "sluice-system", &sets);
        for role in of_kind(&docs, "ClusterRole").into_iter().chain(of_kind(&docs, "Role")) {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for item in rule[field].as_array().into_iter().flatten() {
                        let item = item.as_str().unwrap();
                        assert!(!item.contains('*'), "{what}: wildcard in {}: {rule}", role["metadata"]["name"]);
                        assert_ne!(item, "secrets", "{what}: {rule}");
                    }
                }
            }
        }
    }
    let docs = render("sluice", "sluice-system", &["watchNamespace=team-a"]);
    let cluster_roles: Vec<&Value> = of_kind(&docs, "ClusterRole")
        .into_iter()
        .filter(|r| r["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .collect();
    assert_eq!(cluster_roles.len(), 1);
    let rules = cluster_roles[0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "only the CRD check is cluster-wide: {rules:?}");
    assert_eq!(rules[0]["resources"], serde_json::json!(["customresourcedefinitions"]));
    let namespaces: BTreeSet<&str> =
        of_kind(&docs, "Role").iter().map(|r| r["metadata"]["namespace"].as_str().unwrap()).collect();
    assert_eq!(namespaces, BTreeSet::from(["team-a", "sluice-system"]), "watched namespace and Lease namespace");
}

#[test]
fn monitoring_objects_only_when_asked_and_their_api_exists() {
    let kinds = |docs: &[Value]| docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect::<BTreeSet<_>>();
    let enabled_without_api = render("s", "n", &MONITORING[..2]);
    assert!(!kinds(&enabled_without_api).contains("ServiceMonitor"));
    assert!(!kinds(&enabled_without_api).contains("PrometheusRule"));
    let api_without_enabled = render("s", "n", &MONITORING[2..]);
    assert!(!kinds(&api_without_enabled).contains("ServiceMonitor"));
    let on = render("s", "n", MONITORING);
    assert!(kinds(&on).contains("ServiceMonitor") && kinds(&on).contains("PrometheusRule"));
    let monitor = of_kind(&on, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    let service = of_kind(&on, "Service")[0];
    assert_eq!(service["spec"]["ports"][0]["name"], "http-metrics");
}

/// The alerts: a stale dataset, failing runs and a multi-window burn rate on run success. Every
/// expression is valid PromQL, and every metric it names is one the operator defines.
#[test]
fn prometheus_rules_are_valid_promql_on_the_operators_metrics() {
    let docs = render("s", "n", MONITORING);
    let rule = of_kind(&docs, "PrometheusRule")[0];
    let mut alerts = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    let mut metrics = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            if let Err(e) = promql_parser::parser::parse(expr) {
                panic!("{}: invalid PromQL: {e}\n{expr}", r["alert"]);
            }
            metrics.extend(metric_names(expr));
            if let Some(name) = r["alert"].as_str() {
                alerts.insert(name.to_string());
                assert!(r["labels"]["severity"].is_string(), "{name} has a severity");
                assert!(r["annotations"]["summary"].is_string(), "{name} has a summary");
            }
            if let Some(name) = r["record"].as_str() {
                recorded.insert(name.to_string());
            }
        }
    }
    for want in
        ["SluiceDatasetStale", "SluicePipelineRunsFailing", "SluicePipelineErrorBudgetBurn", "SluiceBackfillStuck"]
    {
        assert!(alerts.contains(want), "missing alert {want}: {alerts:?}");
    }
    let burn = rule["spec"]["groups"][1]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "SluicePipelineErrorBudgetBurn")
        .unwrap();
    let expr = burn["expr"].as_str().unwrap();
    for window in ["rate1h", "rate5m", "rate6h", "rate30m"] {
        assert!(expr.contains(window), "multi-window burn rate uses {window}: {expr}");
    }
    let source = operator_source();
    for metric in metrics.difference(&recorded) {
        assert!(
            source.contains(&format!("\"{metric}\"")),
            "the rules use {metric}, which the operator does not define"
        );
    }
}

/// `sluice_*` metric names in a PromQL expression (recording-rule names contain a colon).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sluice") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The operator's Rust sources, concatenated.
fn operator_source() -> String {
    walk(&repo_root().join("operator/src"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn notes_say_how_to_check_the_operator() {
    let chart = chart_dir();
    // Helm asks the cluster even with --dry-run=client, and would refuse the CRDs the e2e harness
    // installed, hence crds.install=false.
    let out = super::tools::helm(&[
        "install",
        "sluice",
        chart.to_str().unwrap(),
        "-n",
        "sluice-system",
        "--dry-run=client",
        "--set",
        "crds.install=false",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let notes = out.stdout.split("NOTES:").nth(1).expect("NOTES");
    assert!(notes.contains("rollout status deployment/sluice"), "{notes}");
    assert!(notes.contains("get lease sluice"), "{notes}");
    assert!(notes.contains("crds.install is false: apply the CRDs yourself"), "{notes}");
}

#[test]
fn lineage_is_off_by_default_and_its_api_key_comes_from_a_secret_reference() {
    let container = |set: &[&str]| {
        let docs = render("sluice", "sluice-system", set);
        of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0].clone()
    };
    let args = |c: &serde_json::Value| -> Vec<String> {
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let off = container(&[]);
    assert!(!args(&off).iter().any(|a| a.starts_with("--lineage")), "{:?}", args(&off));
    let on = container(&["lineage.url=http://marquez:5000/api/v1/lineage", "lineage.apiKeySecret.name=openlineage"]);
    let args = args(&on);
    for arg in [
        "--lineage-url=http://marquez:5000/api/v1/lineage",
        "--lineage-timeout-seconds=5",
        "--lineage-namespace-prefix=sluice/",
        "--lineage-max-attempts=6",
    ] {
        assert!(args.iter().any(|a| a == arg), "missing {arg}: {args:?}");
    }
    let env = on["env"].as_array().unwrap();
    let key = env.iter().find(|e| e["name"] == "SLUICE_LINEAGE_API_KEY").expect("the API key variable");
    assert_eq!(key["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "openlineage", "key": "apiKey"}));
}
