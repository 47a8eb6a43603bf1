//! `Pipeline`: a schedule (or upstream datasets) turned into runs, each run a dependency graph of
//! extract and transform steps, each step one `batch/v1` Job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Pipeline: when it runs, what window each run covers, and its steps.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    status = "PipelineStatus",
    shortname = "spl",
    category = "sluice",
    derive = "PartialEq",
    doc = "A Pipeline runs extract and transform steps as batch/v1 Jobs, one run per partition window, on a schedule or when upstream datasets advance.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeRunCount"),
    printcolumn(name = "Last Run", type_ = "string", json_path = ".status.lastRunPhase"),
    printcolumn(name = "Last Schedule", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextScheduleTime", priority = 1),
    printcolumn(name = "CPU-s", type_ = "number", json_path = ".status.cost.total.cpuSeconds", priority = 1),
    printcolumn(name = "Cost", type_ = "number", json_path = ".status.cost.total.price", priority = 1),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.schedule) || has(self.trigger)").message("spec: set spec.schedule, spec.trigger, or both; a pipeline with neither never runs").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("self.steps.all(s, self.steps.exists_one(t, t.name == s.name))").message("spec.steps: step names must be unique").field_path(".steps").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.steps.all(s, !has(s.dependsOn) || s.dependsOn.all(d, self.steps.exists(t, t.name == d)))").message("spec.steps[].dependsOn: every entry must name a step of this pipeline").field_path(".steps").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.steps.all(s, !has(s.dependsOn) || !(s.name in s.dependsOn))").message("spec.steps[].dependsOn: a step cannot depend on itself").field_path(".steps").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.steps.all(a, !has(a.dependsOn) || a.dependsOn.all(d, self.steps.all(b, b.name != d || !has(b.dependsOn) || !(a.name in b.dependsOn))))").message("spec.steps[].dependsOn: two steps depend on each other (dependency cycle)").field_path(".steps").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.steps.all(s, !has(s.outputs) || s.outputs.all(o, self.steps.exists_one(t, has(t.outputs) && o in t.outputs)))").message("spec.steps[].outputs: each dataset can be produced by one step only").field_path(".steps").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.lateness) || self.steps.exists(s, has(s.lateRerun) && s.lateRerun)").message("spec.lateness: no step has lateRerun: true, so late passes would run nothing").field_path(".lateness").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.lateness) || has(self.schedule)").message("spec.lateness needs spec.schedule: late passes follow scheduled runs").field_path(".lateness").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// Cron schedule in five-field syntax (minute hour day-of-month month day-of-week), evaluated
    /// in `timeZone`; for example "0 * * * *" for hourly. Macros such as "@daily" are accepted.
    /// Optional when `trigger` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,

    /// IANA time zone name the schedule is evaluated in, for example "Europe/Berlin".
    /// Defaults to "UTC". Partition windows in the step environment are always given in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// When true, no new runs start; runs already started finish.
    #[serde(default)]
    pub suspend: bool,

    /// The partition window each run covers. By default a run due at a tick covers the interval
    /// from the previous tick to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionSpec>,

    /// Deadline in seconds for starting a run after its scheduled time. A run that cannot start
    /// within it is recorded as missed instead of started late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,

    /// What to do with windows that were due while the pipeline could not run (operator down,
    /// suspended, pipeline just created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpSpec>,

    /// Run when upstream datasets advance, in addition to or instead of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,

    /// The steps of each run. A step starts when every step it depends on succeeded.
    #[schemars(length(min = 1, max = 20))]
    pub steps: Vec<StepSpec>,

    /// How many runs may be active at once and what happens to a window that is due while the
    /// limit is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,

    /// How many finished runs, and their Jobs, to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySpec>,

    /// Late-arriving data: each scheduled run also re-runs the steps with `lateRerun: true` for
    /// the previous windows (a *late pass* per earlier window), so rows that landed after a
    /// window's run are picked up without a Backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<LatenessSpec>,

    /// Kueue LocalQueue (in this namespace) that admits this pipeline's Jobs. Each Job is
    /// created suspended with the label `kueue.x-k8s.io/queue-name`, counts as queued (run phase
    /// `Queued`) until Kueue admits and unsuspends it, and counts toward
    /// `concurrency.maxConcurrentRuns` while queued. The label `kueue.x-k8s.io/queue-name` on the
    /// Pipeline does the same when this is unset. Unset and unlabelled: no Kueue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_LABEL_PATTERN))]
    pub queue_name: Option<String>,

    /// Kueue WorkloadPriorityClass of this pipeline's Jobs (the Job label
    /// `kueue.x-k8s.io/priority-class`): within a ClusterQueue Kueue admits higher priorities
    /// first. The label `kueue.x-k8s.io/priority-class` on the Pipeline does the same when this
    /// is unset. Needs a queue (`queueName` or its label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_LABEL_PATTERN))]
    pub workload_priority_class: Option<String>,
}

/// How far back each scheduled run re-runs earlier windows for late-arriving data.
///
/// The run due at tick T (window W) starts, beside W's run, one late pass for each of the
/// previous windows W-1 .. W-N whose tick came after the Pipeline was created: run id
/// `<run id of W-d>-late<d>` (d = how many windows before W), the window W-d, only the steps
/// with `lateRerun: true` (a dependency on another step counts as met), Jobs labelled
/// `sluice.dev/late-pass: "<d>"`. The same (window, d) always gives the same name, and the late
/// passes become active in status in the same write that records T as handled, so a restart or
/// a stale cache never starts one twice nor loses one. A late pass does not count against
/// `concurrency.maxConcurrentRuns`; the operator's Job caps apply. A late pass whose window has
/// a run in progress (its own run, another late pass, a Backfill's Jobs) is recorded Skipped
/// (`WindowBusy`, with an Event) rather than run beside it. While an input's contract holds
/// runs, no late pass starts.
///
/// Datasets: a late pass never moves a watermark past its window's end (a reported watermark
/// is capped at it), so re-running an old window never makes a Dataset look fresher.
/// Backfills: a late pass in progress makes its window busy for Backfills (they wait); a late
/// pass's record does not count as the window's run for `reprocess` (only the window's own
/// runs do), so `reprocess: Missing` and `Failed` judge windows as without lateness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.lookback) != has(self.duration)").message("spec.lateness: set exactly one of lookback or duration").reason(Reason::FieldValueInvalid))]
pub struct LatenessSpec {
    /// How many previous windows each scheduled run re-runs (1 to 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 24))]
    pub lookback: Option<i32>,

    /// Re-run the previous windows that start within this duration before the scheduled
    /// window's start ("6h"), at most 24 of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.lateness.duration must be a positive duration such as 6h"))]
    pub duration: Option<String>,
}

/// The partition window of a run, relative to the tick that starts it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionSpec {
    /// Length of the window as a duration ("1h", "24h", "15m"). The window of the run due at tick
    /// T is [T - offset - size, T - offset). Defaults to the time between the previous tick and T.
    /// A size equal to the schedule's wall-clock period (24h on a daily schedule) follows the wall
    /// clock across daylight-saving changes (23- and 25-hour windows), so windows stay contiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.partition.size must be a positive duration such as 1h or 15m"))]
    pub size: Option<String>,

    /// Shift of the window before the tick, as a duration, for data that lands late: with an
    /// hourly schedule at minute 5 and an offset of "5m", the 01:05 run covers [00:00, 01:00).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    pub offset: Option<String>,
}

/// How windows missed while the pipeline could not run are caught up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpSpec {
    /// `Latest` runs only the most recent missed window (the default), `All` runs every missed
    /// window oldest first up to `maxRuns`, `None` skips missed windows and waits for the next tick.
    #[serde(default)]
    pub policy: CatchUpPolicy,

    /// With `All`, the most missed windows that are caught up; older ones are recorded as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_runs: Option<i32>,
}

/// Catch-up policy for missed windows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CatchUpPolicy {
    /// Run only the most recent missed window.
    #[default]
    Latest,
    /// Run every missed window, oldest first, up to `maxRuns`.
    All,
    /// Skip missed windows.
    None,
}

/// Data-aware trigger: run when upstream datasets advance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// Names of Datasets in this namespace whose watermark advancing triggers a run (names only:
    /// references never cross namespaces).
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253), regex(pattern = super::OBJECT_NAME_PATTERN)))]
    pub datasets: Vec<String>,

    /// `All` waits until every listed dataset has advanced past the last run's window (the
    /// default); `Any` runs as soon as one of them advances.
    #[serde(default)]
    pub mode: TriggerMode,
}

/// When a dataset trigger fires.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TriggerMode {
    /// Every upstream dataset has advanced.
    #[default]
    All,
    /// At least one upstream dataset has advanced.
    Any,
}

/// One step of a run: a Job built from a pod template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepSpec {
    /// Name of the step, unique in the pipeline; a lowercase DNS label of at most 40 characters.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// `Extract` reads from a source system into a raw dataset; `Transform` derives datasets from
    /// other datasets. A Backfill with `steps: TransformsOnly` re-runs only `Transform` steps.
    pub kind: StepKind,

    /// Datasets this step reads (names of Datasets in this namespace; a name, never `namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = super::OBJECT_NAME_PATTERN)))]
    pub inputs: Vec<String>,

    /// Datasets this step produces (names of Datasets in this namespace). A dataset is produced
    /// by one step only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = super::OBJECT_NAME_PATTERN)))]
    pub outputs: Vec<String>,

    /// Names of steps of this pipeline that must succeed before this step starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 40)))]
    pub depends_on: Vec<String>,

    /// Pod template of the step's Job: image, command, env, resources. Sluice adds the
    /// SLUICE_* environment variables to every container and sets restartPolicy Never.
    #[schemars(schema_with = "super::schema::pod_template")]
    pub template: PodTemplateSpec,

    /// Retries of a failed step before the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetrySpec>,

    /// Seconds a single attempt of the step may run before it is stopped and counted as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Whether the late passes of `spec.lateness` re-run this step for earlier windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late_rerun: bool,
}

/// The kind of a step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StepKind {
    /// Reads from a source system and loads a raw dataset.
    Extract,
    /// Derives datasets from other datasets.
    Transform,
}

/// Retries of a failed step, with exponential backoff between attempts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.backoffSeconds) || !has(self.maxBackoffSeconds) || self.backoffSeconds <= self.maxBackoffSeconds").message("spec.steps[].retries: backoffSeconds must not exceed maxBackoffSeconds"))]
pub struct RetrySpec {
    /// Attempts after the first one. Defaults to 2; 0 disables retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub limit: Option<i32>,

    /// Delay before the first retry in seconds, doubled for each further retry. Defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub backoff_seconds: Option<i32>,

    /// Upper bound of the delay between retries in seconds. Defaults to 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_backoff_seconds: Option<i32>,
}

/// Caps on concurrent runs of this pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencySpec {
    /// Most runs of this pipeline active at once. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent_runs: Option<i32>,

    /// What happens to a window that is due while `maxConcurrentRuns` runs are active:
    /// `Forbid` skips it and records it (the default), `Replace` stops the oldest active run and
    /// starts the new one, `Queue` keeps due windows in order and starts them as runs finish.
    #[serde(default)]
    pub policy: ConcurrencyPolicy,

    /// With `Queue`, the most windows waiting; further due windows are skipped and recorded.
    /// Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_queued: Option<i32>,
}

/// Policy for a window that is due while the concurrency limit is reached.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the window and record it.
    #[default]
    Forbid,
    /// Stop the oldest active run and start the new window.
    Replace,
    /// Queue the window and start it when a run finishes.
    Queue,
}

/// How much history is kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Finished successful runs whose Jobs are kept. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub successful: Option<i32>,

    /// Finished failed runs whose Jobs are kept. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub failed: Option<i32>,
}

/// Observed state of a Pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Running, Degraded and Suspended conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Scheduled time of the most recent tick that started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// Next time the schedule is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,

    /// Phase of the most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_phase: Option<RunPhase>,

    /// Number of runs in progress.
    #[serde(default)]
    pub active_run_count: i32,

    /// Runs in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_runs: Vec<RunRecord>,

    /// Windows waiting for a free slot (policy `Queue`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued_windows: Vec<PartitionWindow>,

    /// The most recent finished runs (Succeeded or Failed), newest window first: at least 20,
    /// and at least `history.successful + history.failed` so every run whose Jobs are kept has
    /// its record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_runs: Vec<RunRecord>,

    /// The most recent windows that did not run here (Skipped by the concurrency policy, a
    /// missed deadline, a held input or a Backfill that runs them; Replaced runs), newest
    /// window first, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_runs: Vec<RunRecord>,

    /// Windows recorded Skipped since the Pipeline was created (`skippedRuns` keeps only the
    /// newest 20 records), so a skipped window is always counted even when its record is gone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_windows: i64,

    /// Share of successful runs among the kept finished runs, for example "0.75".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_ratio: Option<String>,

    /// Due windows that were not run: missed while the operator was down or the pipeline
    /// suspended (beyond the catch-up policy), or past `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed_windows: i64,

    /// Raised by one at each status write that lets Jobs be created while leaving the rest of
    /// the status as it was, so that such a write always changes the object: two operator
    /// replicas that decided on one `resourceVersion` cannot both create (the second write
    /// meets a conflict). Bookkeeping of the operator, not for users.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fencing_token: i64,

    /// Value of the `sluice.dev/run-now` annotation last acted on, so that one request starts
    /// one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_trigger: Option<String>,

    /// End of the window of the last run started by `trigger.datasets`: the next trigger run
    /// covers from here to the upstream watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_watermark: Option<Time>,

    /// Per-dataset watermarks already consumed by trigger runs, so that one advance never causes
    /// two runs, also across operator restarts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumed_watermarks: BTreeMap<String, Time>,

    /// What the finished runs in `recentRuns` reserved, summed (the kept history, so the figure
    /// covers the same runs as `successRatio`). `sluice_step_*_total` metrics count every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::CostSummary>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A partition window [start, end).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionWindow {
    /// Inclusive start of the window (UTC).
    pub start: Time,
    /// Exclusive end of the window (UTC).
    pub end: Time,
}

/// One run of a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Run identity, derived from the partition window; stable across operator restarts.
    pub id: String,
    /// The partition window the run covers.
    pub window: PartitionWindow,
    /// Phase of the run.
    pub phase: RunPhase,
    /// When the run started: the time of the decision that created its first Job (for an active
    /// run; a finished run's record gives its first Job's creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// The step that failed the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Why the run failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the run was started by the `sluice.dev/run-now` annotation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// What the run's step Jobs reserved (finished runs): effective pod requests times each
    /// Job's run time, per step and in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::RunCost>,
    /// For a late pass (`spec.lateness`): how many windows before the scheduled window that
    /// started it this run's window is. Unset for a window's own runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_pass: Option<i32>,
}

/// Phase of a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    /// Waiting for its first Job: no free Job slot yet, or the quota refused it.
    Pending,
    /// Started, and every unfinished step's Job waits, suspended, for admission by Kueue
    /// (`spec.queueName`): none is running.
    Queued,
    /// Its first Job is created (from the status write that precedes the creation) and at least
    /// one step is running or waiting for its dependencies.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed after its retries.
    Failed,
    /// Not run here: the concurrency policy, a missed deadline, a held input, or a Backfill runs
    /// the window.
    Skipped,
    /// Stopped by the `Replace` policy.
    Replaced,
}
