//! A real Kueue (`sigs.k8s.io/kueue`'s manager) on the host against the cluster under test.
//!
//! - The binary comes from `e2e/tools/build.sh kueue` (built from the Go module registry at
//!   `KUEUE_VERSION` of e2e/tools/versions.env and cached outside the repository).
//! - Its CRDs are read at test time from the same version's module in the Go module cache
//!   (`config/components/crd/bases`, `go mod download` brings it when missing), server-side
//!   applied as they are (no conversion webhook: only their storage version, v1beta2, is used).
//! - Its Configuration: the `batch/job` integration only, `manageJobsWithoutQueueName: false`,
//!   no leader election, metrics off, health probes on a free loopback port, and no webhooks
//!   registered with the API server (Sluice creates its Jobs suspended itself, which is what
//!   Kueue's mutating webhook would do). Kueue still starts its webhook server, so it gets a
//!   throwaway self-signed certificate on a free loopback port. Kueue's internal certificate
//!   management is off (it would wait for webhook configurations and conversion webhooks that
//!   this set-up does not have), and then Kueue v0.17 insists on reading a metrics certificate
//!   from the fixed path `/etc/kueue/metrics/certs` even with metrics off: a throwaway
//!   self-signed pair is written there when none exists. Where that path cannot be written (not
//!   root), [`Kueue::or_skip`] says so and the test is skipped.
//! - [`Kueue::start`] runs it with the cluster's kubeconfig, its log in `target/e2e/kueue.log`;
//!   dropping the [`Kueue`] stops it. One Kueue at a time per test process ([`Kueue::start`]
//!   holds a lock until the drop): two managers would both admit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::cluster::{artifacts_dir, repo_root};

/// The running Kueue manager; stopped (SIGKILL, reaped) when dropped.
pub struct Kueue {
    child: Child,
    /// Its configuration and webhook certificate, removed with it.
    work: PathBuf,
    /// Address of its health probes (`/healthz`, `/readyz`).
    pub health_addr: String,
    pub log: PathBuf,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `KUEUE_VERSION` from e2e/tools/versions.env.
pub fn version() -> String {
    let env = std::fs::read_to_string(repo_root().join("e2e/tools/versions.env")).expect("e2e/tools/versions.env");
    env.lines().find_map(|l| l.strip_prefix("KUEUE_VERSION=")).expect("KUEUE_VERSION in versions.env").trim().into()
}

/// The Kueue binary: built (or found in the cache) by `e2e/tools/build.sh kueue`.
pub fn binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/tools/build.sh"))
        .arg("kueue")
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/tools/build.sh kueue");
    assert!(out.status.success(), "e2e/tools/build.sh kueue failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim()).join("kueue")
}

/// The directory of Kueue's module at [`version`] in the Go module cache, downloaded if needed.
pub fn module_dir() -> PathBuf {
    let module = format!("sigs.k8s.io/kueue@{}", version());
    let out = Command::new("go")
        .args(["mod", "download", "-json", &module])
        .current_dir(std::env::temp_dir())
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("go runs");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("go mod download {module}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    PathBuf::from(info["Dir"].as_str().unwrap_or_else(|| panic!("go mod download {module}: {info}")))
}

/// Server-side applies Kueue's CRDs (from its module) and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let dir = module_dir().join("config/components/crd/bases");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable CRD");
        for doc in crate::yaml::documents(&text) {
            let name = doc["metadata"]["name"].as_str().expect("CRD name").to_string();
            api.patch(&name, &PatchParams::apply("sluice-e2e-kueue").force(), &Patch::Apply(&doc))
                .await
                .unwrap_or_else(|e| panic!("the API server rejected Kueue's CRD {name}: {e}"));
            names.push(name);
        }
    }
    for name in names {
        crate::wait::until(&api, &name, Duration::from_secs(60), "Established", |crd: &CustomResourceDefinition| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await;
    }
}

/// A self-signed certificate and key for `127.0.0.1` as `tls.crt` and `tls.key` in `dir`
/// (openssl), unless both exist.
fn self_signed(dir: &Path) {
    if dir.join("tls.crt").exists() && dir.join("tls.key").exists() {
        return;
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // Written beside and renamed, so a concurrent reader never sees half a pair.
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(tmp.join("tls.key"))
        .arg("-out")
        .arg(tmp.join("tls.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl could not make a certificate in {}", tmp.display());
    for f in ["tls.key", "tls.crt"] {
        std::fs::rename(tmp.join(f), dir.join(f)).expect("rename certificate");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Where Kueue v0.17 reads its metrics certificate when its internal certificate management is
/// off (fixed in `cmd/kueue/main.go`).
pub const METRICS_CERT_DIR: &str = "/etc/kueue/metrics/certs";

/// Kueue's Configuration for this set-up (see the module notes).
fn configuration(health_addr: &str, webhook_port: u16, cert_dir: &Path) -> String {
    format!(
        r#"apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
manageJobsWithoutQueueName: false
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
health:
  healthProbeBindAddress: {health_addr}
metrics:
  bindAddress: "0"
webhook:
  host: 127.0.0.1
  port: {webhook_port}
  certDir: {cert_dir}
integrations:
  frameworks:
  - batch/job
featureGates:
  VisibilityOnDemand: false
  MultiKueue: false
  TopologyAwareScheduling: false
"#,
        cert_dir = cert_dir.display()
    )
}

impl Kueue {
    /// [`Kueue::start`], or `None` after printing why `test` is skipped (on stderr, past the
    /// harness's capture) when [`METRICS_CERT_DIR`] cannot be written.
    pub async fn or_skip(test: &str, client: &Client, kubeconfig: &Path) -> Option<Self> {
        let dir = Path::new(METRICS_CERT_DIR);
        let ready = dir.join("tls.crt").exists() && dir.join("tls.key").exists();
        if !ready && let Err(e) = std::fs::create_dir_all(dir) {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: Kueue needs {METRICS_CERT_DIR} ({e}); run as root");
            return None;
        }
        Some(Self::start(client, kubeconfig).await)
    }

    /// Installs Kueue's CRDs and starts its manager against the cluster of `kubeconfig`; returns
    /// once it answers `/readyz`.
    pub async fn start(client: &Client, kubeconfig: &Path) -> Self {
        let guard = ONE.lock().await;
        install_crds(client).await;
        let binary = tokio::task::spawn_blocking(binary).await.expect("build kueue");
        let work = artifacts_dir().join(format!("kueue-{}", std::process::id()));
        let cert_dir = work.join("webhook-certs");
        self_signed(&cert_dir);
        self_signed(Path::new(METRICS_CERT_DIR));
        let health_addr = format!("127.0.0.1:{}", crate::operator::free_port());
        let config = work.join("config.yaml");
        std::fs::write(&config, configuration(&health_addr, crate::operator::free_port(), &cert_dir))
            .expect("write Kueue config");
        let log = artifacts_dir().join("kueue.log");
        let file = std::fs::File::create(&log).expect("kueue log");
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        crate::process::die_with_parent(&mut command, libc::SIGKILL);
        let child = command.spawn().unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
        let mut kueue = Kueue { child, work, health_addr, log, _one_at_a_time: guard };
        kueue.wait_ready(Duration::from_secs(90)).await;
        kueue
    }

    /// Waits until `/readyz` answers 200, or panics with the log's tail.
    async fn wait_ready(&mut self, timeout: Duration) {
        let addr = self.health_addr.clone();
        let ready = || async { matches!(crate::operator::http_get(&addr, "/readyz").await, Ok((200, _))) };
        if crate::wait::settle(timeout, Duration::from_millis(250), ready, |ok| *ok).await {
            return;
        }
        let exited = self.child.try_wait().ok().flatten();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "Kueue did not become ready in {timeout:?} (exited: {exited:?}); last lines of {}:\n{}",
            self.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

impl Drop for Kueue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
