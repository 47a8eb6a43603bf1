//! Waiting for conditions, with a timeout and a useful failure message.

use std::fmt::Debug;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use serde::de::DeserializeOwned;

/// Waits until `check` holds for the object `name`, or panics after `timeout` with the object as
/// last seen.
pub async fn until<K, F>(api: &Api<K>, name: &str, timeout: Duration, what: &str, check: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> bool + Send + 'static,
{
    let check = std::sync::Arc::new(check);
    let c = check.clone();
    let result = tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, move |obj: Option<&K>| obj.is_some_and(|o| c(o))),
    )
    .await;
    match result {
        Ok(Ok(Some(obj))) => obj,
        other => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("timed out after {timeout:?} waiting for {name} to be {what} ({other:?}); last seen: {last:#?}");
        }
    }
}

/// The status of condition `type_` in a JSON object's `status.conditions`, with its reason.
pub fn condition(obj: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
            c["message"].as_str().unwrap_or_default().to_string(),
        )
    })
}
