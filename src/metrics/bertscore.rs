//! BERTScore as the `bert_score` package (0.3.13, `bert_score.score`) computes it, for
//! BERT-family encoders ([`crate::model::bert`]: BERT and DistilBERT).
//!
//! ```text
//! let scorer = BertScorer::load("distilbert-base-uncased", &hub, &BertScoreOptions::default(), &Device::Cpu)?;
//! let prf: Vec<Prf> = scorer.score(&candidates, &references)?; // references: one list per candidate
//! ```
//!
//! * **Model**: [`BertScorer::load`] takes a local HF directory (config.json,
//!   model.safetensors, tokenizer.json, optional tokenizer_config.json), a model bert_score
//!   knows by name (`distilbert-base-uncased`, the default, or `bert-base-uncased`), or a hub
//!   id `org/name[@revision]` fetched through hf-hub like `--model`.
//! * **Tokens**: the text is stripped (Python's `str.strip`); an empty one is `[CLS] [SEP]`;
//!   otherwise its word pieces are cut to `model_max_length − 2` (tokenizer_config.json; the
//!   config's `max_position_embeddings` when absent) and wrapped in `[CLS] … [SEP]`. The
//!   `tokenizers` crate reads tokenizer.json (transformers' fast tokenizer); bert_score uses
//!   the slow one by default; the fixtures check that both agree on their cases.
//! * **Embeddings**: `hidden_states[layer]` (bert_score's `num_layers`; 0 = embedding
//!   output; default from bert_score's table for the known models, required otherwise),
//!   L2-normalised per token. Distinct sentences are embedded once, in padded batches of
//!   `batch_size` with an attention mask.
//! * **Matching**: for a candidate `x` and a reference `y` (token sequences including
//!   `[CLS]`/`[SEP]`), `P = Σᵢ w(xᵢ)·maxⱼ cos(xᵢ, yⱼ) / Σᵢ w(xᵢ)`, `R` likewise over `y`,
//!   `F = 2PR/(P+R)`. `[CLS]`/`[SEP]` weigh 0 but still take part in the other side's max,
//!   as in bert_score's `greedy_cos_idf`. Weights are 1, or with `idf` bert_score's
//!   `get_idf_dict` over all references of the call (`M` strings, repeats counted):
//!   `w(t) = ln((M+1)/(df(t)+1))`, so `[CLS]`/`[SEP]` (in every reference) weigh 0 and a
//!   token no reference has weighs `ln(M+1)`.
//! * **Empty sides**: a candidate or reference with no word piece scores P = R = F = 0, as in
//!   bert_score. Where a side's weights sum to 0 otherwise (idf: every token of it is in
//!   every reference) bert_score returns NaN for that side's P or R; we return 0 (metrics
//!   never return NaN, see [`crate::metrics`]); F is 0 there in both.
//! * **Several references**: P, R and F are each the max over the candidate's references
//!   (bert_score takes `max(dim=0)` of the stacked (P, R, F) rows, so the three may come from
//!   different references).
//! * **Rescaling** (`rescale_with_baseline`): `(s − b)/(1 − b)` for each of P, R, F with the
//!   baseline row of `layer` (after the max over references). Baselines for the known models
//!   are embedded below; for another model pass `baseline_path`, a file in bert_score's
//!   `rescale_baseline/<lang>/<model>.tsv` format (`LAYER,P,R,F` CSV, row k = layer k).
//!
//! One deliberate difference: bert_score multiplies the similarity matrix by the padding mask
//! before the max, so in a padded batch a token whose every real similarity is negative
//! gets 0 instead. We take the max over real tokens, which is bert_score at `batch_size=1`
//! and equals it at any batch size whenever each token's best similarity is ≥ 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use super::{harmonic_mean, Prf};
use crate::error::{Error, Result};
use crate::model::bert::{l2_normalize, Config, Encoder};
use crate::settings::HubSettings;

/// bert_score's default English BERT-family model (its `model2layers` layer: 5).
pub const DEFAULT_MODEL: &str = "distilbert-base-uncased";

/// A model bert_score knows: its name, hub repo, default layer and English baseline.
struct KnownModel {
    name: &'static str,
    hub_id: &'static str,
    layer: usize,
    /// `[P, R, F]` per layer (row k = `hidden_states[k]`).
    baseline: &'static [[f64; 3]],
}

/// Layers from bert_score 0.3.13's `utils.model2layers`; baselines copied from its
/// `rescale_baseline/en/distilbert-base-uncased.tsv` and `.../en/bert-base-uncased.tsv`.
const KNOWN: &[KnownModel] = &[
    KnownModel {
        name: "distilbert-base-uncased",
        hub_id: "distilbert/distilbert-base-uncased",
        layer: 5,
        baseline: &[
            [0.2884445, 0.2884457, 0.28333962],
            [0.39316687, 0.3931663, 0.39123002],
            [0.42905498, 0.4290923, 0.42735597],
            [0.5222444, 0.52227175, 0.52129734],
            [0.6019937, 0.6019904, 0.6014007],
            [0.6666034, 0.66660464, 0.66620487],
            [0.51401854, 0.51404256, 0.5131456],
        ],
    },
    KnownModel {
        name: "bert-base-uncased",
        hub_id: "google-bert/bert-base-uncased",
        layer: 9,
        baseline: &[
            [0.3231512, 0.32322776, 0.31853873],
            [0.32517454, 0.32522815, 0.32197207],
            [0.3708038, 0.37080705, 0.36834884],
            [0.36287847, 0.36286885, 0.36059204],
            [0.3786389, 0.37860426, 0.3767926],
            [0.4018232, 0.401791, 0.40032896],
            [0.38439456, 0.38434005, 0.38282546],
            [0.37114623, 0.3710986, 0.36949417],
            [0.37231025, 0.37226102, 0.37049443],
            [0.35375935, 0.3537393, 0.35219112],
            [0.38161838, 0.3816211, 0.37991408],
            [0.4421448, 0.4421776, 0.44040316],
            [0.40192786, 0.40191513, 0.40038353],
        ],
    },
];

fn known(spec: &str) -> Option<&'static KnownModel> {
    let id = spec.split('@').next().unwrap_or(spec);
    KNOWN.iter().find(|k| k.name == id || k.hub_id == id)
}

/// bert_score's options (`num_layers`, `idf`, `rescale_with_baseline`, `baseline_path`,
/// `batch_size`).
#[derive(Debug, Clone)]
pub struct BertScoreOptions {
    /// `hidden_states[layer]`; `None` = bert_score's default for a known model.
    pub layer: Option<usize>,
    pub idf: bool,
    pub rescale_with_baseline: bool,
    /// A baseline file; overrides the embedded one.
    pub baseline_path: Option<PathBuf>,
    /// Sentences per encoder batch (bert_score's default: 64).
    pub batch_size: usize,
}

impl Default for BertScoreOptions {
    fn default() -> Self {
        Self {
            layer: None,
            idf: false,
            rescale_with_baseline: false,
            baseline_path: None,
            batch_size: 64,
        }
    }
}

/// A loaded encoder, its tokenizer and the scoring options. See the module docs.
#[derive(Debug)]
pub struct BertScorer {
    name: String,
    encoder: Encoder,
    tokenizer: Tokenizer,
    specials: Specials,
    max_len: usize,
    layer: usize,
    idf: bool,
    /// `[P, R, F]` of the chosen layer when rescaling.
    baseline: Option<[f64; 3]>,
    batch_size: usize,
    device: Device,
}

/// Token ids of `[CLS]`, `[SEP]` and `[PAD]` (or the tokenizer's own names for them).
#[derive(Debug, Clone, Copy)]
struct Specials {
    cls: u32,
    sep: u32,
    pad: u32,
}

impl BertScorer {
    /// `model`: a local HF directory, a name bert_score knows (`distilbert-base-uncased`,
    /// `bert-base-uncased`) or a hub id `org/name[@revision]` (downloaded through hf-hub,
    /// or read from its cache).
    pub fn load(
        model: &str,
        hub: &HubSettings,
        opts: &BertScoreOptions,
        device: &Device,
    ) -> Result<Self> {
        if Path::new(model).is_dir() {
            return Self::from_dir(Path::new(model), opts, device);
        }
        let k = known(model);
        let hub_id = match k {
            Some(k) if !model.contains('/') => k.hub_id,
            _ => model,
        };
        let dir = crate::model::load::fetch_hub_model(hub_id, hub)?;
        Self::build(&dir, model, k, opts, device)
    }

    /// A local HF directory. bert_score has no defaults for a path: `layer` is required,
    /// and rescaling needs `baseline_path`.
    pub fn from_dir(dir: &Path, opts: &BertScoreOptions, device: &Device) -> Result<Self> {
        Self::build(dir, &dir.display().to_string(), None, opts, device)
    }

    fn build(
        dir: &Path,
        name: &str,
        known: Option<&KnownModel>,
        opts: &BertScoreOptions,
        device: &Device,
    ) -> Result<Self> {
        let (cfg, encoder) = Encoder::load(dir, device)?;
        let layer = resolve_layer(name, known, opts.layer, encoder.num_layers())?;
        let baseline = match (opts.rescale_with_baseline, &opts.baseline_path, known) {
            (false, _, _) => None,
            (true, Some(path), _) => Some(read_baseline(path, layer)?),
            (true, None, Some(k)) => Some(k.baseline[layer]),
            (true, None, None) => {
                return Err(Error::Config(format!(
                    "BERTScore rescale_with_baseline: no baseline is known for `{name}`; pass \
                     baseline_path (a file in bert_score's rescale_baseline/<lang>/<model>.tsv \
                     format) or turn rescaling off"
                )))
            }
        };
        let (tokenizer, specials, max_len) = load_tokenizer(dir, &cfg)?;
        Ok(Self {
            name: name.to_string(),
            encoder,
            tokenizer,
            specials,
            max_len,
            layer,
            idf: opts.idf,
            baseline,
            batch_size: opts.batch_size.max(1),
            device: device.clone(),
        })
    }

    /// The layer whose hidden states are compared.
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The model as it was named when loaded.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// P/R/F of each candidate against its references (at least one each; see the module
    /// docs for every convention).
    pub fn score(&self, candidates: &[String], references: &[Vec<String>]) -> Result<Vec<Prf>> {
        check_inputs(candidates, references)?;
        // 1. token ids of each distinct sentence (bert_score embeds each once)
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut seqs: Vec<Vec<u32>> = Vec::new();
        for s in candidates.iter().chain(references.iter().flatten()) {
            if !index.contains_key(s.as_str()) {
                index.insert(s, seqs.len());
                seqs.push(self.encode(s)?);
            }
        }
        let id_of = |s: &String| index.get(s.as_str()).copied().unwrap_or_default();
        // 2. token weights: idf over the references (repeats counted), or 1 with specials 0
        let idf = self.idf.then(|| {
            Idf::from_docs(
                references
                    .iter()
                    .flatten()
                    .map(|r| seqs[id_of(r)].as_slice()),
            )
        });
        let weights: Vec<Vec<f64>> = seqs.iter().map(|s| self.weights(s, idf.as_ref())).collect();
        // 3. normalised hidden states (L_i, H) of each distinct sentence
        let embs = self.embed(&seqs)?;
        // 4. each pair, the max over a candidate's references, then rescaling
        let mut out = Vec::with_capacity(candidates.len());
        for (cand, refs) in candidates.iter().zip(references) {
            let c = id_of(cand);
            let mut best: Option<Prf> = None;
            for r in refs.iter().map(id_of) {
                let prf = if seqs[c].len() == 2 || seqs[r].len() == 2 {
                    Prf::zero()
                } else {
                    let sim = similarities(&embs[c], &embs[r])?;
                    greedy_match(&sim, &weights[c], &weights[r])
                };
                best = Some(best.map_or(prf, |b| b.max(&prf)));
            }
            let prf = best.unwrap_or_else(Prf::zero);
            out.push(self.rescale(prf));
        }
        Ok(out)
    }

    /// bert_score's `sent_encode`: strip; empty → `[CLS] [SEP]`; else the word pieces cut to
    /// `max_len − 2`, wrapped in `[CLS] … [SEP]`.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = py_strip(text);
        let mut ids = vec![self.specials.cls];
        if !text.is_empty() {
            let enc = self.tokenizer.encode(text, false).map_err(|e| {
                Error::Config(format!("BERTScore: tokenising with {}: {e}", self.name))
            })?;
            let keep = self.max_len.saturating_sub(2);
            ids.extend(enc.get_ids().iter().take(keep));
        }
        ids.push(self.specials.sep);
        Ok(ids)
    }

    fn weights(&self, ids: &[u32], idf: Option<&Idf>) -> Vec<f64> {
        ids.iter()
            .map(|&t| match idf {
                Some(idf) => idf.weight(t),
                None if t == self.specials.cls || t == self.specials.sep => 0.0,
                None => 1.0,
            })
            .collect()
    }

    /// `hidden_states[layer]` of each sequence, L2-normalised, as `(L_i, H)` tensors. Longest
    /// first, so each padded batch holds sequences of similar length.
    fn embed(&self, seqs: &[Vec<u32>]) -> Result<Vec<Tensor>> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out: Vec<Option<Tensor>> = vec![None; seqs.len()];
        for chunk in order.chunks(self.batch_size) {
            let width = chunk.iter().map(|&i| seqs[i].len()).max().unwrap_or(0);
            let (ids, mask) = pad_batch(
                chunk.iter().map(|&i| seqs[i].as_slice()),
                width,
                self.specials.pad,
            );
            let ids = Tensor::from_vec(ids, (chunk.len(), width), &self.device)?;
            let mask = Tensor::from_vec(mask, (chunk.len(), width), &self.device)?;
            let hidden = self.encoder.hidden_state(&ids, &mask, self.layer)?;
            let hidden = l2_normalize(&hidden)?;
            for (row, &i) in chunk.iter().enumerate() {
                out[i] = Some(hidden.get(row)?.narrow(0, 0, seqs[i].len())?);
            }
        }
        out.into_iter()
            .map(|t| {
                t.ok_or_else(|| Error::Config("BERTScore: a sentence was not embedded".into()))
            })
            .collect()
    }

    fn rescale(&self, prf: Prf) -> Prf {
        match self.baseline {
            None => prf,
            Some([bp, br, bf]) => Prf {
                precision: (prf.precision - bp) / (1.0 - bp),
                recall: (prf.recall - br) / (1.0 - br),
                f1: (prf.f1 - bf) / (1.0 - bf),
            },
        }
    }
}

fn check_inputs(candidates: &[String], references: &[Vec<String>]) -> Result<()> {
    if candidates.len() != references.len() {
        return Err(Error::Config(format!(
            "BERTScore: {} candidates but {} reference lists; pass one list per candidate",
            candidates.len(),
            references.len()
        )));
    }
    if let Some(i) = references.iter().position(Vec::is_empty) {
        return Err(Error::Config(format!(
            "BERTScore: candidate {i} has no reference; pass at least one (an empty string \
             scores 0)"
        )));
    }
    Ok(())
}

fn resolve_layer(
    name: &str,
    known: Option<&KnownModel>,
    layer: Option<usize>,
    num_layers: usize,
) -> Result<usize> {
    let layer = match (layer, known) {
        (Some(l), _) => l,
        (None, Some(k)) => k.layer,
        (None, None) => {
            return Err(Error::Config(format!(
                "BERTScore: `{name}` has no default layer in bert_score's table; pass layer \
                 (bert_score's num_layers, 0..={num_layers})"
            )))
        }
    };
    if layer > num_layers {
        return Err(Error::Config(format!(
            "BERTScore layer {layer} is out of range for `{name}`: it has {num_layers} layers \
             (valid: 0..={num_layers}, 0 = the embedding output)"
        )));
    }
    Ok(layer)
}

/// The tokenizer with its own truncation and padding switched off (we cut and pad
/// ourselves), the special ids, and the maximum sequence length.
fn load_tokenizer(dir: &Path, cfg: &Config) -> Result<(Tokenizer, Specials, usize)> {
    let path = dir.join("tokenizer.json");
    let mut tokenizer = crate::model::tokenizer::tokenizer_from_file(&path)?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| Error::BadFile {
            path: path.clone(),
            message: format!("cannot switch truncation off: {e}"),
        })?
        .with_padding(None);
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() {
        crate::model::load::read_json(&tc_path)?
    } else {
        serde_json::Value::Null
    };
    let id = |field: &str, default: &str| -> Result<u32> {
        let name = special_name(&tc, field).unwrap_or(default);
        tokenizer.token_to_id(name).ok_or_else(|| Error::BadFile {
            path: path.clone(),
            message: format!("no token `{name}` ({field}) in the vocabulary"),
        })
    };
    let specials = Specials {
        cls: id("cls_token", "[CLS]")?,
        sep: id("sep_token", "[SEP]")?,
        pad: id("pad_token", "[PAD]")?,
    };
    // transformers writes a huge sentinel when a model has no limit; the positions cap it.
    let positions = cfg.max_position_embeddings();
    let max_len = match tc
        .get("model_max_length")
        .and_then(serde_json::Value::as_f64)
    {
        Some(m) if m >= 3.0 && m < positions as f64 => m as usize,
        _ => positions,
    };
    Ok((tokenizer, specials, max_len))
}

/// `cls_token` etc. in tokenizer_config.json: a string or `{"content": …}`.
fn special_name<'a>(tc: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    let v = tc.get(field)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(serde_json::Value::as_str))
}

/// One baseline row (`LAYER,P,R,F` CSV, row k after the header = layer k).
fn read_baseline(path: &Path, layer: usize) -> Result<[f64; 3]> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::MissingInput(format!("cannot read baseline file {}: {e}", path.display()))
    })?;
    let line_no = layer + 2;
    let line = text.lines().nth(layer + 1).ok_or_else(|| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("no row for layer {layer} (expected at line {line_no})"),
    })?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let bad = |message: String| Error::BadRow {
        path: path.to_path_buf(),
        line: line_no,
        message,
    };
    if fields.len() != 4 {
        return Err(bad(format!("expected 4 fields LAYER,P,R,F, got `{line}`")));
    }
    let mut row = [0.0; 3];
    for (slot, field) in row.iter_mut().zip(&fields[1..]) {
        *slot = field
            .parse()
            .map_err(|_| bad(format!("`{field}` is not a number")))?;
    }
    Ok(row)
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators U+001C..U+001F.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Right-pad `seqs` to `width`: flat ids and a 1/0 mask, row-major.
fn pad_batch<'a>(
    seqs: impl Iterator<Item = &'a [u32]>,
    width: usize,
    pad: u32,
) -> (Vec<u32>, Vec<u32>) {
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(pad, width - s.len()));
        mask.extend(std::iter::repeat_n(1u32, s.len()));
        mask.extend(std::iter::repeat_n(0u32, width - s.len()));
    }
    (ids, mask)
}

/// Cosine similarities `(L_c, L_r)` of two normalised embedding matrices.
fn similarities(cand: &Tensor, reference: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(cand.matmul(&reference.t()?)?.to_vec2::<f32>()?)
}

/// Weighted greedy matching over a candidate × reference similarity matrix. A side whose
/// weights sum to 0 scores 0 (bert_score: NaN).
fn greedy_match(sim: &[Vec<f32>], w_cand: &[f64], w_ref: &[f64]) -> Prf {
    let n_ref = w_ref.len();
    let row_max = sim
        .iter()
        .map(|row| row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64);
    let col_max = (0..n_ref).map(|j| {
        sim.iter()
            .map(|row| row[j])
            .fold(f32::NEG_INFINITY, |a, b| a.max(b)) as f64
    });
    let precision = weighted_mean(row_max, w_cand);
    let recall = weighted_mean(col_max, w_ref);
    Prf {
        precision,
        recall,
        f1: harmonic_mean(precision, recall),
    }
}

/// `Σ wᵢ·xᵢ / Σ wᵢ`, or 0 where the weights sum to 0.
fn weighted_mean(xs: impl Iterator<Item = f64>, w: &[f64]) -> f64 {
    let total: f64 = w.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    xs.zip(w).map(|(x, w)| x * w).sum::<f64>() / total
}

/// bert_score's `get_idf_dict`: document frequencies of token ids over `M` documents
/// (each counted once per document); `weight(t) = ln((M+1)/(df(t)+1))`.
#[derive(Debug, Clone)]
struct Idf {
    df: HashMap<u32, usize>,
    num_docs: usize,
}

impl Idf {
    fn from_docs<'a>(docs: impl Iterator<Item = &'a [u32]>) -> Idf {
        let mut df: HashMap<u32, usize> = HashMap::new();
        let mut num_docs = 0;
        for doc in docs {
            num_docs += 1;
            let mut seen: Vec<u32> = doc.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                *df.entry(t).or_default() += 1;
            }
        }
        Idf { df, num_docs }
    }

    fn weight(&self, token: u32) -> f64 {
        let df = self.df.get(&token).copied().unwrap_or(0);
        ((self.num_docs + 1) as f64 / (df + 1) as f64).ln()
    }
}

impl Prf {
    fn zero() -> Prf {
        Prf {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        }
    }

    /// Each field's max (bert_score's `max(dim=0)` over a candidate's references).
    fn max(&self, other: &Prf) -> Prf {
        Prf {
            precision: self.precision.max(other.precision),
            recall: self.recall.max(other.recall),
            f1: self.f1.max(other.f1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_counts_each_document_once_and_gives_unseen_tokens_ln_m_plus_1() {
        // [CLS]=1, [SEP]=2; token 7 twice in one document, token 8 in both.
        let docs: Vec<Vec<u32>> = vec![vec![1, 7, 7, 8, 2], vec![1, 8, 2]];
        let idf = Idf::from_docs(docs.iter().map(Vec::as_slice));
        assert_eq!(idf.weight(1), 0.0, "[CLS] is in every document");
        assert_eq!(idf.weight(2), 0.0);
        assert_eq!(idf.weight(8), 0.0);
        assert!((idf.weight(7) - (3.0f64 / 2.0).ln()).abs() < 1e-15);
        assert!((idf.weight(99) - 3.0f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn specials_weigh_zero_but_still_match() {
        // candidate [CLS] a [SEP] vs reference [CLS] b [SEP]: `a` matches the reference's
        // [SEP] best (0.9), which counts although [SEP] weighs 0.
        let sim = vec![
            vec![1.0, 0.1, 0.2],
            vec![0.3, 0.5, 0.9],
            vec![0.2, 0.1, 1.0],
        ];
        let w = [0.0, 1.0, 0.0];
        let prf = greedy_match(&sim, &w, &w);
        assert!((prf.precision - 0.9).abs() < 1e-7);
        assert!((prf.recall - 0.5).abs() < 1e-7);
        assert!((prf.f1 - harmonic_mean(0.9, 0.5)).abs() < 1e-7);
    }

    #[test]
    fn zero_weight_side_scores_zero_not_nan() {
        let sim = vec![vec![0.5, 0.4], vec![0.3, 0.2]];
        let prf = greedy_match(&sim, &[0.0, 0.0], &[1.0, 1.0]);
        assert_eq!(prf.precision, 0.0);
        assert!((prf.recall - 0.45).abs() < 1e-7);
        assert_eq!(prf.f1, 0.0);
        assert!(!prf.recall.is_nan());
    }

    #[test]
    fn negative_similarities_are_not_clipped_to_the_padding_zero() {
        let sim = vec![vec![-0.5, -0.25]];
        let prf = greedy_match(&sim, &[1.0], &[1.0, 1.0]);
        assert!((prf.precision + 0.25).abs() < 1e-7);
        assert!((prf.recall + 0.375).abs() < 1e-7);
    }

    #[test]
    fn padding_fills_to_width_with_a_zero_mask() {
        let a: &[u32] = &[5, 6, 7];
        let b: &[u32] = &[5, 7];
        let (ids, mask) = pad_batch([a, b].into_iter(), 3, 0);
        assert_eq!(ids, vec![5, 6, 7, 5, 7, 0]);
        assert_eq!(mask, vec![1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn multi_reference_max_is_per_field() {
        let a = Prf {
            precision: 0.9,
            recall: 0.1,
            f1: 0.18,
        };
        let b = Prf {
            precision: 0.5,
            recall: 0.6,
            f1: 0.545,
        };
        let m = a.max(&b);
        assert_eq!((m.precision, m.recall, m.f1), (0.9, 0.6, 0.545));
    }

    #[test]
    fn strip_matches_python() {
        assert_eq!(py_strip(" \t\n\u{3000}x y\u{1f}\u{85} "), "x y");
        assert_eq!(py_strip("\u{1c}\u{a0}"), "");
    }

    #[test]
    fn baseline_rows_are_layers_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tsv");
        std::fs::write(&path, "LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.4,x,0.6\n").unwrap();
        assert_eq!(read_baseline(&path, 0).unwrap(), [0.1, 0.2, 0.3]);
        let err = read_baseline(&path, 1).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("`x`"), "{err}");
        let err = read_baseline(&path, 5).unwrap_err().to_string();
        assert!(err.contains("no row for layer 5"), "{err}");
    }

    #[test]
    fn known_models_resolve_by_name_or_hub_id() {
        assert_eq!(known(DEFAULT_MODEL).map(|k| k.layer), Some(5));
        assert_eq!(
            known("distilbert/distilbert-base-uncased@main").map(|k| k.layer),
            Some(5)
        );
        assert!(known("sentence-transformers/all-MiniLM-L6-v2").is_none());
        for k in KNOWN {
            assert!(k.layer < k.baseline.len(), "{}", k.name);
        }
    }
}
