//! `bwb bench …`: benchmark commands (never timed unit tests).

use anyhow::Result;

use crate::cli::BenchCommand;
use crate::settings::{resolve_device, EngineUse, Settings};

pub fn run(settings: &Settings, cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Infer(args) => {
            let engine = settings.engine(&args.bench.engine, EngineUse::BenchInfer)?;
            crate::bench::infer(settings, args, &engine)
        }
        BenchCommand::Train(args) => {
            let engine = settings.engine(&args.bench.engine, EngineUse::BenchTrain)?;
            crate::bench::train(settings, args, &engine)
        }
        BenchCommand::Compress(args) => {
            let engine = settings.engine(&args.bench.engine, EngineUse::BenchInfer)?;
            crate::bench::compress::run(settings, args, &engine)
        }
        BenchCommand::Kernels(args) => {
            let (device, dtype) = resolve_device(&args.device)?;
            crate::bench::kernels::run(args, device, dtype)
        }
        BenchCommand::Serve(args) => crate::bench::serve::run(args),
    }
}
