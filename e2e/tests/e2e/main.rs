//! End-to-end tests of Sluice against a real Kubernetes control plane (see the harness in
//! `e2e/src`). One test binary, so the control plane and the operator start once.

mod backfills;
mod bad_input;
mod cost;
mod datasets;
mod dry_run;
mod exactly_once;
mod kueue;
mod late;
mod lineage;
mod malformed;
mod operator_process;
mod pause;
mod pipelines;
mod plugin;
mod pod_security;
mod ready;
mod real_node;
mod writes;
