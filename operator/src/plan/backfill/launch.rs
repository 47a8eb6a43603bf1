//! Stage 4 of a Backfill's decision: the Jobs to launch. The next steps of partitions in
//! progress come first, then new partitions found by walking the windows in order, up to
//! `spec.parallelism`; each Job is admitted against the quota budget (the reserve rule is
//! [`Admission`]'s) and the operator's Job caps, and the first refusal stops the round. One
//! loop ([`Launcher::launch_run`]) launches the due steps of any partition. Pure.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::halt::{Demands, Halt};
use super::observe::{Active, next_start};
use super::partitions::{Partitions, Scan, Verdict, scan};
use super::ranges::RangeSet;
use super::records::verdict;
use super::summary::{self, reasons};
use super::{Input, JobToCreate, MAX_SCAN_STEPS, run_id_for, schedule_horizon};
use crate::api::{BackfillOrder, PipelineSpec, StepSpec, Throttle};
use crate::jobs::job_name;
use crate::plan::runs::{RunState, StepState, derive_run};
use crate::quota::{Admission, Milli};
use crate::schedule::Window;

/// The launches of one decision.
#[derive(Default)]
pub struct Launches {
    pub create: Vec<JobToCreate>,
    /// Run ids of the partitions started by this decision.
    pub admitted: Vec<String>,
    /// Why the round stopped early, if it did.
    pub throttle: Option<Throttle>,
    /// Job names held by Jobs that are not Sluice's that this round needed.
    pub conflict_hits: Vec<String>,
    /// The walk over pending windows.
    pub walk: Scan,
    /// New partitions wanted under `spec.parallelism`.
    pub want: usize,
    /// The earliest end of a retry's backoff among partitions in progress.
    pub wake: Option<Timestamp>,
    /// Headroom beyond the reserve left, per quota key.
    pub headroom: Vec<(String, Milli)>,
}

/// What a launch needs besides the partitions.
pub struct Context<'a> {
    pub input: &'a Input<'a>,
    pub run_spec: Option<&'a PipelineSpec>,
    pub steps: &'a [&'a StepSpec],
    pub demands: &'a Demands<'a>,
    pub partitions: Option<&'a Partitions<'a>>,
    pub halt: &'a Halt<'a>,
}

/// Launches what may start; new partitions join `active`, windows the walk skips join
/// `processed`.
pub fn launches(cx: &Context<'_>, active: &mut Vec<Active>, processed: &mut RangeSet) -> Launches {
    match cx.input.spec.order {
        BackfillOrder::OldestFirst => active.sort_by_key(|a| (a.window.start, a.run_id.clone())),
        BackfillOrder::NewestFirst => active.sort_by_key(|a| (std::cmp::Reverse(a.window.start), a.run_id.clone())),
    }
    let mut launcher = Launcher::new(cx);
    if !cx.halt.halted() {
        launcher.out.wake = active.iter().filter_map(|a| a.run.as_ref()?.next_wake()).min();
        for a in active.iter() {
            if let Some(run) = &a.run {
                launcher.launch_run(&a.run_id, a.window, run);
            }
            if launcher.out.throttle.is_some() {
                break;
            }
        }
    }
    let parallelism = cx.input.spec.parallelism.unwrap_or(1).max(1) as usize;
    launcher.out.want = parallelism.saturating_sub(active.len());
    if !cx.halt.holds_new() && launcher.out.throttle.is_none() {
        launcher.launch_new(active, processed);
    }
    launcher.finish()
}

/// The admission state of one round.
struct Launcher<'a> {
    cx: &'a Context<'a>,
    admission: Admission<'a>,
    slots: usize,
    quota: Option<&'a str>,
    conflicts: BTreeSet<&'a str>,
    blocked_steps: BTreeSet<&'a str>,
    out: Launches,
}

impl<'a> Launcher<'a> {
    fn new(cx: &'a Context<'a>) -> Self {
        let input = cx.input;
        Launcher {
            cx,
            admission: Admission::new(&input.budget),
            slots: input.free_job_slots,
            quota: input.budget.quota.as_ref().map(|q| q.state.name.as_str()),
            conflicts: input.name_conflicts.iter().map(String::as_str).collect(),
            blocked_steps: cx.steps.iter().filter(|s| cx.halt.reads_blocked(s)).map(|s| s.name.as_str()).collect(),
            out: Launches::default(),
        }
    }

    fn pipeline(&self) -> &'a str {
        self.cx.input.pipeline.map_or("", |p| p.name)
    }

    /// Launches the due steps of one partition until the round is throttled; whether any was.
    fn launch_run(&mut self, run_id: &str, window: Window, run: &RunState) -> bool {
        let mut started = false;
        for (step, state) in &run.steps {
            let StepState::Launch { attempt } = state else { continue };
            let Some(demand) = self.cx.demands.get(step.as_str()) else { continue };
            if self.blocked_steps.contains(step.as_str()) {
                continue;
            }
            let name = job_name(self.pipeline(), step, run_id, *attempt);
            if self.conflicts.contains(name.as_str()) {
                self.out.conflict_hits.push(name);
                continue;
            }
            if let Err(t) = self.admit(demand) {
                self.out.throttle = Some(t);
                break;
            }
            started = true;
            let (step, attempt, demand) = (step.clone(), *attempt, demand.clone());
            self.out.create.push(JobToCreate { run_id: run_id.to_string(), window, step, attempt, demand });
        }
        started
    }

    /// Admits one Job, or says why not.
    fn admit(&mut self, demand: &crate::quota::PodDemand) -> Result<(), Throttle> {
        if self.slots == 0 {
            return Err(summary::throttle(reasons::JOB_CAP_REACHED, "the operator's Job caps are reached".into()));
        }
        self.admission.try_admit(demand).map_err(|r| summary::refused(&r, self.quota))?;
        self.slots -= 1;
        Ok(())
    }

    /// A new partition's run of `window`: its run id and steps.
    fn new_run(&self, window: &Window) -> Option<(String, RunState)> {
        let input = self.cx.input;
        let run_id = run_id_for(window, input.records.window_id_used(window), input.uid);
        let run = derive_run(self.cx.run_spec?, self.cx.steps, &run_id, *window, &[], input.now);
        Some((run_id, run))
    }

    /// The first Job name of a new partition of `window` held by a Job that is not Sluice's.
    fn first_conflict(&self, window: &Window) -> Option<String> {
        let (run_id, run) = self.new_run(window)?;
        run.steps.iter().find_map(|(step, state)| {
            let StepState::Launch { attempt } = state else { return None };
            Some(job_name(self.pipeline(), step, &run_id, *attempt)).filter(|n| self.conflicts.contains(n.as_str()))
        })
    }

    /// Walks the pending windows and starts new partitions.
    fn launch_new(&mut self, active: &mut Vec<Active>, processed: &mut RangeSet) {
        let (Some(partitions), Some(view), Some(_)) = (self.cx.partitions, self.cx.input.pipeline, self.cx.run_spec)
        else {
            return;
        };
        let running: BTreeSet<Window> = active.iter().map(|a| a.window).collect();
        let (reprocess, records) = (self.cx.input.spec.reprocess, &self.cx.input.records);
        let mut hits = Vec::new();
        let walk = scan(partitions, schedule_horizon(&view), processed, &running, self.out.want, MAX_SCAN_STEPS, |w| {
            match verdict(reprocess, records.of(w)) {
                Verdict::Select if !self.conflicts.is_empty() => match self.first_conflict(w) {
                    Some(name) => {
                        hits.push(name);
                        Verdict::Held
                    }
                    None => Verdict::Select,
                },
                v => v,
            }
        });
        self.out.conflict_hits.extend(hits);
        for w in &walk.skipped {
            processed.insert(*w, next_start(Some(partitions)));
        }
        for window in &walk.selected {
            let Some((run_id, run)) = self.new_run(window) else { break };
            if self.launch_run(&run_id, *window, &run) {
                self.out.admitted.push(run_id.clone());
                active.push(Active { run_id, window: *window, run: Some(run) });
            }
            if self.out.throttle.is_some() {
                break;
            }
        }
        self.out.walk = walk;
    }

    fn finish(mut self) -> Launches {
        if let Some(quota) = &self.cx.input.budget.quota {
            let admission = &self.admission;
            self.out.headroom =
                quota.state.hard.keys().filter_map(|k| admission.quota_free(k).map(|free| (k.clone(), free))).collect();
        }
        self.out
    }
}
