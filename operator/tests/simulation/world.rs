//! The driver: one Pipeline, one or two Backfills of it, one ResourceQuota, one or two operator
//! replicas, the Job and quota controllers and a clock, stepped at random from one seed. Each
//! replica runs at most one Pipeline reconcile and one Backfill reconcile at a time. Each step
//! is one of: start a reconcile on a replica (of its cached Pipeline, or of one of its cached
//! Backfills), let an in-flight reconcile make its next API call, deliver watch events to a
//! replica's cache, start a Job's pod, finish a Job, remove a terminating Job, let the quota
//! controller recount, move the clock (sometimes by hours), or restart a replica. The
//! invariants are checked after every step. After the step budget, faults stop, in-flight
//! reconciles finish, and time runs on with synced caches until every window due by the end of
//! the faulty phase is resolved and every Backfill is Complete; then every due window and every
//! window of every Backfill's range must be accounted for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sluice::act::{backfill, pipeline};
use sluice::api::{Backfill, Pipeline, PipelineStatus, Reprocess, RunPhase};
use sluice::error::Result;
use sluice::plan::backfill::ranges::RangeSet;
use sluice::plan::backfill::selected_steps;
use sluice::plan::runs::JobState;
use sluice::schedule::Schedule;
use sluice::schedule::window_rule;

use crate::generate::{self, Faults, Scenario};
use crate::invariants::Invariants;
use crate::model::{Fact, Rules, Server};
use crate::replica::{Replica, SimApi};
use crate::rng::Rng;
use crate::trace::Trace;

/// One run of the simulation.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub seed: u64,
    /// Steps of the faulty phase.
    pub budget: usize,
    pub faults: Faults,
    /// Whether every due window that was neither run nor recorded must be counted in
    /// `status.missedWindows` (exactly), rather than only "some window was counted missed".
    pub strict_missed: bool,
}

pub struct Report {
    pub violation: Option<String>,
    pub trace: Trace,
    pub reconciles: usize,
    pub spec: String,
}

const NAMESPACE: &str = "team-a";
const MAX_QUIESCE: usize = 400;

/// What an in-flight reconcile ends with.
enum Done {
    Pipeline(Result<pipeline::Outcome>),
    Backfill(String, Result<backfill::Outcome>),
}

type Reconcile<'a> = Pin<Box<dyn Future<Output = Done> + 'a>>;

/// Reconcile slots: replica `r` runs its Pipeline reconcile in slot `2r` and its Backfill
/// reconcile in slot `2r + 1`.
const SLOTS: usize = 4;

pub fn run(cfg: &Config) -> Report {
    let mut rng = Rng::new(cfg.seed);
    let sc = generate::scenario(&mut rng);
    let f = cfg.faults;
    let rules = Rules {
        rng: Rng::new(rng.next_u64()),
        min_run: SignedDuration::from_millis(200),
        max_run: sc.period * 3,
        fail_percent: if f.job_failures { 20 } else { 0 },
        linger_percent: if f.terminating { 30 } else { 0 },
    };
    let mut server = Server::new(sc.created, rules);
    server.create_pipeline(make_pipeline(&sc));
    server.create_quota(NAMESPACE, generate::QUOTA, sc.hard_milli);
    let backfills = if f.backfill { sc.backfills.as_slice() } else { &[] };
    for (i, (name, spec)) in backfills.iter().enumerate() {
        let mut b = Backfill::new(name, spec.clone());
        b.metadata.namespace = Some(NAMESPACE.into());
        b.metadata.uid = Some(format!("backfill-uid-{i}"));
        b.metadata.generation = Some(1);
        b.metadata.creation_timestamp = Some(Time(sc.created));
        server.create_backfill(b);
    }
    let replicas = [Mutex::new(Replica::listed(&server)), Mutex::new(Replica::listed(&server))];
    let server = Mutex::new(server);
    let trace = Mutex::new(Trace::default());
    let mut spec = serde_json::to_string(&sc.spec).unwrap_or_default();
    for (name, b) in backfills {
        spec += &format!("\nbackfill {name}: {}", serde_json::to_string(b).unwrap_or_default());
    }
    spec += &format!("\nquota hard {}m", sc.hard_milli);
    let mut checker = Invariants::default();
    checker.coordinated = !(f.second_replica && backfills.len() > 1);
    let mut driver = Driver {
        server: &server,
        replicas: &replicas,
        trace: &trace,
        slots: Default::default(),
        checker,
        rng,
        cfg: *cfg,
        sc,
        reconciles: 0,
    };
    let violation = driver.run().err();
    let reconciles = driver.reconciles;
    drop(driver);
    Report { violation, trace: trace.into_inner().unwrap(), reconciles, spec }
}

fn make_pipeline(sc: &Scenario) -> Pipeline {
    let mut p = Pipeline::new("orders", sc.spec.clone());
    p.metadata.namespace = Some(NAMESPACE.into());
    p.metadata.uid = Some("pipeline-uid".into());
    p.metadata.generation = Some(1);
    p.metadata.creation_timestamp = Some(Time(sc.created));
    p
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Start(usize),
    Poll(usize),
    Deliver(usize),
    Restart(usize),
    StartPod,
    FinishJob,
    Finalize,
    QuotaSync,
    Tick,
    Jump,
}

struct Driver<'a> {
    server: &'a Mutex<Server>,
    replicas: &'a [Mutex<Replica>; 2],
    trace: &'a Mutex<Trace>,
    slots: [Option<Reconcile<'a>>; SLOTS],
    checker: Invariants,
    rng: Rng,
    cfg: Config,
    sc: Scenario,
    reconciles: usize,
}

impl<'a> Driver<'a> {
    fn log(&self, line: String) {
        self.trace.lock().unwrap().push(line);
    }

    fn check(&mut self) -> Result<(), String> {
        self.checker.check(&self.server.lock().unwrap())
    }

    fn run(&mut self) -> Result<(), String> {
        self.log(format!("pipeline created at {}: {}", self.sc.created, serde_json::to_string(&self.sc.spec).unwrap()));
        for step in 0..self.cfg.budget {
            self.trace.lock().unwrap().step = step;
            self.step()?;
            self.check()?;
        }
        self.trace.lock().unwrap().step = self.cfg.budget;
        self.log("faults stop; in-flight reconciles finish".into());
        for slot in 0..SLOTS {
            while self.slots[slot].is_some() {
                self.poll(slot)?;
                self.check()?;
            }
        }
        self.quiesce()
    }

    fn replicas_in_play(&self) -> usize {
        if self.cfg.faults.second_replica { 2 } else { 1 }
    }

    fn step(&mut self) -> Result<(), String> {
        let f = self.cfg.faults;
        if !f.lag {
            self.sync_all();
        }
        let (due, terminating, podless, backfills) = {
            let s = self.server.lock().unwrap();
            (
                !s.due_jobs().is_empty(),
                !s.terminating_jobs().is_empty(),
                !s.podless_jobs().is_empty(),
                !s.backfills.is_empty(),
            )
        };
        let mut choices: Vec<(u64, Action)> = Vec::new();
        for r in 0..self.replicas_in_play() {
            for slot in [2 * r, 2 * r + 1].into_iter().filter(|s| s % 2 == 0 || backfills) {
                choices.push(if self.slots[slot].is_none() {
                    (12, Action::Start(slot))
                } else {
                    (30, Action::Poll(slot))
                });
            }
            if f.lag {
                choices.push((12, Action::Deliver(r)));
            }
            if f.restarts {
                choices.push((2, Action::Restart(r)));
            }
        }
        if podless {
            choices.push((10, Action::StartPod));
        }
        if due {
            choices.push((10, Action::FinishJob));
        }
        if terminating {
            choices.push((3, Action::Finalize));
        }
        if backfills {
            choices.push((4, Action::QuotaSync));
        }
        choices.push((8, Action::Tick));
        if f.clock_jumps {
            choices.push((1, Action::Jump));
        }
        let total: u64 = choices.iter().map(|c| c.0).sum();
        let mut roll = self.rng.below(total);
        let action = choices
            .iter()
            .find(|c| {
                roll < c.0 || {
                    roll -= c.0;
                    false
                }
            })
            .map(|c| c.1)
            .unwrap();
        match action {
            Action::Start(r) => {
                let lose = (f.restarts && self.rng.chance(8)).then(|| self.rng.range(1, 4) as usize);
                self.start(r, lose);
            }
            Action::Poll(r) => self.poll(r)?,
            Action::Deliver(r) => {
                let n = self.rng.range(1, 4) as usize;
                let server = self.server.lock().unwrap();
                let mut replica = self.replicas[r].lock().unwrap();
                let (what, got) = match self.rng.below(5) {
                    0 | 1 => ("Pipeline", replica.deliver_pipeline(&server, n)),
                    2 => ("Backfill", replica.deliver_backfills(&server, n)),
                    _ => ("Job", replica.deliver_jobs(&server, n)),
                };
                drop((server, replica));
                if got > 0 {
                    self.log(format!("r{r} cache: {got} {what} event(s) delivered"));
                }
            }
            Action::Restart(r) => {
                let dropped = self.slots[2 * r].is_some() || self.slots[2 * r + 1].is_some();
                self.restart(r, if dropped { "in-flight reconciles dropped" } else { "idle" });
            }
            Action::StartPod => {
                let mut s = self.server.lock().unwrap();
                let podless = s.podless_jobs();
                let name = self.rng.pick(&podless).clone();
                s.start_pod(&name);
                drop(s);
                self.log(format!("job controller: pod of {name} runs"));
            }
            Action::QuotaSync => {
                let used = self.server.lock().unwrap().sync_quota();
                self.log(format!("quota controller: used {used}m"));
            }
            Action::FinishJob => {
                let mut s = self.server.lock().unwrap();
                let due = s.due_jobs();
                let name = self.rng.pick(&due).clone();
                s.finish_job(&name);
                let failed = s.fates[&name].fails;
                drop(s);
                self.log(format!("job controller: {name} {}", if failed { "Failed" } else { "Complete" }));
            }
            Action::Finalize => {
                let mut s = self.server.lock().unwrap();
                let names = s.terminating_jobs();
                let name = self.rng.pick(&names).clone();
                s.finalize(&name);
                drop(s);
                self.log(format!("job {name} removed (was terminating)"));
            }
            Action::Tick => {
                let ms = self.rng.range(1, (self.sc.period.as_millis() as u64 / 3).max(2));
                self.advance(SignedDuration::from_millis(ms as i64));
            }
            Action::Jump => {
                let by = if self.sc.period < SignedDuration::from_mins(1) {
                    SignedDuration::from_mins(self.rng.range(1, 20) as i64)
                } else {
                    SignedDuration::from_hours(self.rng.range(1, 8) as i64)
                };
                self.advance(by);
            }
        }
        Ok(())
    }

    fn advance(&self, by: SignedDuration) {
        let mut s = self.server.lock().unwrap();
        s.advance(by);
        let now = s.now;
        drop(s);
        self.log(format!("clock +{by:#} -> {now}"));
    }

    fn sync_all(&self) {
        let server = self.server.lock().unwrap();
        for r in self.replicas {
            r.lock().unwrap().sync(&server);
        }
    }

    /// Starts a reconcile in `slot`: the replica's Pipeline, or one of its cached Backfills.
    fn start(&mut self, slot: usize, lose_answer_at: Option<usize>) {
        let r = slot / 2;
        let now = self.server.lock().unwrap().now;
        let lost = lose_answer_at.map(|n| format!(" (answer of call {n} will be lost)")).unwrap_or_default();
        let api = SimApi::new(r, self.server, &self.replicas[r], self.trace, lose_answer_at);
        if slot % 2 == 1 {
            let cached: Vec<Backfill> = self.replicas[r].lock().unwrap().backfills.values().cloned().collect();
            if cached.is_empty() {
                return;
            }
            let cached = self.rng.pick(&cached).clone();
            let name = cached.name_any();
            self.reconciles += 1;
            self.log(format!(
                "r{r} reconcile of {name} starts at {now} on cached rv {}{lost}",
                cached.resource_version().unwrap_or_default()
            ));
            self.slots[slot] =
                Some(Box::pin(async move { Done::Backfill(name, backfill::reconcile(&api, &cached).await) }));
            return;
        }
        let Some(cached) = self.replicas[r].lock().unwrap().pipeline.clone() else { return };
        self.reconciles += 1;
        self.log(format!(
            "r{r} reconcile starts at {now} on cached rv {}{lost}",
            cached.resource_version().unwrap_or_default()
        ));
        self.slots[slot] = Some(Box::pin(async move { Done::Pipeline(pipeline::reconcile(&api, &cached, now).await) }));
    }

    fn poll(&mut self, slot: usize) -> Result<(), String> {
        let r = slot / 2;
        let Some(fut) = self.slots[slot].as_mut() else { return Ok(()) };
        let waker = futures::task::noop_waker();
        let Poll::Ready(done) = fut.as_mut().poll(&mut Context::from_waker(&waker)) else { return Ok(()) };
        self.slots[slot] = None;
        match done {
            Done::Pipeline(Ok(pipeline::Outcome::Acted(acted))) => {
                let mut s = self.server.lock().unwrap();
                for f in &acted.plan.finished {
                    s.facts.push(Fact::Reported { run_id: f.run_id.clone() });
                }
                drop(s);
                let created: Vec<String> =
                    acted.created.iter().map(|c| format!("{}/{}#{}", c.run_id, c.step, c.attempt)).collect();
                let finished: Vec<String> =
                    acted.plan.finished.iter().map(|f| format!("{}:{:?}", f.run_id, f.phase)).collect();
                let conflicts: Vec<&str> = acted.conflicts.iter().map(|c| c.job.as_str()).collect();
                self.log(format!(
                    "r{r} reconcile done: created {created:?} deleted {:?} finished {finished:?} conflicts {conflicts:?}",
                    acted.plan.delete
                ));
            }
            Done::Pipeline(Ok(other)) => self.log(format!("r{r} reconcile done: {other:?}")),
            Done::Backfill(name, Ok(backfill::Outcome::Acted(acted))) => self.log(format!(
                "r{r} reconcile of {name} done: created {:?} deleted {:?} admitted {} writes {}{}",
                acted.created,
                acted.plan.delete,
                acted.settled.admitted,
                acted.status_writes,
                if acted.settle_conflict { " (second write conflicted)" } else { "" }
            )),
            Done::Backfill(name, Ok(other)) => self.log(format!("r{r} reconcile of {name} done: {other:?}")),
            Done::Pipeline(Err(e)) | Done::Backfill(_, Err(e)) => {
                self.log(format!("r{r} reconcile failed: {e}"));
                self.restart(r, "after the lost answer");
            }
        }
        Ok(())
    }

    fn restart(&mut self, r: usize, why: &str) {
        self.slots[2 * r] = None;
        self.slots[2 * r + 1] = None;
        let fresh = Replica::listed(&self.server.lock().unwrap());
        *self.replicas[r].lock().unwrap() = fresh;
        self.log(format!("r{r} FAULT restart ({why}): caches relisted"));
    }

    fn schedule(&self) -> Schedule {
        Schedule::parse(self.sc.spec.schedule.as_deref().unwrap(), None).unwrap()
    }

    /// Time runs on without faults until every window due by now is resolved.
    fn quiesce(&mut self) -> Result<(), String> {
        let t_end = self.server.lock().unwrap().now;
        let step = (self.sc.period / 2).max(SignedDuration::from_secs(1));
        for _ in 0..MAX_QUIESCE {
            {
                let mut s = self.server.lock().unwrap();
                for name in s.terminating_jobs() {
                    s.finalize(&name);
                }
                for name in s.podless_jobs() {
                    s.start_pod(&name);
                }
                for name in s.due_jobs() {
                    s.finish_job(&name);
                }
                s.sync_quota();
            }
            self.check()?;
            self.sync_all();
            self.start(0, None);
            self.run_slot(0)?;
            let names: Vec<String> = self.server.lock().unwrap().backfills.keys().cloned().collect();
            for name in names {
                self.sync_all();
                let cached = self.replicas[0].lock().unwrap().backfills[&name].clone();
                let api = SimApi::new(0, self.server, &self.replicas[0], self.trace, None);
                self.reconciles += 1;
                self.slots[1] =
                    Some(Box::pin(async move { Done::Backfill(name, backfill::reconcile(&api, &cached).await) }));
                self.run_slot(1)?;
            }
            if self.quiescent(t_end) {
                self.log("quiescent".into());
                return self.final_check(t_end);
            }
            self.advance(step);
        }
        Err(format!("not quiescent {MAX_QUIESCE} steps of {step:#} after the faults stopped"))
    }

    /// Runs the reconcile in `slot` to its end with synced caches.
    fn run_slot(&mut self, slot: usize) -> Result<(), String> {
        while self.slots[slot].is_some() {
            self.sync_all();
            self.poll(slot)?;
            self.check()?;
        }
        Ok(())
    }

    fn quiescent(&self, t_end: Timestamp) -> bool {
        let s = self.server.lock().unwrap();
        let complete = |b: &Backfill| {
            b.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Complete"))
                .is_some_and(|c| c.status == "True")
        };
        if !s.backfills.values().all(complete) {
            return false;
        }
        let status = s.status().cloned().unwrap_or_default();
        let last_due = self.schedule().latest_at_or_before(t_end).filter(|t| *t > self.sc.created);
        let handled = match (last_due, status.last_schedule_time.as_ref()) {
            (None, _) => true,
            (Some(due), Some(last)) => last.0 >= due,
            (Some(_), None) => false,
        };
        handled
            && status.active_runs.iter().all(|r| r.window.end.0 > t_end)
            && status.queued_windows.iter().all(|w| w.end.0 > t_end)
    }

    /// Every window due by `t_end` succeeded, failed or was skipped (recorded in a written
    /// status) or is counted in `status.missedWindows`.
    fn final_check(&self, t_end: Timestamp) -> Result<(), String> {
        let schedule = self.schedule();
        let rule = window_rule(&self.sc.spec);
        let mut unaccounted = Vec::new();
        let mut due = 0;
        let mut cursor = self.sc.created;
        while let Some(tick) = schedule.next_after(cursor).filter(|t| *t <= t_end) {
            due += 1;
            let id = schedule.window_at(tick, rule).unwrap().run_id();
            if !self.checker.ever_recorded.contains(&id) {
                unaccounted.push(id);
            }
            cursor = tick;
        }
        self.final_late_passes(t_end)?;
        let (missed, skipped) =
            self.server.lock().unwrap().status().map_or((0, 0), |s| (s.missed_windows, s.skipped_windows));
        // Skipped windows whose record was never written (more skips than `skippedRuns` keeps)
        // are counted in `skippedWindows`.
        let missed = missed + (skipped - self.checker.ever_skipped.len() as i64).max(0);
        let n = unaccounted.len() as i64;
        let bad = if self.cfg.strict_missed { n > missed } else { n > 0 && missed == 0 };
        self.log(format!("final: {due} due windows, {n} neither run nor recorded, missedWindows {missed}"));
        if bad {
            let first: Vec<&String> = unaccounted.iter().take(5).collect();
            return Err(format!(
                "{n} of {due} due windows were neither run, recorded nor counted (status.missedWindows {missed}); \
                 first: {first:?}"
            ));
        }
        let backfills: Vec<Backfill> = self.server.lock().unwrap().backfills.values().cloned().collect();
        for b in &backfills {
            self.final_backfill(b, &backfills)?;
        }
        Ok(())
    }

    /// No late pass is lost: every tick that was the newest of a decision (a written
    /// `lastScheduleTime`) and ran or recorded its own window has each of its late passes
    /// (`spec.lateness`) run or recorded in a written status.
    fn final_late_passes(&self, t_end: Timestamp) -> Result<(), String> {
        let schedule = self.schedule();
        let rule = window_rule(&self.sc.spec);
        let mut passes = 0;
        for &tick in self.checker.schedule_times.iter().filter(|t| **t <= t_end) {
            let Some(window) = schedule.window_at(tick, rule) else { continue };
            if !self.checker.ever_recorded.contains(&window.run_id()) {
                continue;
            }
            for (d, w) in sluice::plan::late::windows(&self.sc.spec, &schedule, rule, tick, &window, self.sc.created) {
                passes += 1;
                let id = sluice::plan::late::run_id(&w, d);
                if !self.checker.ever_recorded.contains(&id) {
                    return Err(format!("late pass {id} of the run due at {tick} was neither run nor recorded"));
                }
            }
        }
        self.log(format!("final: {passes} late passes run or recorded"));
        Ok(())
    }

    /// Every window of the Backfill's range succeeded (each step it runs, by the Backfill for
    /// `reprocess: All`, by any owner else) or is listed failed; with `reprocess: Failed` it may
    /// also have been skipped (processed without a run), and with `Missing` skipped because
    /// another Backfill lists it succeeded (also one that re-ran only the Transform steps).
    fn final_backfill(&self, b: &Backfill, backfills: &[Backfill]) -> Result<(), String> {
        let schedule = self.schedule();
        let rule = window_rule(&self.sc.spec);
        let status = b.status.clone().unwrap_or_default();
        let failed = RangeSet::from_status(&status.failed_ranges);
        let processed = RangeSet::from_status(&status.processed_ranges);
        let uid = b.uid().unwrap_or_default();
        let steps: Vec<String> = selected_steps(&self.sc.spec, b.spec.steps).iter().map(|s| s.name.clone()).collect();
        let (start, end) = (b.spec.range.start.0, b.spec.range.end.0);
        let mut cursor = schedule.previous_before(start).unwrap_or(start);
        let mut windows = 0;
        while let Some(tick) = schedule.next_after(cursor) {
            cursor = tick;
            let Some(w) = schedule.window_at(tick, rule) else { continue };
            if w.end > end {
                break;
            }
            if w.start < start {
                continue;
            }
            windows += 1;
            let key = (w.start.to_string(), w.end.to_string());
            let succeeded = |step: &String| {
                // A late pass re-ran some steps of the window: it is not the window's run.
                self.checker.successes.iter().any(|((s, win, owner, pass), _)| {
                    pass.is_empty() && s == step && *win == key && (b.spec.reprocess != Reprocess::All || *owner == uid)
                })
            };
            let by_sibling = backfills.iter().any(|o| {
                o.uid() != b.uid()
                    && RangeSet::from_status(&o.status.clone().unwrap_or_default().succeeded_ranges).contains(&w)
            });
            let ok = steps.iter().all(succeeded)
                || failed.contains(&w)
                || (b.spec.reprocess == Reprocess::Failed && processed.contains(&w))
                || (b.spec.reprocess == Reprocess::Missing && processed.contains(&w) && by_sibling);
            if !ok {
                return Err(format!(
                    "Backfill {}: window [{}, {}) of its range neither succeeded ({steps:?}) nor is listed failed",
                    b.name_any(),
                    w.start,
                    w.end
                ));
            }
        }
        self.log(format!("final: Backfill {} accounts for its {windows} windows", b.name_any()));
        Ok(())
    }
}

/// A short form of a status, for the trace.
pub fn summary(status: &PipelineStatus) -> String {
    let phase = |p: RunPhase| format!("{p:?}").chars().next().unwrap_or('?');
    let recent: Vec<String> =
        status.recent_runs.iter().take(4).map(|r| format!("{}:{}", r.id, phase(r.phase))).collect();
    let skipped: Vec<String> =
        status.skipped_runs.iter().take(3).map(|r| format!("{}:{}", r.id, r.reason.as_deref().unwrap_or(""))).collect();
    format!(
        "active {:?} queued {} recent {recent:?} skipped {skipped:?} last {} missed {}",
        status.active_runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        status.queued_windows.len(),
        status.last_schedule_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        status.missed_windows
    )
}

pub fn state(s: &JobState) -> &'static str {
    match s {
        JobState::Active => "Active",
        JobState::Queued => "Queued",
        JobState::Succeeded { .. } => "Succeeded",
        JobState::Failed { .. } => "Failed",
    }
}
