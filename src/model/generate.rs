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
    /// Record each generated token's logprob and this many most likely alternatives.
    pub logprobs: Option<usize>,
    /// Record each prompt token's logprob (all but the first) and this many alternatives;
    /// only the server's engine fills these in (`extend_row` with a [`PromptScore`]).
    pub prompt_logprobs: Option<usize>,
    /// Keep generating past end-of-sequence tokens (they are kept) up to `max_new_tokens`.
    pub ignore_eos: bool,
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
            logprobs: None,
            prompt_logprobs: None,
            ignore_eos: false,
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
    /// One entry per generated token when `GenParams::logprobs` asks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// One entry per prompt token after the first when `GenParams::prompt_logprobs` asks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prompt_logprobs: Vec<TokenLogprob>,
}

/// A token's log-probability under the model and the most likely tokens at its position:
/// log-softmax of the raw logits, before temperature, top-k or top-p (vLLM's default
/// `raw_logprobs`), so the numbers do not depend on the sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The most likely tokens, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// `token`'s entry from one row of raw logits, with the `k` most likely tokens.
    pub fn from_logits(logits: &[f32], token: u32, k: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        let lp = |i: usize| (logits[i] as f64 - lse) as f32;
        let k = k.min(logits.len());
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let order = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, order);
        }
        idx.truncate(k);
        idx.sort_by(order);
        Self {
            token,
            logprob: lp(token as usize),
            top: idx.into_iter().map(|i| (i as u32, lp(i))).collect(),
        }
    }
}

/// What `extend_row` scores besides returning the last logits: the hidden states at chunk
/// positions `from..from + next.len()` predict the tokens `next` (prompt logprobs).
#[derive(Debug, Clone, Copy)]
pub struct PromptScore<'a> {
    pub from: usize,
    pub next: &'a [u32],
    pub k: usize,
}

/// One generating row: its seeded sampler and its output so far. `generate` and the
/// server's continuous-batching engine (`crate::serve::engine`) both step rows through it, so
/// a row's tokens depend only on its prompt, parameters and seed.
#[derive(Debug, Clone)]
pub struct Row {
    pub out: Completion,
    rng: rand_chacha::ChaCha8Rng,
    /// Logprob entries already handed out by `take_new_logprobs` (streaming).
    sent_logprobs: usize,
    sent_prompt_logprobs: usize,
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
                logprobs: Vec::new(),
                prompt_logprobs: Vec::new(),
            },
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            sent_logprobs: 0,
            sent_prompt_logprobs: 0,
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
        if eos_ids.contains(&tok) && !params.ignore_eos {
            c.finish_reason = FinishReason::Eos;
            return Ok(Some(FinishReason::Eos));
        }
        if let Some(k) = params.logprobs {
            c.logprobs.push(TokenLogprob::from_logits(logits, tok, k));
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

    /// Prompt tokens whose logprobs are recorded (after the first prompt token).
    pub fn prompt_scored(&self) -> usize {
        self.out.prompt_logprobs.len()
    }

    /// What a prefill chunk `done..end` of `prompt` (plus generated tokens after it, on a
    /// rope rebuild) must score so that every prompt token after the first gets its logprob
    /// once: chunk position p predicts token p + 1.
    pub fn prompt_score<'a>(
        &self,
        prompt: &'a [u32],
        done: usize,
        end: usize,
        k: usize,
    ) -> Option<PromptScore<'a>> {
        let a = done.max(self.prompt_scored());
        let b = end.min(prompt.len().saturating_sub(1));
        (a < b).then(|| PromptScore {
            from: a - done,
            next: &prompt[a + 1..b + 1],
            k,
        })
    }

    /// Record prompt logprob entries that `extend_row` scored.
    pub fn add_prompt_logprobs(&mut self, scored: Vec<TokenLogprob>) {
        self.out.prompt_logprobs.extend(scored);
    }

    /// Prompt and generated logprob entries not handed out before (for streaming).
    pub fn take_new_logprobs(&mut self) -> (Vec<TokenLogprob>, Vec<TokenLogprob>) {
        let p = self.out.prompt_logprobs[self.sent_prompt_logprobs..].to_vec();
        let g = self.out.logprobs[self.sent_logprobs..].to_vec();
        self.sent_prompt_logprobs = self.out.prompt_logprobs.len();
        self.sent_logprobs = self.out.logprobs.len();
        (p, g)
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
/// after the last of them, and with `score` the logprobs of the tokens it names. Prefilling a
/// prompt chunk by chunk through this gives the same cache as one call with the whole prompt.
pub fn extend_row(
    model: &Model,
    device: &Device,
    cache: &mut super::Cache,
    (ids, start): (&[u32], usize),
    ctx: &ForwardCtx,
    score: Option<PromptScore>,
) -> Result<(Vec<f32>, Vec<TokenLogprob>)> {
    let l = ids.len();
    let ids_t = Tensor::from_vec(ids.to_vec(), (1, l), device)?;
    let pos: Vec<i64> = (start..start + l).map(|p| p as i64).collect();
    let pos_t = Tensor::from_vec(pos, (1, l), device)?;
    let hidden = model
        .forward_hidden(&ids_t, &pos_t, Some(cache), ctx)?
        .squeeze(0)?;
    let logits = model.logits(&hidden.narrow(0, l - 1, 1)?.squeeze(0)?)?;
    let scored = match score {
        Some(s) => score_positions(model, &hidden, s)?,
        None => Vec::new(),
    };
    Ok((logits.to_dtype(DType::F32)?.to_vec1()?, scored))
}

/// Rows of hidden states scored a block at a time, so a long prompt never holds its whole
/// `(L, V)` logits (vocabularies reach 262k).
const SCORE_BLOCK: usize = 32;

fn score_positions(model: &Model, hidden: &Tensor, s: PromptScore) -> Result<Vec<TokenLogprob>> {
    let mut out = Vec::with_capacity(s.next.len());
    for (b, next) in s.next.chunks(SCORE_BLOCK).enumerate() {
        let h = hidden.narrow(0, s.from + b * SCORE_BLOCK, next.len())?;
        let rows: Vec<Vec<f32>> = model.logits(&h)?.to_dtype(DType::F32)?.to_vec2()?;
        out.extend(
            rows.iter()
                .zip(next)
                .map(|(row, &t)| TokenLogprob::from_logits(row, t, s.k)),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_with_sorted_top_tokens() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let full = TokenLogprob::from_logits(&logits, 2, logits.len());
        let total: f64 = full.top.iter().map(|&(_, l)| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // Most likely first, ties by id; the token's own entry matches its top entry.
        let ids: Vec<u32> = full.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 0, 4, 2]);
        assert_eq!(full.logprob, full.top[4].1);
        let top2 = TokenLogprob::from_logits(&logits, 1, 2);
        assert_eq!(top2.top, full.top[..2].to_vec());
        assert_eq!(top2.logprob, top2.top[0].1, "greedy token = the maximum");
        assert!(top2.top.iter().all(|&(_, l)| l <= 0.0));
        // Raw logits: temperature does not enter.
        let want = 3.0 - (1f64.exp() + 2.0 * 3f64.exp() + (-2f64).exp() + 0.5f64.exp()).ln();
        assert!((top2.logprob as f64 - want).abs() < 1e-6);
        assert!(TokenLogprob::from_logits(&logits, 0, 0).top.is_empty());
    }

    #[test]
    fn a_row_records_logprobs_and_ignores_eos_when_asked() {
        let decode = |ids: &[u32]| Ok(format!("{ids:?}"));
        let eos_first = [0.0f32, 5.0, 1.0]; // greedy picks token 1, the EOS
        let mut p = GenParams {
            max_new_tokens: 3,
            logprobs: Some(1),
            ..Default::default()
        };
        let mut row = Row::new(2, 0);
        let r = row.step(&eos_first, &p, &[1], &decode).unwrap();
        assert_eq!(r, Some(FinishReason::Eos));
        assert!(row.out.token_ids.is_empty() && row.out.logprobs.is_empty());
        p.ignore_eos = true;
        let mut row = Row::new(2, 0);
        for i in 0..3 {
            let r = row.step(&eos_first, &p, &[1], &decode).unwrap();
            assert_eq!(r.is_some(), i == 2);
        }
        assert_eq!(row.out.token_ids, vec![1, 1, 1]);
        assert_eq!(row.out.finish_reason, FinishReason::Length);
        assert_eq!(row.out.logprobs.len(), 3);
        assert_eq!(row.out.logprobs[0].top[0].0, 1);
        // Streaming hands each entry out once.
        assert_eq!(row.take_new_logprobs().1.len(), 3);
        assert!(row.take_new_logprobs().1.is_empty());
    }

    #[test]
    fn prompt_scoring_covers_each_prompt_token_after_the_first_once() {
        let prompt = [10, 11, 12, 13, 14];
        let mut row = Row::new(prompt.len(), 0);
        // Chunk 0..2 predicts tokens 1 and 2.
        let s = row.prompt_score(&prompt, 0, 2, 3).unwrap();
        assert_eq!((s.from, s.next), (0, &prompt[1..3]));
        row.add_prompt_logprobs(vec![TokenLogprob::from_logits(&[0.0; 4], 0, 0); 2]);
        // Chunk 2..5: positions 2 and 3 predict tokens 3 and 4; position 4 predicts the
        // first generated token, not a prompt token.
        let s = row.prompt_score(&prompt, 2, 5, 3).unwrap();
        assert_eq!((s.from, s.next), (0, &prompt[3..5]));
        row.add_prompt_logprobs(vec![TokenLogprob::from_logits(&[0.0; 4], 0, 0); 2]);
        // A rebuild from scratch scores nothing twice.
        assert!(row.prompt_score(&prompt, 0, 5, 3).is_none());
    }
}
