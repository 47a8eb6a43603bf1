//! The state of a pipeline's runs, derived from its Jobs. Pure.
//!
//! Retries map onto Jobs one to one: attempt N of a step is its own Job (`...-aN`, backoffLimit
//! 0), created by the operator once attempt N-1 failed and the backoff elapsed. So every attempt
//! has a deterministic name (a restart can never launch it twice), its own `SLUICE_ATTEMPT` and
//! termination message, and the backoff is the spec's, not the Job controller's fixed one.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::api::{PipelineSpec, RetrySpec, StepSpec};
use crate::schedule::Window;

/// A Job a decision creates: attempt `attempt` of step `step` in run `run_id` over `window`,
/// named from them ([`crate::jobs::job_name`]). `demand` is what the quota charges its pod: a
/// Backfill's decision computes it (`quota::PodDemand`), a Pipeline's has none (`()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobToCreate<D = ()> {
    pub run_id: String,
    pub window: Window,
    pub step: String,
    pub attempt: u32,
    pub demand: D,
}

/// What the operator observed of one Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedJob {
    pub name: String,
    pub run_id: String,
    pub step: String,
    pub attempt: u32,
    pub window: Window,
    pub created: Timestamp,
    pub state: JobState,
}

/// The state of a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Active,
    /// Suspended, waiting for admission by Kueue (`spec.queueName`): launched, no pod.
    Queued,
    Succeeded {
        finished: Timestamp,
    },
    Failed {
        finished: Timestamp,
        reason: String,
    },
}

impl JobState {
    /// Active or queued: the Job holds its window and its place.
    pub fn unfinished(&self) -> bool {
        matches!(self, JobState::Active | JobState::Queued)
    }
}

/// The state of one step in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Dependencies not done yet.
    Waiting,
    /// Ready to start `attempt` now.
    Launch {
        attempt: u32,
    },
    /// Retry `attempt` once `at` has come.
    Backoff {
        attempt: u32,
        at: Timestamp,
    },
    Running,
    /// Its Job waits, suspended, for admission by Kueue.
    Queued,
    Succeeded {
        finished: Timestamp,
    },
    /// Failed after its retries.
    Failed {
        finished: Timestamp,
        reason: String,
    },
    /// Not run because a dependency failed.
    Skipped,
}

impl StepState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, StepState::Succeeded { .. } | StepState::Failed { .. } | StepState::Skipped)
    }
}

/// Retry settings with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub limit: u32,
    pub backoff: SignedDuration,
    pub max_backoff: SignedDuration,
}

impl Retry {
    pub fn of(spec: Option<&RetrySpec>) -> Self {
        let get = |v: Option<i32>, default: i64| v.map(i64::from).unwrap_or(default).max(0);
        Self {
            limit: get(spec.and_then(|r| r.limit), 2) as u32,
            backoff: SignedDuration::from_secs(get(spec.and_then(|r| r.backoff_seconds), 30)),
            max_backoff: SignedDuration::from_secs(get(spec.and_then(|r| r.max_backoff_seconds), 3600)),
        }
    }

    /// Delay before attempt `next` (1-based retries): backoff * 2^(next-1), capped.
    pub fn delay_before(&self, next: u32) -> SignedDuration {
        let factor = 1i64 << (next.saturating_sub(1)).min(30);
        let secs = self.backoff.as_secs().saturating_mul(factor);
        SignedDuration::from_secs(secs).min(self.max_backoff)
    }
}

/// One run as derived from its Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    pub run_id: String,
    pub window: Window,
    pub started: Option<Timestamp>,
    /// Step states in spec order.
    pub steps: Vec<(String, StepState)>,
}

impl RunState {
    pub fn finished(&self) -> bool {
        self.steps.iter().all(|(_, s)| s.is_terminal())
    }

    /// Whether the run waits for Kueue: some step's Job is queued and none runs.
    pub fn queued(&self) -> bool {
        self.steps.iter().any(|(_, s)| *s == StepState::Queued)
            && !self.steps.iter().any(|(_, s)| *s == StepState::Running)
    }

    /// The first step that failed after its retries, with the reason.
    pub fn failed_step(&self) -> Option<(&str, &str)> {
        self.steps.iter().find_map(|(name, s)| match s {
            StepState::Failed { reason, .. } => Some((name.as_str(), reason.as_str())),
            _ => None,
        })
    }

    /// When the last step finished (for finished runs).
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.steps
            .iter()
            .filter_map(|(_, s)| match s {
                StepState::Succeeded { finished } | StepState::Failed { finished, .. } => Some(*finished),
                _ => None,
            })
            .max()
    }

    /// The earliest time something in this run becomes due (a retry backoff ending).
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.steps
            .iter()
            .filter_map(|(_, s)| match s {
                StepState::Backoff { at, .. } => Some(*at),
                _ => None,
            })
            .min()
    }
}

/// Derives the state of run `run_id` over `window` from its Jobs, at `now`. `steps` limits which
/// steps belong to the run (all for a scheduled run; transforms only for some backfills): a
/// dependency on a step outside the run counts as satisfied.
pub fn derive_run(
    spec: &PipelineSpec,
    steps: &[&StepSpec],
    run_id: &str,
    window: Window,
    jobs: &[&ObservedJob],
    now: Timestamp,
) -> RunState {
    let mut latest: BTreeMap<&str, &ObservedJob> = BTreeMap::new();
    for job in jobs {
        let entry = latest.entry(job.step.as_str()).or_insert(job);
        if job.attempt > entry.attempt {
            *entry = job;
        }
    }
    let in_run: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let mut states: BTreeMap<&str, StepState> = BTreeMap::new();
    // Steps in dependency order: repeat until every step has a state (the graph is acyclic; a
    // cyclic spec never gets here because validation stops it).
    let mut remaining: Vec<&StepSpec> = steps.to_vec();
    let mut guard = 0;
    while !remaining.is_empty() && guard <= spec.steps.len() {
        guard += 1;
        remaining.retain(|step| {
            let deps: Vec<&str> = step.depends_on.iter().map(String::as_str).filter(|d| in_run.contains(d)).collect();
            if deps.iter().any(|d| !states.contains_key(d)) {
                return true;
            }
            let state = step_state(step, deps.iter().map(|d| &states[d]), latest.get(step.name.as_str()).copied(), now);
            states.insert(step.name.as_str(), state);
            false
        });
    }
    for step in remaining {
        states.insert(step.name.as_str(), StepState::Waiting);
    }
    RunState {
        run_id: run_id.to_string(),
        window,
        started: jobs.iter().map(|j| j.created).min(),
        steps: steps.iter().map(|s| (s.name.clone(), states[s.name.as_str()].clone())).collect(),
    }
}

fn step_state<'a>(
    step: &StepSpec,
    mut deps: impl Iterator<Item = &'a StepState> + Clone,
    job: Option<&ObservedJob>,
    now: Timestamp,
) -> StepState {
    match job {
        None => {
            if deps.clone().any(|d| matches!(d, StepState::Failed { .. } | StepState::Skipped)) {
                StepState::Skipped
            } else if deps.all(|d| matches!(d, StepState::Succeeded { .. })) {
                StepState::Launch { attempt: 0 }
            } else {
                StepState::Waiting
            }
        }
        Some(job) => match &job.state {
            JobState::Active => StepState::Running,
            JobState::Queued => StepState::Queued,
            JobState::Succeeded { finished } => StepState::Succeeded { finished: *finished },
            JobState::Failed { finished, reason } => {
                let retry = Retry::of(step.retries.as_ref());
                if job.attempt < retry.limit {
                    let next = job.attempt + 1;
                    let at = finished.checked_add(retry.delay_before(next)).unwrap_or(*finished);
                    if at <= now {
                        StepState::Launch { attempt: next }
                    } else {
                        StepState::Backoff { attempt: next, at }
                    }
                } else {
                    StepState::Failed { finished: *finished, reason: reason.clone() }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec() -> PipelineSpec {
        serde_json::from_value(serde_json::json!({
            "schedule": "0 * * * *",
            "steps": [
                {"name": "extract", "kind": "Extract", "retries": {"limit": 2, "backoffSeconds": 10, "maxBackoffSeconds": 15},
                 "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                {"name": "stage", "kind": "Transform", "dependsOn": ["extract"],
                 "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                {"name": "curate", "kind": "Transform", "dependsOn": ["stage"],
                 "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                {"name": "audit", "kind": "Transform",
                 "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}
            ]
        }))
        .unwrap()
    }

    fn window() -> Window {
        Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-24T11:00:00Z") }
    }

    fn job(step: &str, attempt: u32, state: JobState) -> ObservedJob {
        ObservedJob {
            name: format!("p-{step}-{attempt}"),
            run_id: "r".into(),
            step: step.into(),
            attempt,
            window: window(),
            created: ts("2026-11-24T11:00:00Z"),
            state,
        }
    }

    fn derive(jobs: &[ObservedJob], now: &str) -> RunState {
        let spec = spec();
        let steps: Vec<&StepSpec> = spec.steps.iter().collect();
        let refs: Vec<&ObservedJob> = jobs.iter().collect();
        derive_run(&spec, &steps, "r", window(), &refs, ts(now))
    }

    fn state<'a>(run: &'a RunState, step: &str) -> &'a StepState {
        &run.steps.iter().find(|(n, _)| n == step).unwrap().1
    }

    #[test]
    fn a_new_run_launches_the_roots_only() {
        let run = derive(&[], "2026-11-24T11:00:00Z");
        assert_eq!(state(&run, "extract"), &StepState::Launch { attempt: 0 });
        assert_eq!(state(&run, "audit"), &StepState::Launch { attempt: 0 });
        assert_eq!(state(&run, "stage"), &StepState::Waiting);
        assert!(!run.finished());
    }

    #[test]
    fn a_step_starts_when_its_dependencies_succeeded() {
        let done = JobState::Succeeded { finished: ts("2026-11-24T11:01:00Z") };
        let run = derive(&[job("extract", 0, done.clone()), job("audit", 0, JobState::Active)], "2026-11-24T11:01:00Z");
        assert_eq!(state(&run, "stage"), &StepState::Launch { attempt: 0 });
        assert_eq!(state(&run, "curate"), &StepState::Waiting);
        assert_eq!(state(&run, "audit"), &StepState::Running);
    }

    #[test]
    fn failures_retry_with_exponential_backoff_then_fail_the_run_and_skip_dependents() {
        let failed = |at: &str| JobState::Failed { finished: ts(at), reason: "Error".into() };
        // Attempt 0 failed at 11:01: attempt 1 is due 10 s later.
        let run = derive(&[job("extract", 0, failed("2026-11-24T11:01:00Z"))], "2026-11-24T11:01:05Z");
        assert_eq!(state(&run, "extract"), &StepState::Backoff { attempt: 1, at: ts("2026-11-24T11:01:10Z") });
        assert_eq!(run.next_wake(), Some(ts("2026-11-24T11:01:10Z")));
        let run = derive(&[job("extract", 0, failed("2026-11-24T11:01:00Z"))], "2026-11-24T11:01:10Z");
        assert_eq!(state(&run, "extract"), &StepState::Launch { attempt: 1 });
        // Attempt 1 failed: attempt 2 waits 20 s capped to 15 s.
        let jobs =
            [job("extract", 0, failed("2026-11-24T11:01:00Z")), job("extract", 1, failed("2026-11-24T11:02:00Z"))];
        let run = derive(&jobs, "2026-11-24T11:02:01Z");
        assert_eq!(state(&run, "extract"), &StepState::Backoff { attempt: 2, at: ts("2026-11-24T11:02:15Z") });
        // Attempt 2 (the last) failed: the step fails, its dependents are skipped, the
        // independent branch finishes, and then the run is finished.
        let jobs = [
            job("extract", 0, failed("2026-11-24T11:01:00Z")),
            job("extract", 1, failed("2026-11-24T11:02:00Z")),
            job("extract", 2, failed("2026-11-24T11:03:00Z")),
            job("audit", 0, JobState::Succeeded { finished: ts("2026-11-24T11:00:30Z") }),
        ];
        let run = derive(&jobs, "2026-11-24T11:03:01Z");
        assert!(matches!(state(&run, "extract"), StepState::Failed { .. }));
        assert_eq!(state(&run, "stage"), &StepState::Skipped);
        assert_eq!(state(&run, "curate"), &StepState::Skipped);
        assert!(run.finished());
        assert_eq!(run.failed_step(), Some(("extract", "Error")));
        assert_eq!(run.finished_at(), Some(ts("2026-11-24T11:03:00Z")));
    }

    #[test]
    fn a_run_is_queued_while_its_jobs_wait_for_kueue_and_none_runs() {
        let done = JobState::Succeeded { finished: ts("2026-11-24T11:01:00Z") };
        let run =
            derive(&[job("extract", 0, JobState::Queued), job("audit", 0, JobState::Queued)], "2026-11-24T11:01:00Z");
        assert_eq!(state(&run, "extract"), &StepState::Queued);
        assert!(run.queued() && !run.finished());
        let run = derive(&[job("extract", 0, done.clone()), job("audit", 0, JobState::Queued)], "2026-11-24T11:01:00Z");
        assert!(run.queued(), "a finished step and a queued one: queued");
        let run =
            derive(&[job("extract", 0, JobState::Active), job("audit", 0, JobState::Queued)], "2026-11-24T11:01:00Z");
        assert!(!run.queued(), "one step admitted and running: running");
        assert!(!derive(&[], "2026-11-24T11:00:00Z").queued());
    }

    #[test]
    fn transforms_only_runs_treat_outside_dependencies_as_met() {
        let spec = spec();
        let steps: Vec<&StepSpec> = spec.steps.iter().filter(|s| s.name != "extract").collect();
        let run = derive_run(&spec, &steps, "r", window(), &[], ts("2026-11-24T11:00:00Z"));
        assert_eq!(run.steps.len(), 3);
        assert_eq!(state(&run, "stage"), &StepState::Launch { attempt: 0 });
    }

    #[test]
    fn default_retry_settings() {
        let r = Retry::of(None);
        assert_eq!(r.limit, 2);
        assert_eq!(r.delay_before(1), SignedDuration::from_secs(30));
        assert_eq!(r.delay_before(2), SignedDuration::from_secs(60));
        assert_eq!(r.delay_before(20), SignedDuration::from_secs(3600));
    }
}
