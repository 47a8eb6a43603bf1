//! The `sluice.dev/v1alpha1` custom resources: types only (serde, schemars, kube derive), their
//! documentation (which becomes `kubectl explain`) and their apply-time validation rules.

// kube's derive takes one `printcolumn(...)` attribute per column, which clippy reads as repeats.
#![allow(clippy::duplicated_attributes)]

mod backfill;
mod backfill_plan;
pub mod conditions;
mod cost;
mod dataset;
mod pipeline;
mod schema;

pub use backfill::*;
pub use backfill_plan::*;
pub use cost::*;
pub use dataset::*;
pub use pipeline::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Sluice kind.
pub const GROUP: &str = "sluice.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The category that `kubectl get sluice` lists.
pub const CATEGORY: &str = "sluice";

/// An object name (a DNS subdomain): the pattern that references to Sluice objects, Datasets
/// and ResourceQuotas are checked against at apply, so that a reference in another form (such
/// as `namespace/name`, which would cross namespaces) is refused naming the field.
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A DNS label (at most 63 characters, checked by `length`): the form of a Kueue LocalQueue or
/// WorkloadPriorityClass name that Sluice copies into a Job label, refused at apply otherwise.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A reference to an object by name in the same namespace. References never cross namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referenced object, in the namespace of the referring object (a name, never
    /// `namespace/name`; there is no namespace field).
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// Every Sluice CRD, in a stable order (Pipeline, Dataset, Backfill).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Pipeline::crd(), Dataset::crd(), Backfill::crd()]
}

/// One CRD as YAML, exactly as committed under `crds/<name>.yaml`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}

/// The CRDs as one multi-document YAML stream (what `sluice-operator crd` prints).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    crds().iter().map(crd_yaml).collect()
}

/// The file name of a CRD under `crds/`, for example `pipelines.sluice.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}
