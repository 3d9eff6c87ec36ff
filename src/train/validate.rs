//! Validation during training: the mean answer-token loss, and the task metric on greedy
//! generated answers. The scoring here is deliberately small (label and choice tasks);
//! `src/metrics/` will own the full metric families once it lands.

use std::collections::BTreeMap;

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use super::batch::{make_batch, Batch, Tokenized};
use crate::config::{AnswerKind, TaskConfig};
use crate::data::Example;
use crate::error::Result;
use crate::model::generate::GenParams;
use crate::model::load::LoadedModel;
use crate::model::ForwardCtx;
use crate::prompt::task::TaskPrompt;

/// Sum of answer-token cross-entropies of one batch, scaled by `1 / denom` (a scalar tensor
/// that carries gradients). The LM head runs on answer positions only: never `(B, L, V)`.
pub fn batch_loss(m: &LoadedModel, batch: &Batch, ctx: &ForwardCtx, denom: f64) -> Result<Tensor> {
    let hidden = m
        .model
        .forward_hidden(&batch.ids, &batch.positions, None, ctx)?;
    let (b, l, h) = hidden.dims3()?;
    let picked = hidden.reshape((b * l, h))?.index_select(&batch.at, 0)?;
    let logp = candle_nn::ops::log_softmax(&m.model.logits(&picked)?, D::Minus1)?;
    let nll = logp
        .gather(&batch.targets.unsqueeze(1)?, 1)?
        .sum_all()?
        .affine(-1.0 / denom, 0.0)?;
    Ok(nll)
}

/// Mean answer-token loss over `rows` (no dropout, no graph).
pub fn loss(m: &LoadedModel, rows: &[Tokenized], batch_size: usize) -> Result<f64> {
    let mut total = 0.0;
    let mut n = 0usize;
    for chunk in rows.chunks(batch_size.max(1)) {
        let refs: Vec<&Tokenized> = chunk.iter().collect();
        let batch = make_batch(&refs, m.pad_id, &m.device)?;
        if batch.n_targets == 0 {
            continue;
        }
        let l: f32 = batch_loss(m, &batch, &ForwardCtx::default(), 1.0)?
            .detach()
            .to_scalar()?;
        total += l as f64;
        n += batch.n_targets;
    }
    Ok(if n == 0 { 0.0 } else { total / n as f64 })
}

/// Greedy answers for `examples`, `batch_size` prompts per generate call.
pub fn generate_answers(
    m: &LoadedModel,
    prompt: &TaskPrompt,
    examples: &[Example],
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<Vec<String>> {
    let params = GenParams {
        max_new_tokens,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let prompts = chunk
            .iter()
            .map(|ex| m.encode_prompt(&prompt.messages(ex)?, false))
            .collect::<Result<Vec<_>>>()?;
        out.extend(m.generate(&prompts, &params)?.into_iter().map(|c| c.text));
    }
    Ok(out)
}

/// One validation pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValScores {
    pub loss: f64,
    /// The task metric (higher is better), named by [`metric_name`].
    pub metric: f64,
}

impl ValScores {
    /// Better: higher metric; ties go to the lower loss.
    pub fn better_than(&self, other: &ValScores) -> bool {
        self.metric > other.metric || (self.metric == other.metric && self.loss < other.loss)
    }
}

/// The metric validation reports for a task: its own metric for label and choice tasks,
/// normalised exact match for the rest (until src/metrics lands).
pub fn metric_name(task: &TaskConfig) -> &str {
    match task.answer.kind {
        AnswerKind::Label | AnswerKind::Choice => &task.metric_id,
        AnswerKind::Spans | AnswerKind::Code => "exact_match",
    }
}

/// Lower-case, trimmed, without surrounding quotes or trailing punctuation.
pub fn normalize(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '`')
        .trim_end_matches(['.', '!', ',', ';', ':'])
        .trim()
        .to_lowercase()
}

/// Score predictions against the examples' targets with the task's metric.
pub fn score(task: &TaskConfig, examples: &[Example], preds: &[String]) -> f64 {
    let gold: Vec<String> = examples.iter().map(|e| normalize(&e.target)).collect();
    let pred: Vec<String> = match task.answer.kind {
        // The first word-ish token is the option letter.
        AnswerKind::Choice => preds
            .iter()
            .map(|p| {
                normalize(p)
                    .chars()
                    .take_while(|c| c.is_alphanumeric())
                    .collect()
            })
            .collect(),
        _ => preds.iter().map(|p| normalize(p)).collect(),
    };
    match metric_name(task) {
        "macro_f1" => f1(&gold, &pred, false),
        "weighted_f1" => f1(&gold, &pred, true),
        _ => accuracy(&gold, &pred),
    }
}

pub fn accuracy(gold: &[String], pred: &[String]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let hits = gold.iter().zip(pred).filter(|(g, p)| g == p).count();
    hits as f64 / gold.len() as f64
}

/// Macro (or support-weighted) F1 over the gold classes; a prediction outside them counts
/// as a miss for its gold class.
pub fn f1(gold: &[String], pred: &[String], weighted: bool) -> f64 {
    let mut tp: BTreeMap<&str, f64> = BTreeMap::new();
    let mut fp: BTreeMap<&str, f64> = BTreeMap::new();
    let mut support: BTreeMap<&str, f64> = BTreeMap::new();
    for (g, p) in gold.iter().zip(pred) {
        *support.entry(g).or_default() += 1.0;
        if g == p {
            *tp.entry(g).or_default() += 1.0;
        } else {
            *fp.entry(p).or_default() += 1.0;
        }
    }
    if support.is_empty() {
        return 0.0;
    }
    let n: f64 = support.values().sum();
    let mut sum = 0.0;
    for (class, s) in &support {
        let t = tp.get(class).copied().unwrap_or(0.0);
        let f = fp.get(class).copied().unwrap_or(0.0);
        let fn_ = s - t;
        let f1 = if t == 0.0 {
            0.0
        } else {
            2.0 * t / (2.0 * t + f + fn_)
        };
        sum += if weighted { f1 * s / n } else { f1 };
    }
    if weighted {
        sum
    } else {
        sum / support.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn f1_matches_sklearn() {
        // sklearn f1_score(average="macro") over the gold labels: a 0.8, b 0.5, c 0.0.
        let gold = s(&["a", "a", "b", "b", "c"]);
        let pred = s(&["a", "a", "b", "a", "b"]);
        let macro_ = f1(&gold, &pred, false);
        assert!((macro_ - (0.8 + 0.5 + 0.0) / 3.0).abs() < 1e-12, "{macro_}");
        let w = f1(&gold, &pred, true);
        assert!((w - (0.8 * 2.0 + 0.5 * 2.0) / 5.0).abs() < 1e-12, "{w}");
        assert_eq!(accuracy(&gold, &pred), 0.6);
    }

    #[test]
    fn normalize_strips_case_space_and_punctuation() {
        assert_eq!(normalize("  Positive.\n"), "positive");
        assert_eq!(normalize("\"neutral\""), "neutral");
    }
}
