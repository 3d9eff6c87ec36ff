//! The Phi-3 architecture as used by microsoft/Phi-4-mini-instruct: fused `qkv_proj` and
//! `gate_up_proj`, RoPE on the first `partial_rotary_factor` of each head with longrope
//! scaling (short factors up to `original_max_position_embeddings`, long ones beyond, and an
//! attention factor on cos/sin), tied embeddings.

use candle_core::{Result, Tensor, D};
use serde::Deserialize;

use super::cache::Cache;
use super::common::{
    embed, key_positions, keys_of, merge_heads, split_heads, Act, GatedMlp, RopeFields,
};
use super::linear::{ForwardCtx, QLinear};
use super::ops::{attend, RmsNorm, Rotary, Visibility};
use super::weights::{Builder, Init};
use crate::error::{Error, Result as BwbResult};

/// HF `config.json`, as is.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(flatten)]
    pub rope: RopeFields,
    #[serde(default = "one")]
    pub partial_rotary_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "silu")]
    pub hidden_act: String,
}

fn one() -> f64 {
    1.0
}
fn silu() -> String {
    "silu".into()
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    fn rot_dim(&self) -> usize {
        (self.head_dim() as f64 * self.partial_rotary_factor) as usize
    }
}

/// RoPE for Phi-3: plain, or longrope with a short and a long table.
#[derive(Debug, Clone)]
struct PhiRope {
    short: Rotary,
    long: Option<(Rotary, usize)>,
}

impl PhiRope {
    fn new(cfg: &Config, dev: &candle_core::Device) -> BwbResult<Self> {
        let rope = cfg.rope.resolve(None, 10_000.0)?;
        let rot = cfg.rot_dim();
        match rope.kind.as_str() {
            "default" => Ok(Self {
                short: Rotary::new(rope.theta, rot, None, 1.0, dev)?,
                long: None,
            }),
            "longrope" => {
                let factors = |name: &str| -> BwbResult<Vec<f64>> {
                    let v: Vec<f64> = rope
                        .raw
                        .get(name)
                        .and_then(|v| v.as_array())
                        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                        .unwrap_or_default();
                    if v.len() != rot / 2 {
                        return Err(Error::Config(format!(
                            "phi3 config: rope_scaling.{name} has {} values, expected {} (rotary dim / 2)",
                            v.len(),
                            rot / 2
                        )));
                    }
                    Ok(v)
                };
                let orig = rope
                    .f64_field("original_max_position_embeddings")
                    .map(|x| x as usize)
                    .or(cfg.original_max_position_embeddings)
                    .ok_or_else(|| {
                        Error::Config(
                            "phi3 longrope needs `original_max_position_embeddings`".into(),
                        )
                    })?;
                let attn_factor = match rope.f64_field("attention_factor") {
                    Some(f) => f,
                    None => {
                        let factor = rope
                            .f64_field("factor")
                            .unwrap_or(cfg.max_position_embeddings as f64 / orig as f64);
                        if factor <= 1.0 {
                            1.0
                        } else {
                            (1.0 + factor.ln() / (orig as f64).ln()).sqrt()
                        }
                    }
                };
                let short = factors("short_factor")?;
                let long = factors("long_factor")?;
                Ok(Self {
                    short: Rotary::new(rope.theta, rot, Some(&short), attn_factor, dev)?,
                    long: Some((
                        Rotary::new(rope.theta, rot, Some(&long), attn_factor, dev)?,
                        orig,
                    )),
                })
            }
            other => Err(Error::Config(format!(
                "unsupported phi3 rope scaling `{other}`; supported: default, longrope"
            ))),
        }
    }

    /// `(cos, sin)` for positions `(B, L)`. HF picks the long table when the largest
    /// position in the forward is beyond the original context; we decide per row (by the
    /// row's largest position), which is what HF does for a single prompt, so a row's output
    /// does not depend on its batch-mates.
    fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let short = self.short.cos_sin(positions)?;
        let Some((long_rot, orig)) = &self.long else {
            return Ok(short);
        };
        let row_max: Vec<i64> = positions.max_keepdim(1)?.flatten_all()?.to_vec1()?;
        if row_max.iter().all(|&m| m < *orig as i64) {
            return Ok(short);
        }
        let long = long_rot.cos_sin(positions)?;
        if row_max.iter().all(|&m| m + 1 > *orig as i64) {
            return Ok(long);
        }
        let b = row_max.len();
        let sel: Vec<u8> = row_max
            .iter()
            .map(|&m| u8::from(m + 1 > *orig as i64))
            .collect();
        let sel = Tensor::from_vec(sel, (b, 1, 1, 1), positions.device())?
            .broadcast_as(short.0.shape())?;
        Ok((
            sel.where_cond(&long.0, &short.0)?,
            sel.where_cond(&long.1, &short.1)?,
        ))
    }

    /// Position at which cached keys (rotated with the short table) become stale.
    fn switch_at(&self) -> Option<usize> {
        self.long.as_ref().map(|(_, orig)| *orig)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    qkv_proj: QLinear,
    o_proj: QLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        rot: &Rotary,
        mask: &Visibility,
        layer: usize,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        // 1. fused projection, split into q | k | v
        let qkv = self.qkv_proj.forward(x, ctx)?;
        let (qn, kn) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let q = split_heads(&qkv.narrow(D::Minus1, 0, qn)?, self.heads, self.head_dim)?;
        let k = split_heads(
            &qkv.narrow(D::Minus1, qn, kn)?,
            self.kv_heads,
            self.head_dim,
        )?;
        let v = split_heads(
            &qkv.narrow(D::Minus1, qn + kn, kn)?,
            self.kv_heads,
            self.head_dim,
        )?;
        // 2. partial RoPE
        let q = rot.apply(&q, &rope.0, &rope.1)?;
        let k = rot.apply(&k, &rope.0, &rope.1)?;
        let (k, v) = keys_of(cache, layer, k, v)?;
        let y = attend(&q, &k, &v, mask, 1.0 / (self.head_dim as f64).sqrt(), None)?;
        self.o_proj.forward(&merge_heads(&y)?, ctx)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: GatedMlp,
}

/// The Phi-3 causal LM.
#[derive(Debug, Clone)]
pub struct Model {
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Tensor,
    rope: PhiRope,
    pub cfg: Config,
}

impl Model {
    pub fn new(cfg: &Config, vb: &Builder) -> BwbResult<Self> {
        let (h, d, nh, kv) = (
            cfg.hidden_size,
            cfg.head_dim(),
            cfg.num_attention_heads,
            cfg.kv_heads(),
        );
        let m = vb.pp("model");
        let norm = |vb: &Builder, name: &str| -> BwbResult<RmsNorm> {
            let w = vb.pp(name).tensor_f32("weight", &[h], Init::Ones)?;
            Ok(RmsNorm::new(w, cfg.rms_norm_eps, false)?)
        };
        let embed_tokens =
            m.pp("embed_tokens")
                .tensor("weight", &[cfg.vocab_size, h], Init::Normal(0.02))?;
        let act = Act::parse(&cfg.hidden_act)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp("layers").pp(i);
            let a = l.pp("self_attn");
            layers.push(Layer {
                input_layernorm: norm(&l, "input_layernorm")?,
                self_attn: Attention {
                    qkv_proj: a.linear("qkv_proj", h, (nh + 2 * kv) * d, false)?,
                    o_proj: a.linear("o_proj", nh * d, h, false)?,
                    heads: nh,
                    kv_heads: kv,
                    head_dim: d,
                },
                post_attention_layernorm: norm(&l, "post_attention_layernorm")?,
                mlp: GatedMlp::new(h, cfg.intermediate_size, act, true, &l.pp("mlp"))?,
            });
        }
        let lm_head = if cfg.tie_word_embeddings && !vb.contains("lm_head.weight") {
            embed_tokens.clone()
        } else {
            vb.pp("lm_head")
                .tensor("weight", &[cfg.vocab_size, h], Init::Normal(0.02))?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm: norm(&m, "norm")?,
            lm_head,
            rope: PhiRope::new(cfg, vb.device())?,
            cfg: cfg.clone(),
        })
    }

    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mut cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        let k_pos = key_positions(positions, cache.as_deref_mut())?;
        let mask = Visibility::new(positions, &k_pos, None);
        let pos = positions.clamp(0i64, i64::MAX)?;
        let rope = self.rope.cos_sin(&pos)?;
        let rot = &self.rope.short; // rot_dim only; cos/sin carry the table
        let mut x = embed(&self.embed_tokens, ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let h = layer
                .self_attn
                .forward(&h, &rope, rot, &mask, i, cache.as_deref_mut(), ctx)?;
            x = (x + h)?;
            let h = layer
                .mlp
                .forward(&layer.post_attention_layernorm.forward(&x)?, ctx)?;
            x = (x + h)?;
        }
        self.norm.forward(&x)
    }

    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// Whether the LM head is the embedding matrix itself.
    pub fn lm_head_is_tied(&self) -> bool {
        self.lm_head.id() == self.embed_tokens.id()
    }

    /// With longrope, a row whose next position reaches this must be recomputed from scratch
    /// (HF resets its cache there), because its cached keys used the short table.
    pub fn rope_switch_at(&self) -> Option<usize> {
        self.rope.switch_at()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// The Phi-3 architecture of `microsoft/Phi-4-mini-instruct` (fused qkv and gate/up).
pub const ARCH: super::ArchSpec = super::ArchSpec {
    name: "phi3",
    model_types: &["phi3"],
    classes: &["Phi3ForCausalLM"],
    lora_targets: &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    build: |cfg, path, vb| {
        let m = Model::new(&super::load::parse_cfg(cfg, path)?, vb)?;
        Ok(std::sync::Arc::new(m))
    },
};

impl super::Decoder for Model {
    fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        Model::forward_hidden(self, ids, positions, cache, ctx)
    }
    fn lm_head(&self) -> &Tensor {
        Model::lm_head(self)
    }
    fn lm_head_is_tied(&self) -> bool {
        Model::lm_head_is_tied(self)
    }
    fn num_layers(&self) -> usize {
        Model::num_layers(self)
    }
    fn rope_switch_at(&self) -> Option<usize> {
        Model::rope_switch_at(self)
    }
    fn shape(&self) -> super::Shape {
        let c = &self.cfg;
        super::Shape {
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c.head_dim(),
            vocab: c.vocab_size,
        }
    }
}
