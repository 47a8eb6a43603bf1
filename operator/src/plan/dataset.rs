//! `decide` for a Dataset: the producing steps' successful Jobs (with their reports), lineage and
//! now -> the new status (watermark, freshness, contract conformance), Events and the exact time
//! of the next freshness threshold. Pure.
//!
//! The watermark is the end of the newest window whose producing step succeeded, or the watermark
//! the step reported. It only moves forward: a backfill of an old window never moves it, so an
//! old partition recomputed cannot make a stale dataset look fresh; a late pass's watermark is
//! capped at its window's end for the same reason. A step that rewrites a whole
//! table (no partitions) should report `watermark` = the time its data is complete up to;
//! otherwise the end of its run's window is used.
//!
//! A run is applied only once its report is read (its pod is in the cache), so that a report's
//! earlier watermark, its rows and its schema are never lost to a window end taken too early;
//! after [`REPORT_GRACE`] without the pod the window end is used, with a Warning. A reported
//! watermark is accepted up to [`ProducedRun::watermark_bound`]: the run's finish (or now, if
//! earlier) plus [`MAX_CLOCK_SKEW`]. Every run's report is checked once (validity, watermark
//! bounds, contract), in finish order after `status.lastCheckedRun`.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ready::{PlannedEvent, ready_condition};
use crate::api::conditions::{self, DesiredCondition, types};
use crate::api::{
    CheckedRun, ContractSpec, DatasetSpec, DatasetStatus, FreshnessState, FreshnessStatus, PartitionWindow, ProducedBy,
};
use crate::duration;
use crate::report::{self, Report};
use crate::schedule::Window;

/// Condition type for the validity of the producing step's report.
pub const REPORT_VALID: &str = "ReportValid";

/// How soon to look again when a finished run's report is not read yet (its pod is not in the
/// cache): the pod watch is normally at most a moment behind the Job watch.
pub const REPORT_WAIT: SignedDuration = SignedDuration::from_secs(2);

/// How long after a run finished its report is waited for. After that the pod is taken to be gone
/// (deleted, garbage-collected) and the run is applied with its window end and a Warning.
pub const REPORT_GRACE: SignedDuration = SignedDuration::from_secs(30);

/// How far a step's clock may be ahead of the cluster's: a reported watermark is accepted up to
/// the run's finish plus this.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// A successful attempt of a step that lists this dataset in its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ProducedRun {
    pub pipeline: String,
    pub run_id: String,
    pub step: String,
    pub window: Window,
    pub finished: Timestamp,
    /// The step's report: `None` when its pod is not in the cache (yet), `Some(Ok(None))` when it
    /// reported nothing, `Some(Err(_))` when the report is malformed.
    pub report: Option<Result<Option<Report>, String>>,
}

impl ProducedRun {
    fn report(&self) -> Option<&Report> {
        self.report.as_ref().and_then(|r| r.as_ref().ok()).and_then(Option::as_ref)
    }

    /// Whether the run waits for its report at `now`: not read yet, within the grace.
    pub fn report_pending(&self, now: Timestamp) -> bool {
        self.report.is_none() && now.duration_since(self.finished) <= REPORT_GRACE
    }

    /// The latest watermark this run may claim: a step cannot know its data complete beyond the
    /// moment it finished (the Job's completion time, on the cluster's clock), nor beyond now;
    /// [`MAX_CLOCK_SKEW`] is allowed for the step's own clock. The window end is not the bound:
    /// a whole-table step legitimately reports a time between its window end and its finish.
    pub fn watermark_bound(&self, now: Timestamp) -> Timestamp {
        self.finished.min(now).saturating_add(MAX_CLOCK_SKEW).unwrap_or(Timestamp::MAX)
    }

    /// The reported watermark when it is beyond [`Self::watermark_bound`], so refused.
    pub fn refused_watermark(&self, now: Timestamp) -> Option<Timestamp> {
        self.report().and_then(|r| r.watermark).filter(|w| *w > self.watermark_bound(now))
    }

    /// The watermark this run establishes: the reported one within bounds, else the window's end.
    /// A late pass (`spec.lateness`) re-ran an old window: it establishes at most that window's
    /// end, so it never makes the Dataset look fresher than the window it re-ran.
    pub fn watermark(&self, now: Timestamp) -> Timestamp {
        let w = match self.report().and_then(|r| r.watermark) {
            Some(w) if w <= self.watermark_bound(now) => w,
            _ => self.window.end,
        };
        if super::late::pass_of(&self.run_id).is_some() { w.min(self.window.end) } else { w }
    }

    /// The order in which runs are checked: by finish, then pipeline, run id and step.
    fn key(&self) -> (Timestamp, &str, &str, &str) {
        (self.finished, &self.pipeline, &self.run_id, &self.step)
    }

    fn checked(&self) -> CheckedRun {
        CheckedRun {
            pipeline: self.pipeline.clone(),
            run: self.run_id.clone(),
            step: self.step.clone(),
            window: PartitionWindow { start: time(self.window.start), end: time(self.window.end) },
            finished: time(self.finished),
        }
    }

    fn describe(&self) -> String {
        describe_checked(&self.checked())
    }
}

fn checked_key(c: &CheckedRun) -> (Timestamp, &str, &str, &str) {
    (c.finished.0, &c.pipeline, &c.run, &c.step)
}

/// What the Dataset reconciler observed.
pub struct Input<'a> {
    pub spec: &'a DatasetSpec,
    pub status: &'a DatasetStatus,
    pub generation: Option<i64>,
    pub now: Timestamp,
    pub produced: Vec<ProducedRun>,
    /// Pipelines with a step that outputs this dataset, sorted.
    pub producers: Vec<String>,
    /// Pipelines with a step that reads it or a trigger on it, sorted.
    pub consumers: Vec<String>,
    pub problems: Vec<String>,
}

/// The decision.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub status: DatasetStatus,
    pub events: Vec<PlannedEvent>,
    pub requeue_after: Option<SignedDuration>,
    /// Finished runs not applied yet because their report is not read: the reason for a short
    /// requeue, for the log.
    pub waiting_for_reports: Vec<String>,
}

/// Freshness thresholds with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objective {
    pub max_age: SignedDuration,
    pub warn_after: Option<SignedDuration>,
}

/// The objective of a spec, if it has a valid one.
pub fn objective(spec: &DatasetSpec) -> Option<Objective> {
    let f = spec.freshness.as_ref()?;
    let max_age = duration::parse(&f.max_age).ok()?;
    let warn_after = f.warn_after.as_deref().and_then(|w| duration::parse(w).ok()).filter(|w| *w <= max_age);
    Some(Objective { max_age, warn_after })
}

/// The freshness state at `now` of data complete up to `watermark`.
pub fn freshness(watermark: Option<Timestamp>, objective: Option<Objective>, now: Timestamp) -> FreshnessState {
    let (Some(wm), Some(obj)) = (watermark, objective) else {
        return if watermark.is_some() { FreshnessState::Fresh } else { FreshnessState::Unknown };
    };
    let age = now.duration_since(wm);
    if age >= obj.max_age {
        FreshnessState::Stale
    } else if obj.warn_after.is_some_and(|w| age >= w) {
        FreshnessState::Warning
    } else {
        FreshnessState::Fresh
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

/// Decides the status of one Dataset: the watermark from the applicable runs, each new run's
/// report checked once, the contract, freshness, conditions and Events, and when to look again.
pub fn decide(input: &Input<'_>) -> Plan {
    let now = input.now;
    let mut plan = Plan::default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    status.producers = input.producers.clone();
    status.consumers = input.consumers.clone();

    // Runs whose report is not read yet are not applied: look again soon.
    let (waiting, applicable): (Vec<&ProducedRun>, Vec<&ProducedRun>) =
        input.produced.iter().partition(|r| r.report_pending(now));
    plan.waiting_for_reports = waiting.iter().map(|r| r.describe()).collect();
    advance_watermark(&mut status, &applicable, now);
    let mut checks = check_new_runs(input, &mut status);
    let contract_condition = contract(input, &status, &mut checks.events);
    let fresh = Freshness::of(input, &status);
    status.freshness = Some(fresh.status.clone());
    plan.events.extend(fresh.event(input));
    plan.events.extend(checks.events);

    let mut desired = vec![ready_condition(&input.problems), fresh.condition];
    desired.extend(contract_condition);
    desired.extend(checks.report_condition);
    plan.events.extend(super::dataset_events::recoveries(&input.status.conditions, &desired));
    status.conditions = conditions::merge(&input.status.conditions, &desired, input.generation, &time(now));
    plan.requeue_after = requeue(now, &fresh.status, !waiting.is_empty());
    plan.status = status;
    plan
}

/// Every run's report is checked once, in finish order after the last checked one. A run still
/// waiting for its report holds back the later ones, so that none is passed over.
fn check_new_runs(input: &Input<'_>, status: &mut DatasetStatus) -> Checks {
    let mut checks = Checks::default();
    let mut new_runs: Vec<&ProducedRun> = input
        .produced
        .iter()
        .filter(|r| status.last_checked_run.as_ref().is_none_or(|c| r.key() > checked_key(c)))
        .collect();
    new_runs.sort_by(|a, b| a.key().cmp(&b.key()));
    for run in new_runs.into_iter().take_while(|r| !r.report_pending(input.now)) {
        checks.check(run, input.spec.contract.as_ref(), status, input.now);
    }
    checks
}

/// The contract condition from the schema of the most recently finished run that reported one;
/// a `ContractViolated` Event when a contract edit alone makes the current schema violate it
/// (no run to blame, so the checks sent none).
fn contract(input: &Input<'_>, status: &DatasetStatus, events: &mut Vec<PlannedEvent>) -> Option<DesiredCondition> {
    let desired = contract_condition(input.spec.contract.as_ref()?, status);
    let previous = conditions::find(&input.status.conditions, desired.type_);
    let changed = previous.is_none_or(|p| p.status != "False" || p.message != desired.message);
    if !desired.status && !desired.unknown && changed && !events.iter().any(|e| e.reason == CONTRACT_VIOLATED) {
        events.push(PlannedEvent { warning: true, reason: CONTRACT_VIOLATED, note: desired.message.clone() });
    }
    Some(desired)
}

/// Freshness at `now`: the state with its thresholds, and the `Fresh` condition.
struct Freshness {
    status: FreshnessStatus,
    condition: DesiredCondition,
}

impl Freshness {
    fn of(input: &Input<'_>, status: &DatasetStatus) -> Self {
        let objective = objective(input.spec);
        let wm = status.watermark.as_ref().map(|t| t.0);
        let state = freshness(wm, objective, input.now);
        let warn_at = wm.zip(objective.and_then(|o| o.warn_after)).and_then(|(w, d)| w.checked_add(d).ok());
        let stale_at = wm.zip(objective.map(|o| o.max_age)).and_then(|(w, d)| w.checked_add(d).ok());
        let max_age = input.spec.freshness.as_ref().map(|f| f.max_age.as_str()).unwrap_or("");
        let condition = fresh_condition(state, wm, stale_at, objective.is_some(), max_age);
        Freshness {
            status: FreshnessStatus { state, warn_at: warn_at.map(time), stale_at: stale_at.map(time) },
            condition,
        }
    }

    /// The Event of a change of state (none for the first `Unknown`).
    fn event(&self, input: &Input<'_>) -> Option<PlannedEvent> {
        let state = self.status.state;
        let previous = input.status.freshness.as_ref().map(|f| f.state);
        if previous == Some(state) || (previous.is_none() && state == FreshnessState::Unknown) {
            return None;
        }
        let reason = match state {
            FreshnessState::Fresh => "Fresh",
            FreshnessState::Warning => "FreshnessWarning",
            FreshnessState::Stale => "Stale",
            FreshnessState::Unknown => "FreshnessUnknown",
        };
        let warning = matches!(state, FreshnessState::Warning | FreshnessState::Stale);
        Some(PlannedEvent { warning, reason, note: self.condition.message.clone() })
    }
}

/// The `Fresh` condition of `state` for data complete up to `wm`.
fn fresh_condition(
    state: FreshnessState,
    wm: Option<Timestamp>,
    stale_at: Option<Timestamp>,
    has_objective: bool,
    max_age: &str,
) -> DesiredCondition {
    let wm = wm.map(|w| w.to_string()).unwrap_or_default();
    let stale_at = stale_at.map(|t| t.to_string()).unwrap_or_default();
    match state {
        FreshnessState::Unknown => {
            DesiredCondition::unknown(types::FRESH, "NeverProduced", "no producing step has succeeded yet")
        }
        FreshnessState::Fresh if !has_objective => DesiredCondition::new(
            types::FRESH,
            true,
            "NoObjective",
            format!("data complete up to {wm}; no freshness objective"),
        ),
        FreshnessState::Fresh => DesiredCondition::new(
            types::FRESH,
            true,
            "Fresh",
            format!("data complete up to {wm}, within maxAge until {stale_at}"),
        ),
        FreshnessState::Warning => DesiredCondition::new(
            types::FRESH,
            true,
            "Warning",
            format!("data complete up to {wm} is past warnAfter; stale at {stale_at}"),
        ),
        FreshnessState::Stale => DesiredCondition::new(
            types::FRESH,
            false,
            "Stale",
            format!("data complete up to {wm} is older than maxAge {max_age}"),
        ),
    }
}

/// Exactly at the next threshold still ahead, or soon while reports are awaited.
fn requeue(now: Timestamp, freshness: &FreshnessStatus, waiting: bool) -> Option<SignedDuration> {
    let next = [&freshness.warn_at, &freshness.stale_at]
        .into_iter()
        .flatten()
        .map(|t| t.0)
        .filter(|t| *t > now)
        .min()
        .map(|t| t.duration_since(now).max(SignedDuration::from_millis(1)));
    if waiting { Some(next.map_or(REPORT_WAIT, |d| d.min(REPORT_WAIT))) } else { next }
}

const CONTRACT_VIOLATED: &str = "ContractViolated";

/// Moves the watermark forward to the best of the applicable runs, and takes the rows of the run
/// that produced it (also when that run's report is read after the watermark moved).
fn advance_watermark(status: &mut DatasetStatus, applicable: &[&ProducedRun], now: Timestamp) {
    let current = status.watermark.as_ref().map(|t| t.0);
    let best = applicable.iter().max_by_key(|r| (r.watermark(now), r.finished));
    if let Some(best) = best.filter(|b| current.is_none_or(|c| b.watermark(now) > c)) {
        status.watermark = Some(time(best.watermark(now)));
        status.last_updated = Some(time(best.finished));
        status.produced_by = Some(ProducedBy {
            pipeline: best.pipeline.clone(),
            run: best.run_id.clone(),
            step: Some(best.step.clone()),
            window: Some(PartitionWindow { start: time(best.window.start), end: time(best.window.end) }),
        });
        status.rows_written = None;
    }
    let Some(by) = status.produced_by.as_ref() else { return };
    let producer = applicable.iter().find(|r| r.pipeline == by.pipeline && r.run_id == by.run);
    if let Some(rows) = producer.and_then(|r| r.report()).and_then(|r| r.rows_written) {
        status.rows_written = Some(rows);
    }
}

/// The outcome of checking the newly finished runs' reports.
#[derive(Default)]
struct Checks {
    /// `ReportValid` for the newest checked run; `None` when no run was checked (the condition
    /// stays as it is).
    report_condition: Option<DesiredCondition>,
    /// One Warning per problem found, naming the run.
    events: Vec<PlannedEvent>,
}

impl Checks {
    /// Checks one run's report (read, or given up on), records its schema and marks it checked.
    fn check(
        &mut self,
        run: &ProducedRun,
        contract: Option<&ContractSpec>,
        status: &mut DatasetStatus,
        now: Timestamp,
    ) {
        let what = run.describe();
        let condition = match &run.report {
            None => DesiredCondition::unknown(
                REPORT_VALID,
                "ReportUnavailable",
                format!(
                    "the pod of {what} was not found within {REPORT_GRACE:#} after it finished; its report is lost and the window end {} is used",
                    run.window.end
                ),
            ),
            Some(Err(why)) => DesiredCondition::new(REPORT_VALID, false, "MalformedReport", format!("{what}: {why}")),
            Some(Ok(_)) => match run.refused_watermark(now) {
                Some(w) => DesiredCondition::new(
                    REPORT_VALID,
                    false,
                    "WatermarkOutOfBounds",
                    format!(
                        "{what} reported watermark {w}, beyond {} (its finish plus {MAX_CLOCK_SKEW:#} of clock skew); the window end {} is used",
                        run.watermark_bound(now),
                        run.window.end
                    ),
                ),
                None if run.report().is_some() => {
                    DesiredCondition::new(REPORT_VALID, true, "Reported", format!("the report of {what} is valid"))
                }
                None => DesiredCondition::new(REPORT_VALID, true, "NoReport", format!("{what} reported nothing")),
            },
        };
        if !condition.status {
            self.events.push(PlannedEvent {
                warning: true,
                reason: report_reason(&condition),
                note: condition.message.clone(),
            });
        }
        self.report_condition = Some(condition);
        if let Some(schema) = run.report().and_then(|r| r.schema.as_ref()) {
            status.observed_schema = schema.clone();
            status.schema_reported_by = Some(run.checked());
            let violations = contract.map(|c| report::contract_violations(c, schema)).unwrap_or_default();
            if !violations.is_empty() {
                self.events.push(PlannedEvent {
                    warning: true,
                    reason: CONTRACT_VIOLATED,
                    note: format!("{what} reported a schema that violates the contract: {}", violations.join("; ")),
                });
            }
        }
        status.last_checked_run = Some(run.checked());
    }
}

/// The Event reason of a `ReportValid` that is not True.
fn report_reason(condition: &DesiredCondition) -> &'static str {
    match condition.reason.as_str() {
        "ReportUnavailable" => "ReportUnavailable",
        "WatermarkOutOfBounds" => "WatermarkOutOfBounds",
        _ => "MalformedReport",
    }
}

/// `SchemaConformant` for the observed schema, naming the run that reported it.
fn contract_condition(contract: &ContractSpec, status: &DatasetStatus) -> DesiredCondition {
    if status.observed_schema.is_empty() {
        return DesiredCondition::unknown(
            types::SCHEMA_CONFORMANT,
            "NoSchemaReported",
            "no producing step has reported a schema yet",
        );
    }
    let by = status.schema_reported_by.as_ref().map(describe_checked).unwrap_or_else(|| "the producing step".into());
    let violations = report::contract_violations(contract, &status.observed_schema);
    if violations.is_empty() {
        DesiredCondition::new(
            types::SCHEMA_CONFORMANT,
            true,
            "Conformant",
            format!("the schema reported by {by} meets the contract"),
        )
    } else {
        DesiredCondition::new(
            types::SCHEMA_CONFORMANT,
            false,
            CONTRACT_VIOLATED,
            format!("the schema reported by {by} violates the contract: {}", violations.join("; ")),
        )
    }
}

/// "step S of run R (pipeline P, window [a, b))", for messages.
fn describe_checked(c: &CheckedRun) -> String {
    format!(
        "step {} of run {} (pipeline {}, window [{}, {}))",
        c.step, c.run, c.pipeline, c.window.start.0, c.window.end.0
    )
}

#[cfg(test)]
#[path = "dataset_tests.rs"]
mod tests;
