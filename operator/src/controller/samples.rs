//! The dataset gauges' inputs (freshness, contract), read from a Dataset in the watch cache at
//! scrape time.

use kube::ResourceExt;

use crate::api::conditions::{self, types};
use crate::api::{Dataset, DriftPolicy};
use crate::metrics::{ContractSample, DatasetSample};

/// What the metrics show of `dataset`.
pub fn dataset(dataset: &Dataset) -> DatasetSample {
    let status = dataset.status.as_ref();
    DatasetSample {
        namespace: dataset.namespace().unwrap_or_default(),
        name: dataset.name_any(),
        watermark: status.and_then(|s| s.watermark.as_ref()).map(|w| w.0.as_millisecond() as f64 / 1000.0),
        max_age: crate::plan::dataset::objective(&dataset.spec).map(|o| o.max_age.as_secs_f64()),
        contract: contract(dataset),
    }
}

/// The contract's state once its `SchemaConformant` condition is True or False (not while no
/// schema has been reported).
fn contract(dataset: &Dataset) -> Option<ContractSample> {
    let contract = dataset.spec.contract.as_ref()?;
    let status = dataset.status.as_ref()?;
    let condition = conditions::find(&status.conditions, types::SCHEMA_CONFORMANT)?;
    let violated = match condition.status.as_str() {
        "True" => false,
        "False" => true,
        _ => return None,
    };
    let policy = match contract.policy {
        DriftPolicy::Warn => "Warn",
        DriftPolicy::Block => "Block",
    };
    Some(ContractSample { violated, policy })
}
