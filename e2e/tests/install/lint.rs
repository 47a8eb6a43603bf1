//! The install manifests linted by the tools platform teams run: kube-score and checkov, over
//! manifests/install.yaml and the chart rendered with its defaults and with every optional
//! feature on. A finding fails the test unless charts/sluice/lint-accepted.yaml accepts it (with
//! its reason, also listed in the chart README); an accepted finding that no longer occurs fails
//! too, so the list never outlives its reasons.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_e2e::cluster::{artifacts_dir, repo_root};

use super::checkers::{checkov, kube_score};
use super::tools::render_text;

/// The chart with every optional feature on: monitoring (with its APIs present), lineage with an
/// API key Secret, one watched namespace (Roles instead of the ClusterRole).
const ALL_FEATURES: &[&str] = &[
    "watchNamespace=team-a",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "--api-versions=monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions=monitoring.coreos.com/v1/PrometheusRule",
    "lineage.url=http://marquez.lineage:5000/api/v1/lineage",
    "lineage.apiKeySecret.name=lineage-api-key",
];

/// One finding: tool, check id, and the object it is about (`Kind/name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    tool: &'static str,
    check: String,
    object: String,
    detail: String,
}

/// The inputs: (label, file) for install.yaml and the chart's renders.
fn inputs() -> Vec<(&'static str, PathBuf)> {
    let dir = artifacts_dir();
    let mut files = vec![("install.yaml", repo_root().join("manifests/install.yaml"))];
    for (label, sets) in [("chart defaults", &[][..]), ("chart all features", ALL_FEATURES)] {
        let path = dir.join(format!("lint-{}.yaml", label.replace(' ', "-")));
        // The file names differ from install.yaml's: checkov's findings are told apart by them.
        std::fs::write(&path, render_text("sluice", "sluice-system", sets)).expect("write render");
        files.push((label, path));
    }
    files
}

/// The accepted findings: (tool, check id) pairs from charts/sluice/lint-accepted.yaml, each
/// with a non-empty reason.
fn accepted() -> BTreeSet<(String, String)> {
    let path = repo_root().join("charts/sluice/lint-accepted.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).expect("lint-accepted.yaml"))
        .expect("lint-accepted.yaml is YAML");
    let mut all = BTreeSet::new();
    for tool in ["kube-score", "checkov"] {
        for entry in doc[tool].as_array().map(Vec::as_slice).unwrap_or_default() {
            let check = entry["check"].as_str().expect("check").to_string();
            let reason = entry["reason"].as_str().unwrap_or_default();
            assert!(reason.len() > 20, "{tool} {check}: the reason must say why it is accepted");
            all.insert((tool.to_string(), check));
        }
    }
    all
}

fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(artifacts_dir())
        .env("HOME", artifacts_dir())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kube-score's findings on `file`: every check not skipped whose grade is below "all OK" (10).
fn kube_score_findings(file: &Path) -> Vec<Finding> {
    let (_, stdout, stderr) = run(&kube_score(), &["score", "--output-format", "json", file.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("kube-score JSON: {e}\n{stderr}"));
    let mut findings = Vec::new();
    for object in report.as_array().expect("kube-score: an array of objects") {
        let name = format!(
            "{}/{}",
            object["type_meta"]["kind"].as_str().unwrap_or("?"),
            object["object_meta"]["name"].as_str().unwrap_or("?")
        );
        for check in object["checks"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if check["skipped"].as_bool() == Some(true) || check["grade"].as_i64() == Some(10) {
                continue;
            }
            let detail = check["comments"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| format!("{} {}", c["path"].as_str().unwrap_or(""), c["summary"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            findings.push(Finding {
                tool: "kube-score",
                check: check["check"]["id"].as_str().unwrap_or("?").into(),
                object: name.clone(),
                detail,
            });
        }
    }
    findings
}

/// checkov's failed checks on `files` (the kubernetes framework, offline), in one run (it takes
/// tens of seconds to start): (label of the file, finding).
fn checkov_findings(files: &[(&'static str, PathBuf)]) -> Vec<(&'static str, Finding)> {
    let mut args = vec!["--framework", "kubernetes", "--output", "json", "--skip-download", "--quiet", "--compact"];
    for (_, file) in files {
        args.extend(["-f", file.to_str().expect("utf-8 path")]);
    }
    let (_, stdout, stderr) = run(&checkov(), &args);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("checkov JSON: {e}\n{stdout}\n{stderr}"));
    let passed = report["summary"]["passed"].as_i64().unwrap_or(0);
    assert!(passed > 100, "checkov passed only {passed} checks: {stdout}\n{stderr}");
    let failed = report["results"]["failed_checks"].as_array().cloned().unwrap_or_default();
    failed
        .iter()
        .map(|f| {
            let path = f["file_path"].as_str().unwrap_or_default();
            let label = files
                .iter()
                .find(|(_, file)| path.ends_with(&*file.file_name().expect("file name").to_string_lossy()))
                .map_or("?", |(label, _)| *label);
            let finding = Finding {
                tool: "checkov",
                check: f["check_id"].as_str().unwrap_or("?").into(),
                object: f["resource"].as_str().unwrap_or("?").into(),
                detail: f["check_name"].as_str().unwrap_or("").into(),
            };
            (label, finding)
        })
        .collect()
}

#[test]
fn kube_score_and_checkov_find_nothing_that_is_not_accepted() {
    let accepted = accepted();
    let mut unexpected = Vec::new();
    let mut occurred = BTreeSet::new();
    let files = inputs();
    let mut findings = checkov_findings(&files);
    for (label, file) in &files {
        findings.extend(kube_score_findings(file).into_iter().map(|f| (*label, f)));
    }
    for (label, finding) in findings {
        let key = (finding.tool.to_string(), finding.check.clone());
        if accepted.contains(&key) {
            occurred.insert(key);
        } else {
            unexpected
                .push(format!("{label}: {} {} on {}: {}", finding.tool, finding.check, finding.object, finding.detail));
        }
    }
    assert!(unexpected.is_empty(), "findings not in charts/sluice/lint-accepted.yaml:\n{}", unexpected.join("\n"));
    let stale: Vec<_> = accepted.difference(&occurred).collect();
    assert!(stale.is_empty(), "accepted in charts/sluice/lint-accepted.yaml but no longer found: {stale:?}");
}

/// The chart README lists every accepted finding, so users see what was accepted and why.
#[test]
fn the_chart_readme_lists_every_accepted_finding() {
    let readme = std::fs::read_to_string(repo_root().join("charts/sluice/README.md")).expect("README");
    for (tool, check) in accepted() {
        assert!(readme.contains(&format!("`{check}`")), "charts/sluice/README.md does not list {tool} {check}");
    }
}

/// The checks behind the chart's fixes still fire when the fixes are undone, so the clean result
/// above comes from the chart, not from a checker that checks nothing.
#[test]
fn kube_score_flags_the_chart_without_its_fixes() {
    let path = artifacts_dir().join("lint-chart-unfixed.yaml");
    let unfixed = [
        "networkPolicy.enabled=false",
        "image.pullPolicy=IfNotPresent",
        "resources.limits=null",
        "resources.requests=null",
    ];
    std::fs::write(&path, render_text("sluice", "sluice-system", &unfixed)).expect("write render");
    let checks: BTreeSet<String> = kube_score_findings(&path).into_iter().map(|f| f.check).collect();
    for check in [
        "pod-networkpolicy",
        "container-image-pull-policy",
        "container-ephemeral-storage-request-and-limit",
        "container-resources",
    ] {
        assert!(checks.contains(check), "kube-score did not flag {check}: {checks:?}");
    }
}
