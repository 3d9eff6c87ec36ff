//! Differentiable building blocks shared by the model files. candle's fused `rms_norm`,
//! `rope` and `softmax_last_dim` record no backward, so RMSNorm and RoPE run on bwb's own
//! fused ops (src/kernels/, forward and backward, CPU and CUDA); the composed versions stay
//! here as the references those are checked against.

use candle_core::{DType, Device, Result, Tensor, D};

/// Additive value for masked attention scores: finite, so a row with every key masked
/// (a padding query) gives a uniform softmax instead of NaN.
const MASKED: f32 = -1e30;

/// RMSNorm: `x / √(mean(x²) + eps) · w`, or `· (1 + w)` for Gemma. Statistics in f32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// `plus_one`: Gemma stores `w` and multiplies by `1 + w`; folded in once here.
    pub fn new(weight: Tensor, eps: f64, plus_one: bool) -> Result<Self> {
        let weight = weight.to_dtype(DType::F32)?;
        let weight = if plus_one { (weight + 1.0)? } else { weight };
        Ok(Self { weight, eps })
    }

    /// The fused op ([`crate::kernels::rmsnorm`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !crate::kernels::enabled() {
            return self.forward_composed(x);
        }
        crate::kernels::rmsnorm::rms_norm(x, &self.weight, self.eps)
    }

    /// The same from composed candle ops (the reference).
    pub fn forward_composed(&self, x: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        y.broadcast_mul(&self.weight)?.to_dtype(dt)
    }
}

/// Rotary position embedding in HF's "rotate half" layout, with per-row positions and an
/// optional partial rotary dimension (Phi-3) and attention scaling (longrope).
#[derive(Debug, Clone)]
pub struct Rotary {
    /// `[rot_dim / 2]` inverse frequencies.
    inv_freq: Tensor,
    rot_dim: usize,
    scaling: f64,
}

impl Rotary {
    /// Standard inverse frequencies `1 / base^(2i / rot_dim)`, each divided by `div[i]`
    /// (linear scaling uses a constant factor, longrope a per-frequency one).
    pub fn new(
        base: f64,
        rot_dim: usize,
        div: Option<&[f64]>,
        scaling: f64,
        dev: &Device,
    ) -> Result<Self> {
        let half = rot_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| {
                let f = 1.0 / base.powf((2 * i) as f64 / rot_dim as f64);
                let d = div.map(|d| d[i]).unwrap_or(1.0);
                (f / d) as f32
            })
            .collect();
        Ok(Self {
            inv_freq: Tensor::from_vec(inv, half, dev)?,
            rot_dim,
            scaling,
        })
    }

    /// `(cos, sin)`, each `(B, 1, L, rot_dim)` f32, for positions `(B, L)` i64.
    pub fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = positions.to_dtype(DType::F32)?.unsqueeze(2)?; // (B, L, 1)
        let f = p.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?; // (B, L, rot/2)
        let emb = Tensor::cat(&[&f, &f], D::Minus1)?.unsqueeze(1)?; // (B, 1, L, rot)
        let cos = (emb.cos()? * self.scaling)?;
        let sin = (emb.sin()? * self.scaling)?;
        Ok((cos, sin))
    }

    /// Rotate the first `rot_dim` features of `x` `(B, H, L, D)` with the fused op
    /// ([`crate::kernels::rope`]).
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if !crate::kernels::enabled() {
            return self.apply_composed(x, cos, sin);
        }
        crate::kernels::rope::rope(x, cos, sin, self.rot_dim)
    }

    /// The same from composed candle ops (the reference).
    pub fn apply_composed(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let dt = x.dtype();
        let d = x.dim(D::Minus1)?;
        let xr = x.narrow(D::Minus1, 0, self.rot_dim)?.to_dtype(DType::F32)?;
        let half = self.rot_dim / 2;
        let x1 = xr.narrow(D::Minus1, 0, half)?;
        let x2 = xr.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let out = (xr.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?.to_dtype(dt)?;
        if self.rot_dim == d {
            Ok(out)
        } else {
            let pass = x.narrow(D::Minus1, self.rot_dim, d - self.rot_dim)?;
            Tensor::cat(&[&out, &pass], D::Minus1)
        }
    }
}

/// Additive attention mask `(B, 1, L, T)` f32 from query positions `(B, L)` and key
/// positions `(B, T)` (i64; negative = padding). A key is visible when it is not padding,
/// not in the future, and (with a sliding window) fewer than `window` positions back.
pub fn attention_mask(q_pos: &Tensor, k_pos: &Tensor, window: Option<usize>) -> Result<Tensor> {
    let q = q_pos.unsqueeze(2)?; // (B, L, 1)
    let k = k_pos.unsqueeze(1)?; // (B, 1, T)
    let not_pad = k.ge(0i64)?;
    let causal = k.broadcast_le(&q)?;
    let mut visible = causal.broadcast_mul(&not_pad)?;
    if let Some(w) = window {
        let near = q.broadcast_sub(&k)?.lt(w as i64)?;
        visible = visible.mul(&near)?;
    }
    let zeros = Tensor::zeros(visible.shape(), DType::F32, q_pos.device())?;
    let masked = Tensor::full(MASKED, visible.shape(), q_pos.device())?;
    visible.where_cond(&zeros, &masked)?.unsqueeze(1)
}

/// Which keys each query may see, for every layer of one forward: the query and key positions
/// (and a sliding window). The dense additive mask of [`attention_mask`] is built only when a
/// layer takes the composed path, once per forward.
#[derive(Debug)]
pub struct Visibility {
    q_pos: Tensor,
    k_pos: Tensor,
    window: Option<usize>,
    dense: std::sync::Mutex<Option<Tensor>>,
}

impl Visibility {
    pub fn new(q_pos: &Tensor, k_pos: &Tensor, window: Option<usize>) -> Self {
        Self {
            q_pos: q_pos.clone(),
            k_pos: k_pos.clone(),
            window,
            dense: std::sync::Mutex::new(None),
        }
    }

    /// The dense `(B, 1, L, T)` additive mask.
    pub fn mask(&self) -> Result<Tensor> {
        let mut d = self
            .dense
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention mask lock poisoned".into()))?;
        if let Some(m) = d.as_ref() {
            return Ok(m.clone());
        }
        let m = attention_mask(&self.q_pos, &self.k_pos, self.window)?;
        *d = Some(m.clone());
        Ok(m)
    }
}

/// Above this many bytes of f32 scores per call (`B·Hq·L·T·4`), CPU attention takes the fused
/// path, which never holds the score matrix; below it the composed path, whose GEMMs are
/// faster on the CPU (`bwb bench kernels --device cpu`: 0.47× at 1×32×256², docs/BENCHMARKS.md).
/// On a GPU the fused kernel is always used.
pub const CPU_FUSED_ATTENTION_BYTES: usize = 256 << 20;

/// Attention of q `(B, Hq, L, D)` over k/v `(B, Hkv, T, D)` with the visibility `vis`: the
/// fused kernel ([`crate::kernels::attention`]) on a GPU or for large score matrices, else
/// the composed [`attention`]. Rows of padding queries are unspecified (callers drop them).
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    vis: &Visibility,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let (b, hq, l, d) = q.dims4()?;
    let t = k.dim(2)?;
    let fused = crate::kernels::fused_attention_forced()
        || crate::kernels::enabled()
            && ((q.device().is_cuda() && d <= crate::kernels::attention::MAX_GPU_HEAD_DIM)
                || b * hq * l * t * 4 > CPU_FUSED_ATTENTION_BYTES);
    if fused {
        crate::kernels::attention::attention(
            q, k, v, &vis.q_pos, &vis.k_pos, vis.window, scale, softcap,
        )
    } else {
        attention(q, k, v, &vis.mask()?, scale, softcap)
    }
}

/// Differentiable softmax over the last dimension (candle's fused one has no backward).
/// K or V as a matmul operand: the CPU GEMM reads a KV-cache view (rows `capacity` apart per
/// head, [`crate::kernels::attention::kv_span`]) as it is; anything else, and every other
/// device, gets a contiguous copy.
fn kv_operand(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && crate::kernels::attention::kv_span(x.layout()).is_some() {
        Ok(x.clone())
    } else {
        x.contiguous()
    }
}

pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Scaled dot-product attention with grouped KV heads, without copying K/V per query head:
/// q `(B, Hq, L, D)`, k/v `(B, Hkv, T, D)`, mask `(B, 1, L, T)` → `(B, Hq, L, D)`.
/// Scores, mask and softmax in f32.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let (b, hq, l, d) = q.dims4()?;
    let (_, hkv, t, _) = k.dims4()?;
    let rep = hq / hkv;
    let dt = q.dtype();
    // 1. (B, Hq, L, D) -> (B, Hkv, rep·L, D): query heads of one KV group are adjacent.
    let qg = q.contiguous()?.reshape((b, hkv, rep * l, d))?;
    // 2. scores (B, Hkv, rep, L, T) in f32
    let s = qg
        .matmul(&kv_operand(k)?.t()?)?
        .to_dtype(DType::F32)?
        .affine(scale, 0.0)?;
    let s = match softcap {
        Some(c) => ((s / c)?.tanh()? * c)?,
        None => s,
    };
    let s = s
        .reshape((b, hkv, rep, l, t))?
        .broadcast_add(&mask.unsqueeze(1)?)?;
    let p = softmax(&s)?.reshape((b, hkv, rep * l, t))?.to_dtype(dt)?;
    // 3. (B, Hkv, rep·L, D) -> (B, Hq, L, D)
    p.matmul(&kv_operand(v)?)?.reshape((b, hq, l, d))
}
