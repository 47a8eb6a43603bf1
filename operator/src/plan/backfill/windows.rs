//! Stage 1 of a Backfill's decision: the windows of its range. They are those of the partition
//! basis pinned when the backfill started (`status.partitionBasis`), so that the total and the
//! processed ranges always count the same windows, whatever the Pipeline's schedule does later.
//! Pure.

use super::partitions::{Partitions, describe, pinned_basis, rule_of};
use super::{Input, MAX_PARTITIONS};
use crate::api::{BackfillStatus, PartitionBasis, PartitionCounts, StepSpec};
use crate::schedule::{Schedule, Window};

/// The basis the windows are cut by, and its schedule when it parses.
pub struct Basis {
    pub basis: Option<PartitionBasis>,
    pub schedule: Option<Schedule>,
}

/// The pinned basis, or the Pipeline's when the backfill has not started yet.
pub fn basis(input: &Input<'_>) -> Basis {
    let status = input.status;
    let started = status.start_time.is_some() || !status.processed_ranges.is_empty() || !input.jobs.is_empty();
    let basis = pinned_basis(status.partition_basis.as_ref(), started, input.pipeline.map(|p| p.spec));
    let schedule = basis.as_ref().and_then(|b| Schedule::parse(&b.schedule, b.time_zone.as_deref()).ok());
    Basis { basis, schedule }
}

impl Basis {
    /// The windows of the range in the backfill's order; `None` without a valid schedule.
    pub fn partitions<'a>(&'a self, input: &Input<'_>) -> Option<Partitions<'a>> {
        let rule = self.basis.as_ref().map(rule_of).unwrap_or_default();
        let range = Window { start: input.spec.range.start.0, end: input.spec.range.end.0 };
        self.schedule.as_ref().map(|s| Partitions::new(s, rule, range, input.spec.order))
    }

    /// Pins the basis in `status` and counts its windows, when it is new.
    pub fn pin(&self, partitions: Option<&Partitions<'_>>, status: &mut BackfillStatus) {
        let (Some(p), Some(b)) = (partitions, &self.basis) else { return };
        if status.partition_basis.as_ref() == Some(b) && status.partitions.is_some() {
            return;
        }
        let total = p.count(MAX_PARTITIONS) as i64;
        status.partitions = Some(PartitionCounts { total, ..Default::default() });
        status.partition_schedule = Some(describe(&b.schedule, b.time_zone.as_deref(), rule_of(b)));
        status.partition_basis = Some(b.clone());
    }
}

/// What is wrong with the windows or steps, beyond validation's problems.
pub fn problems(input: &Input<'_>, steps: &[&StepSpec], total: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(p) = input.pipeline
        && steps.is_empty()
    {
        problems.push(format!("spec.steps: TransformsOnly, but Pipeline {:?} has no Transform steps", p.name));
    }
    if total as u64 > MAX_PARTITIONS {
        problems.push(format!("spec.range holds more than {MAX_PARTITIONS} partitions; split the backfill"));
    }
    problems
}
