//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! runs the controllers and the others stand by, ready to take over.
//!
//! The election itself is `kube-lease-manager`'s (the maintained crate that supports kube 5;
//! `kube-leader-election` and `kube-coordinate` stop at older kube releases). This module adds:
//! - the command-line settings (`--leader-elect` and the Lease name, namespace and timing);
//! - a *guard* that reads the Lease every couple of seconds while this replica leads and stops it
//!   as soon as another replica holds the Lease, or before the Lease expires without a renewal.
//!   The crate notices a lost Lease only at its next renewal and keeps "leading" through failed
//!   renewals; the guard makes sure a replica that can no longer renew stops before a standby
//!   may take over;
//! - the policy on losing the Lease: stop at once and let the process exit (the pod restarts and
//!   stands by again), rather than wind down while another replica already acts.
//!
//! Timing, with the defaults (15 s Lease, renewed 5 s before it expires): the leader renews every
//! 10 s; when it dies, a standby takes over once the Lease expired, so within 15 s (plus up to 1 s
//! of random back-off in the crate). A leader stopped by SIGTERM finishes its reconciles in flight
//! and then releases the Lease, which a standby takes within its 2 s retry period.
//!
//! RBAC: `get`, `create` and `patch` on `leases` in the Lease's namespace.

use std::time::Duration;

use futures::FutureExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use prometheus::IntGauge;

use crate::controller::{self, Settings};
use crate::metrics::Metrics;
use crate::server::Readiness;

/// Command-line settings of leader election (flattened into `sluice-operator run`).
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElectionArgs {
    /// Run the controllers only while holding a Lease, so that of several replicas exactly one
    /// acts; the others stand by (and report ready) until the Lease is free.
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "SLUICE_LEADER_ELECTION_LEASE_NAME", default_value = "sluice-operator")]
    pub leader_election_lease_name: String,
    /// Namespace of the Lease (default: the namespace of the kubeconfig context, or the pod's
    /// namespace in a cluster).
    #[arg(long, env = "SLUICE_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Seconds the Lease stays valid after a renewal: a standby takes over this long after the
    /// leader's last renewal.
    #[arg(long, env = "SLUICE_LEADER_ELECTION_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub leader_election_lease_duration_seconds: u64,
    /// The leader renews the Lease this many seconds before it expires (less than the duration).
    #[arg(long, env = "SLUICE_LEADER_ELECTION_RENEW_GRACE_SECONDS", default_value_t = 5)]
    pub leader_election_renew_grace_seconds: u64,
}

/// A resolved leader election: which Lease, who we are, and its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's holder identity: the pod name, or `<host>-<pid>` outside a cluster.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_grace: Duration,
}

/// Why leader election stopped the process.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    Settings(String),
    #[error("lost the leader Lease {namespace}/{lease}: {reason}; stopping so that only the new leader acts")]
    Lost { namespace: String, lease: String, reason: String },
}

impl Election {
    /// The election `args` ask for, or `None` without `--leader-elect`. `instance` is the pod
    /// name; `default_namespace` the client's.
    pub fn from_args(
        args: &LeaderElectionArgs,
        instance: Option<&str>,
        default_namespace: &str,
    ) -> Result<Option<Self>, LeaderError> {
        if !args.leader_elect {
            return Ok(None);
        }
        let (duration, grace) = (args.leader_election_lease_duration_seconds, args.leader_election_renew_grace_seconds);
        // kube-lease-manager panics on these; say what is wrong instead.
        if grace == 0 || grace >= duration {
            return Err(LeaderError::Settings(format!(
                "the renew grace ({grace}s) must be at least 1s and less than the lease duration ({duration}s)"
            )));
        }
        let identity = match instance {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice-operator".into());
                format!("{host}-{}", std::process::id())
            }
        };
        Ok(Some(Self {
            lease_name: args.leader_election_lease_name.clone(),
            namespace: args.leader_election_namespace.clone().unwrap_or_else(|| default_namespace.to_string()),
            identity,
            lease_duration: Duration::from_secs(duration),
            renew_grace: Duration::from_secs(grace),
        }))
    }

    fn lost(&self, reason: impl Into<String>) -> LeaderError {
        LeaderError::Lost { namespace: self.namespace.clone(), lease: self.lease_name.clone(), reason: reason.into() }
    }

    /// How often a standby reads the Lease, and the guard while leading: half the renew grace,
    /// between 0.5 s and 2 s.
    fn retry_period(&self) -> Duration {
        (self.renew_grace / 2).clamp(Duration::from_millis(500), Duration::from_secs(2))
    }
}

/// Runs `lead` only while this replica holds the Lease.
///
/// - Standing by, `ready` is set once the Lease could be read or created: a standby is ready to
///   take over.
/// - Leading, `lead` runs with a clone of `shutdown`; `/readyz` is then up to the caller.
/// - On `shutdown`, a standby returns at once; a leader lets `lead` finish (it got the same
///   signal) and releases the Lease.
/// - On losing the Lease, returns [`LeaderError::Lost`] at once, dropping `lead`.
pub async fn run<S, F, Fut>(
    client: Client,
    election: Election,
    metrics: &Metrics,
    ready: Readiness,
    shutdown: S,
    lead: F,
) -> Result<(), LeaderError>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()>,
{
    let leader_gauge = leader_gauge(metrics);
    let Some(manager) = build_manager(&client, &election, shutdown.clone()).await else {
        return Ok(());
    };
    ready.set(true);
    tracing::info!(lease = %election.lease_name, namespace = %election.namespace, identity = %election.identity,
        "standing by until this replica holds the leader Lease");

    let Some(manager) = stand_by(&client, &election, manager, shutdown.clone()).await else {
        return Ok(());
    };

    tracing::info!(identity = %election.identity, "acquired the leader Lease; starting the controllers");
    leader_gauge.set(1);
    // The crate renews the Lease inside `changed()`, which returns when another replica holds it,
    // or with an error when a renewal failed; then it is retried, for as long as the guard sees
    // the Lease valid.
    let renewals = async {
        loop {
            match manager.changed().await {
                Ok(_) => return "another replica holds it".to_string(),
                Err(error) => {
                    tracing::warn!(%error, "could not renew the leader Lease; retrying while it is valid");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let lease_api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let outcome = tokio::select! {
        () = lead(shutdown.clone()) => Ok(()),
        reason = renewals => Err(election.lost(reason)),
        reason = guard(&lease_api, &election) => Err(election.lost(reason)),
    };
    leader_gauge.set(0);
    match outcome {
        Ok(()) => {
            // Stopped by the shutdown signal: hand over without waiting for the Lease to expire.
            match manager.release().await {
                Ok(()) => tracing::info!("released the leader Lease"),
                Err(error) => tracing::warn!(%error, "could not release the leader Lease; it expires on its own"),
            }
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "leadership lost");
            Err(error)
        }
    }
}

/// Waits until this replica holds the Lease: the manager that holds it, or `None` on shutdown.
///
/// Errors here are only logged: a standby does not act, so it can keep trying. The crate's
/// standby sleeps until the Lease it last read expires, so it would miss a Lease released early
/// (a leader stopping on SIGTERM); a fresh manager every retry period reads the Lease again, so a
/// released Lease is taken within that period.
async fn stand_by<S>(
    client: &Client,
    election: &Election,
    mut manager: LeaseManager,
    shutdown: S,
) -> Option<LeaseManager>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = shutdown.clone() => return None,
            changed = manager.changed() => match changed {
                Ok(true) => return Some(manager),
                Ok(false) => delay = Duration::from_secs(1),
                Err(error) => {
                    tracing::warn!(%error, ?delay, "could not take part in leader election; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            },
            _ = tokio::time::sleep(election.retry_period()) => {
                manager = build_manager(client, election, shutdown.clone()).await?;
            }
        }
    }
}

/// The `sluice_leader` gauge (1 while this replica leads), registered once per metrics registry.
pub fn leader_gauge(metrics: &Metrics) -> IntGauge {
    let gauge = IntGauge::new("sluice_leader", "1 while this replica holds the leader Lease and runs the controllers.")
        .expect("valid metric");
    // A second registration (a second election in one process, as in tests) keeps the first.
    let _ = metrics.registry.register(Box::new(gauge.clone()));
    gauge
}

/// Builds the lease manager (which reads the Lease and creates it when missing), retrying with
/// back-off until it works or `shutdown` resolves (then `None`).
async fn build_manager(
    client: &Client,
    election: &Election,
    shutdown: impl Future<Output = ()>,
) -> Option<LeaseManager> {
    let shutdown = shutdown.fuse();
    futures::pin_mut!(shutdown);
    let mut delay = Duration::from_secs(1);
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            .with_field_manager(format!("sluice-operator/{}", election.identity))
            .with_duration(election.lease_duration.as_secs())
            .with_grace(election.renew_grace.as_secs())
            .build()
            .await;
        match built {
            Ok(manager) => return Some(manager),
            Err(error) => tracing::error!(%error, lease = %election.lease_name, namespace = %election.namespace,
                ?delay, "could not read or create the leader Lease (RBAC: get, create, patch on leases)"),
        }
        tokio::select! {
            _ = &mut shutdown => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Reads the Lease every [`Election::retry_period`] while leading; returns why leadership is
/// lost as soon as another replica holds the Lease ([`still_leading`]), or when the Lease, as last
/// seen, would expire before the next read: then a standby may take over any moment, so this
/// replica must stop first. A failed read is tolerated until then.
async fn guard(api: &Api<Lease>, election: &Election) -> String {
    let period = election.retry_period();
    let duration = SignedDuration::try_from(election.lease_duration).unwrap_or(SignedDuration::MAX);
    let margin = SignedDuration::try_from(period).unwrap_or(SignedDuration::MAX);
    // The crate renewed the Lease just before reporting leadership.
    let mut valid_until = Timestamp::now() + duration;
    loop {
        tokio::time::sleep(period).await;
        match tokio::time::timeout(period, api.get(&election.lease_name)).await {
            Ok(Ok(lease)) => match still_leading(lease.spec.as_ref(), &election.identity, duration) {
                Ok(until) => valid_until = until,
                Err(reason) => return reason,
            },
            Ok(Err(error)) => tracing::warn!(%error, "could not read the leader Lease"),
            Err(_) => tracing::warn!(?period, "reading the leader Lease timed out"),
        }
        if Timestamp::now() + margin >= valid_until {
            return format!("it expires at {valid_until} and was not renewed in time");
        }
    }
}

/// Pure decision of the guard: `Ok(expiry)` while `identity` holds the Lease described by `spec`,
/// else why not.
pub fn still_leading(spec: Option<&LeaseSpec>, identity: &str, duration: SignedDuration) -> Result<Timestamp, String> {
    let holder = spec.and_then(|s| s.holder_identity.as_deref());
    if holder != Some(identity) {
        return Err(match holder {
            Some(other) => format!("it is now held by {other}"),
            None => "it has no holder".to_string(),
        });
    }
    match spec.and_then(|s| s.renew_time.as_ref()) {
        Some(renewed) => Ok(renewed.0 + duration),
        None => Err("it has no renew time".to_string()),
    }
}

/// The controllers, run only while this replica leads (see [`run`]). `/readyz` (`ready`) is up
/// once the replica takes part in the election; while it leads, it follows the controllers' own
/// readiness (CRDs established, caches synced).
pub async fn run_controllers<S>(
    client: Client,
    election: Election,
    settings: Settings,
    metrics: Metrics,
    ready: Readiness,
    shutdown: S,
) -> Result<(), LeaderError>
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let controllers_ready = Readiness::default();
    let lead = |stop: S| async {
        let controllers = controller::run(client.clone(), settings, metrics.clone(), controllers_ready.clone(), stop);
        tokio::select! {
            () = controllers => {}
            () = mirror_readiness(controllers_ready.clone(), ready.clone()) => {}
        }
    };
    run(client.clone(), election, &metrics, ready.clone(), shutdown, lead).await
}

/// Copies `from` into `to` twice a second. Never returns.
async fn mirror_readiness(from: Readiness, to: Readiness) {
    loop {
        to.set(from.get());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn args(elect: bool, duration: u64, grace: u64) -> LeaderElectionArgs {
        LeaderElectionArgs {
            leader_elect: elect,
            leader_election_lease_name: "sluice-operator".into(),
            leader_election_namespace: None,
            leader_election_lease_duration_seconds: duration,
            leader_election_renew_grace_seconds: grace,
        }
    }

    #[test]
    fn off_unless_asked() {
        assert_eq!(Election::from_args(&args(false, 15, 5), Some("pod-a"), "default").unwrap(), None);
    }

    #[test]
    fn identity_is_the_pod_name_and_namespace_defaults_to_the_clients() {
        let election = Election::from_args(&args(true, 15, 5), Some("sluice-7d9-abcde"), "sluice-system")
            .unwrap()
            .expect("enabled");
        assert_eq!(election.identity, "sluice-7d9-abcde");
        assert_eq!(election.namespace, "sluice-system");
        assert_eq!(election.lease_duration, Duration::from_secs(15));
        assert_eq!(election.retry_period(), Duration::from_secs(2));
        let local = Election::from_args(&args(true, 15, 5), None, "default").unwrap().unwrap();
        assert!(local.identity.ends_with(&format!("-{}", std::process::id())), "{}", local.identity);
    }

    #[test]
    fn grace_must_be_shorter_than_the_lease() {
        for (duration, grace) in [(15, 15), (15, 20), (15, 0)] {
            let error = Election::from_args(&args(true, duration, grace), None, "default").unwrap_err();
            assert!(error.to_string().contains("renew grace"), "{error}");
        }
    }

    #[test]
    fn guard_sees_another_holder_a_released_lease_and_the_expiry() {
        let renewed: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let spec = |holder: Option<&str>| LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        };
        let fifteen = SignedDuration::from_secs(15);
        assert_eq!(still_leading(Some(&spec(Some("me"))), "me", fifteen), Ok(renewed + fifteen));
        assert_eq!(still_leading(Some(&spec(Some("other"))), "me", fifteen), Err("it is now held by other".into()));
        assert_eq!(still_leading(Some(&spec(None)), "me", fifteen), Err("it has no holder".into()));
        assert!(still_leading(None, "me", fifteen).is_err());
    }
}
