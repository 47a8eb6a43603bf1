//! SIGKILL the operator at random moments while the chaos workload runs, restarting it at once
//! each time. Short form (in `make test`): 10 kills, 100 partitions. Full form (`make chaos`,
//! `SLUICE_CHAOS_FULL=1`): 50 kills, 500 partitions. `SLUICE_CHAOS_SEED` replays the moments.

use std::time::{Duration, Instant};

use sluice_e2e::cluster::kubeconfig;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::process::OperatorProcess;

use super::workload::{self, Workload};

const RUST_LOG: &str = "info,sluice=debug";

/// (kills, partitions) of this run.
fn size() -> (usize, i64) {
    if std::env::var("SLUICE_CHAOS_FULL").as_deref() == Ok("1") { (50, 500) } else { (10, 100) }
}

#[tokio::test]
async fn the_operator_killed_at_random_moments_runs_every_window_once() {
    let _shared = super::shared().await;
    let (kills, partitions) = size();
    let seed = std::env::var("SLUICE_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as u64
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let client = sluice_e2e::cluster::client(&kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "chaos-kill", |ns| async move {
        let client = ns.client.clone();
        let w = Workload { ns: ns.name.clone(), partitions, scheduled: workload::mix(20, 5), parallelism: 20 };
        let name = format!("{}-op", ns.name);
        let mut op = OperatorProcess::start(&kubeconfig(), &name, &["--namespace", &ns.name], RUST_LOG);
        op.wait_ready().await;
        let mut ledger = w.start(&client).await;
        let started = Instant::now();

        // Random moments: 0.3 to 2.5 s apart, so that some kills hit a starting operator (caches
        // not yet synced) and some hit one in full flight, and most fall while the Backfill runs
        // (on a quiet machine, with up to 4 s between kills, it finished before the 8th).
        let mut at_job_counts = Vec::new();
        for _ in 0..kills {
            tokio::time::sleep(Duration::from_millis(rng.u64(300..2500))).await;
            op.kill_and_restart().await;
            at_job_counts.push(w.backfill_jobs(&ledger));
        }
        let chaos = started.elapsed();
        op.wait_ready().await;
        let backfill = w.wait_backfill_done(&client, &mut ledger, Duration::from_secs(900)).await;
        w.suspend(&client, &mut ledger).await;
        let finished = w.wait_jobs_finished(&client, Duration::from_secs(120)).await;
        let figures = ledger.figures(&client, &w, finished).await;
        assert!(op.has_exited().is_none(), "the operator exited on its own: {}", op.log.display());

        let title = format!(
            "chaos: {kills} SIGKILLs of the operator over {:.0} s (seed {seed}; backfill Jobs created at each kill: \
             {at_job_counts:?}); {partitions} partitions and {} scheduled Pipelines, {:.0} s in all",
            chaos.as_secs_f64(),
            w.scheduled.len(),
            started.elapsed().as_secs_f64()
        );
        figures.print(&title);
        assert!(
            backfill
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True")),
            "the Backfill completed: {:#?}",
            backfill.status
        );
        // Most kills (at least 2 in 3) fell while the Backfill still had partitions to launch;
        // how fast it runs depends on the machine.
        let during = at_job_counts.iter().filter(|c| **c < partitions as usize).count();
        assert!(
            at_job_counts.first() < at_job_counts.last() && during * 3 >= at_job_counts.len() * 2,
            "the kills fell while the Backfill ran: {at_job_counts:?}"
        );
        figures.assert_all();
    })
    .await;
}
