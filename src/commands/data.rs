//! `bwb download` and `bwb prepare`.

use anyhow::{Context, Result};

use crate::cli::{PrepareArgs, TaskArgs};
use crate::data::download::download_task;
use crate::data::prepare::prepare_task;
use crate::paths::display;
use crate::settings::Settings;

pub fn download(settings: &Settings, args: &TaskArgs) -> Result<()> {
    let tasks = settings.configs.select_tasks(&args.task)?;
    // Smoke runs read the fixture datasets through the same hub code, offline.
    let hub = super::hub_for(settings)?;
    for task in tasks {
        let dir = settings.paths.raw(&task.id);
        let m = download_task(&hub, task, &dir)
            .with_context(|| format!("bwb download --task {}", task.id))?;
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
    let tasks = settings.configs.select_tasks(&args.task.task)?;
    let seed = settings.seed_or(args.seed);
    for task in tasks {
        let m = prepare_task(task, &settings.paths, seed)
            .with_context(|| format!("bwb prepare --task {}", task.id))?;
        println!(
            "{}: train {} (lora-500: first {}), val {}, test {} → {}",
            task.id,
            m.train,
            m.train_500,
            m.val,
            m.test,
            display(&settings.paths.root, &settings.paths.prepared(&task.id))
        );
    }
    Ok(())
}
