//! Stage 3 of a Backfill's decision: what holds it back before anything is launched: complete
//! for this generation, an invalid spec, suspended, too many failed partitions, a step that
//! never fits the quota, inputs whose contract blocks, or protected Datasets that are stale.
//! Pure.

use std::collections::BTreeMap;

use super::protect::ProtectedHold;
use super::ranges::RangeSet;
use super::{BlockedInput, Input};
use crate::api::StepSpec;
use crate::api::conditions::{self, types};
use crate::quota::{Admission, NeverFits, PodDemand, pod_demand};

/// What each selected step's pod is charged by the quota, by step name.
pub type Demands<'a> = BTreeMap<&'a str, PodDemand>;

/// The pods' demands of `steps`, with the namespace's LimitRange defaults.
pub fn demands<'a>(input: &Input<'_>, steps: &[&'a StepSpec]) -> Demands<'a> {
    steps
        .iter()
        .map(|s| (s.name.as_str(), pod_demand(&s.template.spec.clone().unwrap_or_default(), &input.container_defaults)))
        .collect()
}

/// The reasons that hold a backfill back.
pub struct Halt<'a> {
    /// Complete for this generation: stays complete until the spec changes.
    pub settled: bool,
    /// Problems found, or no valid schedule.
    pub invalid: bool,
    pub suspended: bool,
    /// `spec.dryRun`: the plan is computed, nothing is created.
    pub dry_run: bool,
    /// `failurePolicy.maxFailedPartitions`, when set.
    pub max_failed: Option<i32>,
    /// At least `max_failed` partitions failed.
    pub failed_stop: bool,
    /// A step whose pod can never fit the quota.
    pub never_fits: Option<(&'a str, NeverFits)>,
    /// Inputs of selected steps whose contract blocks: no new partition starts, no step that
    /// reads one.
    pub blocked: Vec<&'a BlockedInput>,
    /// Protected Datasets that hold new partitions (`spec.pauseWhen`).
    pub protected: &'a [ProtectedHold],
}

/// Finds what holds the backfill back.
pub fn reasons<'a>(
    input: &'a Input<'_>,
    steps: &[&StepSpec],
    demands: &Demands<'a>,
    valid: bool,
    failed: &RangeSet,
) -> Halt<'a> {
    let settled = conditions::is_true(&input.status.conditions, types::COMPLETE)
        && input.status.observed_generation == input.generation;
    let admission = Admission::new(&input.budget);
    let max_failed = input.spec.failure_policy.as_ref().and_then(|p| p.max_failed_partitions);
    Halt {
        settled,
        invalid: !valid,
        suspended: input.spec.suspend,
        dry_run: input.spec.dry_run,
        max_failed,
        failed_stop: max_failed.is_some_and(|m| failed.count() >= i64::from(m)),
        never_fits: demands.iter().find_map(|(step, d)| admission.never_fits(d).map(|n| (*step, n))),
        blocked: input.blocked_inputs.iter().filter(|b| steps.iter().any(|s| s.inputs.contains(&b.dataset))).collect(),
        protected: &input.protected,
    }
}

impl Halt<'_> {
    /// Nothing is launched.
    pub fn halted(&self) -> bool {
        self.settled || self.invalid || self.suspended || self.dry_run || self.failed_stop || self.never_fits.is_some()
    }

    /// No new partition starts.
    pub fn holds_new(&self) -> bool {
        self.halted() || !self.blocked.is_empty() || !self.protected.is_empty()
    }

    /// Whether `step` reads an input whose contract blocks.
    pub fn reads_blocked(&self, step: &StepSpec) -> bool {
        step.inputs.iter().any(|i| self.blocked.iter().any(|b| &b.dataset == i))
    }
}
