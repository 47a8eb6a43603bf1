//! The Grafana dashboards in charts/sluice/dashboards: Grafana's own schema accepts them (the
//! Grafana Foundation SDK's strict unmarshal), every query parses as PromQL and selects only
//! metric families the operator defines (`sluice-operator metrics`), both checked by the Go
//! helper e2e/tools/dashcheck; and the chart ships each one as a ConfigMap for the Grafana
//! sidecar only when asked to.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};
use sluice_e2e::cluster::{artifacts_dir, repo_root};

use super::tools::{chart_dir, helm_local, of_kind, render};

/// The dashboards the chart ships.
const DASHBOARDS: [&str; 3] = ["executive.json", "oncall.json", "pipeline.json"];

fn dashboard_path(file: &str) -> PathBuf {
    chart_dir().join("dashboards").join(file)
}

/// The helper, built (or found in the cache) by e2e/tools/build-helper.sh.
fn dashcheck() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let start = std::time::Instant::now();
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("e2e/tools/build-helper.sh"))
            .arg("dashcheck")
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "building dashcheck failed:\n{stderr}");
        eprintln!("{stderr}dashcheck ready in {:?}", start.elapsed());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// What the operator binary says it defines, written once to a file for the helper.
fn families() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let out = std::process::Command::new(sluice_e2e::operator::binary()).arg("metrics").output().expect("runs");
        assert!(out.status.success(), "sluice-operator metrics: {}", String::from_utf8_lossy(&out.stderr));
        let path = artifacts_dir().join("metric-families.tsv");
        std::fs::write(&path, &out.stdout).expect("write families");
        path
    })
}

/// Runs the helper on `files`: success and what it printed.
fn check(files: &[PathBuf]) -> (bool, String) {
    let out = std::process::Command::new(dashcheck())
        .arg("-metrics")
        .arg(families())
        .args(files)
        .output()
        .expect("dashcheck runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn dashboards_pass_grafanas_schema_and_select_only_metrics_the_operator_defines() {
    let found: Vec<String> = std::fs::read_dir(chart_dir().join("dashboards"))
        .expect("dashboards folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for file in DASHBOARDS {
        assert!(found.iter().any(|f| f == file), "{file} missing from charts/sluice/dashboards: {found:?}");
    }
    let files: Vec<PathBuf> = found.iter().filter(|f| f.ends_with(".json")).map(|f| dashboard_path(f)).collect();
    let (ok, text) = check(&files);
    assert!(ok, "dashcheck failed:\n{text}");
    eprintln!("{text}");
    for file in DASHBOARDS {
        let line = text.lines().find(|l| l.contains(file)).unwrap_or_default();
        assert!(line.contains(": ok: ") && !line.contains(" 0 queries"), "{file}: {line}");
    }
}

/// Writes `board` changed by `change` to the artifacts folder.
fn mutated(name: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let text = std::fs::read_to_string(dashboard_path("pipeline.json")).expect("pipeline.json");
    let mut board: Value = serde_json::from_str(&text).expect("JSON");
    change(&mut board);
    let path = artifacts_dir().join(format!("dashboard-{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&board).expect("JSON")).expect("write");
    path
}

#[test]
fn dashcheck_rejects_what_grafana_or_prometheus_would_not_take() {
    let expr = |b: &mut Value, e: &str| b["panels"][1]["targets"][0]["expr"] = json!(e);
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("unknown panel field", mutated("field", |b| b["panels"][0]["titel"] = json!("x")), "unexpected field 'titel'"),
        ("wrong type", mutated("type", |b| b["panels"][0]["gridPos"]["h"] = json!("8")), "gridPos.h"),
        ("unknown option", mutated("option", |b| b["panels"][1]["options"]["legnd"] = json!({})), "'legnd'"),
        ("unknown query field", mutated("query", |b| b["panels"][1]["targets"][0]["exp"] = json!("up")), "'exp'"),
        ("no PromQL", mutated("promql", |b| expr(b, "sum(rate(sluice_runs_started_total[5m])")), "not PromQL"),
        (
            "undefined metric",
            mutated("metric", |b| expr(b, "sum(rate(sluice_runs_startd_total[5m]))")),
            "sluice_runs_startd_total",
        ),
        (
            "undefined label",
            mutated("label", |b| expr(b, r#"sluice_runs_started_total{step="x"}"#)),
            r#"no label "step""#,
        ),
        (
            "bare histogram",
            mutated("histogram", |b| expr(b, "sluice_run_duration_seconds")),
            "sluice_run_duration_seconds",
        ),
        (
            "variable label",
            mutated("variable", |b| {
                b["templating"]["list"][2]["query"] = json!("label_values(sluice_runs_started_total, pipelin)")
            }),
            r#"no label "pipelin""#,
        ),
        (
            "not Prometheus",
            mutated("datasource", |b| {
                b["panels"][1]["targets"][0].as_object_mut().unwrap().remove("datasource");
            }),
            "no datasource of type prometheus",
        ),
    ];
    for (what, path, says) in cases {
        let (ok, text) = check(std::slice::from_ref(&path));
        assert!(!ok, "{what}: dashcheck accepted {}:\n{text}", path.display());
        assert!(text.contains(says), "{what}: the error should say {says:?}:\n{text}");
    }
}

#[test]
fn chart_ships_each_dashboard_as_a_sidecar_configmap_only_when_enabled() {
    let labelled = |docs: &[Value]| -> Vec<Value> {
        of_kind(docs, "ConfigMap")
            .into_iter()
            .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
            .cloned()
            .collect()
    };
    assert!(labelled(&render("sluice", "sluice-system", &[])).is_empty(), "off by default");
    let sets = [
        "dashboards.enabled=true",
        "dashboards.namespace=monitoring",
        "dashboards.labels.team=data",
        "dashboards.annotations.grafana_folder=Sluice",
    ];
    let maps = labelled(&render("sluice", "sluice-system", &sets));
    assert_eq!(maps.len(), DASHBOARDS.len(), "one ConfigMap per dashboard: {maps:#?}");
    for file in DASHBOARDS {
        let map =
            maps.iter().find(|m| m["data"].get(file).is_some()).unwrap_or_else(|| panic!("no ConfigMap has {file}"));
        let meta = &map["metadata"];
        assert_eq!(meta["namespace"], "monitoring");
        assert_eq!(meta["labels"]["team"], "data");
        assert_eq!(meta["annotations"]["grafana_folder"], "Sluice");
        let shipped = map["data"][file].as_str().expect("string data");
        let source = std::fs::read_to_string(dashboard_path(file)).expect("dashboard file");
        assert!(shipped == source, "{file}: the ConfigMap's content differs from the file");
    }
    let release_ns = labelled(&render("sluice", "sluice-system", &["dashboards.enabled=true"]));
    assert!(release_ns.iter().all(|m| m["metadata"]["namespace"] == "sluice-system"), "default: release namespace");
    let chart = chart_dir();
    let out = helm_local(&["template", "x", chart.to_str().unwrap(), "--set", "dashboards.namespace=Bad_NS"]);
    assert!(!out.ok && out.stderr.contains("namespace"), "a bad namespace is refused: {}", out.stderr);
}
