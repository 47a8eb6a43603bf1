//! A fresh namespace per test, removed afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// A namespace created for one test.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates `sluice-e2e-<prefix>-<unique>` labelled `sluice.dev/e2e=true`.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{:x}{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst) + (jiff::Timestamp::now().as_millisecond() % 4096) as u32
        );
        let name = format!("sluice-e2e-{prefix}-{unique}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"sluice.dev/e2e": "true"}}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { client: client.clone(), name }
    }

    /// Server-side applies `doc` in this namespace, or panics naming it and the API's answer.
    pub async fn apply(&self, doc: &serde_json::Value) -> kube::api::DynamicObject {
        crate::yaml::apply(&self.client, &self.name, doc)
            .await
            .unwrap_or_else(|e| panic!("applying {} {} in {}: {e}", doc["kind"], doc["metadata"]["name"], self.name))
    }

    /// Starts deleting the namespace (the namespace controller finishes it).
    pub async fn delete(&self) {
        let _ = Api::<Namespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::background()).await;
    }
}

/// Runs `test` in a fresh namespace and deletes the namespace afterwards, also when the test
/// panics (the panic is then resumed). Set SLUICE_E2E_KEEP_NAMESPACES=1 to keep them.
pub async fn with_namespace<F, Fut>(client: &Client, prefix: &str, test: F)
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = ()>,
{
    let ns = TestNamespace::create(client, prefix).await;
    let handle = TestNamespace { client: client.clone(), name: ns.name.clone() };
    let result = std::panic::AssertUnwindSafe(test(ns)).catch_unwind().await;
    if std::env::var("SLUICE_E2E_KEEP_NAMESPACES").as_deref() != Ok("1") {
        handle.delete().await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
