//! The step every reconciler shares for now: write observedGeneration and the Ready condition
//! from the validation problems, and publish an Event when Ready changes.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::object::{ConditionedStatus, SluiceObject};
use super::status::write_if_changed;
use crate::api::conditions::{self, types};
use crate::error::{Error, Result};
use crate::plan::ready::{ready_condition, ready_event};

/// Applies the decision for `problems` to `obj`: status once, only when it changed; an Event when
/// Ready flips or its problems change. Invalid objects wait for a change of themselves or of what
/// they reference (both are watched).
pub async fn apply<K: SluiceObject>(obj: &K, ctx: &Context, problems: &[String], now: Timestamp) -> Result<Action> {
    let namespace = obj.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let current = obj.status();
    let desired_ready = ready_condition(problems);
    let previous_ready = current.and_then(|s| conditions::find(s.conditions(), types::READY));
    let event = ready_event(previous_ready, &desired_ready);

    let mut desired = current.cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    desired.set_observed_generation(generation);
    desired.set_conditions(conditions::merge(
        current.map(|s| s.conditions()).unwrap_or_default(),
        &[desired_ready],
        generation,
        &Time(now),
    ));

    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    if write_if_changed(&api, obj, current, &desired).await? {
        ctx.metrics.status_writes.with_label_values(&[K::CONTROLLER]).inc();
    }
    if let Some(event) = event {
        let type_ = if event.warning { EventType::Warning } else { EventType::Normal };
        ctx.event(obj, type_, event.reason, event.note, "Validate").await;
    }
    Ok(Action::await_change())
}

/// Runs `reconcile`, recording metrics and resetting the object's backoff on success.
pub async fn measured<K, F>(obj: Arc<K>, ctx: Arc<Context>, reconcile: F) -> Result<Action>
where
    K: SluiceObject,
    F: AsyncFnOnce(&K, &Context) -> Result<Action>,
{
    if !ctx.caches_synced.get() {
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    let timer = ctx.metrics.reconcile_duration.with_label_values(&[K::CONTROLLER]).start_timer();
    let result = reconcile(&obj, &ctx).await;
    timer.observe_duration();
    let key = object_key(&*obj);
    match &result {
        Ok(_) => {
            ctx.reset_backoff(&key);
            ctx.metrics.reconciles.with_label_values(&[K::CONTROLLER, "success"]).inc();
        }
        Err(error) => {
            ctx.metrics.reconciles.with_label_values(&[K::CONTROLLER, "error"]).inc();
            ctx.metrics.reconcile_errors.with_label_values(&[K::CONTROLLER, error.category()]).inc();
        }
    }
    result
}

/// Error policy shared by the controllers: per-object exponential backoff.
pub fn error_policy<K: SluiceObject>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&object_key(&*obj));
    tracing::warn!(controller = K::CONTROLLER, object = %object_key(&*obj), %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn object_key<K: SluiceObject>(obj: &K) -> String {
    format!("{}/{}/{}", K::CONTROLLER, obj.namespace().unwrap_or_default(), obj.name_any())
}
