//! Scoring and reporting: per-example error classes, summaries with confidence intervals and
//! paired comparisons, and TCO — what `bwb classify` writes and the dashboard reads.
//!
//! `results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl` ([`load`])
//! → `results/classified/<model>_<task>_<condition>.jsonl` (one class per prediction, [`score`])
//! → `results/summaries/<model>_<task>_<condition>.{json,csv}` ([`summarise`], [`compare`],
//! [`tco`]) and `results/summaries/all.csv`.

pub mod compare;
pub mod load;
pub mod score;
pub mod summarise;
pub mod summary;
pub mod tco;

use std::path::{Path, PathBuf};

use crate::config::{Configs, TaskConfig};
use crate::error::{Error, Result};
use crate::exec::Limits;
use crate::paths::{display, Paths};
use load::list;
use summary::Summary;

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
    /// The eval seeds whose bootstrap resamples of a greedy generation give its spread
    /// (run_defaults.yaml `eval_seeds`, the first `n_eval_seeds`); empty: no spread.
    pub seeds: Vec<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_code_execution: false,
            limits: Limits::default(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            seeds: Vec::new(),
        }
    }
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
    let groups = load::load_groups(paths, &task.id)?;
    if groups.is_empty() {
        return Ok(None);
    }
    let scorer = crate::score::scorer(task);
    if scorer.needs_execution() && !opts.allow_code_execution {
        return Err(code_execution_refused(&task.id));
    }
    let (classified, executed) = score::classify_groups(scorer.as_ref(), &groups, opts)?;
    for (g, c) in groups.iter().zip(&classified) {
        let path = paths
            .results()
            .join("classified")
            .join(format!("{}_{}_{}.jsonl", g.model, task.id, g.condition));
        crate::fsutil::write_atomic(&path, |w| {
            for c in c {
                serde_json::to_writer(&mut *w, c)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    // A group whose every request failed has nothing to score.
    let scored: Vec<(&load::Group, &Vec<score::Classified>)> = groups
        .iter()
        .zip(&classified)
        .filter(|(g, c)| {
            let any = c.iter().any(|c| c.score.is_some());
            if !any {
                tracing::warn!(
                    "{}/{}/{}: all {} prediction(s) failed after retries; no summary — rerun bwb eval to retry them",
                    g.model,
                    task.id,
                    g.condition,
                    g.preds.len()
                );
            }
            any
        })
        .collect();
    let per_example: Vec<_> = scored
        .iter()
        .map(|(_, c)| score::per_example_scores(c))
        .collect();
    let cx = summarise::Context {
        paths,
        configs,
        task,
        scorer: scorer.as_ref(),
        seeds: &opts.seeds,
    };
    let mut summaries = Vec::new();
    for (i, (g, c)) in scored.iter().enumerate() {
        let mut s = summarise::summarise(&cx, g, c)?;
        for (j, (other, _)) in scored.iter().enumerate() {
            if i == j {
                continue;
            }
            let (a, b) = (&per_example[i], &per_example[j]);
            if let Some(c) = compare::compare(scorer.as_ref(), a, b, &other.model, other.condition)
            {
                s.comparisons.push(c);
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
                s.condition.name().to_string(),
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
