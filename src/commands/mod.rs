//! One thin function per subcommand: resolve settings, call the library, print a summary.

mod data;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::settings::Settings;

pub fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    if settings.paths.smoke {
        tracing::info!("smoke test: outputs go under */smoke/");
    }
    match cli.command {
        Command::Download(args) => data::download(&settings, &args),
        Command::Prepare(args) => data::prepare(&settings, &args),
        Command::Train(_) => Err(Error::NotImplemented("train").into()),
        Command::Eval(_) => Err(Error::NotImplemented("eval").into()),
        Command::Classify(_) => Err(Error::NotImplemented("classify").into()),
        Command::Dashboard => Err(Error::NotImplemented("dashboard").into()),
        Command::Run(_) => Err(Error::NotImplemented("run").into()),
        Command::Generate(_) => Err(Error::NotImplemented("generate").into()),
    }
}
