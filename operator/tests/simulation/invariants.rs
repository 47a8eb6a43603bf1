//! The exactly-once and quota invariants, checked after every step over the facts the server
//! recorded since the last check and over the server's state, and at the end of a run over
//! every due window and every Backfill's range.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use kube::ResourceExt;
use sluice::api::{BackfillStatus, PipelineStatus, Reprocess, RunPhase};

use crate::model::{self, Fact, Server};

/// (step, window (start, end), owner UID, late pass or "").
pub type SuccessKey = (String, (String, String), String, String);

#[derive(Debug, Default)]
pub struct Invariants {
    seen: usize,
    /// The owners that created each Job name, in order.
    creates: BTreeMap<String, Vec<String>>,
    /// Succeeded Jobs per (step, window, owner UID, late pass): a window's own run and each of
    /// its late passes succeed once each.
    pub successes: BTreeMap<SuccessKey, Vec<String>>,
    /// Backfills whose `Complete` condition has been True.
    completed: BTreeSet<String>,
    /// Whether the checks between Backfills (the quota bounds, one owner runs a window at a
    /// time, no rerun of a window another records succeeded) apply: not with two Backfills and
    /// two replicas acting at once, which `controller::backfill` documents as not coordinated
    /// ("run one leader").
    pub coordinated: bool,
    /// Times each run id moved into recentRuns.
    recorded: BTreeMap<String, u32>,
    reported: BTreeMap<String, u32>,
    last_schedule: Option<Timestamp>,
    /// Run ids ever recorded finished (recentRuns) or not run (skippedRuns) in a written status.
    pub ever_recorded: BTreeSet<String>,
    /// Run ids ever recorded Skipped in a written status.
    pub ever_skipped: BTreeSet<String>,
    /// Every `status.lastScheduleTime` ever written: the newest tick of a decision, the one
    /// whose late passes that decision starts.
    pub schedule_times: BTreeSet<Timestamp>,
}

fn finished_ids(status: Option<&PipelineStatus>) -> BTreeSet<&str> {
    status
        .map(|s| s.recent_runs.iter().filter(|r| matches!(r.phase, RunPhase::Succeeded | RunPhase::Failed)))
        .into_iter()
        .flatten()
        .map(|r| r.id.as_str())
        .collect()
}

impl Invariants {
    /// Checks the facts recorded since the last call.
    pub fn check(&mut self, server: &Server) -> Result<(), String> {
        for fact in &server.facts[self.seen..] {
            self.seen += 1;
            match fact {
                Fact::Created {
                    name,
                    owner,
                    window,
                    busy_elsewhere,
                    busy_beside,
                    succeeded_elsewhere,
                    pipeline_records_run,
                } => {
                    if !busy_beside.is_empty() {
                        return Err(format!(
                            "late-pass Job {name} was created for window [{}, {}) while another run of the window \
                             runs: {busy_beside:?}",
                            window.0, window.1
                        ));
                    }
                    let creators = self.creates.entry(name.clone()).or_default();
                    creators.push(owner.clone());
                    let (n, first) = (creators.len(), creators[0].clone());
                    let backfill = server.backfills.values().find(|b| b.uid().as_deref() == Some(owner.as_str()));
                    // By design (`plan::backfill_records`): a Backfill uses the Pipeline's run id
                    // of a window whose record the Pipeline has pruned (beyond its recentRuns),
                    // so it may create a name again whose Job the Pipeline deleted long ago.
                    let pruned = backfill.is_some() && first == "pipeline-uid" && !pipeline_records_run;
                    // Not coordinated: two Backfills on two replicas may split a window's Jobs.
                    let split = !self.coordinated && backfill.is_some() && first != *owner && first != "pipeline-uid";
                    if n > 1 && !pruned && !split {
                        return Err(format!("Job name {name} was created {n} times"));
                    }
                    if !busy_elsewhere.is_empty() && self.coordinated {
                        return Err(format!(
                            "Job {name} was created for window [{}, {}) while other owners' Jobs of the window \
                             run: {busy_elsewhere:?}",
                            window.0, window.1
                        ));
                    }
                    let selective = backfill.is_some_and(|b| b.spec.reprocess != Reprocess::All);
                    if selective && !succeeded_elsewhere.is_empty() && self.coordinated {
                        return Err(format!(
                            "Job {name} was created for window [{}, {}) that {succeeded_elsewhere:?} record(s) as \
                             succeeded (reprocess is not All)",
                            window.0, window.1
                        ));
                    }
                }
                Fact::Deleted { name, run_id, recorded, owner } => {
                    // A Pipeline's record may have been pruned since it was written.
                    let pruned = owner == "pipeline-uid" && self.ever_recorded.contains(run_id);
                    if !recorded && !pruned {
                        return Err(format!(
                            "Job {name} (owner {owner}) was deleted while its run {run_id} is not recorded in its \
                             owner's current status (recentRuns/skippedRuns, or processedRanges)"
                        ));
                    }
                }
                Fact::Succeeded { name, step, window, pass, owner } => {
                    let key = (step.clone(), window.clone(), owner.clone(), pass.clone());
                    let jobs = self.successes.entry(key).or_default();
                    jobs.push(name.clone());
                    if jobs.len() > 1 {
                        let what = if pass.is_empty() { String::new() } else { format!(" (late pass {pass})") };
                        return Err(format!(
                            "step {step} of window [{}, {}){what} succeeded {} times for owner {owner}: {jobs:?}",
                            window.0,
                            window.1,
                            jobs.len()
                        ));
                    }
                }
                Fact::BackfillStatus { name, before, after } => {
                    let complete = |s: Option<&BackfillStatus>| {
                        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Complete"))
                            .is_some_and(|c| c.status == "True")
                    };
                    if complete(Some(after)) {
                        self.completed.insert(name.clone());
                    } else if self.completed.contains(name) {
                        return Err(format!(
                            "Backfill {name}: Complete went from True (ever) to {} without a spec change (before: {})",
                            after
                                .conditions
                                .iter()
                                .find(|c| c.type_ == "Complete")
                                .map_or("unset", |c| c.status.as_str()),
                            complete(before.as_deref())
                        ));
                    }
                }
                Fact::Status { before, after } => {
                    let old = finished_ids(before.as_deref());
                    for id in finished_ids(Some(after)).difference(&old) {
                        let n = self.recorded.entry(id.to_string()).or_default();
                        *n += 1;
                        if *n > 1 {
                            return Err(format!("run {id} was recorded finished {n} times in status.recentRuns"));
                        }
                    }
                    self.ever_recorded.extend(finished_ids(Some(after)).iter().map(|s| s.to_string()));
                    self.ever_recorded.extend(after.skipped_runs.iter().map(|r| r.id.clone()));
                    let skipped = after.skipped_runs.iter().filter(|r| r.phase == RunPhase::Skipped);
                    self.ever_skipped.extend(skipped.map(|r| r.id.clone()));
                    if let Some(t) = after.last_schedule_time.as_ref().map(|t| t.0) {
                        self.schedule_times.insert(t);
                        if self.last_schedule.is_some_and(|last| t < last) {
                            return Err(format!(
                                "status.lastScheduleTime moved back from {} to {t}",
                                self.last_schedule.unwrap()
                            ));
                        }
                        self.last_schedule = Some(t);
                    } else if let Some(last) = self.last_schedule {
                        return Err(format!("status.lastScheduleTime was {last} and is now unset"));
                    }
                }
                Fact::Reported { run_id } => {
                    let n = self.reported.entry(run_id.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("run {run_id} was reported finished {n} times (plan.finished)"));
                    }
                }
            }
        }
        if self.coordinated { self.coordinated(server) } else { Ok(()) }
    }

    /// What the unfinished Jobs' pods request, per owner and in all: each Backfill's within
    /// `hard - reserve`, all of Sluice's within `hard`.
    fn coordinated(&self, server: &Server) -> Result<(), String> {
        let hard = server.hard_milli();
        let mut by_owner: BTreeMap<String, i64> = BTreeMap::new();
        for job in server.jobs.values().filter(|j| !model::finished(j)) {
            *by_owner.entry(model::owner_uid(job)).or_default() += model::job_milli(job);
        }
        for b in server.backfills.values() {
            let reserve = b.spec.budget.as_ref().and_then(|b| b.reserve.as_ref()).map_or(0, |r| {
                sluice::quota::parse_amounts(r, sluice::quota::Round::Up)
                    .unwrap_or_default()
                    .get("requests.cpu")
                    .copied()
                    .unwrap_or(0) as i64
            });
            let own = by_owner.get(b.uid().as_deref().unwrap_or_default()).copied().unwrap_or(0);
            if own > hard - reserve {
                return Err(format!(
                    "Backfill {}: its unfinished Jobs request {own}m, above hard - reserve = {hard}m - {reserve}m",
                    b.name_any()
                ));
            }
        }
        let total: i64 = by_owner.values().sum();
        if total > hard {
            return Err(format!(
                "Sluice's unfinished Jobs request {total}m, above the quota's hard {hard}m: {by_owner:?}"
            ));
        }
        Ok(())
    }
}
