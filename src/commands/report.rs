//! `bwb classify`, `bwb dashboard` and `bwb run` (every stage in order, skipping what is done).

use anyhow::{Context, Result};

use crate::backend::api::{ApiBackend, ApiOptions};
use crate::cli::{ExecArgs, PrepareArgs, RunArgs, TaskArgs};
use crate::config::{AnswerKind, ModelKind, TaskConfig};
use crate::error::Error;
use crate::eval::predictions::{self, Generation};
use crate::eval::{self, Condition};
use crate::paths::display;
use crate::report::summary::{Spread, Summary};
use crate::report::{self};
use crate::score::ErrorClass;
use crate::settings::{timeout_secs, EngineSettings, EngineUse, Settings};
use crate::track::{self, RunStatus, Tracker};

pub(super) fn exec_options(args: &ExecArgs) -> Result<report::Options> {
    let timeout = timeout_secs("--exec-timeout", args.exec_timeout)?;
    if args.exec_jobs == Some(0) {
        return Err(Error::Config("--exec-jobs 0: must be at least 1".into()).into());
    }
    let mut opts = report::Options {
        allow_code_execution: args.allow_code_execution,
        ..report::Options::default()
    };
    opts.limits.timeout = timeout;
    opts.limits.cpu_seconds = args.exec_timeout.ceil() as u64;
    if let Some(j) = args.exec_jobs {
        opts.jobs = j;
    }
    Ok(opts)
}

/// One line per summary: headline metric with spread and CI, errors, where it went.
fn summary_line(settings: &Settings, path: &std::path::Path, s: &Summary) -> String {
    let m = s.metrics.get(&s.primary_metric);
    let metric = match m {
        Some(m) => format!(
            "{} {:.4}{} [95% CI {:.4}–{:.4}]",
            s.primary_metric,
            m.mean,
            m.std.map(|d| format!(" ± {d:.4}")).unwrap_or_default(),
            m.ci_low,
            m.ci_high
        ),
        None => format!("{} n/a", s.primary_metric),
    };
    let wrong: Vec<String> = s
        .error_classes
        .iter()
        .filter(|(k, _)| **k != ErrorClass::Correct)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let cost = match s.cost.per_query_usd {
        Some(c) => format!("${c:.6}/query"),
        None => "no price".into(),
    };
    format!(
        "{}/{}/{}: {metric}; {} predictions, {}; p50 {:.0} ms; {cost}; errors: {} → {}",
        s.model,
        s.task,
        s.condition,
        s.n_predictions,
        spread_phrase(s),
        s.latency_ms.p50,
        if wrong.is_empty() {
            "none".into()
        } else {
            wrong.join(", ")
        },
        display(&settings.paths.root, path)
    )
}

/// One MLflow run per summary: its params, every metric with its spread and CI
/// (`weighted_f1`, `weighted_f1_ci_low`, …; per-seed values as `<metric>_per_seed` over steps
/// 0, 1, …), latency, tokens, cost, error counts, the TCO curve (`tco_12m_usd` at step =
/// monthly queries), and the summary, classified and prediction files.
fn track_summary(settings: &Settings, tracker: &Tracker, path: &std::path::Path, s: &Summary) {
    if !tracker.enabled() {
        return;
    }
    let cond = s.condition.name();
    let seeds: Vec<String> = s.seeds.iter().map(|x| x.to_string()).collect();
    let params = vec![
        ("model".to_string(), s.model.clone()),
        ("model_kind".into(), track::serde_name(&s.model_kind)),
        ("task".into(), s.task.clone()),
        ("condition".into(), cond.to_string()),
        ("seeds".into(), seeds.join(",")),
        ("primary_metric".into(), s.primary_metric.clone()),
        ("spread".into(), track::serde_name(&s.spread)),
        ("cost_basis".into(), s.cost.basis.clone()),
        ("prices_as_of".into(), s.prices_as_of.clone()),
    ];
    let run = tracker.start_run(
        &format!("classify {}/{}/{cond}", s.model, s.task),
        track::bwb_tags("classify", &s.model, &s.task, cond, settings.tracking.smoke),
        params,
    );
    let mut m: Vec<(String, f64)> = vec![
        ("n_predictions".into(), s.n_predictions as f64),
        ("n_examples".into(), s.n_examples as f64),
    ];
    for (name, v) in &s.metrics {
        m.push((name.clone(), v.mean));
        if let Some(sd) = v.std {
            m.push((format!("{name}_std"), sd));
        }
        m.push((format!("{name}_ci_low"), v.ci_low));
        m.push((format!("{name}_ci_high"), v.ci_high));
        m.push((format!("{name}_p50"), v.p50));
        m.push((format!("{name}_p95"), v.p95));
    }
    let l = &s.latency_ms;
    let t = &s.tokens;
    m.extend([
        ("latency_ms_mean".to_string(), l.mean),
        ("latency_ms_p50".into(), l.p50),
        ("latency_ms_p95".into(), l.p95),
        ("latency_ms_max".into(), l.max),
        ("tokens_input_mean".into(), t.input.mean),
        ("tokens_output_mean".into(), t.output.mean),
        ("tokens_cached_input_mean".into(), t.cached_input_mean),
        ("tokens_total_input".into(), t.total_input as f64),
        ("tokens_total_output".into(), t.total_output as f64),
    ]);
    if let Some(c) = s.cost.per_query_usd {
        m.push(("cost_per_query_usd".into(), c));
    }
    if let Some(c) = s.cost.spent_usd {
        m.push(("cost_spent_usd".into(), c));
    }
    for (class, n) in &s.error_classes {
        m.push((format!("errors_{class}"), *n as f64));
    }
    if let Some(tco) = &s.tco {
        m.push(("tco_training_usd".into(), tco.training_usd));
    }
    let refs: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    run.log_metrics(&refs, 0);
    for (name, v) in &s.metrics {
        let key = format!("{name}_per_seed");
        for (i, x) in v.per_seed.iter().enumerate() {
            run.log_metrics(&[(key.as_str(), *x)], i as i64);
        }
    }
    if let Some(tco) = &s.tco {
        for p in &tco.points {
            run.log_metrics(
                &[("tco_12m_usd", p.twelve_month_usd)],
                p.monthly_queries as i64,
            );
        }
    }
    let results = settings.paths.results();
    run.log_artifact(path, "summary");
    run.log_artifact(&path.with_extension("csv"), "summary");
    let stem = format!("{}_{}_{cond}.jsonl", s.model, s.task);
    run.log_artifact(&results.join("classified").join(stem), "classified");
    let preds = results
        .join("predictions")
        .join(&s.model)
        .join(&s.task)
        .join(cond);
    run.log_artifact_dir(&preds, "predictions");
    run.end(RunStatus::Finished);
}

/// What the ± is over, in words.
fn spread_phrase(s: &Summary) -> String {
    let n = s.seeds.len();
    match s.spread {
        Spread::TestResamples => format!("one greedy generation, ± over {n} resample(s)"),
        Spread::Generations => format!("± over {n} sampled generation(s)"),
        Spread::BootstrapDraws => format!("± over {n} bootstrap-draw generation(s)"),
    }
}

/// Whether any predictions exist for a task.
fn has_predictions(settings: &Settings, task: &str) -> bool {
    let root = settings.paths.results().join("predictions");
    std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.path().join(task).is_dir())
        })
        .unwrap_or(false)
}

pub fn classify(
    settings: &Settings,
    task_sel: &str,
    seeds: Option<usize>,
    exec: &ExecArgs,
    tracker: &Tracker,
) -> Result<()> {
    let tasks = settings.configs.select_tasks(task_sel)?;
    let mut opts = exec_options(exec)?;
    opts.seeds = settings.eval_seeds(seeds, settings.n_eval_seeds)?.to_vec();
    let explicit = task_sel.trim() != "all";
    let mut done = 0;
    let mut missing = Vec::new();
    let mut skipped = Vec::new();
    for task in tasks {
        if task.answer.kind == AnswerKind::Code
            && !opts.allow_code_execution
            && !explicit
            && has_predictions(settings, &task.id)
        {
            println!(
                "{}: skipped — scoring runs model-written code; pass --allow-code-execution",
                task.id
            );
            skipped.push(task.id.clone());
            continue;
        }
        let report = report::classify_task(&settings.paths, &settings.configs, task, &opts)
            .with_context(|| format!("bwb classify --task {}", task.id))?;
        let Some(r) = report else {
            missing.push(task.id.clone());
            continue;
        };
        if r.executed > 0 {
            println!(
                "{}: ran {} distinct programs in the sandbox",
                r.task, r.executed
            );
        }
        for (path, s) in &r.summaries {
            println!("{}", summary_line(settings, path, s));
            track_summary(settings, tracker, path, s);
            done += 1;
        }
    }
    if done == 0 && !skipped.is_empty() && missing.is_empty() {
        return Err(report::code_execution_refused(&skipped.join(", ")).into());
    }
    if done == 0 {
        let skipped_note = if skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} skipped: pass --allow-code-execution to score it)",
                skipped.join(", ")
            )
        };
        let smoke = if settings.paths.smoke {
            " --smoke-test"
        } else {
            ""
        };
        return Err(Error::MissingInput(format!(
            "no predictions for {}{skipped_note} under {}; run `bwb eval --model <model> --task {}{smoke}` first",
            missing.join(", "),
            display(
                &settings.paths.root,
                &settings.paths.results().join("predictions")
            ),
            task_sel.trim()
        ))
        .into());
    }
    if explicit && !missing.is_empty() {
        println!("no predictions yet for: {}", missing.join(", "));
    }
    if let Some(p) = report::write_overview(&settings.paths)? {
        println!("overview → {}", display(&settings.paths.root, &p));
    }
    Ok(())
}

pub fn dashboard(settings: &Settings, args: &crate::cli::DashboardArgs) -> Result<()> {
    let built = crate::dashboard::build(&settings.paths)?;
    println!(
        "dashboard: {} summaries over {} task(s); data → {}; site → {} (open index.html)",
        built.summaries,
        built.tasks,
        display(&settings.paths.root, &built.data_dir),
        display(&settings.paths.root, &built.site_dir.join("index.html"))
    );
    if let Some(space) = &args.publish {
        publish(settings, &built.site_dir, space, args.public)?;
    }
    Ok(())
}

/// Upload the static site to a static Space through the hub upload code, with the Space's
/// README.md (its `sdk: static` card).
fn publish(settings: &Settings, site: &std::path::Path, space: &str, public: bool) -> Result<()> {
    let retry = settings.hub_retry()?;
    let client = crate::hub::sync::client(
        &settings.hub,
        space,
        crate::hub::client::RepoKind::Space,
        retry.clone(),
    )
    .map_err(|e| anyhow::anyhow!("--publish: {e}"))?;
    let mut files = vec![(
        "README.md".to_string(),
        format!(
            "---\ntitle: bwb dashboard\nemoji: 📊\ncolorFrom: blue\ncolorTo: gray\nsdk: static\napp_file: index.html\npinned: false\ntags:\n- bwb\n- leaderboard\n---\n\n# bwb dashboard\n\nFine-tuned open models against API models: the static site `bwb dashboard` builds, published with `bwb dashboard --publish {space}`.\n"
        )
        .into_bytes(),
    )];
    let mut rels = Vec::new();
    walk_files(site, site, &mut rels);
    rels.sort();
    for rel in rels {
        let path = site.join(&rel);
        let bytes = std::fs::read(&path).map_err(|e| Error::Write {
            path: path.clone(),
            source: e,
        })?;
        files.push((rel, bytes));
    }
    let report = crate::hub::sync::upload_files(
        &client,
        files,
        "bwb dashboard --publish: {n} file(s)",
        public,
        retry,
    )
    .with_context(|| {
        format!("publishing the dashboard to spaces/{space}; run the same command again")
    })?;
    match report.commit {
        Some(c) => println!(
            "published {} file(s) to spaces/{space} ({} unchanged): {c}",
            report.transferred.len(),
            report.unchanged
        ),
        None => println!("spaces/{space} already shows this site; nothing published"),
    }
    Ok(())
}

/// Every file under `dir`, as `/`-separated paths relative to `base`.
fn walk_files(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_files(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let parts: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
}

/// Comma-separated list, or the default.
fn list(arg: &Option<String>, default: &[String]) -> Vec<String> {
    match arg {
        Some(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        None => default.to_vec(),
    }
}

/// Every generation the eval of `cond` needs has a prediction for every test example.
fn eval_done(
    settings: &Settings,
    model: &str,
    task: &TaskConfig,
    cond: Condition,
    seeds: &[u64],
) -> Result<bool> {
    let test = crate::data::prepare::read_split(&settings.paths, &task.id, "test")?;
    let generation = match settings.configs.model(model) {
        Ok(m) if m.samples() => Generation::Sampled,
        _ => Generation::Greedy,
    };
    for &seed in eval::generation_seeds(generation, seeds) {
        let path = settings
            .paths
            .predictions(model, &task.id, cond.name(), seed);
        let done = predictions::finished_ids(&path, generation)?;
        if test.iter().any(|ex| !done.contains(&ex.id)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One model of a `bwb run` and the conditions it runs.
pub(super) struct PlannedModel {
    pub model: String,
    pub kind: ModelKind,
    pub conditions: Vec<Condition>,
}

/// The models (each with its conditions), tasks and eval seeds a `bwb run` (or a sweep) covers:
/// the flags, else the run defaults (a smoke run has its own).
pub(super) fn grid<'a>(
    settings: &'a Settings,
    models: &Option<String>,
    tasks: &Option<String>,
    conditions: &Option<String>,
    seeds: Option<usize>,
) -> Result<(Vec<PlannedModel>, Vec<&'a TaskConfig>, &'a [u64])> {
    let configs = &settings.configs;
    let d = &configs.run_defaults;
    let (default_models, default_tasks, default_conditions, default_seeds) = if settings.paths.smoke
    {
        let s = &d.smoke;
        (&s.models, &s.tasks, &s.conditions, s.n_eval_seeds)
    } else {
        (&d.models, &d.tasks, &d.conditions, settings.n_eval_seeds)
    };
    let task_sel = tasks.clone().unwrap_or_else(|| default_tasks.join(","));
    let tasks = configs.select_tasks(&task_sel)?;
    let cond_names = list(conditions, default_conditions);
    let mut planned = Vec::new();
    for m in list(models, default_models) {
        let kind = configs.model(&m)?.kind;
        let mut conditions = Vec::new();
        for c in &cond_names {
            for cond in Condition::parse(c, None)? {
                // API models have no adapters.
                let no_adapter = kind == ModelKind::Api && cond.is_lora();
                if !no_adapter && !conditions.contains(&cond) {
                    conditions.push(cond);
                }
            }
        }
        planned.push(PlannedModel {
            model: m,
            kind,
            conditions,
        });
    }
    let seeds = settings.eval_seeds(seeds, default_seeds)?;
    Ok((planned, tasks, seeds))
}

/// Everything a `bwb run` does, resolved and checked before the first stage.
struct RunPlan<'a> {
    models: Vec<PlannedModel>,
    tasks: Vec<&'a TaskConfig>,
    seeds: &'a [u64],
    opts: report::Options,
    train_engine: EngineSettings,
    eval_engine: EngineSettings,
    api: ApiOptions,
    tracker: Tracker,
}

pub fn run(settings: &Settings, args: &RunArgs, tracker: &Tracker) -> Result<()> {
    run_stages(settings, args, tracker)?;
    println!("==> dashboard");
    dashboard(settings, &no_publish())
}

/// Build the dashboard without publishing it (`bwb run`, `bwb collect`).
pub(super) fn no_publish() -> crate::cli::DashboardArgs {
    crate::cli::DashboardArgs {
        publish: None,
        public: false,
    }
}

/// Every stage of `bwb run` but the dashboard: download, prepare, train, eval, classify.
pub(super) fn run_stages(settings: &Settings, args: &RunArgs, tracker: &Tracker) -> Result<()> {
    let plan = run_plan(settings, args, tracker)?;
    check_api_keys(settings, &plan)?;
    let stage = |name: &str| println!("==> {name}");
    stage("download");
    download_stage(settings, &plan)?;
    stage("prepare");
    prepare_stage(settings, &plan)?;
    stage("train");
    train_stage(settings, &plan)?;
    stage("eval");
    eval_stage(settings, &plan)?;
    stage("classify");
    classify_stage(settings, &plan)
}

/// Models, tasks, conditions, seeds and options from the flags, the run defaults (a smoke
/// run has its own: the random smoke model, nothing downloaded or paid for) and settings.
fn run_plan<'a>(settings: &'a Settings, args: &RunArgs, tracker: &Tracker) -> Result<RunPlan<'a>> {
    let (models, tasks, seeds) = grid(
        settings,
        &args.models,
        &args.tasks,
        &args.conditions,
        args.seeds,
    )?;
    let mut opts = exec_options(&args.exec)?;
    opts.seeds = seeds.to_vec();
    Ok(RunPlan {
        models,
        tasks,
        seeds,
        opts,
        train_engine: settings.engine(&args.engine, EngineUse::Train)?,
        eval_engine: settings.engine(&args.engine, EngineUse::Eval)?,
        api: settings.api(&args.api)?,
        tracker: tracker.clone(),
    })
}

/// An API model with evaluations left to run needs its key now, not after hours of training.
fn check_api_keys(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    for pm in plan.models.iter().filter(|m| m.kind == ModelKind::Api) {
        let all_done = plan.tasks.iter().all(|t| {
            pm.conditions
                .iter()
                .all(|&c| eval_done(settings, &pm.model, t, c, plan.seeds).unwrap_or(false))
        });
        if !all_done {
            ApiBackend::new(
                settings.configs.model(&pm.model)?,
                &settings.env,
                &settings.configs.pricing,
                plan.api.clone(),
            )
            .with_context(|| format!("bwb run: model `{}`", pm.model))?;
        }
    }
    Ok(())
}

fn download_stage(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    for task in &plan.tasks {
        let manifest = settings
            .paths
            .raw(&task.id)
            .join(crate::data::download::MANIFEST);
        if manifest.is_file() {
            println!("{}: raw data present; skipped", task.id);
            continue;
        }
        super::data::download(
            settings,
            &TaskArgs {
                task: task.id.clone(),
            },
        )?;
    }
    Ok(())
}

fn prepare_stage(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    for task in &plan.tasks {
        let dir = settings.paths.prepared(&task.id);
        if dir.join("manifest.json").is_file() && dir.join("test.jsonl").is_file() {
            println!("{}: prepared; skipped", task.id);
            continue;
        }
        super::data::prepare(
            settings,
            &PrepareArgs {
                task: TaskArgs {
                    task: task.id.clone(),
                },
                seed: None,
            },
        )?;
    }
    Ok(())
}

fn train_stage(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    for pm in plan.models.iter().filter(|m| m.kind == ModelKind::Local) {
        let model = &pm.model;
        for task in &plan.tasks {
            for cond in pm.conditions.iter().filter(|c| c.is_lora()) {
                let record = settings.paths.training_record(model, &task.id, cond.name());
                let adapter = settings
                    .paths
                    .run_dir(model, &task.id, cond.name())
                    .join(crate::train::checkpoint::FINAL_DIR);
                if record.is_file() && adapter.is_dir() {
                    println!("{model}/{}/{}: trained; skipped", task.id, cond.name());
                    continue;
                }
                super::train::train_plan(
                    settings,
                    &super::train::TrainPlan {
                        model,
                        tasks: vec![task],
                        conditions: crate::train::Condition::parse_list(cond.name())?,
                        seed: settings.seed,
                        engine: &plan.train_engine,
                        save_every: crate::train::DEFAULT_SAVE_EVERY,
                        stop_at_step: None,
                        tracker: &plan.tracker,
                        upload: None,
                    },
                )?;
            }
        }
    }
    Ok(())
}

fn eval_stage(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    for pm in &plan.models {
        for task in &plan.tasks {
            let mut todo = Vec::new();
            for &cond in &pm.conditions {
                if eval_done(settings, &pm.model, task, cond, plan.seeds)? {
                    println!(
                        "{}/{}/{}: evaluated; skipped",
                        pm.model,
                        task.id,
                        cond.name()
                    );
                } else {
                    todo.push(cond);
                }
            }
            if todo.is_empty() {
                continue;
            }
            super::eval::eval_plan(
                settings,
                &super::eval::EvalPlan {
                    model: &pm.model,
                    tasks: vec![task],
                    conditions: todo,
                    seeds: plan.seeds,
                    batch_size: crate::eval::DEFAULT_BATCH_SIZE,
                    engine: &plan.eval_engine,
                    api: &plan.api,
                    tracker: &plan.tracker,
                    compress: None,
                },
            )?;
        }
    }
    Ok(())
}

fn classify_stage(settings: &Settings, plan: &RunPlan<'_>) -> Result<()> {
    classify_tasks(settings, &plan.tasks, &plan.opts, &plan.tracker)
}

/// Classify `tasks` (a code task only with code execution allowed) and write the overview.
pub(super) fn classify_tasks(
    settings: &Settings,
    tasks: &[&TaskConfig],
    opts: &report::Options,
    tracker: &Tracker,
) -> Result<()> {
    for task in tasks {
        if task.answer.kind == AnswerKind::Code && !opts.allow_code_execution {
            println!(
                "{}: not scored — it runs model-written code; rerun with --allow-code-execution",
                task.id
            );
            continue;
        }
        let r = report::classify_task(&settings.paths, &settings.configs, task, opts)
            .with_context(|| format!("bwb classify --task {}", task.id))?;
        if let Some(r) = r {
            for (path, s) in &r.summaries {
                println!("{}", summary_line(settings, path, s));
                track_summary(settings, tracker, path, s);
            }
        }
    }
    if let Some(p) = report::write_overview(&settings.paths)? {
        println!("overview → {}", display(&settings.paths.root, &p));
    }
    Ok(())
}
