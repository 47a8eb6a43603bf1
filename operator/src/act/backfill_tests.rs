//! The kube-free helpers of the Backfill act layer: counting Jobs once, who holds a name.

use super::*;
use crate::api::PipelineSpec;
use crate::schedule::Window;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn pipeline() -> Pipeline {
    let spec: PipelineSpec = serde_json::from_value(serde_json::json!({
        "schedule": "0 * * * *",
        "steps": [{"name": "extract", "kind": "Extract", "template": {"spec": {"containers": [
            {"name": "main", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}}]
    }))
    .unwrap();
    let mut p = Pipeline::new("orders", spec);
    p.metadata.namespace = Some("ns".into());
    p.metadata.uid = Some("pipeline-uid".into());
    p
}

fn backfill_owner(uid: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: Backfill::api_version(&()).into(),
        kind: Backfill::kind(&()).into(),
        name: "fill".into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A Job of window `h` (hour of Oct 1) that the backfill `uid` created, no pod yet.
fn backfill_job(p: &Pipeline, h: i64, uid: &str) -> (Job, Launch) {
    let start = ts("2026-10-01T00:00:00Z") + jiff::SignedDuration::from_hours(h);
    let window = Window { start, end: start + jiff::SignedDuration::from_hours(1) };
    let run_id = window.run_id();
    let job = jobs::build(&StepJob {
        namespace: "ns",
        pipeline: "orders",
        run_id: &run_id,
        window,
        step: &p.spec.steps[0],
        attempt: 0,
        backfill: Some("fill"),
        owner: backfill_owner(uid),
        queue: None,
    });
    let launch = Launch {
        owner_uid: uid.into(),
        run_id,
        step: "extract".into(),
        attempt: 0,
        window,
        demand: quota::pod_demand(p.spec.steps[0].template.spec.as_ref().unwrap(), &ContainerDefaults::default()),
        created: ts("2026-11-24T12:00:00Z"),
    };
    (job, launch)
}

/// The Jobs of namespace `ns` as Backfill `me` of `p` counts them.
fn jobs_of<'a>(
    p: &'a Pipeline,
    defaults: &'a ContainerDefaults,
    queued: bool,
    finished_pods: &'a HashSet<String>,
) -> JobsOf<'a> {
    JobsOf { namespace: "ns", uid: "me", pipeline: Some(p), defaults, queued, finished_pods }
}

#[test]
fn every_job_is_counted_once_whether_in_the_snapshot_or_in_the_ledger() {
    let p = pipeline();
    let now = ts("2026-11-24T12:00:01Z");
    let defaults = ContainerDefaults::default();
    let none = HashSet::new();
    let of = jobs_of(&p, &defaults, false, &none);
    let (seen, seen_launch) = backfill_job(&p, 0, "me");
    let (late, late_launch) = backfill_job(&p, 1, "me");
    let mut ledger = InFlight::default();
    ledger.add("ns", &seen.name_any(), seen_launch);
    ledger.add("ns", &late.name_any(), late_launch);
    // The snapshot was taken before the cache received `late` (which the cache may show by
    // the time the ledger is pruned: that must not matter).
    let snapshot = vec![Arc::new(seen.clone())];
    let observed = merge_jobs(&snapshot, &mut ledger, &of, now);
    let mut own: Vec<String> = observed.own.iter().map(|j| j.name.clone()).collect();
    own.sort();
    assert_eq!(own, [seen.name_any(), late.name_any()], "each Job in exactly one of snapshot and ledger");
    assert_eq!(observed.uncounted.len(), 2, "both pods are still to be counted by the quota");
    assert_eq!(observed.committed.len(), 2);
    assert_eq!(observed.own_pods.len(), 2);
    // The ledger keeps what the snapshot did not show, for the next decision.
    assert_eq!(ledger.in_namespace("ns").map(|(n, _)| n.to_string()).collect::<Vec<_>>(), [late.name_any()]);
}

#[test]
fn a_taken_name_is_ours_a_sluice_runs_or_squatted() {
    let p = pipeline();
    let (mine, _) = backfill_job(&p, 0, "me");
    assert_eq!(holder(&mine, "me", "orders"), Created::Yes);
    // Another backfill's, or the Pipeline's run of the window: the records will show it.
    assert_eq!(holder(&mine, "other", "orders"), Created::TakenByRun);
    let mut pipelines = mine.clone();
    pipelines.metadata.owner_references = None;
    assert_eq!(holder(&pipelines, "me", "orders"), Created::TakenByRun);
    // Not Sluice's, another pipeline's, or without what the Job cache needs: squatted.
    let mut foreign = mine.clone();
    foreign.metadata.labels = None;
    assert_eq!(holder(&foreign, "other", "orders"), Created::Squatted);
    assert_eq!(holder(&mine, "other", "payments"), Created::Squatted);
    let mut bare = mine.clone();
    bare.metadata.annotations = None;
    assert_eq!(holder(&bare, "other", "orders"), Created::Squatted);
}

/// A Job of another owner that is being deleted (a replaced Pipeline run) may still have a pod
/// writing the window: it stays among the foreign Jobs, so the window stays busy until the Job
/// is gone. Its own Jobs being deleted are left out, as before.
#[test]
fn another_owners_job_being_deleted_still_holds_its_window() {
    let p = pipeline();
    let now = ts("2026-11-24T12:00:01Z");
    let defaults = ContainerDefaults::default();
    let none = HashSet::new();
    let of = jobs_of(&p, &defaults, false, &none);
    let deleting = |mut job: Job| {
        job.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        job
    };
    let (theirs, _) = backfill_job(&p, 0, "other");
    let (mine, _) = backfill_job(&p, 1, "me");
    let snapshot = vec![Arc::new(deleting(theirs.clone())), Arc::new(deleting(mine))];
    let observed = merge_jobs(&snapshot, &mut InFlight::default(), &of, now);
    let foreign: Vec<String> = observed.foreign.iter().map(|f| f.job.name.clone()).collect();
    assert_eq!(foreign, [theirs.name_any()]);
    assert!(observed.own.is_empty(), "{:?}", observed.own);
    assert!(observed.committed.is_empty(), "pods being deleted are not charged again");
}

/// A backfill with a Kueue queue is not admitted by its ResourceQuota (Kueue's quota governs):
/// with the quota full, it still starts partitions up to its parallelism, and its Jobs are
/// built suspended with the queue's label.
#[test]
fn a_queued_backfill_skips_the_resourcequota_admission() {
    let p = pipeline();
    let full: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "compute", "namespace": "ns"},
        "spec": {"hard": {"requests.cpu": "4"}},
        "status": {"hard": {"requests.cpu": "4"}, "used": {"requests.cpu": "4"}}
    }))
    .unwrap();
    let backfill = |queue: Option<&str>| {
        let mut spec = serde_json::json!({
            "pipelineRef": {"name": "orders"},
            "range": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"},
            "parallelism": 4,
            "budget": {"resourceQuotaRef": {"name": "compute"}},
        });
        if let Some(q) = queue {
            spec["queueName"] = q.into();
        }
        let mut b = Backfill::new("fill", serde_json::from_value(spec).unwrap());
        b.metadata.namespace = Some("ns".into());
        b.metadata.uid = Some("me".into());
        b.metadata.generation = Some(1);
        b
    };
    let decide = |b: &Backfill| {
        let observed = Observed {
            pipeline: Some(Arc::new(p.clone())),
            problems: vec![],
            container_defaults: ContainerDefaults::default(),
            jobs: ObservedJobs { own: vec![], foreign: vec![], uncounted: vec![], committed: vec![], own_pods: vec![] },
            siblings: vec![],
            blocked_inputs: vec![],
            protected: vec![],
        };
        let facts = Facts {
            uid: "me",
            quota: Some(&full),
            free_job_slots: usize::MAX,
            name_conflicts: vec![],
            now: ts("2026-11-24T12:00:00Z"),
            prices: None,
        };
        decide_on(b, observed, facts)
    };
    let plain = decide(&backfill(None));
    assert!(plain.create.is_empty());
    assert_eq!(plain.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("QuotaExhausted"));
    let queued = backfill(Some("backfills"));
    let plan = decide(&queued);
    assert_eq!(plan.create.len(), 4, "parallelism, not the quota, bounds it");
    assert_eq!(plan.status.partitions.as_ref().map(|c| c.queued), Some(4));
    assert_eq!(plan.status.throttled.as_ref().map(|t| t.reason.as_str()), Some("ParallelismReached"));
    let queue = queue_of(&queued, Some(&p)).unwrap();
    assert_eq!(queue, crate::kueue::Queue { name: "backfills".into(), priority_class: None });
    let (job, _) = backfill_job(&p, 0, "me");
    let mut queued_job = job.clone();
    crate::kueue::enqueue(&mut queued_job, &queue);
    assert_eq!(job_cache::job_state(&queued_job), JobState::Queued);
    // The label on the Pipeline alone queues its backfills too.
    let mut labelled = p.clone();
    labelled.metadata.labels = Some([(crate::kueue::QUEUE_LABEL.to_string(), "etl".to_string())].into());
    assert_eq!(queue_of(&backfill(None), Some(&labelled)).map(|q| q.name), Some("etl".into()));
}

/// A Job of a queued backfill that only the ledger shows was created suspended: it counts as
/// queued, not running, until the cache shows it.
#[test]
fn a_queued_backfills_job_only_the_ledger_shows_is_queued() {
    let p = pipeline();
    let now = ts("2026-11-24T12:00:01Z");
    let defaults = ContainerDefaults::default();
    let (job, launch) = backfill_job(&p, 0, "me");
    for (queued, state) in [(true, JobState::Queued), (false, JobState::Active)] {
        let mut ledger = InFlight::default();
        ledger.add("ns", &job.name_any(), launch.clone());
        let none = HashSet::new();
        let of = jobs_of(&p, &defaults, queued, &none);
        let observed = merge_jobs(&[], &mut ledger, &of, now);
        assert_eq!(observed.own.iter().map(|j| j.state.clone()).collect::<Vec<_>>(), [state]);
    }
}

/// A Job whose pod the Pod cache shows finished is no longer charged, though the Job controller
/// has not yet marked the Job itself finished (it batches Job status updates): the quota stopped
/// counting the pod, so the next partition may take its room as soon as `used` shows it.
#[test]
fn a_job_whose_pod_finished_is_released_before_the_job_shows_it() {
    let p = pipeline();
    let now = ts("2026-11-24T12:00:01Z");
    let defaults = ContainerDefaults::default();
    let (mut job, _) = backfill_job(&p, 0, "me");
    job.metadata.uid = Some("job-uid".into());
    job.status = Some(serde_json::from_value(serde_json::json!({"active": 1})).unwrap());
    let snapshot = vec![Arc::new(job)];
    let charged = |finished_pods: &HashSet<String>| {
        let of = jobs_of(&p, &defaults, false, finished_pods);
        let observed = merge_jobs(&snapshot, &mut InFlight::default(), &of, now);
        (observed.committed.len(), observed.own_pods.len(), observed.own.len())
    };
    assert_eq!(charged(&HashSet::new()), (1, 1, 1), "an active pod is charged");
    assert_eq!(
        charged(&HashSet::from(["job-uid".to_string()])),
        (0, 0, 1),
        "its pod finished: released, still its own"
    );
}
