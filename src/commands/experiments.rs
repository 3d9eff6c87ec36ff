//! `bwb experiments`: check the experiments file, print the plan, and (unless `--dry-run`)
//! run the selected experiments serially or concurrently.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::ExperimentsArgs;
use crate::experiments::file;
use crate::experiments::plan::{self, Catalog};
use crate::experiments::run::{self, RunOptions};
use crate::paths::display;
use crate::settings::{EngineUse, Settings};

pub fn experiments(settings: &Settings, args: &ExperimentsArgs) -> Result<()> {
    let path = args
        .config
        .clone()
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                settings.paths.root.join(p)
            }
        })
        .unwrap_or_else(|| settings.paths.configs().join("experiments.yaml"));
    let loaded = file::load(&path)?;
    let catalog = Catalog::from_configs(&settings.configs);
    let plans = plan::plan(
        &loaded,
        &catalog,
        &settings.configs,
        &settings.env,
        &args.experiment_id,
        &args.tag,
    )?;
    let est = plan::estimate(&plans, &settings.paths)?;
    plan::print_plan(&est);
    if args.dry_run {
        println!(
            "dry run: {} checked, nothing sent",
            display(&settings.paths.root, &path)
        );
        return Ok(());
    }
    let engine = settings.engine(&args.engine, EngineUse::Eval)?;
    let mut api = settings.api(&args.api)?;
    if api.max_cost_usd.is_none() {
        api.max_cost_usd = loaded.file.defaults.max_cost_usd;
    }
    if args.api.concurrency.is_none() {
        if let Some(c) = loaded.file.defaults.concurrency {
            api.concurrency = c;
        }
    }
    let opts = RunOptions {
        paths: &settings.paths,
        hub: &settings.hub,
        engine: &engine,
        api: &api,
        batch_size: args.batch_size,
        verbose: settings.verbose,
    };
    let parallel = if args.parallel_experiments {
        true
    } else if args.serial_experiments {
        false
    } else {
        loaded.file.defaults.parallel.unwrap_or(false)
    };
    let results: Vec<(String, Result<run::Done>)> = if parallel && plans.len() > 1 {
        std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        s.spawn(|| run::run_experiment(settings, p, &opts)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(id, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("experiment `{id}` panicked")));
                    (id, r)
                })
                .collect()
        })
    } else {
        plans
            .iter()
            .map(|p| (p.id.clone(), run::run_experiment(settings, p, &opts)))
            .collect()
    };
    let mut results = results;
    // One experiment that failed: its error alone, on one line.
    if results.len() == 1 && results[0].1.is_err() {
        let (id, r) = results.remove(0);
        return r.map(|_| ()).with_context(|| format!("experiment `{id}`"));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut spent = 0.0;
    let mut summaries: Vec<PathBuf> = Vec::new();
    for (id, r) in results {
        match r {
            Ok(d) => {
                spent += d.spent_usd;
                println!(
                    "{id}: summary → {}",
                    display(&settings.paths.root, &d.summary)
                );
                summaries.push(d.summary);
            }
            Err(e) => {
                eprintln!("error: experiment `{id}`: {e:#}");
                failed.push(id);
            }
        }
    }
    println!("total spent this run: ${spent:.6}");
    if !failed.is_empty() {
        bail!(
            "{} of {} experiments failed: {}; fix the cause and run again (finished examples are kept)",
            failed.len(),
            plans.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
