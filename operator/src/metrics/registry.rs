//! The operator's metric registry: prometheus's, plus what was registered in it (each family's
//! name, type, labels and help), known before any series exists. A vector with no series yet is
//! left out of the exposition, so `/metrics` alone cannot tell dashboards what the operator
//! defines; `sluice-operator metrics` prints [`Registry::families`].

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};

/// A metric family as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: &'static str,
    /// The label names of its series.
    pub labels: Vec<String>,
    pub help: String,
}

impl Family {
    /// One line: name, type, comma-separated labels and help, tab-separated.
    pub fn line(&self) -> String {
        format!("{}\t{}\t{}\t{}", self.name, self.kind, self.labels.join(","), self.help)
    }
}

/// A prometheus registry that remembers the families registered in it.
#[derive(Clone, Default)]
pub struct Registry {
    inner: prometheus::Registry,
    families: Arc<Mutex<Vec<Family>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `collector` (an error, and nothing remembered, when a name is taken).
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        let described = describe(collector.as_ref());
        self.inner.register(collector)?;
        self.families.lock().expect("families lock").extend(described);
        Ok(())
    }

    /// The series to expose (families without series are left out).
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.inner.gather()
    }

    /// Every family registered, by name.
    pub fn families(&self) -> Vec<Family> {
        let mut all = self.families.lock().expect("families lock").clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// The families of a collector: names, help and labels from its descriptors, types from what it
/// collects (a vector with no series still reports its type).
fn describe(collector: &dyn Collector) -> Vec<Family> {
    let collected = collector.collect();
    collector
        .desc()
        .into_iter()
        .map(|desc| {
            let kind =
                collected.iter().find(|f| f.name() == desc.fq_name).map_or("untyped", |f| kind(f.get_field_type()));
            let mut labels: Vec<String> = desc.const_label_pairs.iter().map(|l| l.name().to_string()).collect();
            labels.extend(desc.variable_labels.iter().cloned());
            Family { name: desc.fq_name.clone(), kind, labels, help: desc.help.clone() }
        })
        .collect()
}

fn kind(t: MetricType) -> &'static str {
    match t {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

    use super::*;

    #[test]
    fn families_are_listed_with_type_and_labels_before_any_series_exists() {
        let registry = Registry::new();
        let runs = IntCounterVec::new(Opts::new("x_runs_total", "Runs."), &["namespace", "result"]).unwrap();
        let lag = HistogramVec::new(HistogramOpts::new("x_lag_seconds", "Lag."), &["pipeline"]).unwrap();
        let leader = IntGauge::new("x_leader", "Leader.").unwrap();
        registry.register(Box::new(runs.clone())).unwrap();
        registry.register(Box::new(lag)).unwrap();
        registry.register(Box::new(leader)).unwrap();
        assert!(registry.register(Box::new(runs)).is_err(), "a taken name is refused");
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(!text.contains("x_runs_total"), "no series yet, so not exposed:\n{text}");
        let lines: Vec<String> = registry.families().iter().map(Family::line).collect();
        assert_eq!(
            lines,
            [
                "x_lag_seconds\thistogram\tpipeline\tLag.",
                "x_leader\tgauge\t\tLeader.",
                "x_runs_total\tcounter\tnamespace,result\tRuns."
            ]
        );
    }
}
