//! From examples to training batches: tokenise each example as `prompt ids + answer ids +
//! end-of-turn`, with loss only on the answer and end-of-turn tokens; order each epoch with a
//! seeded shuffle grouped by length; right-pad each micro-batch (position -1 masks padding,
//! so nothing attends across rows or into padding).
//!
//! Truncation to `max_seq_length` keeps the answer: the prompt loses tokens from its left
//! (transformers' `truncation_side="left"`). When the answer alone leaves fewer than half the
//! window for the prompt, the prompt keeps its last half-window and the answer its first
//! tokens (so its end-of-turn token is lost). Both cases are counted and reported.

use candle_core::{Device, Tensor};

use crate::data::sample;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::model::load::LoadedModel;
use crate::prompt::chat_template::Message;
use crate::prompt::task::TaskPrompt;

/// One tokenised example: `ids[..n_prompt]` is context, `ids[n_prompt..]` carries the loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub n_prompt: usize,
}

impl Tokenized {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens that carry loss.
    pub fn n_answer(&self) -> usize {
        self.ids.len() - self.n_prompt
    }
}

/// How many examples lost tokens to the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Truncations {
    pub prompt: usize,
    pub answer: usize,
}

/// The token the chat template closes an assistant turn with (`<|im_end|>`,
/// `<end_of_turn>`, `<|end|>`), found by rendering a tiny conversation with and without
/// the answer; the model's first stop id when the template says nothing usable.
pub fn end_of_turn(model: &LoadedModel) -> Result<u32> {
    let fallback = model.eos_ids.first().copied().ok_or_else(|| {
        Error::Config(format!(
            "{} has no end-of-sequence token; training needs one to teach the model to stop",
            model.origin
        ))
    })?;
    let Some(t) = &model.chat_template else {
        return Ok(fallback);
    };
    let user = [Message::user("x")];
    let answer = "bwb-answer";
    let full = [Message::user("x"), Message::assistant(answer)];
    let (Ok(prompt), Ok(text)) = (
        t.render(&user, true, &model.chat_kwargs),
        t.render(&full, false, &model.chat_kwargs),
    ) else {
        return Ok(fallback);
    };
    let rest = text
        .strip_prefix(prompt.as_str())
        .and_then(|r| r.trim_start().strip_prefix(answer));
    let Some(rest) = rest else {
        return Ok(fallback);
    };
    let ids = model
        .tokenizer
        .encode(rest, false)
        .map_err(|e| Error::Config(format!("tokenising the chat template's turn end: {e}")))?;
    Ok(match ids.get_ids().first() {
        Some(id) if model.eos_ids.contains(id) => *id,
        _ => fallback,
    })
}

/// Tokenise examples for training (or validation loss).
pub fn tokenize(
    model: &LoadedModel,
    prompt: &TaskPrompt,
    examples: &[Example],
    max_len: usize,
) -> Result<(Vec<Tokenized>, Truncations)> {
    let eot = end_of_turn(model)?;
    let mut out = Vec::with_capacity(examples.len());
    let mut trunc = Truncations::default();
    for ex in examples {
        let p = model.encode_prompt(&prompt.messages(ex)?, false)?;
        let mut a = model
            .tokenizer
            .encode(ex.target.as_str(), false)
            .map_err(|e| Error::Config(format!("tokenising the target of `{}`: {e}", ex.id)))?
            .get_ids()
            .to_vec();
        a.push(eot);
        let (p, a) = fit(p, a, max_len, &mut trunc);
        out.push(Tokenized {
            n_prompt: p.len(),
            ids: [p, a].concat(),
        });
    }
    Ok((out, trunc))
}

fn fit(
    mut p: Vec<u32>,
    mut a: Vec<u32>,
    max_len: usize,
    trunc: &mut Truncations,
) -> (Vec<u32>, Vec<u32>) {
    if p.len() + a.len() <= max_len {
        return (p, a);
    }
    let min_prompt = p.len().min(max_len / 2).max(1);
    if a.len() + min_prompt <= max_len {
        trunc.prompt += 1;
        p.drain(..p.len() + a.len() - max_len);
    } else {
        trunc.answer += 1;
        p.drain(..p.len() - min_prompt);
        a.truncate(max_len - min_prompt);
    }
    (p, a)
}

/// One epoch's order of micro-batches (indices into the tokenised examples): a seeded
/// shuffle, then within windows of 50 micro-batches sorted by length (so rows of a batch have
/// similar lengths and little padding), then the batches themselves shuffled.
pub fn epoch_batches(
    lens: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = sample::rng(seed, &format!("train/epoch-{epoch}"));
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    sample::shuffle(&mut idx, &mut rng);
    let mut batches = Vec::new();
    for window in idx.chunks(batch_size * 50) {
        let mut w = window.to_vec();
        // Stable sort, longest first: the first batch shows the peak memory early.
        w.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
    }
    sample::shuffle(&mut batches, &mut rng);
    batches
}

/// A right-padded micro-batch as tensors, with the flat positions whose next token is a
/// loss target.
pub struct Batch {
    /// `(B, L)` u32.
    pub ids: Tensor,
    /// `(B, L)` i64, -1 on padding.
    pub positions: Tensor,
    /// Flat indices `b·L + t` of the hidden states that predict a target.
    pub at: Tensor,
    /// The targets, in the same order.
    pub targets: Tensor,
    pub n_targets: usize,
    /// Non-padding tokens.
    pub n_tokens: usize,
}

pub fn make_batch(rows: &[&Tokenized], pad_id: u32, device: &Device) -> Result<Batch> {
    let b = rows.len();
    let l = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(b * l);
    let mut pos = Vec::with_capacity(b * l);
    let mut at = Vec::new();
    let mut targets = Vec::new();
    let mut n_tokens = 0;
    for (r, row) in rows.iter().enumerate() {
        n_tokens += row.len();
        ids.extend(row.ids.iter().copied());
        ids.extend(std::iter::repeat_n(pad_id, l - row.len()));
        pos.extend((0..row.len() as i64).chain(std::iter::repeat_n(-1, l - row.len())));
        // Hidden state t predicts token t + 1.
        for t in row.n_prompt.max(1)..row.len() {
            at.push((r * l + t - 1) as u32);
            targets.push(row.ids[t]);
        }
    }
    let n_targets = targets.len();
    Ok(Batch {
        ids: Tensor::from_vec(ids, (b, l), device)?,
        positions: Tensor::from_vec(pos, (b, l), device)?,
        at: Tensor::from_vec(at, n_targets, device)?,
        targets: Tensor::from_vec(targets, n_targets, device)?,
        n_targets,
        n_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_answer() {
        let mut t = Truncations::default();
        let (p, a) = fit(vec![1, 2, 3, 4, 5, 6], vec![7, 8], 6, &mut t);
        assert_eq!((p, a), (vec![3, 4, 5, 6], vec![7, 8]));
        let (p, a) = fit(vec![1, 2, 3, 4], vec![5, 6, 7, 8, 9], 6, &mut t);
        assert_eq!((p, a), (vec![2, 3, 4], vec![5, 6, 7]));
        assert_eq!(
            t,
            Truncations {
                prompt: 1,
                answer: 1
            }
        );
    }

    #[test]
    fn batches_cover_every_example_once_and_depend_on_seed_and_epoch() {
        let lens: Vec<usize> = (0..23).map(|i| 5 + i % 7).collect();
        let b = epoch_batches(&lens, 4, 1, 0);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert!(b.iter().all(|x| x.len() <= 4));
        assert_eq!(b, epoch_batches(&lens, 4, 1, 0));
        assert_ne!(b, epoch_batches(&lens, 4, 1, 1));
        assert_ne!(b, epoch_batches(&lens, 4, 2, 0));
    }

    #[test]
    fn batch_targets_are_the_answer_tokens_only() {
        let a = Tokenized {
            ids: vec![10, 11, 12, 13],
            n_prompt: 2,
        };
        let b = Tokenized {
            ids: vec![20, 21, 22],
            n_prompt: 2,
        };
        let batch = make_batch(&[&a, &b], 0, &Device::Cpu).unwrap();
        assert_eq!(batch.at.to_vec1::<u32>().unwrap(), vec![1, 2, 5]);
        assert_eq!(batch.targets.to_vec1::<u32>().unwrap(), vec![12, 13, 22]);
        assert_eq!(
            batch.positions.to_vec2::<i64>().unwrap(),
            vec![vec![0, 1, 2, 3], vec![0, 1, 2, -1]]
        );
        assert_eq!(batch.n_tokens, 7);
    }
}
