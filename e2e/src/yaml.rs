//! Applying YAML documents the way `kubectl apply --server-side` does.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client, Discovery};

/// Parses a multi-document YAML stream into JSON values (empty documents skipped).
pub fn documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).expect("valid YAML");
            (!value.is_null()).then(|| serde_json::to_value(value).expect("YAML maps to JSON"))
        })
        .collect()
}

/// Finds the API resource of a document's apiVersion and kind.
pub async fn resource_for(client: &Client, doc: &serde_json::Value) -> (ApiResource, ApiCapabilities) {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let kind = doc["kind"].as_str().expect("kind");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let discovery = Discovery::new(client.clone()).filter(&[group]).run().await.expect("discovery");
    discovery.resolve_gvk(&gvk).unwrap_or_else(|| panic!("unknown kind {api_version}/{kind}"))
}

/// Server-side applies one document into `namespace` (for namespaced kinds). Returns the API
/// error for the caller to inspect instead of panicking.
pub async fn apply(client: &Client, namespace: &str, doc: &serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let (resource, caps) = resource_for(client, doc).await;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = doc["metadata"]["name"].as_str().expect("metadata.name");
    api.patch(name, &PatchParams::apply("sluice-e2e").force(), &Patch::Apply(doc)).await
}

/// Applies every document of `text`, panicking on the first error.
pub async fn apply_all(client: &Client, namespace: &str, text: &str) {
    for doc in documents(text) {
        if let Err(e) = apply(client, namespace, &doc).await {
            panic!("applying {} {}: {e}", doc["kind"], doc["metadata"]["name"]);
        }
    }
}

/// The API of a Sluice kind (`Pipeline`, `Dataset`, `Backfill`) in `namespace`, as dynamic
/// objects, so tests read exactly what the API server returns.
pub fn sluice_api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "sluice.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sluice.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}
