//! Stage 2 of a Backfill's decision: its partitions as observed. A partition whose Jobs are all
//! finished is recorded (succeeded or failed) and its Jobs are deleted after the status that
//! records it is written, except those of the newest failures; the others are in progress.
//! Pure.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::partitions::Partitions;
use super::ranges::RangeSet;
use super::{Input, KEEP_FAILED_JOBS, MAX_RECENT_FAILURES};
use crate::api::{BackfillStatus, PartitionFailure, PipelineSpec, StepSpec};
use crate::plan::ready::PlannedEvent;
use crate::plan::runs::{ObservedJob, RunState, derive_run};
use crate::schedule::Window;

/// A partition in progress.
pub struct Active {
    pub run_id: String,
    pub window: Window,
    /// `None` when the Pipeline is gone and the steps are unknown.
    pub run: Option<RunState>,
}

/// The partitions as observed by one decision.
pub struct Observed {
    /// Windows this backfill is done with (succeeded, failed or skipped).
    pub processed: RangeSet,
    pub succeeded: RangeSet,
    pub failed: RangeSet,
    /// Newest first, at most [`MAX_RECENT_FAILURES`].
    pub recent_failures: Vec<PartitionFailure>,
    /// Partitions in progress.
    pub active: Vec<Active>,
    /// Partitions that finished (succeeded, failed) in this decision.
    pub finished: (usize, usize),
    /// A `PartitionFailed` Event per partition that failed in this decision.
    pub events: Vec<PlannedEvent>,
    /// Jobs of recorded partitions: delete them only after the status has been written.
    pub delete: Vec<String>,
}

/// The windows' successor, for compacting ranges.
pub fn next_start<'a>(partitions: Option<&'a Partitions<'a>>) -> impl Fn(Timestamp) -> Option<Timestamp> + 'a {
    move |end| partitions.and_then(|p| p.next_start(end))
}

/// Records the finished partitions among the backfill's Jobs.
pub fn partitions(
    input: &Input<'_>,
    status: &BackfillStatus,
    run_spec: Option<&PipelineSpec>,
    steps: &[&StepSpec],
    partitions: Option<&Partitions<'_>>,
) -> Observed {
    let mut seen = Observed {
        processed: RangeSet::from_status(&status.processed_ranges),
        succeeded: RangeSet::from_status(&status.succeeded_ranges),
        failed: RangeSet::from_status(&status.failed_ranges),
        recent_failures: status.recent_failures.clone(),
        active: Vec::new(),
        finished: (0, 0),
        events: Vec::new(),
        delete: Vec::new(),
    };
    let mut newly_failed: Vec<PartitionFailure> = Vec::new();
    for (run_id, jobs) in by_run(&input.jobs) {
        let window = jobs[0].window;
        if seen.processed.contains(&window) {
            continue;
        }
        let Some(run_spec) = run_spec else {
            seen.active.push(Active { run_id: run_id.to_string(), window, run: None });
            continue;
        };
        let run = derive_run(run_spec, steps, run_id, window, &jobs, input.now);
        if !run.finished() {
            seen.active.push(Active { run_id: run_id.to_string(), window, run: Some(run) });
            continue;
        }
        if let Some(failure) = seen.record(window, &run, partitions) {
            newly_failed.push(failure);
        }
    }
    newly_failed.sort_by_key(|f| std::cmp::Reverse(f.window_start.0));
    seen.recent_failures.splice(0..0, newly_failed);
    seen.recent_failures.truncate(MAX_RECENT_FAILURES);
    seen.delete = deletable(&input.jobs, &seen.processed, &seen.recent_failures);
    seen
}

fn by_run(jobs: &[ObservedJob]) -> BTreeMap<&str, Vec<&ObservedJob>> {
    let mut by_run: BTreeMap<&str, Vec<&ObservedJob>> = BTreeMap::new();
    for job in jobs {
        by_run.entry(job.run_id.as_str()).or_default().push(job);
    }
    by_run
}

impl Observed {
    /// Records a finished partition; its failure when it failed.
    fn record(
        &mut self,
        window: Window,
        run: &RunState,
        partitions: Option<&Partitions<'_>>,
    ) -> Option<PartitionFailure> {
        // The processed set is exact; the succeeded and failed ones may be coarsened, so only
        // the processed set says whether the window is new to them.
        let new = self.processed.insert(window, next_start(partitions));
        let Some((step, reason)) = run.failed_step() else {
            if new {
                self.succeeded.insert_new(window, next_start(partitions));
            }
            self.finished.0 += 1;
            return None;
        };
        if new {
            self.failed.insert_new(window, next_start(partitions));
        }
        self.finished.1 += 1;
        self.events.push(PlannedEvent {
            warning: true,
            reason: "PartitionFailed",
            note: format!("partition [{}, {}) failed at step {step}: {reason}", window.start, window.end),
        });
        Some(PartitionFailure {
            window_start: Time(window.start),
            step: Some(step.to_string()),
            reason: failure_reason(reason),
            message: Some(crate::text::clip(reason, 256)),
        })
    }
}

/// Jobs of recorded windows, except those of the newest failures.
fn deletable(jobs: &[ObservedJob], processed: &RangeSet, recent_failures: &[PartitionFailure]) -> Vec<String> {
    let kept: BTreeSet<Timestamp> = recent_failures.iter().take(KEEP_FAILED_JOBS).map(|f| f.window_start.0).collect();
    jobs.iter()
        .filter(|j| processed.contains(&j.window) && !kept.contains(&j.window.start))
        .map(|j| j.name.clone())
        .collect()
}

/// The reason of a step failure: the Job condition's reason ("BackoffLimitExceeded",
/// "DeadlineExceeded") that starts the observed failure text, else "StepFailed".
pub fn failure_reason(text: &str) -> String {
    let head = text.split(':').next().unwrap_or_default().trim();
    let camel = !head.is_empty() && head.len() <= 64 && head.chars().all(|c| c.is_ascii_alphanumeric());
    if camel && head.starts_with(|c: char| c.is_ascii_uppercase()) { head.to_string() } else { "StepFailed".into() }
}
