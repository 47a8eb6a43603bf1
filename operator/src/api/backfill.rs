//! `Backfill`: a pipeline re-run over a range of partitions, admitted only within a quota budget.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// Desired state of a Backfill: which pipeline, which windows, how fast.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Backfill",
    namespaced,
    status = "BackfillStatus",
    shortname = "sbf",
    category = "sluice",
    derive = "PartialEq",
    doc = "A Backfill re-runs a Pipeline over a range of partition windows, admitted only as fast as the namespace ResourceQuota allows beyond a reserve for scheduled runs.",
    printcolumn(name = "Pipeline", type_ = "string", json_path = ".spec.pipelineRef.name"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".status.partitions.succeeded"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.partitions.failed"),
    printcolumn(name = "Throttled", type_ = "string", json_path = ".status.throttled.reason"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.partitions.running", priority = 1),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.partitions.queued", priority = 1),
    printcolumn(name = "Complete", type_ = "string", json_path = ".status.conditions[?(@.type==\"Complete\")].status"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.estimatedCompletionTime", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.pipelineRef == oldSelf.pipelineRef").message("spec.pipelineRef is immutable; create a new Backfill instead").field_path(".pipelineRef").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("self.range == oldSelf.range").message("spec.range is immutable; create a new Backfill instead").field_path(".range").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct BackfillSpec {
    /// The Pipeline (same namespace) whose runs are repeated.
    pub pipeline_ref: LocalObjectReference,

    /// The time range whose partition windows are re-run.
    pub range: TimeRange,

    /// `All` re-runs every step; `TransformsOnly` re-runs only Transform steps, re-deriving curated
    /// data from raw data already loaded (a dependency on an Extract step counts as met).
    #[serde(default)]
    pub steps: BackfillSteps,

    /// Which windows run: `Missing` (no successful run recorded, the default), `Failed` (a failed
    /// run and no successful one recorded) or `All`. Recorded runs are the Pipeline's
    /// `status.activeRuns`, `status.queuedWindows` and finished runs, the Jobs that exist for the window, and the
    /// ranges of other Backfills of the same Pipeline. A window with a run in progress elsewhere
    /// waits until that run has finished, whatever `reprocess` says.
    #[serde(default)]
    pub reprocess: Reprocess,

    /// Most partitions in progress at once (started and not finished, including those waiting
    /// for a retry). Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<i32>,

    /// Order in which partitions are started.
    #[serde(default)]
    pub order: BackfillOrder,

    /// When true, no new partition starts once the operator has observed this generation;
    /// partitions already running finish. Setting it back to false resumes where it stopped.
    #[serde(default)]
    pub suspend: bool,

    /// When true, nothing is created: the operator computes the plan (windows and Jobs after
    /// `reprocess`, resources per partition, estimated CPU- and memory-hours, price and wall
    /// time) into `status.plan` and a `DryRunPlanned` Event. Setting it to false starts the
    /// backfill over the same windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,

    /// Conditions that pause admission of new partitions: while one holds, partitions already
    /// started continue and no new one starts; admission resumes by itself when none holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_when: Option<PauseWhen>,

    /// Retries per partition and when failures stop the backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,

    /// Compute budget: the ResourceQuota the backfill must stay within, minus a reserve for
    /// scheduled runs, and/or explicit limits of the backfill's own share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,

    /// Kueue LocalQueue (in this namespace) that admits this backfill's Jobs; unset means the
    /// label `kueue.x-k8s.io/queue-name` on the Backfill, else the Pipeline's queue, else no
    /// Kueue. With a queue each Job is created suspended with the label
    /// `kueue.x-k8s.io/queue-name`, Kueue's quota governs instead of `budget.resourceQuotaRef`
    /// (no ResourceQuota admission; `budget.limits` still cap the backfill's own share), a
    /// partition whose Jobs wait for admission counts as `queued`, not `running`, and queued
    /// partitions count toward `parallelism`, which bounds how many Jobs wait in Kueue at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_LABEL_PATTERN))]
    pub queue_name: Option<String>,

    /// Kueue WorkloadPriorityClass of this backfill's Jobs (the Job label
    /// `kueue.x-k8s.io/priority-class`); unset means the label of that name on the Backfill.
    /// Never taken from the Pipeline, so a backfill does not run at its scheduled runs'
    /// priority. Needs a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_LABEL_PATTERN))]
    pub workload_priority_class: Option<String>,
}

/// When a backfill pauses admission by itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseWhen {
    /// Protected Datasets (names in this namespace): while one of them is `Stale` or `Warning`
    /// (its `Fresh` condition, as the Dataset controller writes it), typically because the
    /// backfill starves the scheduled runs that produce it, no new partition starts (throttle
    /// reason `ProtectedDatasetStale`, naming them). A name with no Dataset also pauses
    /// (`ProtectedDatasetMissing`): a misspelt name must not silently disable the protection.
    /// A Dataset never produced (`Unknown`) does not pause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = super::OBJECT_NAME_PATTERN)))]
    pub datasets_stale: Vec<String>,
}

/// A time range [start, end).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("timestamp(self.start) < timestamp(self.end)").message("spec.range.start must be before spec.range.end").reason(Reason::FieldValueInvalid))]
pub struct TimeRange {
    /// Inclusive start (RFC 3339), for example "2026-10-01T00:00:00Z".
    pub start: Time,
    /// Exclusive end (RFC 3339).
    pub end: Time,
}

/// Which steps a backfill re-runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackfillSteps {
    /// Every step.
    #[default]
    All,
    /// Only Transform steps.
    TransformsOnly,
}

/// Which windows a backfill runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Reprocess {
    /// Windows with no successful run.
    #[default]
    Missing,
    /// Windows whose last run failed.
    Failed,
    /// Every window in the range.
    All,
}

/// Order of partitions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackfillOrder {
    /// Oldest window first.
    #[default]
    OldestFirst,
    /// Newest window first.
    NewestFirst,
}

/// Failure handling of a backfill.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    /// Retries of each failed step of a partition, with exponential backoff. Replaces the step's
    /// `retries.limit` for backfill runs and keeps its backoff settings. Defaults to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries_per_partition: Option<i32>,

    /// Failed partitions (after retries) at which the backfill stops starting new ones and is
    /// Failed. Unset means never stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_failed_partitions: Option<i32>,
}

/// Compute budget of a backfill.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.resourceQuotaRef) || has(self.limits)").message("spec.budget: set resourceQuotaRef, limits, or both").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.reserve) || has(self.resourceQuotaRef)").message("spec.budget.reserve needs spec.budget.resourceQuotaRef").field_path(".reserve").reason(Reason::FieldValueRequired))]
pub struct Budget {
    /// A ResourceQuota in this namespace. A partition's Job is created only while, for every
    /// resource the quota tracks, `hard - used - reserve` minus what Jobs not yet counted by the
    /// quota will take covers the Job's pod (container requests, with LimitRange defaults for
    /// containers that set none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota_ref: Option<LocalObjectReference>,

    /// Quota kept free for scheduled runs, by quota resource name (for example
    /// `requests.cpu: "2"`; `cpu` means `requests.cpu`). The backfill never takes the last
    /// `reserve` of the quota, and admits whenever there is headroom beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub reserve: Option<BTreeMap<String, Quantity>>,

    /// Most resources the backfill's unfinished Jobs may request together, by quota resource name
    /// (for example `requests.cpu: "4"`; `cpu` means `requests.cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub limits: Option<BTreeMap<String, Quantity>>,
}

/// Observed state of a Backfill. Stays small for any number of partitions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Progressing, Throttled, Complete and Failed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Raised by one at each status write that lets Jobs be created while leaving the rest of
    /// the status as it was, so that such a write always changes the object: two operator
    /// replicas that decided on one `resourceVersion` cannot both create (the second write
    /// meets a conflict). Bookkeeping of the operator, not for users.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fencing_token: i64,

    /// Partition counts by phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionCounts>,

    /// The schedule the partitions are the windows of, for example
    /// "0 * * * * UTC, window 1h, offset 0s": `partitionBasis` in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_schedule: Option<String>,

    /// The Pipeline's schedule and partition settings whose windows the partitions are, pinned
    /// when the backfill starts (its first partition started or window judged): a later change
    /// of the Pipeline's schedule does not change what the backfill covers, so `partitions.total`
    /// and the processed windows always count the same windows. Until the start it follows the
    /// Pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_basis: Option<PartitionBasis>,

    /// Finished (succeeded, failed or skipped) out of total partitions, for example
    /// "120/720 (16%)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,

    /// Windows this backfill is done with (succeeded, failed, or skipped because `reprocess`
    /// did not select them), as exact compact ranges: a window inside them is never started
    /// again, also after its Jobs were deleted. A few ranges, as partitions finish roughly in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processed_ranges: Vec<WindowRange>,

    /// Succeeded windows as compact ranges (at most 100; beyond that the closest ranges are
    /// merged and `count` tells how many windows of the range succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeded_ranges: Vec<WindowRange>,

    /// Failed windows (after retries) as compact ranges, bounded like `succeededRanges`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_ranges: Vec<WindowRange>,

    /// The most recent partition failures, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failures: Vec<PartitionFailure>,

    /// Why no further partition is admitted right now, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Throttle>,

    /// Names of Jobs this backfill needs that exist and are neither its own nor Sluice Jobs of
    /// the Pipeline (at most 10): the partitions that need them wait (`NameConflict`) until
    /// those Jobs are deleted. Looked at again every minute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub name_conflicts: Vec<String>,

    /// The dry-run plan, computed while `spec.dryRun` is true and kept afterwards (what the
    /// backfill was expected to run and cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::BackfillPlan>,

    /// When the first partition started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the backfill completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Estimated completion from the observed throughput (partitions finished since the start),
    /// recomputed when a partition finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion_time: Option<Time>,
}

/// The schedule and partition settings of a Pipeline that define a backfill's windows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionBasis {
    /// The Pipeline's `spec.schedule` (cron).
    #[schemars(length(max = 256))]
    pub schedule: String,
    /// The Pipeline's `spec.timeZone`; unset means UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// The Pipeline's `spec.partition.size`; unset means the time since the previous tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub size: Option<String>,
    /// The Pipeline's `spec.partition.offset`; unset means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub offset: Option<String>,
}

/// Partition counts by phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionCounts {
    /// Windows of the Pipeline's schedule inside `spec.range`.
    pub total: i64,
    /// Not started yet (including windows not yet judged against `reprocess`).
    pub pending: i64,
    /// Started and not finished (running, or waiting for a retry or the next step), not
    /// counting `queued`.
    pub running: i64,
    /// Started, and every unfinished Job waits, suspended, for admission by Kueue
    /// (`spec.queueName`): none of its Jobs is running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Failed after retries.
    pub failed: i64,
    /// Not selected by `reprocess` (for example already done for `Missing`).
    pub skipped: i64,
}

/// A contiguous range of windows [start, end) and how many partitions it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowRange {
    /// Start of the first window.
    pub start: Time,
    /// End of the last window.
    pub end: Time,
    /// Number of partitions of the kind the list holds in the range (fewer than the windows it
    /// spans only for merged ranges of a bounded list).
    pub count: i64,
}

/// One failed partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionFailure {
    /// Start of the failed window.
    pub window_start: Time,
    /// The step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Why it failed.
    pub reason: String,
    /// Details, truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why admission is paused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// `QuotaExhausted` (the quota has no headroom beyond the reserve), `BudgetLimitReached`
    /// (`spec.budget.limits` used up), `ParallelismReached`, `JobCapReached` (the operator's
    /// Job caps), `WaitingForSchedule` (the next windows are not yet handled by the Pipeline's
    /// schedule), `WindowsBusy` (the next windows have runs in progress elsewhere),
    /// `NameConflict` (a Job this backfill needs exists under another owner; see
    /// `nameConflicts`), `InputContractViolated` (a Dataset the backfilled steps read violates its
    /// contract with `policy: Block`), `ProtectedDatasetStale` / `ProtectedDatasetMissing` (see
    /// `spec.pauseWhen`), `Suspended` or `DryRun` (`spec.dryRun`: the plan is in `plan`, nothing
    /// is created).
    pub reason: String,
    /// Details, for example "requests.cpu needed 1, free 0.5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `QuotaExhausted` and `BudgetLimitReached`: the quota resource that is short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// For `QuotaExhausted` and `BudgetLimitReached`: what the next Job needs of `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<Quantity>,
    /// For `QuotaExhausted` and `BudgetLimitReached`: what is free of `resource` (beyond the
    /// reserve, after Jobs not yet counted by the quota); may be negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<Quantity>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
