//! The local compressors on bwb's engine: a causal LM scores every context token by its
//! self-information `−log p(token | prefix)` and the least informative pieces are dropped
//! until `rate` of the context's tokens (as the model's tokenizer counts them) is left.
//!
//! - `selective` (Selective Context, Li et al. 2023): the context in overlapping windows of
//!   [`WINDOW`] tokens, `batch` windows per forward; token scores averaged over lexical units
//!   (token / phrase / sentence, see [`select::Unit`]); the lowest units dropped.
//! - `lingua` (LLMLingua, Jiang et al. 2023, with LongLLMLingua's question-aware coarse
//!   step): a budget controller first drops whole sentences (by the question's perplexity
//!   given the sentence when there is a question, else by the sentence's own perplexity;
//!   it keeps [`COARSE_SLACK`] × the target so the next stage has room), then iterative
//!   pruning segment by segment ([`SEGMENT`] tokens): each token scored given the question
//!   and the already-compressed prefix, each segment pruned to its share. The pruned pieces
//!   are words (mean token score), not LLMLingua's bare tokens, so no word is cut in half.
//!
//! `force_tokens` (strings; every occurrence in the context) and, when asked, tokens holding
//! digits always stay. Scoring runs no sampling and a fixed batching, so the same input and
//! model give the same output. Local calls run one at a time (the model is shared).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::D;

use super::select::{self, Piece, Unit};
use super::{ratio, CompressError, Compressed, Compressor, Rate};
use crate::model::load::LoadedModel;
use crate::model::ForwardCtx;
use crate::train::batch::{make_batch, Tokenized};

/// The model a local compressor scores with when none is named.
pub const DEFAULT_MODEL: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
/// The rate `auto` means for the local methods: keep half (LLMLingua's default).
pub const AUTO_RATE: f64 = 0.5;
/// Tokens scored per `selective` window, and how many tokens before it each window sees.
pub const WINDOW: usize = 512;
pub const OVERLAP: usize = 64;
/// Tokens per `lingua` segment, and how much of the compressed prefix it is conditioned on.
pub const SEGMENT: usize = 128;
pub const PREFIX_KEEP: usize = 384;
/// The coarse step keeps this × the target (LLMLingua's granular control coefficient).
pub const COARSE_SLACK: f64 = 1.3;
/// Rows of logits computed at once (a `(rows, vocab)` f32 block).
const LOGIT_ROWS: usize = 256;

/// Which local algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Selective,
    Lingua,
}

/// How a local compressor selects and what it charges.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `selective`'s lexical unit (`lingua` prunes tokens after its sentence step).
    pub unit: Unit,
    pub force_tokens: Vec<String>,
    /// Keep every token holding a digit.
    pub keep_numbers: bool,
    /// Windows (or sentences) per forward pass.
    pub batch: usize,
    /// GPU price per hour: cost = compute time × this, as local eval prices it.
    pub hourly_usd: Option<f64>,
    /// Or a price per million original tokens (wins over `hourly_usd`).
    pub price_per_mtok: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            unit: Unit::default(),
            force_tokens: Vec::new(),
            keep_numbers: false,
            batch: 8,
            hourly_usd: None,
            price_per_mtok: None,
        }
    }
}

/// A local compressor: method, rate and the scoring model.
pub struct Local {
    method: Method,
    rate: f64,
    model: Arc<LoadedModel>,
    opts: Options,
    busy: Mutex<()>,
}

/// A tokenised context: ids and the byte span each token owns.
struct Tokens {
    ids: Vec<u32>,
    spans: Vec<std::ops::Range<usize>>,
}

impl Local {
    pub fn new(method: Method, rate: f64, model: Arc<LoadedModel>, opts: Options) -> Self {
        Self {
            method,
            rate,
            model,
            opts,
            busy: Mutex::new(()),
        }
    }

    fn tokens(&self, text: &str) -> crate::error::Result<Tokens> {
        let enc = self
            .model
            .tokenizer
            .encode(text, false)
            .map_err(|e| crate::error::Error::Config(format!("tokenising the context: {e}")))?;
        let starts: Vec<usize> = enc.get_offsets().iter().map(|o| o.0).collect();
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            spans: select::spans(text, &starts),
        })
    }

    /// `−log p(ids[t] | ids[..t])` for `t` in `from..len` of each row, `batch` rows per
    /// forward; never a `(B, L, V)` tensor (the LM head runs on `LOGIT_ROWS` rows at a time).
    fn nll(&self, rows: &[Tokenized]) -> crate::error::Result<Vec<Vec<f64>>> {
        let m = &self.model;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.opts.batch.max(1)) {
            let refs: Vec<&Tokenized> = chunk.iter().collect();
            let b = make_batch(&refs, m.pad_id, &m.device)?;
            let hidden =
                m.model
                    .forward_hidden(&b.ids, &b.positions, None, &ForwardCtx::default())?;
            let (bs, l, h) = hidden.dims3()?;
            let picked = hidden.reshape((bs * l, h))?.index_select(&b.at, 0)?;
            let mut all: Vec<f64> = Vec::with_capacity(b.n_targets);
            let mut start = 0;
            while start < b.n_targets {
                let n = LOGIT_ROWS.min(b.n_targets - start);
                let logp = candle_nn::ops::log_softmax(
                    &m.model.logits(&picked.narrow(0, start, n)?)?,
                    D::Minus1,
                )?;
                let t = b.targets.narrow(0, start, n)?.unsqueeze(1)?;
                let got: Vec<f32> = logp.gather(&t, 1)?.flatten_all()?.to_vec1()?;
                all.extend(got.iter().map(|&x| -(x as f64)));
                start += n;
            }
            let mut it = all.into_iter();
            for r in chunk {
                let n = r.len().saturating_sub(r.n_prompt.max(1));
                out.push(it.by_ref().take(n).collect());
            }
        }
        Ok(out)
    }

    /// `selective`: every token's self-information, units, the budget.
    fn selective(&self, text: &str, rate: f64) -> crate::error::Result<String> {
        let tk = self.tokens(text)?;
        let n = tk.ids.len();
        let mut rows = Vec::new();
        let mut s = 0;
        while s < n {
            let lo = s.saturating_sub(OVERLAP);
            let hi = (s + WINDOW).min(n);
            rows.push(Tokenized {
                ids: tk.ids[lo..hi].to_vec(),
                n_prompt: s - lo,
            });
            s = hi;
        }
        let mut scores: Vec<f64> = self.nll(&rows)?.concat();
        // The first token has no prefix: give it the mean, neither kept nor dropped for it.
        let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
        scores.insert(0, mean);
        scores.truncate(n);
        let unit_of = select::units(text, &tk.spans, self.opts.unit);
        let forced = self.forced(text, &tk);
        let pieces = select::pieces(&unit_of, &scores, &forced);
        let keep = select::keep(&pieces, self.target(n, rate));
        Ok(select::join(text, &tk.spans, |i| keep[unit_of[i]]))
    }

    fn forced(&self, text: &str, tk: &Tokens) -> Vec<bool> {
        select::forced(
            text,
            &tk.spans,
            &self.opts.force_tokens,
            self.opts.keep_numbers,
        )
    }

    fn target(&self, n: usize, rate: f64) -> usize {
        (rate * n as f64).round() as usize
    }

    /// `lingua`: the coarse sentence step, then pruning segment by segment.
    fn lingua(&self, text: &str, question: &str, rate: f64) -> crate::error::Result<String> {
        let tk = self.tokens(text)?;
        let n = tk.ids.len();
        let q = self.tokens(question.trim())?.ids;
        let forced = self.forced(text, &tk);
        let kept = self.coarse(text, &tk, &q, &forced, rate)?;
        let word_of = select::units(text, &tk.spans, Unit::Word);
        let fine_rate = (self.target(n, rate) as f64 / kept.len().max(1) as f64).min(1.0);
        let mut prefix: Vec<u32> = Vec::new();
        let mut keep = vec![false; n];
        let (mut done, mut seen) = (0usize, 0usize);
        for seg in segments(&kept, &word_of) {
            let tail = prefix.len().saturating_sub(PREFIX_KEEP);
            let ctx: Vec<u32> = q.iter().chain(&prefix[tail..]).copied().collect();
            let row = Tokenized {
                n_prompt: ctx.len(),
                ids: ctx
                    .into_iter()
                    .chain(seg.iter().map(|&i| tk.ids[i]))
                    .collect(),
            };
            let mut scores = self.nll(std::slice::from_ref(&row))?.concat();
            if row.n_prompt == 0 {
                let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
                scores.insert(0, mean);
            }
            seen += seg.len();
            // Each segment's share keeps the running total on the fine rate.
            let want = ((fine_rate * seen as f64).round() as usize).saturating_sub(done);
            // Words of this segment, numbered from 0.
            let first = word_of[seg[0]];
            let local: Vec<usize> = seg.iter().map(|&i| word_of[i] - first).collect();
            let f: Vec<bool> = seg.iter().map(|&i| forced[i]).collect();
            let k = select::keep(&select::pieces(&local, &scores, &f), want);
            for (j, &i) in seg.iter().enumerate() {
                if k[local[j]] {
                    keep[i] = true;
                    prefix.push(tk.ids[i]);
                    done += 1;
                }
            }
        }
        Ok(select::join(text, &tk.spans, |i| keep[i]))
    }

    /// The budget controller: the token indices of the sentences kept (all of them when
    /// the context fits [`COARSE_SLACK`] × the target or is one sentence).
    fn coarse(
        &self,
        text: &str,
        tk: &Tokens,
        q: &[u32],
        forced: &[bool],
        rate: f64,
    ) -> crate::error::Result<Vec<usize>> {
        let n = tk.ids.len();
        let unit_of = select::units(text, &tk.spans, Unit::Sentence);
        let sentences = unit_of.last().map_or(0, |u| u + 1);
        let budget = ((self.target(n, rate) as f64 * COARSE_SLACK).round() as usize).min(n);
        if sentences < 2 || budget >= n {
            return Ok((0..n).collect());
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); sentences];
        for (i, &u) in unit_of.iter().enumerate() {
            members[u].push(i);
        }
        // With a question: −(mean NLL of the question given the sentence), LongLLMLingua's
        // relevance. Without: the sentence's own perplexity (LLMLingua keeps the surprising).
        let rows: Vec<Tokenized> = members
            .iter()
            .map(|m| {
                let ids: Vec<u32> = m.iter().map(|&i| tk.ids[i]).collect();
                match q.is_empty() {
                    true => Tokenized { ids, n_prompt: 0 },
                    false => Tokenized {
                        n_prompt: ids.len(),
                        ids: ids.into_iter().chain(q.iter().copied()).collect(),
                    },
                }
            })
            .collect();
        let nll = self.nll(&rows)?;
        let pieces: Vec<Piece> = members
            .iter()
            .zip(&nll)
            .map(|(m, s)| {
                let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
                Piece {
                    tokens: m.len(),
                    score: if q.is_empty() { mean } else { -mean },
                    forced: m.iter().any(|&i| forced[i]),
                }
            })
            .collect();
        let keep = select::keep(&pieces, budget);
        Ok((0..n).filter(|&i| keep[unit_of[i]]).collect())
    }

    /// Tokens of `text` as the compressor's tokenizer counts them.
    fn count(&self, text: &str) -> crate::error::Result<usize> {
        Ok(self.tokens(text)?.ids.len())
    }

    fn run(&self, context: &str, prompt: &str, rate: f64) -> crate::error::Result<Compressed> {
        let t0 = Instant::now();
        let original = self.count(context)?;
        let text = match self.method {
            Method::Selective => self.selective(context, rate)?,
            Method::Lingua => self.lingua(context, prompt, rate)?,
        };
        let compressed = self.count(&text)?;
        let secs = t0.elapsed().as_secs_f64();
        let cost_usd = match (self.opts.price_per_mtok, self.opts.hourly_usd) {
            (Some(p), _) => Some(original as f64 * p / 1e6),
            (None, Some(h)) => Some(secs / 3600.0 * h),
            (None, None) => None,
        };
        Ok(Compressed {
            text,
            original_tokens: original as u64,
            compressed_tokens: compressed as u64,
            compression_ratio: ratio(original as u64, compressed as u64),
            latency_ms: secs * 1e3,
            cost_usd,
            from_cache: false,
        })
    }
}

/// `kept` (token indices, ascending) cut into segments of about [`SEGMENT`] tokens that
/// never split a word (`word_of`: each token's word, ascending).
fn segments<'a>(kept: &'a [usize], word_of: &[usize]) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    for j in 1..=kept.len() {
        let boundary = j == kept.len() || word_of[kept[j]] != word_of[kept[j - 1]];
        if boundary && (j - start >= SEGMENT || j == kept.len()) {
            out.push(&kept[start..j]);
            start = j;
        }
    }
    out
}

impl Compressor for Local {
    fn name(&self) -> &str {
        match self.method {
            Method::Selective => "selective",
            Method::Lingua => "lingua",
        }
    }

    fn compress(&self, context: &str, prompt: &str) -> Result<Compressed, CompressError> {
        self.compress_at(context, prompt, Rate::Auto)
    }

    fn compress_at(
        &self,
        context: &str,
        prompt: &str,
        rate: Rate,
    ) -> Result<Compressed, CompressError> {
        let rate = match rate {
            Rate::Auto => self.rate,
            Rate::Fraction(r) => r,
        };
        let _one_at_a_time = self.busy.lock().map_err(|_| CompressError {
            fatal: true,
            message: "the local compressor failed earlier in another thread".into(),
        })?;
        if context.trim().is_empty() {
            return Ok(Compressed {
                text: context.to_string(),
                original_tokens: 0,
                compressed_tokens: 0,
                compression_ratio: 1.0,
                latency_ms: 0.0,
                cost_usd: None,
                from_cache: false,
            });
        }
        self.run(context, prompt, rate).map_err(|e| CompressError {
            fatal: false,
            message: format!("{} on {}: {e}", self.name(), self.model.origin),
        })
    }
}
