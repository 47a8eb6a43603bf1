//! The operator under test: CRDs installed from `crds/`, and the `sluice-operator` binary running
//! against the cluster for the lifetime of the test process.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::OnceCell;

use crate::cluster::{artifacts_dir, repo_root};

/// Prices the shared operator is given (`--price-cpu-hour`, `--price-gib-hour`, `--currency`).
pub const PRICE_CPU_HOUR: f64 = 0.036;
pub const PRICE_GIB_HOUR: f64 = 0.0036;
pub const CURRENCY: &str = "EUR";

/// The running operator of this test process.
pub struct Operator {
    /// Address of its /healthz, /readyz and /metrics, when this process started it.
    pub http_addr: Option<String>,
}

static OPERATOR: OnceLock<Operator> = OnceLock::new();
static CRDS: OnceCell<()> = OnceCell::const_new();
static STARTED: OnceCell<()> = OnceCell::const_new();

/// The operator this test process started, if any (None with `SLUICE_E2E_OPERATOR=external`).
pub fn shared_http_addr() -> Option<&'static str> {
    OPERATOR.get().and_then(|op| op.http_addr.as_deref())
}

/// Installs the CRDs and starts the operator, once per test process.
pub async fn ensure_running(client: &Client, kubeconfig: &Path) -> &'static Operator {
    CRDS.get_or_init(|| install_crds(client)).await;
    // One start for all the tests of the process, also when they call this at the same moment:
    // two operators acting at once would make each other's decisions racy.
    STARTED
        .get_or_init(|| async {
            let op = if std::env::var("SLUICE_E2E_OPERATOR").as_deref() == Ok("external") {
                Operator { http_addr: None }
            } else {
                let kubeconfig = kubeconfig.to_path_buf();
                tokio::task::spawn_blocking(move || start_operator(&kubeconfig, "operator"))
                    .await
                    .expect("operator starts")
            };
            let _ = OPERATOR.set(op);
        })
        .await;
    let op = OPERATOR.get().expect("the operator was started");
    if let Some(addr) = &op.http_addr {
        wait_ready(addr).await;
    }
    op
}

/// Server-side applies every file under `crds/` (the committed YAML, as users install it) and
/// waits until each CRD is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = repo_root().join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("readable CRD");
        for doc in crate::yaml::documents(&text) {
            let name = doc["metadata"]["name"].as_str().expect("CRD name").to_string();
            api.patch(&name, &PatchParams::apply("sluice-e2e").force(), &Patch::Apply(&doc))
                .await
                .unwrap_or_else(|e| panic!("the API server rejected CRD {name}: {e}"));
            names.push(name);
        }
    }
    for name in names {
        crate::wait::until(&api, &name, Duration::from_secs(30), "Established", |crd: &CustomResourceDefinition| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await;
    }
}

/// The operator binary: `SLUICE_OPERATOR_BIN`, else `<target>/debug/sluice-operator`, built
/// with cargo when missing.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_OPERATOR_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/sluice-operator");
    if !path.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "sluice-operator", "--bin", "sluice-operator"])
            .current_dir(repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building sluice-operator failed");
    }
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Starts an operator process whose log goes to `target/e2e/<name>.log`. It is killed when the
/// thread that started it exits: the first one is started from a thread that lives as long as the
/// test process, so it dies with the process.
pub fn start_operator(kubeconfig: &Path, name: &str) -> Operator {
    let (tx, rx) = std::sync::mpsc::channel();
    let kubeconfig = kubeconfig.to_path_buf();
    let name = name.to_string();
    std::thread::spawn(move || {
        // The shared operator sends its OpenLineage events to this process's receiver.
        let lineage_url = crate::lineage::url();
        let (cpu, gib) = (PRICE_CPU_HOUR.to_string(), PRICE_GIB_HOUR.to_string());
        let prices = ["--price-cpu-hour", &cpu, "--price-gib-hour", &gib, "--currency", CURRENCY];
        let mut args = vec!["--lineage-url", &lineage_url];
        args.extend(prices);
        let (child, addr) = spawn_child(&kubeconfig, &name, &args);
        tx.send(addr).expect("report address");
        let mut child = child;
        let _ = child.wait();
    });
    let addr = rx.recv().expect("operator started");
    Operator { http_addr: Some(addr) }
}

/// Spawns an operator process and returns it with its HTTP address. The kernel stops it when the
/// thread that spawned it exits (PR_SET_PDEATHSIG), so it is spawned from a thread that lives as
/// long as the test process: callers run this on tokio's blocking pool, whose threads exit after
/// 10 s idle, which stopped operators in the middle of their tests.
pub fn spawn_operator(kubeconfig: &Path, name: &str, extra_args: &[&str]) -> (Child, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (kubeconfig, name) = (kubeconfig.to_path_buf(), name.to_string());
    let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        tx.send(spawn_child(&kubeconfig, &name, &args)).expect("report the child");
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("operator spawned")
}

/// An operator process that is killed (and reaped) when this is dropped, also when its test
/// fails.
pub struct Spawned {
    pub child: Child,
    /// Address of its /healthz, /readyz and /metrics.
    pub addr: String,
}

impl Spawned {
    /// Starts an operator named `name` (its log file and Event reporting instance) acting on
    /// `namespace` only, and waits until it is ready.
    pub async fn in_namespace(name: &str, namespace: &str) -> Self {
        let (kubeconfig, name, only) = (crate::cluster::kubeconfig(), name.to_string(), namespace.to_string());
        let (child, addr) =
            tokio::task::spawn_blocking(move || spawn_operator(&kubeconfig, &name, &["--namespace", &only]))
                .await
                .expect("spawned");
        let spawned = Self { child, addr };
        wait_ready(&spawned.addr).await;
        spawned
    }

    /// The sum of the samples of `family` whose labels include every one of `labels`
    /// (`key="value"`), on its /metrics now.
    pub async fn metric_sum(&self, family: &str, labels: &[&str]) -> f64 {
        let (_, body) = http_get(&self.addr, "/metrics").await.expect("metrics");
        body.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the operator binary; the kernel sends it SIGTERM when the calling thread exits.
fn spawn_child(kubeconfig: &Path, name: &str, extra_args: &[&str]) -> (Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(artifacts_dir().join(format!("{name}.log"))).expect("log file");
    let mut command = Command::new(binary());
    command
        .args(["run", "--http-addr", &addr])
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", name)
        .env("SLUICE_LINEAGE_API_KEY", crate::lineage::API_KEY)
        .env("RUST_LOG", std::env::var("SLUICE_E2E_OPERATOR_LOG").unwrap_or_else(|_| "info,sluice=debug".into()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal the child when the
    // spawning thread exits.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = command.spawn().expect("operator binary runs");
    (child, addr)
}

/// Waits until the operator at `addr` answers /readyz with 200.
pub async fn wait_ready(addr: &str) {
    let ready = || async { matches!(http_get(addr, "/readyz").await, Ok((200, _))) };
    if crate::wait::settle(Duration::from_secs(60), Duration::from_millis(200), ready, |ok| *ok).await {
        return;
    }
    panic!("operator at {addr} did not become ready in 60s; see target/e2e/*.log");
}

/// A minimal HTTP/1.1 GET against the operator's server: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
