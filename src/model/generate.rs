//! Batched, KV-cached generation over ragged prompts: left-padded prefill, then one token per
//! row per step; rows leave the batch as they finish. Greedy or temperature / top-k / top-p
//! sampling with a per-row seeded RNG, so a row's output does not depend on its batch-mates.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::linear::ForwardCtx;
use super::Model;
use crate::error::{Error, Result};

/// Sampling and stopping settings.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// 1.0 = off.
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    pub seed: u64,
    /// Stop when the decoded completion contains any of these (the text is cut before it).
    pub stop: Vec<String>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token (not included in the output).
    Eos,
    /// A stop string (cut from the text).
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// One row's result.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Decoded text (cut at a stop string), when a decoder was given.
    pub text: String,
}

/// One generating row: its seeded sampler and its output so far. `generate` and the
/// server's continuous-batching engine (`crate::serve::engine`) both step rows through it, so
/// a row's tokens depend only on its prompt, parameters and seed.
#[derive(Debug, Clone)]
pub struct Row {
    pub out: Completion,
    rng: rand_chacha::ChaCha8Rng,
}

impl Row {
    pub fn new(prompt_tokens: usize, seed: u64) -> Self {
        Self {
            out: Completion {
                token_ids: Vec::new(),
                finish_reason: FinishReason::Length,
                prompt_tokens,
                completion_tokens: 0,
                text: String::new(),
            },
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Choose the next token from this row's logits and take it; `Some(reason)` when the row
    /// is finished (an EOS token is not kept; a stop string is cut from the text).
    pub fn step(
        &mut self,
        logits: &[f32],
        params: &GenParams,
        eos_ids: &[u32],
        decode: &dyn Fn(&[u32]) -> Result<String>,
    ) -> Result<Option<FinishReason>> {
        let tok = pick(logits, params, &mut self.rng);
        let c = &mut self.out;
        if eos_ids.contains(&tok) {
            c.finish_reason = FinishReason::Eos;
            return Ok(Some(FinishReason::Eos));
        }
        c.token_ids.push(tok);
        c.completion_tokens = c.token_ids.len();
        if !params.stop.is_empty() {
            let text = decode(&c.token_ids)?;
            if let Some(cut) = params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                c.text = text[..cut].to_string();
                c.finish_reason = FinishReason::Stop;
                return Ok(Some(FinishReason::Stop));
            }
        }
        if c.token_ids.len() >= params.max_new_tokens {
            c.finish_reason = FinishReason::Length;
            return Ok(Some(FinishReason::Length));
        }
        Ok(None)
    }

    /// The last token taken (the one to feed next).
    pub fn last(&self) -> Option<u32> {
        self.out.token_ids.last().copied()
    }

    /// The finished completion, its text decoded (unless a stop string already cut it).
    pub fn finish(mut self, decode: &dyn Fn(&[u32]) -> Result<String>) -> Result<Completion> {
        self.out.completion_tokens = self.out.token_ids.len();
        if self.out.finish_reason != FinishReason::Stop {
            self.out.text = decode(&self.out.token_ids)?;
        }
        Ok(self.out)
    }
}

/// Generate for every prompt in one batch. `decode` turns token ids into text (for stop
/// strings and the returned text).
pub fn generate(
    model: &Model,
    device: &Device,
    prompts: &[Vec<u32>],
    eos_ids: &[u32],
    pad_id: u32,
    params: &GenParams,
    decode: &dyn Fn(&[u32]) -> Result<String>,
) -> Result<Vec<Completion>> {
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::Config(format!(
            "prompt {i} is empty after tokenisation; give it some text"
        )));
    }
    let n = prompts.len();
    let mut rows: Vec<Row> = (0..n)
        .map(|i| Row::new(prompts[i].len(), params.seed.wrapping_add(i as u64)))
        .collect();
    if n == 0 || params.max_new_tokens == 0 {
        return rows.into_iter().map(|r| r.finish(decode)).collect();
    }
    let ctx = ForwardCtx::default();

    // 1. prefill every prompt in one left-padded batch.
    let (mut cache, logits) = prefill(model, device, prompts, pad_id, &ctx)?;
    let mut logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;

    // 2. decode: `active[j]` is the original row of batch row j.
    let mut active: Vec<usize> = (0..n).collect();
    loop {
        let mut still = Vec::new();
        for (j, &r) in active.iter().enumerate() {
            if rows[r].step(&logits[j], params, eos_ids, decode)?.is_none() {
                still.push(j);
            }
        }
        if still.is_empty() {
            break;
        }
        if still.len() != active.len() {
            keep_rows(&mut cache, &still, device)?;
            active = still.iter().map(|&j| active[j]).collect();
        }
        // The position of each row's newest token: prompt plus tokens before it.
        let pos: Vec<i64> = active
            .iter()
            .map(|&r| (prompts[r].len() + rows[r].out.token_ids.len() - 1) as i64)
            .collect();
        if crosses_rope_switch(model, &pos) {
            // A row crosses Phi-3's longrope switch: its cached keys used the short
            // table, so recompute every active row from scratch (as HF does).
            let seqs: Vec<Vec<u32>> = active
                .iter()
                .map(|&r| [prompts[r].as_slice(), rows[r].out.token_ids.as_slice()].concat())
                .collect();
            let (c, l) = prefill(model, device, &seqs, pad_id, &ctx)?;
            cache = c;
            logits = l.to_dtype(DType::F32)?.to_vec2()?;
            continue;
        }
        let feed: Vec<u32> = active.iter().filter_map(|&r| rows[r].last()).collect();
        logits = decode_step(model, device, &mut cache, feed, pos, &ctx)?;
    }
    rows.into_iter().map(|r| r.finish(decode)).collect()
}

/// Whether feeding tokens at `pos` crosses the model's rope switch (Phi-3 longrope), after
/// which a row's cache must be rebuilt by a fresh prefill.
pub fn crosses_rope_switch(model: &Model, pos: &[i64]) -> bool {
    model
        .rope_switch_at()
        .is_some_and(|at| pos.contains(&(at as i64)))
}

/// Keep only batch rows `keep` of `cache` (finished rows leave the batch).
pub fn keep_rows(cache: &mut super::Cache, keep: &[usize], device: &Device) -> Result<()> {
    let idx = Tensor::from_vec(
        keep.iter().map(|&j| j as u32).collect::<Vec<_>>(),
        keep.len(),
        device,
    )?;
    cache.select_rows(&idx)?;
    Ok(())
}

/// One decode step: token `feed[j]` at position `pos[j]` for every batch row of `cache`;
/// returns each row's next-token logits.
pub fn decode_step(
    model: &Model,
    device: &Device,
    cache: &mut super::Cache,
    feed: Vec<u32>,
    pos: Vec<i64>,
    ctx: &ForwardCtx,
) -> Result<Vec<Vec<f32>>> {
    let b = feed.len();
    let ids_t = Tensor::from_vec(feed, (b, 1), device)?;
    let pos_t = Tensor::from_vec(pos, (b, 1), device)?;
    let hidden = model.forward_hidden(&ids_t, &pos_t, Some(cache), ctx)?;
    let logits = model.logits(&hidden.squeeze(1)?)?;
    Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
}

/// Extend one row's cache (batch of 1) by `ids` at positions `start..`; returns the logits
/// after the last of them. Prefilling a prompt chunk by chunk through this gives the same
/// cache as one call with the whole prompt.
pub fn extend_row(
    model: &Model,
    device: &Device,
    cache: &mut super::Cache,
    ids: &[u32],
    start: usize,
    ctx: &ForwardCtx,
) -> Result<Vec<f32>> {
    let l = ids.len();
    let ids_t = Tensor::from_vec(ids.to_vec(), (1, l), device)?;
    let pos: Vec<i64> = (start..start + l).map(|p| p as i64).collect();
    let pos_t = Tensor::from_vec(pos, (1, l), device)?;
    let hidden = model.forward_hidden(&ids_t, &pos_t, Some(cache), ctx)?;
    let logits = model.logits(&hidden.narrow(1, l - 1, 1)?.squeeze(1)?.squeeze(0)?)?;
    Ok(logits.to_dtype(DType::F32)?.to_vec1()?)
}

/// Run left-padded prompts through the model into a fresh cache; returns the cache and the
/// last position's logits `(B, V)`. Padded slots get position -1, which masks them.
fn prefill(
    model: &Model,
    device: &Device,
    seqs: &[Vec<u32>],
    pad_id: u32,
    ctx: &ForwardCtx,
) -> Result<(super::Cache, Tensor)> {
    let n = seqs.len();
    let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(n * l);
    let mut pos = Vec::with_capacity(n * l);
    for p in seqs {
        let pad = l - p.len();
        ids.extend(std::iter::repeat_n(pad_id, pad).chain(p.iter().copied()));
        pos.extend(
            (0..pad)
                .map(|_| -1i64)
                .chain((0..p.len()).map(|i| i as i64)),
        );
    }
    let ids_t = Tensor::from_vec(ids, (n, l), device)?;
    let pos_t = Tensor::from_vec(pos, (n, l), device)?;
    let mut cache = model.new_cache();
    let hidden = model.forward_hidden(&ids_t, &pos_t, Some(&mut cache), ctx)?;
    let logits = model.logits(&hidden.narrow(1, l - 1, 1)?.squeeze(1)?)?;
    Ok((cache, logits))
}

/// Choose the next token from one row of logits.
pub fn pick(logits: &[f32], p: &GenParams, rng: &mut rand_chacha::ChaCha8Rng) -> u32 {
    if p.temperature <= 0.0 {
        // First maximum, as torch.argmax.
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if p.top_k > 0 {
        idx.truncate(p.top_k);
    }
    let max = logits[idx[0]] as f64;
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / p.temperature).exp())
        .collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= sum);
    if p.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (k, &x) in probs.iter().enumerate() {
            acc += x;
            if acc >= p.top_p {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
        let s: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= s);
    }
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (k, &x) in probs.iter().enumerate() {
        acc += x;
        if u < acc {
            return idx[k] as u32;
        }
    }
    idx[idx.len() - 1] as u32
}
