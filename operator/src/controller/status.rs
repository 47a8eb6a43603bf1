//! Status writes: one server-side apply patch of the status subresource, skipped when the status
//! is unchanged.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// Patches `status` of `obj` when it differs from `current`. Returns whether it wrote.
pub async fn write_if_changed<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, desired: &S) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(false);
    }
    let status = serde_json::to_value(desired).map_err(|source| Error::Serialize { what: "status", source })?;
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(true)
}
