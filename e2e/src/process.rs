//! Operator processes a test starts itself (with its own arguments, log and identity), kills
//! and restarts: leader election, RBAC, chaos.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::cluster::artifacts_dir;

/// An operator process started by a test, killed when dropped (and when the test's thread ends).
pub struct OperatorProcess {
    child: tokio::process::Child,
    /// Address of /healthz, /readyz, /metrics.
    pub addr: String,
    /// Its log (JSON lines).
    pub log: PathBuf,
    /// Its pod name: leader-election identity, and the replica named in its user agent.
    pub name: String,
    kubeconfig: PathBuf,
    args: Vec<String>,
    rust_log: String,
}

impl OperatorProcess {
    /// Starts `sluice-operator run --log-format json <args>` with `kubeconfig`; `name` is its pod
    /// name (leader-election identity) and log file name. `rust_log` is its RUST_LOG.
    pub fn start(kubeconfig: &Path, name: &str, args: &[&str], rust_log: &str) -> Self {
        let log = artifacts_dir().join(format!("{name}.log"));
        std::fs::File::create(&log).expect("log file");
        let args = args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let (child, addr) = spawn(kubeconfig, name, &args, rust_log, &log);
        Self {
            child,
            addr,
            log,
            name: name.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            args,
            rust_log: rust_log.to_string(),
        }
    }

    /// SIGKILLs the process, waits until it is gone and starts it again at once with the same
    /// name and arguments (a new HTTP port); the log continues in the same file.
    pub async fn kill_and_restart(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait().await;
        let (child, addr) = spawn(&self.kubeconfig, &self.name, &self.args, &self.rust_log, &self.log);
        self.child = child;
        self.addr = addr;
    }

    /// Sends `signal` (SIGTERM, SIGKILL) to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn exited(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok().map(|r| r.expect("wait"))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The exit status if the process has exited, without waiting.
    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&self) {
        crate::operator::wait_ready(&self.addr).await;
    }

    /// Its /metrics text.
    pub async fn metrics(&self) -> String {
        let (code, body) = crate::operator::http_get(&self.addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// The value of an unlabelled gauge in /metrics, if exported.
    pub async fn gauge(&self, name: &str) -> Option<f64> {
        self.metrics().await.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
    }
}

/// Spawns the operator, appending its output to `log`; returns it with its HTTP address.
fn spawn(
    kubeconfig: &Path,
    name: &str,
    args: &[String],
    rust_log: &str,
    log: &Path,
) -> (tokio::process::Child, String) {
    let addr = format!("127.0.0.1:{}", crate::operator::free_port());
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut command = tokio::process::Command::new(crate::operator::binary());
    command
        .args(["run", "--http-addr", &addr, "--log-format", "json"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", name)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; the kernel signals the child when the spawning
    // thread (the test's) exits, so no operator outlives its test.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    (command.spawn().expect("operator binary runs"), addr)
}

/// Makes the kernel send `signal` to the process `command` spawns when the spawning thread (a
/// test's) exits, so that no helper process outlives its test.
pub fn die_with_parent(command: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, the only call made between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
}
