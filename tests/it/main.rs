//! The integration-test binary: drives `bwb` as a user would, on fixture data in temporary
//! project roots, with a clean environment.

mod bench_serve;
mod bench_shapes;
mod bertscore;
mod chat_template;
mod cli;
mod common;
mod compress;
mod dashboard;
mod datasets;
mod download;
mod eval;
mod experiments;
mod export;
mod generate;
mod gguf_tokenizer;
mod hub_server;
mod kernels;
mod kernels_emu;
mod linear;
mod metrics;
mod model_reference;
mod peft;
mod prepare;
mod progress;
mod report;
mod sandbox;
mod scoring;
mod serve;
mod sweep;
mod sync;
mod sync_hub;
mod tracking;
mod train;
