//! Pieces every architecture shares: RoPE settings as HF writes them (old `rope_theta` +
//! `rope_scaling`, or transformers 5's `rope_parameters`, possibly per layer type), the gated
//! MLP, and the token embedding.

use candle_core::{Result, Tensor};
use serde::Deserialize;
use serde_json::Value;

use super::linear::{ForwardCtx, QLinear};
use super::weights::Builder;
use crate::error::{Error, Result as BwbResult};

/// RoPE settings for one layer type.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    pub theta: f64,
    /// `rope_type` (`default`, `linear`, `longrope`, …).
    pub kind: String,
    /// The whole scaling object, for type-specific fields.
    pub raw: Value,
}

/// The RoPE fields of an HF config, in either spelling.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeFields {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    #[serde(default)]
    pub rope_parameters: Option<Value>,
}

impl RopeFields {
    /// RoPE parameters for `layer_type` (`full_attention` / `sliding_attention`, or `None`
    /// for single-type models). `default_theta` applies when the config names none.
    pub fn resolve(&self, layer_type: Option<&str>, default_theta: f64) -> BwbResult<RopeParams> {
        let mut obj = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) => p.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => Value::Null,
        };
        // transformers 5 nests per layer type: {"full_attention": {...}, "sliding_attention": {...}}
        if let (Some(lt), Some(map)) = (layer_type, obj.as_object()) {
            if let Some(inner) = map.get(lt) {
                obj = inner.clone();
            }
        }
        let theta = obj
            .get("rope_theta")
            .and_then(Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(default_theta);
        let kind = obj
            .get("rope_type")
            .or_else(|| obj.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        Ok(RopeParams {
            theta,
            kind,
            raw: obj,
        })
    }
}

impl RopeParams {
    /// A scalar field of the scaling object.
    pub fn f64_field(&self, name: &str) -> Option<f64> {
        self.raw.get(name).and_then(Value::as_f64)
    }

    /// Per-frequency divisors for `default` and `linear`; other types are the caller's.
    pub fn linear_factor(&self) -> BwbResult<Option<f64>> {
        match self.kind.as_str() {
            "default" => Ok(None),
            "linear" => Ok(Some(self.f64_field("factor").ok_or_else(|| {
                Error::Config("rope scaling `linear` needs a `factor`".into())
            })?)),
            other => Err(Error::Config(format!(
                "unsupported rope scaling type `{other}` for this architecture; supported: default, linear"
            ))),
        }
    }
}

/// Gated MLP: `down(act(gate(x)) · up(x))`, with separate or fused (Phi-3) gate/up.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_up: GateUp,
    down: QLinear,
    act: Act,
}

#[derive(Debug, Clone)]
enum GateUp {
    Separate { gate: QLinear, up: QLinear },
    Fused(QLinear),
}

#[derive(Debug, Clone, Copy)]
pub enum Act {
    Silu,
    GeluTanh,
}

impl Act {
    pub fn parse(name: &str) -> BwbResult<Self> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Self::GeluTanh),
            other => Err(Error::Config(format!(
                "unsupported activation `{other}`; supported: silu, gelu_pytorch_tanh"
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => x.silu(),
            Self::GeluTanh => x.gelu(),
        }
    }
}

impl GatedMlp {
    pub fn new(
        hidden: usize,
        inter: usize,
        act: Act,
        fused: bool,
        vb: &Builder,
    ) -> BwbResult<Self> {
        let gate_up = if fused {
            GateUp::Fused(vb.linear("gate_up_proj", hidden, 2 * inter, false)?)
        } else {
            GateUp::Separate {
                gate: vb.linear("gate_proj", hidden, inter, false)?,
                up: vb.linear("up_proj", hidden, inter, false)?,
            }
        };
        Ok(Self {
            gate_up,
            down: vb.linear("down_proj", inter, hidden, false)?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (g, u) = match &self.gate_up {
            GateUp::Separate { gate, up } => (gate.forward(x, ctx)?, up.forward(x, ctx)?),
            GateUp::Fused(gu) => {
                let y = gu.forward(x, ctx)?;
                let n = y.dim(candle_core::D::Minus1)? / 2;
                (
                    y.narrow(candle_core::D::Minus1, 0, n)?,
                    y.narrow(candle_core::D::Minus1, n, n)?,
                )
            }
        };
        self.down.forward(&(self.act.apply(&g)? * u)?, ctx)
    }
}

/// Look up token embeddings `(B, L) → (B, L, H)`.
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, l) = ids.dims2()?;
    let h = table.dim(1)?;
    table
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((b, l, h))
}

/// `(B, L, H) → (B, Hn, L, D)`.
pub fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, l, _) = x.dims3()?;
    x.reshape((b, l, heads, head_dim))?.transpose(1, 2)
}

/// `(B, Hn, L, D) → (B, L, Hn·D)`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))
}

/// Positions of every key slot `(B, T)` for this forward: the cache's (extended by this
/// forward's tokens) when generating, or this forward's own when training.
pub fn key_positions(
    positions: &Tensor,
    cache: Option<&mut super::cache::Cache>,
) -> Result<Tensor> {
    match cache {
        Some(c) => c.extend_positions(positions),
        None => Ok(positions.clone()),
    }
}

/// This layer's full keys and values: appended to the cache when generating, or just this
/// forward's when training.
pub fn keys_of(
    cache: Option<&mut super::cache::Cache>,
    layer: usize,
    k: Tensor,
    v: Tensor,
) -> Result<(Tensor, Tensor)> {
    match cache {
        Some(c) => c.append(layer, &k, &v),
        None => Ok((k, v)),
    }
}
