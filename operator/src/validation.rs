//! Checks that only the operator can make (the CRD schema and CEL rules catch the rest at apply
//! time): cron syntax, time-zone names, durations, dependency cycles and references to objects
//! that do not exist. Pure: what exists is passed in. Every message names the field.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;

use crate::api::{BackfillSpec, CatchUpPolicy, ConcurrencyPolicy, DatasetSpec, PipelineSpec};
use crate::duration;
use crate::schedule::{self, Schedule};

/// What a spec refers to and whether it exists, as observed by the controller.
pub trait Lookup {
    fn dataset_exists(&self, name: &str) -> bool;
    fn resource_quota_exists(&self, name: &str) -> bool;
}

/// Problems with a Pipeline spec; empty when it is valid.
pub fn pipeline(spec: &PipelineSpec, lookup: &dyn Lookup) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(tz) = &spec.time_zone
        && let Err(e) = schedule::time_zone(tz)
    {
        problems.push(e.to_string());
    }
    if let Some(expr) = &spec.schedule
        && let Err(e @ schedule::ScheduleError::Cron { .. }) = Schedule::parse(expr, None)
    {
        problems.push(e.to_string());
    }
    if spec.schedule.is_none() && spec.trigger.is_none() {
        problems.push("spec: set spec.schedule, spec.trigger, or both".to_string());
    }
    if let Some(partition) = &spec.partition {
        for (field, value) in [("size", &partition.size), ("offset", &partition.offset)] {
            if let Some(value) = value
                && let Err(e) = duration::parse(value)
            {
                problems.push(format!("spec.partition.{field}: {e}"));
            }
        }
    }
    problems.extend(lateness(spec));
    problems.extend(step_graph(spec));
    problems.extend(step_templates(spec));
    let mut missing = BTreeMap::<&str, &str>::new();
    for step in &spec.steps {
        for name in &step.inputs {
            if !lookup.dataset_exists(name) {
                missing.entry(name).or_insert("spec.steps[].inputs");
            }
        }
        for name in &step.outputs {
            if !lookup.dataset_exists(name) {
                missing.entry(name).or_insert("spec.steps[].outputs");
            }
        }
    }
    if let Some(trigger) = &spec.trigger {
        for name in &trigger.datasets {
            if !lookup.dataset_exists(name) {
                missing.entry(name).or_insert("spec.trigger.datasets");
            }
        }
    }
    for (name, field) in missing {
        problems.push(format!("{field}: Dataset {name:?} does not exist in this namespace"));
    }
    problems
}

/// Problems with `spec.lateness` (the schema and CEL rules say the same at apply time).
fn lateness(spec: &PipelineSpec) -> Vec<String> {
    let Some(lateness) = &spec.lateness else { return Vec::new() };
    let mut problems = Vec::new();
    let max = crate::plan::late::MAX_LOOKBACK as i32;
    match (lateness.lookback, lateness.duration.as_deref()) {
        (Some(n), None) if !(1..=max).contains(&n) => {
            problems.push(format!("spec.lateness.lookback: {n} is outside 1..={max}"));
        }
        (None, Some(d)) => match duration::parse(d) {
            Ok(d) if d.is_positive() => {}
            Ok(_) => problems.push("spec.lateness.duration must be a positive duration".to_string()),
            Err(e) => problems.push(format!("spec.lateness.duration: {e}")),
        },
        (Some(_), None) => {}
        _ => problems.push("spec.lateness: set exactly one of lookback or duration".to_string()),
    }
    if !spec.steps.iter().any(|s| s.late_rerun) {
        problems.push("spec.lateness: no step has lateRerun: true, so late passes would run nothing".to_string());
    }
    if spec.schedule.is_none() {
        problems.push("spec.lateness needs spec.schedule: late passes follow scheduled runs".to_string());
    }
    problems
}

/// Largest pod template a step may carry, as JSON: every Job of the step copies it, and a
/// Backfill creates one per partition.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Problems with the steps' pod templates that the API server would only report when a Job is
/// created (quantities are int-or-string in the schema), or not at all (the size).
fn step_templates(spec: &PipelineSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let field = format!("spec.steps[{i}].template");
        let size = serde_json::to_vec(&step.template).map_or(0, |json| json.len());
        if size > MAX_TEMPLATE_BYTES {
            problems.push(format!(
                "{field}: the pod template is {size} bytes, more than {MAX_TEMPLATE_BYTES} (every Job of the step copies it)"
            ));
        }
        let Some(pod) = &step.template.spec else { continue };
        let containers = [
            ("containers", pod.containers.as_slice()),
            ("initContainers", pod.init_containers.as_deref().unwrap_or_default()),
        ];
        for (list, containers) in containers {
            for (c, container) in containers.iter().enumerate() {
                let Some(resources) = &container.resources else { continue };
                for (kind, amounts) in [("requests", &resources.requests), ("limits", &resources.limits)] {
                    for (name, amount) in amounts.iter().flatten() {
                        problems.extend(quantity_problem(
                            &format!("{field}.spec.{list}[{c}].resources.{kind}.{name}"),
                            &amount.0,
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// A problem when `text` at `field` is not a non-negative Kubernetes quantity.
fn quantity_problem(field: &str, text: &str) -> Option<String> {
    match crate::quota::quantity::parse(text, crate::quota::quantity::Round::Up) {
        None => Some(format!("{field}: {text:?} is not a quantity (for example 500m, 2 or 512Mi)")),
        Some(milli) if milli < 0 => Some(format!("{field}: {text:?} is negative")),
        Some(_) => None,
    }
}

/// Settings of a valid Pipeline spec that work against each other, for the `Ready` message: with
/// `catchUp.policy: All`, fewer than `maxRuns` windows can be caught up when
/// `startingDeadlineSeconds` drops the older ones, or when the concurrency settings leave no room
/// for them (the rest are skipped). Measured on the schedule's ticks from 2026-01-01 UTC, so
/// approximate for schedules whose spacing varies. Empty when nothing is at odds.
pub fn pipeline_warnings(spec: &PipelineSpec) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(catch_up) = spec.catch_up.as_ref().filter(|c| c.policy == CatchUpPolicy::All) else {
        return warnings;
    };
    let max_runs = catch_up.max_runs.unwrap_or(10).max(1) as u64;
    let schedule = spec.schedule.as_deref().and_then(|e| Schedule::parse(e, spec.time_zone.as_deref()).ok());
    if let (Some(schedule), Some(deadline)) = (schedule, spec.starting_deadline_seconds)
        && let Some((on_time, needed)) = catch_up_reach(&schedule, deadline, max_runs)
        && on_time < max_runs
    {
        warnings.push(format!(
            "spec.catchUp.maxRuns: at most {on_time} of {max_runs} missed windows can be caught up, because \
             spec.startingDeadlineSeconds ({deadline}) records older ones as missed; set \
             startingDeadlineSeconds to at least {needed} or lower maxRuns"
        ));
    }
    let concurrency = spec.concurrency.clone().unwrap_or_default();
    let active = concurrency.max_concurrent_runs.unwrap_or(1).max(1) as u64;
    let room = active
        + match concurrency.policy {
            ConcurrencyPolicy::Queue => concurrency.max_queued.unwrap_or(10).max(1) as u64,
            ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace => 0,
        };
    if room < max_runs {
        warnings.push(format!(
            "spec.catchUp.maxRuns: at most {room} of {max_runs} missed windows can start or wait at once \
             (spec.concurrency: maxConcurrentRuns {active}, policy {:?}{}); the rest are skipped",
            concurrency.policy,
            match concurrency.policy {
                ConcurrencyPolicy::Queue => format!(", maxQueued {}", room - active),
                _ => String::new(),
            }
        ));
    }
    warnings
}

/// How many ticks a catch-up can still start within `deadline` seconds of the newest one, and
/// the deadline that `max_runs` consecutive ticks need.
fn catch_up_reach(schedule: &Schedule, deadline: i64, max_runs: u64) -> Option<(u64, i64)> {
    let first = schedule.next_after("2026-01-01T00:00:00Z".parse().ok()?)?;
    let within = first.checked_add(SignedDuration::from_secs(deadline)).ok()?;
    let on_time = 1 + schedule.count_ticks(first, within);
    let mut last = first;
    for _ in 1..max_runs {
        last = schedule.next_after(last)?;
    }
    Some((on_time, last.duration_since(first).as_secs()))
}

/// Step names unique, dependencies known, and no dependency cycle (of any length).
fn step_graph(spec: &PipelineSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for step in &spec.steps {
        if !names.insert(step.name.as_str()) {
            problems.push(format!("spec.steps: step name {:?} is used twice", step.name));
        }
    }
    for step in &spec.steps {
        for dep in &step.depends_on {
            if !names.contains(dep.as_str()) {
                problems.push(format!("spec.steps[{}].dependsOn: {dep:?} is not a step of this pipeline", step.name));
            }
        }
    }
    if let Some(cycle) = find_cycle(spec) {
        problems.push(format!("spec.steps[].dependsOn: dependency cycle {}", cycle.join(" -> ")));
    }
    problems
}

/// A dependency cycle among the steps, as the list of step names along it (first repeated last).
pub fn find_cycle(spec: &PipelineSpec) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> =
        spec.steps.iter().map(|s| (s.name.as_str(), s.depends_on.iter().map(String::as_str).collect())).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        path.push(node);
        for dep in deps.get(node).into_iter().flatten() {
            if deps.contains_key(dep)
                && let Some(cycle) = visit(dep, deps, marks, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in deps.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &deps, &mut marks, &mut path) {
            return Some(cycle);
        }
    }
    None
}

/// Problems with a Dataset spec; empty when it is valid.
pub fn dataset(spec: &DatasetSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(freshness) = &spec.freshness {
        let max_age =
            duration::parse(&freshness.max_age).map_err(|e| problems.push(format!("spec.freshness.maxAge: {e}"))).ok();
        if let Some(warn) = &freshness.warn_after {
            match duration::parse(warn) {
                Err(e) => problems.push(format!("spec.freshness.warnAfter: {e}")),
                Ok(warn) => {
                    if max_age.is_some_and(|max| warn > max) {
                        problems.push("spec.freshness.warnAfter must not be greater than spec.freshness.maxAge".into());
                    }
                }
            }
        }
    }
    if let Some(contract) = &spec.contract {
        let mut seen = BTreeSet::new();
        for column in &contract.columns {
            if !seen.insert(column.name.as_str()) {
                problems.push(format!("spec.contract.columns: column {:?} is listed twice", column.name));
            }
        }
    }
    problems
}

/// Problems with a Backfill spec; empty when it is valid.
/// `pipeline` is the referenced Pipeline's spec as observed, `None` when it does not exist.
pub fn backfill(spec: &BackfillSpec, pipeline: Option<&PipelineSpec>, lookup: &dyn Lookup) -> Vec<String> {
    let mut problems = Vec::new();
    if spec.range.start.0 >= spec.range.end.0 {
        problems.push("spec.range.start must be before spec.range.end".into());
    }
    match pipeline {
        None => problems
            .push(format!("spec.pipelineRef: Pipeline {:?} does not exist in this namespace", spec.pipeline_ref.name)),
        Some(pipeline) if pipeline.schedule.is_none() => problems.push(format!(
            "spec.pipelineRef: Pipeline {:?} has no spec.schedule, so it has no partition windows to backfill",
            spec.pipeline_ref.name
        )),
        Some(_) => {}
    }
    if let Some(budget) = &spec.budget {
        for (field, amounts) in [("reserve", &budget.reserve), ("limits", &budget.limits)] {
            for (name, amount) in amounts.iter().flatten() {
                problems.extend(quantity_problem(&format!("spec.budget.{field}.{name}"), &amount.0));
            }
        }
    }
    if let Some(quota) = spec.budget.as_ref().and_then(|b| b.resource_quota_ref.as_ref())
        && !lookup.resource_quota_exists(&quota.name)
    {
        problems.push(format!(
            "spec.budget.resourceQuotaRef: ResourceQuota {:?} does not exist in this namespace",
            quota.name
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    use crate::api::{CatchUpSpec, ConcurrencySpec, PartitionSpec, StepKind, StepSpec};

    struct World {
        datasets: Vec<&'static str>,
        quotas: Vec<&'static str>,
    }

    impl Lookup for World {
        fn dataset_exists(&self, name: &str) -> bool {
            self.datasets.contains(&name)
        }
        fn resource_quota_exists(&self, name: &str) -> bool {
            self.quotas.contains(&name)
        }
    }

    fn world() -> World {
        World { datasets: vec!["orders", "stg-orders"], quotas: vec![] }
    }

    fn step(name: &str, deps: &[&str]) -> StepSpec {
        StepSpec {
            name: name.into(),
            kind: StepKind::Transform,
            inputs: vec![],
            outputs: vec![],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            template: Default::default(),
            retries: None,
            active_deadline_seconds: None,
            late_rerun: false,
        }
    }

    fn pipeline_spec(steps: Vec<StepSpec>) -> PipelineSpec {
        PipelineSpec {
            schedule: Some("0 * * * *".into()),
            time_zone: None,
            suspend: false,
            partition: None,
            starting_deadline_seconds: None,
            catch_up: None,
            trigger: None,
            steps,
            concurrency: None,
            history: None,
            lateness: None,
            queue_name: None,
            workload_priority_class: None,
        }
    }

    #[test]
    fn valid_pipeline_has_no_problems() {
        let spec = pipeline_spec(vec![step("extract", &[]), step("stage", &["extract"])]);
        assert_eq!(pipeline(&spec, &world()), Vec::<String>::new());
    }

    #[test]
    fn three_step_cycle_is_found() {
        let spec = pipeline_spec(vec![step("a", &["c"]), step("b", &["a"]), step("c", &["b"])]);
        let problems = pipeline(&spec, &world());
        assert_eq!(problems, ["spec.steps[].dependsOn: dependency cycle a -> c -> b -> a"]);
    }

    #[test]
    fn bad_cron_time_zone_and_duration_are_reported() {
        let mut spec = pipeline_spec(vec![step("a", &[])]);
        spec.schedule = Some("every hour".into());
        spec.time_zone = Some("Europe/Atlantis".into());
        spec.partition = Some(PartitionSpec { size: Some("1 hour".into()), offset: None });
        let problems = pipeline(&spec, &world());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("spec.timeZone"));
        assert!(problems[1].starts_with("spec.schedule"));
        assert!(problems[2].starts_with("spec.partition.size"));
    }

    /// The orders-ingest example as it was: `catchUp: All, maxRuns: 24` with a 900 s starting
    /// deadline on an hourly schedule (one window on time) and room for 2 + 12 runs.
    #[test]
    fn catch_up_that_cannot_reach_max_runs_is_warned() {
        let mut spec = pipeline_spec(vec![step("a", &[])]);
        spec.schedule = Some("5 * * * *".into());
        spec.time_zone = Some("Europe/Berlin".into());
        spec.starting_deadline_seconds = Some(900);
        spec.catch_up = Some(CatchUpSpec { policy: CatchUpPolicy::All, max_runs: Some(24) });
        spec.concurrency = Some(ConcurrencySpec {
            max_concurrent_runs: Some(2),
            policy: ConcurrencyPolicy::Queue,
            max_queued: Some(12),
        });
        let warnings = pipeline_warnings(&spec);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("spec.catchUp.maxRuns: at most 1 of 24"), "{}", warnings[0]);
        assert!(warnings[0].contains("at least 82800"), "{}", warnings[0]);
        assert!(warnings[1].contains("at most 14 of 24"), "{}", warnings[1]);
        spec.starting_deadline_seconds = Some(86_400);
        spec.concurrency.as_mut().unwrap().max_queued = Some(22);
        assert_eq!(pipeline_warnings(&spec), Vec::<String>::new());
        spec.catch_up = Some(CatchUpSpec { policy: CatchUpPolicy::Latest, max_runs: Some(24) });
        spec.starting_deadline_seconds = Some(60);
        assert_eq!(pipeline_warnings(&spec), Vec::<String>::new());
    }

    /// Every Pipeline in `manifests/examples` is valid and its settings fit together.
    #[test]
    fn example_pipelines_have_no_problems_or_warnings() {
        let files = [
            include_str!("../../manifests/examples/pipeline-orders-ingest.yaml"),
            include_str!("../../manifests/examples/pipeline-orders-transform.yaml"),
        ];
        let mut world = world();
        world.datasets.extend(["hourly-revenue"]);
        let mut seen = 0;
        for doc in files.iter().flat_map(|f| serde_yaml::Deserializer::from_str(f)) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value["kind"] != "Pipeline" {
                continue;
            }
            seen += 1;
            let name = value["metadata"]["name"].as_str().unwrap().to_string();
            let spec: PipelineSpec = serde_yaml::from_value(value["spec"].clone()).unwrap();
            assert_eq!(pipeline(&spec, &world), Vec::<String>::new(), "{name}");
            assert_eq!(pipeline_warnings(&spec), Vec::<String>::new(), "{name}");
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn missing_datasets_are_named_once() {
        let mut a = step("a", &[]);
        a.inputs = vec!["nowhere".into(), "orders".into()];
        a.outputs = vec!["nowhere".into()];
        let spec = pipeline_spec(vec![a]);
        assert_eq!(
            pipeline(&spec, &world()),
            ["spec.steps[].inputs: Dataset \"nowhere\" does not exist in this namespace"]
        );
    }

    #[test]
    fn dataset_warn_after_above_max_age() {
        let spec: DatasetSpec = serde_json::from_value(serde_json::json!({
            "owner": "team-a", "layer": "Raw",
            "freshness": {"maxAge": "1h", "warnAfter": "90m"}
        }))
        .unwrap();
        assert_eq!(dataset(&spec), ["spec.freshness.warnAfter must not be greater than spec.freshness.maxAge"]);
    }

    #[test]
    fn backfill_references_are_checked() {
        let spec: BackfillSpec = serde_json::from_value(serde_json::json!({
            "pipelineRef": {"name": "orders-ingest"},
            "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
            "budget": {"resourceQuotaRef": {"name": "compute"}}
        }))
        .unwrap();
        let mut w = world();
        assert_eq!(backfill(&spec, None, &w).len(), 2);
        let pipeline = pipeline_spec(vec![step("a", &[])]);
        w.quotas.push("compute");
        assert!(backfill(&spec, Some(&pipeline), &w).is_empty());
    }

    #[test]
    fn quantities_and_template_size_are_checked() {
        let mut a = step("a", &[]);
        a.template = serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "main",
            "image": "x", "resources": {"requests": {"cpu": "a lot", "memory": "64Mi"}, "limits": {"memory": "-1Gi"}}}]}}))
        .unwrap();
        let problems = pipeline(&pipeline_spec(vec![a]), &world());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.steps[0].template.spec.containers[0].resources.requests.cpu:"));
        assert!(problems[1].contains("limits.memory: \"-1Gi\" is negative"), "{}", problems[1]);

        let mut big = step("a", &[]);
        big.template = serde_json::from_value(
            serde_json::json!({"metadata": {"annotations": {"x": "y".repeat(MAX_TEMPLATE_BYTES)}},
            "spec": {"containers": [{"name": "main", "image": "x"}]}}),
        )
        .unwrap();
        let problems = pipeline(&pipeline_spec(vec![big]), &world());
        assert!(
            problems.len() == 1 && problems[0].starts_with("spec.steps[0].template: the pod template is"),
            "{problems:?}"
        );

        let spec: BackfillSpec = serde_json::from_value(serde_json::json!({
            "pipelineRef": {"name": "p"}, "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
            "budget": {"limits": {"cpu": "lots", "memory": "2Gi"}}
        }))
        .unwrap();
        let problems = backfill(&spec, Some(&pipeline_spec(vec![step("a", &[])])), &world());
        assert_eq!(problems, ["spec.budget.limits.cpu: \"lots\" is not a quantity (for example 500m, 2 or 512Mi)"]);
    }
}
