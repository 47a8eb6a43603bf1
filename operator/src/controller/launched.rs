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

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::plan::runs::ObservedJob;

/// How long a created Job stands in for the cache before the cache must show it.
pub const LAUNCHED_TTL: SignedDuration = SignedDuration::from_secs(60);

/// Created Jobs by owner UID, each with when it was created.
#[derive(Debug, Default)]
pub struct Launched(Mutex<HashMap<String, Vec<ObservedJob>>>);

impl Launched {
    /// Remembers `job`, just created for the owner with UID `owner_uid`.
    pub fn remember(&self, owner_uid: &str, job: ObservedJob) {
        let mut by_owner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let jobs = by_owner.entry(owner_uid.to_string()).or_default();
        jobs.retain(|j| j.name != job.name);
        jobs.push(job);
    }

    /// Forgets every remembered Job named `name` (deleted by this process). A namesake in
    /// another namespace forgotten with it is only asked for again, and its create claimed.
    pub fn forget(&self, name: &str) {
        let mut by_owner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        by_owner.retain(|_, jobs| {
            jobs.retain(|j| j.name != name);
            !jobs.is_empty()
        });
    }

    /// Adds to `observed` (the owner's Jobs from the cache) the remembered Jobs of `owner_uid`
    /// whose names `cached` (every Job name the cache shows for the owner) lacks. Forgets first
    /// those the cache shows and those older than [`LAUNCHED_TTL`] at `now`.
    pub fn fill_in(&self, owner_uid: &str, cached: &BTreeSet<&str>, observed: &mut Vec<ObservedJob>, now: Timestamp) {
        let mut by_owner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = by_owner.get_mut(owner_uid) else { return };
        jobs.retain(|j| !cached.contains(j.name.as_str()) && now.duration_since(j.created) < LAUNCHED_TTL);
        observed.extend(jobs.iter().cloned());
        if jobs.is_empty() {
            by_owner.remove(owner_uid);
        }
    }

    /// Owners with remembered Jobs.
    pub fn owners(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
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
        launched.fill_in("uid", &BTreeSet::new(), &mut seen, now);
        assert_eq!(names(&seen), ["a", "b"]);
        // Another owner's reconcile sees none of them.
        let mut other = vec![];
        launched.fill_in("other", &BTreeSet::new(), &mut other, now);
        assert!(other.is_empty());
        // The cache shows "a" (say being deleted, so not among the observed): it is forgotten.
        let mut seen = vec![];
        launched.fill_in("uid", &BTreeSet::from(["a"]), &mut seen, now);
        assert_eq!(names(&seen), ["b"]);
        let mut seen = vec![];
        launched.fill_in("uid", &BTreeSet::new(), &mut seen, now);
        assert_eq!(names(&seen), ["b"], "forgotten once shown, never back");
    }

    #[test]
    fn a_job_the_cache_never_shows_is_forgotten_after_the_ttl_or_when_deleted() {
        let launched = Launched::default();
        launched.remember("uid", job("a", "2026-11-24T11:00:00Z"));
        launched.remember("uid", job("b", "2026-11-24T11:00:30Z"));
        let mut seen = vec![];
        launched.fill_in("uid", &BTreeSet::new(), &mut seen, ts("2026-11-24T11:00:00Z") + LAUNCHED_TTL);
        assert_eq!(names(&seen), ["b"]);
        launched.forget("b");
        let mut seen = vec![];
        launched.fill_in("uid", &BTreeSet::new(), &mut seen, ts("2026-11-24T11:00:31Z"));
        assert!(seen.is_empty());
        assert_eq!(launched.owners(), 0, "an owner with nothing remembered is dropped");
    }
}
