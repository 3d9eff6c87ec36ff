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
