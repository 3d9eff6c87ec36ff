//! `bwb bench …`: benchmark commands (never timed unit tests).

use anyhow::Result;

use crate::cli::BenchCommand;
use crate::settings::Settings;

pub fn run(settings: &Settings, cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Infer(args) => crate::bench::infer(settings, args),
        BenchCommand::Train(args) => crate::bench::train(settings, args),
        BenchCommand::Kernels(args) => crate::bench::kernels::run(args),
    }
}
