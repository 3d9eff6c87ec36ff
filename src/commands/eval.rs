//! `bwb eval`: every requested condition × seed of one model on each task, into
//! results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl. Inputs (prepared data,
//! adapters, API keys) are all checked before the first model loads or request goes out.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::backend::api::{ApiBackend, ApiOptions};
use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::cli::EvalArgs;
use crate::config::{ModelKind, TaskConfig};
use crate::data::prepare::read_split;
use crate::data::Example;
use crate::error::Error;
use crate::eval::compressed::EvalCompression;
use crate::eval::predictions::Generation;
use crate::eval::{self, sample, Condition, Job};
use crate::model::{adapter, load};
use crate::paths::display;
use crate::prompt::task::TaskPrompt;
use crate::settings::{EngineSettings, EngineUse, Settings};
use crate::track::{self, RunLogger, RunStatus, Tracker};

/// What to evaluate, every setting resolved (`bwb eval`, and `bwb run`'s eval stage).
pub struct EvalPlan<'a> {
    /// `--model` as the user gave it.
    pub model: &'a str,
    pub tasks: Vec<&'a TaskConfig>,
    pub conditions: Vec<Condition>,
    pub seeds: &'a [u64],
    /// Local: prompts per generate call.
    pub batch_size: usize,
    pub engine: &'a EngineSettings,
    pub api: &'a ApiOptions,
    /// Where runs are tracked (off: a no-op).
    pub tracker: &'a Tracker,
    /// `--compress`: contexts compressed first, results under `<model>+<variant>`.
    pub compress: Option<&'a EvalCompression>,
}

/// The model name the plan's results go under.
fn result_name(plan: &EvalPlan) -> String {
    let name = crate::paths::model_name(plan.model);
    match plan.compress {
        Some(c) => c.result_name(&name),
        None => name,
    }
}

/// `--compress METHOD:RATE` (with `--compress-model`), built.
fn compression(
    settings: &Settings,
    args: &EvalArgs,
    engine: &EngineSettings,
    api: &ApiOptions,
) -> Result<Option<EvalCompression>> {
    let Some(arg) = &args.compress else {
        return Ok(None);
    };
    let mut spec = crate::compress::Spec::parse(arg)
        .map_err(|m| Error::Config(format!("--compress {arg}: {m}")))?;
    spec.model = args.compress_model.clone();
    let compressor = crate::compress::build(&spec, settings, engine, api, args.batch_size)
        .with_context(|| format!("--compress {arg}"))?;
    Ok(Some(EvalCompression::new(
        &spec,
        compressor,
        api.concurrency,
    )))
}

/// checkpoints/<model>/<task>/<condition>/adapter, or an error naming the train command.
fn adapter_dir(settings: &Settings, model: &str, task: &str, cond: Condition) -> Result<PathBuf> {
    let dir = settings
        .paths
        .run_dir(&crate::paths::model_name(model), task, cond.name())
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
            model,
            display(&settings.paths.root, &dir),
            model,
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

pub fn eval(settings: &Settings, args: &EvalArgs, tracker: &Tracker) -> Result<()> {
    let configs = &settings.configs;
    let engine = settings.engine(&args.engine, EngineUse::Eval)?;
    let api_opts = settings.api(&args.api)?;
    let api = match configs.model(&args.target.model) {
        Ok(m) if m.kind == ModelKind::Api => Some(m.id.as_str()),
        _ => None,
    };
    let compress = compression(settings, args, &engine, &api_opts)?;
    eval_plan(
        settings,
        &EvalPlan {
            model: &args.target.model,
            tasks: configs.select_tasks(&args.target.task)?,
            conditions: Condition::parse(&args.target.condition, api)?,
            seeds: settings.eval_seeds(args.seeds, settings.n_eval_seeds)?,
            batch_size: args.batch_size,
            engine: &engine,
            api: &api_opts,
            tracker,
            compress: compress.as_ref(),
        },
    )
}

pub fn eval_plan(settings: &Settings, plan: &EvalPlan) -> Result<()> {
    let api = match settings.configs.model(plan.model) {
        Ok(m) if m.kind == ModelKind::Api => Some(m),
        _ => None,
    };
    // 1. Check every input before loading a model or sending a request.
    let mut inputs = plan
        .tasks
        .iter()
        .map(|&task| task_inputs(settings, plan, task))
        .collect::<Result<Vec<_>>>()?;
    if let Some(c) = plan.compress {
        for inp in &mut inputs {
            inp.test = c.apply(&settings.paths, &inp.task.id, "test", &inp.test)?;
        }
    }
    let api_backend = match api {
        Some(m) => Some(ApiBackend::new(
            m,
            &settings.env,
            &settings.configs.pricing,
            plan.api.clone(),
        )?),
        None => None,
    };

    // 2. Run: the base model once for the prompt-only conditions, each adapter on its own.
    let mut base: Option<LocalBackend> = None;
    let mut total_spent = 0.0;
    for inp in &inputs {
        for &cond in &plan.conditions {
            let lora_backend;
            let backend: &dyn Backend = match (&api_backend, cond.is_lora()) {
                (Some(b), _) => b,
                (None, false) => match &mut base {
                    Some(b) => b,
                    empty => empty.insert(local_backend(settings, plan, None)?),
                },
                (None, true) => {
                    lora_backend = local_backend(settings, plan, Some((inp, cond)))?;
                    &lora_backend
                }
            };
            let api = api_backend.is_some();
            let run = start_eval_run(settings, plan, inp, cond, backend, api);
            total_spent += generate_condition(settings, plan, inp, cond, backend, api, &run)?;
            run.end(RunStatus::Finished);
        }
    }
    if api_backend.is_some() {
        println!("total spent this run: ${total_spent:.6}");
    }
    Ok(())
}

/// A task's test set, demonstrations, prompt and adapters, or the error that stops the run.
fn task_inputs<'a>(
    settings: &Settings,
    plan: &EvalPlan,
    task: &'a TaskConfig,
) -> Result<TaskInputs<'a>> {
    let test = read_split(&settings.paths, &task.id, "test")?;
    let train = if plan.conditions.contains(&Condition::FiveShot) {
        read_split(&settings.paths, &task.id, "train")?
    } else {
        Vec::new()
    };
    let prompt = TaskPrompt::load(&settings.paths.prompts(), task)?;
    let mut adapters = Vec::new();
    for &c in plan.conditions.iter().filter(|c| c.is_lora()) {
        adapters.push((c, adapter_dir(settings, plan.model, &task.id, c)?));
    }
    Ok(TaskInputs {
        task,
        test,
        train,
        prompt,
        adapters,
    })
}

/// The local model, with the task's adapter for a LoRA condition.
fn local_backend(
    settings: &Settings,
    plan: &EvalPlan,
    lora: Option<(&TaskInputs<'_>, Condition)>,
) -> Result<LocalBackend> {
    let name = crate::paths::model_name(plan.model);
    let load = |lora| {
        load::load_named(
            plan.model,
            &settings.configs,
            &settings.hub,
            plan.engine,
            lora,
        )
    };
    let Some((inp, cond)) = lora else {
        return Ok(LocalBackend::new(load(None)?, plan.batch_size, name));
    };
    let dir = inp
        .adapters
        .iter()
        .find(|(c, _)| *c == cond)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| anyhow::anyhow!("adapter for {} not checked", cond.name()))?;
    adapter::check_base(&dir, plan.model, &settings.configs)?;
    let lora = adapter::load(&dir, &plan.engine.device.open()?)?;
    let m = load(Some(lora))
        .with_context(|| format!("loading the {} adapter {}", cond.name(), dir.display()))?;
    Ok(LocalBackend::new(m, plan.batch_size, name))
}

/// Latency, tokens and cost over one generation's prediction file (request errors left
/// out), named as the summaries' (`latency_ms_p50`, `tokens_total_input`, …).
fn generation_figures(path: &std::path::Path) -> Vec<(&'static str, f64)> {
    let preds = match crate::eval::predictions::read(path) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("mlflow: {}: {e}", path.display());
            return Vec::new();
        }
    };
    let ok: Vec<_> = preds.iter().filter(|p| p.error.is_none()).collect();
    if ok.is_empty() {
        return Vec::new();
    }
    let latency: Vec<f64> = ok.iter().map(|p| p.latency_ms).collect();
    let pct = |q| crate::metrics::stats::percentile(&latency, q).unwrap_or(f64::NAN);
    let input: u64 = ok.iter().map(|p| p.input_tokens).sum();
    let output: u64 = ok.iter().map(|p| p.output_tokens).sum();
    let mut figures = vec![
        (
            "latency_ms_mean",
            latency.iter().sum::<f64>() / latency.len() as f64,
        ),
        ("latency_ms_p50", pct(50.0)),
        ("latency_ms_p95", pct(95.0)),
        ("tokens_total_input", input as f64),
        ("tokens_total_output", output as f64),
        ("tokens_output_mean", output as f64 / ok.len() as f64),
    ];
    let costs: Vec<f64> = ok.iter().filter_map(|p| p.cost_usd).collect();
    if !costs.is_empty() {
        figures.push(("cost_usd_total", costs.iter().sum()));
    }
    figures
}

/// The MLflow run of one model × task × condition evaluation: what ran, on which seeds.
fn start_eval_run(
    settings: &Settings,
    plan: &EvalPlan,
    inp: &TaskInputs<'_>,
    cond: Condition,
    backend: &dyn Backend,
    api: bool,
) -> track::Run {
    let name = result_name(plan);
    let generation = eval::generation_of(backend);
    let seeds: Vec<String> = plan.seeds.iter().map(|s| s.to_string()).collect();
    let mut params = vec![
        ("model".to_string(), plan.model.to_string()),
        (
            "model_kind".into(),
            if api { "api" } else { "local" }.into(),
        ),
        ("task".into(), inp.task.id.clone()),
        ("condition".into(), cond.name().to_string()),
        ("seeds".into(), seeds.join(",")),
        (
            "generation".into(),
            format!("{generation:?}").to_lowercase(),
        ),
        ("test_examples".into(), inp.test.len().to_string()),
        ("max_new_tokens".into(), inp.task.max_new_tokens.to_string()),
    ];
    if !api {
        params.push(("batch_size".into(), plan.batch_size.to_string()));
        params.push(("quant".into(), plan.engine.storage.name().to_string()));
        params.push(("dtype".into(), format!("{:?}", plan.engine.dtype)));
    }
    plan.tracker.start_run(
        &format!("eval {name}/{}/{}", inp.task.id, cond.name()),
        track::bwb_tags(
            "eval",
            &name,
            &inp.task.id,
            cond.name(),
            settings.tracking.smoke,
        ),
        params,
    )
}

/// The 5-shot demonstrations seed `seed` picks (none for other conditions).
fn demonstrations(inp: &TaskInputs<'_>, cond: Condition, seed: u64) -> Vec<Example> {
    if cond != Condition::FiveShot {
        return Vec::new();
    }
    let no_answer = inp.task.answer.no_answer.as_deref().unwrap_or("");
    let s: Vec<Example> = sample::shots(&inp.train, &inp.task.id, seed, eval::N_SHOTS)
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
}

/// Every generation one condition needs (one for a greedy backend, one per seed for a
/// sampling one), a line each; returns the USD spent.
fn generate_condition(
    settings: &Settings,
    plan: &EvalPlan,
    inp: &TaskInputs<'_>,
    cond: Condition,
    backend: &dyn Backend,
    api: bool,
    run: &RunLogger,
) -> Result<f64> {
    let name = result_name(plan);
    let generation = eval::generation_of(backend);
    let gen_seeds = eval::generation_seeds(generation, plan.seeds);
    let mut spent = 0.0;
    for (draw, &seed) in gen_seeds.iter().enumerate() {
        let mut shots = demonstrations(inp, cond, seed);
        if let (Some(c), false) = (plan.compress, shots.is_empty()) {
            shots = c.apply(&settings.paths, &inp.task.id, "shots", &shots)?;
        }
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
            progress: settings.progress(),
        };
        let what = format!("{name}/{}/{}/seed-{seed}", inp.task.id, cond.name());
        let out = eval::run(&job).with_context(|| what.clone())?;
        spent += out.spent_usd;
        run.log_metrics(
            &[
                ("examples", out.examples as f64),
                ("generated", out.written as f64),
                ("already_done", out.skipped as f64),
                ("request_errors", out.errors as f64),
                ("requests_sent", out.requests_sent as f64),
                ("cache_hits", out.cache_hits as f64),
                ("spent_usd", out.spent_usd),
            ],
            draw as i64,
        );
        if run.tracker_enabled() {
            run.log_metrics(&generation_figures(&path), draw as i64);
        }
        run.log_artifact(&path, "predictions");
        let api_part = if api {
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
                plan.seeds.len()
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
    Ok(spent)
}
