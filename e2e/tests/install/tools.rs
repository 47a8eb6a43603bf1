//! What the install tests share: helm and kubectl against the cluster under test, rendering the
//! chart, operator processes with their own kubeconfig, arguments and log, and unique names.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::cluster::{artifacts_dir, kubeconfig, repo_root};

/// The chart under test.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/sluice")
}

/// `helm`: `$HELM`, else the one e2e/cluster/build.sh caches next to kubectl, else PATH's.
pub fn helm_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM") {
        return PathBuf::from(path);
    }
    let cached = sluice_e2e::cluster::kubectl().with_file_name("helm");
    if cached.is_absolute() && cached.exists() { cached } else { PathBuf::from("helm") }
}

/// The result of a command: success, stdout, stderr.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` in the repository with `args` and `stdin`.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()));
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("command finishes");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs helm without a cluster (lint, template).
pub fn helm_local(args: &[&str]) -> Output {
    run(&helm_bin(), args, None)
}

/// Runs helm against the cluster under test (blocking: call from `spawn_blocking` in async tests
/// when it may take long, like `--wait`).
pub fn helm(args: &[&str]) -> Output {
    let kubeconfig = kubeconfig();
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run(&helm_bin(), &all, None)
}

/// Runs helm against the cluster on a blocking thread, panicking with its output on failure.
pub async fn helm_ok(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || helm(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .expect("helm thread");
    assert!(out.ok, "helm {shown} failed:\n{}\n{}", out.stdout, out.stderr);
    out.stdout
}

/// Runs kubectl against the cluster, with `stdin` as input.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let kubeconfig = kubeconfig();
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run(&sluice_e2e::cluster::kubectl(), &all, stdin)
}

/// Renders the chart (`helm template`, tests left out) as JSON documents.
pub fn render(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    sluice_e2e::yaml::documents(&render_text(release, namespace, sets))
}

/// Renders the chart as text; `sets` are `--set` values or other `helm template` flags.
pub fn render_text(release: &str, namespace: &str, sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec!["template", release, chart.to_str().expect("utf-8 path"), "--namespace", namespace];
    args.push("--skip-tests");
    for set in sets {
        if set.starts_with("--") {
            args.push(set);
        } else {
            args.extend(["--set", set]);
        }
    }
    let out = helm_local(&args);
    assert!(out.ok, "helm template {sets:?} failed:\n{}", out.stderr);
    out.stdout
}

/// The rendered documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Polls `name` every 200 ms until `check` holds, or panics after `timeout` with the object as
/// last seen. (Polling, unlike a watch, rides out "resource version too old" on a busy cluster.)
pub async fn poll_until<K, F>(api: &kube::Api<K>, name: &str, timeout: Duration, what: &str, check: F) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    sluice_e2e::wait::until(api, name, timeout, what, check).await
}

/// A name unique to this test process and call, usable as a Kubernetes name.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{:x}{n}{:x}", std::process::id(), jiff::Timestamp::now().as_millisecond() % 0xfff)
}

/// A kubeconfig for the cluster under test that impersonates ServiceAccount `sa` of `namespace`
/// (with the groups a real ServiceAccount token has). The admin certificate may impersonate.
pub fn impersonating_kubeconfig(namespace: &str, sa: &str) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig()).expect("admin kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let user = format!("system:serviceaccount:{namespace}:{sa}");
    let groups = [
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_string(),
    ];
    for entry in config["users"].as_sequence_mut().expect("users") {
        let auth = entry["user"].as_mapping_mut().expect("user");
        auth.insert("as".into(), user.clone().into());
        auth.insert("as-groups".into(), groups.iter().map(|g| serde_yaml::Value::from(g.as_str())).collect());
    }
    let path = artifacts_dir().join(format!("{namespace}-{sa}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("write kubeconfig");
    path
}

pub use sluice_e2e::process::OperatorProcess;
