//! The step every reconciler shares for now: write observedGeneration and the Ready condition
//! from the validation problems, and publish an Event when Ready changes.

use std::sync::Arc;

use jiff::Timestamp;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use kube::core::error_boundary::InvalidObject;

use super::context::{Context, FailureKey};
use super::guard::Guarded;
use super::object::SluiceObject;
use crate::api::conditions::{self, types};
use crate::error::{Error, Result};
use crate::plan::ready::{PlannedEvent, ready_condition, ready_event};
use crate::plan::retry::{self, Failure};

/// Publishes a reconcile's planned Events (concurrently), then the Event for a change of the
/// `Ready` condition from `previous` (the conditions before this reconcile) to what `problems`
/// make it: a Warning when the spec becomes invalid or its problems change, Normal when it
/// becomes valid again.
pub async fn publish_events<K: SluiceObject>(
    ctx: &Context,
    obj: &K,
    events: &[PlannedEvent],
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    problems: &[String],
) {
    let kind = |warning: bool| if warning { EventType::Warning } else { EventType::Normal };
    futures::future::join_all(
        events.iter().map(|event| ctx.event(obj, kind(event.warning), event.reason, event.note.clone(), "Reconcile")),
    )
    .await;
    if let Some(event) = ready_event(conditions::find(previous, types::READY), &ready_condition(problems)) {
        ctx.event(obj, kind(event.warning), event.reason, event.note, "Validate").await;
    }
}

/// Runs `reconcile` on a valid object, recording metrics and resetting the object's backoff on
/// success. An object that did not deserialize is reported and left until it changes.
pub async fn measured<K, F>(obj: Arc<Guarded<K>>, ctx: Arc<Context>, reconcile: F) -> Result<Action>
where
    K: SluiceObject,
    F: AsyncFnOnce(&K, &Context) -> Result<Action>,
{
    if !ctx.caches_synced.get() {
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    let valid = match &obj.0 {
        Ok(valid) => valid,
        Err(invalid) => {
            report_invalid(&ctx, &*obj, invalid).await;
            return Ok(Action::await_change());
        }
    };
    let timer = ctx.metrics.reconcile_duration.with_label_values(&[K::CONTROLLER]).start_timer();
    let runtime = ctx.metrics.runtime.start(K::CONTROLLER);
    let result = reconcile(valid, &ctx).await;
    timer.observe_duration();
    ctx.metrics.runtime.finish(runtime, &result);
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

/// Logs and publishes (as a Warning Event `InvalidObject`) that an object cannot be read by the
/// current types; the `sluice_objects_invalid` gauge counts it from the cache.
async fn report_invalid<K: SluiceObject>(ctx: &Context, obj: &Guarded<K>, invalid: &InvalidObject) {
    let kind = K::kind(&());
    tracing::warn!(kind = %kind, object = %key_text(&object_key(obj)), error = %invalid.error, "skipping an object that does not deserialize");
    let note = format!(
        "Sluice cannot read this {kind}: {}. It is skipped until it is fixed (check fields written by hand or by an older version).",
        invalid.error
    );
    ctx.event(obj, EventType::Warning, "InvalidObject", note, "Read").await;
}

/// Error policy shared by the controllers: per-object backoff, short for transient errors and
/// never past the object's next tick (see [`crate::plan::retry`]); a Warning Event
/// `ReconcileFailed` naming the failed operation for a persistent failure, rate-limited (see
/// [`crate::plan::failures`]).
pub fn error_policy<K: SluiceObject>(obj: Arc<Guarded<K>>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&*obj);
    let verdict = ctx.count_failure(&key, error.is_transient());
    let failure = Failure {
        transient: error.is_transient(),
        attempt: verdict.attempt,
        jitter: jitter(),
        next_tick: obj.0.as_ref().ok().and_then(SluiceObject::next_tick),
    };
    let delay = retry::delay(failure, Timestamp::now());
    let category = error.category();
    tracing::warn!(controller = K::CONTROLLER, object = %key_text(&key), %error, category, operation = error.operation(), attempt = failure.attempt, ?delay, "reconcile failed; retrying");
    if verdict.warn {
        let note = format!("{error} (failed {} time(s) in a row; retrying in {delay:?})", verdict.attempt);
        let action = error.operation();
        tokio::spawn(async move { ctx.event(&*obj, EventType::Warning, RECONCILE_FAILED, note, action).await });
    }
    Action::requeue(delay)
}

/// Reason of the Warning Event about a persistent reconcile failure.
pub const RECONCILE_FAILED: &str = "ReconcileFailed";

/// A number in `[0, 1)` from the clock's sub-second part: enough to spread the retries of many
/// objects that failed at the same moment.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

fn object_key<K: SluiceObject>(obj: &Guarded<K>) -> FailureKey {
    (K::CONTROLLER, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// `controller/namespace/name`, for logs.
fn key_text((controller, namespace, name): &FailureKey) -> String {
    format!("{controller}/{namespace}/{name}")
}
