//! Fan-in: N one-step Pipelines against N CronJobs with the same pod template, minutely on
//! alternate minutes (CronJobs on even minutes, Pipelines on odd), so neither arm loads the API
//! server while the other launches. Each Job's lag is its ADDED arrival at the harness's watch
//! minus the tick. Beside the lags: API writes per launched Job (audit log, by user agent),
//! memory and CPU of the operator and of the CronJob-only controller-manager.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::proc_usage::ProcUsage;
use super::report::{self, Row};
use super::stats::summarize;
use super::writes::{self, Writes};
use super::{Bench, objects, sleep_until};

/// How long after its tick an arm is measured (arrivals, CPU, writes): the other arm's tick
/// comes 60 s after.
pub const WINDOW: SignedDuration = SignedDuration::from_secs(45);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    Sluice,
    CronJob,
}

/// One measured tick of one arm.
struct Tick {
    arm: Arm,
    from: Timestamp,
    to: Timestamp,
    lags: Vec<f64>,
    /// CPU seconds of the arm's own process over the tick's window.
    cpu: f64,
}

/// The arm that launches at minute tick `t`.
pub fn arm_at(t: Timestamp) -> Arm {
    if (t.as_second() / 60) % 2 == 0 { Arm::CronJob } else { Arm::Sluice }
}

/// The first whole minute at or after `t`.
pub fn next_minute(t: Timestamp) -> Timestamp {
    let s = t.as_second();
    let up = if s % 60 == 0 && t.subsec_nanosecond() == 0 { s } else { s - s.rem_euclid(60) + 60 };
    Timestamp::from_second(up).expect("time")
}

fn namespaces(n: usize) -> (String, String) {
    (format!("bench-sluice-{n}"), format!("bench-cron-{n}"))
}

/// Creates the N Pipelines and N CronJobs; returns the CPU each process spent on them.
async fn set_up(bench: &Bench, n: usize) -> (f64, f64) {
    let (ns_s, ns_c) = namespaces(n);
    futures::join!(objects::fresh_namespace(&bench.client, &ns_s), objects::fresh_namespace(&bench.client, &ns_c));
    let before = bench.usage();
    let template = objects::pod_template("1s", None);
    let crons = (0..n).map(|i| objects::cronjob(&format!("c{i:05}"), "*/2 * * * *", &template)).collect();
    objects::create_all(&bench.client, &ns_c, crons).await;
    let pipelines = (0..n).map(|i| objects::pipeline(&format!("p{i:05}"), "1-59/2 * * * *", &template)).collect();
    objects::create_all(&bench.client, &ns_s, pipelines).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = bench.usage();
    (after.0.cpu_secs - before.0.cpu_secs, after.1.cpu_secs - before.1.cpu_secs)
}

/// Measures the tick at `tick` of `arm` in `namespace`.
async fn measure(bench: &Bench, arm: Arm, namespace: &str, n: usize, tick: Timestamp) -> Tick {
    sleep_until(tick - SignedDuration::from_secs(2)).await;
    let cpu = |u: (ProcUsage, ProcUsage)| if arm == Arm::Sluice { u.0.cpu_secs } else { u.1.cpu_secs };
    let (from, before) = (Timestamp::now(), cpu(bench.usage()));
    let end = tick + WINDOW;
    while Timestamp::now() < end && bench.arrivals.count_since(namespace, tick) < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sleep_until(end).await;
    let lags = bench.arrivals.lags(namespace, tick, SignedDuration::from_secs(60));
    let s = summarize(&lags);
    println!(
        "  fan-in N={n} {arm:?} tick {tick}: {} Jobs, p50 {:.3} s, p99 {:.3} s, last {:.3} s",
        s.count, s.p50, s.p99, s.max
    );
    Tick { arm, from, to: end, lags, cpu: cpu(bench.usage()) - before }
}

/// Runs the fan-in at `n` for `ticks` ticks per arm and adds its rows; with `noop`, checks
/// afterwards that a label change on every Pipeline writes nothing.
pub async fn run(bench: &Bench, n: usize, ticks: usize, noop: bool) {
    let (ns_s, ns_c) = namespaces(n);
    let setup_cpu = set_up(bench, n).await;
    let first = next_minute(Timestamp::now() + SignedDuration::from_secs(5));
    let mut measured = Vec::new();
    for i in 0..(2 * ticks) as i64 {
        let tick = first + SignedDuration::from_mins(i);
        let arm = arm_at(tick);
        let ns = if arm == Arm::Sluice { &ns_s } else { &ns_c };
        measured.push(measure(bench, arm, ns, n, tick).await);
    }
    let usage = bench.usage();
    let sluice_events = crate::audit::read_settled(&bench.client, &ns_s).await;
    let cron_events = crate::audit::read_settled(&bench.client, &ns_c).await;
    let written = |arm: Arm| {
        let (events, agent): (&[_], fn(&str) -> bool) = match arm {
            Arm::Sluice => (&sluice_events, writes::is_sluice),
            Arm::CronJob => (&cron_events, writes::is_cronjob_controller),
        };
        measured.iter().filter(|t| t.arm == arm).fold(Writes::default(), |sum, t| {
            let w = writes::count(events, agent, t.from, t.to);
            Writes {
                job_creates: sum.job_creates + w.job_creates,
                job_deletes: sum.job_deletes + w.job_deletes,
                status: sum.status + w.status,
                events: sum.events + w.events,
                other: sum.other + w.other,
            }
        })
    };
    let (ws, wc) = (written(Arm::Sluice), written(Arm::CronJob));
    println!("  fan-in N={n} writes: Sluice {ws:?}; CronJob controller {wc:?}");
    add_rows(bench, n, &measured, (ws, wc), setup_cpu, usage);
    if noop {
        no_op(bench, &ns_s, n).await;
    }
    futures::join!(objects::delete_namespace(&bench.client, &ns_s), objects::delete_namespace(&bench.client, &ns_c));
}

/// The table rows of one N.
fn add_rows(
    bench: &Bench,
    n: usize,
    ticks: &[Tick],
    (ws, wc): (Writes, Writes),
    (setup_s, setup_c): (f64, f64),
    (us, uc): (ProcUsage, ProcUsage),
) {
    let scale = format!("N={n}");
    let pooled =
        |arm: Arm| summarize(&ticks.iter().filter(|t| t.arm == arm).flat_map(|t| t.lags.clone()).collect::<Vec<_>>());
    let launched = |arm: Arm| ticks.iter().filter(|t| t.arm == arm).map(|t| t.lags.len()).sum::<usize>().max(1) as f64;
    let cpu = |arm: Arm| ticks.iter().filter(|t| t.arm == arm).map(|t| t.cpu).sum::<f64>();
    let (s, c) = (pooled(Arm::Sluice), pooled(Arm::CronJob));
    let peer = "CronJob controller";
    report::add(Row::ratio("fan-in launch p50 (s)", &scale, s.p50, peer, c.p50));
    let p99 = Row::ratio("fan-in launch p99 (s)", &scale, s.p99, peer, c.p99);
    report::add(if n >= 1000 { p99.ratio_at_most(0.5) } else { p99 });
    report::add(Row::ratio("fan-in last of N (s)", &scale, s.max, peer, c.max));
    if let Some(l) = bench.limit {
        let bound = 0.1 + 1.25 * n as f64 / l;
        report::add(Row::ratio("fan-in last of N (s)", &scale, s.max, "0.1 + 1.25 N / L", bound).within_peer());
        report::add(Row::ratio("fan-in Jobs/s (N / last)", &scale, n as f64 / s.max, "L", l));
        report::add(Row::ratio("fan-in Jobs/s, CronJob arm", &scale, n as f64 / c.max, "L", l));
    }
    let per = |w: usize, arm: Arm| w as f64 / launched(arm);
    let (per_s, per_c) = (per(ws.object_writes(), Arm::Sluice), per(wc.object_writes(), Arm::CronJob));
    report::add(Row::ratio("API writes per launched Job", &scale, per_s, peer, per_c));
    report::add(Row::ratio("API writes per launched Job", &scale, per_s, "target", 2.0).within_peer());
    let events = (per(ws.events, Arm::Sluice), per(wc.events, Arm::CronJob));
    report::add(Row::ratio("Event writes per launched Job", &scale, events.0, peer, events.1));
    let k = n as f64 / 1000.0;
    report::add(Row::ratio("VmHWM (MiB)", &scale, us.hwm_mib, "CronJob controller-manager", uc.hwm_mib));
    report::add(
        Row::ratio(
            "VmHWM per 1,000 objects (MiB)",
            &scale,
            us.hwm_mib / k,
            "CronJob controller-manager",
            uc.hwm_mib / k,
        )
        .ratio_at_most(0.5),
    );
    let (per_launch_s, per_launch_c) =
        (1000.0 * cpu(Arm::Sluice) / launched(Arm::Sluice), 1000.0 * cpu(Arm::CronJob) / launched(Arm::CronJob));
    report::add(
        Row::ratio("CPU s per 1,000 objects (create)", &scale, setup_s / k, "CronJob controller-manager", setup_c / k)
            .ratio_at_most(0.5),
    );
    report::add(
        Row::ratio("CPU s per 1,000 launches", &scale, per_launch_s, "CronJob controller-manager", per_launch_c)
            .ratio_at_most(0.5),
    );
}

/// Waits (at most 3 minutes) until the audit log shows no Sluice write in `namespace` for 5 s:
/// the runs of the last tick are recorded and their older Jobs deleted, so that what the
/// label change writes is not mixed with them.
async fn quiet(bench: &Bench, namespace: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let events = crate::audit::read_settled(&bench.client, namespace).await;
        let now = Timestamp::now();
        let recent = writes::count(&events, writes::is_sluice, now - SignedDuration::from_secs(5), now);
        if recent.total() == 0 || std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A label change on every Pipeline of `namespace` (a reconcile that decides nothing new) must
/// write nothing. Skipped when a Pipeline tick would fall into the count.
async fn no_op(bench: &Bench, namespace: &str, n: usize) {
    let needed = SignedDuration::from_secs_f64(n as f64 / 40.0 + 15.0);
    loop {
        quiet(bench, namespace).await;
        let next_sluice = {
            let t = next_minute(Timestamp::now());
            if arm_at(t) == Arm::Sluice { t } else { t + SignedDuration::from_mins(1) }
        };
        if next_sluice.duration_since(Timestamp::now()) >= needed {
            break;
        }
        sleep_until(next_sluice + WINDOW).await;
    }
    let api = crate::yaml::sluice_api(&bench.client, namespace, "Pipeline");
    let from = Timestamp::now();
    let patch = json!({"metadata": {"labels": {"bench.sluice.dev/touched": from.as_second().to_string()}}});
    for i in 0..n {
        let params = kube::api::PatchParams::default();
        api.patch(&format!("p{i:05}"), &params, &kube::api::Patch::Merge(&patch)).await.expect("label patch");
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let to = Timestamp::now();
    let events = crate::audit::read_settled(&bench.client, namespace).await;
    let w = writes::count(&events, writes::is_sluice, from, to);
    println!("  no-op reconcile (label change on {n} Pipelines): Sluice wrote {w:?}");
    let row =
        Row::ratio("writes after a label change on every Pipeline", &format!("N={n}"), w.total() as f64, "target", 0.0);
    report::add(row.within_peer());
}
