//! bwb — should I ship a small fine-tuned open model or pay for a frontier API?
//!
//! Data flow: `Example → Prompt → Backend → Prediction → Metric → Summary → Dashboard`.
//! This crate is both the `bwb` binary and a library so the integration tests can reach
//! the pieces directly.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod compress;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod error;
pub mod eval;
pub mod exec;
pub mod experiments;
pub mod fsutil;
pub mod hub;
pub mod kernels;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod plan;
pub mod progress;
pub mod prompt;
pub mod report;
pub mod score;
pub mod serve;
pub mod settings;
pub mod track;
pub mod train;
