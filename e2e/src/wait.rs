//! Waiting for conditions, with a timeout and a useful failure message.

use std::fmt::Debug;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use serde::de::DeserializeOwned;

/// Waits until `check` holds for the object `name`, or panics after `timeout` with the object as
/// last seen. Polls with GET every 100 ms rather than watching: a watch can end with "resource
/// version too old" under churn, a GET cannot.
pub async fn until<K, F>(api: &Api<K>, name: &str, timeout: Duration, what: &str, check: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> bool + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<K> = None;
    let mut last_error = None;
    while tokio::time::Instant::now() < deadline {
        match api.get_opt(name).await {
            Ok(Some(obj)) => {
                if check(&obj) {
                    return obj;
                }
                last = Some(obj);
            }
            Ok(None) => last = None,
            Err(e) => last_error = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out after {timeout:?} waiting for {name} to be {what} (last error: {last_error:?}); last seen: {last:#?}"
    );
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

/// Every `events.k8s.io` Event in `namespace` (tests filter them by object, type or reason).
pub async fn events(client: &kube::Client, namespace: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default())
        .await
        .expect("events")
        .items
}
