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
    let mut out: Vec<Completion> = prompts
        .iter()
        .map(|p| Completion {
            token_ids: Vec::new(),
            finish_reason: FinishReason::Length,
            prompt_tokens: p.len(),
            completion_tokens: 0,
            text: String::new(),
        })
        .collect();
    if n == 0 || params.max_new_tokens == 0 {
        return Ok(out);
    }
    let ctx = ForwardCtx::default();
    let mut rngs: Vec<rand_chacha::ChaCha8Rng> = (0..n)
        .map(|i| rand_chacha::ChaCha8Rng::seed_from_u64(params.seed.wrapping_add(i as u64)))
        .collect();

    // 1. prefill every prompt in one left-padded batch.
    let (mut cache, mut logits) = prefill(model, device, prompts, pad_id, &ctx)?;

    // 2. decode: `active[j]` is the original row of batch row j.
    let mut active: Vec<usize> = (0..n).collect();
    let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    loop {
        let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let mut still = Vec::new();
        let mut feed = Vec::new();
        for (j, &r) in active.iter().enumerate() {
            let tok = pick(&rows[j], params, &mut rngs[r]);
            let c = &mut out[r];
            if eos_ids.contains(&tok) {
                c.finish_reason = FinishReason::Eos;
                continue;
            }
            c.token_ids.push(tok);
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
                    continue;
                }
            }
            if c.token_ids.len() >= params.max_new_tokens {
                c.finish_reason = FinishReason::Length;
                continue;
            }
            still.push(j);
            feed.push(tok);
        }
        if still.is_empty() {
            break;
        }
        if still.len() != active.len() {
            let idx = Tensor::from_vec(
                still.iter().map(|&j| j as u32).collect::<Vec<_>>(),
                still.len(),
                device,
            )?;
            cache.select_rows(&idx)?;
            active = still.iter().map(|&j| active[j]).collect();
        }
        let b = active.len();
        let pos: Vec<i64> = active.iter().map(|&r| next_pos[r]).collect();
        for &r in &active {
            next_pos[r] += 1;
        }
        if let Some(at) = model.rope_switch_at() {
            if pos.contains(&(at as i64)) {
                // A row crosses Phi-3's longrope switch: its cached keys used the short
                // table, so recompute every active row from scratch (as HF does).
                let seqs: Vec<Vec<u32>> = active
                    .iter()
                    .map(|&r| [prompts[r].as_slice(), out[r].token_ids.as_slice()].concat())
                    .collect();
                (cache, logits) = prefill(model, device, &seqs, pad_id, &ctx)?;
                continue;
            }
        }
        let ids_t = Tensor::from_vec(feed, (b, 1), device)?;
        let pos_t = Tensor::from_vec(pos, (b, 1), device)?;
        let hidden = model.forward_hidden(&ids_t, &pos_t, Some(&mut cache), &ctx)?;
        logits = model.logits(&hidden.squeeze(1)?)?;
    }
    for c in &mut out {
        c.completion_tokens = c.token_ids.len();
        if c.finish_reason != FinishReason::Stop {
            c.text = decode(&c.token_ids)?;
        }
    }
    Ok(out)
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
fn pick(logits: &[f32], p: &GenParams, rng: &mut rand_chacha::ChaCha8Rng) -> u32 {
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
