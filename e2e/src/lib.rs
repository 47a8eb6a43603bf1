//! Harness for Sluice's end-to-end tests against a real Kubernetes control plane.
//!
//! - [`cluster`] starts the local control plane once per test run (`e2e/cluster/up.sh`, a no-op
//!   when it is already up), or uses an existing cluster: `SLUICE_E2E_KUBECONFIG=<path>`, or
//!   `KUBECONFIG` with `SLUICE_E2E_EXISTING=1` (kind, k3d or a real cluster).
//! - [`operator`] installs the CRDs and runs the `sluice-operator` binary against it, unless
//!   `SLUICE_E2E_OPERATOR=external` says one is already deployed there.
//! - [`namespace`] gives each test a fresh namespace and removes it afterwards, also when the
//!   test fails.
//! - [`wait`] waits on conditions rather than sleeping.
//! - [`lineage`] receives the OpenLineage events of the operator it starts, on loopback.
//! - [`process`] runs operator processes a test controls (kill, restart, leader election).
//! - [`audit`] reads the API server's audit log: what was written, when, by which replica.
//! - [`bench`] is the benchmark harness (e2e/bench/compare.rs): Sluice beside its peers.
//! - [`postgres`] a PostgreSQL server of a test's own (Debian's package, a free port).
//! - [`kueue`] a real Kueue manager on the host, with its CRDs, for the Kueue tests.
//! - [`usage`] records the Jobs and pods of a namespace for peaks of concurrent pods.

pub mod audit;
pub mod bench;
pub mod cluster;
pub mod kueue;
pub mod lineage;
pub mod namespace;
pub mod operator;
pub mod postgres;
pub mod process;
pub mod real_node;
pub mod usage;
pub mod wait;
pub mod yaml;

pub use namespace::TestNamespace;

/// Runs `test` with the operator running, in a fresh namespace `sluice-e2e-<prefix>-<unique>`
/// that is deleted afterwards ([`setup`], then [`namespace::with_namespace`]).
pub async fn in_namespace<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = setup().await;
    namespace::with_namespace(&client, prefix, test).await;
}

/// Everything a test needs: a client for the cluster, with the operator running against it.
pub async fn setup() -> kube::Client {
    let kubeconfig = cluster::kubeconfig();
    let client = cluster::client(&kubeconfig).await;
    operator::ensure_running(&client, &kubeconfig).await;
    client
}
