//! Gemma 3 text (google/gemma-3-4b-it): `(1 + w)` RMSNorm everywhere (four per layer, and on
//! q/k per head), embeddings scaled by √hidden, sliding-window local layers with their own
//! RoPE base, attention scaled by `query_pre_attn_scalar^-½`, tied embeddings. The -it
//! checkpoint is multimodal: its config nests this one under `text_config` and its weights
//! sit under `language_model.` (the weight source maps the names).

use candle_core::{Result, Tensor};
use serde::Deserialize;

use super::cache::Cache;
use super::common::{
    embed, key_positions, keys_of, merge_heads, split_heads, Act, GatedMlp, RopeFields,
};
use super::linear::{ForwardCtx, QLinear};
use super::ops::{attend, RmsNorm, Rotary, Visibility};
use super::weights::{Builder, Init};
use crate::error::{Error, Result as BwbResult};

/// `Gemma3TextConfig`, with HF's defaults for the fields the 4B checkpoint leaves out.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(flatten)]
    pub rope: RopeFields,
    #[serde(default = "d_local_base")]
    pub rope_local_base_freq: f64,
    #[serde(default = "d_head_dim_f")]
    pub query_pre_attn_scalar: f64,
    #[serde(default = "d_window")]
    pub sliding_window: usize,
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default = "d_act")]
    pub hidden_activation: String,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
}

fn d_head_dim() -> usize {
    256
}
fn d_head_dim_f() -> f64 {
    256.0
}
fn d_eps() -> f64 {
    1e-6
}
fn d_local_base() -> f64 {
    10_000.0
}
fn d_window() -> usize {
    4096
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}

impl Config {
    /// Is layer `i` a sliding-window (local) layer?
    pub fn is_sliding(&self, i: usize) -> BwbResult<bool> {
        match &self.layer_types {
            Some(t) => match t.get(i).map(String::as_str) {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                other => Err(Error::Config(format!(
                    "gemma3 config: layer_types[{i}] is {other:?}; expected sliding_attention or full_attention"
                ))),
            },
            None => Ok(!(i + 1).is_multiple_of(self.sliding_window_pattern.unwrap_or(6))),
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: QLinear,
    k_proj: QLinear,
    v_proj: QLinear,
    o_proj: QLinear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn new(cfg: &Config, vb: &Builder) -> BwbResult<Self> {
        let (h, d, kv, nh) = (
            cfg.hidden_size,
            cfg.head_dim,
            cfg.num_key_value_heads,
            cfg.num_attention_heads,
        );
        let b = cfg.attention_bias;
        let norm = |name: &str| -> BwbResult<RmsNorm> {
            let w = vb.pp(name).tensor_f32("weight", &[d], Init::Zeros)?;
            Ok(RmsNorm::new(w, cfg.rms_norm_eps, true)?)
        };
        Ok(Self {
            q_proj: vb.linear("q_proj", h, nh * d, b)?,
            k_proj: vb.linear("k_proj", h, kv * d, b)?,
            v_proj: vb.linear("v_proj", h, kv * d, b)?,
            o_proj: vb.linear("o_proj", nh * d, h, b)?,
            q_norm: norm("q_norm")?,
            k_norm: norm("k_norm")?,
            heads: nh,
            kv_heads: kv,
            head_dim: d,
            scale: cfg.query_pre_attn_scalar.powf(-0.5),
            softcap: cfg.attn_logit_softcapping,
        })
    }

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
        // 1. projections, (B, L, H) -> (B, Hn, L, D); 2. (1 + w) norms per head, then RoPE
        let q = split_heads(&self.q_proj.forward(x, ctx)?, self.heads, self.head_dim)?;
        let k = split_heads(&self.k_proj.forward(x, ctx)?, self.kv_heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(x, ctx)?, self.kv_heads, self.head_dim)?;
        let q = rot.apply(&self.q_norm.forward(&q)?, &rope.0, &rope.1)?;
        let k = rot.apply(&self.k_norm.forward(&k)?, &rope.0, &rope.1)?;
        // 3. attend over cached + new keys, masked to the window on local layers
        let (k, v) = keys_of(cache, layer, k, v)?;
        let y = attend(&q, &k, &v, mask, self.scale, self.softcap)?;
        self.o_proj.forward(&merge_heads(&y)?, ctx)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    mlp: GatedMlp,
    post_feedforward_layernorm: RmsNorm,
    sliding: bool,
}

/// The Gemma 3 causal LM (text).
#[derive(Debug, Clone)]
pub struct Model {
    embed_tokens: Tensor,
    embed_scale: f64,
    layers: Vec<Layer>,
    norm: RmsNorm,
    global_rope: Rotary,
    local_rope: Rotary,
    pub cfg: Config,
}

impl Model {
    pub fn new(cfg: &Config, vb: &Builder) -> BwbResult<Self> {
        let h = cfg.hidden_size;
        let m = vb.pp("model");
        let norm = |vb: &Builder, name: &str| -> BwbResult<RmsNorm> {
            let w = vb.pp(name).tensor_f32("weight", &[h], Init::Zeros)?;
            Ok(RmsNorm::new(w, cfg.rms_norm_eps, true)?)
        };
        let embed_tokens =
            m.pp("embed_tokens")
                .tensor("weight", &[cfg.vocab_size, h], Init::Normal(0.02))?;
        let act = Act::parse(&cfg.hidden_activation)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp("layers").pp(i);
            layers.push(Layer {
                input_layernorm: norm(&l, "input_layernorm")?,
                self_attn: Attention::new(cfg, &l.pp("self_attn"))?,
                post_attention_layernorm: norm(&l, "post_attention_layernorm")?,
                pre_feedforward_layernorm: norm(&l, "pre_feedforward_layernorm")?,
                mlp: GatedMlp::new(h, cfg.intermediate_size, act, false, &l.pp("mlp"))?,
                post_feedforward_layernorm: norm(&l, "post_feedforward_layernorm")?,
                sliding: cfg.is_sliding(i)?,
            });
        }
        let d = cfg.head_dim;
        let global = cfg.rope.resolve(Some("full_attention"), 1_000_000.0)?;
        let div = global.linear_factor()?.map(|f| vec![f; d / 2]);
        let global_rope = Rotary::new(global.theta, d, div.as_deref(), 1.0, vb.device())?;
        // Local layers: transformers 5 names their parameters; older configs only give the base.
        let local = match &cfg.rope.rope_parameters {
            Some(p) if p.get("sliding_attention").is_some() => cfg
                .rope
                .resolve(Some("sliding_attention"), cfg.rope_local_base_freq)?,
            _ => super::common::RopeParams {
                theta: cfg.rope_local_base_freq,
                kind: "default".into(),
                raw: serde_json::Value::Null,
            },
        };
        let div = local.linear_factor()?.map(|f| vec![f; d / 2]);
        let local_rope = Rotary::new(local.theta, d, div.as_deref(), 1.0, vb.device())?;
        Ok(Self {
            embed_tokens,
            embed_scale: (h as f64).sqrt(),
            layers,
            norm: norm(&m, "norm")?,
            global_rope,
            local_rope,
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
        let global_mask = Visibility::new(positions, &k_pos, None);
        let local_mask = Visibility::new(positions, &k_pos, Some(self.cfg.sliding_window));
        let pos = positions.clamp(0i64, i64::MAX)?;
        let global = self.global_rope.cos_sin(&pos)?;
        let local = self.local_rope.cos_sin(&pos)?;
        // HF multiplies by the scale cast to the weights' dtype.
        let scale = half_round(self.embed_scale, self.embed_tokens.dtype());
        let mut x = (embed(&self.embed_tokens, ids)? * scale)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let (rope, rot, mask) = if layer.sliding {
                (&local, &self.local_rope, &local_mask)
            } else {
                (&global, &self.global_rope, &global_mask)
            };
            let h = layer.input_layernorm.forward(&x)?;
            let h = layer
                .self_attn
                .forward(&h, rope, rot, mask, i, cache.as_deref_mut(), ctx)?;
            x = (x + layer.post_attention_layernorm.forward(&h)?)?;
            let h = layer
                .mlp
                .forward(&layer.pre_feedforward_layernorm.forward(&x)?, ctx)?;
            x = (x + layer.post_feedforward_layernorm.forward(&h)?)?;
        }
        self.norm.forward(&x)
    }

    pub fn lm_head(&self) -> &Tensor {
        &self.embed_tokens
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// `v` rounded to what `dtype` can hold, as HF's `embed_scale.to(dtype)` does.
fn half_round(v: f64, dtype: candle_core::DType) -> f64 {
    match dtype {
        candle_core::DType::BF16 => half::bf16::from_f64(v).to_f64(),
        candle_core::DType::F16 => half::f16::from_f64(v).to_f64(),
        _ => v as f32 as f64,
    }
}

/// Gemma 3 text (`google/gemma-3-4b-it`: the multimodal checkpoint nests the text config
/// and weights).
pub const ARCH: super::ArchSpec = super::ArchSpec {
    name: "gemma3",
    model_types: &["gemma3_text", "gemma3"],
    classes: &["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"],
    lora_targets: &super::ATTENTION_MLP_TARGETS,
    build: |cfg, path, vb| {
        let text = cfg.get("text_config").unwrap_or(cfg);
        let m = Model::new(&super::load::parse_cfg(text, path)?, vb)?;
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
        true
    }
    fn final_softcap(&self) -> Option<f64> {
        self.cfg.final_logit_softcapping
    }
    fn num_layers(&self) -> usize {
        Model::num_layers(self)
    }
    fn shape(&self) -> super::Shape {
        let c = &self.cfg;
        super::Shape {
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            vocab: c.vocab_size,
        }
    }
}
