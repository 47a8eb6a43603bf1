//! Waiting for conditions, with a timeout and a useful failure message: the one place the e2e
//! tests poll. [`until`] waits on one object; [`poll`] on anything a probe can read and panics on
//! timeout; [`settle`] returns the last value either way, for callers that assert on it.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use serde::de::DeserializeOwned;

/// How often the helpers poll unless told otherwise.
pub const EVERY: Duration = Duration::from_millis(100);

/// The end of a wait: polling loops that keep state of their own between reads tick on one.
pub struct Deadline {
    at: tokio::time::Instant,
    every: Duration,
}

impl Deadline {
    /// `timeout` from now, polling every `every`.
    pub fn after(timeout: Duration, every: Duration) -> Self {
        Self { at: tokio::time::Instant::now() + timeout, every }
    }

    /// Sleeps one interval and returns true, or returns false when the deadline has passed.
    pub async fn tick(&self) -> bool {
        if tokio::time::Instant::now() >= self.at {
            return false;
        }
        tokio::time::sleep(self.every).await;
        true
    }
}

/// Calls `probe` every `every` until it returns `Some`, for at most `timeout`; `None` on timeout.
/// The probe runs at least once, also with a zero timeout.
pub async fn poll_every<T, F, Fut>(timeout: Duration, every: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Deadline::after(timeout, every);
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if !deadline.tick().await {
            return None;
        }
    }
}

/// Calls `probe` every [`EVERY`] until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_every(timeout, EVERY, probe).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Reads `probe` every `every` until `done` holds for its value or `timeout` passed, and returns
/// the last value read: the caller asserts on it, with its own message.
pub async fn settle<T, F, Fut>(timeout: Duration, every: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Deadline::after(timeout, every);
    loop {
        let value = probe().await;
        if done(&value) || !deadline.tick().await {
            return value;
        }
    }
}

/// Waits until `check` holds for the object `name`, or panics after `timeout` with the object as
/// last seen. Polls with GET every 100 ms rather than watching: a watch can end with "resource
/// version too old" under churn, a GET cannot.
pub async fn until<K, F>(api: &Api<K>, name: &str, timeout: Duration, what: &str, check: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: Fn(&K) -> bool,
{
    let deadline = Deadline::after(timeout, EVERY);
    let (mut last, mut last_error) = (None, None);
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) if check(&obj) => return obj,
            Ok(obj) => last = obj,
            Err(e) => last_error = Some(e.to_string()),
        }
        if !deadline.tick().await {
            panic!(
                "timed out after {timeout:?} waiting for {name} to be {what} (last error: {last_error:?}); last seen: {last:#?}"
            );
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

/// Every `events.k8s.io` Event in `namespace` (tests filter them by object, type or reason).
pub async fn events(client: &kube::Client, namespace: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default())
        .await
        .expect("events")
        .items
}
