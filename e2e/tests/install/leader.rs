//! Leader election with several operator processes on the local cluster: one acts, the others
//! stand by and are ready; when the leader is killed a standby takes over (the measured failover
//! time is printed); a leader that loses its Lease stops at once.
//!
//! The processes run with `--namespace <test namespace>` so that they act on this test's objects
//! only, and with the chart's default Lease timing (15 s, renewed 5 s before expiry) unless a
//! test says otherwise.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use sluice_e2e::cluster::kubeconfig;
use sluice_e2e::namespace::with_namespace;
use sluice_e2e::{wait, yaml};

use super::tools::{OperatorProcess, poll_until};

const LEASE: &str = "sluice-e2e-leader";
const RUST_LOG: &str = "info,sluice=debug";

fn args(ns: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--namespace", ns, "--leader-elect", "--leader-election-namespace", ns, "--leader-election-lease-name", LEASE]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start(ns: &str, name: &str, extra: &[&str]) -> OperatorProcess {
    let args = args(ns, extra);
    OperatorProcess::start(&kubeconfig(), name, &args.iter().map(String::as_str).collect::<Vec<_>>(), RUST_LOG)
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec?.holder_identity)
}

/// Polls the Lease every 100 ms until `who` holds it.
async fn wait_holder(client: &kube::Client, ns: &str, who: &str, timeout: Duration) {
    let holds = |h: &Option<String>| h.as_deref() == Some(who);
    if holds(&wait::settle(timeout, wait::EVERY, || holder(client, ns), holds).await) {
        return;
    }
    panic!("{who} did not take the Lease within {timeout:?}; holder: {:?}", holder(client, ns).await);
}

/// Reconciles the process has run (`sluice_reconcile_total`, all controllers and results).
async fn reconciles(op: &OperatorProcess) -> f64 {
    op.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("sluice_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the process reports that it leads (its controllers started).
async fn wait_leading(op: &OperatorProcess) {
    let leads = |g: &Option<f64>| *g == Some(1.0);
    if leads(&wait::settle(Duration::from_secs(30), wait::EVERY, || op.gauge("sluice_leader"), leads).await) {
        return;
    }
    panic!("{} never led:\n{}", op.log.display(), op.log_text());
}

fn pipelines(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "sluice.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sluice.dev/v1alpha1".into(),
        kind: "Pipeline".into(),
        plural: "pipelines".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create_pipeline(client: &kube::Client, ns: &str, name: &str) {
    yaml::apply(
        client,
        ns,
        &json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"schedule": "0 0 1 1 *", "steps": [{"name": "extract", "kind": "Extract",
                "template": {"spec": {"containers": [{"name": "main", "image": "example.com/step:1"}]}}}]}
        }),
    )
    .await
    .expect("pipeline");
}

/// Waits until the operator reported Pipeline `name` Ready.
async fn reconciled(client: &kube::Client, ns: &str, name: &str) {
    poll_until(&pipelines(client, ns), name, Duration::from_secs(60), "Ready", |o: &DynamicObject| {
        let v: Value = serde_json::to_value(o).unwrap();
        wait::condition(&v, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    let client = sluice_e2e::cluster::client(&kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "failover", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        let a = start(n, "leader-a", &[]);
        a.wait_ready().await;
        wait_leading(&a).await;
        assert_eq!(holder(&client, n).await.as_deref(), Some("leader-a"));
        let b = start(n, "leader-b", &[]);
        // A standby is ready, but does not lead.
        b.wait_ready().await;
        assert_eq!(b.gauge("sluice_leader").await, Some(0.0), "the standby does not lead");
        assert_eq!(a.gauge("sluice_leader").await, Some(1.0), "the first replica leads");
        create_pipeline(&client, n, "pipeline").await;
        reconciled(&client, n, "pipeline").await;
        assert_eq!(reconciles(&b).await, 0.0, "the standby reconciles nothing");
        assert!(!b.log_text().contains("starting the controllers"), "the standby never started its controllers");

        // SIGKILL: no release, so the standby waits for the Lease to expire. It acts once it
        // has reconciled the existing Pipeline (its reconcile counter).
        let leases: Api<Lease> = Api::namespaced(client.clone(), n);
        let renewed = leases.get(LEASE).await.unwrap().spec.and_then(|s| s.renew_time).expect("renewTime").0;
        a.signal(libc::SIGKILL);
        let killed = Instant::now();
        let since_renewal = jiff::Timestamp::now().duration_since(renewed).as_secs_f64();
        let (mut took_lease, mut acting) = (None, None);
        let deadline = wait::Deadline::after(Duration::from_secs(40), wait::EVERY);
        while took_lease.is_none() || acting.is_none() {
            if took_lease.is_none() && holder(&client, n).await.as_deref() == Some("leader-b") {
                took_lease = Some(killed.elapsed());
            }
            if acting.is_none() && reconciles(&b).await > 0.0 {
                acting = Some(killed.elapsed());
            }
            if !deadline.tick().await {
                break;
            }
        }
        let took_lease = took_lease.expect("the standby took the Lease within 40 s");
        let acting = acting.expect("the new leader reconciled within 40 s");
        println!(
            "leader failover after SIGKILL (15 s Lease, renewed 5 s before expiry): killed {since_renewal:.1} s after \
             a renewal; the standby took the Lease {:.1} s after the kill ({:.1} s after it expired) and had \
             reconciled the Pipeline {:.1} s after the kill",
            took_lease.as_secs_f64(),
            took_lease.as_secs_f64() - (15.0 - since_renewal),
            acting.as_secs_f64()
        );
        assert!(
            took_lease <= Duration::from_secs(15 + 5),
            "failover took {took_lease:?}, more than the Lease duration"
        );
        assert_eq!(b.gauge("sluice_leader").await, Some(1.0));

        // SIGTERM: the leader finishes, releases the Lease, and a standby takes it.
        let c = start(n, "leader-c", &[]);
        c.wait_ready().await;
        b.signal(libc::SIGTERM);
        let stopped = Instant::now();
        wait_holder(&client, n, "leader-c", Duration::from_secs(40)).await;
        let handed_over = stopped.elapsed();
        println!(
            "leader handover after SIGTERM (Lease released): Lease taken over after {:.1} s",
            handed_over.as_secs_f64()
        );
        assert!(b.log_text().contains("released the leader Lease"), "the stopping leader releases the Lease");
        assert!(
            handed_over <= Duration::from_secs(5),
            "a released Lease is taken within the 2 s retry period: {handed_over:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_at_once() {
    let client = sluice_e2e::cluster::client(&kubeconfig()).await;
    sluice_e2e::operator::install_crds(&client).await;
    with_namespace(&client, "lostlease", |ns| async move {
        let client = ns.client.clone();
        let n = ns.name.as_str();
        // A short Lease: the guard reads it every second.
        let mut a = start(
            n,
            "leader-lost",
            &["--leader-election-lease-duration-seconds", "6", "--leader-election-renew-grace-seconds", "2"],
        );
        a.wait_ready().await;
        wait_leading(&a).await;
        assert_eq!(holder(&client, n).await.as_deref(), Some("leader-lost"));
        // Someone else takes the Lease (as a replica would after a network partition).
        let leases: Api<Lease> = Api::namespaced(client.clone(), n);
        let patch = json!({"spec": {"holderIdentity": "someone-else", "renewTime": MicroTime(jiff::Timestamp::now()),
                                    "leaseDurationSeconds": 600}});
        leases.patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("steal the Lease");
        let stolen = Instant::now();
        let status = a.exited(Duration::from_secs(10)).await.expect("the leader exits after losing its Lease");
        println!("a leader whose Lease was taken stopped after {:.1} s", stolen.elapsed().as_secs_f64());
        assert!(!status.success(), "losing the Lease is an error exit, so the pod restarts: {status}");
        assert!(a.log_text().contains("lost the leader Lease"), "{}", a.log_text());
    })
    .await;
}
