//! Validation during training: the mean answer-token loss, and the task metric on greedy
//! generated answers, extracted and scored with the same code as `bwb eval` / `classify`.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use super::batch::{make_batch, Batch, Tokenized};
use crate::config::TaskConfig;
use crate::data::Example;
use crate::error::Result;
use crate::model::generate::GenParams;
use crate::model::load::LoadedModel;
use crate::model::ForwardCtx;
use crate::prompt::task::TaskPrompt;
use crate::score::MetricId;

/// Sum of answer-token cross-entropies of one batch, scaled by `1 / denom` (a scalar tensor
/// that carries gradients). The LM head runs on answer positions only: never `(B, L, V)`, and
/// with the fused kernels (default) in row chunks whose logits are dropped as soon as their
/// gradient to the hidden states is known (no `(N, V)` tensor kept for the backward).
pub fn batch_loss(m: &LoadedModel, batch: &Batch, ctx: &ForwardCtx, denom: f64) -> Result<Tensor> {
    let hidden = m
        .model
        .forward_hidden(&batch.ids, &batch.positions, None, ctx)?;
    let (b, l, h) = hidden.dims3()?;
    let picked = hidden.reshape((b * l, h))?.index_select(&batch.at, 0)?;
    if crate::kernels::enabled() {
        let w = m.model.lm_head();
        let chunk = crate::kernels::cross_entropy::default_chunk_rows(w.dim(0)?);
        let nll = crate::kernels::cross_entropy::cross_entropy_sum(
            &picked,
            w,
            &batch.targets,
            m.model.final_softcap(),
            chunk,
        )?;
        return Ok(nll.affine(1.0 / denom, 0.0)?);
    }
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

/// The metric validation reports and selects epochs by: the task's headline metric, unless
/// computing it would run model-written code (code tasks: exact match against the reference
/// solution). Computed by the task's scorer, exactly as `bwb classify` computes it.
pub fn metric_name(task: &TaskConfig) -> MetricId {
    crate::score::scorer(task).validation_metric(task.metric_id)
}

/// Score raw completions against the examples' answers with the task's validation metric.
pub fn score(task: &TaskConfig, examples: &[Example], preds: &[String]) -> f64 {
    let metrics = crate::score::score_outputs(task, examples, preds);
    crate::score::metric_value(&metrics, metric_name(task)).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Configs;
    use crate::data::Answer;
    use std::collections::BTreeMap;

    fn fpb() -> TaskConfig {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        Configs::load(&dir).unwrap().task("fpb").unwrap().clone()
    }

    fn ex(label: &str) -> Example {
        Example {
            id: label.into(),
            task: "fpb".into(),
            inputs: BTreeMap::new(),
            answer: Answer::Label {
                label: label.into(),
            },
            target: label.into(),
            stratum: Some(label.into()),
        }
    }

    #[test]
    fn label_tasks_score_extracted_answers_like_sklearn() {
        // sklearn f1_score(labels=[negative, neutral, positive], average="macro"):
        // negative 0.8, neutral 0.5, positive 0.0.
        let gold: Vec<Example> = ["negative", "negative", "neutral", "neutral", "positive"]
            .into_iter()
            .map(ex)
            .collect();
        let preds: Vec<String> = [
            "negative",
            "Negative.",
            "Sentiment: neutral",
            "negative",
            "neutral",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let task = fpb();
        assert_eq!(metric_name(&task), MetricId::MacroF1);
        let m = score(&task, &gold, &preds);
        assert!((m - (0.8 + 0.5 + 0.0) / 3.0).abs() < 1e-12, "{m}");
    }
}
