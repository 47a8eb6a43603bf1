//! Which windows are "already recorded", and so which ones `reprocess` selects. Pure.
//!
//! A run of a window is recorded by:
//! - the Pipeline's status: `activeRuns` (in progress), `queuedWindows` (waiting for a slot:
//!   the Pipeline will start them under its own Job names, so they are busy like running ones)
//!   and its finished records (with phase; Skipped and Replaced ones mean "not succeeded");
//! - the Jobs that exist for the window (Sluice Jobs of the same Pipeline, owned by the
//!   Pipeline, by another Backfill, or by an owner that is gone);
//! - the status of other Backfills of the same Pipeline: `processedRanges` (done with the
//!   window), `succeededRanges` and `failedRanges`.
//!
//! A window with a run in progress elsewhere is *busy*: whatever `reprocess` says, it is not
//! started while another run may still write the same partition; it is looked at again later.
//! Otherwise `Missing` selects windows with no recorded success, `Failed` windows with a
//! recorded failure and no recorded success, and `All` every window.
//!
//! A late pass of the Pipeline (`spec.lateness`) in progress makes its window busy like any
//! run; its finished record does not count as the window's success or failure (it re-ran only
//! the steps that opted in), so `reprocess` judges windows by their own runs.
//!
//! Records are what is kept: the Pipeline prunes Jobs and `recentRuns` beyond its history, so
//! a window whose only run was pruned long ago counts as missing.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::partitions::Verdict;
use super::ranges::RangeSet;
use crate::api::{PipelineStatus, Reprocess, RunPhase, RunRecord};
use crate::plan::runs::ObservedJob;
use crate::schedule::Window;

/// The owner of a Job of the pipeline that is not this backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Pipeline,
    /// Another Backfill, by UID.
    Backfill(String),
    /// An owner that is not in the caches (being deleted, or not Sluice's).
    Unknown,
}

/// A Job of the same pipeline that this backfill does not own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignJob {
    pub job: ObservedJob,
    pub owner: Owner,
}

/// What another Backfill of the same pipeline recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sibling {
    pub uid: String,
    pub processed: RangeSet,
    pub succeeded: RangeSet,
    pub failed: RangeSet,
}

/// What is recorded of one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub busy: bool,
    pub succeeded: bool,
    pub failed: bool,
}

/// Every record, indexed by window.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// Windows the Pipeline runs or has queued.
    pipeline_busy: Vec<Window>,
    pipeline_finished: BTreeMap<(Timestamp, Timestamp), Vec<RunPhase>>,
    jobs: BTreeMap<(Timestamp, Timestamp), Vec<ForeignJob>>,
    run_ids: std::collections::BTreeSet<String>,
    /// Run ids the Pipeline's status records (active, finished, skipped or replaced).
    recorded_ids: std::collections::BTreeSet<String>,
    siblings: Vec<Sibling>,
}

fn key(w: &Window) -> (Timestamp, Timestamp) {
    (w.start, w.end)
}

impl Records {
    pub fn new(pipeline: Option<&PipelineStatus>, jobs: Vec<ForeignJob>, siblings: Vec<Sibling>) -> Self {
        let mut records = Records { siblings, ..Default::default() };
        if let Some(status) = pipeline {
            let active = status.active_runs.iter().map(|r| &r.window);
            records.pipeline_busy =
                active.chain(&status.queued_windows).map(|w| Window { start: w.start.0, end: w.end.0 }).collect();
            // A late pass re-ran only some steps of its window: it is not the window's run.
            for run in finished_records(status).filter(|r| r.late_pass.is_none()) {
                let w = Window { start: run.window.start.0, end: run.window.end.0 };
                records.pipeline_finished.entry(key(&w)).or_default().push(run.phase);
            }
            let ids = status.active_runs.iter().chain(finished_records(status)).map(|r| r.id.clone());
            records.recorded_ids = ids.collect();
        }
        for job in jobs {
            records.run_ids.insert(job.job.run_id.clone());
            records.jobs.entry(key(&job.job.window)).or_default().push(job);
        }
        records
    }

    /// Whether Jobs of run `run_id` exist (so that name cannot be used again).
    pub fn run_id_taken(&self, run_id: &str) -> bool {
        self.run_ids.contains(run_id)
    }

    /// Whether the Pipeline's run id of `window` may have named Jobs already, so that a new
    /// partition must not use it: Jobs of it exist, the Pipeline records a run of it (whose Jobs
    /// may have been deleted since: a Job name is created once), or another backfill is done
    /// with the window (it may have run it under that id).
    pub fn window_id_used(&self, window: &Window) -> bool {
        let id = window.run_id();
        self.run_id_taken(&id)
            || self.recorded_ids.contains(&id)
            || self.siblings.iter().any(|s| s.processed.contains(window))
    }

    /// What is recorded of `window`.
    pub fn of(&self, window: &Window) -> Recorded {
        let finished = self.pipeline_finished.get(&key(window)).map(Vec::as_slice).unwrap_or_default();
        let mut out = Recorded {
            busy: self.pipeline_busy.contains(window),
            succeeded: finished.contains(&RunPhase::Succeeded),
            failed: finished.contains(&RunPhase::Failed),
        };
        for job in self.jobs.get(&key(window)).into_iter().flatten() {
            let active = job.job.state.unfinished();
            out.busy |= match &job.owner {
                Owner::Pipeline | Owner::Unknown => active,
                // Until the other backfill is done with the window, it may still retry it.
                Owner::Backfill(uid) => match self.siblings.iter().find(|s| &s.uid == uid) {
                    Some(sibling) => !sibling.processed.contains(window),
                    None => active,
                },
            };
        }
        for sibling in &self.siblings {
            out.succeeded |= sibling.succeeded.contains(window);
            out.failed |= sibling.failed.contains(window);
        }
        out
    }
}

/// The Pipeline's records of finished runs: Succeeded and Failed ones, and Skipped or Replaced
/// ones (which count as "not succeeded").
fn finished_records(status: &PipelineStatus) -> impl Iterator<Item = &RunRecord> {
    status.recent_runs.iter().chain(&status.skipped_runs)
}

/// What `reprocess` makes of a window with these records.
pub fn verdict(reprocess: Reprocess, recorded: Recorded) -> Verdict {
    let selected = match reprocess {
        _ if recorded.busy => return Verdict::Busy,
        Reprocess::All => true,
        Reprocess::Missing => !recorded.succeeded,
        Reprocess::Failed => recorded.failed && !recorded.succeeded,
    };
    if selected { Verdict::Select } else { Verdict::Skip }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PartitionWindow, RunRecord};
    use crate::plan::runs::JobState;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hour(h: i64) -> Window {
        let start = ts("2026-10-01T00:00:00Z") + jiff::SignedDuration::from_hours(h);
        Window { start, end: start + jiff::SignedDuration::from_hours(1) }
    }

    fn run(h: i64, phase: RunPhase) -> RunRecord {
        let w = hour(h);
        RunRecord {
            id: w.run_id(),
            window: PartitionWindow { start: Time(w.start), end: Time(w.end) },
            phase,
            started: None,
            finished: None,
            failed_step: None,
            reason: None,
            manual: false,
            cost: None,
            late_pass: None,
        }
    }

    fn job(h: i64, state: JobState, owner: Owner) -> ForeignJob {
        ForeignJob {
            job: ObservedJob {
                name: format!("p-extract-{}", hour(h).run_id()),
                run_id: hour(h).run_id(),
                step: "extract".into(),
                attempt: 0,
                window: hour(h),
                created: ts("2026-11-01T00:00:00Z"),
                state,
            },
            owner,
        }
    }

    #[test]
    fn reprocess_modes_against_the_pipeline_history() {
        let status = PipelineStatus {
            recent_runs: vec![run(0, RunPhase::Succeeded), run(1, RunPhase::Failed), run(2, RunPhase::Skipped)],
            active_runs: vec![run(3, RunPhase::Running)],
            ..Default::default()
        };
        let records = Records::new(Some(&status), vec![], vec![]);
        let judge = |mode, h| verdict(mode, records.of(&hour(h)));
        use Reprocess::*;
        use Verdict::*;
        // succeeded, failed, skipped by the schedule, running, never run
        assert_eq!([0, 1, 2, 3, 4].map(|h| judge(Missing, h)), [Skip, Select, Select, Busy, Select]);
        assert_eq!([0, 1, 2, 3, 4].map(|h| judge(Failed, h)), [Skip, Select, Skip, Busy, Skip]);
        assert_eq!([0, 1, 2, 3, 4].map(|h| judge(All, h)), [Select, Select, Select, Busy, Select]);
    }

    #[test]
    fn a_late_pass_makes_its_window_busy_but_is_not_its_run() {
        let late = |h: i64, phase| RunRecord {
            id: format!("{}-late1", hour(h).run_id()),
            late_pass: Some(1),
            ..run(h, phase)
        };
        let status = PipelineStatus {
            // Window 0 failed and a late pass of it succeeded; window 1's late pass is running.
            recent_runs: vec![run(0, RunPhase::Failed), late(0, RunPhase::Succeeded)],
            active_runs: vec![late(1, RunPhase::Running)],
            ..Default::default()
        };
        let records = Records::new(Some(&status), vec![], vec![]);
        let judge = |mode, h| verdict(mode, records.of(&hour(h)));
        assert_eq!(judge(Reprocess::Missing, 0), Verdict::Select, "the late pass is no success of window 0");
        assert_eq!(judge(Reprocess::Failed, 0), Verdict::Select);
        assert_eq!(judge(Reprocess::All, 1), Verdict::Busy, "a late pass in progress writes window 1");
        assert!(!records.window_id_used(&hour(1)), "the window's own run id is still free");
    }

    #[test]
    fn jobs_in_flight_elsewhere_make_a_window_busy() {
        let sibling = Sibling { uid: "other".into(), processed: RangeSet::default(), ..Default::default() };
        let jobs = vec![
            job(0, JobState::Active, Owner::Pipeline),
            job(1, JobState::Succeeded { finished: ts("2026-11-01T00:00:00Z") }, Owner::Pipeline),
            // Another backfill's partition waiting for a retry: not finished there yet.
            job(
                2,
                JobState::Failed { finished: ts("2026-11-01T00:00:00Z"), reason: "x".into() },
                Owner::Backfill("other".into()),
            ),
            job(3, JobState::Active, Owner::Unknown),
            job(4, JobState::Succeeded { finished: ts("2026-11-01T00:00:00Z") }, Owner::Unknown),
            // A scheduled run waiting for Kueue: launched, so the window is busy too.
            job(5, JobState::Queued, Owner::Pipeline),
        ];
        let records = Records::new(None, jobs, vec![sibling]);
        let busy: Vec<bool> = (0..6).map(|h| records.of(&hour(h)).busy).collect();
        assert_eq!(busy, [true, false, true, true, false, true]);
        assert!(records.run_id_taken(&hour(1).run_id()));
        assert!(!records.run_id_taken(&hour(7).run_id()));
    }

    #[test]
    fn other_backfills_ranges_are_records() {
        let mut sibling = Sibling { uid: "other".into(), ..Default::default() };
        let next = |e: Timestamp| Some(e);
        for h in 0..3 {
            sibling.processed.insert(hour(h), next);
        }
        sibling.succeeded.insert(hour(0), next);
        sibling.succeeded.insert(hour(1), next);
        sibling.failed.insert(hour(2), next);
        // Its leftover (kept) Jobs of a processed window do not make the window busy.
        let jobs = vec![job(
            2,
            JobState::Failed { finished: ts("2026-11-01T00:00:00Z"), reason: "x".into() },
            Owner::Backfill("other".into()),
        )];
        let records = Records::new(None, jobs, vec![sibling]);
        assert_eq!(verdict(Reprocess::Missing, records.of(&hour(1))), Verdict::Skip);
        assert_eq!(verdict(Reprocess::Missing, records.of(&hour(2))), Verdict::Select);
        assert_eq!(verdict(Reprocess::Failed, records.of(&hour(2))), Verdict::Select);
        assert_eq!(verdict(Reprocess::Failed, records.of(&hour(1))), Verdict::Skip);
    }
}
