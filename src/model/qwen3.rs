//! Qwen3 (Qwen/Qwen3-8B): Llama-style decoder with per-head RMSNorm on queries and keys
//! before RoPE, grouped-query attention and an explicit `head_dim`. Llama (llama.rs) is this
//! decoder without the q/k norms.

use candle_core::{Result, Tensor};
use serde::Deserialize;

use super::cache::Cache;
use super::common::{
    embed, key_positions, keys_of, merge_heads, split_heads, Act, GatedMlp, RopeFields,
};
use super::linear::{ForwardCtx, QLinear};
use super::ops::{attend, RmsNorm, Rotary, Visibility};
use super::weights::{Builder, Init};
use crate::error::Result as BwbResult;

/// HF `config.json`, as is.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(flatten)]
    pub rope: RopeFields,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// Context length the checkpoint was made for (written into merged exports).
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

fn silu() -> String {
    "silu".into()
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: QLinear,
    k_proj: QLinear,
    v_proj: QLinear,
    o_proj: QLinear,
    /// Qwen3's per-head q/k norms; `None` for Llama.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: &Builder, qk_norm: bool) -> BwbResult<Self> {
        let (h, d, kv) = (cfg.hidden_size, cfg.head_dim(), cfg.num_key_value_heads);
        let nh = cfg.num_attention_heads;
        let b = cfg.attention_bias;
        let norm = |name: &str| -> BwbResult<RmsNorm> {
            let w = vb.pp(name).tensor_f32("weight", &[d], Init::Ones)?;
            Ok(RmsNorm::new(w, cfg.rms_norm_eps, false)?)
        };
        Ok(Self {
            q_proj: vb.linear("q_proj", h, nh * d, b)?,
            k_proj: vb.linear("k_proj", h, kv * d, b)?,
            v_proj: vb.linear("v_proj", h, kv * d, b)?,
            o_proj: vb.linear("o_proj", nh * d, h, b)?,
            qk_norm: if qk_norm {
                Some((norm("q_norm")?, norm("k_norm")?))
            } else {
                None
            },
            heads: nh,
            kv_heads: kv,
            head_dim: d,
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
        // 1. projections, (B, L, H) -> (B, Hn, L, D)
        let q = split_heads(&self.q_proj.forward(x, ctx)?, self.heads, self.head_dim)?;
        let k = split_heads(&self.k_proj.forward(x, ctx)?, self.kv_heads, self.head_dim)?;
        let v = split_heads(&self.v_proj.forward(x, ctx)?, self.kv_heads, self.head_dim)?;
        // 2. per-head RMSNorm, then RoPE at each row's own positions
        let (q, k) = match &self.qk_norm {
            Some((qn, kn)) => (qn.forward(&q)?, kn.forward(&k)?),
            None => (q, k),
        };
        let q = rot.apply(&q, &rope.0, &rope.1)?;
        let k = rot.apply(&k, &rope.0, &rope.1)?;
        // 3. attend over cached + new keys
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

/// The Qwen3 causal LM.
#[derive(Debug, Clone)]
pub struct Model {
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    pub cfg: Config,
}

impl Model {
    pub fn new(cfg: &Config, vb: &Builder) -> BwbResult<Self> {
        Self::with_qk_norm(cfg, vb, true)
    }

    /// The shared Llama-family decoder; `qk_norm` is what makes it Qwen3.
    pub fn with_qk_norm(cfg: &Config, vb: &Builder, qk_norm: bool) -> BwbResult<Self> {
        let h = cfg.hidden_size;
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
            layers.push(Layer {
                input_layernorm: norm(&l, "input_layernorm")?,
                self_attn: Attention::new(cfg, &l.pp("self_attn"), qk_norm)?,
                post_attention_layernorm: norm(&l, "post_attention_layernorm")?,
                mlp: GatedMlp::new(h, cfg.intermediate_size, act, false, &l.pp("mlp"))?,
            });
        }
        let lm_head = if cfg.tie_word_embeddings && !vb.contains("lm_head.weight") {
            embed_tokens.clone()
        } else {
            vb.pp("lm_head")
                .tensor("weight", &[cfg.vocab_size, h], Init::Normal(0.02))?
        };
        let rope = cfg.rope.resolve(None, 10_000.0)?;
        let div = rope.linear_factor()?.map(|f| vec![f; cfg.head_dim() / 2]);
        let rotary = Rotary::new(rope.theta, cfg.head_dim(), div.as_deref(), 1.0, vb.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: norm(&m, "norm")?,
            lm_head,
            rotary,
            cfg: cfg.clone(),
        })
    }

    /// Final hidden states `(B, L, H)` for tokens `(B, L)` at positions `(B, L)` (i64;
    /// negative = padding). With a cache, keys include everything cached before.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mut cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        let k_pos = key_positions(positions, cache.as_deref_mut())?;
        let mask = Visibility::new(positions, &k_pos, None);
        let rope = self.rotary.cos_sin(&positions.clamp(0i64, i64::MAX)?)?;
        let mut x = embed(&self.embed_tokens, ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let h = layer.self_attn.forward(
                &h,
                &rope,
                &self.rotary,
                &mask,
                i,
                cache.as_deref_mut(),
                ctx,
            )?;
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

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// Qwen3 (`Qwen/Qwen3-8B`).
pub const ARCH: super::ArchSpec = super::ArchSpec {
    name: "qwen3",
    model_types: &["qwen3"],
    classes: &["Qwen3ForCausalLM"],
    lora_targets: &super::ATTENTION_MLP_TARGETS,
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
    fn shape(&self) -> super::Shape {
        let c = &self.cfg;
        super::Shape {
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim(),
            vocab: c.vocab_size,
        }
    }
    fn qwen3_config(&self) -> Option<&Config> {
        Some(&self.cfg)
    }
}
