//! `bwb download` and `bwb prepare`.

use anyhow::{Context, Result};

use crate::cli::{PrepareArgs, TaskArgs};
use crate::data::download::{self, Downloaded};
use crate::data::prepare::{prepare_eval_only, prepare_task};
use crate::paths::display;
use crate::settings::Settings;

pub fn download(settings: &Settings, args: &TaskArgs) -> Result<()> {
    let tasks = settings.configs.select_data(&args.task)?;
    // Smoke runs read the fixture datasets through the same hub code, offline.
    let hub = super::hub_for(settings)?;
    for task in tasks {
        let dir = settings.paths.raw(&task.id);
        let root = &settings.paths.root;
        let m = match download::download(&hub, task, root, &dir)
            .with_context(|| format!("bwb download --task {}", task.id))?
        {
            Downloaded::Hub(m) => m,
            Downloaded::Local(file) => {
                println!(
                    "{}: local file {}: nothing to download; `bwb prepare --task {}` reads it directly",
                    task.id,
                    display(root, &file),
                    task.id
                );
                continue;
            }
        };
        let counts: Vec<String> = m
            .splits
            .iter()
            .map(|(s, r)| format!("{s} {}", r.rows))
            .collect();
        println!(
            "{}: {} → {} ({})",
            task.id,
            m.repo,
            display(&settings.paths.root, &dir),
            counts.join(", ")
        );
    }
    Ok(())
}

pub fn prepare(settings: &Settings, args: &PrepareArgs) -> Result<()> {
    let tasks = settings.configs.select_data(&args.task.task)?;
    let seed = settings.seed_or(args.seed);
    for task in tasks {
        let out = display(&settings.paths.root, &settings.paths.prepared(&task.id));
        if task.is_eval_only() {
            let m = prepare_eval_only(task, &settings.paths)
                .with_context(|| format!("bwb prepare --task {}", task.id))?;
            let counts: Vec<String> = m.splits.iter().map(|(s, n)| format!("{s} {n}")).collect();
            println!(
                "{}: eval-only, {} examples (evaluated split: {}) → {out}",
                task.id,
                counts.join(", "),
                m.eval_split
            );
            continue;
        }
        let m = prepare_task(task, &settings.paths, seed)
            .with_context(|| format!("bwb prepare --task {}", task.id))?;
        if let Some(file) = task.source.local_file(&settings.paths.root) {
            let rows: usize = m.raw_rows.values().sum();
            println!(
                "{}: local file {}: {rows} rows read",
                task.id,
                display(&settings.paths.root, &file)
            );
        }
        println!(
            "{}: train {} (lora-500: first {}), val {}, test {} → {out}",
            task.id, m.train, m.train_500, m.val, m.test,
        );
    }
    Ok(())
}
