//! The checkers platform teams run, prepared by the project's scripts and cached outside the
//! repository: `argocd-health` (Argo CD's health assessment) and `kube-score` built from the Go
//! module registry by e2e/tools/build.sh,
//! `checkov` installed from PyPI into a virtualenv by e2e/tools/checkov-venv.sh. Each is prepared
//! once per test process (the scripts skip what is cached, and lock while they build).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use sluice_e2e::cluster::repo_root;

/// Runs `script` with `args` (an e2e/tools script printing a path on its last line) once per
/// process and argument list, and returns that path.
fn prepared(script: &str, args: &[&str]) -> PathBuf {
    static DONE: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{script} {}", args.join(" "));
    let mut done = DONE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = done.get(&key) {
        return path.clone();
    }
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/tools").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {script}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{key} failed:\n{stderr}");
    eprint!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    done.insert(key, path.clone());
    path
}

/// `argocd-health` (e2e/tools/argocd-health): what `argocd admin settings resource-overrides
/// health` does, over Argo CD's own packages at the version e2e/tools/versions.env pins.
pub fn argocd_health() -> PathBuf {
    prepared("build.sh", &["argocd-health"]).join("argocd-health")
}

/// `kube-score`, at the version e2e/tools/versions.env pins.
pub fn kube_score() -> PathBuf {
    prepared("build.sh", &["kube-score"]).join("kube-score")
}

/// `checkov`, at the version e2e/tools/versions.env pins.
pub fn checkov() -> PathBuf {
    prepared("checkov-venv.sh", &[])
}
