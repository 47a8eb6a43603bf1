//! Pipeline reconciler: observe (the pipeline and the datasets it names), decide, act.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::context::Context;
use super::ready;
use crate::api::Pipeline;
use crate::error::Result;
use crate::validation;

pub async fn reconcile(obj: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |pipeline: &Pipeline, ctx: &Context| {
        let namespace = pipeline.namespace().unwrap_or_default();
        let problems = validation::pipeline(&pipeline.spec, &ctx.namespace(&namespace));
        ready::apply(pipeline, ctx, &problems, Timestamp::now()).await
    })
    .await
}

/// Names of the Datasets a Pipeline refers to (inputs, outputs, trigger).
pub fn referenced_datasets(pipeline: &Pipeline) -> impl Iterator<Item = &str> {
    let steps = pipeline
        .spec
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter().chain(s.outputs.iter()));
    let trigger = pipeline.spec.trigger.iter().flat_map(|t| t.datasets.iter());
    steps.chain(trigger).map(String::as_str)
}
