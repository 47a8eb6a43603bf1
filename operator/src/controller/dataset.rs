//! Dataset reconciler: observe, decide, act.

use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;

use super::context::Context;
use super::ready;
use crate::api::Dataset;
use crate::error::Result;
use crate::validation;

pub async fn reconcile(obj: Arc<Dataset>, ctx: Arc<Context>) -> Result<Action> {
    ready::measured(obj, ctx, async |dataset: &Dataset, ctx: &Context| {
        let problems = validation::dataset(&dataset.spec);
        ready::apply(dataset, ctx, &problems, Timestamp::now()).await
    })
    .await
}
