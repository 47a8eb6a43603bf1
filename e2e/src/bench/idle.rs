//! Idle scale: operator memory at 5,000 Pipelines + 5,000 Datasets that have nothing to do,
//! and how late Datasets turn Stale after their deadline (`status.freshness.staleAt`) when
//! 5,000 of them have deadlines spread over one minute. The Stale transition is timed at a
//! harness-side watch (local clock) against the deadline in the same status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::report::{self, Row};
use super::stats::summarize;
use super::{Bench, objects};

/// The freshness objective of the Datasets.
const MAX_AGE: SignedDuration = SignedDuration::from_mins(10);
/// Over how long the deadlines are spread.
const SPREAD_SECS: f64 = 60.0;

/// Watches the Datasets of `namespace`: per name, when Stale was first seen and its staleAt.
fn watch_stale(client: &kube::Client, namespace: &str) -> Arc<Mutex<HashMap<String, (Timestamp, Timestamp)>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let into = seen.clone();
    let api = crate::yaml::sluice_api(client, namespace, "Dataset");
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
        while let Some(item) = stream.next().await {
            let Ok(d) = item else { continue };
            let now = Timestamp::now();
            let freshness = &d.data["status"]["freshness"];
            if freshness["state"] != "Stale" {
                continue;
            }
            let Some(stale_at) = freshness["staleAt"].as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
                continue;
            };
            let name = d.metadata.name.clone().unwrap_or_default();
            into.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_insert((now, stale_at));
        }
    });
    seen
}

/// Gives every Dataset a watermark such that its deadlines fall one after another from `base`
/// over [`SPREAD_SECS`].
async fn set_watermarks(client: &kube::Client, namespace: &str, count: usize, base: Timestamp) {
    let api = crate::yaml::sluice_api(client, namespace, "Dataset");
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let stale_at = base + SignedDuration::from_secs((i as f64 * SPREAD_SECS / count as f64) as i64);
            let patch = json!({"status": {"watermark": (stale_at - MAX_AGE).to_string()}});
            async move {
                api.patch_status(&format!("d{i:05}"), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
        })
        .buffer_unordered(objects::SETUP_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .expect("watermarks set");
}

/// Runs the idle and freshness section at `datasets` Datasets and `pipelines` Pipelines.
pub async fn run(bench: &Bench, datasets: usize, pipelines: usize) {
    let ns = "bench-idle";
    objects::fresh_namespace(&bench.client, ns).await;
    let stale = watch_stale(&bench.client, ns);
    let max_age = format!("{}s", MAX_AGE.as_secs());
    objects::create_all(
        &bench.client,
        ns,
        (0..datasets).map(|i| objects::dataset(&format!("d{i:05}"), &max_age)).collect(),
    )
    .await;
    let template = objects::pod_template("1s", None);
    let docs = (0..pipelines).map(|i| objects::pipeline(&format!("p{i:05}"), "0 0 1 1 *", &template)).collect();
    objects::create_all(&bench.client, ns, docs).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let idle = bench.usage().0;
    let scale = format!("{pipelines} P + {datasets} D");
    println!("  idle at {scale}: operator {idle:?}");
    report::add(Row::ratio("operator VmRSS idle (MiB)", &scale, idle.rss_mib, "target", 64.0).within_peer());
    report::add(Row::ratio("operator VmHWM idle (MiB)", &scale, idle.hwm_mib, "target", 64.0).within_peer());
    let base = Timestamp::from_second(Timestamp::now().as_second() + (datasets as i64) / 100 + 20).expect("time");
    set_watermarks(&bench.client, ns, datasets, base).await;
    let end = base + SignedDuration::from_secs_f64(SPREAD_SECS + 30.0);
    while Timestamp::now() < end && stale.lock().unwrap_or_else(|e| e.into_inner()).len() < datasets {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lags: Vec<f64> = stale
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|(seen, at)| seen.duration_since(*at).as_secs_f64())
        .collect();
    let s = summarize(&lags);
    println!(
        "  freshness: {} of {datasets} Stale seen; lag p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        s.count, s.p50, s.p99, s.max
    );
    let scale = format!("{datasets} Datasets");
    report::add(Row::ratio("Datasets seen Stale", &scale, s.count as f64, "all", datasets as f64).ratio_at_least(1.0));
    report::add(Row::ratio("Stale lag after staleAt p50 (s)", &scale, s.p50, "target", 1.0).within_peer());
    report::add(Row::ratio("Stale lag after staleAt p99 (s)", &scale, s.p99, "target", 1.0).within_peer());
    let after = bench.usage().0;
    report::add(
        Row::ratio(
            "operator VmHWM after the deadlines (MiB)",
            &format!("{pipelines} P + {datasets} D"),
            after.hwm_mib,
            "target",
            64.0,
        )
        .within_peer(),
    );
    objects::delete_namespace(&bench.client, ns).await;
}
