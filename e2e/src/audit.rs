//! The API server's audit log of the local cluster (`logs/audit.log`, written as up.sh's audit
//! policy says: Job creates and deletes, Pipeline and Backfill status writes, Lease writes), read
//! back by the tests that must prove from the server's side what was written, and by whom.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::Value;

/// One request as the audit log recorded it (stage ResponseComplete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// HTTP status code of the response.
    pub code: u16,
    pub user_agent: String,
    pub received: Timestamp,
    pub completed: Timestamp,
}

impl AuditEvent {
    /// A request that changed something (create, update, patch, delete) and succeeded.
    pub fn is_successful_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete") && (200..300).contains(&self.code)
    }

    /// A successful create of a Job.
    pub fn is_job_create(&self) -> bool {
        self.is_job_create_request() && self.code == 201
    }

    /// A create of a Job that failed on the server's side (5xx, such as a 504 timeout): the
    /// client cannot tell whether the Job was created, and sometimes it was.
    pub fn is_job_create_of_unknown_outcome(&self) -> bool {
        self.is_job_create_request() && self.code >= 500
    }

    fn is_job_create_request(&self) -> bool {
        self.verb == "create" && self.resource == "jobs" && self.subresource.is_empty()
    }
}

/// The audit log of the cluster under test: `SLUICE_E2E_AUDIT_LOG`, else `logs/audit.log` next
/// to the kubeconfig up.sh wrote.
pub fn log_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_E2E_AUDIT_LOG") {
        return PathBuf::from(path);
    }
    let kubeconfig = crate::cluster::kubeconfig();
    kubeconfig.parent().expect("kubeconfig directory").join("logs/audit.log")
}

/// Parses one JSON line of the audit log; `None` for anything but a ResponseComplete event.
pub fn parse(line: &str) -> Option<AuditEvent> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v["stage"] != "ResponseComplete" {
        return None;
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let reference = &v["objectRef"];
    Some(AuditEvent {
        verb: text(&v["verb"]),
        resource: text(&reference["resource"]),
        subresource: text(&reference["subresource"]),
        namespace: text(&reference["namespace"]),
        name: text(&reference["name"]),
        code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        user_agent: text(&v["userAgent"]),
        received: v["requestReceivedTimestamp"].as_str()?.parse().ok()?,
        completed: v["stageTimestamp"].as_str()?.parse().ok()?,
    })
}

/// Every recorded request on objects of `namespace`, in log order. Panics when the log is
/// missing: the cluster was started without the audit policy (an older up.sh; run down.sh).
pub fn read(namespace: &str) -> Vec<AuditEvent> {
    let path = log_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no audit log at {} ({e}): start the cluster with e2e/cluster/up.sh (down.sh first)", path.display())
    });
    text.lines().filter_map(parse).filter(|e| e.namespace == namespace).collect()
}

/// Like [`read`], but first writes a marker (a Lease `audit-mark-<n>` in `namespace`) and waits
/// until the log shows it, so that every request completed before the call is in what is read.
pub async fn read_settled(client: &kube::Client, namespace: &str) -> Vec<AuditEvent> {
    use k8s_openapi::api::coordination::v1::Lease;
    static MARKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!("audit-mark-{}", MARKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let lease: Lease = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("lease");
    kube::Api::<Lease>::namespaced(client.clone(), namespace)
        .create(&Default::default(), &lease)
        .await
        .unwrap_or_else(|e| panic!("creating the audit marker {name}: {e}"));
    let what = format!("the audit log {} to show the marker Lease {namespace}/{name}", log_path().display());
    crate::wait::poll(std::time::Duration::from_secs(10), &what, || {
        let events = read(namespace);
        std::future::ready(events.iter().any(|e| e.resource == "leases" && e.name == name).then_some(events))
    })
    .await
}

/// How many times each Job name was created (successfully).
pub fn job_creates(events: &[AuditEvent]) -> BTreeMap<String, usize> {
    let mut creates = BTreeMap::new();
    for event in events.iter().filter(|e| e.is_job_create()) {
        *creates.entry(event.name.clone()).or_default() += 1;
    }
    creates
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"create","userAgent":"sluice-operator/0.1.0 (a)","objectRef":{"resource":"jobs","namespace":"ns","name":"j1","apiGroup":"batch","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-12-01T18:16:18.627631Z","stageTimestamp":"2026-12-01T18:16:18.634071Z"}"#;

    #[test]
    fn parses_a_job_create_and_counts_names() {
        let event = parse(CREATE).expect("event");
        assert!(event.is_job_create() && event.is_successful_write());
        assert_eq!((event.name.as_str(), event.user_agent.as_str()), ("j1", "sluice-operator/0.1.0 (a)"));
        assert!(event.received < event.completed);
        let conflict = parse(&CREATE.replace("201", "409")).expect("event");
        assert!(!conflict.is_job_create() && !conflict.is_successful_write());
        assert!(!conflict.is_job_create_of_unknown_outcome());
        assert!(parse(&CREATE.replace("201", "504")).expect("event").is_job_create_of_unknown_outcome());
        let counts = job_creates(&[event.clone(), event, conflict]);
        assert_eq!(counts.get("j1"), Some(&2));
    }

    #[test]
    fn skips_other_stages_and_garbage() {
        assert_eq!(parse(&CREATE.replace("ResponseComplete", "ResponseStarted")), None);
        assert_eq!(parse("not json"), None);
    }
}
