//! The act layer: the API calls a reconcile makes, in the order the exactly-once rules need,
//! behind small traits. The controllers implement them over the real API server; the
//! simulation test (`operator/tests/simulation`) implements them over an in-memory model with
//! lagging caches, conflicts and restarts, so both run the same sequence of calls. The real
//! calls are in `controller::apply`; what a name conflict means is decided in [`claim`].

pub mod backfill;
pub mod claim;
pub mod pipeline;

use std::future::Future;

use k8s_openapi::api::batch::v1::Job;

use crate::error::Result;

/// What a reconcile did, with what it acted on (`A`).
#[derive(Debug)]
pub enum Outcome<A> {
    /// The object is gone or being deleted.
    Gone,
    /// The object changed since the decision read it: nothing was done; decide again soon.
    Conflict,
    /// The decision was recorded and acted on.
    Acted(Box<A>),
}

/// What a status write with a `resourceVersion` precondition did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The status is now what was written.
    Applied,
    /// The object changed since it was read: nothing was written.
    Conflict,
    /// The object is gone.
    Gone,
}

/// What creating a Job did.
#[derive(Clone, Debug)]
pub enum Created {
    Created,
    /// The name is taken: the Job that holds it, read fresh from the API server (`None` if it
    /// vanished meanwhile).
    Exists(Option<Box<Job>>),
    /// Refused by the API server (invalid template, admission, quota): the message.
    Rejected(String),
}

/// Creating and deleting Jobs.
pub trait JobApi {
    /// Creates `job`; on `AlreadyExists`, reads the Job that holds the name.
    fn create_job(&self, job: &Job) -> impl Future<Output = Result<Created>> + Send;
    /// Deletes a Job with background propagation; a Job already gone is not an error.
    fn delete_job(&self, namespace: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
}
