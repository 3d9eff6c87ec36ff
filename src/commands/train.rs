//! `bwb train`: QLoRA fine-tuning of a local model on a prepared task, per condition
//! (lora-500, lora-full); checkpoints resume on rerun; the record goes to
//! results/training/<model>_<task>_<condition>.json.

use anyhow::{Context, Result};

use crate::cli::{EngineArgs, TrainArgs};
use crate::config::TrainingConfig;
use crate::data::prepare::read_split;
use crate::error::Error;
use crate::paths::display;
use crate::prompt::task::TaskPrompt;
use crate::settings::Settings;
use crate::train::{self, Condition, Job, RunOptions, TrainingRecord};

/// Hyperparameters: the model config's training file, or for a model given as a path the
/// training file named like it; then the task's overrides.
fn hyperparameters(
    settings: &Settings,
    spec: &str,
    task: &crate::config::TaskConfig,
) -> Result<TrainingConfig> {
    let c = &settings.configs;
    if let Ok(mc) = c.model(spec) {
        return Ok(c.training_for(mc, task)?);
    }
    let name = crate::paths::model_name(spec);
    let base = c.training.get(&name).ok_or_else(|| {
        Error::Config(format!(
            "--model {spec}: no configs/training/{name}.yaml for a model given as a path; add one, or name a model config id"
        ))
    })?;
    Ok(base.with_overrides(&task.training))
}

pub fn train(settings: &Settings, args: &TrainArgs) -> Result<()> {
    let conditions = Condition::parse_list(&args.condition)?;
    let tasks = settings.configs.select_tasks(&args.task)?;
    let seed = settings.seed_or(args.seed);
    let name = crate::paths::model_name(&args.model);
    let engine = EngineArgs {
        model: args.model.clone(),
        // QLoRA: a 4-bit base unless asked otherwise.
        quant: Some(args.quant.clone().unwrap_or_else(|| "q4k".into())),
        dtype: args.dtype.clone(),
        device: args.device.clone(),
    };
    for task in tasks {
        let hp = hyperparameters(settings, &args.model, task)?;
        let all_train = read_split(&settings.paths, &task.id, "train")?;
        let val = read_split(&settings.paths, &task.id, "val")?;
        let prompt = TaskPrompt::load(&settings.paths.prompts(), task)?;
        for &cond in &conditions {
            let examples = cond.select(all_train.clone());
            let m =
                super::generate::load_model(settings, &engine, Some(train::lora_plan(&hp, seed)))?;
            let dir = settings.paths.run_dir(&name, &task.id, cond.name());
            let job = Job {
                model: &m,
                base_model: args.model.clone(),
                task,
                prompt: &prompt,
                hp: &hp,
                seed,
                train: &examples,
                val: &val,
                dir: dir.clone(),
                opts: RunOptions {
                    save_every: Some(args.save_every),
                    stop_at_step: args.stop_at_step,
                    progress: true,
                    val_batch_size: 8,
                },
            };
            let what = format!(
                "bwb train --model {} --task {} --condition {}",
                args.model,
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
            let record = TrainingRecord::new(&job, &out, &name, cond.name());
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
