//! `decide` for a Dataset: the producing steps' successful Jobs (with their reports), lineage and
//! now -> the new status (watermark, freshness, contract conformance), Events and the exact time
//! of the next freshness threshold. Pure.
//!
//! The watermark is the end of the newest window whose producing step succeeded, or the watermark
//! the step reported. It only moves forward: a backfill of an old window never moves it, so an
//! old partition recomputed cannot make a stale dataset look fresh. A step that rewrites a whole
//! table (no partitions) should report `watermark` = the time its data is complete up to;
//! otherwise the end of its run's window is used.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ready::{PlannedEvent, ready_condition};
use crate::api::conditions::{self, DesiredCondition, types};
use crate::api::{DatasetSpec, DatasetStatus, FreshnessState, FreshnessStatus, PartitionWindow, ProducedBy};
use crate::duration;
use crate::report::{self, Report};
use crate::schedule::Window;

/// Condition type for the validity of the producing step's report.
pub const REPORT_VALID: &str = "ReportValid";

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

    /// The watermark this run establishes: the reported one, else the window's end.
    pub fn watermark(&self) -> Timestamp {
        self.report().and_then(|r| r.watermark).unwrap_or(self.window.end)
    }
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

/// Decides the status of one Dataset.
pub fn decide(input: &Input<'_>) -> Plan {
    let now = input.now;
    let mut plan = Plan::default();
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    status.producers = input.producers.clone();
    status.consumers = input.consumers.clone();

    // Watermark: only forward. The run that defines it also gives rows and schema.
    let current = status.watermark.as_ref().map(|t| t.0);
    let best = input.produced.iter().max_by_key(|r| (r.watermark(), r.finished));
    if let Some(best) = best {
        let wm = best.watermark();
        let same_run = status.produced_by.as_ref().is_some_and(|p| p.run == best.run_id && p.pipeline == best.pipeline);
        if current.is_none_or(|c| wm > c) || (Some(wm) == current && same_run) {
            if current.is_none_or(|c| wm > c) {
                status.watermark = Some(time(wm));
                status.last_updated = Some(time(best.finished));
                status.produced_by = Some(ProducedBy {
                    pipeline: best.pipeline.clone(),
                    run: best.run_id.clone(),
                    step: Some(best.step.clone()),
                    window: Some(PartitionWindow { start: time(best.window.start), end: time(best.window.end) }),
                });
                status.rows_written = None;
            }
            if let Some(report) = best.report() {
                if report.rows_written.is_some() {
                    status.rows_written = report.rows_written;
                }
                if let Some(schema) = &report.schema {
                    status.observed_schema = schema.clone();
                }
            }
        }
    }

    // Report validity, judged on the most recently finished producing run.
    let latest = input.produced.iter().max_by_key(|r| r.finished);
    let report_condition = match latest.and_then(|r| r.report.as_ref().map(|rep| (r, rep))) {
        Some((run, Err(why))) => Some(DesiredCondition::new(
            REPORT_VALID,
            false,
            "MalformedReport",
            format!("step {} of run {} ({}): {why}", run.step, run.run_id, run.pipeline),
        )),
        Some((_, Ok(Some(_)))) => {
            Some(DesiredCondition::new(REPORT_VALID, true, "Reported", "the producing step's report is valid"))
        }
        Some((_, Ok(None))) => {
            Some(DesiredCondition::new(REPORT_VALID, true, "NoReport", "the producing step reported nothing"))
        }
        None => None,
    };

    // Contract.
    let contract_condition = input.spec.contract.as_ref().map(|contract| {
        if status.observed_schema.is_empty() {
            DesiredCondition::unknown(
                types::SCHEMA_CONFORMANT,
                "NoSchemaReported",
                "no producing step has reported a schema yet",
            )
        } else {
            let violations = report::contract_violations(contract, &status.observed_schema);
            if violations.is_empty() {
                DesiredCondition::new(
                    types::SCHEMA_CONFORMANT,
                    true,
                    "Conformant",
                    "the reported schema meets the contract",
                )
            } else {
                DesiredCondition::new(types::SCHEMA_CONFORMANT, false, "ContractViolated", violations.join("; "))
            }
        }
    });

    // Freshness.
    let objective = objective(input.spec);
    let wm = status.watermark.as_ref().map(|t| t.0);
    let state = freshness(wm, objective, now);
    let warn_at = wm.zip(objective.and_then(|o| o.warn_after)).and_then(|(w, d)| w.checked_add(d).ok());
    let stale_at = wm.zip(objective.map(|o| o.max_age)).and_then(|(w, d)| w.checked_add(d).ok());
    status.freshness = Some(FreshnessStatus { state, warn_at: warn_at.map(time), stale_at: stale_at.map(time) });
    let wm_text = wm.map(|w| w.to_string()).unwrap_or_default();
    let fresh_condition = match state {
        FreshnessState::Unknown => {
            DesiredCondition::unknown(types::FRESH, "NeverProduced", "no producing step has succeeded yet")
        }
        FreshnessState::Fresh if objective.is_none() => DesiredCondition::new(
            types::FRESH,
            true,
            "NoObjective",
            format!("data complete up to {wm_text}; no freshness objective"),
        ),
        FreshnessState::Fresh => DesiredCondition::new(
            types::FRESH,
            true,
            "Fresh",
            format!(
                "data complete up to {wm_text}, within maxAge until {}",
                stale_at.map(|t| t.to_string()).unwrap_or_default()
            ),
        ),
        FreshnessState::Warning => DesiredCondition::new(
            types::FRESH,
            true,
            "Warning",
            format!(
                "data complete up to {wm_text} is past warnAfter; stale at {}",
                stale_at.map(|t| t.to_string()).unwrap_or_default()
            ),
        ),
        FreshnessState::Stale => DesiredCondition::new(
            types::FRESH,
            false,
            "Stale",
            format!(
                "data complete up to {wm_text} is older than maxAge {}",
                input.spec.freshness.as_ref().map(|f| f.max_age.as_str()).unwrap_or("")
            ),
        ),
    };
    let previous_state = input.status.freshness.as_ref().map(|f| f.state);
    if previous_state != Some(state) && !(previous_state.is_none() && state == FreshnessState::Unknown) {
        let warning = matches!(state, FreshnessState::Warning | FreshnessState::Stale);
        plan.events.push(PlannedEvent {
            warning,
            reason: match state {
                FreshnessState::Fresh => "Fresh",
                FreshnessState::Warning => "FreshnessWarning",
                FreshnessState::Stale => "Stale",
                FreshnessState::Unknown => "FreshnessUnknown",
            },
            note: fresh_condition.message.clone(),
        });
    }

    // Events for contract and report changes.
    for desired in contract_condition.iter().chain(report_condition.iter()) {
        let previous = conditions::find(&input.status.conditions, desired.type_);
        let changed = previous
            .is_none_or(|p| p.status != if desired.status { "True" } else { "False" } || p.message != desired.message);
        if !desired.status && !desired.unknown && changed {
            plan.events.push(PlannedEvent {
                warning: true,
                reason: if desired.type_ == REPORT_VALID { "MalformedReport" } else { "ContractViolated" },
                note: desired.message.clone(),
            });
        }
    }

    let mut desired = vec![ready_condition(&input.problems), fresh_condition];
    desired.extend(contract_condition);
    desired.extend(report_condition);
    status.conditions = conditions::merge(&input.status.conditions, &desired, input.generation, &time(now));

    // Requeue exactly at the next threshold still ahead.
    plan.requeue_after = [warn_at, stale_at]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
        .map(|t| t.duration_since(now).max(SignedDuration::from_millis(1)));
    plan.status = status;
    plan
}

#[cfg(test)]
#[path = "dataset_tests.rs"]
mod tests;
