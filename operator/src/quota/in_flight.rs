//! Jobs whose pods the ResourceQuota has not counted yet.
//!
//! The quota admission counts a pod in `status.used` when the API server admits the pod, not
//! when its Job is created: between the two, the Job controller still has to notice the Job and
//! create the pod. A backfill that only looked at `used` would admit the same headroom twice.
//! So every Sluice Job that will create a pod but has not yet is charged as "uncounted":
//! - Jobs in the watch cache that show no pod yet ([`pod_charge`] is `NotYetCreated`);
//! - Jobs this process created that the cache does not show yet ([`InFlight`]).
//!
//! A Job that shows an active pod is taken to be counted in `used`: the reconciler reads the
//! quota from the API server after reading the Job cache, and the quota admission updates `used`
//! before the pod exists. (The quota controller may still overwrite `used` with a count from a
//! stale informer; the admission rule in [`crate::quota`] bounds that with Sluice's own count.)
//! Other errors go the safe way: a pod counted in `used` and also as uncounted is charged twice,
//! briefly.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;

use super::demand::PodDemand;
use crate::schedule::Window;

/// How long a created Job is remembered when the watch cache does not show it.
pub const IN_FLIGHT_TTL: SignedDuration = SignedDuration::from_secs(120);

/// What the quota counts of a Job's pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodCharge {
    /// The Job will create a pod that the quota has not counted yet.
    NotYetCreated,
    /// The pod exists and is counted in the quota's `used`.
    Counted,
    /// The pod finished (or never will run): the quota releases it.
    Released,
}

/// How the quota counts the pod of `job`, from the Job's status. Backoff limit 0 and one
/// completion: one pod per Job.
pub fn pod_charge(job: &Job) -> PodCharge {
    let status = job.status.as_ref();
    let finished = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")));
    if finished || job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return PodCharge::Released;
    }
    let count = |v: Option<i32>| v.unwrap_or(0);
    let active = status.map_or(0, |s| count(s.active) + count(s.ready) + count(s.terminating));
    if active > 0 {
        return PodCharge::Counted;
    }
    let uncounted_terminated = status.and_then(|s| s.uncounted_terminated_pods.as_ref()).is_some_and(|u| {
        u.succeeded.as_ref().is_some_and(|v| !v.is_empty()) || u.failed.as_ref().is_some_and(|v| !v.is_empty())
    });
    let terminated = status.map_or(0, |s| count(s.succeeded) + count(s.failed));
    if terminated > 0 || uncounted_terminated { PodCharge::Released } else { PodCharge::NotYetCreated }
}

/// A Job this process created for a backfill partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// UID of the Backfill that owns the Job.
    pub owner_uid: String,
    pub run_id: String,
    pub step: String,
    pub attempt: u32,
    pub window: Window,
    /// What its pod will be charged.
    pub demand: PodDemand,
    pub created: Timestamp,
}

/// Jobs created by this process that the watch cache has not shown yet, by (namespace, name).
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    entries: BTreeMap<(String, String), Launch>,
}

impl InFlight {
    /// Remembers a created Job.
    pub fn add(&mut self, namespace: &str, name: &str, launch: Launch) {
        self.entries.insert((namespace.to_string(), name.to_string()), launch);
    }

    /// Forgets the Jobs that `cached(namespace, name)` says the cache shows, and those older than
    /// [`IN_FLIGHT_TTL`] (a Job the cache never shows was deleted at once).
    pub fn prune(&mut self, now: Timestamp, cached: impl Fn(&str, &str) -> bool) {
        self.entries
            .retain(|(ns, name), launch| now.duration_since(launch.created) < IN_FLIGHT_TTL && !cached(ns, name));
    }

    /// The remembered Jobs of `namespace`, by name.
    pub fn in_namespace<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = (&'a str, &'a Launch)> + 'a {
        self.entries.iter().filter(move |((ns, _), _)| ns == namespace).map(|((_, name), l)| (name.as_str(), l))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "j"}, "spec": {"template": {}}, "status": status}),
        )
        .unwrap()
    }

    #[test]
    fn pod_charge_follows_the_job_status() {
        assert_eq!(pod_charge(&job(serde_json::json!({}))), PodCharge::NotYetCreated);
        assert_eq!(pod_charge(&job(serde_json::json!({"active": 0}))), PodCharge::NotYetCreated);
        assert_eq!(pod_charge(&job(serde_json::json!({"active": 1}))), PodCharge::Counted);
        assert_eq!(pod_charge(&job(serde_json::json!({"ready": 1}))), PodCharge::Counted);
        assert_eq!(pod_charge(&job(serde_json::json!({"succeeded": 1}))), PodCharge::Released);
        assert_eq!(
            pod_charge(&job(serde_json::json!({"uncountedTerminatedPods": {"failed": ["uid"]}}))),
            PodCharge::Released
        );
        let complete = serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}], "active": 1});
        assert_eq!(pod_charge(&job(complete)), PodCharge::Released);
        let mut suspended = job(serde_json::json!({}));
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(pod_charge(&suspended), PodCharge::Released);
    }

    #[test]
    fn in_flight_jobs_are_forgotten_once_cached_or_expired() {
        let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let launch = Launch {
            owner_uid: "u".into(),
            run_id: "r".into(),
            step: "s".into(),
            attempt: 0,
            window: Window { start: t0, end: t0 },
            demand: PodDemand::default(),
            created: t0,
        };
        let mut ledger = InFlight::default();
        ledger.add("a", "seen", launch.clone());
        ledger.add("a", "unseen", launch.clone());
        ledger.add("b", "other", launch);
        ledger.prune(t0, |_, name| name == "seen");
        assert_eq!(ledger.in_namespace("a").map(|(n, _)| n).collect::<Vec<_>>(), ["unseen"]);
        assert_eq!(ledger.len(), 2);
        ledger.prune(t0 + IN_FLIGHT_TTL, |_, _| false);
        assert!(ledger.is_empty());
    }
}
