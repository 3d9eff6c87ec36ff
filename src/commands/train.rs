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

pub fn train(settings: &Settings, args: &TrainArgs) -> Result<()> {
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
            let job = Job {
                model: &m,
                base_model: plan.model.to_string(),
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
                    metrics: Some(
                        settings
                            .paths
                            .training_metrics(&name, &task.id, cond.name()),
                    ),
                    val_batch_size: 8,
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
            let path = settings.paths.training_record(&name, &task.id, cond.name());
            crate::fsutil::write_json_atomic(&path, &record)?;
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
