//! One model × task × condition's judged predictions → its [`Summary`]: every metric with
//! its headline, spread and confidence interval, latency, tokens, cost and TCO.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::load::Group;
use super::score::Classified;
use super::summary::{Cost, Dist, MetricSummary, Spread, Summary, Tokens};
use super::{tco, BOOTSTRAP_SEED, RESAMPLES};
use crate::backend::Usage;
use crate::config::{Configs, ModelKind, TaskConfig};
use crate::error::{Error, Result};
use crate::eval::predictions::{Generation, Prediction};
use crate::eval::sample::resample_indices;
use crate::metrics::stats;
use crate::paths::Paths;
use crate::score::{ErrorClass, MetricId, Row, Scorer};

/// What every summary of a task is computed with.
pub struct Context<'a> {
    pub paths: &'a Paths,
    pub configs: &'a Configs,
    pub task: &'a TaskConfig,
    pub scorer: &'a dyn Scorer,
    /// The eval seeds whose bootstrap resamples give a greedy generation's spread.
    pub seeds: &'a [u64],
}

/// The summary of one group (its comparisons are added by the caller).
pub fn summarise(cx: &Context<'_>, g: &Group, classified: &[Classified]) -> Result<Summary> {
    let rows: Vec<(&Prediction, Row<'_>)> = g
        .preds
        .iter()
        .zip(classified)
        .filter_map(|(p, c)| c.row(p).map(|r| (p, r)))
        .collect();
    let mut error_classes: BTreeMap<ErrorClass, u64> = BTreeMap::new();
    for c in classified {
        *error_classes.entry(c.class).or_default() += 1;
    }
    let n_errors = error_classes
        .get(&ErrorClass::RequestError)
        .copied()
        .unwrap_or(0);
    if n_errors > 0 {
        tracing::warn!(
            "{}/{}/{}: {n_errors} prediction(s) failed after retries and are left out of the metrics; rerun bwb eval to retry them",
            g.model,
            cx.task.id,
            g.condition
        );
    }
    let (spread, seeds, metrics) = metric_summaries(cx, g.generation, &rows)?;
    let (latency_ms, tokens) = usage(&rows);
    let kind = model_kind(cx.configs, &g.model, &rows);
    let (cost, tco) = cost_and_tco(cx, g, kind, &rows);
    let mut ids: Vec<&str> = rows.iter().map(|(p, _)| p.example_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    tracing::debug!(
        "{}/{}/{}: {} prediction file(s)",
        g.model,
        cx.task.id,
        g.condition,
        g.files.len()
    );
    Ok(Summary {
        model: g.model.clone(),
        model_kind: kind,
        task: cx.task.id.clone(),
        condition: g.condition,
        primary_metric: cx.task.metric_id.as_str().to_string(),
        spread,
        seeds,
        n_predictions: rows.len(),
        n_examples: ids.len(),
        metrics,
        latency_ms,
        tokens,
        cost,
        error_classes,
        comparisons: Vec::new(),
        tco,
        prices_as_of: cx.configs.pricing.as_of.clone(),
    })
}

/// Every metric's headline, per-seed values and CI.
///
/// - greedy: the headline is the metric on the one generation of the whole test set; each
///   eval seed's bootstrap resample of it gives a per-seed value (no extra generation);
/// - sampled: each seed's generation gives a per-seed value; the headline is their mean;
/// - older bootstrap-draw files: as sampled, each seed's draw one value.
///
/// The CI is a percentile bootstrap over the pooled predictions in every case.
fn metric_summaries(
    cx: &Context<'_>,
    generation: Generation,
    rows: &[(&Prediction, Row<'_>)],
) -> Result<(Spread, Vec<u64>, BTreeMap<String, MetricSummary>)> {
    let scorer = cx.scorer;
    let pooled: Vec<Row<'_>> = rows.iter().map(|(_, r)| *r).collect();
    let whole = scorer.metrics(&pooled);
    if !whole.iter().any(|(m, _)| *m == cx.task.metric_id) {
        return Err(Error::Config(format!(
            "configs/tasks/{}.yaml: field `metric_id` = `{}` is not computed for {:?} answers",
            cx.task.id, cx.task.metric_id, cx.task.answer.kind
        )));
    }
    let (spread, seeds, per_seed) = match generation {
        Generation::Greedy => {
            // Resample in a fixed order (example id), not the order requests finished in.
            let mut sorted = pooled.clone();
            sorted.sort_by(|a, b| a.example_id.cmp(b.example_id));
            let per: Vec<Vec<(MetricId, f64)>> = cx
                .seeds
                .iter()
                .map(|&s| {
                    let draw: Vec<Row<'_>> = resample_indices(sorted.len(), &cx.task.id, s)
                        .into_iter()
                        .map(|i| sorted[i])
                        .collect();
                    scorer.metrics(&draw)
                })
                .collect();
            (Spread::TestResamples, cx.seeds.to_vec(), per)
        }
        Generation::Sampled | Generation::BootstrapDraw => {
            let mut seeds: Vec<u64> = rows.iter().map(|(p, _)| p.seed).collect();
            seeds.sort_unstable();
            seeds.dedup();
            let per = seeds
                .iter()
                .map(|s| {
                    let r: Vec<Row<'_>> = rows
                        .iter()
                        .filter(|(p, _)| p.seed == *s)
                        .map(|(_, r)| *r)
                        .collect();
                    scorer.metrics(&r)
                })
                .collect();
            let spread = if generation == Generation::Sampled {
                Spread::Generations
            } else {
                Spread::BootstrapDraws
            };
            (spread, seeds, per)
        }
    };
    let boot = bootstrap(scorer, &pooled);
    let mut out = BTreeMap::new();
    for (k, (id, value)) in whole.iter().enumerate() {
        let vals: Vec<f64> = per_seed.iter().map(|m| m[k].1).collect();
        let mut b: Vec<f64> = boot.iter().map(|m| m[k]).collect();
        b.sort_by(f64::total_cmp);
        let q = |x| stats::percentile(&b, x).unwrap_or(0.0);
        let headline = match spread {
            Spread::TestResamples => *value,
            _ => stats::mean(&vals).unwrap_or(0.0),
        };
        out.insert(
            id.as_str().to_string(),
            MetricSummary {
                mean: headline,
                std: stats::std(&vals),
                p50: stats::percentile(&vals, 50.0).unwrap_or(0.0),
                p95: stats::percentile(&vals, 95.0).unwrap_or(0.0),
                ci_low: q(2.5),
                ci_high: q(97.5),
                per_seed: vals,
            },
        );
    }
    Ok((spread, seeds, out))
}

/// `RESAMPLES` percentile-bootstrap replicates of every metric over `rows`.
fn bootstrap(scorer: &dyn Scorer, rows: &[Row<'_>]) -> Vec<Vec<f64>> {
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
            scorer
                .metrics(&sample)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        })
        .collect()
}

/// Latency (cache hits say nothing about the provider's speed) and tokens per query.
fn usage(rows: &[(&Prediction, Row<'_>)]) -> (Dist, Tokens) {
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
    let of =
        |f: fn(&Prediction) -> u64| -> Vec<f64> { rows.iter().map(|(p, _)| f(p) as f64).collect() };
    let tokens = Tokens {
        input: dist(&of(|p| p.input_tokens)),
        output: dist(&of(|p| p.output_tokens)),
        cached_input_mean: stats::mean(&of(|p| p.cached_input_tokens)).unwrap_or(0.0),
        total_input: rows.iter().map(|(p, _)| p.input_tokens).sum(),
        total_output: rows.iter().map(|(p, _)| p.output_tokens).sum(),
    };
    (dist(&latency), tokens)
}

fn dist(v: &[f64]) -> Dist {
    let q = |x| stats::percentile(v, x).unwrap_or(0.0);
    Dist {
        mean: stats::mean(v).unwrap_or(0.0),
        std: stats::std(v),
        p50: q(50.0),
        p95: q(95.0),
        max: v.iter().copied().fold(0.0, f64::max),
    }
}

/// The model's kind from its config, else guessed from the records (API models record no
/// compute time).
fn model_kind(configs: &Configs, model: &str, rows: &[(&Prediction, Row<'_>)]) -> ModelKind {
    match configs.models.get(crate::paths::base_model(model)) {
        Some(m) => m.kind,
        None if rows.iter().all(|(p, _)| p.compute_ms.is_none()) => ModelKind::Api,
        None => ModelKind::Local,
    }
}

/// Cost per query (API: token prices on the measured tokens; local: the GPU's hourly price ×
/// measured compute time), what the evaluation spent, and the TCO curve.
fn cost_and_tco(
    cx: &Context<'_>,
    g: &Group,
    kind: ModelKind,
    rows: &[(&Prediction, Row<'_>)],
) -> (Cost, Option<super::summary::Tco>) {
    let pricing = &cx.configs.pricing;
    let gpu = pricing.default_gpu.as_str();
    let spent: Vec<f64> = g
        .preds
        .iter()
        .filter(|p| !p.from_cache)
        .filter_map(|p| p.cost_usd)
        .collect();
    let (serving, cost) = match kind {
        ModelKind::Api => {
            let per_query = pricing
                .api
                .get(crate::paths::base_model(&g.model))
                .map(|price| {
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
                    stats::mean(&v).unwrap_or(0.0)
                });
            let cost = Cost {
                per_query_usd: per_query,
                spent_usd: (!spent.is_empty()).then(|| spent.iter().sum()),
                basis: "api".into(),
            };
            (
                per_query.map(|per_query_usd| tco::Serving::Api { per_query_usd }),
                cost,
            )
        }
        ModelKind::Local => {
            let compute: Vec<f64> = rows.iter().filter_map(|(p, _)| p.compute_ms).collect();
            let s = stats::mean(&compute).map(|ms| ms / 1e3);
            let hourly = pricing.gpu.get(gpu).map(|p| p.hourly_usd);
            let cost = Cost {
                per_query_usd: s.zip(hourly).map(|(s, h)| s / 3600.0 * h),
                spent_usd: None,
                basis: format!("gpu:{gpu}"),
            };
            let serving = s.map(|compute_s_per_query| tco::Serving::Local {
                compute_s_per_query,
            });
            (serving, cost)
        }
    };
    let training_hours = if g.condition.is_lora() {
        training_hours(
            cx.paths,
            crate::paths::base_model(&g.model),
            &cx.task.id,
            g.condition.name(),
        )
    } else {
        None
    };
    let tco = serving.and_then(|s| tco::tco(s, training_hours, gpu, pricing));
    (cost, tco)
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
