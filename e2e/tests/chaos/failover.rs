//! Two replicas with leader election, the leader SIGKILLed mid-backfill: the standby takes over
//! within the Lease duration plus 2 s, the two never act at once (from the audit log: every
//! write of the old leader was received before the new leader's first write; the replicas are
//! told apart by their user agent, `sluice-operator/<version> (<pod name>)`), nothing runs twice.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use sluice_e2e::audit::{self, AuditEvent};
use sluice_e2e::cluster::kubeconfig;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::process::OperatorProcess;
use sluice_e2e::wait;

use super::workload::{self, Workload};

const LEASE: &str = "sluice-chaos-leader";
/// The chart's default Lease timing.
const LEASE_SECONDS: f64 = 15.0;

fn replica(ns: &str, name: &str) -> OperatorProcess {
    let args =
        ["--namespace", ns, "--leader-elect", "--leader-election-namespace", ns, "--leader-election-lease-name", LEASE];
    OperatorProcess::start(&kubeconfig(), name, &args, "info,sluice=debug")
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec?.holder_identity)
}

/// The successful writes of replica `name` (its user agent names it).
fn writes_of<'a>(events: &'a [AuditEvent], name: &str) -> Vec<&'a AuditEvent> {
    let marker = format!("({name})");
    events.iter().filter(|e| e.is_successful_write() && e.user_agent.contains(&marker)).collect()
}

#[tokio::test]
async fn killing_the_leader_mid_backfill_hands_over_without_two_leaders_or_a_duplicate() {
    let _shared = super::shared().await;
    let client = sluice_e2e::cluster::client(&kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "chaos-leader", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let (a_name, b_name) = (format!("{n}-a"), format!("{n}-b"));
        let a = replica(n, &a_name);
        a.wait_ready().await;
        wait::settle(Duration::from_secs(30), wait::EVERY, || a.gauge("sluice_leader"), |g| *g == Some(1.0)).await;
        assert_eq!(holder(&client, n).await.as_deref(), Some(a_name.as_str()), "the first replica leads");
        let mut b = replica(n, &b_name);
        b.wait_ready().await;
        assert_eq!(b.gauge("sluice_leader").await, Some(0.0), "the second replica stands by");

        let w = Workload { ns: n.to_string(), partitions: 80, scheduled: workload::mix(4, 5), parallelism: 20 };
        let mut ledger = w.start(&client).await;
        let jobs = || std::future::ready(w.backfill_jobs(&ledger));
        let started = wait::settle(Duration::from_secs(90), Duration::from_millis(200), jobs, |n| *n >= 20).await;
        assert!(started >= 20, "the Backfill did not start");
        a.signal(libc::SIGKILL);
        let killed = Timestamp::now();
        let jobs_at_kill = w.backfill_jobs(&ledger);
        let took_over = |h: &Option<String>| h.as_deref() == Some(b_name.as_str());
        let lease = wait::settle(Duration::from_secs(60), wait::EVERY, || holder(&client, n), took_over).await;
        assert!(took_over(&lease), "no takeover within 60 s");
        let took_lease = Timestamp::now().duration_since(killed).as_secs_f64();

        w.wait_backfill_done(&client, &mut ledger, Duration::from_secs(300)).await;
        w.suspend(&client, &mut ledger).await;
        let finished = w.wait_jobs_finished(&client, Duration::from_secs(120)).await;
        let figures = ledger.figures(&client, &w, finished).await;

        let events = audit::read_settled(&client, n).await;
        let (of_a, of_b) = (writes_of(&events, &a_name), writes_of(&events, &b_name));
        let a_last = of_a.iter().map(|e| e.received).max().expect("the leader wrote");
        let b_first = of_b.iter().map(|e| e.received).min().expect("the new leader wrote");
        let b_first_job = of_b.iter().filter(|e| e.is_job_create()).map(|e| e.received).min().expect("the new leader created Jobs");
        let strangers: Vec<&AuditEvent> = events
            .iter()
            .filter(|e| e.is_successful_write() && e.user_agent.starts_with("sluice-operator/"))
            .filter(|e| !e.user_agent.contains(&format!("({a_name})")) && !e.user_agent.contains(&format!("({b_name})")))
            .collect();
        let since = |t: Timestamp| t.duration_since(killed).as_secs_f64();
        figures.print(&format!(
            "leader failover mid-backfill (Lease {LEASE_SECONDS} s): killed after {jobs_at_kill} backfill Jobs; the standby \
             took the Lease {took_lease:.1} s after the kill, wrote first {:.1} s after it (first Job {:.1} s); the old \
             leader's last write {:.1} s before the kill; writes: old leader {}, new leader {}",
            since(b_first),
            since(b_first_job),
            -since(a_last),
            of_a.len(),
            of_b.len()
        ));
        assert!(strangers.is_empty(), "writes by an operator that is neither replica: {strangers:?}");
        assert!(a_last < b_first, "the old leader wrote at {a_last}, after the new leader's first write at {b_first}");
        assert!(took_lease <= LEASE_SECONDS + 2.0, "takeover took {took_lease:.1} s");
        assert!(since(b_first_job) <= LEASE_SECONDS + 2.0 + 1.0, "the new leader created its first Job {:.1} s after the kill", since(b_first_job));
        assert!(b.has_exited().is_none(), "the new leader exited: {}", b.log.display());
        figures.assert_all();
    })
    .await;
}
