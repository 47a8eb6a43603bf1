//! Sluice beside its peers, on the same API server in the same run (issue 12): the limit L of
//! a bare client, the rate C at which the cluster completes a bare client's Jobs, the fan-in of N Pipelines against N CronJobs, a large Backfill without and
//! with a binding quota, and idle memory and freshness deadline lag at 5,000 + 5,000 objects.
//! Prints the table as it goes; writes it to target/bench/results.{json,md}.
//!
//! `make bench`, or `cargo test --release -p sluice-e2e --test bench_compare -- --ignored --nocapture`
//! with `SLUICE_OPERATOR_BIN` naming the operator build to measure. Environment:
//! - `SLUICE_BENCH_SECTIONS`: any of `limit,fanin,backfill,idle` (default all, in that order)
//! - `SLUICE_BENCH_N`: fan-in sizes (default 100,500,1000); `SLUICE_BENCH_TICKS` ticks per arm (2)
//! - `SLUICE_BENCH_INFLIGHT`: the L sweep (default 1,2,4,8,16,32,64,128)
//! - `SLUICE_BENCH_PARTITIONS`: Backfill size (default 10000); `SLUICE_BENCH_QUOTA_PARTITIONS` the
//!   size of the one under a binding quota (default the same)
//! - `SLUICE_BENCH_IDLE`: Pipelines and Datasets of the idle section (default 5000)

use sluice_e2e::bench::backfill::Budget;
use sluice_e2e::bench::report::{self, Row};
use sluice_e2e::bench::{Bench, backfill, completion, env_list, fanin, idle, limit};

fn wanted(section: &str) -> bool {
    match std::env::var("SLUICE_BENCH_SECTIONS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|s| s.trim() == section),
        _ => true,
    }
}

#[tokio::test]
#[ignore = "benchmark: make bench"]
async fn sluice_beside_its_peers() {
    let mut bench = Bench::start().await;
    println!(
        "operator {}; CronJob controller-manager log {}",
        bench.operator.log.display(),
        bench.cronjobs.log.display()
    );
    if wanted("limit") {
        let levels =
            limit::sweep(&bench.client, &env_list("SLUICE_BENCH_INFLIGHT", &[1, 2, 4, 8, 16, 32, 64, 128])).await;
        let l = limit::limit(&levels);
        let best = levels.iter().find(|x| x.rate == l).expect("a level within 1 s");
        report::add(Row::ratio(
            "L: Job creates/s with POST p99 <= 1 s",
            &format!("in-flight {}", best.in_flight),
            l,
            "POST p99 (s)",
            best.latency.p99,
        ));
        bench.limit = Some(l);
    }
    if wanted("fanin") {
        let ticks = env_list("SLUICE_BENCH_TICKS", &[2])[0];
        for (i, n) in env_list("SLUICE_BENCH_N", &[100, 500, 1000]).into_iter().enumerate() {
            bench.restart().await;
            fanin::run(&bench, n, ticks, i == 0).await;
        }
    }
    if wanted("backfill") {
        let partitions = env_list("SLUICE_BENCH_PARTITIONS", &[10_000])[0] as i64;
        let c = completion::measure(&bench.client, partitions as usize, backfill::UNBOUND_POD).await;
        let scale = format!("{partitions} Jobs");
        report::add(Row::ratio("C: Jobs finished/s, bare client", &scale, c, "L", bench.limit.unwrap_or(f64::NAN)));
        bench.completion = Some(c);
        bench.restart().await;
        backfill::run(&bench, partitions, None).await;
        let budget = Budget { quota_milli: 4000, step_milli: 100, pod_secs: 2.0 };
        let bound = env_list("SLUICE_BENCH_QUOTA_PARTITIONS", &[partitions as usize])[0] as i64;
        backfill::run(&bench, bound, Some(budget)).await;
    }
    if wanted("idle") {
        let count = env_list("SLUICE_BENCH_IDLE", &[5000])[0];
        bench.restart().await;
        idle::run(&bench, count, count).await;
    }
    println!("\n{}", report::markdown(&report::rows()));
    println!("written to {}", report::out_dir().display());
}
