//! The workload every chaos test runs, and what it checks afterwards.
//!
//! A Backfill of `partitions` hourly windows (of Pipeline `source`, far in the past) under a
//! binding ResourceQuota (`requests.cpu` HARD_MILLI, reserve RESERVE_MILLI, BACKFILL_STEP_MILLI
//! per partition: at most 7 backfill pods at once), beside scheduled Pipelines on seconds
//! schedules that request SCHEDULED_STEP_MILLI each: some keep no history, some `Replace`, some
//! `Queue`, some `Forbid` with runs longer than the period, one whose step always fails and is
//! retried.
//!
//! [`Ledger`] records from watches (every Job by uid, every skipped window a Pipeline's status
//! ever listed) and [`Ledger::check`] reads the audit log and the final statuses, prints the
//! figures and asserts: no Job name created twice, every Backfill window succeeded exactly once
//! or is counted failed, no scheduled window lost, quota peaks, no quota refusal, converged status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sluice::api::{Backfill, Pipeline};
use sluice_e2e::usage::{self, Usage};
use sluice_e2e::{audit, wait, yaml};

pub const HARD_MILLI: i64 = 5000;
pub const RESERVE_MILLI: i64 = 1500;
pub const BACKFILL_STEP_MILLI: i64 = 500;
pub const SCHEDULED_STEP_MILLI: i64 = 20;
pub const BACKFILL: &str = "history";

/// How a scheduled Pipeline of the mix behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `history` 0: every finished run's Jobs are deleted once recorded.
    HistoryZero,
    /// `Replace`, runs longer than the period: each tick stops the running run.
    Replace,
    /// `Queue` (at most 2 waiting), runs longer than the period: the queue overflows.
    Queue,
    /// `Forbid` (the default), runs longer than the period: every other tick is skipped.
    Forbid,
    /// The step always fails; 2 retries 1 s apart.
    FailingRetries,
}

/// A scheduled Pipeline: name, kind, period in seconds (divides 60).
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub name: String,
    pub kind: Kind,
    pub every: i64,
}

/// `count` scheduled Pipelines cycling through the kinds, one `FailingRetries`.
pub fn mix(count: usize, every: i64) -> Vec<Scheduled> {
    let kinds = [Kind::HistoryZero, Kind::Replace, Kind::Queue, Kind::Forbid];
    (0..count)
        .map(|i| {
            let kind = if i == count - 1 { Kind::FailingRetries } else { kinds[i % kinds.len()] };
            Scheduled { name: format!("p{i:02}-{}", format!("{kind:?}").to_lowercase()), kind, every }
        })
        .collect()
}

fn step(duration: &str, cpu_milli: i64, fail: bool, retries: i32) -> Value {
    let mut annotations = json!({"kwok.sluice.dev/duration": duration});
    if fail {
        annotations["kwok.sluice.dev/outcome"] = json!("fail");
    }
    json!({"name": "extract", "kind": "Extract",
           "retries": {"limit": retries, "backoffSeconds": 1, "maxBackoffSeconds": 1},
           "template": {"metadata": {"annotations": annotations},
                        "spec": {"containers": [{"name": "main", "image": "example.com/step:1",
                            "resources": {"requests": {"cpu": format!("{cpu_milli}m"), "memory": "16Mi"}}}]}}})
}

fn scheduled_pipeline(p: &Scheduled) -> Value {
    let long = format!("{}s", p.every + 2);
    let (spec_extra, step) = match p.kind {
        Kind::HistoryZero => {
            (json!({"history": {"successful": 0, "failed": 0}}), step("300ms", SCHEDULED_STEP_MILLI, false, 0))
        }
        Kind::Replace => (json!({"concurrency": {"policy": "Replace"}}), step(&long, SCHEDULED_STEP_MILLI, false, 0)),
        Kind::Queue => {
            (json!({"concurrency": {"policy": "Queue", "maxQueued": 2}}), step(&long, SCHEDULED_STEP_MILLI, false, 0))
        }
        Kind::Forbid => (json!({}), step(&long, SCHEDULED_STEP_MILLI, false, 0)),
        Kind::FailingRetries => (json!({}), step("300ms", SCHEDULED_STEP_MILLI, true, 2)),
    };
    let mut spec = json!({"schedule": format!("*/{} * * * * *", p.every), "steps": [step]});
    for (k, v) in spec_extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": p.name}, "spec": spec})
}

/// What runs in a chaos test's namespace.
pub struct Workload {
    pub ns: String,
    pub partitions: i64,
    pub scheduled: Vec<Scheduled>,
    pub parallelism: i32,
}

/// Everything recorded while the workload runs.
pub struct Ledger {
    pub usage: Arc<Mutex<Usage>>,
    /// Per Pipeline: the window ends its status ever listed as skipped or replaced, with when
    /// the watch first saw each.
    pub skipped: Arc<Mutex<BTreeMap<String, BTreeMap<Timestamp, Timestamp>>>>,
    /// When the scheduled Pipelines were created.
    pub created: Timestamp,
    /// When they were suspended (set by [`Workload::suspend`]).
    pub suspended: Option<Timestamp>,
    /// When the Backfill was first seen Complete.
    pub backfill_complete_seen: Option<Timestamp>,
}

impl Workload {
    pub fn pipelines(&self, client: &kube::Client) -> Api<Pipeline> {
        Api::namespaced(client.clone(), &self.ns)
    }

    pub fn backfills(&self, client: &kube::Client) -> Api<Backfill> {
        Api::namespaced(client.clone(), &self.ns)
    }

    /// Creates the quota, the Pipelines and the Backfill, and starts recording.
    pub async fn start(&self, client: &kube::Client) -> Ledger {
        let n = self.ns.as_str();
        let usage = usage::watch(client, n);
        let skipped = watch_skipped(self.pipelines(client));
        yaml::apply(
            client,
            n,
            &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": format!("{HARD_MILLI}m")}}}),
        )
        .await
        .expect("quota");
        let source = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "source"},
            "spec": {"schedule": "0 * * * *", "steps": [step("500ms", BACKFILL_STEP_MILLI, false, 1)]}});
        yaml::apply(client, n, &source).await.expect("source pipeline");
        let created = Timestamp::now();
        for p in &self.scheduled {
            yaml::apply(client, n, &scheduled_pipeline(p)).await.expect("pipeline");
        }
        // Hourly windows ending 30 days ago, on the hour.
        let now = Timestamp::now().as_second();
        let end = Timestamp::from_second(now - now % 3600 - 30 * 86_400).expect("time");
        let start = end - SignedDuration::from_hours(self.partitions);
        yaml::apply(client, n, &json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": BACKFILL},
            "spec": {"pipelineRef": {"name": "source"}, "range": {"start": start.to_string(), "end": end.to_string()},
                     "parallelism": self.parallelism,
                     "budget": {"resourceQuotaRef": {"name": "compute"}, "reserve": {"requests.cpu": format!("{RESERVE_MILLI}m")}}}}))
        .await
        .expect("backfill");
        Ledger { usage, skipped, created, suspended: None, backfill_complete_seen: None }
    }

    /// Backfill Jobs created so far (from the watch).
    pub fn backfill_jobs(&self, ledger: &Ledger) -> usize {
        ledger.usage.lock().unwrap_or_else(|e| e.into_inner()).backfill_jobs(BACKFILL).len()
    }

    /// Waits until the Backfill reports Complete or Failed.
    pub async fn wait_backfill_done(&self, client: &kube::Client, ledger: &mut Ledger, timeout: Duration) -> Backfill {
        let done = |b: &Backfill| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
        };
        let read = || async { self.backfills(client).get(BACKFILL).await.expect("backfill") };
        let b = wait::settle(timeout, Duration::from_millis(250), read, done).await;
        assert!(done(&b), "Backfill not done after {timeout:?}: {:#?}", b.status);
        ledger.backfill_complete_seen = Some(Timestamp::now());
        b
    }

    /// Suspends every scheduled Pipeline and waits until the operator reports each Suspended.
    pub async fn suspend(&self, client: &kube::Client, ledger: &mut Ledger) {
        let api = self.pipelines(client);
        ledger.suspended = Some(Timestamp::now());
        for p in &self.scheduled {
            api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"suspend": true}})))
                .await
                .expect("suspend");
        }
        for p in &self.scheduled {
            sluice_e2e::wait::until(&api, &p.name, Duration::from_secs(60), "Suspended", |p: &Pipeline| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Suspended" && c.status == "True"))
            })
            .await;
        }
    }

    /// Waits until no Job of the namespace is unfinished; returns when that was seen.
    pub async fn wait_jobs_finished(&self, client: &kube::Client, timeout: Duration) -> Timestamp {
        let api: Api<Job> = Api::namespaced(client.clone(), &self.ns);
        let running = || async {
            let jobs = api.list(&ListParams::default()).await.expect("jobs").items;
            jobs.iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none() && usage::outcome(j).is_none())
                .filter_map(|j| j.metadata.name.clone())
                .collect::<Vec<String>>()
        };
        let running = wait::settle(timeout, Duration::from_millis(250), running, Vec::is_empty).await;
        assert!(running.is_empty(), "Jobs still running after {timeout:?}: {running:?}");
        Timestamp::now()
    }
}

/// Records, per Pipeline, every window its status ever listed in `skippedRuns` (skipped by the
/// concurrency policy, replaced, ...): the list keeps only the newest 20.
fn watch_skipped(api: Api<Pipeline>) -> Arc<Mutex<BTreeMap<String, BTreeMap<Timestamp, Timestamp>>>> {
    let skipped = Arc::new(Mutex::new(BTreeMap::<String, BTreeMap<Timestamp, Timestamp>>::new()));
    let into = skipped.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .backoff(sluice::controller::watch_backoff::watch_backoff())
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            let Ok(p) = item else { continue };
            let name = p.metadata.name.clone().unwrap_or_default();
            let now = Timestamp::now();
            let mut into = into.lock().unwrap_or_else(|e| e.into_inner());
            let seen = into.entry(name).or_default();
            for run in p.status.iter().flat_map(|s| s.skipped_runs.iter()) {
                seen.entry(run.window.end.0).or_insert(now);
            }
        }
    });
    skipped
}

/// The figures of one chaos run.
#[derive(Debug, Default)]
pub struct Figures {
    pub jobs_audit: usize,
    pub jobs_watch: usize,
    pub duplicates_audit: Vec<String>,
    pub duplicates_watch: Vec<String>,
    /// Jobs the watch saw whose create the audit log does not show as successful, with what it
    /// shows for their name.
    pub unaudited: Vec<String>,
    /// Jobs created by a request that failed on the server's side (a 504 timeout): the operator
    /// could not know; it must not have created them again.
    pub created_by_failed_request: Vec<String>,
    pub partitions: i64,
    pub windows_succeeded: i64,
    pub windows_failed: i64,
    pub windows_twice: Vec<Timestamp>,
    /// Windows whose only Jobs were deleted before the watch saw them finish (the watch was
    /// reconnecting): their outcome is the Backfill's word.
    pub windows_unseen: i64,
    pub scheduled_due: usize,
    pub scheduled_ran: usize,
    pub scheduled_skipped: usize,
    pub scheduled_missed: i64,
    pub lost: Vec<String>,
    pub peak_backfill_milli: i64,
    pub peak_all_milli: i64,
    pub refusals: Vec<String>,
    pub backfill_converged_after: f64,
    pub pipelines_converged_after: f64,
}

impl Figures {
    pub fn print(&self, title: &str) {
        println!("{title}");
        println!("  Jobs created (audit / watch)      {} / {}", self.jobs_audit, self.jobs_watch);
        println!(
            "  names created twice (audit/watch) {} / {}",
            self.duplicates_audit.len(),
            self.duplicates_watch.len()
        );
        println!(
            "  backfill windows                  {} : {} succeeded once, {} failed, {} succeeded twice ({} outcomes not seen by the watch)",
            self.partitions,
            self.windows_succeeded,
            self.windows_failed,
            self.windows_twice.len(),
            self.windows_unseen
        );
        println!(
            "  scheduled windows due             {} : {} ran, {} skipped by policy, {} missed (counted), {} lost",
            self.scheduled_due,
            self.scheduled_ran,
            self.scheduled_skipped,
            self.scheduled_missed,
            self.lost.len()
        );
        println!(
            "  peak requests.cpu                 backfill {}m of {}m (hard - reserve), all {}m of {}m",
            self.peak_backfill_milli,
            HARD_MILLI - RESERVE_MILLI,
            self.peak_all_milli,
            HARD_MILLI
        );
        println!(
            "  created by a failed request       {} (the create timed out on the server, the Job exists) {:?}",
            self.created_by_failed_request.len(),
            self.created_by_failed_request
        );
        println!("  quota refusal Events              {}", self.refusals.len());
        println!(
            "  converged                         Backfill {:.1} s after its last Job finished, Pipelines {:.1} s after theirs",
            self.backfill_converged_after, self.pipelines_converged_after
        );
    }

    /// The assertions every chaos test makes.
    pub fn assert_all(&self) {
        assert!(self.duplicates_audit.is_empty(), "Job names created twice (audit log): {:?}", self.duplicates_audit);
        assert!(self.duplicates_watch.is_empty(), "Job names created twice (watch): {:?}", self.duplicates_watch);
        assert!(
            self.unaudited.is_empty(),
            "Jobs seen without a successful create in the audit log: {:?}",
            self.unaudited
        );
        assert!(self.windows_twice.is_empty(), "Backfill windows that succeeded twice: {:?}", self.windows_twice);
        assert_eq!(
            self.windows_succeeded + self.windows_failed,
            self.partitions,
            "every Backfill window succeeded once or is counted failed"
        );
        assert!(self.lost.is_empty(), "scheduled windows lost (neither run, skipped nor missed): {:?}", self.lost);
        assert!(self.peak_backfill_milli <= HARD_MILLI - RESERVE_MILLI, "the Backfill took the reserve");
        assert!(self.peak_all_milli <= HARD_MILLI, "above the quota");
        assert!(self.refusals.is_empty(), "quota refusals: {:?}", self.refusals);
    }
}

/// Ticks of a `*/every` seconds schedule in (after, until].
fn ticks(after: Timestamp, until: Timestamp, every: i64) -> Vec<Timestamp> {
    let mut t = after.as_second() - after.as_second().rem_euclid(every) + every;
    let mut out = Vec::new();
    while t <= until.as_second() {
        out.push(Timestamp::from_second(t).expect("time"));
        t += every;
    }
    out
}

impl Ledger {
    /// After the workload finished (Backfill done, Pipelines suspended, Jobs finished at
    /// `jobs_finished`): waits for the statuses to converge, reads the audit log, computes the
    /// figures. Does not assert (see [`Figures::assert_all`]).
    pub async fn figures(&self, client: &kube::Client, w: &Workload, jobs_finished: Timestamp) -> Figures {
        let mut f = Figures { partitions: w.partitions, ..Default::default() };
        // Converged: the Backfill counts what its Jobs show; no Pipeline has an active run left.
        let (backfill, pipelines) = self.converged(client, w).await;
        let events = audit::read_settled(client, &w.ns).await;
        let list = w.pipelines(client).list(&ListParams::default()).await.expect("pipelines").items;
        let refusals =
            Api::<Event>::namespaced(client.clone(), &w.ns).list(&ListParams::default()).await.expect("events");
        f.refusals =
            refusals.items.into_iter().filter_map(|e| e.message).filter(|m| m.contains("exceeded quota")).collect();
        // No await below: the watches' tasks share this thread and the lock.
        let seen = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let last_backfill_job = seen.backfill_jobs(BACKFILL).iter().filter_map(|j| j.finished_seen).max();
        f.backfill_converged_after = match (last_backfill_job, self.backfill_complete_seen) {
            (Some(last), Some(complete)) => complete.duration_since(last).as_secs_f64(),
            _ => f64::NAN,
        };
        f.pipelines_converged_after = pipelines.duration_since(jobs_finished).as_secs_f64();

        let creates = audit::job_creates(&events);
        f.jobs_audit = creates.values().sum();
        f.duplicates_audit = creates.iter().filter(|(_, c)| **c > 1).map(|(n, _)| n.clone()).collect();
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for job in seen.jobs() {
            *names.entry(&job.name).or_default() += 1;
        }
        f.jobs_watch = seen.jobs().count();
        f.duplicates_watch = names.iter().filter(|(_, c)| **c > 1).map(|(n, _)| n.to_string()).collect();
        let unknown: BTreeSet<&str> =
            events.iter().filter(|e| e.is_job_create_of_unknown_outcome()).map(|e| e.name.as_str()).collect();
        f.created_by_failed_request = names
            .keys()
            .filter(|n| !creates.contains_key(**n) && unknown.contains(**n))
            .map(|n| n.to_string())
            .collect();
        f.jobs_audit += f.created_by_failed_request.len();
        for name in names.keys().filter(|n| !creates.contains_key(**n) && !unknown.contains(**n)) {
            let shown: Vec<String> = events
                .iter()
                .filter(|e| e.name == *name && e.resource == "jobs")
                .map(|e| format!("{} {} at {} by {:?}", e.verb, e.code, e.received, e.user_agent))
                .collect();
            f.unaudited.push(format!("{name}: {shown:?}"));
        }

        // Backfill windows, from its Jobs.
        let mut successes: BTreeMap<Timestamp, usize> = BTreeMap::new();
        let mut unseen: BTreeMap<Timestamp, bool> = BTreeMap::new();
        for job in seen.backfill_jobs(BACKFILL) {
            let end = job.window_end.expect("window-end annotation");
            *successes.entry(end).or_default() += usize::from(job.succeeded == Some(true));
            *unseen.entry(end).or_insert(true) &= job.succeeded.is_none();
        }
        f.windows_unseen = unseen.iter().filter(|(end, u)| **u && successes.get(end) == Some(&0)).count() as i64;
        f.windows_succeeded = successes.values().filter(|c| **c == 1).count() as i64;
        f.windows_twice = successes.iter().filter(|(_, c)| **c > 1).map(|(t, _)| *t).collect();
        let counts = backfill.status.as_ref().and_then(|s| s.partitions.clone()).expect("partition counts");
        f.windows_failed = counts.failed;
        assert_eq!(counts.total, w.partitions, "partitions.total");
        assert!(
            (f.windows_succeeded..=f.windows_succeeded + f.windows_unseen).contains(&counts.succeeded),
            "partitions.succeeded {} is not what the Jobs show: {} windows succeeded, {} with an outcome not seen",
            counts.succeeded,
            f.windows_succeeded,
            f.windows_unseen
        );
        f.windows_succeeded = counts.succeeded;

        // Scheduled windows: due from the first tick after creation to the tick before suspension.
        let suspended = self.suspended.expect("suspended");
        let skipped = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        for p in &w.scheduled {
            let due = ticks(
                self.created + SignedDuration::from_secs(p.every),
                suspended - SignedDuration::from_secs(p.every),
                p.every,
            );
            let ran: BTreeSet<Timestamp> = seen
                .jobs()
                .filter(|j| j.pipeline == p.name && j.backfill.is_empty())
                .filter_map(|j| j.window_end)
                .collect();
            let status = list
                .iter()
                .find(|x| x.metadata.name.as_deref() == Some(&p.name))
                .and_then(|x| x.status.clone())
                .unwrap_or_default();
            let queued: BTreeSet<Timestamp> = status.queued_windows.iter().map(|w| w.end.0).collect();
            let skipped: BTreeSet<Timestamp> =
                skipped.get(&p.name).map(|s| s.keys().copied().collect()).unwrap_or_default();
            let unaccounted: Vec<Timestamp> = due
                .iter()
                .filter(|t| !ran.contains(t) && !skipped.contains(t) && !queued.contains(t))
                .copied()
                .collect();
            f.scheduled_due += due.len();
            f.scheduled_ran += due.iter().filter(|t| ran.contains(t)).count();
            f.scheduled_skipped +=
                due.iter().filter(|t| !ran.contains(t) && (skipped.contains(t) || queued.contains(t))).count();
            f.scheduled_missed += status.missed_windows;
            let lost = unaccounted.len().saturating_sub(status.missed_windows.max(0) as usize);
            f.lost.extend(unaccounted.iter().rev().take(lost).map(|t| format!("{}@{t}", p.name)));
        }

        let cpu = |j: Option<&usage::SeenJob>| j.is_some_and(|j| j.backfill == BACKFILL);
        f.peak_backfill_milli = seen.peak(cpu).millicores;
        f.peak_all_milli = seen.peak(|_| true).millicores;
        f
    }

    /// Polls until the Backfill's counts equal what its Jobs show and no Pipeline lists an
    /// active run; returns the Backfill and when the Pipelines were seen converged.
    async fn converged(&self, client: &kube::Client, w: &Workload) -> (Backfill, Timestamp) {
        let read = || async {
            let backfill = w.backfills(client).get(BACKFILL).await.expect("backfill");
            let pipelines = w.pipelines(client).list(&ListParams::default()).await.expect("pipelines").items;
            let active: Vec<String> = pipelines
                .iter()
                .filter(|p| p.status.as_ref().is_some_and(|s| s.active_run_count > 0 || !s.active_runs.is_empty()))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            let counted = backfill.status.as_ref().and_then(|s| s.partitions.clone()).unwrap_or_default();
            let finished =
                counted.succeeded + counted.failed + counted.skipped == counted.total && counted.running == 0;
            (backfill, active.is_empty() && finished, active)
        };
        let (backfill, converged, active) =
            wait::settle(Duration::from_secs(60), Duration::from_millis(250), read, |(_, done, _)| *done).await;
        assert!(
            converged,
            "status not converged 60 s after the Jobs finished: active runs in {active:?}; Backfill {:#?}",
            backfill.status
        );
        (backfill, Timestamp::now())
    }
}

#[test]
fn ticks_are_the_multiples_of_the_period_in_the_interval() {
    let t = |s: i64| Timestamp::from_second(s).unwrap();
    assert_eq!(ticks(t(100), t(115), 5), vec![t(105), t(110), t(115)]);
    assert_eq!(ticks(t(101), t(104), 5), Vec::<Timestamp>::new());
}
