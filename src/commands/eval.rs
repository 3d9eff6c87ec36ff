//! `bwb eval`: every requested condition × seed of one model on each task, into
//! results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl. Inputs (prepared data,
//! adapters, API keys) are all checked before the first model loads or request goes out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::backend::api::{ApiBackend, ApiOptions, RetryPolicy};
use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::cli::{EngineArgs, EvalArgs};
use crate::config::{ModelKind, TaskConfig};
use crate::data::prepare::read_split;
use crate::data::Example;
use crate::error::Error;
use crate::eval::predictions::Generation;
use crate::eval::{self, sample, Condition, Job};
use crate::model::adapter;
use crate::paths::display;
use crate::prompt::task::TaskPrompt;
use crate::settings::Settings;

/// `KEY` from the environment / .env, parsed; errors name the variable and value.
fn env_num<T: std::str::FromStr>(settings: &Settings, key: &str) -> Result<Option<T>> {
    match settings.env.get(key) {
        None => Ok(None),
        Some((v, _)) => v.trim().parse::<T>().map(Some).map_err(|_| {
            Error::Config(format!(
                "environment variable {key}={v:?} is not a valid number"
            ))
            .into()
        }),
    }
}

/// API knobs: flag > environment / .env > default.
fn api_options(settings: &Settings, args: &EvalArgs) -> Result<ApiOptions> {
    let d = ApiOptions::default();
    let concurrency = match args.concurrency {
        Some(c) => c,
        None => env_num(settings, "BWB_API_CONCURRENCY")?.unwrap_or(d.concurrency),
    };
    if concurrency == 0 {
        return Err(Error::Config("--concurrency 0: must be at least 1".into()).into());
    }
    let timeout = match args.request_timeout {
        Some(t) => t,
        None => env_num(settings, "BWB_API_TIMEOUT_S")?.unwrap_or(d.timeout.as_secs_f64()),
    };
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(Error::Config(format!(
            "--request-timeout {timeout}: must be a positive number of seconds"
        ))
        .into());
    }
    let max_cost_usd = match args.max_cost_usd {
        Some(c) => Some(c),
        None => env_num(settings, "BWB_MAX_COST_USD")?,
    };
    if let Some(c) = max_cost_usd {
        if !(c.is_finite() && c >= 0.0) {
            return Err(Error::Config(format!("--max-cost-usd {c}: must be a number ≥ 0")).into());
        }
    }
    let mut retry = RetryPolicy::default();
    if let Some(n) = env_num::<u32>(settings, "BWB_API_MAX_ATTEMPTS")? {
        retry.max_attempts = n.max(1);
    }
    if let Some(ms) = env_num::<u64>(settings, "BWB_API_BACKOFF_MS")? {
        retry.base = Duration::from_millis(ms);
    }
    Ok(ApiOptions {
        concurrency,
        timeout: Duration::from_secs_f64(timeout),
        retry,
        max_cost_usd,
        cache_dir: (!args.no_cache).then(|| settings.paths.results().join("api-cache")),
    })
}

/// checkpoints/<model>/<task>/<condition>/adapter, or an error naming the train command.
fn adapter_dir(
    settings: &Settings,
    args: &EvalArgs,
    task: &str,
    cond: Condition,
) -> Result<PathBuf> {
    let dir = settings
        .paths
        .run_dir(&crate::paths::model_name(&args.model), task, cond.name())
        .join(crate::train::checkpoint::FINAL_DIR);
    if !dir.join(adapter::CONFIG_FILE).is_file() || !dir.join(adapter::WEIGHTS_FILE).is_file() {
        let smoke = if settings.paths.smoke {
            " --smoke-test"
        } else {
            ""
        };
        return Err(Error::MissingInput(format!(
            "no trained {} adapter for `{}` on `{task}` in {}; run `bwb train --model {} --task {task} --condition {}{smoke}` first",
            cond.name(),
            args.model,
            display(&settings.paths.root, &dir),
            args.model,
            cond.name()
        ))
        .into());
    }
    Ok(dir)
}

/// A task's inputs, read before anything runs.
struct TaskInputs<'a> {
    task: &'a TaskConfig,
    test: Vec<Example>,
    train: Vec<Example>,
    prompt: TaskPrompt,
    adapters: Vec<(Condition, PathBuf)>,
}

pub fn eval(settings: &Settings, args: &EvalArgs) -> Result<()> {
    let configs = &settings.configs;
    let tasks = configs.select_tasks(&args.task)?;
    let api = match configs.model(&args.model) {
        Ok(m) if m.kind == ModelKind::Api => Some(m),
        _ => None,
    };
    let conditions = Condition::parse(&args.condition, api.map(|m| m.id.as_str()))?;
    let n_seeds = args.seeds.unwrap_or(settings.n_eval_seeds);
    let all_seeds = &configs.run_defaults.eval_seeds;
    if n_seeds == 0 || n_seeds > all_seeds.len() {
        return Err(Error::Config(format!(
            "--seeds {n_seeds}: must be between 1 and the {} seeds listed in configs/run_defaults.yaml `eval_seeds`; add seeds there for more",
            all_seeds.len()
        ))
        .into());
    }
    let seeds = &all_seeds[..n_seeds];
    let name = crate::paths::model_name(&args.model);

    // 1. Check every input before loading a model or sending a request.
    let mut inputs = Vec::new();
    for task in tasks {
        let test = read_split(&settings.paths, &task.id, "test")?;
        let train = if conditions.contains(&Condition::FiveShot) {
            read_split(&settings.paths, &task.id, "train")?
        } else {
            Vec::new()
        };
        let prompt = TaskPrompt::load(&settings.paths.prompts(), task)?;
        let mut adapters = Vec::new();
        for &c in conditions.iter().filter(|c| c.is_lora()) {
            adapters.push((c, adapter_dir(settings, args, &task.id, c)?));
        }
        inputs.push(TaskInputs {
            task,
            test,
            train,
            prompt,
            adapters,
        });
    }
    let api_backend = match api {
        Some(m) => Some(ApiBackend::new(
            m,
            &settings.env,
            &configs.pricing,
            api_options(settings, args)?,
        )?),
        None => None,
    };

    // 2. Run: the base model once for the prompt-only conditions, each adapter on its own.
    let engine = EngineArgs {
        model: args.model.clone(),
        quant: Some(args.quant.clone().unwrap_or_else(|| "q4k".into())),
        dtype: args.dtype.clone(),
        device: args.device.clone(),
    };
    let mut base: Option<LocalBackend> = None;
    let mut total_spent = 0.0;
    for inp in &inputs {
        for &cond in &conditions {
            let lora_backend;
            let backend: &dyn Backend = match (&api_backend, cond.is_lora()) {
                (Some(b), _) => b,
                (None, false) => {
                    if base.is_none() {
                        let m = super::generate::load_model(settings, &engine, None)?;
                        base = Some(LocalBackend::new(m, args.batch_size, name.clone()));
                    }
                    base.as_ref()
                        .ok_or_else(|| anyhow::anyhow!("base model not loaded"))?
                }
                (None, true) => {
                    let dir = inp
                        .adapters
                        .iter()
                        .find(|(c, _)| *c == cond)
                        .map(|(_, d)| d.clone())
                        .ok_or_else(|| {
                            anyhow::anyhow!("adapter for {} not checked", cond.name())
                        })?;
                    let dev = super::generate::device(args.device.as_deref())?;
                    let plan = adapter::load(&dir, &dev)?;
                    let m = super::generate::load_model(settings, &engine, Some(plan))
                        .with_context(|| {
                            format!("loading the {} adapter {}", cond.name(), dir.display())
                        })?;
                    lora_backend = LocalBackend::new(m, args.batch_size, name.clone());
                    &lora_backend
                }
            };
            let generation = eval::generation_of(backend);
            let gen_seeds = eval::generation_seeds(generation, seeds);
            for (draw, &seed) in gen_seeds.iter().enumerate() {
                let shots: Vec<Example> = if cond == Condition::FiveShot {
                    let no_answer = inp.task.answer.no_answer.as_deref().unwrap_or("");
                    let s: Vec<Example> =
                        sample::shots(&inp.train, &inp.task.id, seed, eval::N_SHOTS)
                            .into_iter()
                            .map(|e| eval::shot_view(e, no_answer))
                            .collect();
                    if s.len() < eval::N_SHOTS {
                        tracing::warn!(
                            "task `{}`: only {} training examples for {} shots",
                            inp.task.id,
                            s.len(),
                            eval::N_SHOTS
                        );
                    }
                    s
                } else {
                    Vec::new()
                };
                let path = settings
                    .paths
                    .predictions(&name, &inp.task.id, cond.name(), seed);
                let job = Job {
                    backend,
                    model: &name,
                    task: inp.task,
                    prompt: &inp.prompt,
                    condition: cond,
                    seed,
                    draw: draw as u64,
                    test: &inp.test,
                    shots: shots.iter().collect(),
                    path: path.clone(),
                    progress: true,
                };
                let what = format!("{name}/{}/{}/seed-{seed}", inp.task.id, cond.name());
                let out = eval::run(&job).with_context(|| what.clone())?;
                total_spent += out.spent_usd;
                let api_part = if api_backend.is_some() {
                    format!(
                        ", {} requests sent, {} cached, ${:.6} spent",
                        out.requests_sent, out.cache_hits, out.spent_usd
                    )
                } else {
                    String::new()
                };
                let spread = match generation {
                    Generation::Sampled => {
                        format!("sampled: generation {} of {}", draw + 1, gen_seeds.len())
                    }
                    _ => format!(
                        "greedy: the one generation, spread over {} resamples when scored",
                        seeds.len()
                    ),
                };
                println!(
                    "{what}: {} examples ({} already done, {} generated, {} errors; {spread}){api_part} → {}",
                    out.examples,
                    out.skipped,
                    out.written,
                    out.errors,
                    display(&settings.paths.root, &path)
                );
            }
        }
    }
    if api_backend.is_some() {
        println!("total spent this run: ${total_spent:.6}");
    }
    Ok(())
}
