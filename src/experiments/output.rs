//! An experiment's outputs in the shapes context-benchmark users know:
//!
//! - per example, one JSONL line `{id, model, input_question, input_context, pred, gold,
//!   input_tokens, output_tokens, latency_ms, cost_usd, metrics}` (plus bwb's `dataset`,
//!   `parsed`, `error`, `truncated`), in results/experiments/<id>/<id>.jsonl — one file per
//!   dataset config (`<id>.<config>.jsonl`) when the experiment covers several subtasks;
//! - summary.json and summary.csv: `metrics.<name>.{mean, std, p50, p95}` with a bootstrap
//!   95 % CI, `latency_ms`, `tokens {avg_input_tokens, avg_output_tokens}`, `cost {total_usd,
//!   mean_usd, std_usd, p50_usd, p95_usd}` (null when unpriced), and `per_task` for
//!   multi-subtask runs.
//!
//! Per-example metrics come from the task's scorer on that one example (for these answer
//! kinds every aggregate is the mean of the per-example values), so an experiment, `bwb
//! classify` and training validation score identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::TaskConfig;
use crate::data::{Answer, Example};
use crate::eval::predictions::Prediction;
use crate::metrics::stats;
use crate::score::{self, MetricId, Parsed};
use crate::settings::Settings;

use super::plan::Planned;
use super::run::RunOptions;

/// Bootstrap resamples behind each metric's CI.
const CI_RESAMPLES: usize = 1000;

/// One per-example output line.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub model: String,
    pub dataset: String,
    pub input_question: String,
    pub input_context: String,
    pub pred: String,
    pub parsed: Option<Parsed>,
    pub gold: Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    /// The requested metrics of this example; empty when the request failed.
    pub metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
    pub truncated: bool,
    /// `mode: compressed`: `{method, field, original_tokens, compressed_tokens,
    /// compression_ratio, latency_ms, cost_usd, compressed_context}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Value>,
}

/// The gold answer as users read it: one string, or a list.
fn gold_value(a: &Answer) -> Value {
    let list = |v: &[String]| match v {
        [one] => json!(one),
        _ => json!(v),
    };
    match a {
        Answer::Text { answers } => list(answers),
        Answer::Summary { references } => list(references),
        Answer::List { items } => json!(items),
        Answer::Retrieval { relevant } => json!(relevant),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// The question and the context of an example (the inputs its prompt shows).
fn question_and_context(ex: &Example) -> (String, String) {
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| ex.inputs.get(*k))
            .cloned()
            .unwrap_or_default()
    };
    (
        get(&["question", "query", "input", "instruction", "user_msg"]),
        get(&["context", "passages", "document", "text"]),
    )
}

/// Score every sampled example; `preds[i]` is `test[i]`'s prediction (None: never written).
pub fn rows(
    task: &TaskConfig,
    plan: &Planned<'_>,
    test: &[Example],
    preds: &[Option<Prediction>],
    compressed: &std::collections::HashMap<String, super::compression::Record>,
    opts: &RunOptions<'_>,
) -> Result<Vec<Row>> {
    let scorer = score::scorer(task);
    let wanted: Vec<MetricId> = plan.metrics.clone();
    let mut out = Vec::with_capacity(test.len());
    for (ex, p) in test.iter().zip(preds) {
        let (question, context) = question_and_context(ex);
        let mut row = Row {
            id: ex.id.clone(),
            model: plan.model.name(),
            dataset: task.id.clone(),
            input_question: question,
            input_context: context,
            pred: String::new(),
            parsed: None,
            gold: gold_value(&ex.answer),
            input_tokens: 0,
            output_tokens: 0,
            latency_ms: 0.0,
            cost_usd: None,
            metrics: BTreeMap::new(),
            error: Some("no prediction was written (the run stopped early); run again".into()),
            truncated: false,
            compression: None,
        };
        if let Some(rec) = compressed.get(&ex.id) {
            row.compression = Some(compression_value(rec));
            if let Some(e) = &rec.error {
                row.error = Some(format!("compression failed: {e}"));
            }
        }
        if let Some(p) = p {
            row.pred = p.raw_output.trim().to_string();
            row.parsed = Some(p.prediction.clone());
            row.input_tokens = p.input_tokens;
            row.output_tokens = p.output_tokens;
            row.latency_ms = p.latency_ms;
            row.cost_usd = p.cost_usd;
            row.error = p.error.clone();
            row.truncated = p.truncated;
            if p.error.is_none() {
                let j = scorer.judge(&p.prediction, &ex.answer, &p.raw_output, None);
                let r = score::Row {
                    example_id: &ex.id,
                    parsed: &p.prediction,
                    gold: &ex.answer,
                    class: j.class,
                    score: j.score,
                };
                for (m, v) in scorer.metrics(&[r]) {
                    if wanted.contains(&m) {
                        row.metrics.insert(m.as_str().to_string(), v);
                    }
                }
            }
        }
        out.push(row);
    }
    super::bertscore::add(task, plan, &mut out, opts)?;
    Ok(out)
}

fn compression_value(rec: &super::compression::Record) -> Value {
    match &rec.result {
        Some(c) => json!({
            "method": rec.method,
            "field": rec.field,
            "original_tokens": c.original_tokens,
            "compressed_tokens": c.compressed_tokens,
            "compression_ratio": c.compression_ratio,
            "latency_ms": c.latency_ms,
            "cost_usd": c.cost_usd,
            "from_cache": c.from_cache,
            "compressed_context": c.text,
        }),
        None => json!({"method": rec.method, "field": rec.field, "error": rec.error}),
    }
}

/// The compression block of a summary: totals, mean ratio, token reduction, latency and
/// cost overhead; None without compressed rows.
fn compression_summary(rows: &[&Row], seed: u64) -> Option<Value> {
    let done: Vec<&Value> = rows
        .iter()
        .filter_map(|r| r.compression.as_ref())
        .filter(|c| c.get("original_tokens").is_some())
        .collect();
    let any = rows.iter().any(|r| r.compression.is_some());
    if !any {
        return None;
    }
    let f = |c: &Value, k: &str| c[k].as_f64().unwrap_or(0.0);
    let orig: f64 = done.iter().map(|c| f(c, "original_tokens")).sum();
    let comp: f64 = done.iter().map(|c| f(c, "compressed_tokens")).sum();
    let ratios: Vec<f64> = done.iter().map(|c| f(c, "compression_ratio")).collect();
    let lat: Vec<f64> = done.iter().map(|c| f(c, "latency_ms")).collect();
    let costs: Option<Vec<f64>> = done.iter().map(|c| c["cost_usd"].as_f64()).collect();
    Some(json!({
        "method": done.first().map(|c| c["method"].clone()),
        "examples": done.len(),
        "failures": rows.iter().filter(|r| r.compression.as_ref().is_some_and(|c| c.get("error").is_some())).count(),
        "original_tokens_total": orig,
        "compressed_tokens_total": comp,
        "compression_ratio": describe(&ratios, seed),
        "token_reduction": if orig > 0.0 { Some(1.0 - comp / orig) } else { None },
        "latency_ms": describe(&lat, seed),
        "cost_total_usd": costs.filter(|c| !c.is_empty()).map(|c| c.iter().sum::<f64>()),
    }))
}

/// mean / std / p50 / p95 (+ CI) of some values; nulls when there are none.
fn describe(values: &[f64], seed: u64) -> Value {
    let ci = stats::bootstrap_ci(values, CI_RESAMPLES, seed, 0.95);
    json!({
        "mean": stats::mean(values),
        "std": stats::std(values),
        "p50": stats::percentile(values, 50.0),
        "p95": stats::percentile(values, 95.0),
        "ci_low": ci.map(|c| c.0),
        "ci_high": ci.map(|c| c.1),
        "n": values.len(),
    })
}

/// The summary object of some rows.
fn summarise(rows: &[&Row], metrics: &[MetricId], seed: u64) -> Value {
    let ok: Vec<&&Row> = rows.iter().filter(|r| r.error.is_none()).collect();
    let mut m = serde_json::Map::new();
    for id in metrics {
        let v: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.metrics.get(id.as_str()).copied())
            .collect();
        m.insert(id.as_str().to_string(), describe(&v, seed));
    }
    let lat: Vec<f64> = ok.iter().map(|r| r.latency_ms).collect();
    let n = ok.len().max(1) as f64;
    let costs: Option<Vec<f64>> = ok.iter().map(|r| r.cost_usd).collect();
    let cost = match costs {
        Some(c) if !c.is_empty() => json!({
            "total_usd": c.iter().sum::<f64>(),
            "mean_usd": stats::mean(&c),
            "std_usd": stats::std(&c),
            "p50_usd": stats::percentile(&c, 50.0),
            "p95_usd": stats::percentile(&c, 95.0),
        }),
        _ => Value::Null,
    };
    json!({
        "num_examples": rows.len(),
        "errors": rows.len() - ok.len(),
        "truncated": rows.iter().filter(|r| r.truncated).count(),
        "metrics": m,
        "latency_ms": describe(&lat, seed),
        "tokens": {
            "avg_input_tokens": ok.iter().map(|r| r.input_tokens as f64).sum::<f64>() / n,
            "avg_output_tokens": ok.iter().map(|r| r.output_tokens as f64).sum::<f64>() / n,
            "total_input_tokens": ok.iter().map(|r| r.input_tokens).sum::<u64>(),
            "total_output_tokens": ok.iter().map(|r| r.output_tokens).sum::<u64>(),
        },
        "cost": cost,
        "compression": compression_summary(rows, seed),
    })
}

/// The per-example file of experiment `id`'s dataset config `config` in its folder `dir`
/// (`multi`: the experiment has several configs, one file each).
pub fn rows_file(dir: &Path, id: &str, config: &str, multi: bool) -> PathBuf {
    if multi {
        dir.join(format!("{id}.{config}.jsonl"))
    } else {
        dir.join(format!("{id}.jsonl"))
    }
}

/// Write the per-example files, summary.json and summary.csv; returns summary.json's path.
pub fn write(
    settings: &Settings,
    plan: &Planned<'_>,
    dir: &Path,
    per_entry: &[(String, Vec<Row>)],
) -> Result<PathBuf> {
    use crate::fsutil::{write_atomic, write_json_atomic};
    let multi = per_entry.len() > 1;
    for (config, rows) in per_entry {
        let mut text = String::new();
        for r in rows {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&rows_file(dir, &plan.id, config, multi), |w| {
            std::io::Write::write_all(w, text.as_bytes())
        })?;
    }
    let all: Vec<&Row> = per_entry.iter().flat_map(|(_, r)| r.iter()).collect();
    let mut summary = summarise(&all, &plan.metrics, plan.seed);
    let head = json!({
        "experiment_id": plan.id,
        "tags": plan.tags,
        "model": plan.model.name(),
        "mode": plan.mode,
        "dataset": plan.entries.first().map(|e| e.dataset.clone()),
        "task": plan.entries.first().map(|e| e.task.clone()),
        "split": plan.split,
        "seed": plan.seed,
        "requested_examples": plan.num_examples,
        "smoke": settings.paths.smoke,
    });
    if let (Value::Object(s), Value::Object(h)) = (&mut summary, head) {
        for (k, v) in h {
            s.insert(k, v);
        }
        if multi {
            let per: serde_json::Map<String, Value> = plan
                .entries
                .iter()
                .zip(per_entry)
                .map(|(e, (config, rows))| {
                    let key = e.subtask.clone().unwrap_or_else(|| config.clone());
                    let refs: Vec<&Row> = rows.iter().collect();
                    (key, summarise(&refs, &plan.metrics, plan.seed))
                })
                .collect();
            s.insert("per_task".into(), Value::Object(per));
        }
    }
    if let (Some(c), Some(obj)) = (&plan.compression, summary["compression"].as_object_mut()) {
        obj.insert("rate".into(), c.rate.to_json());
        obj.insert("model".into(), json!(c.model));
    }
    let path = dir.join("summary.json");
    write_json_atomic(&path, &summary)?;
    let table = csv(&summary, &plan.metrics);
    write_atomic(&dir.join("summary.csv"), |w| {
        std::io::Write::write_all(w, table.as_bytes())
    })?;
    Ok(path)
}

/// summary.csv: one row for the experiment, then one per subtask.
pub fn csv(summary: &Value, metrics: &[MetricId]) -> String {
    let mut header = vec![
        "experiment_id",
        "task",
        "model",
        "mode",
        "num_examples",
        "errors",
        "truncated",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for m in metrics {
        for s in ["mean", "std", "p50", "p95", "ci_low", "ci_high"] {
            header.push(format!("{}_{s}", m.as_str()));
        }
    }
    for h in [
        "latency_ms_mean",
        "latency_ms_p50",
        "latency_ms_p95",
        "avg_input_tokens",
        "avg_output_tokens",
        "cost_total_usd",
        "cost_mean_usd",
        "compression_ratio_mean",
        "token_reduction",
        "compression_latency_ms_mean",
    ] {
        header.push(h.into());
    }
    let mut out = header.join(",");
    out.push('\n');
    let mut line = |task: &str, s: &Value| {
        let num = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(x) => csv_field(x),
            other => other.to_string(),
        };
        let mut cells = vec![
            csv_field(summary["experiment_id"].as_str().unwrap_or("")),
            csv_field(task),
            csv_field(summary["model"].as_str().unwrap_or("")),
            csv_field(summary["mode"].as_str().unwrap_or("")),
            num(&s["num_examples"]),
            num(&s["errors"]),
            num(&s["truncated"]),
        ];
        for m in metrics {
            for st in ["mean", "std", "p50", "p95", "ci_low", "ci_high"] {
                cells.push(num(&s["metrics"][m.as_str()][st]));
            }
        }
        cells.push(num(&s["latency_ms"]["mean"]));
        cells.push(num(&s["latency_ms"]["p50"]));
        cells.push(num(&s["latency_ms"]["p95"]));
        cells.push(num(&s["tokens"]["avg_input_tokens"]));
        cells.push(num(&s["tokens"]["avg_output_tokens"]));
        cells.push(num(&s["cost"]["total_usd"]));
        cells.push(num(&s["cost"]["mean_usd"]));
        cells.push(num(&s["compression"]["compression_ratio"]["mean"]));
        cells.push(num(&s["compression"]["token_reduction"]));
        cells.push(num(&s["compression"]["latency_ms"]["mean"]));
        out.push_str(&cells.join(","));
        out.push('\n');
    };
    line(summary["task"].as_str().unwrap_or(""), summary);
    if let Some(per) = summary["per_task"].as_object() {
        for (k, v) in per {
            line(k, v);
        }
    }
    out
}

/// A CSV cell, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_cells_and_leaves_nulls_empty() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        let s = json!({"experiment_id": "e", "task": "rag_qa", "model": "m", "mode": "baseline",
            "num_examples": 2, "errors": 0, "truncated": 0,
            "metrics": {"f1": {"mean": 0.5, "std": null}},
            "latency_ms": {"mean": 1.0}, "tokens": {}, "cost": null});
        let text = csv(&s, &[MetricId::F1]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("experiment_id,task,model,mode,num_examples"));
        assert!(
            lines[1].starts_with("e,rag_qa,m,baseline,2,0,0,0.5,,"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn summaries_leave_errors_out_of_metrics_and_null_an_unpriced_cost() {
        let row = |f1: f64, err: Option<&str>, cost: Option<f64>| Row {
            id: "x".into(),
            model: "m".into(),
            dataset: "d".into(),
            input_question: String::new(),
            input_context: String::new(),
            pred: String::new(),
            parsed: None,
            gold: Value::Null,
            input_tokens: 10,
            output_tokens: 2,
            latency_ms: 5.0,
            cost_usd: cost,
            metrics: BTreeMap::from([("f1".to_string(), f1)]),
            error: err.map(String::from),
            truncated: false,
            compression: None,
        };
        let a = row(1.0, None, Some(0.1));
        let b = row(0.0, None, Some(0.3));
        let c = row(0.5, Some("timeout"), None);
        let s = summarise(&[&a, &b, &c], &[MetricId::F1], 1);
        assert_eq!(s["errors"], 1);
        assert_eq!(s["metrics"]["f1"]["mean"], 0.5);
        assert_eq!(s["metrics"]["f1"]["n"], 2);
        assert!((s["cost"]["total_usd"].as_f64().unwrap() - 0.4).abs() < 1e-12);
        let s = summarise(&[&a, &row(1.0, None, None)], &[MetricId::F1], 1);
        assert!(s["cost"].is_null());
    }
}
