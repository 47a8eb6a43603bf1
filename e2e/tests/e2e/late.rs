//! Late-arriving data on a real control plane (`spec.lateness`): every scheduled run also starts
//! the late passes of the previous windows, only for the step that opted in, under the names
//! `<pipeline>-<step>-<earlier window's run id>-late<d>`, each created exactly once (counted in
//! the API server's audit log), recorded once, labelled with its pass, and none of them moves
//! the output Dataset's watermark.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use sluice::api::{Dataset, Pipeline, PipelineSpec};
use sluice::plan::pipeline::MAX_SKIPPED_RUNS;
use sluice::schedule::{Schedule, Window};
use sluice_e2e::{audit, usage, wait};

const LOOKBACK: i32 = 2;

fn step(name: &str, deps: &[&str], outputs: &[&str], late: bool) -> serde_json::Value {
    json!({"name": name, "kind": if deps.is_empty() { "Extract" } else { "Transform" },
        "dependsOn": deps, "outputs": outputs, "lateRerun": late,
        "template": {"metadata": {"annotations": {"kwok.sluice.dev/duration": "300ms"}},
            "spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}})
}

/// The late-pass run ids that the scheduled run of `window` (its tick at its end) starts.
fn expected_late(
    spec: &PipelineSpec,
    schedule: &Schedule,
    window: &Window,
    created: jiff::Timestamp,
) -> Vec<(String, Window)> {
    let rule = sluice::schedule::window_rule(spec);
    sluice::plan::late::windows(spec, schedule, rule, window.end, window, created)
        .into_iter()
        .map(|(d, w)| (sluice::plan::late::run_id(&w, d), w))
        .collect()
}

#[tokio::test]
async fn scheduled_runs_start_late_passes_of_earlier_windows_each_exactly_once() {
    sluice_e2e::in_namespace("late", |ns| async move {
        let (client, n) = (ns.client.clone(), ns.name.as_str());
        let seen = usage::watch(&client, n);
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "curated"},
            "spec": {"owner": "team-a", "layer": "Curated"}}))
            .await;
        let began = Instant::now();
        ns.apply(&json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "events"},
            "spec": {"schedule": "*/4 * * * * *", "concurrency": {"maxConcurrentRuns": 2},
                "lateness": {"lookback": LOOKBACK},
                "steps": [step("extract", &[], &[], false), step("merge", &["extract"], &["curated"], true)]}}))
            .await;
        let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), n);
        // Four scheduled runs recorded: the later ones each started LOOKBACK late passes.
        let done = wait::until(&pipelines, "events", Duration::from_secs(90), "4 scheduled runs", |p: &Pipeline| {
            let runs = p.status.as_ref().map(|s| s.recent_runs.as_slice()).unwrap_or_default();
            runs.iter().filter(|r| r.late_pass.is_none()).count() >= 4
        })
        .await;
        let until_four = began.elapsed();
        let patch = json!({"spec": {"suspend": true}});
        pipelines.patch("events", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("suspend");
        let idle = wait::until(&pipelines, "events", Duration::from_secs(60), "idle", |p: &Pipeline| {
            let s = p.status.as_ref();
            p.spec.suspend
                && s.is_some_and(|s| s.observed_generation == p.metadata.generation && s.active_runs.is_empty())
        })
        .await;
        let status = idle.status.clone().unwrap_or_default();
        let created = done.metadata.creation_timestamp.as_ref().expect("created").0;
        let spec = &idle.spec;
        let schedule = Schedule::parse("*/4 * * * * *", None).unwrap();

        // The expected late passes, from the scheduled runs that ran.
        let own: Vec<Window> = status
            .recent_runs
            .iter()
            .filter(|r| r.late_pass.is_none() && !r.manual)
            .map(|r| Window { start: r.window.start.0, end: r.window.end.0 })
            .collect();
        let expected: BTreeMap<String, Window> =
            own.iter().flat_map(|w| expected_late(spec, &schedule, w, created)).collect();
        assert!(expected.len() >= 2 * LOOKBACK as usize, "late passes of at least two runs: {expected:?}");
        let late_records: Vec<(&str, Option<i32>)> = status
            .recent_runs
            .iter()
            .chain(&status.skipped_runs)
            .filter(|r| r.late_pass.is_some())
            .map(|r| (r.id.as_str(), r.late_pass))
            .collect();
        let recorded: BTreeSet<&str> = late_records.iter().map(|(id, _)| *id).collect();
        assert_eq!(recorded.len(), late_records.len(), "each late pass recorded once: {late_records:?}");

        // Every Job name was created once (the API server's own count), and the late ones are the
        // expected names, of step merge only, labelled with their pass and window.
        let creates = audit::job_creates(&audit::read_settled(&client, n).await);
        assert!(creates.values().all(|c| *c == 1), "a Job name created twice: {creates:?}");
        usage::caught_up(&seen, &client, n).await;
        let late_jobs: BTreeMap<String, usage::SeenJob> = seen
            .lock()
            .unwrap()
            .jobs()
            .filter(|j| j.run.contains("-late"))
            .map(|j| (j.name.clone(), j.clone()))
            .collect();
        // Each expected late pass ran (a Job of step merge under its name) or, when its window
        // still had a run in progress (a slow machine), was recorded Skipped with WindowBusy.
        let ran: BTreeSet<String> = late_jobs.values().map(|j| j.run.clone()).collect();
        let busy: BTreeSet<String> = status
            .skipped_runs
            .iter()
            .filter(|r| r.late_pass.is_some() && r.reason.as_deref() == Some("WindowBusy"))
            .map(|r| r.id.clone())
            .collect();
        let accounted: BTreeSet<String> = ran.union(&busy).cloned().collect();
        // skippedRuns keeps the newest MAX_SKIPPED_RUNS records: when it is full (a loaded
        // machine skips many), a pass older than the oldest kept record may have fallen off.
        let kept_from = (status.skipped_runs.len() >= MAX_SKIPPED_RUNS)
            .then(|| status.skipped_runs.iter().map(|r| r.window.start.0).min())
            .flatten();
        let lost: Vec<&String> = expected
            .iter()
            .filter(|(id, w)| !accounted.contains(*id) && kept_from.is_none_or(|from| w.start >= from))
            .map(|(id, _)| id)
            .collect();
        assert!(lost.is_empty(), "late passes neither run nor recorded: {lost:?} (ran {ran:?}, busy {busy:?})");
        assert!(ran.len() >= 2, "late passes ran: {ran:?}");
        for id in &ran {
            let name = sluice::jobs::job_name("events", "merge", id, 0);
            assert!(late_jobs.contains_key(&name), "{id} ran as {name}");
        }
        for (name, job) in &late_jobs {
            assert_eq!(job.step, "merge", "{name}: only the opted-in step re-runs");
            assert_eq!(creates.get(name), Some(&1), "{name} created once");
            let d = sluice::plan::late::pass_of(&job.run).expect("a late run id");
            assert!((1..=LOOKBACK as u32).contains(&d), "{name}");
            let recorded_pass = late_records.iter().find(|(id, _)| *id == job.run).and_then(|(_, p)| *p);
            assert_eq!(recorded_pass, Some(d as i32), "{name} recorded with its pass");
        }
        let jobs: Api<Job> = Api::namespaced(client.clone(), n);
        let labelled = jobs.list(&ListParams::default().labels("sluice.dev/late-pass")).await.expect("jobs");
        for job in &labelled.items {
            let labels = job.metadata.labels.as_ref().unwrap();
            let run = &labels["sluice.dev/run"];
            let d = sluice::plan::late::pass_of(run).expect("a late run id");
            assert_eq!(labels["sluice.dev/late-pass"], d.to_string());
            let annotation = |k: &str| job.metadata.annotations.as_ref().unwrap()[k].parse().expect("a time");
            let window =
                Window { start: annotation("sluice.dev/window-start"), end: annotation("sluice.dev/window-end") };
            assert_eq!(*run, sluice::plan::late::run_id(&window, d), "the Job covers the earlier window");
        }

        // The watermark is a scheduled window's end, the newest recorded one or later (a run
        // recorded otherwise, e.g. stopped by the suspension after its step finished, may have
        // moved it on): no late pass moved it back, and none produced it.
        let newest_end = own.iter().map(|w| w.end).max().expect("runs");
        let datasets: Api<Dataset> = Api::namespaced(client.clone(), n);
        let d = wait::until(&datasets, "curated", Duration::from_secs(30), "the newest window", |d: &Dataset| {
            d.status.as_ref().and_then(|s| s.watermark.as_ref()).is_some_and(|w| w.0 >= newest_end)
        })
        .await;
        let st = d.status.unwrap();
        let watermark = st.watermark.unwrap().0;
        assert!(watermark >= newest_end, "{watermark} before {newest_end}");
        let by = st.produced_by.expect("producedBy");
        assert!(sluice::plan::late::pass_of(&by.run).is_none(), "produced by a late pass: {by:?}");
        assert_eq!(
            by.window.as_ref().map(|w| w.end.0),
            Some(watermark),
            "the watermark is its producing window's end: {by:?}"
        );
        println!(
            "lateness: {} scheduled runs, {} late passes expected: {} ran, {} skipped (WindowBusy); 4 runs after \
             {:.1}s, test {:.1}s",
            own.len(),
            expected.len(),
            ran.len(),
            busy.len(),
            until_four.as_secs_f64(),
            began.elapsed().as_secs_f64()
        );
    })
    .await;
}
