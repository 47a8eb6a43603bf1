//! Jobs whose pods the ResourceQuota has not counted yet.
//!
//! The quota admission counts a pod in `status.used` when the API server admits the pod, not
//! when its Job is created: between the two, the Job controller still has to notice the Job and
//! create the pod. A backfill that only looked at `used` would admit the same headroom twice.
//! So every Sluice Job that will create a pod but has not yet is charged as "uncounted":
//! - Jobs in the watch cache that show no pod yet ([`pod_charge`] is `NotYetCreated`);
//! - Jobs this process created that the cache does not show yet ([`InFlight`], the ledger the
//!   Job caps count from too).
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

/// Jobs created by this process that the watch cache has not shown yet, by (namespace, name):
/// the one ledger every create fills, seen two ways.
/// - The Job caps count every such Job (a Pipeline's or a Backfill's) for [`PENDING_TTL`], so
///   that two reconciles in a row cannot both take the last free slot ([`InFlight::pending`]).
/// - A backfill's quota admission charges the pods of Backfill Jobs ([`Launch`]) for
///   [`IN_FLIGHT_TTL`] ([`InFlight::in_namespace`]).
///
/// Each view forgets a Job once the cache it counts from shows it ([`InFlight::prune`],
/// [`InFlight::prune_pending`]); an entry both views forgot is dropped.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    entries: BTreeMap<(String, String), Entry>,
}

/// One created Job.
#[derive(Clone, Debug)]
struct Entry {
    created: Timestamp,
    /// Still counted against the Job caps.
    pending: bool,
    /// Its pod's charge, for a Backfill Job the quota view has not forgotten.
    launch: Option<Launch>,
}

/// How long a created Job is counted against the Job caps before the cache must show it.
pub const PENDING_TTL: SignedDuration = SignedDuration::from_secs(60);

impl InFlight {
    /// Remembers a created Backfill Job, for both views.
    pub fn add(&mut self, namespace: &str, name: &str, launch: Launch) {
        let entry = Entry { created: launch.created, pending: true, launch: Some(launch) };
        self.entries.insert((namespace.to_string(), name.to_string()), entry);
    }

    /// Remembers a created Job that only the Job caps count (a Pipeline's).
    pub fn add_job(&mut self, namespace: &str, name: &str, created: Timestamp) {
        let entry = Entry { created, pending: true, launch: None };
        self.entries.insert((namespace.to_string(), name.to_string()), entry);
    }

    /// The quota view forgets the Jobs that `cached(namespace, name)` says the cache shows, and
    /// those older than [`IN_FLIGHT_TTL`] (a Job the cache never shows was deleted at once).
    /// Jobs older than [`PENDING_TTL`] leave the Job caps' view too, so that the ledger stays
    /// bounded when no caps are set (and nothing prunes that view).
    pub fn prune(&mut self, now: Timestamp, cached: impl Fn(&str, &str) -> bool) {
        for ((ns, name), entry) in &mut self.entries {
            let age = now.duration_since(entry.created);
            if age >= IN_FLIGHT_TTL || cached(ns, name) {
                entry.launch = None;
            }
            if age >= PENDING_TTL {
                entry.pending = false;
            }
        }
        self.drop_forgotten();
    }

    /// The Job caps' view forgets the Jobs that `cached(namespace, name)` says the cache shows,
    /// and those older than [`PENDING_TTL`].
    pub fn prune_pending(&mut self, now: Timestamp, cached: impl Fn(&str, &str) -> bool) {
        for ((ns, name), entry) in &mut self.entries {
            if now.duration_since(entry.created) >= PENDING_TTL || cached(ns, name) {
                entry.pending = false;
            }
        }
        self.drop_forgotten();
    }

    fn drop_forgotten(&mut self) {
        self.entries.retain(|_, e| e.pending || e.launch.is_some());
    }

    /// The Backfill Jobs of `namespace` the quota view remembers, by name.
    pub fn in_namespace<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = (&'a str, &'a Launch)> + 'a {
        self.entries
            .iter()
            .filter(move |((ns, _), _)| ns == namespace)
            .filter_map(|((_, name), e)| Some((name.as_str(), e.launch.as_ref()?)))
    }

    /// Jobs the Job caps' view counts: in `namespace`, and in total.
    pub fn pending(&self, namespace: &str) -> (usize, usize) {
        let pending = || self.entries.iter().filter(|(_, e)| e.pending);
        (pending().filter(|((ns, _), _)| ns == namespace).count(), pending().count())
    }

    /// Jobs remembered by either view.
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
        assert_eq!(ledger.in_namespace("b").count(), 1);
        assert_eq!(ledger.len(), 3, "the Job caps have not pruned yet");
        // The Job caps still count them until they see them or PENDING_TTL passes...
        assert_eq!(ledger.pending("a"), (2, 3));
        ledger.prune_pending(t0, |_, name| name == "unseen");
        assert_eq!(ledger.pending("a"), (1, 2));
        ledger.prune_pending(t0 + PENDING_TTL, |_, _| false);
        assert_eq!(ledger.pending("a"), (0, 0));
        // ...and the quota view until IN_FLIGHT_TTL.
        assert_eq!(ledger.in_namespace("a").count(), 1);
        ledger.prune(t0 + IN_FLIGHT_TTL, |_, _| false);
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_job_only_the_caps_count_is_not_charged_to_the_quota() {
        let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let mut ledger = InFlight::default();
        ledger.add_job("a", "pipeline-job", t0);
        assert_eq!(ledger.pending("a"), (1, 1));
        assert_eq!(ledger.in_namespace("a").count(), 0);
        // The quota view's prune does not end the caps' count.
        ledger.prune(t0, |_, _| true);
        assert_eq!(ledger.pending("a"), (1, 1));
        ledger.prune_pending(t0, |_, _| true);
        assert!(ledger.is_empty());
    }

    #[test]
    fn without_caps_the_quota_views_prune_bounds_the_ledger() {
        let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let mut ledger = InFlight::default();
        ledger.add_job("a", "pipeline-job", t0);
        ledger.prune(t0 + PENDING_TTL - SignedDuration::from_secs(1), |_, _| false);
        assert_eq!(ledger.pending("a"), (1, 1), "still counted within its TTL");
        ledger.prune(t0 + PENDING_TTL, |_, _| false);
        assert!(ledger.is_empty());
    }
}
