//! Scenario tests of `plan::backfill::decide`: a small world (a Pipeline, the backfill's Jobs,
//! a quota) is fed in, the plan read out, and for longer scenarios the plan applied to the world
//! as the reconciler and the Job controller would.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ranges::RangeSet;
use super::records::{ForeignJob, Owner, Sibling};
use super::*;
use crate::api::conditions;
use crate::api::{PartitionCounts, PartitionWindow, RunPhase, RunRecord};
use crate::plan::runs::JobState;
use crate::quota::{Amounts, QuotaBudget, QuotaState};

const CPU: &str = "requests.cpu";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    ts("2026-11-24T12:00:00Z")
}

/// An hourly pipeline created a week before now, with the given steps (name, kind, deps, cpu).
fn pipeline(steps: &[(&str, &str, &[&str], &str)]) -> PipelineSpec {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|(name, kind, deps, cpu)| {
            serde_json::json!({
                "name": name, "kind": kind, "dependsOn": deps,
                "retries": {"backoffSeconds": 10, "maxBackoffSeconds": 60},
                "template": {"spec": {"containers": [{"name": "main", "image": "x",
                    "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}}
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({"schedule": "0 * * * *", "steps": steps})).unwrap()
}

fn one_step() -> PipelineSpec {
    pipeline(&[("extract", "Extract", &[], "1")])
}

fn backfill(extra: serde_json::Value) -> BackfillSpec {
    let mut spec = serde_json::json!({
        "pipelineRef": {"name": "orders"},
        "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"},
        "parallelism": 10,
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(spec).unwrap()
}

fn amounts(pairs: &[(&str, Milli)]) -> Amounts {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Quota `hard` CPU with `used` counted and `reserve` kept, in millicores.
fn quota(hard: Milli, used: Milli, reserve: Milli) -> Budget {
    Budget {
        quota: Some(QuotaBudget {
            state: QuotaState { name: "compute".into(), hard: amounts(&[(CPU, hard)]), used: amounts(&[(CPU, used)]) },
            reserve: amounts(&[(CPU, reserve)]),
            uncounted: amounts(&[(CPU, 0)]),
            committed: Amounts::new(),
        }),
        ..Default::default()
    }
}

/// Everything `decide` reads, owned.
struct World {
    spec: BackfillSpec,
    status: BackfillStatus,
    pipeline: PipelineSpec,
    pipeline_status: PipelineStatus,
    pipeline_created: Timestamp,
    jobs: Vec<ObservedJob>,
    foreign: Vec<ForeignJob>,
    siblings: Vec<Sibling>,
    budget: Budget,
    slots: usize,
    now: Timestamp,
    problems: Vec<String>,
    blocked: Vec<BlockedInput>,
    protected: Vec<protect::ProtectedHold>,
    conflicts: Vec<String>,
    prices: Option<crate::cost::Prices>,
    /// The Jobs go to a Kueue queue: created queued.
    queued: bool,
}

impl World {
    fn new(spec: BackfillSpec, pipeline: PipelineSpec) -> Self {
        Self {
            spec,
            status: BackfillStatus::default(),
            pipeline,
            pipeline_status: PipelineStatus::default(),
            pipeline_created: ts("2026-11-17T12:00:00Z"),
            jobs: vec![],
            foreign: vec![],
            siblings: vec![],
            budget: Budget::default(),
            slots: usize::MAX,
            now: now(),
            problems: vec![],
            blocked: vec![],
            protected: vec![],
            conflicts: vec![],
            prices: None,
            queued: false,
        }
    }

    fn decide(&self) -> Plan {
        let pipeline = PipelineView {
            name: "orders",
            spec: &self.pipeline,
            status: Some(&self.pipeline_status),
            created: self.pipeline_created,
        };
        decide(&Input {
            spec: &self.spec,
            status: &self.status,
            generation: Some(1),
            uid: "uid-1",
            now: self.now,
            pipeline: Some(pipeline),
            jobs: self.jobs.clone(),
            records: Records::new(Some(&self.pipeline_status), self.foreign.clone(), self.siblings.clone()),
            container_defaults: ContainerDefaults::default(),
            budget: self.budget.clone(),
            free_job_slots: self.slots,
            problems: self.problems.clone(),
            blocked_inputs: self.blocked.clone(),
            protected: self.protected.clone(),
            name_conflicts: self.conflicts.clone(),
            prices: self.prices.clone(),
            queued: self.queued,
        })
    }

    /// What the reconciler does with a plan: create the Jobs (as running), write the status,
    /// delete the recorded Jobs. The quota's `used` follows the running Jobs.
    fn apply(&mut self, plan: &Plan) {
        for c in &plan.create {
            self.jobs.push(ObservedJob {
                name: crate::jobs::job_name("orders", &c.step, &c.run_id, c.attempt),
                run_id: c.run_id.clone(),
                step: c.step.clone(),
                attempt: c.attempt,
                window: c.window,
                created: self.now,
                state: if self.queued { JobState::Queued } else { JobState::Active },
            });
        }
        self.status = plan.status.clone();
        self.jobs.retain(|j| !plan.delete.contains(&j.name));
        self.sync_quota();
    }

    fn sync_quota(&mut self) {
        let running = self.jobs.iter().filter(|j| j.state == JobState::Active).count() as Milli;
        if let Some(q) = self.budget.quota.as_mut() {
            q.state.used.insert(CPU.into(), running * 1000);
        }
    }

    /// Every running Job finishes: succeeded, or failed when `fail` says so.
    fn finish_all(&mut self, fail: impl Fn(&ObservedJob) -> bool) {
        let at = self.now;
        for j in self.jobs.iter_mut().filter(|j| j.state == JobState::Active) {
            j.state = if fail(j) {
                JobState::Failed { finished: at, reason: "BackoffLimitExceeded".into() }
            } else {
                JobState::Succeeded { finished: at }
            };
        }
        self.sync_quota();
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let c = conditions::find(&self.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone())
    }

    fn counts(&self) -> PartitionCounts {
        self.status.partitions.clone().unwrap()
    }
}

fn hour(h: i64) -> Window {
    let start = ts("2026-10-01T00:00:00Z") + SignedDuration::from_hours(h);
    Window { start, end: start + SignedDuration::from_hours(1) }
}

fn windows(plan: &Plan) -> Vec<Window> {
    let mut out: Vec<Window> = plan.create.iter().map(|c| c.window).collect();
    out.dedup();
    out
}

fn record(h: i64, phase: RunPhase) -> RunRecord {
    RunRecord {
        id: hour(h).run_id(),
        window: PartitionWindow { start: Time(hour(h).start), end: Time(hour(h).end) },
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

#[test]
fn a_backfill_waiting_for_quota_looks_again_within_the_quota_retry() {
    let mut w = World::new(backfill(serde_json::json!({})), one_step());
    w.budget = quota(4000, 0, 1000);
    let plan = w.decide();
    assert_eq!(plan.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("QuotaExhausted"));
    assert_eq!(plan.requeue_after, Some(QUOTA_RETRY), "a lagging quota watch does not leave it asleep");
}

#[test]
fn quota_admits_three_one_cpu_partitions_and_keeps_the_reserve() {
    let mut w = World::new(backfill(serde_json::json!({})), one_step());
    w.budget = quota(4000, 0, 1000);
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(0), hour(1), hour(2)], "oldest first, three fit under 4 - 1 CPU");
    assert_eq!(plan.create[0].run_id, "20261001-0000-1h", "the Pipeline's run id: the same Job names");
    assert_eq!(plan.admitted.len(), 3);
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "QuotaExhausted");
    assert_eq!(throttled.resource.as_deref(), Some(CPU));
    assert_eq!(throttled.needed.unwrap().0, "1");
    assert_eq!(throttled.free.unwrap().0, "0");
    assert_eq!(plan.headroom, [(CPU.to_string(), 0)]);
    w.apply(&plan);
    let c = w.counts();
    assert_eq!((c.total, c.running, c.pending), (24, 3, 21));
    assert_eq!(w.condition("Throttled"), ("True".into(), "QuotaExhausted".into()));
    assert_eq!(w.condition("Progressing"), ("True".into(), "PartitionsRemaining".into()));
    assert_eq!(w.condition("Complete").0, "False");
    assert_eq!(w.status.progress.as_deref(), Some("0/24 (0%)"));
    assert!(plan.events.iter().any(|e| e.reason == "Started"));
    // The same world decided again creates the same Jobs again (AlreadyExists absorbs them),
    // and nothing more: the quota is full.
    let again = w.decide();
    assert!(again.create.is_empty());
    assert!(again.events.is_empty(), "no Event repeats");
}

/// With a Kueue queue the budget has no quota (the act layer leaves it out): partitions start
/// up to `parallelism`, counted `queued` until Kueue unsuspends their Jobs, and queued
/// partitions hold their parallelism slots, so a huge range never floods Kueue.
#[test]
fn queued_partitions_count_as_queued_and_toward_parallelism() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 3, "queueName": "backfills"})), one_step());
    w.queued = true;
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(0), hour(1), hour(2)]);
    let c = plan.status.partitions.clone().unwrap();
    assert_eq!((c.running, c.queued, c.pending), (0, 3, 21), "created suspended: queued at once");
    w.apply(&plan);
    let again = w.decide();
    assert!(again.create.is_empty(), "queued partitions hold their slots");
    assert_eq!(again.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("ParallelismReached"));
    // Kueue admits one: it runs; the others stay queued.
    w.jobs[0].state = JobState::Active;
    let plan = w.decide();
    assert!(plan.create.is_empty());
    let c = plan.status.partitions.clone().unwrap();
    assert_eq!((c.running, c.queued), (1, 2));
    w.apply(&plan);
    assert!(w.condition("Progressing").0 == "True");
    let progressing = conditions::find(&w.status.conditions, "Progressing").unwrap();
    assert!(progressing.message.ends_with("1 running, 2 queued in Kueue"), "{}", progressing.message);
    // It finishes: the next partition starts, queued.
    w.finish_all(|_| false);
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(3)]);
    let c = plan.status.partitions.clone().unwrap();
    assert_eq!((c.succeeded, c.running, c.queued), (1, 0, 3));
}

#[test]
fn a_whole_backfill_runs_each_window_once_then_completes_and_cleans_up() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 5})), one_step());
    w.budget = quota(4000, 0, 1000);
    let mut created: Vec<String> = Vec::new();
    for round in 0..40 {
        let plan = w.decide();
        created.extend(plan.create.iter().map(|c| crate::jobs::job_name("orders", &c.step, &c.run_id, c.attempt)));
        w.apply(&plan);
        assert!(w.status.processed_ranges.len() <= 4, "round {round}: {:?}", w.status.processed_ranges);
        assert!(w.jobs.iter().filter(|j| j.state == JobState::Active).count() <= 3, "never more than fit");
        if w.condition("Complete").0 == "True" {
            break;
        }
        w.now += SignedDuration::from_mins(1);
        w.finish_all(|_| false);
    }
    assert_eq!(w.condition("Complete"), ("True".into(), "AllPartitionsProcessed".into()));
    assert_eq!(w.condition("Progressing").0, "False");
    assert_eq!(created.len(), 24);
    assert_eq!(created.iter().collect::<BTreeSet<_>>().len(), 24, "each window exactly once");
    assert!(w.jobs.is_empty(), "finished partitions' Jobs are deleted");
    let c = w.counts();
    assert_eq!((c.succeeded, c.failed, c.skipped, c.pending, c.running), (24, 0, 0, 0, 0));
    assert_eq!(w.status.succeeded_ranges.len(), 1);
    assert_eq!(w.status.succeeded_ranges[0].count, 24);
    assert_eq!(w.status.progress.as_deref(), Some("24/24 (100%)"));
    assert!(w.status.completion_time.is_some() && w.status.estimated_completion_time.is_none());
    assert!(w.status.throttled.is_none());
    // Complete stays complete, without new Events.
    let plan = w.decide();
    assert!(plan.create.is_empty() && plan.events.is_empty());
}

#[test]
fn newest_first_and_parallelism() {
    let mut w = World::new(
        backfill(
            serde_json::json!({"order": "NewestFirst", "parallelism": 2, "failurePolicy": {"retriesPerPartition": 0}}),
        ),
        one_step(),
    );
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(23), hour(22)]);
    w.apply(&plan);
    assert_eq!(w.status.throttled.as_ref().unwrap().reason, "ParallelismReached");
    // A running partition holds its slot until it finishes.
    assert!(w.decide().create.is_empty());
    w.finish_all(|j| j.window == hour(23));
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(21), hour(20)]);
    assert_eq!(plan.status.failed_ranges[0].start.0, hour(23).start);
    assert_eq!(plan.status.succeeded_ranges[0].start.0, hour(22).start);
    assert_eq!(plan.status.processed_ranges.len(), 1);
}

#[test]
fn a_restart_or_a_stale_cache_recreates_the_same_names_never_new_ones() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 3})), one_step());
    let first = w.decide();
    // The status was written but the cache does not show the Jobs yet (or the operator restarted
    // between creating them and writing the status): the same Jobs are planned again.
    w.status = first.status.clone();
    let second = w.decide();
    let names = |p: &Plan| {
        p.create.iter().map(|c| crate::jobs::job_name("orders", &c.step, &c.run_id, c.attempt)).collect::<Vec<_>>()
    };
    assert_eq!(names(&first), names(&second));
    // Once they are seen, nothing is planned for them.
    w.apply(&second);
    assert!(w.decide().create.is_empty());
}

#[test]
fn steps_run_in_dependency_order_within_a_partition() {
    let spec = pipeline(&[
        ("extract", "Extract", &[], "1"),
        ("stage", "Transform", &["extract"], "1"),
        ("curate", "Transform", &["stage"], "1"),
    ]);
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 1})), spec);
    let plan = w.decide();
    assert_eq!(plan.create.iter().map(|c| c.step.as_str()).collect::<Vec<_>>(), ["extract"]);
    w.apply(&plan);
    w.finish_all(|_| false);
    let plan = w.decide();
    assert_eq!(plan.create.iter().map(|c| (c.step.as_str(), c.window)).collect::<Vec<_>>(), [("stage", hour(0))]);
    assert!(plan.delete.is_empty(), "the partition is not finished yet");
}

#[test]
fn transforms_only_skips_extract_and_starts_at_the_first_transform() {
    let spec = pipeline(&[
        ("extract", "Extract", &[], "1"),
        ("stage", "Transform", &["extract"], "1"),
        ("curate", "Transform", &["stage"], "1"),
    ]);
    let mut w = World::new(
        backfill(serde_json::json!({"steps": "TransformsOnly", "reprocess": "All", "parallelism": 2})),
        spec,
    );
    let plan = w.decide();
    assert_eq!(plan.create.iter().map(|c| c.step.as_str()).collect::<Vec<_>>(), ["stage", "stage"]);
    w.apply(&plan);
    w.finish_all(|_| false);
    let plan = w.decide();
    assert!(plan.create.iter().all(|c| c.step == "curate"));
    // Without Transform steps there is nothing to do, and the spec says so.
    let mut w = World::new(backfill(serde_json::json!({"steps": "TransformsOnly"})), one_step());
    w.pipeline = one_step();
    let plan = w.decide();
    assert!(plan.create.is_empty());
    let ready = conditions::find(&plan.status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("no Transform steps"), "{}", ready.message);
}

#[test]
fn reprocess_judges_windows_against_recorded_runs() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 24})), one_step());
    w.pipeline_status.recent_runs =
        vec![record(0, RunPhase::Succeeded), record(1, RunPhase::Failed), record(2, RunPhase::Succeeded)];
    w.pipeline_status.active_runs = vec![record(3, RunPhase::Running)];
    // Missing: windows 0 and 2 succeeded (skipped), 3 runs elsewhere (waits), 1 failed and the
    // rest never ran (selected).
    let plan = w.decide();
    let started: BTreeSet<Window> = windows(&plan).into_iter().collect();
    assert!(!started.contains(&hour(0)) && !started.contains(&hour(2)) && !started.contains(&hour(3)));
    assert!(started.contains(&hour(1)) && started.contains(&hour(4)));
    assert_eq!(started.len(), 21);
    assert_eq!(plan.status.partitions.as_ref().unwrap().skipped, 2);
    assert_eq!(plan.requeue_after, Some(BUSY_RETRY), "window 3 is looked at again");
    // Failed: only window 1.
    w.spec.reprocess = crate::api::Reprocess::Failed;
    assert_eq!(windows(&w.decide()), [hour(1)]);
    // All: everything but the busy window.
    w.spec.reprocess = crate::api::Reprocess::All;
    assert_eq!(windows(&w.decide()).len(), 23);
}

#[test]
fn a_window_whose_job_names_are_taken_gets_a_run_id_of_its_own() {
    let mut w = World::new(backfill(serde_json::json!({"reprocess": "All", "parallelism": 2})), one_step());
    // The Pipeline's history keeps the Jobs of window 0's run.
    w.pipeline_status.recent_runs = vec![record(0, RunPhase::Succeeded)];
    w.foreign.push(ForeignJob {
        job: ObservedJob {
            name: crate::jobs::job_name("orders", "extract", &hour(0).run_id(), 0),
            run_id: hour(0).run_id(),
            step: "extract".into(),
            attempt: 0,
            window: hour(0),
            created: ts("2026-10-01T01:00:00Z"),
            state: JobState::Succeeded { finished: ts("2026-10-01T01:01:00Z") },
        },
        owner: Owner::Pipeline,
    });
    let plan = w.decide();
    assert_eq!(plan.create[0].window, hour(0));
    assert_eq!(plan.create[0].run_id, format!("{}-b{}", hour(0).run_id(), crate::jobs::short_hash("uid-1", 3)));
    assert_eq!(plan.create[1].run_id, hour(1).run_id());
    // The suffixed run id stays the run id of that partition.
    w.apply(&plan);
    w.finish_all(|j| j.window == hour(0));
    let plan = w.decide();
    assert!(plan.create.iter().all(|c| c.window != hour(0) || c.run_id.contains("-b")));
}

#[test]
fn other_backfills_are_records_and_their_runs_are_not_raced() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 24})), one_step());
    let mut sibling = Sibling { uid: "uid-2".into(), ..Default::default() };
    let next = |e: Timestamp| Some(e);
    for h in 0..4 {
        sibling.processed.insert(hour(h), next);
        sibling.succeeded.insert(hour(h), next);
    }
    w.siblings.push(sibling);
    // Window 5 runs in the other backfill.
    w.foreign.push(ForeignJob {
        job: ObservedJob {
            name: "x".into(),
            run_id: hour(5).run_id(),
            step: "extract".into(),
            attempt: 0,
            window: hour(5),
            created: now(),
            state: JobState::Active,
        },
        owner: Owner::Backfill("uid-2".into()),
    });
    let plan = w.decide();
    let started: BTreeSet<Window> = windows(&plan).into_iter().collect();
    assert_eq!(started.len(), 24 - 4 - 1);
    assert!(!started.contains(&hour(5)));
    assert_eq!(plan.status.partitions.as_ref().unwrap().skipped, 4);
}

#[test]
fn failing_partitions_retry_with_backoff_then_count_and_stop_the_backfill() {
    let mut w = World::new(
        backfill(
            serde_json::json!({"parallelism": 2, "failurePolicy": {"retriesPerPartition": 1, "maxFailedPartitions": 2}}),
        ),
        one_step(),
    );
    let plan = w.decide();
    w.apply(&plan);
    w.finish_all(|_| true);
    // Both failed attempt 0: retry after the step's 10 s backoff.
    let plan = w.decide();
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(SignedDuration::from_secs(10)));
    w.now += SignedDuration::from_secs(10);
    let plan = w.decide();
    assert_eq!(plan.create.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 1]);
    w.apply(&plan);
    w.finish_all(|_| true);
    // Out of retries: two failed partitions reach maxFailedPartitions.
    let plan = w.decide();
    assert!(plan.create.is_empty());
    assert_eq!(plan.finished, (0, 2));
    assert_eq!(plan.events.iter().filter(|e| e.reason == "PartitionFailed").count(), 2);
    assert!(plan.events.iter().any(|e| e.reason == "MaxFailedPartitionsReached" && e.warning));
    w.apply(&plan);
    assert_eq!(w.condition("Failed"), ("True".into(), "MaxFailedPartitionsReached".into()));
    assert_eq!(w.condition("Complete").0, "False");
    assert_eq!(w.status.recent_failures.len(), 2);
    assert_eq!(w.status.recent_failures[0].window_start.0, hour(1).start, "newest first");
    assert_eq!(w.status.recent_failures[0].reason, "BackoffLimitExceeded");
    assert_eq!(super::observe::failure_reason("Job has failed"), "StepFailed");
    assert_eq!(
        super::observe::failure_reason("DeadlineExceeded: Job was active longer than specified"),
        "DeadlineExceeded"
    );
    assert_eq!(w.status.failed_ranges[0].count, 2);
    // The failed partitions' Jobs are kept for inspection, and nothing new starts.
    assert_eq!(w.jobs.len(), 4);
    assert!(w.decide().create.is_empty());
}

#[test]
fn suspend_stops_new_jobs_and_resume_continues_where_it_stopped() {
    let spec = pipeline(&[("extract", "Extract", &[], "1"), ("stage", "Transform", &["extract"], "1")]);
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 2})), spec);
    let plan = w.decide();
    w.apply(&plan);
    w.spec.suspend = true;
    w.finish_all(|_| false);
    let plan = w.decide();
    assert!(plan.create.is_empty(), "not even the next step of a started partition");
    assert!(plan.events.iter().any(|e| e.reason == "Suspended"));
    w.apply(&plan);
    assert_eq!(w.status.throttled.as_ref().unwrap().reason, "Suspended");
    assert_eq!(w.condition("Progressing"), ("False".into(), "Suspended".into()));
    assert_eq!(w.condition("Throttled"), ("True".into(), "Suspended".into()));
    w.spec.suspend = false;
    let plan = w.decide();
    assert_eq!(
        plan.create.iter().map(|c| (c.step.as_str(), c.window)).collect::<Vec<_>>(),
        [("stage", hour(0)), ("stage", hour(1))]
    );
    assert!(plan.events.iter().any(|e| e.reason == "Resumed"));
}

#[test]
fn a_partition_that_can_never_fit_fails_at_once() {
    let mut w = World::new(backfill(serde_json::json!({})), pipeline(&[("extract", "Extract", &[], "3500m")]));
    w.budget = quota(4000, 0, 1000);
    let plan = w.decide();
    assert!(plan.create.is_empty());
    w.apply(&plan);
    let failed = conditions::find(&w.status.conditions, "Failed").unwrap();
    assert_eq!((failed.status.as_str(), failed.reason.as_str()), ("True", "QuotaNeverFits"));
    assert!(failed.message.contains("step extract: requests.cpu needed 3.5"), "{}", failed.message);
    assert!(w.status.completion_time.is_some());
    // A larger quota (it is watched) lets it run.
    w.budget = quota(8000, 0, 1000);
    let plan = w.decide();
    assert_eq!(plan.create.len(), 2);
    assert_eq!(conditions::find(&plan.status.conditions, "Failed").unwrap().status, "False");
}

#[test]
fn windows_not_yet_handled_by_the_schedule_wait() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 24})), one_step());
    // The pipeline was created on Oct 1 at 06:00 and the schedule has handled ticks to 10:00:
    // windows whose tick is later may still be run by it.
    w.pipeline_created = ts("2026-10-01T06:00:00Z");
    w.pipeline_status.last_schedule_time = Some(Time(ts("2026-10-01T10:00:00Z")));
    let plan = w.decide();
    assert_eq!(windows(&plan).len(), 10);
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "WaitingForSchedule");
    assert!(throttled.message.unwrap().contains("2026-10-01T10:00:00Z"));
}

#[test]
fn job_caps_and_invalid_specs_hold_back() {
    let mut w = World::new(backfill(serde_json::json!({})), one_step());
    w.slots = 2;
    let plan = w.decide();
    assert_eq!(plan.create.len(), 2);
    assert_eq!(plan.status.throttled.as_ref().unwrap().reason, "JobCapReached");
    assert_eq!(plan.requeue_after, Some(CAP_RETRY));
    w.slots = usize::MAX;
    w.problems = vec!["spec.pipelineRef: Pipeline \"orders\" does not exist in this namespace".into()];
    let plan = w.decide();
    assert!(plan.create.is_empty());
    assert_eq!(conditions::find(&plan.status.conditions, "Ready").unwrap().status, "False");
    assert_eq!(conditions::find(&plan.status.conditions, "Progressing").unwrap().reason, "InvalidSpec");
}

#[test]
fn a_deleted_partition_job_is_run_again_a_recorded_one_never() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 1})), one_step());
    let plan = w.decide();
    w.apply(&plan);
    // Someone deletes the running Job: the window is not recorded, so it runs again.
    w.jobs.clear();
    assert_eq!(windows(&w.decide()), [hour(0)]);
    let plan = w.decide();
    w.apply(&plan);
    w.finish_all(|_| false);
    let plan = w.decide();
    w.apply(&plan);
    // Its Jobs are gone once recorded; the record keeps it from running again.
    assert!(!w.jobs.iter().any(|j| j.window == hour(0)));
    assert!(w.decide().create.iter().all(|c| c.window != hour(0)));
}

#[test]
fn status_stays_small_for_100000_partitions() {
    // Minutely windows over 70 days: 100,800 partitions.
    let mut spec = one_step();
    spec.schedule = Some("* * * * *".into());
    let mut w = World::new(
        backfill(serde_json::json!({
            "range": {"start": "2026-01-01T00:00:00Z", "end": "2026-03-12T00:00:00Z"},
            "parallelism": 50
        })),
        spec,
    );
    w.pipeline_created = ts("2026-06-01T00:00:00Z");
    let minute = |m: i64| {
        let start = ts("2026-01-01T00:00:00Z") + SignedDuration::from_mins(m);
        Window { start, end: start + SignedDuration::from_mins(1) }
    };
    // Half of it done, with a failure every 300 windows (more than the ranges kept).
    let next = |e: Timestamp| Some(e);
    let (mut processed, mut succeeded, mut failed) = (RangeSet::default(), RangeSet::default(), RangeSet::default());
    for m in 0..50_400 {
        processed.insert(minute(m), next);
        if m % 300 == 7 {
            failed.insert(minute(m), next)
        } else {
            succeeded.insert(minute(m), next)
        };
    }
    w.status.processed_ranges = processed.to_status();
    w.status.succeeded_ranges = succeeded.to_status();
    w.status.failed_ranges = failed.to_status();
    let plan = w.decide();
    assert_eq!(plan.create.len(), 50);
    assert_eq!(plan.create[0].window, minute(50_400), "continues after the processed range");
    w.apply(&plan);
    let c = w.counts();
    assert_eq!((c.total, c.succeeded, c.failed, c.running), (100_800, 50_232, 168, 50));
    assert!(w.status.succeeded_ranges.len() <= MAX_RANGES && w.status.failed_ranges.len() <= MAX_RANGES);
    assert_eq!(w.status.succeeded_ranges.iter().map(|r| r.count).sum::<i64>(), 50_232, "counts stay exact");
    let bytes = serde_json::to_vec(&w.status).unwrap().len();
    assert!(bytes < 20_000, "status is {bytes} bytes");
    // A later decision only walks from the processed range on: it passes over the 50 windows
    // in progress and selects none, well within one walk's step budget.
    let again = w.decide();
    assert!(again.create.is_empty(), "parallelism is reached");
    assert!(again.status.throttled.as_ref().is_none_or(|t| t.reason != "JobCapReached"));
}

#[test]
fn estimated_completion_follows_throughput() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 4})), one_step());
    let plan = w.decide();
    w.apply(&plan);
    w.now += SignedDuration::from_mins(10);
    w.finish_all(|_| false);
    let plan = w.decide();
    w.apply(&plan);
    // 4 done in 10 minutes, 20 remaining: 50 more minutes.
    assert_eq!(w.status.estimated_completion_time.as_ref().map(|t| t.0), Some(w.now + SignedDuration::from_mins(50)));
    let before = w.status.clone();
    w.now += SignedDuration::from_secs(30);
    let plan = w.decide();
    assert_eq!(plan.status, before, "nothing changes while nothing finishes: no status write, no wake-up");
}

#[test]
fn run_spec_overrides_retry_limits_only() {
    let spec = one_step();
    let policy = FailurePolicy { retries_per_partition: Some(5), max_failed_partitions: None };
    let runs = runs_spec(&spec, Some(&policy));
    let retries = runs.steps[0].retries.clone().unwrap();
    assert_eq!((retries.limit, retries.backoff_seconds), (Some(5), Some(10)));
    assert_eq!(runs_spec(&spec, None).steps[0].retries.clone().unwrap().limit, Some(DEFAULT_RETRIES));
}

#[test]
fn a_schedule_change_before_the_start_is_followed() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 2, "suspend": true})), one_step());
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.counts().total, 24);
    assert_eq!(w.status.partition_schedule.as_deref(), Some("0 * * * * UTC, window since previous tick, offset 0s"));
    // Nothing started yet: every two hours now, 12 windows of 2 hours.
    w.pipeline.schedule = Some("0 */2 * * *".into());
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.counts().total, 12);
    assert_eq!(w.status.partition_basis.as_ref().map(|b| b.schedule.as_str()), Some("0 */2 * * *"));
    w.spec.suspend = false;
    let plan = w.decide();
    let two_hours = Window { start: hour(0).start, end: hour(1).end };
    assert_eq!(plan.create[0].window, two_hours);
}

#[test]
fn a_walk_cut_short_continues_at_once_only_when_it_recorded_something() {
    // Minutely windows over two weeks, the first 6,000 run elsewhere right now (busy).
    let mut spec = one_step();
    spec.schedule = Some("* * * * *".into());
    let mut w = World::new(
        backfill(serde_json::json!({"range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-15T00:00:00Z"}})),
        spec,
    );
    w.pipeline_created = ts("2026-11-01T00:00:00Z");
    w.pipeline_status.active_runs = (0..6000)
        .map(|m| {
            let start = ts("2026-10-01T00:00:00Z") + SignedDuration::from_mins(m);
            RunRecord {
                id: String::new(),
                window: PartitionWindow { start: Time(start), end: Time(start + SignedDuration::from_mins(1)) },
                phase: RunPhase::Running,
                started: None,
                finished: None,
                failed_step: None,
                reason: None,
                manual: false,
                cost: None,
                late_pass: None,
            }
        })
        .collect();
    let plan = w.decide();
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(BUSY_RETRY), "no hot loop over busy windows");
    // Windows already done elsewhere are recorded as skipped, and the walk continues at once.
    w.pipeline_status.active_runs.clear();
    w.pipeline_status.recent_runs = (0..6000)
        .map(|m| {
            let start = ts("2026-10-01T00:00:00Z") + SignedDuration::from_mins(m);
            RunRecord {
                id: String::new(),
                window: PartitionWindow { start: Time(start), end: Time(start + SignedDuration::from_mins(1)) },
                phase: RunPhase::Succeeded,
                started: None,
                finished: None,
                failed_step: None,
                reason: None,
                manual: false,
                cost: None,
                late_pass: None,
            }
        })
        .collect();
    let plan = w.decide();
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue_after, Some(SCAN_CONTINUE));
    assert_eq!(plan.status.partitions.as_ref().unwrap().skipped, MAX_SCAN_STEPS as i64);
    w.apply(&plan);
    let plan = w.decide();
    assert_eq!(plan.create.len(), 10, "parallelism 10");
    assert_eq!(plan.create[0].window.start, ts("2026-10-01T00:00:00Z") + SignedDuration::from_mins(6000));
    assert_eq!(plan.status.partitions.as_ref().unwrap().skipped, 6000);
}

#[test]
fn a_window_queued_by_the_pipeline_is_busy_for_a_missing_backfill() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 3})), one_step());
    // The Pipeline queued window 1 (policy Queue): it will start it under its own Job names.
    w.pipeline_status.queued_windows = vec![PartitionWindow { start: Time(hour(1).start), end: Time(hour(1).end) }];
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(0), hour(2), hour(3)], "the queued window is not started");
    assert_eq!(plan.requeue_after, Some(BUSY_RETRY), "it is looked at again once dequeued");
    // Whatever reprocess says.
    w.spec.reprocess = crate::api::Reprocess::All;
    assert!(!windows(&w.decide()).contains(&hour(1)));
}

/// Runs the world's backfill until it is complete or `rounds` pass, every Job succeeding.
fn run_until_complete(w: &mut World, rounds: usize) {
    for _ in 0..rounds {
        let plan = w.decide();
        w.apply(&plan);
        if w.condition("Complete").0 == "True" {
            return;
        }
        w.now += SignedDuration::from_mins(1);
        w.finish_all(|_| false);
    }
}

#[test]
fn a_schedule_change_after_the_start_keeps_the_windows_the_backfill_started_with() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 12})), one_step());
    let plan = w.decide();
    w.apply(&plan);
    w.finish_all(|_| false);
    // Half of the hourly windows ran; the Pipeline now runs every two hours, and no Job slot is
    // free at this moment.
    w.pipeline.schedule = Some("0 */2 * * *".into());
    w.slots = 0;
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.counts().succeeded, 12);
    assert_eq!(w.counts().total, 24, "the total is the one counted at the start");
    assert_eq!(w.condition("Complete").0, "False", "12 hourly windows remain: not complete early");
    assert_eq!(w.status.partition_schedule.as_deref(), Some("0 * * * * UTC, window since previous tick, offset 0s"));
    w.slots = usize::MAX;
    let mut lengths = BTreeSet::new();
    for _ in 0..10 {
        let plan = w.decide();
        lengths.extend(plan.create.iter().map(|c| c.window.end.duration_since(c.window.start)));
        w.apply(&plan);
        if w.condition("Complete").0 == "True" {
            break;
        }
        w.finish_all(|_| false);
    }
    assert_eq!(lengths, BTreeSet::from([SignedDuration::from_hours(1)]), "the rest on the pinned hourly windows");
    assert_eq!(w.condition("Complete"), ("True".into(), "AllPartitionsProcessed".into()));
    assert_eq!(w.counts().succeeded, 24);
}

#[test]
fn complete_never_goes_back_to_false_without_a_spec_change() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 24})), one_step());
    w.budget = quota(32_000, 0, 1000);
    run_until_complete(&mut w, 10);
    assert_eq!(w.condition("Complete").0, "True");
    let complete_since = conditions::find(&w.status.conditions, "Complete").unwrap().last_transition_time.clone();
    // The Pipeline's schedule changes to twice the windows, the quota shrinks below a Job, the
    // Pipeline goes away: the backfill stays complete.
    w.pipeline.schedule = Some("*/30 * * * *".into());
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.condition("Complete").0, "True", "a finer schedule does not reopen a complete backfill");
    assert!(plan.create.is_empty());
    w.budget = quota(500, 0, 0);
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.condition("Complete").0, "True", "a smaller quota does not fail a complete backfill");
    assert_eq!(w.condition("Failed").0, "False");
    w.problems = vec!["spec.pipelineRef: Pipeline \"orders\" does not exist in this namespace".into()];
    let plan = w.decide();
    w.apply(&plan);
    assert_eq!(w.condition("Complete").0, "True", "a deleted Pipeline does not reopen a complete backfill");
    assert!(plan.events.iter().all(|e| e.reason != "Completed"), "no second Completed Event");
    let still = conditions::find(&w.status.conditions, "Complete").unwrap();
    assert_eq!(still.last_transition_time, complete_since);
}

#[test]
fn a_violated_block_contract_of_an_input_holds_new_partitions() {
    let spec = pipeline(&[("extract", "Extract", &[], "1"), ("stage", "Transform", &["extract"], "1")]);
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 2})), spec);
    w.pipeline.steps[1].inputs = vec!["raw-orders".into()];
    // Window 0 runs its extract step; then raw-orders breaks its contract.
    let plan = w.decide();
    w.apply(&plan);
    w.finish_all(|_| false);
    w.spec.parallelism = Some(3);
    w.blocked = vec![BlockedInput { dataset: "raw-orders".into(), message: "column id: missing".into() }];
    let plan = w.decide();
    assert!(plan.create.is_empty(), "no new partition, and no step that reads raw-orders: {:?}", plan.create);
    assert!(plan.admitted.is_empty());
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "InputContractViolated");
    let message = throttled.message.unwrap();
    assert!(message.contains("raw-orders") && message.contains("column id: missing"), "{message}");
    w.apply(&plan);
    assert_eq!(w.condition("Throttled"), ("True".into(), "InputContractViolated".into()));
    assert_eq!(w.condition("Complete").0, "False");
    assert!(plan.requeue_after.is_some_and(|d| d <= CONTRACT_RETRY), "Dataset changes do not wake backfills");
    // A Dataset the backfilled steps do not read holds nothing.
    w.blocked = vec![BlockedInput { dataset: "elsewhere".into(), message: "x".into() }];
    let plan = w.decide();
    assert!(!plan.create.is_empty());
    assert_ne!(plan.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("InputContractViolated"));
    // The contract holds again: the partitions continue.
    w.blocked.clear();
    let plan = w.decide();
    assert!(plan.create.iter().any(|c| c.step == "stage" && c.window == hour(0)));
    assert_eq!(windows(&plan).len(), 3);
}

#[test]
fn a_stale_protected_dataset_pauses_new_partitions_and_they_resume_when_it_is_fresh() {
    use super::protect::{Hold, ProtectedHold};
    let spec = pipeline(&[("extract", "Extract", &[], "1"), ("stage", "Transform", &["extract"], "1")]);
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 2})), spec);
    // Windows 0 and 1 run their extract steps; then the protected Dataset turns Stale.
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(0), hour(1)]);
    w.apply(&plan);
    w.finish_all(|_| false);
    w.spec.parallelism = Some(4);
    let stale = Hold::Stale { state: "Stale".into(), message: "older than maxAge 15s".into() };
    w.protected = vec![ProtectedHold { dataset: "orders-daily".into(), hold: stale }];
    let plan = w.decide();
    // Started partitions are left alone: their next steps start; no new window starts.
    assert_eq!(windows(&plan), [hour(0), hour(1)], "only the started partitions continue: {:?}", plan.create);
    assert!(plan.create.iter().all(|c| c.step == "stage"));
    assert!(plan.admitted.is_empty(), "no new partition admitted");
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "ProtectedDatasetStale");
    let message = throttled.message.unwrap();
    assert!(message.contains("Dataset orders-daily is Stale (older than maxAge 15s)"), "{message}");
    let event = plan.events.iter().find(|e| e.reason == "Throttled").expect("a Throttled Event");
    assert!(event.note.contains("ProtectedDatasetStale") && event.note.contains("orders-daily"), "{}", event.note);
    assert!(plan.requeue_after.is_some_and(|d| d <= PROTECT_RETRY), "bounded if the Dataset watch lags");
    w.apply(&plan);
    assert_eq!(w.condition("Throttled"), ("True".into(), "ProtectedDatasetStale".into()));
    assert_eq!(w.condition("Complete").0, "False");
    // The same decision again: no new Event, nothing new.
    let again = w.decide();
    assert!(again.events.iter().all(|e| e.reason != "Throttled"), "{:?}", again.events);
    assert!(again.admitted.is_empty());
    // Fresh again: admission resumes by itself, up to the parallelism, which is what holds it
    // back next (announced as such).
    w.protected.clear();
    let plan = w.decide();
    assert_eq!(plan.admitted.len(), 2, "two more partitions up to parallelism 4: {:?}", plan.admitted);
    assert_eq!(plan.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("ParallelismReached"));
    assert!(plan.events.iter().any(|e| e.reason == "Throttled" && e.note.contains("ParallelismReached")));
}

#[test]
fn a_missing_protected_dataset_pauses_with_its_own_reason() {
    use super::protect::{Hold, ProtectedHold};
    let mut w = World::new(backfill(serde_json::json!({})), one_step());
    w.protected = vec![ProtectedHold { dataset: "ordres".into(), hold: Hold::Missing }];
    let plan = w.decide();
    assert!(plan.create.is_empty());
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "ProtectedDatasetMissing");
    assert!(throttled.message.unwrap().contains("no Dataset named ordres exists"));
    // Suspension still takes precedence in what is shown.
    w.spec.suspend = true;
    assert_eq!(w.decide().status.throttled.unwrap().reason, "Suspended");
}

fn job_of(c: &JobToCreate) -> String {
    crate::jobs::job_name("orders", &c.step, &c.run_id, c.attempt)
}

#[test]
fn a_partition_whose_job_name_is_squatted_waits_and_says_so() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 2})), one_step());
    let squatted = crate::jobs::job_name("orders", "extract", &hour(0).run_id(), 0);
    w.conflicts = vec![squatted.clone()];
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(1), hour(2)], "the other partitions proceed");
    assert!(!plan.admitted.contains(&hour(0).run_id()), "never admitted");
    let throttled = plan.status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "NameConflict");
    assert!(throttled.message.unwrap().contains(&squatted));
    assert_eq!(plan.status.name_conflicts, std::slice::from_ref(&squatted));
    assert!(plan.requeue_after.is_some_and(|d| d <= NAME_CONFLICT_RETRY), "{:?}", plan.requeue_after);
    w.apply(&plan);
    assert_eq!(w.condition("Throttled"), ("True".into(), "NameConflict".into()));
    assert_eq!((w.counts().running, w.counts().pending), (2, 22));
    // The squatter is deleted: the window runs under its own name.
    w.finish_all(|_| false);
    w.conflicts.clear();
    let plan = w.decide();
    assert_eq!(windows(&plan), [hour(0), hour(3)]);
    assert!(plan.status.name_conflicts.is_empty());
    assert_ne!(plan.status.throttled.map(|t| t.reason), Some("NameConflict".into()));
}

#[test]
fn the_next_step_of_a_partition_waits_when_its_job_name_is_squatted() {
    let spec = pipeline(&[("extract", "Extract", &[], "1"), ("stage", "Transform", &["extract"], "1")]);
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 1})), spec);
    let plan = w.decide();
    w.apply(&plan);
    w.finish_all(|_| false);
    w.conflicts = vec![crate::jobs::job_name("orders", "stage", &hour(0).run_id(), 0)];
    let plan = w.decide();
    assert!(plan.create.is_empty(), "{:?}", plan.create);
    assert_eq!(plan.status.throttled.map(|t| t.reason), Some("NameConflict".into()));
}

#[test]
fn a_job_name_held_by_another_owner_stops_that_partition_and_is_not_admitted() {
    // Two root steps: each partition creates two Jobs at once.
    let spec = pipeline(&[("a", "Extract", &[], "1"), ("b", "Extract", &[], "1")]);
    let w = World::new(backfill(serde_json::json!({"parallelism": 3})), spec);
    let plan = w.decide();
    assert_eq!(plan.create.len(), 6);
    let mut round = CreateRound::default();
    let mut attempted = Vec::new();
    for c in &plan.create {
        if !round.attempt(c) {
            continue;
        }
        attempted.push((c.window, c.step.clone()));
        let outcome = match (c.window, c.step.as_str()) {
            (w, "a") if w == hour(0) => Created::Squatted,
            (w, "a") if w == hour(1) => Created::TakenByRun,
            _ => Created::Yes,
        };
        round.record(c, &job_of(c), outcome);
    }
    let step = |h: i64, s: &str| (hour(h), s.to_string());
    assert_eq!(
        attempted,
        [step(0, "a"), step(1, "a"), step(2, "a"), step(2, "b")],
        "no further Job of a partition one of whose names another owner holds"
    );
    let squatted = job_of(&plan.create[0]);
    let settled = round.settle(&plan, Some(1), now());
    assert_eq!(settled.admitted, 1, "only the partition whose Jobs were all created");
    assert_eq!(settled.new_conflicts, std::slice::from_ref(&squatted));
    assert_eq!(settled.retry, Some(TAKEN_RETRY), "a Sluice run's Job shows in the cache soon");
    let status = &settled.status;
    let throttled = status.throttled.clone().unwrap();
    assert_eq!(throttled.reason, "NameConflict");
    assert!(throttled.message.unwrap().contains(&squatted));
    assert_eq!(status.name_conflicts, [squatted]);
    let c = status.partitions.clone().unwrap();
    assert_eq!((c.running, c.pending), (1, 23), "the partitions that did not start are pending");
    let cond = conditions::find(&status.conditions, "Throttled").unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "NameConflict"));
    // A name held by a Sluice run only: retried soon, shown nowhere, not admitted.
    let mut round = CreateRound::default();
    for c in &plan.create {
        if round.attempt(c) {
            round.record(c, &job_of(c), if c.window == hour(0) { Created::TakenByRun } else { Created::Yes });
        }
    }
    let settled = round.settle(&plan, Some(1), now());
    assert_eq!((settled.admitted, settled.retry), (2, Some(TAKEN_RETRY)));
    assert!(settled.new_conflicts.is_empty() && settled.status.name_conflicts.is_empty());
    assert_eq!(settled.status.throttled, plan.status.throttled);
    // Everything created: the plan stands.
    let mut round = CreateRound::default();
    for c in &plan.create {
        round.record(c, &job_of(c), Created::Yes);
    }
    let settled = round.settle(&plan, Some(1), now());
    assert_eq!((settled.admitted, settled.retry, &settled.status), (3, None, &plan.status));
}

/// Found by the simulation (seed 2 with only Backfills on): the Pipeline's run of a window was
/// Replaced and its Jobs deleted; a `Missing` backfill then ran the window under the Pipeline's
/// run id and created a Job name a second time. A run id the Pipeline's status records, or a
/// window another backfill is done with, gets the backfill's own run id even with no Job left.
#[test]
fn a_window_whose_run_was_recorded_elsewhere_gets_a_run_id_of_its_own_after_its_jobs_are_gone() {
    let mut w = World::new(backfill(serde_json::json!({"parallelism": 3})), one_step());
    w.pipeline_status.skipped_runs = vec![record(0, RunPhase::Replaced)];
    w.pipeline_status.recent_runs = vec![record(1, RunPhase::Failed)];
    let mut sibling = Sibling { uid: "uid-2".into(), ..Default::default() };
    sibling.processed.insert(hour(2), Some);
    sibling.failed.insert(hour(2), Some);
    w.siblings.push(sibling);
    let plan = w.decide();
    let suffix = format!("-b{}", crate::jobs::short_hash("uid-1", 3));
    let ids: Vec<(Window, String)> = plan.create.iter().map(|c| (c.window, c.run_id.clone())).collect();
    assert_eq!(
        ids,
        [
            (hour(0), format!("{}{suffix}", hour(0).run_id())),
            (hour(1), format!("{}{suffix}", hour(1).run_id())),
            (hour(2), format!("{}{suffix}", hour(2).run_id())),
        ]
    );
    // A window nobody recorded keeps the Pipeline's run id.
    assert_eq!(crate::plan::backfill::run_id_for(&hour(3), false, "uid-1"), hour(3).run_id());
}

#[path = "dry_run_tests.rs"]
mod dry_run_tests;

/// Partitions that finish out of order fragment the succeeded windows past `MAX_RANGES`, so the
/// status coarsens them; a window that finishes later inside a coarsened range is still counted
/// (it was counted as skipped: 282 of 3,000 in `make bench`).
#[test]
fn windows_finishing_inside_a_coarsened_range_still_count_as_succeeded() {
    let mut spec = one_step();
    spec.schedule = Some("* * * * *".into());
    let mut w = World::new(
        backfill(serde_json::json!({
            "range": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T10:00:00Z"},
            "parallelism": 600
        })),
        spec,
    );
    w.pipeline_created = ts("2026-06-01T00:00:00Z");
    let plan = w.decide();
    assert_eq!(plan.create.len(), 600);
    w.apply(&plan);
    // Every other window finishes first: 300 separate succeeded ranges, more than are kept.
    let at = w.now;
    for (i, j) in w.jobs.iter_mut().enumerate() {
        if i % 2 == 0 {
            j.state = JobState::Succeeded { finished: at };
        }
    }
    let plan = w.decide();
    w.apply(&plan);
    assert!(w.status.succeeded_ranges.len() <= MAX_RANGES);
    assert_eq!(w.counts().succeeded, 300);
    w.now += SignedDuration::from_mins(1);
    w.finish_all(|_| false);
    let plan = w.decide();
    w.apply(&plan);
    let c = w.counts();
    assert_eq!((c.succeeded, c.failed, c.skipped, c.running), (600, 0, 0, 0));
    assert_eq!(w.condition("Complete"), ("True".into(), "AllPartitionsProcessed".into()));
}
