//! `bwb plan` (a sweep's manifest and engine files), `bwb run --manifest M --cell ID` (one
//! cell, resumable, into its own results folder) and `bwb collect` (the finished cells merged
//! into one report).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::report::{classify_tasks, dashboard, exec_options, grid, no_publish, run_stages};
use crate::cli::{CollectArgs, PlanArgs, RunArgs};
use crate::config::ModelKind;
use crate::error::Error;
use crate::hub::sync::{pull_dir, DirSync};
use crate::paths::display;
use crate::plan::cell_sync::{self, CellSync};
use crate::plan::{self, Cell, Engine, EngineFiles, Results};
use crate::settings::Settings;
use crate::track::Tracker;

/// An absolute form of `p` (relative to the current directory).
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
}

/// The `bwb` arguments that run `cell` on its own.
fn cell_args(smoke: bool, cell: &Cell) -> Vec<String> {
    let mut a = Vec::new();
    if smoke {
        a.push("--smoke-test".to_string());
    }
    a.extend(
        [
            "run",
            "--models",
            &cell.model,
            "--tasks",
            &cell.task,
            "--conditions",
            &cell.condition,
            "--seeds",
            &cell.seeds.len().to_string(),
        ]
        .map(String::from),
    );
    if cell.allow_code_execution {
        a.push("--allow-code-execution".into());
    }
    a
}

pub fn plan(settings: &Settings, args: &PlanArgs) -> Result<()> {
    let (models, tasks, seeds) = grid(
        settings,
        &args.models,
        &args.tasks,
        &args.conditions,
        args.seeds,
    )?;
    let out = absolute(&args.out)?;
    let sweep = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "--out {}: name a folder, e.g. sweeps/full-2026-06/",
                args.out.display()
            ))
        })?;
    let results = match &args.results {
        Some(r) => match Results::parse(r)? {
            Results::Local(p) => absolute(&p)?.display().to_string(),
            Results::Hub(_) | Results::Bucket(_) => r.trim().to_string(),
        },
        None => out.join("results").display().to_string(),
    };
    if args.engine == Engine::Skypilot {
        if let Results::Local(p) = Results::parse(&results)? {
            return Err(Error::Config(format!(
                "--results {}: SkyPilot cells run on cloud machines whose disks go away; give hf:ORG/REPO, s3://BUCKET/PATH or r2://BUCKET/PATH",
                p.display()
            ))
            .into());
        }
    }
    let smoke = settings.paths.smoke;
    let mut cells = Vec::new();
    for pm in &models {
        for task in &tasks {
            let files = plan::config_files(&settings.paths.root, &pm.model, &task.id)?;
            for cond in &pm.conditions {
                let mut cell = Cell {
                    cell_id: plan::cell_id(&pm.model, &task.id, cond.name(), seeds, smoke, &files),
                    model: pm.model.clone(),
                    task: task.id.clone(),
                    condition: cond.name().to_string(),
                    seeds: seeds.to_vec(),
                    smoke,
                    needs_gpu: pm.kind == ModelKind::Local,
                    allow_code_execution: args.allow_code_execution,
                    args: Vec::new(),
                    results: results.clone(),
                };
                cell.args = cell_args(smoke, &cell);
                cells.push(cell);
            }
        }
    }
    if cells.is_empty() {
        return Err(Error::Config(
            "the plan has no cells (API models have no LoRA conditions); widen --models or --conditions".into(),
        )
        .into());
    }
    // GPU cells first: the Slurm arrays index the manifest by line.
    cells.sort_by_key(|c| !c.needs_gpu);
    let accelerators: Vec<String> = args
        .accelerators
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let files = plan::engine_files(
        args.engine,
        &EngineFiles {
            sweep: &sweep,
            cells: &cells,
            accelerators: &accelerators,
            image: &args.image,
            cpu_image: &args.cpu_image,
            max_parallel: args.max_parallel,
            root: &settings.paths.root,
        },
    )?;
    crate::fsutil::write_jsonl_atomic(&out.join(plan::MANIFEST), &cells)?;
    for (name, text, exec) in &files {
        let path = out.join(name);
        crate::fsutil::write_bytes_atomic(&path, text.as_bytes())?;
        if *exec {
            make_executable(&path)?;
        }
    }
    let gpu = cells.iter().filter(|c| c.needs_gpu).count();
    println!(
        "plan `{sweep}`: {} cells ({gpu} GPU, {} API-only) → {}; results → {results}",
        cells.len(),
        cells.len() - gpu,
        display(&settings.paths.root, &out.join(plan::MANIFEST)),
    );
    println!(
        "submit with: {}",
        display(&settings.paths.root, &out.join("submit.sh"))
    );
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// A cell's own results folder: under the manifest's results folder (a bucket's mount), or,
/// for hub results, under the root's sweep-cells/ (mirrored in the repo's cells/).
fn cell_dir(settings: &Settings, cell: &Cell) -> Result<PathBuf> {
    Ok(Results::parse(&cell.results)?
        .local_dir(&settings.paths.root)?
        .join(&cell.cell_id))
}

/// The hub mirror of a cell's folder, when its results go to the hub.
fn cell_sync(settings: &Settings, cell: &Cell, dir: &Path) -> Result<Option<CellSync>> {
    Ok(match Results::parse(&cell.results)? {
        Results::Hub(repo) => Some(CellSync::new(
            &settings.hub,
            &repo,
            &cell.cell_id,
            dir,
            settings.hub_retry()?,
        )),
        Results::Local(_) | Results::Bucket(_) => None,
    })
}

pub fn run_cell(
    settings: &Settings,
    args: &RunArgs,
    manifest: &Path,
    id: &str,
    tracker: &Tracker,
) -> Result<()> {
    let cells = plan::read_manifest(manifest)?;
    let cell = plan::find_cell(&cells, manifest, id)?;
    let name = format!("{}/{}/{}", cell.model, cell.task, cell.condition);
    if cell.smoke != settings.paths.smoke {
        let how = if cell.smoke {
            "bwb --smoke-test run"
        } else {
            "bwb run (without --smoke-test)"
        };
        return Err(Error::Config(format!(
            "--cell {id}: planned {} a smoke test; run it as `{how} --manifest {} --cell {id}`",
            if cell.smoke { "as" } else { "not as" },
            manifest.display()
        ))
        .into());
    }
    let files = plan::config_files(&settings.paths.root, &cell.model, &cell.task)?;
    let now = plan::cell_id(
        &cell.model,
        &cell.task,
        &cell.condition,
        &cell.seeds,
        cell.smoke,
        &files,
    );
    if now != cell.cell_id {
        return Err(Error::Config(format!(
            "--cell {id}: the configs or prompts of {name} changed since `bwb plan` (now {now}); plan the sweep again"
        ))
        .into());
    }
    let dir = cell_dir(settings, cell)?;
    let sync = cell_sync(settings, cell, &dir)?;
    if let Some(s) = &sync {
        s.pull()?;
    }
    let done = dir.join(plan::DONE_MARKER);
    if done.is_file() {
        println!("cell {id} ({name}): finished; nothing to do");
        if let Some(s) = &sync {
            s.push("finished")?; // a push that failed last time; else nothing to send
        }
        return Ok(());
    }
    let failed = dir.join(plan::FAILED_MARKER);
    if failed.is_file() {
        std::fs::remove_file(&failed)
            .with_context(|| format!("cannot remove {}", failed.display()))?;
    }
    println!("cell {id} ({name}) → {}", dir.display());
    let mut cell_settings = settings.clone();
    cell_settings.paths = settings.paths.with_out(&dir);
    let mut run_args = args.clone();
    run_args.manifest = None;
    run_args.cell = None;
    run_args.models = Some(cell.model.clone());
    run_args.tasks = Some(cell.task.clone());
    run_args.conditions = Some(cell.condition.clone());
    run_args.seeds = Some(cell.seeds.len());
    run_args.exec.allow_code_execution |= cell.allow_code_execution;
    let pusher = match &sync {
        Some(s) => Some(s.push_every(cell_sync::push_period()?)),
        None => None,
    };
    let ran = run_stages(&cell_settings, &run_args, tracker);
    drop(pusher);
    if let Err(e) = ran {
        let record = serde_json::json!({
            "cell_id": id, "model": cell.model, "task": cell.task,
            "condition": cell.condition, "error": format!("{e:#}"),
        });
        // Best effort: the error itself is what the caller sees.
        let _ = crate::fsutil::write_json_atomic(&failed, &record);
        if let Some(Err(push)) = sync.as_ref().map(|s| s.push("failed")) {
            tracing::warn!("{push}");
        }
        return Err(e.context(format!("cell {id} ({name})")));
    }
    let record = serde_json::json!({
        "cell_id": id, "model": cell.model, "task": cell.task, "condition": cell.condition,
        "seeds": cell.seeds, "finished_at": chrono::Utc::now().to_rfc3339(),
    });
    crate::fsutil::write_json_atomic(&done, &record)?;
    println!("cell {id} ({name}): finished");
    if let Some(s) = &sync {
        s.push("finished")?;
    }
    Ok(())
}

/// Where a cell stands in a results folder.
#[derive(Debug, PartialEq)]
enum CellState {
    Done,
    Failed(String),
    Unfinished,
    Missing,
}

fn cell_state(dir: &Path) -> CellState {
    if dir.join(plan::DONE_MARKER).is_file() {
        return CellState::Done;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(plan::FAILED_MARKER)) {
        let err = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| "unreadable failure record".into());
        return CellState::Failed(err);
    }
    if dir.is_dir() {
        CellState::Unfinished
    } else {
        CellState::Missing
    }
}

/// How to relaunch one cell with the sweep's engine (and by hand).
fn relaunch(sweep: &Path, cells: &[Cell], cell: &Cell) -> String {
    let by_hand = format!(
        "bwb {} --manifest {} --cell {}",
        if cell.smoke {
            "--smoke-test run"
        } else {
            "run"
        },
        plan::shell_quote(&sweep.join(plan::MANIFEST).display().to_string()),
        cell.cell_id
    );
    let kind = if cell.needs_gpu { "gpu" } else { "cpu" };
    let sweep_q = plan::shell_quote(&sweep.display().to_string());
    if sweep.join(format!("bwb-{kind}.sky.yaml")).is_file() {
        return format!(
            "(cd {sweep_q} && sky jobs launch --yes --env-file cells/{id}.env --secret HF_TOKEN bwb-{kind}.sky.yaml), or by hand: {by_hand}",
            id = cell.cell_id
        );
    }
    if sweep.join(format!("bwb-{kind}.sbatch")).is_file() {
        let same_kind: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.needs_gpu == cell.needs_gpu)
            .collect();
        if let Some(i) = same_kind.iter().position(|c| c.cell_id == cell.cell_id) {
            return format!(
                "(cd {sweep_q} && sbatch --array={i} bwb-{kind}.sbatch), or by hand: {by_hand}"
            );
        }
    }
    by_hand
}

pub fn collect(settings: &Settings, args: &CollectArgs) -> Result<()> {
    let manifest = args.sweep.join(plan::MANIFEST);
    let cells = plan::read_manifest(&manifest)?;
    let Some(first) = cells.first() else {
        return Err(Error::MissingInput(format!(
            "{}: no cells; plan the sweep again with `bwb plan`",
            manifest.display()
        ))
        .into());
    };
    if first.smoke != settings.paths.smoke {
        return Err(Error::Config(format!(
            "{}: planned {} a smoke test; collect it {} --smoke-test",
            manifest.display(),
            if first.smoke { "as" } else { "not as" },
            if first.smoke { "with" } else { "without" },
        ))
        .into());
    }
    let from = match &args.from {
        Some(f) => f.as_str(),
        None => first.results.as_str(),
    };
    let from = cells_folder(settings, &cells, from)?;
    let mut done = Vec::new();
    let mut not_done = 0;
    for cell in &cells {
        let dir = from.join(&cell.cell_id);
        let name = format!("{}/{}/{}", cell.model, cell.task, cell.condition);
        let state = cell_state(&dir);
        let what = match &state {
            CellState::Done => {
                done.push((cell, dir));
                continue;
            }
            CellState::Failed(e) => format!("failed ({e})"),
            CellState::Unfinished => "unfinished (no completion marker)".to_string(),
            CellState::Missing => "missing".to_string(),
        };
        not_done += 1;
        println!(
            "cell {} ({name}): {what}; relaunch: {}",
            cell.cell_id,
            relaunch(&args.sweep, &cells, cell)
        );
    }
    if not_done > 0 && !args.partial {
        return Err(Error::MissingInput(format!(
            "{not_done} of {} cells of {} not finished under {}; relaunch them (listed above) or pass --partial to report the finished ones",
            cells.len(),
            manifest.display(),
            from.display()
        ))
        .into());
    }
    // Predictions and training records of every finished cell into this project's results.
    let results = settings.paths.results();
    for (_, dir) in &done {
        let cell_results = settings.paths.with_out(dir).results();
        for sub in ["predictions", "training"] {
            let src = cell_results.join(sub);
            if src.is_dir() {
                copy_tree(&src, &results.join(sub))?;
            }
        }
    }
    println!(
        "collect: {} of {} cells merged from {} → {}",
        done.len(),
        cells.len(),
        from.display(),
        display(&settings.paths.root, &results)
    );
    let mut task_ids: Vec<&str> = Vec::new();
    for (c, _) in &done {
        if !task_ids.contains(&c.task.as_str()) {
            task_ids.push(&c.task);
        }
    }
    let tasks = settings.configs.select_tasks(&task_ids.join(","))?;
    let mut opts = exec_options(&args.exec)?;
    opts.allow_code_execution |= done.iter().any(|(c, _)| c.allow_code_execution);
    opts.seeds = first.seeds.clone();
    println!("==> classify");
    classify_tasks(settings, &tasks, &opts, &Tracker::disabled())?;
    println!("==> dashboard");
    dashboard(settings, &no_publish())
}

/// The local folder holding the cells' folders of results location `from`: a folder itself,
/// a bucket's mount, or the root's sweep-cells/ after pulling the cells' results (not their
/// checkpoints) from a hub repo.
fn cells_folder(settings: &Settings, cells: &[Cell], from: &str) -> Result<PathBuf> {
    let results = Results::parse(from)?;
    let dir = results.local_dir(&settings.paths.root)?;
    let Results::Hub(repo) = &results else {
        return Ok(dir);
    };
    let ids: BTreeSet<&str> = cells.iter().map(|c| c.cell_id.as_str()).collect();
    let skip = |rel: &str| match rel.split_once('/') {
        Some((id, rest)) => {
            !ids.contains(id) || rest.starts_with("checkpoints/") || rest.starts_with("data/")
        }
        None => true,
    };
    let spec = DirSync {
        repo,
        local: &dir,
        prefix: plan::HUB_CELLS,
        skip: &skip,
        retry: settings.hub_retry()?,
    };
    let r = pull_dir(&settings.hub, &spec, false)
        .map_err(|e| Error::Download(format!("collecting the cells from hf:{repo}: {e}")))?;
    println!(
        "collect: pulled {} file(s) from hf:{repo}/{} ({} already here)",
        r.transferred.len(),
        plan::HUB_CELLS,
        r.unchanged
    );
    Ok(dir)
}

/// Copy every file under `from` to the same place under `to` (replacing what is there).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    crate::fsutil::create_dir_all(to)?;
    let entries =
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", from.display()))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}
