//! The local cluster's real node (kubelet + containerd + runc, `e2e/cluster/node-up.sh`): whether
//! the cluster has one, and pod templates that run there with the locally built images.

use std::io::Write as _;

use serde_json::{Value, json};

/// What the cluster's env file says about its real node.
#[derive(Clone, Debug)]
pub struct RealNode {
    /// The Node's name.
    pub name: String,
    /// Its InternalIP (the bridge's address on the host).
    pub ip: String,
    /// The label (value "true") pods select it by, which is also the key of its NoSchedule taint.
    pub label: String,
}

/// The test image (Debian's busybox-static, `images/busybox`), imported by up.sh.
pub const BUSYBOX: &str = "localhost/busybox:dev";

/// The cluster's real node, or why there is none (the tests that need it print that and pass
/// without running: `SLUICE_REAL_NODE=0` is a supported way to run the suite).
pub fn real_node() -> Result<RealNode, String> {
    let env_file = crate::cluster::kubeconfig().parent().map(|d| d.join("env"));
    let Some(text) = env_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) else {
        return Err("the cluster under test was not started by e2e/cluster/up.sh (no env file)".into());
    };
    let var = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string);
    if var("SLUICE_REAL_NODE").as_deref() != Some("1") {
        return Err("the cluster has no real node (started with SLUICE_REAL_NODE=0)".into());
    }
    match (var("SLUICE_NODE_NAME"), var("SLUICE_NODE_IP"), var("SLUICE_NODE_LABEL")) {
        (Some(name), Some(ip), Some(label)) => Ok(RealNode { name, ip, label }),
        _ => {
            Err("the cluster's env file names no real node (SLUICE_NODE_NAME, SLUICE_NODE_IP, SLUICE_NODE_LABEL)"
                .into())
        }
    }
}

/// The real node, or `None` after printing why the calling test is skipped (on stderr, also
/// when the harness captures test output).
pub fn or_skip(test: &str) -> Option<RealNode> {
    match real_node() {
        Ok(node) => Some(node),
        Err(why) => {
            // Straight to stderr, past the test harness's capture: `make test` shows it.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

impl RealNode {
    /// A Job pod template that runs `script` with busybox's `sh -c` on this node, with `extra`
    /// merged into the container (resources, ...).
    pub fn template(&self, script: &str, extra: Value) -> Value {
        let mut container = json!({
            "name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
        });
        if let Some(extra) = extra.as_object() {
            container.as_object_mut().expect("object").extend(extra.clone());
        }
        json!({"spec": {
            "nodeSelector": {&self.label: "true"},
            "tolerations": [{"key": &self.label, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
        }})
    }
}
