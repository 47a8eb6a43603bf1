//! Which objects a change to another object wakes: the watch mappers of the controllers, as
//! pure functions of the changed object's namespace and name and the cached objects, so that
//! they can be tested without a cluster.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::guard::{self, Key};
use super::pipeline::{referenced_datasets, runs_as};
use crate::api::{Backfill, Pipeline};

/// The Pipelines of `namespace` with a step that runs as ServiceAccount `account`.
pub fn pipelines_running_as<'a>(
    pipelines: impl IntoIterator<Item = &'a Pipeline>,
    namespace: &Option<String>,
    account: &str,
) -> Vec<Key<Pipeline>> {
    pipelines.into_iter().filter(|p| &p.namespace() == namespace && runs_as(p, account)).map(guard::key_of).collect()
}

/// The Pipelines of `namespace` that name Dataset `dataset` (input, output or trigger).
pub fn pipelines_naming<'a>(
    pipelines: impl IntoIterator<Item = &'a Pipeline>,
    namespace: &Option<String>,
    dataset: &str,
) -> Vec<Key<Pipeline>> {
    pipelines
        .into_iter()
        .filter(|p| &p.namespace() == namespace && referenced_datasets(p).any(|d| d == dataset))
        .map(guard::key_of)
        .collect()
}

/// The Datasets a Pipeline names, once each.
pub fn datasets_named_by(pipeline: &Pipeline) -> Vec<Key<crate::api::Dataset>> {
    let namespace = pipeline.namespace().unwrap_or_default();
    referenced_datasets(pipeline).collect::<BTreeSet<_>>().into_iter().map(|d| guard::key(d, &namespace)).collect()
}

/// The Backfills of `namespace` that backfill Pipeline `pipeline`.
pub fn backfills_of_pipeline<'a>(
    backfills: impl IntoIterator<Item = &'a Backfill>,
    namespace: &Option<String>,
    pipeline: &str,
) -> Vec<Key<Backfill>> {
    backfills
        .into_iter()
        .filter(|b| &b.namespace() == namespace && b.spec.pipeline_ref.name == pipeline)
        .map(guard::key_of)
        .collect()
}

/// The Backfills of `namespace` whose budget names ResourceQuota `quota`.
pub fn backfills_of_quota<'a>(
    backfills: impl IntoIterator<Item = &'a Backfill>,
    namespace: &Option<String>,
    quota: &str,
) -> Vec<Key<Backfill>> {
    let names = |b: &Backfill| {
        b.spec.budget.as_ref().and_then(|x| x.resource_quota_ref.as_ref()).is_some_and(|r| r.name == quota)
    };
    backfills.into_iter().filter(|b| &b.namespace() == namespace && names(b)).map(guard::key_of).collect()
}

/// The Backfills of `namespace` that protect Dataset `dataset` (`spec.pauseWhen.datasetsStale`).
pub fn backfills_protecting<'a>(
    backfills: impl IntoIterator<Item = &'a Backfill>,
    namespace: &Option<String>,
    dataset: &str,
) -> Vec<Key<Backfill>> {
    let protects =
        |b: &Backfill| b.spec.pause_when.as_ref().is_some_and(|p| p.datasets_stale.iter().any(|d| d == dataset));
    backfills.into_iter().filter(|b| &b.namespace() == namespace && protects(b)).map(guard::key_of).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pipeline(namespace: &str, name: &str, spec: serde_json::Value) -> Pipeline {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn step(name: &str, inputs: &[&str], outputs: &[&str], account: Option<&str>) -> serde_json::Value {
        let mut pod = json!({"containers": [{"name": "main", "image": "busybox"}]});
        if let Some(account) = account {
            pod["serviceAccountName"] = json!(account);
        }
        json!({"name": name, "kind": "Extract", "inputs": inputs, "outputs": outputs, "template": {"spec": pod}})
    }

    fn backfill(namespace: &str, name: &str, pipeline: &str, quota: Option<&str>) -> Backfill {
        let mut spec = json!({"pipelineRef": {"name": pipeline},
            "range": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}});
        if let Some(quota) = quota {
            spec["budget"] = json!({"resourceQuotaRef": {"name": quota}});
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec
        }))
        .unwrap()
    }

    fn names<K: kube::Resource<DynamicType = ()>>(keys: Vec<Key<K>>) -> Vec<String>
    where
        kube::core::DeserializeGuard<K>: kube::Resource<DynamicType = ()>,
    {
        keys.into_iter().map(|k| format!("{}/{}", k.namespace.unwrap_or_default(), k.name)).collect()
    }

    fn ns(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    #[test]
    fn an_account_wakes_the_pipelines_of_its_namespace_that_run_as_it() {
        let pipelines = [
            pipeline("a", "loads", json!({"steps": [step("x", &[], &[], Some("loader"))]})),
            pipeline("a", "other", json!({"steps": [step("x", &[], &[], Some("reader"))]})),
            pipeline("a", "default", json!({"steps": [step("x", &[], &[], None)]})),
            pipeline("b", "loads", json!({"steps": [step("x", &[], &[], Some("loader"))]})),
        ];
        assert_eq!(names(pipelines_running_as(&pipelines, &ns("a"), "loader")), ["a/loads"]);
        assert!(pipelines_running_as(&pipelines, &ns("c"), "loader").is_empty());
    }

    #[test]
    fn a_dataset_wakes_the_pipelines_that_name_it_in_any_role() {
        let pipelines = [
            pipeline("a", "reads", json!({"steps": [step("x", &["orders"], &[], None)]})),
            pipeline("a", "writes", json!({"steps": [step("x", &[], &["orders"], None)]})),
            pipeline(
                "a",
                "triggered",
                json!({"trigger": {"datasets": ["orders"]}, "steps": [step("x", &[], &[], None)]}),
            ),
            pipeline("a", "unrelated", json!({"steps": [step("x", &["users"], &[], None)]})),
            pipeline("b", "reads", json!({"steps": [step("x", &["orders"], &[], None)]})),
        ];
        assert_eq!(names(pipelines_naming(&pipelines, &ns("a"), "orders")), ["a/reads", "a/writes", "a/triggered"]);
    }

    #[test]
    fn a_pipeline_wakes_each_dataset_it_names_once() {
        let p = pipeline(
            "a",
            "p",
            json!({"trigger": {"datasets": ["raw"]},
            "steps": [step("x", &["raw"], &["curated"], None), step("y", &["curated"], &[], None)]}),
        );
        assert_eq!(names(datasets_named_by(&p)), ["a/curated", "a/raw"]);
    }

    #[test]
    fn a_pipeline_or_quota_wakes_the_backfills_that_name_it() {
        let backfills = [
            backfill("a", "one", "orders", Some("batch")),
            backfill("a", "two", "orders", None),
            backfill("a", "three", "users", Some("batch")),
            backfill("b", "four", "orders", Some("batch")),
        ];
        assert_eq!(names(backfills_of_pipeline(&backfills, &ns("a"), "orders")), ["a/one", "a/two"]);
        assert_eq!(names(backfills_of_quota(&backfills, &ns("a"), "batch")), ["a/one", "a/three"]);
        assert!(backfills_of_quota(&backfills, &ns("a"), "other").is_empty());
    }

    #[test]
    fn a_dataset_wakes_the_backfills_that_protect_it() {
        let mut backfills = [
            backfill("a", "one", "orders", None),
            backfill("a", "two", "orders", None),
            backfill("b", "three", "orders", None),
        ];
        for b in [0, 2] {
            backfills[b].spec.pause_when =
                Some(crate::api::PauseWhen { datasets_stale: vec!["curated".into(), "raw".into()] });
        }
        assert_eq!(names(backfills_protecting(&backfills, &ns("a"), "raw")), ["a/one"]);
        assert_eq!(names(backfills_protecting(&backfills, &ns("b"), "curated")), ["b/three"]);
        assert!(backfills_protecting(&backfills, &ns("a"), "other").is_empty());
    }
}
