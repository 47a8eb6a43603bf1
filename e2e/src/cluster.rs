//! The cluster the tests run against.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// The example manifests (`manifests/examples/*.yaml`, sorted), without the kustomization that
/// lists them: every file holds objects to apply.
pub fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// Where test artifacts (operator log) go.
pub fn artifacts_dir() -> PathBuf {
    let dir =
        std::env::var_os("SLUICE_E2E_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/e2e"));
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// The kubeconfig of the cluster under test, starting the local control plane if needed.
/// Computed once per test process.
pub fn kubeconfig() -> PathBuf {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SLUICE_E2E_KUBECONFIG") {
                return PathBuf::from(path);
            }
            if std::env::var("SLUICE_E2E_EXISTING").as_deref() == Ok("1")
                && let Some(path) = std::env::var_os("KUBECONFIG")
            {
                return PathBuf::from(path);
            }
            start_local_cluster()
        })
        .clone()
}

/// Runs `e2e/cluster/up.sh` (a no-op when the cluster is up) and returns the kubeconfig path it
/// prints last.
fn start_local_cluster() -> PathBuf {
    let script = repo_root().join("e2e/cluster/up.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", script.display()));
    assert!(output.status.success(), "{} failed ({})", script.display(), output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    assert!(!path.is_empty(), "up.sh printed no kubeconfig path");
    PathBuf::from(path)
}

/// A client for the kubeconfig at `path`.
pub async fn client(path: &Path) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("readable kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("usable kubeconfig");
    kube::Client::try_from(config).expect("client")
}

/// The `kubectl` to use: the one build.sh cached, else the one on PATH.
pub fn kubectl() -> PathBuf {
    let version = std::fs::read_to_string(repo_root().join("e2e/cluster/versions.env"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("KUBERNETES_VERSION=").map(|v| v.trim().to_string())))
        .unwrap_or_default();
    let cache = std::env::var_os("SLUICE_K8S_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sluice"));
    let cached = cache.join(version).join("bin/kubectl");
    if cached.exists() { cached } else { PathBuf::from("kubectl") }
}

/// Runs kubectl against the cluster under test; returns (success, stdout, stderr).
pub fn run_kubectl(args: &[&str]) -> (bool, String, String) {
    // A discovery cache of its own per call: kubectl's shared one (~/.kube/cache, kept for hours)
    // can predate the CRDs, and then `kubectl get sluice` answers "doesn't have a resource type".
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cache = std::env::temp_dir().join(format!("sluice-e2e-kubectl-{}-{n}", std::process::id()));
    let output = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .output()
        .expect("kubectl runs");
    let _ = std::fs::remove_dir_all(&cache);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
