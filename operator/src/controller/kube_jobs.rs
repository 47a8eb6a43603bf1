//! Job creation and deletion on the real API server, as both act layers want them: a name
//! conflict reads the Job that holds the name; deleting a Job that is gone is not an error.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::act::Created;
use crate::error::Result;

/// Creates `job` in `namespace`; on `AlreadyExists`, reads the Job that holds the name.
pub async fn create(client: &Client, namespace: &str, job: &Job) -> Result<Created> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(Created::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Created::Exists(api.get_opt(&job.name_any()).await?.map(Box::new)))
        }
        Err(kube::Error::Api(status)) => Ok(Created::Rejected(status.message)),
        Err(error) => Err(error.into()),
    }
}

/// Deletes a Job with background propagation (its pods go too); one already gone is fine.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}
