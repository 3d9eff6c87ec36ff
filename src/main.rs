//! `bwb`: parse, run, print the error chain once, map to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bwb::cli::Cli::parse();
    bwb::logging::init(cli.global.verbose);
    match bwb::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", bwb::error::one_line(&err));
            ExitCode::from(bwb::error::exit_code(&err))
        }
    }
}
