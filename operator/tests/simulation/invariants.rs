//! The exactly-once invariants, checked after every step over the facts the server recorded
//! since the last check, and at the end of a run over every due window.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use sluice::api::{PipelineStatus, RunPhase};

use crate::model::{Fact, Server};

#[derive(Debug, Default)]
pub struct Invariants {
    seen: usize,
    creates: BTreeMap<String, u32>,
    /// Succeeded Jobs per (step, window).
    successes: BTreeMap<(String, (String, String)), Vec<String>>,
    /// Times each run id moved into recentRuns.
    recorded: BTreeMap<String, u32>,
    reported: BTreeMap<String, u32>,
    last_schedule: Option<Timestamp>,
    /// Run ids ever recorded finished (recentRuns) or not run (skippedRuns) in a written status.
    pub ever_recorded: BTreeSet<String>,
    /// Run ids ever recorded Skipped in a written status.
    pub ever_skipped: BTreeSet<String>,
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
                Fact::Created { name } => {
                    let n = self.creates.entry(name.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("Job name {name} was created {n} times"));
                    }
                }
                Fact::Deleted { name, run_id, recorded, foreign } => {
                    if !foreign && !recorded {
                        return Err(format!(
                            "Job {name} was deleted while its run {run_id} is neither recorded finished, skipped \
                             nor replaced in the current status"
                        ));
                    }
                }
                Fact::Succeeded { name, step, window } => {
                    let jobs = self.successes.entry((step.clone(), window.clone())).or_default();
                    jobs.push(name.clone());
                    if jobs.len() > 1 {
                        return Err(format!(
                            "step {step} of window [{}, {}) succeeded {} times: {jobs:?}",
                            window.0,
                            window.1,
                            jobs.len()
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
        Ok(())
    }
}
