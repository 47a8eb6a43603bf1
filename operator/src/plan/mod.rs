//! Deciding functions: spec + observed state + now -> what to write. Pure: no client, no clock.

pub mod pipeline;
pub mod ready;
pub mod runs;
