//! Pipeline Jobs this process created that the Job cache may not show yet.
//!
//! A Pipeline's own status write wakes its next reconcile, often before the watch has delivered
//! the Jobs that write was made for. Deciding on that cache alone asks for the same Jobs again:
//! harmless (the names are deterministic, the create meets `AlreadyExists` and the claim checks
//! the owner), but it costs a fencing status write and a refused create per run. So each created
//! Job is remembered, as the decision observes it, until the cache shows that name (in any
//! state, being deleted too) or [`LAUNCHED_TTL`] has passed.
//!
//! Remembering a Job errs only toward waiting: a run whose remembered Job vanished before any
//! cache showed it waits up to the TTL, then asks for it again under the same name.
//!
//! Likewise each Job this process deleted is hidden from the decisions until the cache drops
//! it (or the TTL passes): a decision that still saw it would delete it again, behind a fencing
//! status write. Only Jobs a decision chose to delete are hidden, and a decision deletes only
//! Jobs whose facts its status already holds (history, leftovers), so hiding one is the cache
//! having caught up.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::plan::runs::ObservedJob;

/// How long a created Job stands in for the cache before the cache must show it.
pub const LAUNCHED_TTL: SignedDuration = SignedDuration::from_secs(60);

/// How long a step whose Job create the API server refused is not asked for again: each ask is
/// a fencing status write, and that write wakes the next reconcile at once.
pub const REFUSED_BACKOFF: SignedDuration = SignedDuration::from_secs(30);

/// Created Jobs by owner UID, each with when it was created; deleted Jobs by namespace and
/// name, with when they were deleted; steps whose create was refused, by owner UID and step,
/// with when.
#[derive(Debug, Default)]
pub struct Launched {
    created: Mutex<HashMap<String, Vec<ObservedJob>>>,
    deleted: Mutex<HashMap<(String, String), Timestamp>>,
    refused: Mutex<HashMap<(String, String), Timestamp>>,
}

impl Launched {
    /// Remembers `job`, just created for the owner with UID `owner_uid`.
    pub fn remember(&self, owner_uid: &str, job: ObservedJob) {
        let mut by_owner = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let jobs = by_owner.entry(owner_uid.to_string()).or_default();
        jobs.retain(|j| j.name != job.name);
        jobs.push(job);
    }

    /// Records that this process deleted the Job `namespace`/`name` at `now`: it is hidden from
    /// [`Self::fill_in`] until the cache drops it, and no longer stands in for the cache.
    pub fn deleted(&self, namespace: &str, name: &str, now: Timestamp) {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, jobs| {
            jobs.retain(|j| j.name != name);
            !jobs.is_empty()
        });
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.insert((namespace.to_string(), name.to_string()), now);
    }

    /// Adds to `observed` (the owner's Jobs in `namespace` from the cache) the remembered Jobs of
    /// `owner_uid` whose names `cached` (every Job name the cache shows for the owner) lacks, and
    /// takes out those this process deleted. Forgets first the created Jobs the cache shows, the
    /// deleted ones it no longer shows, and both older than [`LAUNCHED_TTL`] at `now`.
    pub fn fill_in(
        &self,
        owner_uid: &str,
        namespace: &str,
        cached: &BTreeSet<&str>,
        observed: &mut Vec<ObservedJob>,
        now: Timestamp,
    ) {
        let fresh = |at: Timestamp| now.duration_since(at) < LAUNCHED_TTL;
        {
            let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
            deleted.retain(|(ns, name), at| fresh(*at) && (ns != namespace || cached.contains(name.as_str())));
            observed.retain(|j| !deleted.contains_key(&(namespace.to_string(), j.name.clone())));
        }
        let mut by_owner = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = by_owner.get_mut(owner_uid) else { return };
        jobs.retain(|j| !cached.contains(j.name.as_str()) && fresh(j.created));
        observed.extend(jobs.iter().cloned());
        if jobs.is_empty() {
            by_owner.remove(owner_uid);
        }
    }

    /// Records that the API server refused a Job of step `step` of `owner_uid` at `now` (a
    /// quota, an admission webhook, a terminating namespace).
    pub fn refused(&self, owner_uid: &str, step: &str, now: Timestamp) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.insert((owner_uid.to_string(), step.to_string()), now);
    }

    /// The steps of `owner_uid` refused within [`REFUSED_BACKOFF`] before `now`: not launched
    /// yet (the reconcile looks again after the backoff). Forgets older refusals.
    pub fn backing_off(&self, owner_uid: &str, now: Timestamp) -> BTreeSet<String> {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.retain(|_, at| now.duration_since(*at) < REFUSED_BACKOFF);
        refused.keys().filter(|(uid, _)| uid == owner_uid).map(|(_, step)| step.clone()).collect()
    }

    /// Owners with remembered Jobs.
    pub fn owners(&self) -> usize {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::runs::JobState;
    use crate::schedule::Window;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job(name: &str, created: &str) -> ObservedJob {
        let start = ts("2026-11-24T10:00:00Z");
        ObservedJob {
            name: name.to_string(),
            run_id: "r".to_string(),
            step: "s".to_string(),
            attempt: 0,
            window: Window { start, end: start + SignedDuration::from_hours(1) },
            created: ts(created),
            state: JobState::Active,
        }
    }

    fn names(jobs: &[ObservedJob]) -> Vec<&str> {
        jobs.iter().map(|j| j.name.as_str()).collect()
    }

    #[test]
    fn a_created_job_stands_in_until_the_cache_shows_its_name() {
        let launched = Launched::default();
        launched.remember("uid", job("a", "2026-11-24T11:00:00Z"));
        launched.remember("uid", job("b", "2026-11-24T11:00:00Z"));
        let now = ts("2026-11-24T11:00:01Z");
        let mut seen = vec![];
        launched.fill_in("uid", "ns", &BTreeSet::new(), &mut seen, now);
        assert_eq!(names(&seen), ["a", "b"]);
        // Another owner's reconcile sees none of them.
        let mut other = vec![];
        launched.fill_in("other", "ns", &BTreeSet::new(), &mut other, now);
        assert!(other.is_empty());
        // The cache shows "a" (say being deleted, so not among the observed): it is forgotten.
        let mut seen = vec![];
        launched.fill_in("uid", "ns", &BTreeSet::from(["a"]), &mut seen, now);
        assert_eq!(names(&seen), ["b"]);
        let mut seen = vec![];
        launched.fill_in("uid", "ns", &BTreeSet::new(), &mut seen, now);
        assert_eq!(names(&seen), ["b"], "forgotten once shown, never back");
    }

    #[test]
    fn a_job_the_cache_never_shows_is_forgotten_after_the_ttl_or_when_deleted() {
        let launched = Launched::default();
        launched.remember("uid", job("a", "2026-11-24T11:00:00Z"));
        launched.remember("uid", job("b", "2026-11-24T11:00:30Z"));
        let mut seen = vec![];
        launched.fill_in("uid", "ns", &BTreeSet::new(), &mut seen, ts("2026-11-24T11:00:00Z") + LAUNCHED_TTL);
        assert_eq!(names(&seen), ["b"]);
        launched.deleted("ns", "b", ts("2026-11-24T11:00:31Z"));
        let mut seen = vec![];
        launched.fill_in("uid", "ns", &BTreeSet::new(), &mut seen, ts("2026-11-24T11:00:31Z"));
        assert!(seen.is_empty());
        assert_eq!(launched.owners(), 0, "an owner with nothing remembered is dropped");
    }

    #[test]
    fn a_refused_step_backs_off_for_its_owner_only() {
        let launched = Launched::default();
        let now = ts("2026-11-24T11:00:00Z");
        launched.refused("uid", "extract", now);
        assert_eq!(launched.backing_off("uid", now), BTreeSet::from(["extract".to_string()]));
        assert!(launched.backing_off("other", now).is_empty());
        assert!(launched.backing_off("uid", now + REFUSED_BACKOFF).is_empty());
    }

    #[test]
    fn a_deleted_job_is_hidden_until_the_cache_drops_it() {
        let launched = Launched::default();
        let now = ts("2026-11-24T11:00:00Z");
        launched.deleted("ns", "old", now);
        let cached = BTreeSet::from(["old", "kept"]);
        let mut seen = vec![job("old", "2026-11-24T10:00:00Z"), job("kept", "2026-11-24T10:00:00Z")];
        launched.fill_in("uid", "ns", &cached, &mut seen, now);
        assert_eq!(names(&seen), ["kept"], "the cache still shows it: hidden");
        // A namesake in another namespace is not hidden.
        let mut elsewhere = vec![job("old", "2026-11-24T10:00:00Z")];
        launched.fill_in("uid", "other", &BTreeSet::from(["old"]), &mut elsewhere, now);
        assert_eq!(names(&elsewhere), ["old"]);
        // Once the cache dropped it, the name is forgotten: a new Job under it is seen.
        launched.fill_in("uid", "ns", &BTreeSet::from(["kept"]), &mut vec![], now);
        let mut again = vec![job("old", "2026-11-24T11:00:01Z")];
        launched.fill_in("uid", "ns", &BTreeSet::from(["old"]), &mut again, now);
        assert_eq!(names(&again), ["old"]);
    }
}
