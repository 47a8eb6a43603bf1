//! Sluice: a Kubernetes operator for ELT pipelines.
//!
//! The library holds everything but the command line: the CRD types ([`api`]), the pure deciding
//! code ([`plan`], [`schedule`], [`validation`]) and the controllers that apply its decisions
//! ([`controller`]).

pub mod act;
pub mod api;
pub mod controller;
pub mod duration;
pub mod error;
pub mod jobs;
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
pub mod validation;
