//! Faults on the local cluster while Sluice works: the operator SIGKILLed at random moments
//! (`chaos/kills.rs`), kube-apiserver and etcd stopped and started again (`chaos/restart.rs`),
//! the leader of two replicas killed mid-backfill (`chaos/failover.rs`). Each runs the workload
//! of `chaos/workload.rs` and proves from a watch and from the API server's audit log that
//! nothing ran twice, nothing was lost, the quota held and the status converged.
//!
//! A test binary of its own that starts no shared operator: every operator here is a process its
//! test kills or restarts, watching only the test's namespace. The restart tests stop the API
//! server for the whole cluster, so they run alone ([`exclusive`]); the others may run together
//! ([`shared`]).

use std::sync::OnceLock;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[path = "chaos/failover.rs"]
mod failover;
#[path = "chaos/kills.rs"]
mod kills;
#[path = "chaos/restart.rs"]
mod restart;
#[path = "chaos/workload.rs"]
mod workload;

fn lock() -> &'static RwLock<()> {
    static LOCK: OnceLock<RwLock<()>> = OnceLock::new();
    LOCK.get_or_init(|| RwLock::new(()))
}

/// Held by tests that need the API server up throughout.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    lock().read().await
}

/// Held by tests that stop part of the control plane.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    lock().write().await
}
