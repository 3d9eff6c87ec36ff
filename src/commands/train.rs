//! `bwb train`: QLoRA fine-tuning of a local model on a prepared task, per condition
//! (lora-500, lora-full); checkpoints resume on rerun; the record goes to
//! results/training/<model>_<task>_<condition>.json.

use anyhow::{Context, Result};

use crate::cli::TrainArgs;
use crate::config::TaskConfig;
use crate::data::prepare::read_split;
use crate::error::Error;
use crate::model::load;
use crate::paths::display;
use crate::prompt::task::TaskPrompt;
use crate::settings::{EngineSettings, EngineUse, Settings};
use crate::track::{self, RunStatus, Tracker};
use crate::train::metrics_log::MetricsSink;
use crate::train::{self, Condition, Job, RunOptions, TrainingRecord};

/// What to train, every setting resolved (`bwb train`, and `bwb run`'s train stage).
pub struct TrainPlan<'a> {
    /// `--model` as the user gave it.
    pub model: &'a str,
    pub tasks: Vec<&'a TaskConfig>,
    pub conditions: Vec<Condition>,
    pub seed: u64,
    pub engine: &'a EngineSettings,
    pub save_every: usize,
    pub stop_at_step: Option<usize>,
    /// Where runs are tracked (off: a no-op).
    pub tracker: &'a Tracker,
    /// `--auto-upload`: push each trained adapter here.
    pub upload: Option<AutoUpload>,
}

/// Where `--auto-upload` pushes: `<org>/bwb-<model>-<task>-<condition>`, a private model repo.
pub struct AutoUpload {
    pub org: String,
    pub retry: crate::backend::api::RetryPolicy,
}

/// Set it to 1 to let `--auto-upload` push from a smoke run (tests only).
pub const FORCE_SMOKE_UPLOAD: &str = "BWB_AUTO_UPLOAD_SMOKE";

/// `--auto-upload` resolved and checked before anything trains (org, token).
fn auto_upload(settings: &Settings, args: &TrainArgs) -> Result<Option<AutoUpload>> {
    if !args.auto_upload {
        return Ok(None);
    }
    if settings.paths.smoke
        && !settings
            .env
            .flag(FORCE_SMOKE_UPLOAD)?
            .is_some_and(|(v, _)| v)
    {
        println!("--auto-upload: skipped in a smoke run (smoke adapters are never pushed)");
        return Ok(None);
    }
    let org = match &args.hub_org {
        Some(o) => o.clone(),
        None => settings
            .env
            .get("BWB_HUB_ORG")
            .map(|(v, _)| v.trim().to_string())
            .ok_or_else(|| {
                Error::Config(
                    "--auto-upload needs the hub user or organisation to push to: --hub-org ORG (or BWB_HUB_ORG in the environment or .env)".into(),
                )
            })?,
    };
    crate::hub::check_repo_id(&format!("{org}/bwb"), "--hub-org")?;
    crate::hub::sync::token(&settings.hub)?;
    Ok(Some(AutoUpload {
        org,
        retry: settings.hub_retry()?,
    }))
}

/// The repo an adapter goes to: `<org>/bwb-<model>-<task>-<condition>`, characters the hub
/// refuses replaced by `-`.
pub fn adapter_repo(org: &str, model: &str, task: &str, condition: &str) -> String {
    let name: String = format!("bwb-{model}-{task}-{condition}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    for c in name.chars() {
        let doubled = (c == '-' || c == '.') && out.ends_with(c);
        if !doubled {
            out.push(c);
        }
    }
    format!("{org}/{}", out.trim_end_matches(['-', '.']))
}

/// Push a trained adapter (its two files and a model card) to its repo; nothing is
/// committed when the repo already holds the same files.
#[allow(clippy::too_many_arguments)]
fn push_adapter(
    settings: &Settings,
    up: &AutoUpload,
    task: &TaskConfig,
    name: &str,
    condition: &str,
    adapter_dir: &std::path::Path,
    record: &serde_json::Value,
) -> Result<()> {
    use crate::model::adapter;
    let repo = adapter_repo(&up.org, name, &task.id, condition);
    let base = adapter::read_config(adapter_dir)?
        .base_model_name_or_path
        .unwrap_or_default();
    let summary_path = settings
        .paths
        .results()
        .join("summaries")
        .join(format!("{name}_{}_{condition}.json", task.id));
    let test: Option<serde_json::Value> = std::fs::read_to_string(&summary_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let card = crate::hub::card::model_card(&crate::hub::card::CardInput {
        repo: &repo,
        base: &base,
        task_id: &task.id,
        task_name: &task.name,
        dataset: Some(task.source.repo_id()).filter(|r| !r.is_empty()),
        condition,
        record,
        test: test.as_ref(),
    });
    let mut files = vec![("README.md".to_string(), card.into_bytes())];
    for f in [adapter::CONFIG_FILE, adapter::WEIGHTS_FILE] {
        let path = adapter_dir.join(f);
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::MissingInput(format!("{}: {e}; cannot upload it", path.display()))
        })?;
        files.push((f.to_string(), bytes));
    }
    let client = crate::hub::sync::client(
        &settings.hub,
        &repo,
        crate::hub::client::RepoKind::Model,
        up.retry.clone(),
    )?;
    let report = crate::hub::sync::upload_files(
        &client,
        files,
        &format!("bwb train --auto-upload: {name} {} {condition} ({{n}} file(s))", task.id),
        false,
        up.retry.clone(),
    )
    .with_context(|| {
        format!("uploading the adapter to {repo} (training is done: rerun the same command to retry only the upload)")
    })?;
    match report.commit {
        Some(c) => println!("pushed {} file(s) to {repo}: {c}", report.transferred.len()),
        None => println!("{repo} already holds this adapter; nothing pushed"),
    }
    Ok(())
}

/// Which configs/training/<name>.yaml a model trains with: the model config's; for a model
/// given as a path, the one named like it, else (with one warning) the one of the model
/// config with the same architecture.
fn training_name(settings: &Settings, spec: &str) -> Result<String> {
    let c = &settings.configs;
    if let Ok(mc) = c.model(spec) {
        return Ok(mc.training_name().to_string());
    }
    let name = crate::paths::model_name(spec);
    if c.training.contains_key(&name) {
        return Ok(name);
    }
    let (source, _) = load::resolve(spec, c, &settings.hub)?;
    let arch = load::source_arch(&source)?;
    let (fallback, model_id) = c.training_fallback(arch).ok_or_else(|| {
        Error::Config(format!(
            "--model {spec}: no configs/training/{name}.yaml and no model config of its architecture ({arch:?}) to borrow one from; add configs/training/{name}.yaml"
        ))
    })?;
    tracing::warn!(
        "--model {spec}: no configs/training/{name}.yaml; using configs/training/{fallback}.yaml (model `{model_id}`, same architecture {arch:?}); add configs/training/{name}.yaml to choose your own"
    );
    Ok(fallback.to_string())
}

pub fn train(settings: &Settings, args: &TrainArgs, tracker: &Tracker) -> Result<()> {
    let engine = settings.engine(&args.engine, EngineUse::Train)?;
    train_plan(
        settings,
        &TrainPlan {
            model: &args.target.model,
            tasks: settings.configs.select_tasks(&args.target.task)?,
            conditions: Condition::parse_list(&args.target.condition)?,
            seed: settings.seed_or(args.seed),
            engine: &engine,
            save_every: args.save_every,
            stop_at_step: args.stop_at_step,
            tracker,
            upload: auto_upload(settings, args)?,
        },
    )
}

pub fn train_plan(settings: &Settings, plan: &TrainPlan) -> Result<()> {
    let seed = plan.seed;
    let name = crate::paths::model_name(plan.model);
    let training = training_name(settings, plan.model)?;
    let training_file = format!("configs/training/{training}.yaml");
    for &task in &plan.tasks {
        let hp = settings.configs.training_named(&training, task)?;
        let all_train = read_split(&settings.paths, &task.id, "train")?;
        let val = read_split(&settings.paths, &task.id, "val")?;
        let prompt = TaskPrompt::load(&settings.paths.prompts(), task)?;
        for &cond in &plan.conditions {
            let examples = cond.select(all_train.clone());
            let m = load::load_named(
                plan.model,
                &settings.configs,
                &settings.hub,
                plan.engine,
                Some(train::lora_plan(&hp, seed)),
            )?;
            let dir = settings.paths.run_dir(&name, &task.id, cond.name());
            let record_path = settings.paths.training_record(&name, &task.id, cond.name());
            let metrics_path = settings
                .paths
                .training_metrics(&name, &task.id, cond.name());
            // A finished run was tracked when it trained: no second MLflow run for it.
            let done = record_path.is_file() && dir.join(train::checkpoint::FINAL_DIR).is_dir();
            let off = Tracker::disabled();
            let tracker = if done { &off } else { plan.tracker };
            let mut params = vec![
                ("model".to_string(), plan.model.to_string()),
                ("model_origin".into(), m.origin.clone()),
                ("task".into(), task.id.clone()),
                ("condition".into(), cond.name().to_string()),
                ("seed".into(), seed.to_string()),
                ("training_config".into(), training_file.clone()),
                ("train_examples".into(), examples.len().to_string()),
                ("val_examples".into(), val.len().to_string()),
                ("quant".into(), plan.engine.storage.name().to_string()),
                ("device".into(), format!("{:?}", m.device)),
                ("dtype".into(), format!("{:?}", m.dtype)),
            ];
            if let Ok(v) = serde_json::to_value(&hp) {
                track::flatten_params("", &v, &mut params);
            }
            let run = tracker.start_run(
                &format!("train {name}/{}/{}", task.id, cond.name()),
                track::bwb_tags(
                    "train",
                    &name,
                    &task.id,
                    cond.name(),
                    settings.tracking.smoke,
                ),
                params,
            );
            // The loop hands every step's and epoch's line to the run as it writes it.
            let sink = tracker
                .enabled()
                .then(|| std::sync::Arc::new(run.logger()) as std::sync::Arc<dyn MetricsSink>);
            let job = Job {
                model: &m,
                base_model: plan.model.to_string(),
                peft_base: crate::model::adapter::peft_base(plan.model, &settings.configs),
                task,
                prompt: &prompt,
                hp: &hp,
                seed,
                train: &examples,
                val: &val,
                dir: dir.clone(),
                opts: RunOptions {
                    save_every: Some(plan.save_every),
                    stop_at_step: plan.stop_at_step,
                    progress: settings.progress(),
                    metrics: Some(metrics_path.clone()),
                    val_batch_size: 8,
                    sink,
                },
            };
            let what = format!(
                "bwb train --model {} --task {} --condition {}",
                plan.model,
                task.id,
                cond.name()
            );
            let out = train::run(&job).with_context(|| what.clone())?;
            let root = &settings.paths.root;
            if !out.finished {
                run.set_tags(vec![(
                    "bwb.stopped_at_step".into(),
                    out.state.step.to_string(),
                )]);
                run.log_artifact(&metrics_path, "training");
                run.end(RunStatus::Finished);
                println!(
                    "{}/{}/{}: stopped at step {} of {}; checkpoint in {}; rerun to continue",
                    name,
                    task.id,
                    cond.name(),
                    out.state.step,
                    out.state.total_steps,
                    display(root, &dir)
                );
                return Ok(());
            }
            let record = TrainingRecord::new(&job, &out, &name, cond.name(), &training_file);
            let path = record_path;
            crate::fsutil::write_json_atomic(&path, &record)?;
            track_finished_run(&run, &record, &out, &dir, &metrics_path, &path);
            run.end(RunStatus::Finished);
            if let Some(up) = &plan.upload {
                push_adapter(
                    settings,
                    up,
                    task,
                    &name,
                    cond.name(),
                    &dir.join(train::checkpoint::FINAL_DIR),
                    &serde_json::to_value(&record)?,
                )?;
            }
            let best = out
                .state
                .best
                .map(|b| (b.epoch, b.val.metric))
                .unwrap_or((0, 0.0));
            println!(
                "{}/{}/{}: {}best epoch {} ({} {:.4}) → {}; record {}",
                name,
                task.id,
                cond.name(),
                if out.was_done {
                    "already trained; "
                } else {
                    ""
                },
                best.0,
                train::validate::metric_name(task),
                best.1,
                display(root, &dir.join(train::checkpoint::FINAL_DIR)),
                display(root, &path)
            );
        }
    }
    Ok(())
}

/// A trained run's summary figures (at its last optimizer step) and files: the adapter, the
/// training record and the per-step metrics.
fn track_finished_run(
    run: &track::Run,
    record: &TrainingRecord,
    out: &train::Outcome,
    dir: &std::path::Path,
    metrics_path: &std::path::Path,
    record_path: &std::path::Path,
) {
    if !run.tracker_enabled() {
        return;
    }
    let mut figures = vec![
        ("steps", record.steps as f64),
        ("epochs_run", record.epochs_run as f64),
        ("wall_seconds", record.wall_seconds),
        ("train_seconds", record.train_seconds),
        ("tokens", record.tokens as f64),
        ("tokens_per_second", record.tokens_per_second),
    ];
    if let Some(b) = record.peak_memory_bytes {
        figures.push(("peak_memory_bytes", b as f64));
    }
    let best_metric = format!("best_val_{}", record.metric);
    if let Some(b) = &record.best {
        figures.push(("best_epoch", b.epoch as f64));
        figures.push(("best_val_loss", b.val.loss));
        figures.push((best_metric.as_str(), b.val.metric));
    }
    run.log_metrics(&figures, out.state.step as i64);
    run.log_artifact_dir(&dir.join(train::checkpoint::FINAL_DIR), "adapter");
    run.log_artifact(record_path, "training");
    run.log_artifact(metrics_path, "training");
}
