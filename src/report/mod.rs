//! Scoring and reporting: per-example error classes, summaries with confidence intervals and
//! paired comparisons, and TCO — what `bwb classify` writes and the dashboard reads.
//!
//! `results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl`
//! → `results/classified/<model>_<task>_<condition>.jsonl` (one class per prediction)
//! → `results/summaries/<model>_<task>_<condition>.{json,csv}` and `results/summaries/all.csv`.

pub mod classify;
pub mod summary;
pub mod tco;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::Usage;
use crate::config::{AnswerKind, Configs, ModelKind, TaskConfig};
use crate::data::Answer;
use crate::error::{Error, Result};
use crate::eval::extract::Parsed;
use crate::eval::predictions::Prediction;
use crate::exec::{ExecResult, Limits};
use crate::metrics;
use crate::paths::{display, Paths};
use classify::{Classified, REQUEST_ERROR};
use summary::{Comparison, Cost, Dist, McnemarSummary, MetricSummary, Summary, Tokens};

/// Bootstrap resamples for confidence intervals and paired comparisons.
pub const RESAMPLES: usize = 1000;
/// Seed of every bootstrap, so summaries are reproducible.
pub const BOOTSTRAP_SEED: u64 = 20_240_601;

/// How `bwb classify` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run model-written code (MBPP) in the sandbox. Off: code tasks are refused.
    pub allow_code_execution: bool,
    pub limits: Limits,
    /// Programs run at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_code_execution: false,
            limits: Limits::default(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// The predictions of one model × condition on a task, all seeds.
struct Group {
    model: String,
    condition: String,
    files: Vec<PathBuf>,
    preds: Vec<Prediction>,
    classified: Vec<Classified>,
}

/// What classifying one task produced.
#[derive(Debug)]
pub struct TaskReport {
    pub task: String,
    pub summaries: Vec<(PathBuf, Summary)>,
    /// Programs executed (code tasks).
    pub executed: usize,
}

/// The message for a code task when execution was not allowed.
pub fn code_execution_refused(task: &str) -> Error {
    Error::Config(format!(
        "task `{task}` is scored by running model-written Python; pass --allow-code-execution to run it in bwb's sandbox (own process, time/memory/process limits, no network where the OS allows)"
    ))
}

/// Classify and summarise every model × condition with predictions for `task`.
/// Ok(None): no predictions exist for the task.
pub fn classify_task(
    paths: &Paths,
    configs: &Configs,
    task: &TaskConfig,
    opts: &Options,
) -> Result<Option<TaskReport>> {
    let mut groups = load_groups(paths, &task.id)?;
    if groups.is_empty() {
        return Ok(None);
    }
    if task.answer.kind == AnswerKind::Code && !opts.allow_code_execution {
        return Err(code_execution_refused(&task.id));
    }
    let executed = if task.answer.kind == AnswerKind::Code {
        execute_all(&mut groups, task, opts)?
    } else {
        0
    };
    for g in &mut groups {
        if task.answer.kind != AnswerKind::Code {
            g.classified = g
                .preds
                .iter()
                .map(|p| classify::classify(task, p, None))
                .collect();
        }
        let path = paths
            .results()
            .join("classified")
            .join(format!("{}_{}_{}.jsonl", g.model, task.id, g.condition));
        crate::fsutil::write_atomic(&path, |w| {
            for c in &g.classified {
                serde_json::to_writer(&mut *w, c)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    // A group whose every request failed has nothing to score.
    groups.retain(|g| {
        let scored = g.classified.iter().any(|c| c.score.is_some());
        if !scored {
            tracing::warn!(
                "{}/{}/{}: all {} prediction(s) failed after retries; no summary — rerun bwb eval to retry them",
                g.model,
                task.id,
                g.condition,
                g.preds.len()
            );
        }
        scored
    });
    let per_example: Vec<BTreeMap<String, f64>> = groups.iter().map(per_example_scores).collect();
    let mut summaries = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let mut s = summarise(paths, configs, task, g)?;
        for (j, other) in groups.iter().enumerate() {
            if i != j {
                if let Some(c) = compare(task, &per_example[i], &per_example[j], other) {
                    s.comparisons.push(c);
                }
            }
        }
        let stem = format!("{}_{}_{}", g.model, task.id, g.condition);
        let dir = paths.results().join("summaries");
        let json = dir.join(format!("{stem}.json"));
        crate::fsutil::write_json_atomic(&json, &s)?;
        write_flat_csv(&dir.join(format!("{stem}.csv")), &s)?;
        summaries.push((json, s));
    }
    remove_stale(paths, &task.id, &summaries)?;
    Ok(Some(TaskReport {
        task: task.id.clone(),
        summaries,
        executed,
    }))
}

/// Summaries of `task` from an earlier classify whose predictions are gone: removed (with
/// their CSV), so the overview and the dashboard show only what the predictions support.
fn remove_stale(paths: &Paths, task: &str, written: &[(PathBuf, Summary)]) -> Result<()> {
    let dir = paths.results().join("summaries");
    for f in list(&dir)? {
        if f.extension().is_none_or(|e| e != "json") || written.iter().any(|(p, _)| *p == f) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(old) = serde_json::from_str::<Summary>(&text) else {
            continue; // not ours to judge; write_overview names it
        };
        if old.task != task {
            continue;
        }
        let shown = display(&paths.root, &f);
        tracing::info!(
            "{shown}: no predictions for {}/{}/{} any more; removed",
            old.model,
            old.task,
            old.condition
        );
        for p in [f.clone(), f.with_extension("csv")] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Write { path: p, source }),
            }
        }
    }
    Ok(())
}

/// results/predictions/<model>/<task>/<condition>/seed-*.jsonl, grouped.
fn load_groups(paths: &Paths, task: &str) -> Result<Vec<Group>> {
    let root = paths.results().join("predictions");
    let mut groups = Vec::new();
    for model_dir in sorted_dirs(&root)? {
        let task_dir = model_dir.join(task);
        for cond_dir in sorted_dirs(&task_dir)? {
            let mut files: Vec<PathBuf> = list(&cond_dir)?
                .into_iter()
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("seed-") && name.ends_with(".jsonl")
                })
                .collect();
            files.sort();
            let mut preds = Vec::new();
            for f in &files {
                preds.extend(read_predictions(paths, f)?);
            }
            if preds.is_empty() {
                continue;
            }
            groups.push(Group {
                model: file_name(&model_dir),
                condition: file_name(&cond_dir),
                files,
                preds,
                classified: Vec::new(),
            });
        }
    }
    Ok(groups)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::BadFile {
            path: dir.to_path_buf(),
            message: format!("cannot list directory: {e}"),
        }),
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut d: Vec<PathBuf> = list(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    d.sort();
    Ok(d)
}

/// Every prediction of a file; a torn last line (an eval killed mid-write) is skipped with a
/// warning, any other bad line is an error naming file and line.
fn read_predictions(paths: &Paths, path: &Path) -> Result<Vec<Prediction>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read predictions: {e}"),
    })?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Prediction>(line) {
            Ok(p) => out.push(p),
            Err(_) if i + 1 == lines.len() && !complete => {
                let shown = display(&paths.root, path);
                tracing::warn!(
                    "{shown}: last line is incomplete (an interrupted eval); skipped — rerun bwb eval to finish it"
                )
            }
            Err(e) => {
                return Err(Error::BadRow {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!(
                        "not a prediction: {e}; delete the line (or the file) and rerun bwb eval"
                    ),
                })
            }
        }
    }
    Ok(out)
}

/// Run every distinct program of a code task once, in parallel, and classify.
fn execute_all(groups: &mut [Group], task: &TaskConfig, opts: &Options) -> Result<usize> {
    // Distinct (example, code) pairs across every group and seed.
    let mut programs: Vec<(String, String, String, Vec<String>)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for g in groups.iter() {
        for p in g.preds.iter().filter(|p| p.error.is_none()) {
            if let (Parsed::Code { code }, Answer::Code { tests, setup, .. }) =
                (&p.prediction, &p.gold)
            {
                let key = (p.example_id.clone(), code.clone());
                if let std::collections::hash_map::Entry::Vacant(e) = index.entry(key) {
                    e.insert(programs.len());
                    programs.push((
                        p.example_id.clone(),
                        code.clone(),
                        setup.clone(),
                        tests.clone(),
                    ));
                }
            }
        }
    }
    let results = run_programs(&programs, opts)?;
    for g in groups.iter_mut() {
        g.classified = g
            .preds
            .iter()
            .map(|p| {
                let r = match &p.prediction {
                    Parsed::Code { code } => index
                        .get(&(p.example_id.clone(), code.clone()))
                        .map(|&i| &results[i]),
                    _ => None,
                };
                classify::classify(task, p, r)
            })
            .collect();
    }
    Ok(programs.len())
}

fn run_programs(
    programs: &[(String, String, String, Vec<String>)],
    opts: &Options,
) -> Result<Vec<ExecResult>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<ExecResult>>>> = programs
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 16) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, code, setup, tests)) = programs.get(i) else {
                    break;
                };
                let r = crate::exec::run_tests(code, setup, tests, &opts.limits);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    programs
        .iter()
        .zip(slots)
        .map(|((id, ..), slot)| {
            slot.into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| Error::Config(format!("example {id}: the program was not run")))?
        })
        .collect()
}

/// Per-example score (mean over a group's predictions of that example), request errors out.
fn per_example_scores(g: &Group) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for c in &g.classified {
        if let Some(s) = c.score {
            let e = acc.entry(c.example_id.clone()).or_insert((0.0, 0));
            e.0 += s;
            e.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// Paired comparison of `a` with `other` on the examples both scored.
fn compare(
    task: &TaskConfig,
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
    other: &Group,
) -> Option<Comparison> {
    let (xa, xb): (Vec<f64>, Vec<f64>) = a
        .iter()
        .filter_map(|(id, &sa)| b.get(id).map(|&sb| (sa, sb)))
        .unzip();
    if xa.is_empty() {
        return None;
    }
    let pb = metrics::stats::paired_bootstrap(&xa, &xb, RESAMPLES, BOOTSTRAP_SEED)?;
    let mcnemar = if classify::score_is_binary(task) {
        // Examples scored over several seeds count as right when right on average.
        let only_a = xa
            .iter()
            .zip(&xb)
            .filter(|(x, y)| **x >= 0.5 && **y < 0.5)
            .count() as u64;
        let only_b = xa
            .iter()
            .zip(&xb)
            .filter(|(x, y)| **x < 0.5 && **y >= 0.5)
            .count() as u64;
        let m = metrics::stats::mcnemar(only_a, only_b);
        Some(McnemarSummary {
            only_a,
            only_b,
            statistic: m.statistic,
            p_value: m.p_value,
            exact: m.exact,
        })
    } else {
        None
    };
    Some(Comparison {
        model: other.model.clone(),
        condition: other.condition.clone(),
        score: classify::score_name(task).to_string(),
        n_paired: xa.len(),
        mean_diff: pb.mean_diff,
        ci_low: pb.ci_low,
        ci_high: pb.ci_high,
        p_value: pb.p_value,
        mcnemar,
    })
}

/// The task's metrics over one set of scored predictions (request errors already removed).
pub fn task_metrics(task: &TaskConfig, rows: &[(&Prediction, &Classified)]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    match task.answer.kind {
        AnswerKind::Label => {
            let labels: Vec<&str> = task.answer.labels.iter().map(String::as_str).collect();
            let mut y_true = Vec::with_capacity(rows.len());
            let mut y_pred = Vec::with_capacity(rows.len());
            for (p, _) in rows {
                if let (Answer::Label { label: gold }, Parsed::Label { label }) =
                    (&p.gold, &p.prediction)
                {
                    y_true.push(gold.as_str());
                    y_pred.push(label.as_deref());
                }
            }
            use metrics::classification as c;
            out.push(("accuracy".into(), c::accuracy(&y_true, &y_pred)));
            out.push(("macro_f1".into(), c::macro_f1(&labels, &y_true, &y_pred)));
            out.push((
                "weighted_f1".into(),
                c::weighted_f1(&labels, &y_true, &y_pred),
            ));
        }
        AnswerKind::Choice => {
            out.push(("accuracy".into(), mean_score(rows)));
        }
        AnswerKind::Spans => {
            let mut em = Vec::with_capacity(rows.len());
            let mut has_true = Vec::with_capacity(rows.len());
            let mut has_pred = Vec::with_capacity(rows.len());
            for (p, _) in rows {
                if let (Answer::Spans { spans: gold }, Parsed::Spans { spans }) =
                    (&p.gold, &p.prediction)
                {
                    let gold: Vec<String> = gold.iter().map(|s| s.text.clone()).collect();
                    em.push(metrics::cuad::exact_match(spans, &gold));
                    has_true.push(!gold.is_empty());
                    has_pred.push(!spans.is_empty());
                }
            }
            let det = metrics::cuad::answer_detection(&has_true, &has_pred);
            let scores: Vec<f64> = has_pred.iter().map(|&b| f64::from(u8::from(b))).collect();
            out.push(("cuad_f1".into(), mean_score(rows)));
            out.push((
                "exact_match".into(),
                metrics::stats::mean(&em).unwrap_or(0.0),
            ));
            out.push(("answer_detection_f1".into(), det.f1));
            out.push(("answer_detection_precision".into(), det.precision));
            out.push(("answer_detection_recall".into(), det.recall));
            out.push(("aupr".into(), metrics::cuad::aupr(&has_true, &scores)));
        }
        AnswerKind::Code => {
            // pass@1 with the unbiased estimator over each example's draws.
            let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for (_, c) in rows {
                let e = per.entry(c.example_id.as_str()).or_insert((0, 0));
                e.0 += 1;
                if c.class == classify::CORRECT {
                    e.1 += 1;
                }
            }
            let v: Vec<f64> = per
                .values()
                .map(|&(n, c)| metrics::code::pass_at_k(n, c, 1))
                .collect();
            out.push(("pass_at_1".into(), metrics::stats::mean(&v).unwrap_or(0.0)));
        }
    }
    out
}

fn mean_score(rows: &[(&Prediction, &Classified)]) -> f64 {
    let v: Vec<f64> = rows.iter().filter_map(|(_, c)| c.score).collect();
    metrics::stats::mean(&v).unwrap_or(0.0)
}

fn dist(v: &[f64]) -> Dist {
    let q = |x| metrics::stats::percentile(v, x).unwrap_or(0.0);
    Dist {
        mean: metrics::stats::mean(v).unwrap_or(0.0),
        std: metrics::stats::std(v),
        p50: q(50.0),
        p95: q(95.0),
        max: v.iter().copied().fold(0.0, f64::max),
    }
}

fn summarise(paths: &Paths, configs: &Configs, task: &TaskConfig, g: &Group) -> Result<Summary> {
    let rows: Vec<(&Prediction, &Classified)> = g
        .preds
        .iter()
        .zip(&g.classified)
        .filter(|(_, c)| c.class != REQUEST_ERROR)
        .collect();
    let mut error_classes: BTreeMap<String, u64> = BTreeMap::new();
    for c in &g.classified {
        *error_classes.entry(c.class.clone()).or_default() += 1;
    }
    let n_errors = error_classes.get(REQUEST_ERROR).copied().unwrap_or(0);
    if n_errors > 0 {
        tracing::warn!(
            "{}/{}/{}: {n_errors} prediction(s) failed after retries and are left out of the metrics; rerun bwb eval to retry them",
            g.model,
            task.id,
            g.condition
        );
    }
    let mut seeds: Vec<u64> = rows.iter().map(|(p, _)| p.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();

    // Metrics per seed, and a bootstrap CI over the pooled examples.
    let per_seed: Vec<Vec<(String, f64)>> = seeds
        .iter()
        .map(|s| {
            let r: Vec<_> = rows.iter().filter(|(p, _)| p.seed == *s).copied().collect();
            task_metrics(task, &r)
        })
        .collect();
    let names: Vec<String> = task_metrics(task, &rows)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if !names.contains(&task.metric_id) {
        return Err(Error::Config(format!(
            "configs/tasks/{}.yaml: field `metric_id` = `{}` is not computed for {:?} answers; valid: {}",
            task.id,
            task.metric_id,
            task.answer.kind,
            names.join(", ")
        )));
    }
    let boot = bootstrap(task, &rows, names.len());
    let mut metrics_out = BTreeMap::new();
    for (k, name) in names.iter().enumerate() {
        let vals: Vec<f64> = per_seed.iter().map(|m| m[k].1).collect();
        let mut b: Vec<f64> = boot.iter().map(|m| m[k]).collect();
        b.sort_by(f64::total_cmp);
        // Rows are never empty here (groups without a scored prediction are dropped).
        let q = |x| metrics::stats::percentile(&b, x).unwrap_or(0.0);
        metrics_out.insert(
            name.clone(),
            MetricSummary {
                mean: metrics::stats::mean(&vals).unwrap_or(0.0),
                std: metrics::stats::std(&vals),
                p50: metrics::stats::percentile(&vals, 50.0).unwrap_or(0.0),
                p95: metrics::stats::percentile(&vals, 95.0).unwrap_or(0.0),
                ci_low: q(2.5),
                ci_high: q(97.5),
                per_seed: vals,
            },
        );
    }

    // Latency (cache hits say nothing about the provider's speed), tokens, cost.
    let fresh: Vec<f64> = rows
        .iter()
        .filter(|(p, _)| !p.from_cache)
        .map(|(p, _)| p.latency_ms)
        .collect();
    let latency = if fresh.is_empty() {
        rows.iter().map(|(p, _)| p.latency_ms).collect()
    } else {
        fresh
    };
    let input: Vec<f64> = rows.iter().map(|(p, _)| p.input_tokens as f64).collect();
    let output: Vec<f64> = rows.iter().map(|(p, _)| p.output_tokens as f64).collect();
    let cached: Vec<f64> = rows
        .iter()
        .map(|(p, _)| p.cached_input_tokens as f64)
        .collect();
    let tokens = Tokens {
        input: dist(&input),
        output: dist(&output),
        cached_input_mean: metrics::stats::mean(&cached).unwrap_or(0.0),
        total_input: rows.iter().map(|(p, _)| p.input_tokens).sum(),
        total_output: rows.iter().map(|(p, _)| p.output_tokens).sum(),
    };
    let kind = match configs.models.get(&g.model) {
        Some(m) => m.kind,
        None if rows.iter().all(|(p, _)| p.compute_ms.is_none()) => ModelKind::Api,
        None => ModelKind::Local,
    };
    let pricing = &configs.pricing;
    let gpu = pricing.default_gpu.as_str();
    let spent: Vec<f64> = g
        .preds
        .iter()
        .filter(|p| !p.from_cache)
        .filter_map(|p| p.cost_usd)
        .collect();
    let (serving, cost) = match kind {
        ModelKind::Api => {
            let per_query = pricing.api.get(&g.model).map(|price| {
                let v: Vec<f64> = rows
                    .iter()
                    .map(|(p, _)| {
                        crate::backend::api::cost_usd(
                            price,
                            &Usage {
                                input_tokens: p.input_tokens,
                                output_tokens: p.output_tokens,
                                cached_input_tokens: p.cached_input_tokens,
                                ..Usage::default()
                            },
                        )
                    })
                    .collect();
                metrics::stats::mean(&v).unwrap_or(0.0)
            });
            (
                per_query.map(|per_query_usd| tco::Serving::Api { per_query_usd }),
                Cost {
                    per_query_usd: per_query,
                    spent_usd: (!spent.is_empty()).then(|| spent.iter().sum()),
                    basis: "api".into(),
                },
            )
        }
        ModelKind::Local => {
            let compute: Vec<f64> = rows.iter().filter_map(|(p, _)| p.compute_ms).collect();
            let s = metrics::stats::mean(&compute).map(|ms| ms / 1e3);
            let hourly = pricing.gpu.get(gpu).map(|p| p.hourly_usd);
            (
                s.map(|compute_s_per_query| tco::Serving::Local {
                    compute_s_per_query,
                }),
                Cost {
                    per_query_usd: s.zip(hourly).map(|(s, h)| s / 3600.0 * h),
                    spent_usd: None,
                    basis: format!("gpu:{gpu}"),
                },
            )
        }
    };
    let training_hours = if g.condition.starts_with("lora") {
        training_hours(paths, &g.model, &task.id, &g.condition)
    } else {
        None
    };
    let tco = serving.and_then(|s| tco::tco(s, training_hours, gpu, pricing));
    let n_examples = {
        let mut ids: Vec<&str> = rows.iter().map(|(p, _)| p.example_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    tracing::debug!(
        "{}/{}/{}: {} prediction file(s)",
        g.model,
        task.id,
        g.condition,
        g.files.len()
    );
    Ok(Summary {
        model: g.model.clone(),
        model_kind: match kind {
            ModelKind::Api => "api".into(),
            ModelKind::Local => "local".into(),
        },
        task: task.id.clone(),
        condition: g.condition.clone(),
        primary_metric: task.metric_id.clone(),
        seeds,
        n_predictions: rows.len(),
        n_examples,
        metrics: metrics_out,
        latency_ms: dist(&latency),
        tokens,
        cost,
        error_classes,
        comparisons: Vec::new(),
        tco,
        prices_as_of: pricing.as_of.clone(),
    })
}

/// `RESAMPLES` percentile-bootstrap replicates of every metric over the pooled rows.
fn bootstrap(task: &TaskConfig, rows: &[(&Prediction, &Classified)], n: usize) -> Vec<Vec<f64>> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut sample = Vec::with_capacity(rows.len());
    (0..RESAMPLES)
        .map(|_| {
            sample.clear();
            for _ in 0..rows.len() {
                sample.push(rows[rng.random_range(0..rows.len())]);
            }
            let m = task_metrics(task, &sample);
            debug_assert_eq!(m.len(), n);
            m.into_iter().map(|(_, v)| v).collect()
        })
        .collect()
}

/// Training wall hours from results/training/<model>_<task>_<condition>.json.
fn training_hours(paths: &Paths, model: &str, task: &str, condition: &str) -> Option<f64> {
    let path = paths.training_record(model, task, condition);
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "{}: not a training record ({e}); training cost left out of TCO",
                path.display()
            );
            return None;
        }
    };
    v.get("wall_seconds")
        .and_then(serde_json::Value::as_f64)
        .map(|s| s / 3600.0)
}

/// The summary flattened to `key,value` rows (`metrics.accuracy.mean,0.91`).
fn write_flat_csv(path: &Path, s: &Summary) -> Result<()> {
    let value = serde_json::to_value(s).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let mut rows = Vec::new();
    flatten("", &value, &mut rows);
    crate::fsutil::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(["key", "value"])?;
        for (k, v) in &rows {
            csv.write_record([k, v])?;
        }
        csv.flush()
    })
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        serde_json::Value::Null => out.push((prefix.to_string(), String::new())),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// results/summaries/all.csv: one row per summary with the headline numbers.
pub fn write_overview(paths: &Paths) -> Result<Option<PathBuf>> {
    let dir = paths.results().join("summaries");
    let mut files: Vec<PathBuf> = list(&dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::BadFile {
            path: f.clone(),
            message: format!("cannot read summary: {e}"),
        })?;
        let s: Summary = serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: f.clone(),
            message: format!("not a bwb summary ({e}); delete it and rerun bwb classify"),
        })?;
        rows.push(s);
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let path = dir.join("all.csv");
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    crate::fsutil::write_atomic(&path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record([
            "task",
            "model",
            "condition",
            "metric",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "n_predictions",
            "latency_p50_ms",
            "latency_p95_ms",
            "cost_per_query_usd",
            "tco_12m_usd_at_max_volume",
        ])?;
        for s in &rows {
            let m = s.metrics.get(&s.primary_metric);
            let tco = s
                .tco
                .as_ref()
                .and_then(|t| t.points.last())
                .map(|p| p.twelve_month_usd);
            csv.write_record([
                s.task.clone(),
                s.model.clone(),
                s.condition.clone(),
                s.primary_metric.clone(),
                opt(m.map(|m| m.mean)),
                opt(m.and_then(|m| m.std)),
                opt(m.map(|m| m.ci_low)),
                opt(m.map(|m| m.ci_high)),
                s.n_predictions.to_string(),
                s.latency_ms.p50.to_string(),
                s.latency_ms.p95.to_string(),
                opt(s.cost.per_query_usd),
                opt(tco),
            ])?;
        }
        csv.flush()
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_nested_keys_and_indices() {
        let v = serde_json::json!({"a": {"b": 1.5, "c": [true, null]}, "d": "x"});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        assert_eq!(
            out,
            vec![
                ("a.b".to_string(), "1.5".to_string()),
                ("a.c.0".into(), "true".into()),
                ("a.c.1".into(), String::new()),
                ("d".into(), "x".into()),
            ]
        );
    }
}
