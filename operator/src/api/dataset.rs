//! `Dataset`: what a step produces or reads, who owns it, how fresh it must be and what shape it
//! must have.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Dataset: ownership, freshness objective and contract.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Dataset",
    namespaced,
    status = "DatasetStatus",
    shortname = "sds",
    category = "sluice",
    derive = "PartialEq",
    doc = "A Dataset is a table or file set that pipeline steps produce or read, with an owner, a freshness objective and a schema contract.",
    printcolumn(name = "Layer", type_ = "string", json_path = ".spec.layer"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner", priority = 1),
    printcolumn(name = "Freshness", type_ = "string", json_path = ".status.freshness.state"),
    printcolumn(name = "Watermark", type_ = "string", json_path = ".status.watermark"),
    printcolumn(name = "Rows Written", type_ = "integer", json_path = ".status.rowsWritten"),
    printcolumn(
        name = "Schema OK",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"SchemaConformant\")].status"
    ),
    printcolumn(name = "Data Age", type_ = "date", json_path = ".status.watermark"),
    printcolumn(name = "Max Age", type_ = "string", json_path = ".spec.freshness.maxAge"),
    printcolumn(name = "CPU-s", type_ = "number", json_path = ".status.cost.total.cpuSeconds", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Team or person accountable for the dataset, for example "team-payments" or an email.
    #[schemars(length(min = 1, max = 253))]
    pub owner: String,

    /// Layer of the dataset in the ELT flow.
    pub layer: DatasetLayer,

    /// Where the data lives: a table name or a URI. Informational; Sluice does not read data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub location: Option<String>,

    /// Freshness objective: how old the newest complete partition may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessSpec>,

    /// Schema contract the producing step's reported schema is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractSpec>,
}

/// Layer of a dataset.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DatasetLayer {
    /// Data as loaded from the source.
    Raw,
    /// Cleaned and typed, one to one with the source.
    Staging,
    /// Modelled for consumers.
    Curated,
}

/// Freshness objective of a dataset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.warnAfter) || duration(self.warnAfter) <= duration(self.maxAge)").message("spec.freshness.warnAfter must not be greater than spec.freshness.maxAge").field_path(".warnAfter").reason(Reason::FieldValueInvalid))]
pub struct FreshnessSpec {
    /// Oldest the watermark may be before the dataset is Stale, as a duration ("2h", "90m",
    /// "36h"; units h, m, s, ms).
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.freshness.maxAge must be a positive duration such as 2h"))]
    pub max_age: String,

    /// Age after which the dataset is in Warning before it turns Stale, as a duration; at most
    /// `maxAge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"))]
    pub warn_after: Option<String>,
}

/// Schema contract of a dataset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.columns.all(c, self.columns.exists_one(d, d.name == c.name))").message("spec.contract.columns: column names must be unique").field_path(".columns").reason(Reason::FieldValueInvalid))]
pub struct ContractSpec {
    /// Columns the dataset must have.
    #[schemars(length(min = 1, max = 200))]
    pub columns: Vec<ColumnSpec>,

    /// When true, a reported column that is not in the contract is a violation too.
    #[serde(default)]
    pub strict: bool,

    /// What a violation does: `Warn` reports it; `Block` also holds pipelines triggered by this
    /// dataset until the contract is met again.
    #[serde(default)]
    pub policy: DriftPolicy,
}

/// One column of a contract.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnSpec {
    /// Column name, compared case-sensitively.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,

    /// Column type as the warehouse names it, for example "bigint" or "timestamp"; compared
    /// case-insensitively.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 64))]
    pub type_: String,

    /// Whether the column may hold nulls. A column reported nullable that the contract declares
    /// non-nullable is a violation. Defaults to true.
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

/// Reaction to a contract violation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DriftPolicy {
    /// Report the violation as a condition and an Event.
    #[default]
    Warn,
    /// Report it and hold pipelines triggered by this dataset.
    Block,
}

/// Observed state of a Dataset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Fresh, SchemaConformant and ReportValid conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// End of the newest partition known complete. Only moves forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Time>,

    /// When the watermark last advanced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,

    /// The run that produced the current watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<ProducedBy>,

    /// Rows the producing step reported writing, if it reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<i64>,

    /// Freshness against the objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessStatus>,

    /// Schema reported by the most recently finished producing run that reported one
    /// (`schemaReportedBy`), whether or not that run moved the watermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_schema: Vec<ColumnSpec>,

    /// The run whose report gave `observedSchema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_reported_by: Option<CheckedRun>,

    /// The most recently finished producing run whose report has been checked (validity,
    /// watermark bounds, contract). Every run that finishes after it is checked once, also a
    /// re-run or backfill of an old window; runs that finished before it are not checked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_run: Option<CheckedRun>,

    /// Pipelines that produce this dataset (a step lists it in `outputs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<String>,

    /// Pipelines that read this dataset (a step lists it in `inputs`, or `trigger.datasets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,

    /// What producing this dataset reserved: the cost of the producing steps in the finished
    /// runs each producing Pipeline keeps in `status.recentRuns`, summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::CostSummary>,
}

/// The run that produced a watermark.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducedBy {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run: String,
    /// Step name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The partition window of that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<super::PartitionWindow>,
}

/// A producing run whose report was checked. Runs are ordered by `finished`, then pipeline, run
/// id and step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckedRun {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run: String,
    /// Step name.
    pub step: String,
    /// The partition window of that run.
    pub window: super::PartitionWindow,
    /// When the step's Job finished.
    pub finished: Time,
}

/// Freshness of a dataset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreshnessStatus {
    /// Fresh, Warning (past warnAfter), Stale (past maxAge) or Unknown (never produced).
    pub state: FreshnessState,
    /// When the dataset turns (or turned) Warning at the current watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<Time>,
    /// When the dataset turns (or turned) Stale at the current watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_at: Option<Time>,
}

/// Freshness state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FreshnessState {
    /// Within the objective.
    Fresh,
    /// Past warnAfter, not yet past maxAge.
    Warning,
    /// Past maxAge.
    Stale,
    /// Never produced, or no objective.
    Unknown,
}
