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
        owner: dataset.spec.owner.clone(),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dataset(contract: serde_json::Value, conformant: Option<&str>) -> Dataset {
        let conditions: Vec<serde_json::Value> = conformant
            .map(|status| {
                json!({"type": "SchemaConformant", "status": status, "reason": "R", "message": "m",
                       "lastTransitionTime": "2026-11-24T10:00:00Z"})
            })
            .into_iter()
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "orders", "namespace": "team-a"},
            "spec": {"owner": "team-a", "layer": "Raw", "contract": contract},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn the_contract_sample_follows_schema_conformant_and_names_the_policy() {
        let columns = json!([{"name": "id", "type": "bigint"}]);
        let block = json!({"columns": columns, "policy": "Block"});
        let violated = contract(&dataset(block.clone(), Some("False"))).unwrap();
        assert!(violated.violated);
        assert_eq!(violated.policy, "Block");
        let met = contract(&dataset(json!({"columns": columns}), Some("True"))).unwrap();
        assert!(!met.violated);
        assert_eq!(met.policy, "Warn", "the default policy");
        assert!(contract(&dataset(block.clone(), Some("Unknown"))).is_none(), "no schema reported yet");
        assert!(contract(&dataset(block, None)).is_none());
        assert!(contract(&dataset(serde_json::Value::Null, Some("False"))).is_none(), "no contract");
    }
}
