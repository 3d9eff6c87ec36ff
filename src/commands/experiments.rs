//! `bwb experiments`: check the experiments file, print the plan, and (unless `--dry-run`)
//! run the selected experiments serially or concurrently.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::ExperimentsArgs;
use crate::experiments::file;
use crate::experiments::plan::{self, Catalog};
use crate::experiments::run::{self, RunOptions};
use crate::paths::display;
use crate::settings::{EngineUse, Settings};
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
    let plans = plan::plan(
        &loaded,
        &catalog,
        &settings.configs,
        &settings.env,
        &args.experiment_id,
        &args.tag,
    )?;
    let est = plan::estimate(&plans, &settings.paths)?;
    plan::print_plan(&est);
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
    let results: Vec<(String, Result<run::Done>)> = if parallel && plans.len() > 1 {
        std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        s.spawn(|| run::run_experiment(settings, p, &opts)),
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
    } else {
        plans
            .iter()
            .map(|p| (p.id.clone(), run::run_experiment(settings, p, &opts)))
            .collect()
    };
    let mut results = results;
    // One experiment that failed: its error alone, on one line.
    if results.len() == 1 && results[0].1.is_err() {
        let (id, r) = results.remove(0);
        return r.map(|_| ()).with_context(|| format!("experiment `{id}`"));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut spent = 0.0;
    let mut summaries: Vec<PathBuf> = Vec::new();
    for (id, r) in results {
        match r {
            Ok(d) => {
                spent += d.spent_usd;
                track_experiment(settings, tracker, &d);
                println!(
                    "{id}: summary → {}",
                    display(&settings.paths.root, &d.summary)
                );
                summaries.push(d.summary);
            }
            Err(e) => {
                eprintln!("error: experiment `{id}`: {e:#}");
                failed.push(id);
            }
        }
    }
    println!("total spent this run: ${spent:.6}");
    if tracker.enabled() && loaded.file.defaults.tracking.is_some() {
        let report = tracker.finish();
        if report.complete() {
            println!("{}", report.line());
        } else {
            tracing::warn!("{}", report.line());
        }
    }
    if let Some(repo) = &args.upload_hf {
        upload(settings, repo)?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} experiments failed: {}; fix the cause and run again (finished examples are kept)",
            failed.len(),
            plans.len(),
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
}
