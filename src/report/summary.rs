//! The per-(model, task, condition) summary `bwb classify` writes to
//! results/summaries/<model>_<task>_<condition>.{json,csv} and the dashboard reads.
//!
//! Shape: `metrics.<name>.{mean,std,p50,p95,ci_low,ci_high,per_seed}`, `latency_ms`,
//! `tokens`, `cost`, plus error classes, paired comparisons and TCO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ModelKind;
use crate::eval::Condition;
use crate::score::ErrorClass;

/// What a metric's spread (`std`, `per_seed`) is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Greedy decoding: one generation of the whole test set, whose metric is the headline;
    /// the spread is over the eval seeds' bootstrap resamples of it (no extra generation).
    TestResamples,
    /// Sampling: each seed an independent generation of the whole test set; the headline is
    /// their mean and the spread is across them.
    Generations,
    /// Predictions of an earlier bwb: each seed generated its own bootstrap draw of the test
    /// set; the headline is the mean over the draws.
    #[default]
    BootstrapDraws,
}

/// One metric: `mean` is the headline (see [`Spread`]: the metric on the whole test set, or
/// the mean over independent generations); `std`/`p50`/`p95` are over the per-seed values
/// (std is the sample standard deviation, None with one seed); the 95 % percentile-bootstrap
/// confidence interval is over the pooled predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub mean: f64,
    pub std: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The metric on each seed's resample or generation, in `Summary::seeds` order.
    pub per_seed: Vec<f64>,
}

/// Distribution of one per-example quantity (latency, tokens) over every prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    pub mean: f64,
    pub std: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// Token counts per query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: Dist,
    pub output: Dist,
    /// Input tokens read from a provider's prompt cache, mean per query.
    pub cached_input_mean: f64,
    pub total_input: u64,
    pub total_output: u64,
}

/// What the evaluation cost and would cost per query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Per query at configs/pricing.yaml prices on the measured tokens (API models), or the
    /// GPU's hourly price × measured compute time (local models). None when no price is known.
    pub per_query_usd: Option<f64>,
    /// What the requests of this evaluation actually cost (API; cache hits cost nothing).
    pub spent_usd: Option<f64>,
    /// `api` (token prices) or `gpu:<name>` (hourly rental at the measured throughput).
    pub basis: String,
}

/// A paired comparison of this summary's predictions (`a`) with another model/condition
/// (`b`) on the examples both answered, with the per-example score of the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub model: String,
    pub condition: Condition,
    /// The per-example score compared (e.g. `correct`, `token_f1`, `passed`).
    pub score: String,
    pub n_paired: usize,
    /// mean(a) − mean(b) over the paired examples.
    pub mean_diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Paired-bootstrap two-sided p-value.
    pub p_value: f64,
    /// McNemar's test where the score is right/wrong: examples only `a` got right (`b` in the
    /// 2×2 table), only `b` got right (`c`), statistic and p-value.
    pub mcnemar: Option<McnemarSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McnemarSummary {
    pub only_a: u64,
    pub only_b: u64,
    pub statistic: f64,
    pub p_value: f64,
    pub exact: bool,
}

/// 12-month total cost of ownership at one monthly query volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcoPoint {
    pub monthly_queries: u64,
    /// 12 × monthly cost, plus the one-off training cost for LoRA conditions.
    pub twelve_month_usd: f64,
    pub monthly_usd: f64,
    /// Local: GPU-hours per month at the measured throughput.
    pub gpu_hours_per_month: Option<f64>,
}

/// TCO inputs and the curve over configs/pricing.yaml `monthly_queries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tco {
    pub basis: String,
    pub per_query_usd: f64,
    /// Training (LoRA conditions): wall hours × GPU hourly price, counted once.
    pub training_usd: f64,
    pub training_hours: Option<f64>,
    /// Local: examples per second of compute measured in this evaluation.
    pub throughput_qps: Option<f64>,
    pub points: Vec<TcoPoint>,
}

/// Everything `bwb classify` knows about one model × task × condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    /// `local` or `api`.
    pub model_kind: ModelKind,
    pub task: String,
    pub condition: Condition,
    /// The task's headline metric (a key of `metrics`).
    pub primary_metric: String,
    /// What the spread of every metric is over (absent in older summaries).
    #[serde(default)]
    pub spread: Spread,
    pub seeds: Vec<u64>,
    /// Predictions scored (request errors left out): the generations behind the metrics.
    pub n_predictions: usize,
    /// Distinct examples among them.
    pub n_examples: usize,
    pub metrics: BTreeMap<String, MetricSummary>,
    pub latency_ms: Dist,
    pub tokens: Tokens,
    pub cost: Cost,
    /// Error class → count over all predictions (`correct` included for reference).
    pub error_classes: BTreeMap<ErrorClass, u64>,
    pub comparisons: Vec<Comparison>,
    pub tco: Option<Tco>,
    /// When the pricing in `cost`/`tco` was copied (configs/pricing.yaml `as_of`).
    pub prices_as_of: String,
}
