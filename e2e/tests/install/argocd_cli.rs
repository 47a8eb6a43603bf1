//! The Argo CD health checks run by Argo CD itself: e2e/tools/argocd-health does what its CLI's
//! `argocd admin settings resource-overrides health` does, loading an argocd-cm ConfigMap with
//! Argo CD's `util/settings` and evaluating a resource with its health scripts through Argo CD's
//! own `util/lua` (gopher-lua, the libraries Argo CD opens, its safe `os`, its result decoding). Every `health_test.yaml` case runs against the generated
//! manifests/argocd/argocd-cm.yaml, so what users merge into their Argo CD is what is tested.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sluice_e2e::cluster::{artifacts_dir, repo_root};

use super::argocd::{KINDS, SANDBOX_SCRIPT, STATUSES, STRING_FORMAT_SCRIPT, cases, health, partial_objects};
use super::checkers::argocd_health;

/// What Argo CD's `resource-overrides health` said about `input`: (status, message), or its
/// error output when it failed.
fn cli_health(input: &Path, argocd_cm: &Path) -> Result<(String, String), String> {
    let out = Command::new(argocd_health())
        .arg(input)
        .arg("--argocd-cm-path")
        .arg(argocd_cm)
        .env("HOME", artifacts_dir())
        .output()
        .expect("run argocd-health");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Its log is JSON lines on stderr; the error is the "fatal" one.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let fatal: Vec<&str> = stderr.lines().filter(|l| l.contains(r#""level":"fatal""#)).collect();
        return Err(if fatal.is_empty() { format!("{stdout}{stderr}") } else { fatal.join("\n") });
    }
    let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
    match (field("STATUS: "), field("MESSAGE: ")) {
        (Some(status), Some(message)) => Ok((status, message)),
        _ => Err(format!("no STATUS/MESSAGE in: {stdout}")),
    }
}

/// An argocd-cm ConfigMap (written under target/e2e) whose only key is `data`.
fn write_cm(name: &str, data: Value) -> std::path::PathBuf {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, "data": data});
    let path = artifacts_dir().join(format!("argocd-cm-{name}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&cm).expect("YAML")).expect("write argocd-cm");
    path
}

#[test]
fn argo_cd_gives_every_health_test_case_its_status_and_message() {
    let argocd_cm = repo_root().join("manifests/argocd/argocd-cm.yaml");
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in KINDS {
        for case in cases(kind) {
            count += 1;
            match cli_health(&case.input, &argocd_cm) {
                Ok(got) if got == case.want => {}
                other => failures.push(format!("{}: want {:?}, got {other:?}", case.input.display(), case.want)),
            }
        }
    }
    assert!(failures.is_empty(), "Argo CD disagrees with health_test.yaml:\n{}", failures.join("\n"));
    assert!(count >= 20, "only {count} cases ran");
}

/// Objects the operator has not filled in yet: Argo CD answers with a known status, never an
/// error, and gives the same answer as argocd.rs's mlua runner.
#[test]
fn argo_cd_answers_partial_objects_as_the_mlua_runner_does() {
    let argocd_cm = repo_root().join("manifests/argocd/argocd-cm.yaml");
    for kind in KINDS {
        for (i, obj) in partial_objects(kind).into_iter().enumerate() {
            let input = artifacts_dir().join(format!("argocd-partial-{kind}-{i}.yaml"));
            std::fs::write(&input, serde_yaml::to_string(&obj).expect("YAML")).expect("write object");
            let got = cli_health(&input, &argocd_cm).unwrap_or_else(|e| panic!("{kind} on {obj}: {e}"));
            assert!(STATUSES.contains(&got.0.as_str()), "{kind} on {obj}: {got:?}");
            assert_eq!(Ok(got), health(kind, &obj), "{kind} on {obj}: Argo CD and mlua differ");
        }
    }
}

/// The negative case both runners share: a script calling `string.format` fails in Argo CD
/// (as in argocd.rs's mlua runner), and passes once `useOpenLibs` opens the standard libraries,
/// so the failure is the missing library and nothing else.
#[test]
fn argo_cd_fails_a_script_that_needs_the_string_library() {
    let input = cases("Pipeline").remove(0).input;
    let key = "resource.customizations.health.sluice.dev_Pipeline";
    let closed = write_cm("string-format", json!({ key: STRING_FORMAT_SCRIPT }));
    let error = cli_health(&input, &closed).expect_err("string.format must fail in Argo CD");
    assert!(error.contains("format"), "{error}");
    let open = write_cm(
        "string-format-open-libs",
        json!({ key: STRING_FORMAT_SCRIPT, "resource.customizations.useOpenLibs.sluice.dev_Pipeline": "true" }),
    );
    assert_eq!(cli_health(&input, &open), Ok(("Healthy".into(), "1 run(s) active".into())));
}

/// What argocd.rs's mlua runner assumes of Argo CD's sandbox, checked against Argo CD: the
/// script argocd.rs runs under mlua gives the same answer here.
#[test]
fn argo_cd_opens_only_base_package_table_and_a_safe_os() {
    let input = cases("Pipeline").remove(0).input;
    let cm = write_cm("sandbox", json!({ "resource.customizations.health.sluice.dev_Pipeline": SANDBOX_SCRIPT }));
    assert_eq!(cli_health(&input, &cm), Ok(("Healthy".into(), "table,require,safe-os".into())));
}
