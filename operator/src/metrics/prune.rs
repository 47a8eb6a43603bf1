//! Series of deleted objects leave `/metrics`: at scrape time every series labelled with a
//! Pipeline, a Backfill or a ResourceQuota that is no longer in the watch caches is removed (a
//! deleted object has no reconcile left to clean up after it).

use std::collections::{HashMap, HashSet};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

/// Objects by namespace and name.
pub type Keys = HashSet<(String, String)>;

/// The objects alive in the watch caches.
#[derive(Default)]
pub struct LiveObjects {
    pub pipelines: Keys,
    pub backfills: Keys,
    /// ResourceQuotas that a live Backfill budgets against (`spec.budget.resourceQuotaRef`).
    pub quotas: Keys,
}

/// Removes the series of `vec` whose `namespace` and `label` values are no key of `live`.
pub fn retain<T: MetricVecBuilder>(vec: &MetricVec<T>, (label, live): (&str, &Keys)) {
    remove_where(vec, |labels| {
        let value = |name: &str| labels.get(name).copied().unwrap_or_default().to_string();
        !live.contains(&(value("namespace"), value(label)))
    });
}

/// Removes every series of `vec` whose labels satisfy `remove`.
pub fn remove_where<T: MetricVecBuilder>(vec: &MetricVec<T>, remove: impl Fn(&HashMap<&str, &str>) -> bool) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if remove(&labels) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounterVec, Opts};

    use super::*;

    fn keys(items: &[(&str, &str)]) -> Keys {
        items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn series(vec: &IntCounterVec) -> Vec<String> {
        let mut out: Vec<String> = vec.collect()[0]
            .get_metric()
            .iter()
            .map(|m| m.get_label().iter().map(|l| l.value()).collect::<Vec<_>>().join("/"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn removes_only_the_series_of_objects_that_are_gone() {
        let vec = IntCounterVec::new(Opts::new("t_total", "t"), &["namespace", "pipeline", "result"]).unwrap();
        for labels in [["a", "kept", "failed"], ["a", "kept", "succeeded"], ["a", "gone", "failed"], ["b", "kept", "x"]]
        {
            vec.with_label_values(&labels).inc();
        }
        retain(&vec, ("pipeline", &keys(&[("a", "kept")])));
        assert_eq!(series(&vec), ["a/kept/failed", "a/kept/succeeded"]);
        retain(&vec, ("pipeline", &Keys::new()));
        assert!(series(&vec).is_empty());
    }
}
