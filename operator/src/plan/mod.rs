//! Deciding functions: spec + observed state + now -> what to write. Pure: no client, no clock.

pub mod backfill;
pub mod dataset;
pub mod dataset_events;
pub mod failures;
pub mod late;
pub mod pipeline;
pub mod pipeline_events;
pub mod ready;
pub mod retry;
pub mod runs;
