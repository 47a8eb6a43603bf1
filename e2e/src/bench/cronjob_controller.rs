//! The peer: Kubernetes' CronJob controller, alone in a kube-controller-manager process of its
//! own (up.sh's shared one runs without it), so its CPU and memory can be read from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Client rate limit of the CronJob controller-manager. The operator's kube client has none, so
/// this is set far above what either reaches: the same (no) limit for both arms.
pub const KUBE_API_QPS: u32 = 5000;
pub const KUBE_API_BURST: u32 = 10000;

/// A running CronJob-only kube-controller-manager, killed when dropped.
pub struct CronJobController {
    child: Child,
    pub log: PathBuf,
}

impl CronJobController {
    /// Starts it against the cluster under test with up.sh's binaries.
    pub fn start() -> Self {
        let kubeconfig = crate::cluster::kubeconfig();
        let bin = binary(&kubeconfig);
        let log = crate::cluster::artifacts_dir().join("cronjob-controller-manager.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&bin);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["--controllers=cronjob-controller", "--leader-elect=false", "--secure-port=0", "--profiling=false"])
            .args(["--use-service-account-credentials=false"])
            .arg(format!("--kube-api-qps={KUBE_API_QPS}"))
            .arg(format!("--kube-api-burst={KUBE_API_BURST}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        crate::process::die_with_parent(&mut command, libc::SIGKILL);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for CronJobController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kube-controller-manager from the binaries up.sh used (`SLUICE_K8S_BIN` in the cluster's env
/// file next to the kubeconfig), else from PATH.
fn binary(kubeconfig: &std::path::Path) -> PathBuf {
    let env = kubeconfig.parent().map(|d| d.join("env"));
    let dir = env
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("SLUICE_K8S_BIN=").map(str::to_string)));
    match dir {
        Some(dir) => PathBuf::from(dir).join("kube-controller-manager"),
        None => PathBuf::from("kube-controller-manager"),
    }
}
