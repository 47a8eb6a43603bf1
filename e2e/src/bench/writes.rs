//! API writes counted from the API server's audit log, by user agent: what each arm's
//! controller wrote in its namespace (Job creates and deletes, status writes, Events).

use jiff::Timestamp;
use serde::Serialize;

use crate::audit::AuditEvent;

/// Successful writes of one controller, by kind.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Writes {
    pub job_creates: usize,
    pub job_deletes: usize,
    pub status: usize,
    pub events: usize,
    pub other: usize,
}

impl Writes {
    pub fn total(&self) -> usize {
        self.job_creates + self.job_deletes + self.status + self.events + self.other
    }

    /// The writes the issue counts per launched Job: Job creates and deletes and status writes
    /// (and anything else but Events, which are reported beside).
    pub fn object_writes(&self) -> usize {
        self.total() - self.events
    }
}

/// The Sluice operator's user agent (`sluice-operator/<version> (<replica>)`).
pub fn is_sluice(user_agent: &str) -> bool {
    user_agent.starts_with("sluice-operator/")
}

/// The CronJob controller's user agent (kube-controller-manager's, ending in its name).
pub fn is_cronjob_controller(user_agent: &str) -> bool {
    user_agent.starts_with("kube-controller-manager/") && user_agent.ends_with("/cronjob-controller")
}

/// The successful writes in `events` whose user agent `agent` accepts, received in
/// [`from`, `to`).
pub fn count(events: &[AuditEvent], agent: impl Fn(&str) -> bool, from: Timestamp, to: Timestamp) -> Writes {
    let mut writes = Writes::default();
    let relevant = events.iter().filter(|e| e.is_successful_write() && agent(&e.user_agent));
    for e in relevant.filter(|e| e.received >= from && e.received < to) {
        match (e.resource.as_str(), e.subresource.as_str(), e.verb.as_str()) {
            ("jobs", "", "create") => writes.job_creates += 1,
            ("jobs", "", "delete") => writes.job_deletes += 1,
            (_, "status", _) => writes.status += 1,
            ("events", _, _) => writes.events += 1,
            _ => writes.other += 1,
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(resource: &str, subresource: &str, verb: &str, agent: &str) -> AuditEvent {
        let at: Timestamp = "2026-12-01T00:00:01Z".parse().unwrap();
        AuditEvent {
            verb: verb.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: "ns".into(),
            name: "x".into(),
            code: 200,
            user_agent: agent.into(),
            received: at,
            completed: at,
        }
    }

    #[test]
    fn counts_by_kind_and_agent() {
        let cron = "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc/cronjob-controller";
        let events = [
            event("jobs", "", "create", "sluice-operator/0.1.0 (a)"),
            event("pipelines", "status", "patch", "sluice-operator/0.1.0 (a)"),
            event("jobs", "", "create", cron),
            event("cronjobs", "status", "update", cron),
            event("events", "", "create", cron),
            event("jobs", "", "create", "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc/job-controller"),
        ];
        let (from, to) = ("2026-12-01T00:00:00Z".parse().unwrap(), "2026-12-01T00:00:02Z".parse().unwrap());
        let sluice = count(&events, is_sluice, from, to);
        assert_eq!((sluice.job_creates, sluice.status, sluice.total()), (1, 1, 2));
        let cronjobs = count(&events, is_cronjob_controller, from, to);
        assert_eq!((cronjobs.job_creates, cronjobs.status, cronjobs.events, cronjobs.total()), (1, 1, 1, 3));
        assert_eq!(count(&events, is_sluice, to, to).total(), 0);
    }
}
