//! Kueue (`kueue.x-k8s.io`): which LocalQueue and WorkloadPriorityClass a Pipeline's or
//! Backfill's Jobs go to, and what that changes on the Jobs. Pure.
//!
//! A step Job with a queue is created with `spec.suspend: true` and the labels Kueue's Job
//! integration reads (`kueue.x-k8s.io/queue-name`, `kueue.x-k8s.io/priority-class`). Kueue
//! makes a Workload of it, admits it when its ClusterQueue has quota (higher priorities first)
//! and unsuspends it. Until then the Job is `Queued` (`controller::job_cache::job_state`): it
//! holds its run's or partition's place (concurrency, parallelism) but no pod and no quota.
//! Sluice sets `suspend` itself, so Kueue's mutating webhook is not needed for it. Names and
//! every exactly-once rule are unchanged: a queued Job is a launched Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;

/// The label that names a Job's LocalQueue, on the Job (what Kueue reads) and on a Pipeline
/// or Backfill (an alternative to `spec.queueName`).
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The label that names a Job's WorkloadPriorityClass, likewise.
pub const PRIORITY_LABEL: &str = "kueue.x-k8s.io/priority-class";

/// Where a step's Jobs are queued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// The LocalQueue, in the Job's namespace.
    pub name: String,
    /// The WorkloadPriorityClass, if any.
    pub priority_class: Option<String>,
}

/// What an object (a Pipeline or a Backfill) says about its queue: its spec fields and labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked<'a> {
    pub queue_name: Option<&'a str>,
    pub priority_class: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Asked<'a> {
    fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.and_then(|l| l.get(key)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The queue name: the spec field, else the label.
    pub fn queue_name(&self) -> Option<&'a str> {
        self.queue_name.or_else(|| self.label(QUEUE_LABEL))
    }

    /// The priority class: the spec field, else the label.
    pub fn priority_class(&self) -> Option<&'a str> {
        self.priority_class.or_else(|| self.label(PRIORITY_LABEL))
    }
}

impl<'a> Asked<'a> {
    /// What `pipeline` asks.
    pub fn pipeline(pipeline: &'a crate::api::Pipeline) -> Self {
        Asked {
            queue_name: pipeline.spec.queue_name.as_deref(),
            priority_class: pipeline.spec.workload_priority_class.as_deref(),
            labels: pipeline.metadata.labels.as_ref(),
        }
    }

    /// What `backfill` asks.
    pub fn backfill(backfill: &'a crate::api::Backfill) -> Self {
        Asked {
            queue_name: backfill.spec.queue_name.as_deref(),
            priority_class: backfill.spec.workload_priority_class.as_deref(),
            labels: backfill.metadata.labels.as_ref(),
        }
    }
}

/// The queue of a Pipeline's Jobs.
pub fn pipeline_queue(pipeline: Asked<'_>) -> Option<Queue> {
    Some(Queue {
        name: pipeline.queue_name()?.to_string(),
        priority_class: pipeline.priority_class().map(str::to_string),
    })
}

/// The queue of a Backfill's Jobs: its own queue, else the Pipeline's; the priority class only
/// its own (a backfill never takes its scheduled runs' priority).
pub fn backfill_queue(backfill: Asked<'_>, pipeline: Option<Asked<'_>>) -> Option<Queue> {
    let name = backfill.queue_name().or_else(|| pipeline.and_then(|p| p.queue_name()))?;
    Some(Queue { name: name.to_string(), priority_class: backfill.priority_class().map(str::to_string) })
}

/// Problems with what an object asks of Kueue, naming the field or label: label values that
/// are not DNS labels (the spec fields are checked at apply), and a priority class without a
/// queue (`queue` is the resolved one).
pub fn problems(asked: Asked<'_>, queue: Option<&Queue>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, field) in [(QUEUE_LABEL, asked.queue_name), (PRIORITY_LABEL, asked.priority_class)] {
        if field.is_some() {
            continue;
        }
        if let Some(value) = asked.label(key)
            && !is_dns_label(value)
        {
            problems.push(format!(
                "metadata.labels[{key}]: {value:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
            ));
        }
    }
    if queue.is_none() && asked.priority_class().is_some() {
        problems.push(format!(
            "spec.workloadPriorityClass (or the label {PRIORITY_LABEL}) needs a queue: set spec.queueName or the label {QUEUE_LABEL}"
        ));
    }
    problems
}

/// Whether `value` is a DNS label: 1 to 63 lowercase letters, digits and '-', starting and
/// ending with a letter or digit.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(ok)
        && bytes.last().is_some_and(ok)
        && bytes.iter().all(|b| ok(b) || *b == b'-')
}

/// Queues `job` in `queue`: suspended, with Kueue's labels.
pub fn enqueue(job: &mut Job, queue: &Queue) {
    let labels = job.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(QUEUE_LABEL.to_string(), queue.name.clone());
    if let Some(priority) = &queue.priority_class {
        labels.insert(PRIORITY_LABEL.to_string(), priority.clone());
    }
    job.spec.get_or_insert_with(Default::default).suspend = Some(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_spec_field_wins_over_the_label() {
        let l = labels(&[(QUEUE_LABEL, "from-label"), (PRIORITY_LABEL, "low")]);
        let asked = Asked { queue_name: Some("from-spec"), priority_class: None, labels: Some(&l) };
        let q = pipeline_queue(asked).unwrap();
        assert_eq!(q, Queue { name: "from-spec".into(), priority_class: Some("low".into()) });
        let asked = Asked { labels: Some(&l), ..Default::default() };
        assert_eq!(pipeline_queue(asked).unwrap().name, "from-label");
        assert_eq!(pipeline_queue(Asked::default()), None);
        let empty = labels(&[(QUEUE_LABEL, "")]);
        assert_eq!(pipeline_queue(Asked { labels: Some(&empty), ..Default::default() }), None);
    }

    #[test]
    fn a_backfill_takes_the_pipelines_queue_but_never_its_priority() {
        let pipeline = Asked { queue_name: Some("etl"), priority_class: Some("high"), labels: None };
        let q = backfill_queue(Asked::default(), Some(pipeline)).unwrap();
        assert_eq!(q, Queue { name: "etl".into(), priority_class: None });
        let own = Asked { queue_name: Some("backfills"), priority_class: Some("low"), labels: None };
        let q = backfill_queue(own, Some(pipeline)).unwrap();
        assert_eq!(q, Queue { name: "backfills".into(), priority_class: Some("low".into()) });
        assert_eq!(backfill_queue(Asked::default(), Some(Asked::default())), None);
        assert_eq!(backfill_queue(Asked::default(), None), None);
    }

    #[test]
    fn bad_labels_and_a_priority_without_queue_are_problems_naming_them() {
        let l = labels(&[(QUEUE_LABEL, "Team_A")]);
        let asked = Asked { labels: Some(&l), ..Default::default() };
        let p = problems(asked, pipeline_queue(asked).as_ref());
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("metadata.labels[kueue.x-k8s.io/queue-name]: \"Team_A\" is not a DNS label"), "{p:?}");
        let asked = Asked { priority_class: Some("high"), ..Default::default() };
        let p = problems(asked, None);
        assert!(p[0].starts_with("spec.workloadPriorityClass"), "{p:?}");
        let asked = Asked { queue_name: Some("etl"), priority_class: Some("high"), labels: None };
        assert!(problems(asked, pipeline_queue(asked).as_ref()).is_empty());
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "etl-high", "q1", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn an_enqueued_job_is_suspended_with_kueues_labels() {
        let mut job = Job::default();
        enqueue(&mut job, &Queue { name: "etl".into(), priority_class: Some("high".into()) });
        assert_eq!(job.spec.as_ref().unwrap().suspend, Some(true));
        let l = job.metadata.labels.as_ref().unwrap();
        assert_eq!(l[QUEUE_LABEL], "etl");
        assert_eq!(l[PRIORITY_LABEL], "high");
        let mut job = Job::default();
        enqueue(&mut job, &Queue { name: "etl".into(), priority_class: None });
        assert!(!job.metadata.labels.as_ref().unwrap().contains_key(PRIORITY_LABEL));
    }
}
