//! Backfill reconciler: observe (the backfill, its pipeline and quota), decide, act.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;
use super::ready;
use crate::api::Backfill;
use crate::error::Result;
use crate::validation;

pub async fn reconcile(obj: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |backfill: &Backfill, ctx: &Context| {
        let namespace = backfill.namespace().unwrap_or_default();
        let pipeline = ctx.pipelines.get(&ObjectRef::new(&backfill.spec.pipeline_ref.name).within(&namespace));
        let problems =
            validation::backfill(&backfill.spec, pipeline.as_ref().map(|p| &p.spec), &ctx.namespace(&namespace));
        ready::apply(backfill, ctx, &problems, Timestamp::now()).await
    })
    .await
}
