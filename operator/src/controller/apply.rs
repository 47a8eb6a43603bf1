//! The operator's writes to the API server, as every reconciler makes them: create a Job (a
//! name conflict reads the Job that holds the name, for `act::claim` to judge by its owner),
//! delete a Job, write a status with an optional `resourceVersion` precondition.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::act::Created;
use crate::error::{Error, Result};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// Creates `job` in `namespace`; on `AlreadyExists`, reads the Job that holds the name.
pub async fn create_job(client: &Client, namespace: &str, job: &Job) -> Result<Created> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.name_any();
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(Created::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get_opt(&name).await.map_err(|source| Error::GetJob { name, source })?;
            Ok(Created::Exists(existing.map(Box::new)))
        }
        Err(kube::Error::Api(status)) => Ok(Created::Rejected(status.message)),
        Err(source) => Err(Error::CreateJob { name, source }),
    }
}

/// Deletes a Job with background propagation (its pods go too); one already gone is fine.
pub async fn delete_job(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteJob { name: name.to_string(), source }),
    }
}

/// Whether a status write is conditional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Written whatever the object's version.
    None,
    /// Written only while the object is still at the `resourceVersion` it was read with: a
    /// decision made on a status another writer has replaced since fails with a conflict
    /// instead of overwriting newer records or acting on their strength.
    ResourceVersion,
}

/// What a status write did.
#[derive(Clone, Debug)]
pub enum Patched<K> {
    /// Written: the object as it is now (its new `resourceVersion`).
    Applied(Box<K>),
    /// The object changed since it was read (only with [`Precondition::ResourceVersion`]).
    Conflict,
    /// The object is gone.
    Gone,
}

/// Writes `status` of `obj` with one server-side apply patch of the status subresource.
pub async fn write_status<K, S>(client: &Client, obj: &K, status: &S, precondition: Precondition) -> Result<Patched<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let status = serde_json::to_value(status).map_err(|source| Error::Serialize { what: "status", source })?;
    let mut patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    if precondition == Precondition::ResourceVersion {
        patch["metadata"] = serde_json::json!({"resourceVersion": obj.resource_version()});
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(&obj.name_any(), &params, &Patch::Apply(&patch)).await {
        Ok(written) => Ok(Patched::Applied(Box::new(written))),
        Err(kube::Error::Api(s)) if s.code == 409 && precondition == Precondition::ResourceVersion => {
            Ok(Patched::Conflict)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Patched::Gone),
        Err(source) => Err(status_error::<K>(obj, source)),
    }
}

/// Writes `desired` (unconditionally) when it differs from `current`. Returns whether it
/// wrote; an object gone meanwhile is an error.
pub async fn write_if_changed<K, S>(client: &Client, obj: &K, current: Option<&S>, desired: &S) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(false);
    }
    match write_status(client, obj, desired, Precondition::None).await? {
        Patched::Applied(_) => Ok(true),
        // Not returned without a precondition.
        Patched::Conflict => Ok(false),
        Patched::Gone => Err(gone(obj)),
    }
}

/// The error of a status write to an object that is gone, for writers that treat it as one.
pub fn gone<K: Resource<DynamicType = ()>>(obj: &K) -> Error {
    let status = kube::core::Status::failure(&format!("{} {} not found", K::kind(&()), obj.name_any()), "NotFound")
        .with_code(404);
    status_error::<K>(obj, kube::Error::Api(Box::new(status)))
}

fn status_error<K: Resource<DynamicType = ()>>(obj: &K, source: kube::Error) -> Error {
    Error::PatchStatus { kind: K::kind(&()).into_owned(), name: obj.name_any(), source }
}
