//! Install paths and high availability: the Helm chart (lint, schema, generated files, rendered
//! objects), the chart on the local cluster (server-side dry run, install, upgrade, `helm test`,
//! uninstall, CRD upgrades, `kubectl apply` of manifests/install.yaml), the chart's alerts under
//! promtool and a real Prometheus, the operator's /metrics (lint, series of deleted objects), the chart's RBAC proven
//! enough and minimal by an operator impersonating its ServiceAccount, leader election with
//! failover, the Grafana dashboards (schema, PromQL, metric names, ConfigMaps), the Argo CD health
//! checks (under Lua 5.1 as Argo CD opens it, and through Argo CD's own CLI), kube-score and
//! checkov over the install manifests, and who a step may run as (the admission policy and the
//! operator, with an impersonated Pipeline author).
//!
//! A test binary of its own that starts no shared operator (it does not call
//! `sluice_e2e::setup()`): every operator here is started by its test, with the rights and
//! arguments that test gives it. Its modules live in `install/` (a test crate root resolves `mod`
//! beside itself, hence the `#[path]`s).

#[path = "install/alerts.rs"]
mod alerts;
#[path = "install/argocd.rs"]
mod argocd;
#[path = "install/argocd_cli.rs"]
mod argocd_cli;
#[path = "install/chart.rs"]
mod chart;
#[path = "install/checkers.rs"]
mod checkers;
#[path = "install/cluster.rs"]
mod cluster;
#[path = "install/dashboards.rs"]
mod dashboards;
#[path = "install/leader.rs"]
mod leader;
#[path = "install/lint.rs"]
mod lint;
#[path = "install/metrics.rs"]
mod metrics;
#[path = "install/objects.rs"]
mod objects;
#[path = "install/permissions.rs"]
mod permissions;
#[path = "install/prometheus.rs"]
mod prometheus;
#[path = "install/rbac.rs"]
mod rbac;
#[path = "install/real_node.rs"]
mod real_node;
#[path = "install/tenancy.rs"]
mod tenancy;
#[path = "install/tools.rs"]
mod tools;
