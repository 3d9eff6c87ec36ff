//! `bwb experiments`: check the experiments file, print the plan, and (unless `--dry-run`)
//! run the selected experiments serially or concurrently.

use anyhow::{bail, Context, Result};

use crate::cli::ExperimentsArgs;
use crate::experiments::plan::{self, Catalog};
use crate::experiments::run::{self, RunOptions};
use crate::experiments::{compare, file};
use crate::paths::display;
use crate::settings::{EngineUse, Settings};
use crate::track::langsmith::{self, LangSmith};
use crate::track::{self, RunStatus, Tracker};

pub fn experiments(settings: &Settings, args: &ExperimentsArgs, tracker: &Tracker) -> Result<()> {
    let path = args
        .config
        .clone()
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                settings.paths.root.join(p)
            }
        })
        .unwrap_or_else(|| settings.paths.configs().join("experiments.yaml"));
    let loaded = file::load(&path)?;
    let catalog = Catalog::from_configs(&settings.configs);
    let plans = check(settings, args, &loaded, &catalog)?;
    let langsmith = LangSmith::from_env(
        &settings.env,
        args.langsmith,
        args.langsmith_project.as_deref(),
    )?;
    // Checked before anything runs, so a long run does not end in a configuration error.
    if let Some(repo) = &args.upload_hf {
        crate::hub::check_repo_id(repo, "--upload-hf")?;
        crate::hub::sync::token(&settings.hub)?;
    }
    if args.dry_run {
        println!(
            "dry run: {} checked, nothing sent",
            display(&settings.paths.root, &path)
        );
        return Ok(());
    }
    // The file's own `tracking:` replaces run_defaults.yaml's layer for this command.
    let own_tracker;
    let tracker = match &loaded.file.defaults.tracking {
        Some(t) => {
            own_tracker = Tracker::new(&settings.tracking_with(t)?);
            &own_tracker
        }
        None => tracker,
    };
    let engine = settings.engine(&args.engine, EngineUse::Eval)?;
    let mut api = settings.api(&args.api)?;
    if api.max_cost_usd.is_none() {
        api.max_cost_usd = loaded.file.defaults.max_cost_usd;
    }
    if args.api.concurrency.is_none() {
        if let Some(c) = loaded.file.defaults.concurrency {
            api.concurrency = c;
        }
    }
    let opts = RunOptions {
        paths: &settings.paths,
        hub: &settings.hub,
        engine: &engine,
        api: &api,
        batch_size: args.batch_size,
        verbose: settings.verbose,
    };
    let parallel = if args.parallel_experiments {
        true
    } else if args.serial_experiments {
        false
    } else {
        loaded.file.defaults.parallel.unwrap_or(false)
    };
    let results = run_all(settings, &plans, &opts, parallel);
    let own = loaded.file.defaults.tracking.is_some();
    if let Some(ls) = &langsmith {
        for (_, d) in results
            .iter()
            .filter_map(|(id, r)| r.as_ref().ok().map(|d| (id, d)))
        {
            trace_experiment(ls, d);
        }
    }
    compare_modes(settings, &plans, &results)?;
    report(
        settings,
        tracker,
        own,
        plans.len(),
        results,
        args.upload_hf.as_deref(),
    )
}

/// Each compressed experiment that ran against its baseline that ran: printed side by side
/// and kept in the compressed summary (`vs_baseline`).
fn compare_modes(
    settings: &Settings,
    plans: &[plan::Planned<'_>],
    results: &[(String, Result<run::Done>)],
) -> Result<()> {
    let ok = |id: &str| results.iter().any(|(r, d)| r == id && d.is_ok());
    let pairs: Vec<_> = compare::pairs(plans)
        .into_iter()
        .filter(|(b, c)| ok(&b.id) && ok(&c.id))
        .collect();
    if !pairs.is_empty() {
        println!("baseline vs compressed (same examples; Δ = compressed − baseline, 95% paired bootstrap):");
    }
    for (b, c) in pairs {
        let cmp = compare::compare(&settings.paths, b, c)?;
        let summary = run::experiment_dir(&settings.paths, &c.id).join("summary.json");
        compare::record(&summary, &cmp)?;
        print!("{}", compare::table(&cmp));
    }
    Ok(())
}

/// Every selected experiment checked: the plan of the valid ones printed, then each bad
/// line (one each); nothing runs while any is bad. A single error is the error itself.
fn check<'a>(
    settings: &Settings,
    args: &ExperimentsArgs,
    loaded: &file::Loaded,
    catalog: &Catalog<'a>,
) -> Result<Vec<plan::Planned<'a>>> {
    let checked = plan::plan(
        loaded,
        catalog,
        &settings.configs,
        &settings.env,
        &args.experiment_id,
        &args.tag,
    )?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for r in checked {
        match r {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !plans.is_empty() {
        plan::print_plan(&plan::estimate(&plans, &settings.paths)?);
    }
    match errors.as_slice() {
        [] => Ok(plans),
        [one] if plans.is_empty() => bail!("{one}"),
        _ => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            bail!(
                "{} of {} experiments in {} have errors (listed above); fix them and run again",
                errors.len(),
                errors.len() + plans.len(),
                display(&settings.paths.root, &loaded.path)
            )
        }
    }
}

/// Run the experiments, one after another or each on its own thread (their outputs never
/// share a file: each has its own directory).
fn run_all(
    settings: &Settings,
    plans: &[plan::Planned<'_>],
    opts: &RunOptions<'_>,
    parallel: bool,
) -> Vec<(String, Result<run::Done>)> {
    if !(parallel && plans.len() > 1) {
        return plans
            .iter()
            .map(|p| (p.id.clone(), run::run_experiment(settings, p, opts)))
            .collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    s.spawn(|| run::run_experiment(settings, p, opts)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(id, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("experiment `{id}` panicked")));
                (id, r)
            })
            .collect()
    })
}

/// Print where each summary is, log it, and fail naming every experiment that failed (a
/// single experiment's error is returned as it is, on one line).
fn report(
    settings: &Settings,
    tracker: &Tracker,
    own_tracker: bool,
    total: usize,
    mut results: Vec<(String, Result<run::Done>)>,
    upload_hf: Option<&str>,
) -> Result<()> {
    if results.len() == 1 && results[0].1.is_err() {
        let (id, r) = results.remove(0);
        return r.map(|_| ()).with_context(|| format!("experiment `{id}`"));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut spent = 0.0;
    for (id, r) in results {
        match r {
            Ok(d) => {
                spent += d.spent_usd;
                track_experiment(settings, tracker, &d);
                println!(
                    "{id}: summary → {}",
                    display(&settings.paths.root, &d.summary)
                );
            }
            Err(e) => {
                eprintln!("error: experiment `{id}`: {e:#}");
                failed.push(id);
            }
        }
    }
    println!("total spent this run: ${spent:.6}");
    if own_tracker {
        tracker.finish_and_report();
    }
    if let Some(repo) = upload_hf {
        upload(settings, repo)?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} experiments failed: {}; fix the cause and run again (finished examples are kept)",
            failed.len(),
            total,
            failed.join(", ")
        );
    }
    Ok(())
}

/// `--upload-hf`: the experiments' results and the summaries to a hub dataset repo.
fn upload(settings: &Settings, repo: &str) -> Result<()> {
    use crate::hub::sync::{self, Direction, SyncOptions, What};
    let opts = SyncOptions {
        what: What::Summaries,
        direction: Direction::Up,
        repo: repo.to_string(),
        dry_run: false,
        public: false,
        retry: settings.hub_retry()?,
    };
    let report = sync::sync(&settings.paths, &settings.hub, &opts).with_context(|| {
        format!("--upload-hf {repo} (the results are kept: `bwb sync --what summaries --direction up --repo {repo}` retries the upload)")
    })?;
    match report.commit {
        Some(c) => println!(
            "uploaded {} file(s) to datasets/{repo} ({} unchanged): {c}",
            report.transferred.len(),
            report.unchanged
        ),
        None => println!("datasets/{repo} already holds these results; nothing uploaded"),
    }
    Ok(())
}

/// One MLflow run per experiment: its settings as params, every metric's mean / std / p50 /
/// p95 / CI (per subtask as `<subtask>.<metric>`), latency, tokens and cost as metrics, and
/// its summary and per-example files as artifacts.
fn track_experiment(settings: &Settings, tracker: &Tracker, d: &run::Done) {
    if !tracker.enabled() {
        return;
    }
    let Ok(text) = std::fs::read_to_string(&d.summary) else {
        return;
    };
    let Ok(s) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let str_of = |k: &str| s[k].as_str().unwrap_or("").to_string();
    let mut params = Vec::new();
    for k in [
        "experiment_id",
        "model",
        "mode",
        "dataset",
        "task",
        "split",
        "seed",
        "requested_examples",
        "tags",
    ] {
        track::flatten_params(k, &s[k], &mut params);
    }
    let mut tags = track::bwb_tags(
        "experiments",
        &str_of("model"),
        &str_of("dataset"),
        &str_of("mode"),
        settings.paths.smoke,
    );
    tags.push(("bwb.experiment_id".into(), d.id.clone()));
    let run = tracker.start_run(&format!("experiments {}", d.id), tags, params);
    let mut m: Vec<(String, f64)> = Vec::new();
    metrics_of(&s, "", &mut m);
    if let Some(per) = s["per_task"].as_object() {
        for (task, v) in per {
            metrics_of(v, &format!("{task}."), &mut m);
        }
    }
    let refs: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let logger = run.logger();
    logger.log_metrics(&refs, 0);
    if let Some(dir) = d.summary.parent() {
        for f in ["summary.json", "summary.csv"] {
            logger.log_artifact(&dir.join(f), "summary");
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jsonl") {
                    logger.log_artifact(&p, "examples");
                }
            }
        }
    }
    run.end(RunStatus::Finished);
}

/// The numbers of one summary object, names prefixed.
fn metrics_of(s: &serde_json::Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    if let Some(ms) = s["metrics"].as_object() {
        for (name, v) in ms {
            for stat in ["mean", "std", "p50", "p95", "ci_low", "ci_high"] {
                if let Some(x) = v[stat].as_f64() {
                    let key = if stat == "mean" {
                        name.clone()
                    } else {
                        format!("{name}_{stat}")
                    };
                    out.push((format!("{prefix}{key}"), x));
                }
            }
        }
    }
    let mut put = |k: &str, v: &serde_json::Value| {
        if let Some(x) = v.as_f64() {
            out.push((format!("{prefix}{k}"), x));
        }
    };
    put("num_examples", &s["num_examples"]);
    put("errors", &s["errors"]);
    put("truncated", &s["truncated"]);
    put("latency_ms_mean", &s["latency_ms"]["mean"]);
    put("latency_ms_p50", &s["latency_ms"]["p50"]);
    put("latency_ms_p95", &s["latency_ms"]["p95"]);
    put("avg_input_tokens", &s["tokens"]["avg_input_tokens"]);
    put("avg_output_tokens", &s["tokens"]["avg_output_tokens"]);
    put("cost_total_usd", &s["cost"]["total_usd"]);
    put("cost_mean_usd", &s["cost"]["mean_usd"]);
    put(
        "compression_ratio",
        &s["compression"]["compression_ratio"]["mean"],
    );
    put("token_reduction", &s["compression"]["token_reduction"]);
    put(
        "compression_latency_ms",
        &s["compression"]["latency_ms"]["mean"],
    );
    put("compression_cost_usd", &s["compression"]["cost_total_usd"]);
}

/// Trace an experiment's examples to LangSmith (never fails the run: one line either way).
fn trace_experiment(ls: &LangSmith, d: &run::Done) {
    let Some(dir) = d.summary.parent() else {
        return;
    };
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let summary: serde_json::Value = std::fs::read_to_string(&d.summary)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut prompts = std::collections::HashMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
        {
            rows.extend(read(f));
        }
    }
    for r in &rows {
        let config = r["dataset"].as_str().unwrap_or_default().to_string();
        prompts.entry(config).or_insert_with_key(|config| {
            read(&dir.join("predictions").join(format!("{config}.jsonl")))
                .into_iter()
                .filter_map(|p| {
                    Some((
                        p["example_id"].as_str()?.to_string(),
                        p["input_messages"].clone(),
                    ))
                })
                .collect::<std::collections::HashMap<String, serde_json::Value>>()
        });
    }
    let examples: Vec<langsmith::Example> = rows
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let config = r["dataset"].as_str().unwrap_or_default();
            langsmith::Example {
                messages: prompts
                    .get(config)
                    .and_then(|m| m.get(&id))
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
                id,
                pred: r["pred"].as_str().unwrap_or_default().to_string(),
                gold: r["gold"].clone(),
                metadata: serde_json::json!({
                    "dataset": r["dataset"], "input_tokens": r["input_tokens"],
                    "output_tokens": r["output_tokens"], "latency_ms": r["latency_ms"],
                    "cost_usd": r["cost_usd"], "truncated": r["truncated"],
                }),
                latency_ms: r["latency_ms"].as_f64().unwrap_or(0.0),
                error: r["error"].as_str().map(str::to_string),
                metrics: r["metrics"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let logged = ls.log_experiment(&format!("experiments {}", d.id), &summary, &examples);
    let line = logged.line(&ls.project);
    if logged.failed_runs + logged.failed_feedback == 0 {
        println!("{}: {line}", d.id);
    } else {
        tracing::warn!("{}: {line}", d.id);
    }
}
