//! The driver: one Pipeline, one or two operator replicas, the Job controller, a clock and a
//! Backfill, stepped at random from one seed. Each step is one of: start a reconcile on a
//! replica (from its cached Pipeline, at the current time), let an in-flight reconcile make its
//! next API call, deliver watch events to a replica's cache, finish a Job, remove a terminating
//! Job, move the clock (sometimes by hours), restart a replica, or let the Backfill create Jobs.
//! The invariants are checked after every step. After the step budget, faults stop, in-flight
//! reconciles finish, and time runs on with synced caches until every window due by the end of
//! the faulty phase is resolved; then every due window must be accounted for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;
use sluice::act::Created;
use sluice::act::pipeline::{Outcome, reconcile};
use sluice::api::{Pipeline, PipelineStatus, RunPhase};
use sluice::error::Result;
use sluice::jobs::{self, StepJob};
use sluice::plan::pipeline::window_rule;
use sluice::plan::runs::JobState;
use sluice::schedule::Schedule;

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

type Reconcile<'a> = Pin<Box<dyn Future<Output = Result<Outcome>> + 'a>>;

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
    server.create_pipeline(pipeline(&sc));
    let replicas = [Mutex::new(Replica::listed(&server)), Mutex::new(Replica::listed(&server))];
    let server = Mutex::new(server);
    let trace = Mutex::new(Trace::default());
    let spec = serde_json::to_string(&sc.spec).unwrap_or_default();
    let mut driver = Driver {
        server: &server,
        replicas: &replicas,
        trace: &trace,
        slots: [None, None],
        checker: Invariants::default(),
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

fn pipeline(sc: &Scenario) -> Pipeline {
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
    FinishJob,
    Finalize,
    Tick,
    Jump,
    Backfill,
}

struct Driver<'a> {
    server: &'a Mutex<Server>,
    replicas: &'a [Mutex<Replica>; 2],
    trace: &'a Mutex<Trace>,
    slots: [Option<Reconcile<'a>>; 2],
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
        for r in 0..2 {
            while self.slots[r].is_some() {
                self.poll(r)?;
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
        let (due, terminating) = {
            let s = self.server.lock().unwrap();
            (!s.due_jobs().is_empty(), !s.terminating_jobs().is_empty())
        };
        let mut choices: Vec<(u64, Action)> = Vec::new();
        for r in 0..self.replicas_in_play() {
            choices.push(if self.slots[r].is_none() { (12, Action::Start(r)) } else { (30, Action::Poll(r)) });
            if f.lag {
                choices.push((12, Action::Deliver(r)));
            }
            if f.restarts {
                choices.push((2, Action::Restart(r)));
            }
        }
        if due {
            choices.push((10, Action::FinishJob));
        }
        if terminating {
            choices.push((3, Action::Finalize));
        }
        choices.push((8, Action::Tick));
        if f.clock_jumps {
            choices.push((1, Action::Jump));
        }
        if f.backfill {
            choices.push((2, Action::Backfill));
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
                let (what, got) = if self.rng.chance(50) {
                    ("Pipeline", replica.deliver_pipeline(&server, n))
                } else {
                    ("Job", replica.deliver_jobs(&server, n))
                };
                drop((server, replica));
                if got > 0 {
                    self.log(format!("r{r} cache: {got} {what} event(s) delivered"));
                }
            }
            Action::Restart(r) => {
                let dropped = self.slots[r].is_some();
                self.restart(r, if dropped { "in-flight reconcile dropped" } else { "idle" });
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
            Action::Backfill => self.backfill(),
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

    fn start(&mut self, r: usize, lose_answer_at: Option<usize>) {
        let Some(cached) = self.replicas[r].lock().unwrap().pipeline.clone() else { return };
        let now = self.server.lock().unwrap().now;
        self.reconciles += 1;
        self.log(format!(
            "r{r} reconcile starts at {now} on cached rv {}{}",
            cached.resource_version().unwrap_or_default(),
            lose_answer_at.map(|n| format!(" (answer of call {n} will be lost)")).unwrap_or_default()
        ));
        let api = SimApi::new(r, self.server, &self.replicas[r], self.trace, lose_answer_at);
        self.slots[r] = Some(Box::pin(async move { reconcile(&api, &cached, now).await }));
    }

    fn poll(&mut self, r: usize) -> Result<(), String> {
        let Some(fut) = self.slots[r].as_mut() else { return Ok(()) };
        let waker = futures::task::noop_waker();
        let Poll::Ready(outcome) = fut.as_mut().poll(&mut Context::from_waker(&waker)) else { return Ok(()) };
        self.slots[r] = None;
        match outcome {
            Ok(Outcome::Acted(acted)) => {
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
            Ok(other) => self.log(format!("r{r} reconcile done: {other:?}")),
            Err(e) => {
                self.log(format!("r{r} reconcile failed: {e}"));
                self.restart(r, "after the lost answer");
            }
        }
        Ok(())
    }

    fn restart(&mut self, r: usize, why: &str) {
        self.slots[r] = None;
        let fresh = Replica::listed(&self.server.lock().unwrap());
        *self.replicas[r].lock().unwrap() = fresh;
        self.log(format!("r{r} FAULT restart ({why}): caches relisted"));
    }

    fn schedule(&self) -> Schedule {
        Schedule::parse(self.sc.spec.schedule.as_deref().unwrap(), None).unwrap()
    }

    /// A Backfill of this Pipeline runs one of the last few due windows that the Pipeline's
    /// current status does not know (not active, queued or recorded): it creates every step's
    /// first Job at once under the Pipeline's Job names, stopping at the first name taken. It
    /// never deletes its Jobs.
    fn backfill(&mut self) {
        let schedule = self.schedule();
        let rule = window_rule(&self.sc.spec);
        let mut s = self.server.lock().unwrap();
        let mut tick = schedule.latest_at_or_before(s.now);
        for _ in 0..self.rng.below(5) {
            tick = tick.and_then(|t| schedule.previous_before(t));
        }
        let Some(window) = tick.filter(|t| *t > self.sc.created).and_then(|t| schedule.window_at(t, rule)) else {
            return;
        };
        let id = window.run_id();
        let status = s.status().cloned().unwrap_or_default();
        let known =
            status.active_runs.iter().chain(&status.recent_runs).chain(&status.skipped_runs).any(|r| r.id == id)
                || status.queued_windows.iter().any(|w| w.start.0 == window.start && w.end.0 == window.end);
        if known {
            return;
        }
        let owner = OwnerReference {
            api_version: "sluice.dev/v1alpha1".into(),
            kind: "Backfill".into(),
            name: "bf".into(),
            uid: "backfill-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let mut said = Vec::new();
        for step in &self.sc.spec.steps {
            let job: Job = jobs::build(&StepJob {
                namespace: NAMESPACE,
                pipeline: "orders",
                run_id: &id,
                window,
                step,
                attempt: 0,
                backfill: Some("bf"),
                owner: owner.clone(),
            });
            let created = s.create_job(&job);
            said.push(format!(
                "{} {}",
                job.name_any(),
                if matches!(created, Created::Created) { "created" } else { "taken" }
            ));
            if !matches!(created, Created::Created) {
                break;
            }
        }
        drop(s);
        self.log(format!("backfill bf runs window {id}: {said:?}"));
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
                for name in s.due_jobs() {
                    s.finish_job(&name);
                }
            }
            self.check()?;
            self.start(0, None);
            while self.slots[0].is_some() {
                self.sync_all();
                self.poll(0)?;
            }
            self.check()?;
            if self.quiescent(t_end) {
                self.log("quiescent".into());
                return self.final_check(t_end);
            }
            self.advance(step);
        }
        Err(format!("not quiescent {MAX_QUIESCE} steps of {step:#} after the faults stopped"))
    }

    fn quiescent(&self, t_end: Timestamp) -> bool {
        let s = self.server.lock().unwrap();
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
        JobState::Succeeded { .. } => "Succeeded",
        JobState::Failed { .. } => "Failed",
    }
}
