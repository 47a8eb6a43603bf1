//! After the decision: what the API server answered to each planned create, and what that
//! changes of the plan before its status is written (partitions that did not start, names held
//! by other owners). Pure.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::summary::{self, reasons};
use super::{JobToCreate, MAX_NAME_CONFLICTS, NAME_CONFLICT_RETRY, Plan, TAKEN_RETRY};
use crate::api::BackfillStatus;
use crate::api::conditions;

/// What the API server answered to one planned Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// Created now, or it existed already as this backfill's.
    Yes,
    /// The name is held by a Sluice Job of the Pipeline (its own run of the window, or another
    /// backfill's) that the caches do not show yet.
    TakenByRun,
    /// The name is held by a Job that is neither this backfill's nor a Sluice Job of the
    /// Pipeline.
    Squatted,
    /// Refused for another reason (reported as an Event).
    Refused,
}

/// The creates of one plan as they are made, and what they change of the plan.
///
/// A name that another owner holds is never "launched": no further Job of that partition is
/// created in this round (so a window's Jobs are not split between two owners), the partition
/// is not admitted, and one held by a Job that is not Sluice's is shown (`NameConflict`,
/// `status.nameConflicts`) and looked at again after [`NAME_CONFLICT_RETRY`]: such a Job does
/// not go away by itself, and its deletion wakes nothing (Sluice watches only its own Jobs),
/// so a fixed retry of a minute bounds both the cost (one read a minute) and the delay once it
/// is gone; an exponential backoff would save nothing worth its per-object state.
#[derive(Clone, Debug, Default)]
pub struct CreateRound {
    /// Runs one of whose Job names another owner holds.
    held: BTreeSet<String>,
    /// Runs of which a Job was created (or already was this backfill's).
    created: BTreeSet<String>,
    /// Names held by Jobs that are not Sluice's, in the order found.
    squatted: Vec<String>,
    taken_by_run: bool,
}

/// A plan after its creates.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// The status that records the creates' outcome (the plan's when every create went through).
    pub status: BackfillStatus,
    /// Partitions actually started.
    pub admitted: usize,
    /// Job names newly found held by Jobs that are not Sluice's: a Warning Event each.
    pub new_conflicts: Vec<String>,
    /// When to look again because of a taken name.
    pub retry: Option<SignedDuration>,
}

impl CreateRound {
    /// Whether to create `create`: not once another Job of its run was found held by another
    /// owner.
    pub fn attempt(&self, create: &JobToCreate) -> bool {
        !self.held.contains(&create.run_id)
    }

    /// Records what the API server answered to `create`, named `job`.
    pub fn record(&mut self, create: &JobToCreate, job: &str, outcome: Created) {
        match outcome {
            Created::Yes => {
                self.created.insert(create.run_id.clone());
            }
            Created::TakenByRun => {
                self.held.insert(create.run_id.clone());
                self.taken_by_run = true;
            }
            Created::Squatted => {
                self.held.insert(create.run_id.clone());
                if !self.squatted.iter().any(|s| s == job) {
                    self.squatted.push(job.to_string());
                }
            }
            Created::Refused => {}
        }
    }

    /// What the creates change of `plan`: partitions that did not start are pending again and
    /// not admitted; names held by Jobs that are not Sluice's are recorded and shown.
    pub fn settle(self, plan: &Plan, generation: Option<i64>, now: Timestamp) -> Settled {
        let mut status = plan.status.clone();
        let started = |run: &&String| self.created.contains(*run) && !self.held.contains(*run);
        let admitted = plan.admitted.iter().filter(started).count();
        let unstarted = plan.admitted.iter().filter(|r| !self.created.contains(*r)).count() as i64;
        if let Some(c) = status.partitions.as_mut().filter(|_| unstarted > 0) {
            // With a queue, new partitions were counted queued.
            let from_queued = unstarted.min(c.queued);
            c.queued -= from_queued;
            c.running = (c.running - (unstarted - from_queued)).max(0);
            c.pending += unstarted;
        }
        let known = &plan.status.name_conflicts;
        let new_conflicts: Vec<String> = self.squatted.iter().filter(|s| !known.contains(s)).cloned().collect();
        if !self.squatted.is_empty() {
            status.name_conflicts.extend(new_conflicts.iter().cloned());
            status.name_conflicts.truncate(MAX_NAME_CONFLICTS);
            let outranked = status
                .throttled
                .as_ref()
                .is_some_and(|t| t.reason == reasons::SUSPENDED || t.reason == reasons::INPUT_CONTRACT_VIOLATED);
            if !outranked {
                let throttle = summary::name_conflict(&self.squatted);
                let desired = summary::throttled_condition(Some(&throttle));
                status.conditions = conditions::merge(&status.conditions, &[desired], generation, &Time(now));
                status.throttled = Some(throttle);
            }
        }
        let mut retry = None;
        if !self.squatted.is_empty() {
            retry = Some(NAME_CONFLICT_RETRY);
        }
        if self.taken_by_run {
            retry = Some(TAKEN_RETRY);
        }
        Settled { status, admitted, new_conflicts, retry }
    }
}
