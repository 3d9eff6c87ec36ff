//! BERT-family encoders for inference (BERTScore, embeddings): BERT (`model_type: bert`,
//! checkpoint keys with or without the `bert.` prefix) and DistilBERT (`distilbert`, keys
//! with or without `distilbert.`). Both are post-norm transformers of the same shape; only
//! the checkpoint names and DistilBERT's missing token-type embeddings differ.
//!
//! Reads bottom-up: configs → embeddings → attention → layer → [`Encoder`].
//! [`Encoder::hidden_states`] returns HF's `hidden_states` tuple (index 0 = the embedding
//! output, index k = after layer k) for a right-padded batch with its attention mask.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result as BwbResult};

/// HF's `hidden_act` / `activation` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// HF's `gelu`: the exact, erf-based GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation.
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    fn forward(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}

fn default_eps() -> f64 {
    1e-12
}
fn default_type_vocab() -> usize {
    2
}

/// BERT's `config.json` (the fields inference reads).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported (relative position variants are not BERTScore models).
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

/// DistilBERT's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    /// Sinusoidal position table; HF writes it into `position_embeddings.weight`, so the
    /// checkpoint's table is used either way (and computed only when absent).
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
}

/// Either architecture's config, told apart by `model_type`.
#[derive(Debug, Clone)]
pub enum Config {
    Bert(BertConfig),
    DistilBert(DistilBertConfig),
}

impl Config {
    /// Parse `config.json`; errors name the file and the field.
    pub fn from_file(path: &Path) -> BwbResult<Config> {
        let v = crate::model::load::read_json(path)?;
        match v.get("model_type").and_then(|t| t.as_str()) {
            Some("bert") => Ok(Config::Bert(crate::model::load::parse_cfg(&v, path)?)),
            Some("distilbert") => Ok(Config::DistilBert(crate::model::load::parse_cfg(&v, path)?)),
            other => Err(Error::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "model_type `{}` is not a supported encoder; supported: bert, distilbert",
                    other.unwrap_or("?")
                ),
            }),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Config::Bert(c) => c.hidden_size,
            Config::DistilBert(c) => c.dim,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Config::Bert(c) => c.num_hidden_layers,
            Config::DistilBert(c) => c.n_layers,
        }
    }

    pub fn max_position_embeddings(&self) -> usize {
        match self {
            Config::Bert(c) => c.max_position_embeddings,
            Config::DistilBert(c) => c.max_position_embeddings,
        }
    }
}

/// LayerNorm stored as `weight`/`bias`, or as `gamma`/`beta` (original BERT checkpoints).
fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let (w, b) = if vb.contains_tensor("gamma") {
        ("gamma", "beta")
    } else {
        ("weight", "bias")
    };
    Ok(LayerNorm::new(vb.get(size, w)?, vb.get(size, b)?, eps))
}

/// HF's `create_sinusoidal_embeddings`: sin on even columns, cos on odd ones.
fn sinusoidal_table(n_pos: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let mut table = vec![0f32; n_pos * dim];
    for pos in 0..n_pos {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / dim as f64);
            table[pos * dim + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_vec(table, (n_pos, dim), device)
}

#[derive(Debug, Clone)]
struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// BERT only; every input is segment 0, as bert_score feeds it.
    token_type_embeddings: Option<Embedding>,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn new_bert(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: candle_nn::embedding(cfg.vocab_size, h, vb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: Some(candle_nn::embedding(
                cfg.type_vocab_size,
                h,
                vb.pp("token_type_embeddings"),
            )?),
            layer_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn new_distilbert(cfg: &DistilBertConfig, vb: VarBuilder) -> Result<Self> {
        let (n_pos, dim) = (cfg.max_position_embeddings, cfg.dim);
        let pos_vb = vb.pp("position_embeddings");
        let positions = if cfg.sinusoidal_pos_embds && !pos_vb.contains_tensor("weight") {
            Embedding::new(sinusoidal_table(n_pos, dim, vb.device())?, dim)
        } else {
            candle_nn::embedding(n_pos, dim, pos_vb)?
        };
        Ok(Self {
            word_embeddings: candle_nn::embedding(cfg.vocab_size, dim, vb.pp("word_embeddings"))?,
            position_embeddings: positions,
            token_type_embeddings: None,
            // DistilBERT's LayerNorms have a fixed eps of 1e-12.
            layer_norm: layer_norm(dim, 1e-12, vb.pp("LayerNorm"))?,
        })
    }

    /// `(B, L)` ids → `(B, L, H)`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_b, l) = ids.dims2()?;
        // 1. word + absolute position (0..L for every row: padding is on the right)
        let positions = Tensor::arange(0u32, l as u32, ids.device())?;
        let mut xs = self
            .word_embeddings
            .forward(ids)?
            .broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        // 2. + segment 0
        if let Some(tt) = &self.token_type_embeddings {
            let zero = Tensor::zeros(1, DType::U32, ids.device())?;
            xs = xs.broadcast_add(&tt.forward(&zero)?)?;
        }
        // 3. LayerNorm (dropout is off at inference)
        self.layer_norm.forward(&xs)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `vb` at the layer; `names` = (query, key, value, output) paths below it.
    fn new(h: usize, num_heads: usize, vb: &VarBuilder, names: [&str; 4]) -> Result<Self> {
        let lin = |name: &str| candle_nn::linear(h, h, vb.pp(name));
        Ok(Self {
            query: lin(names[0])?,
            key: lin(names[1])?,
            value: lin(names[2])?,
            output: lin(names[3])?,
            num_heads,
            head_dim: h / num_heads,
        })
    }

    /// `xs (B, L, H)`, additive `bias (B, 1, 1, L)` (0 on tokens, very negative on padding).
    fn forward(&self, xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, l, h) = xs.dims3()?;
        // 1. (B, L, H) -> (B, nH, L, D) for q, k, v
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(xs)?)?;
        let k = split(self.key.forward(xs)?)?;
        let v = split(self.value.forward(xs)?)?;
        // 2. scores (B, nH, L, L) = q k^T / sqrt(D) + mask bias
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
        // 3. softmax over keys, weighted values (B, nH, L, D) -> (B, L, H)
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        // 4. output projection
        self.output.forward(&ctx)
    }
}

/// One post-norm layer: `x = LN(x + attn(x)); x = LN(x + ffn(x))`.
#[derive(Debug, Clone)]
struct Layer {
    attention: Attention,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    output_norm: LayerNorm,
    act: Activation,
}

impl Layer {
    fn new_bert(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let attn = vb.pp("attention");
        Ok(Self {
            attention: Attention::new(
                h,
                cfg.num_attention_heads,
                &attn,
                ["self.query", "self.key", "self.value", "output.dense"],
            )?,
            attention_norm: layer_norm(h, eps, attn.pp("output.LayerNorm"))?,
            ffn_in: candle_nn::linear(h, i, vb.pp("intermediate.dense"))?,
            ffn_out: candle_nn::linear(i, h, vb.pp("output.dense"))?,
            output_norm: layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
            act: cfg.hidden_act,
        })
    }

    fn new_distilbert(cfg: &DistilBertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.dim, cfg.hidden_dim);
        Ok(Self {
            attention: Attention::new(
                h,
                cfg.n_heads,
                &vb.pp("attention"),
                ["q_lin", "k_lin", "v_lin", "out_lin"],
            )?,
            attention_norm: layer_norm(h, 1e-12, vb.pp("sa_layer_norm"))?,
            ffn_in: candle_nn::linear(h, i, vb.pp("ffn.lin1"))?,
            ffn_out: candle_nn::linear(i, h, vb.pp("ffn.lin2"))?,
            output_norm: layer_norm(h, 1e-12, vb.pp("output_layer_norm"))?,
            act: cfg.activation,
        })
    }

    fn forward(&self, xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        // 1. self-attention, residual, LayerNorm
        let xs = self
            .attention_norm
            .forward(&(self.attention.forward(xs, bias)? + xs)?)?;
        // 2. feed-forward (H -> I -> H), residual, LayerNorm
        let ff = self
            .ffn_out
            .forward(&self.act.forward(&self.ffn_in.forward(&xs)?)?)?;
        self.output_norm.forward(&(ff + xs)?)
    }
}

/// A BERT or DistilBERT encoder (no pooler, no heads).
#[derive(Debug, Clone)]
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    hidden_size: usize,
}

impl Encoder {
    /// Build from a checkpoint; `vb` at the checkpoint root (the `bert.` / `distilbert.`
    /// prefix is found here when the keys carry it).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        match cfg {
            Config::Bert(c) => {
                if let Some(t) = c.position_embedding_type.as_deref() {
                    if t != "absolute" {
                        candle_core::bail!("position_embedding_type `{t}` is not supported");
                    }
                }
                let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
                    vb.pp("bert")
                } else {
                    vb
                };
                let layers = (0..c.num_hidden_layers)
                    .map(|i| Layer::new_bert(c, vb.pp(format!("encoder.layer.{i}"))))
                    .collect::<Result<_>>()?;
                let embeddings = Embeddings::new_bert(c, vb.pp("embeddings"))?;
                Ok(Self {
                    embeddings,
                    layers,
                    hidden_size: c.hidden_size,
                })
            }
            Config::DistilBert(c) => {
                let vb = if vb.contains_tensor("distilbert.embeddings.word_embeddings.weight") {
                    vb.pp("distilbert")
                } else {
                    vb
                };
                let layers = (0..c.n_layers)
                    .map(|i| Layer::new_distilbert(c, vb.pp(format!("transformer.layer.{i}"))))
                    .collect::<Result<_>>()?;
                let embeddings = Embeddings::new_distilbert(c, vb.pp("embeddings"))?;
                Ok(Self {
                    embeddings,
                    layers,
                    hidden_size: c.dim,
                })
            }
        }
    }

    /// Load `config.json` + `model.safetensors` from an HF directory, in f32.
    pub fn load(dir: &Path, device: &Device) -> BwbResult<(Config, Encoder)> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| {
            Error::MissingInput(format!(
                "cannot read {}: {e}; an encoder directory needs a single model.safetensors",
                weights.display()
            ))
        })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
        let encoder = Encoder::new(&cfg, vb).map_err(|e| Error::BadFile {
            path: weights.clone(),
            message: format!(
                "does not match config.json: {}",
                crate::error::first_line(&e)
            ),
        })?;
        Ok((cfg, encoder))
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// HF's `hidden_states[0..=upto]` for right-padded `ids (B, L)` (u32) with `mask (B, L)`
    /// (1 on tokens, 0 on padding; any dtype): `upto + 1` tensors `(B, L, H)`, index 0 the
    /// embedding output. Only the first `upto` layers run. Rows at padding are computed but
    /// meaningless.
    pub fn hidden_states(&self, ids: &Tensor, mask: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        if upto > self.layers.len() {
            candle_core::bail!(
                "layer {upto} requested of an encoder with {} layers",
                self.layers.len()
            );
        }
        // 1. (B, L) mask -> additive bias (B, 1, 1, L): 0 on tokens, f32::MIN on padding
        //    (HF's `(1 - mask) * finfo.min`).
        let (b, l) = ids.dims2()?;
        let bias = ((mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * f32::MIN as f64)?
            .reshape((b, 1, 1, l))?;
        // 2. embeddings (B, L, H), then each layer
        let mut states = Vec::with_capacity(upto + 1);
        states.push(self.embeddings.forward(ids)?);
        for layer in &self.layers[..upto] {
            let next = layer.forward(&states[states.len() - 1], &bias)?;
            states.push(next);
        }
        Ok(states)
    }

    /// `hidden_states[k]` alone, `(B, L, H)`.
    pub fn hidden_state(&self, ids: &Tensor, mask: &Tensor, k: usize) -> Result<Tensor> {
        let mut states = self.hidden_states(ids, mask, k)?;
        states
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("no hidden state".into()))
    }
}

/// `xs` divided by its L2 norm over the last dim (a zero vector gives NaN, as in bert_score).
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    xs.broadcast_div(&norm)
}
