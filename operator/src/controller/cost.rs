//! Reading what cost accounting needs from the caches: the usage of a Pipeline's finished Jobs
//! (their pods' effective requests with the namespace's LimitRange defaults, and run time) and
//! the operator's prices. The arithmetic is in [`crate::cost`].

use kube::ResourceExt;

use super::context::Context;
use crate::cost::{CostInputs, job_usage};

/// The cost inputs of the Pipeline with `owner_uid` in `namespace`.
pub fn inputs(ctx: &Context, namespace: &str, owner_uid: &str) -> CostInputs {
    let defaults = super::backfill::container_defaults(ctx, namespace);
    let usage = ctx
        .job_index
        .owned(&ctx.jobs, owner_uid)
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace))
        .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner_uid))
        .filter_map(|j| job_usage(j, &defaults).map(|u| (j.name_any(), u)))
        .collect();
    CostInputs { usage, prices: ctx.prices.get().cloned().flatten() }
}
