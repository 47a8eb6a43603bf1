//! Sluice: a Kubernetes operator for ELT pipelines.
//!
//! The library (`sluice`; the package is `sluice-operator` because the binary is the operator)
//! holds everything but the command line:
//! - the CRD types and condition types: [`api`];
//! - pure deciding code, no client and no clock: [`plan`] (what to do for each kind),
//!   [`schedule`] (cron, windows, run ids), [`quota`] (the admission rule), [`validation`],
//!   [`tenancy`], [`duration`], [`report`] (step termination reports), [`jobs`] (building step
//!   Jobs and their names), [`text`] (clipping bounded fields);
//! - the act layer, which applies a decision with the write-order rules: [`act`];
//! - the shell: [`controller`] (watches, caches, the kube-backed act traits, Events),
//!   [`leader`] (Lease election), [`lineage`] (OpenLineage delivery), [`metrics`], [`server`]
//!   (health and metrics endpoints), [`telemetry`] (logging), [`error`].

pub mod act;
pub mod api;
pub mod controller;
pub mod cost;
pub mod duration;
pub mod error;
pub mod jobs;
pub mod kueue;
pub mod leader;
pub mod lineage;
pub mod metrics;
pub mod plan;
pub mod quota;
pub mod report;
pub mod schedule;
pub mod server;
pub mod telemetry;
pub mod tenancy;
pub mod text;
pub mod validation;
