//! One thin function per subcommand: resolve settings, call the library, print a summary.

mod bench;
mod data;
mod eval;
mod experiments;
mod export;
mod generate;
mod report;
mod serve;
mod sweep;
mod sync;
mod train;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::settings::Settings;
use crate::track::Tracker;

pub fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    // The fused ops decide inside every forward, where no settings travel: set them once.
    crate::kernels::configure(settings.kernels);
    if settings.paths.smoke {
        tracing::info!("smoke test: outputs go under */smoke/");
    }
    let tracker = match cli.command {
        Command::Train(_)
        | Command::Eval(_)
        | Command::Classify(_)
        | Command::Run(_)
        | Command::Experiments(_) => Tracker::new(&settings.tracking),
        _ => Tracker::disabled(),
    };
    let result = dispatch(&settings, cli.command, &tracker);
    // Tracking never changes the outcome: one line on what reached the server, or not.
    tracker.finish_and_report();
    result
}

fn dispatch(settings: &Settings, command: Command, tracker: &Tracker) -> Result<()> {
    match command {
        Command::Download(args) => data::download(settings, &args),
        Command::Prepare(args) => data::prepare(settings, &args),
        Command::Train(args) => {
            check_model_and_task(settings, &args.target.model, &args.target.task)?;
            train::train(settings, &args, tracker)
        }
        Command::Eval(args) => {
            check_model_and_task(settings, &args.target.model, &args.target.task)?;
            eval::eval(settings, &args, tracker)
        }
        Command::Classify(args) => {
            report::classify(settings, &args.task, args.seeds, &args.exec, tracker)
        }
        Command::Dashboard(args) => report::dashboard(settings, &args),
        Command::Run(args) => match (&args.manifest, &args.cell) {
            (Some(m), Some(c)) => sweep::run_cell(settings, &args, m, c, tracker),
            _ => report::run(settings, &args, tracker),
        },
        Command::Plan(args) => sweep::plan(settings, &args),
        Command::Collect(args) => sweep::collect(settings, &args),
        Command::Generate(args) => generate::generate(settings, &args),
        Command::Export(args) => export::export(settings, &args),
        Command::Serve(args) => serve::serve(settings, &args),
        Command::Experiments(args) => experiments::experiments(settings, &args, tracker),
        Command::Sync(args) => sync::sync(settings, &args),
        Command::Bench(cmd) => bench::run(settings, &cmd),
    }
}

/// The hub the data commands download through: the fixture cache, offline, in smoke runs.
pub(crate) fn hub_for(settings: &Settings) -> Result<crate::data::download::Hub> {
    let hub_settings = if settings.paths.smoke {
        crate::settings::HubSettings {
            cache_dir: settings.paths.smoke_hub_cache(),
            token: None,
            offline: true,
            endpoint: None,
        }
    } else {
        settings.hub.clone()
    };
    Ok(crate::data::download::Hub::new(&hub_settings)?)
}

/// Reject an unknown model or task up front, listing the valid ones. A model may also be a
/// local HF directory or a .gguf file, which the engine checks when it loads it.
fn check_model_and_task(settings: &Settings, model: &str, task: &str) -> Result<()> {
    if !std::path::Path::new(model).exists() {
        settings.configs.model(model)?;
    }
    settings.configs.select_tasks(task)?;
    Ok(())
}
