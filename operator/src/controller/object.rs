//! What the reconcilers need to know about each kind's status, so the shared steps (conditions,
//! observedGeneration, status write) are written once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{Backfill, BackfillStatus, Dataset, DatasetStatus, Pipeline, PipelineStatus};

/// A status with conditions and an observed generation.
pub trait ConditionedStatus: Default + Clone + PartialEq + Serialize {
    fn conditions(&self) -> &[Condition];
    fn set_conditions(&mut self, conditions: Vec<Condition>);
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

/// A Sluice custom resource.
pub trait SluiceObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: ConditionedStatus;
    /// Name of the controller, for metrics and logs.
    const CONTROLLER: &'static str;
    fn status(&self) -> Option<&Self::Status>;
    /// When the object next has work due whatever happens (its next schedule time, a freshness
    /// deadline), as last recorded in status: a failed reconcile never retries later than that.
    fn next_tick(&self) -> Option<jiff::Timestamp> {
        None
    }
}

macro_rules! sluice_object {
    ($kind:ty, $status:ty, $controller:literal, $tick:expr) => {
        impl ConditionedStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn set_conditions(&mut self, conditions: Vec<Condition>) {
                self.conditions = conditions;
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }

        impl SluiceObject for $kind {
            type Status = $status;
            const CONTROLLER: &'static str = $controller;
            fn status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn next_tick(&self) -> Option<jiff::Timestamp> {
                self.status.as_ref().and_then($tick)
            }
        }
    };
}

sluice_object!(Pipeline, PipelineStatus, "pipeline", |s: &PipelineStatus| s.next_schedule_time.as_ref().map(|t| t.0));
sluice_object!(Dataset, DatasetStatus, "dataset", |s: &DatasetStatus| {
    let freshness = s.freshness.as_ref()?;
    [&freshness.warn_at, &freshness.stale_at].into_iter().flatten().map(|t| t.0).min()
});
sluice_object!(Backfill, BackfillStatus, "backfill", |_: &BackfillStatus| None);
