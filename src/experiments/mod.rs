//! `bwb experiments`: the context benchmark. An experiments file (`file.rs`) names model ×
//! dataset × task × mode × metrics; `plan.rs` checks all of it and estimates tokens and cost
//! (`--dry-run` stops there); `run.rs` generates through the same eval path as `bwb eval`
//! (prediction files, response cache, retries, cost limit); `output.rs` scores each example
//! with the task's scorer and writes the per-example JSONL and the summary JSON/CSV;
//! `compare.rs` sets each compressed experiment against its baseline, example by example.

pub mod bertscore;
pub mod compare;
pub mod compression;
pub mod file;
pub mod output;
pub mod plan;
pub mod run;
