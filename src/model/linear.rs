//! The one linear-layer type every model file uses: a frozen base weight (dense f32/bf16/f16,
//! or 4-bit) plus an optional LoRA adapter with PEFT semantics. When serving, one forward can
//! also carry several adapters for the rows of a mixed batch ([`ForwardCtx::loras`]): the base
//! product runs once for every row, then each adapter's delta is gathered, computed and added
//! back for its own rows only.
//!
//! Why not `candle_core::quantized::QMatMul` alone: its forward is recorded with
//! `apply_op1_no_bwd`, so no gradient reaches the layer's input and every LoRA adapter below
//! the last quantised layer silently stops learning. Here the frozen product is computed
//! without a graph and then passed through [`FrozenGrad`], an identity `CustomOp2` whose
//! backward returns `grad_y · W` for the input (dequantising W only for that product, one
//! layer at a time) and nothing for W. The same path serves dense bases, so the backward
//! never computes the (wasted) weight gradient that candle's `matmul` backward would.
//!
//! # 4-bit format
//!
//! We store 4-bit bases in ggml's block formats (`Q4_0`, `Q4_1`, `Q4_K`) rather than NF4:
//! candle has fast CPU and CUDA kernels for them (no dequantise-then-matmul in inference),
//! GGUF checkpoints load without re-quantising, and the quantised base can be cached on disk
//! as a GGUF file. Measured reconstruction error (relative RMS error ‖W−Ŵ‖/‖W‖ on a 1024×4096
//! Gaussian matrix, `tests/it/linear.rs::quant_reconstruction_error`; bits per weight incl.
//! scales): NF4 (QLoRA, block 64, f32 absmax, no double quant; 4.5 bpw) 0.092, Q4_0 (4.5 bpw)
//! 0.086, Q4_1 (5.0 bpw) 0.078, Q4_K (4.5 bpw) 0.075. Q4_K beats NF4 at the same size, so
//! it is the default; it needs the input dimension to be a multiple of 256 (true for Qwen3-8B,
//! Gemma-3-4B and Phi-4-mini), and layers whose input dimension is not fall back to Q4_0,
//! the other format with SIMD kernels on x86 CPUs (candle's Q4_1 dot product is scalar and
//! was 70 % of SmolLM2's decode time).
//!
//! Inference uses ggml's kernels, which round activations to 8 bits; training (`ctx.train`)
//! multiplies by the dequantised weight instead, so the backward is the exact gradient of
//! what the forward computed. The end-to-end bound against the dense model is stated and
//! tested in `tests/it/model_reference.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, Var};

/// A 4-bit (or other ggml) storage format for frozen base weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    Q4_0,
    Q4_1,
    Q4K,
}

impl QuantFormat {
    pub const NAMES: &'static str = "none, q4k, q4_0, q4_1";

    /// Parse a `--quant` value; `none` is `Ok(None)`.
    pub fn parse(s: &str) -> std::result::Result<Option<Self>, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(None),
            "q4k" | "q4_k" => Ok(Some(Self::Q4K)),
            "q4_0" => Ok(Some(Self::Q4_0)),
            "q4_1" => Ok(Some(Self::Q4_1)),
            other => Err(format!(
                "unknown quantisation `{other}`; valid: {}",
                Self::NAMES
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q4K => "q4k",
        }
    }

    /// The ggml type used for a weight with `in_features` columns.
    pub fn ggml_dtype(self, in_features: usize) -> GgmlDType {
        match self {
            Self::Q4K if in_features.is_multiple_of(256) => GgmlDType::Q4K,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q4K | Self::Q4_0 => GgmlDType::Q4_0,
        }
    }
}

/// The frozen base weight, `[out, in]`.
#[derive(Debug, Clone)]
pub enum FrozenWeight {
    Dense(Tensor),
    Quant { q: Arc<QTensor>, mm: QMatMul },
}

impl FrozenWeight {
    pub fn quantized(q: QTensor) -> Result<Self> {
        Self::quantized_arc(Arc::new(q))
    }

    pub fn quantized_arc(q: Arc<QTensor>) -> Result<Self> {
        let mm = QMatMul::from_arc(q.clone())?;
        Ok(Self::Quant { q, mm })
    }

    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(w) => w.dims2(),
            Self::Quant { q, .. } => q.shape().dims2(),
        }
    }

    /// The weight as a dense tensor of `dtype` (dequantised for 4-bit bases).
    pub fn dense(&self, dtype: DType) -> Result<Tensor> {
        match self {
            Self::Dense(w) => w.to_dtype(dtype),
            Self::Quant { q, .. } => dequantize(q, dtype),
        }
    }

    /// `x · Wᵀ` with no autograd graph. `exact`: dequantise a 4-bit weight and multiply in
    /// the activations' dtype (training, so the backward is the true gradient of what the
    /// forward computed); otherwise ggml's kernels, which round activations to 8 bits.
    fn forward_nograd(&self, x: &Tensor, exact: bool) -> Result<Tensor> {
        let x = x.detach();
        match self {
            // Many rows (prefill, training): dequantising once and using the dense GEMM beats
            // ggml's row-by-row dot products on the CPU (SmolLM2 prefill, docs/BENCHMARKS.md).
            Self::Quant { q, .. }
                if exact || x.elem_count() / x.dim(candle_core::D::Minus1)? >= DEQUANT_ROWS =>
            {
                matmul_t(&x, &dequantize(q, x.dtype())?)
            }
            Self::Dense(w) => {
                let w = if w.dtype() == x.dtype() {
                    w.clone()
                } else {
                    w.to_dtype(x.dtype())?
                };
                matmul_t(&x, &w)
            }
            Self::Quant { mm, .. } => {
                // candle's quantised matmul takes f32 activations.
                let dt = x.dtype();
                mm.forward(&x.to_dtype(DType::F32)?)?.to_dtype(dt)
            }
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Self::Quant { q, .. } => q.storage_size_in_bytes(),
        }
    }
}

/// A 4-bit weight as a dense tensor of `dtype`: straight from the blocks with the fused
/// kernel (no f32 copy on the GPU), or candle's f32 dequantisation + cast with
/// `BWB_KERNELS=off`.
fn dequantize(q: &QTensor, dtype: DType) -> Result<Tensor> {
    if crate::kernels::enabled() {
        crate::kernels::dequant::dequantize(q, dtype)
    } else {
        q.dequantize(&q.device())?.to_dtype(dtype)
    }
}

/// From this many activation rows on, a 4-bit product dequantises the weight and runs the
/// dense GEMM instead of ggml's quantised dot products.
const DEQUANT_ROWS: usize = 16;

/// `x · wᵀ` for x of any rank ≥ 2 and w `[out, in]`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let last = dims[dims.len() - 1];
    let lead: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((lead, last))?.matmul(&w.t()?)?;
    let mut out = dims.to_vec();
    let n = out.len();
    out[n - 1] = w.dim(0)?;
    y.reshape(out)
}

/// Identity on its second argument (the frozen product `y = x·Wᵀ`, computed without a graph);
/// its backward sends `grad_y · W` to the first argument `x`.
struct FrozenGrad(FrozenWeight);

fn clone_whole(layout: &Layout, elems: usize) -> Result<()> {
    match layout.contiguous_offsets() {
        Some((0, end)) if end == elems => Ok(()),
        _ => candle_core::bail!("frozen-grad: expected a fresh contiguous product"),
    }
}

impl CustomOp2 for FrozenGrad {
    fn name(&self) -> &'static str {
        "frozen-linear-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        clone_whole(l2, l2.shape().elem_count())?;
        Ok((s2.try_clone(l2)?, l2.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        clone_whole(l2, l2.shape().elem_count())?;
        Ok((s2.try_clone(l2)?, l2.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Dequantised only for this product and dropped right after: one layer at a time.
        let w = self.0.dense(grad.dtype())?;
        let dims = grad.dims();
        let lead: usize = dims[..dims.len() - 1].iter().product();
        let gx = grad
            .reshape((lead, dims[dims.len() - 1]))?
            .matmul(&w)?
            .reshape(x.shape())?
            .to_dtype(x.dtype())?;
        Ok((Some(gx), None))
    }
}

/// LoRA with PEFT semantics: `y += scale · dropout(x) · Aᵀ · Bᵀ`, A `[r, in]`, B `[out, r]`,
/// `scale = alpha / r` (or `alpha / √r` with rsLoRA). A and B are f32 master weights.
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub dropout: f32,
}

/// A LoRA adapter attached at serve time beside others on one base model: (A, B) by layer
/// ([`QLinear::index`]), in the compute dtype; PEFT's scale, no dropout (inference only).
#[derive(Debug, Clone)]
pub struct ServedLora {
    pub scale: f64,
    pub layers: HashMap<usize, (Tensor, Tensor)>,
}

/// The rows of a mixed batch that one served adapter applies to.
#[derive(Debug, Clone)]
pub struct LoraRows<'a> {
    pub lora: &'a ServedLora,
    /// Row indices along the batch dimension (u32, on the model's device); None: every row.
    pub rows: Option<Tensor>,
}

/// Per-forward switches: training turns on LoRA dropout, whose masks come from `seed` and
/// each layer's index so a resumed run draws the same masks. `loras` gives the rows of a
/// mixed-adapter batch their own adapters (serving); rows in no group get no served delta.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardCtx<'a> {
    pub train: bool,
    pub seed: u64,
    pub loras: &'a [LoraRows<'a>],
}

/// The one linear-layer type: frozen base (+ optional bias) + optional LoRA.
#[derive(Debug, Clone)]
pub struct QLinear {
    pub base: FrozenWeight,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
    /// Unique per layer within a model; mixes into the dropout seed.
    pub index: usize,
}

impl QLinear {
    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let mut y = self.base.forward_nograd(x, ctx.train)?;
        if x.track_op() {
            // Training: route the gradient to x through the frozen weight.
            y = x.apply_op2(&y, FrozenGrad(self.base.clone()))?;
        }
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(y.dtype())?)?;
        }
        if let Some(l) = &self.lora {
            y = (y + self.lora_delta(l, x, ctx)?)?;
        }
        // Mixed batch: one base product above for every row, then each adapter's delta on
        // its own rows only.
        for g in ctx.loras {
            let Some((a, b)) = g.lora.layers.get(&self.index) else {
                continue;
            };
            y = match &g.rows {
                None => (y + lora_product(x, a, b, g.lora.scale)?)?,
                Some(idx) => {
                    let d = lora_product(&x.index_select(idx, 0)?, a, b, g.lora.scale)?;
                    y.index_add(idx, &d, 0)?
                }
            };
        }
        Ok(y)
    }

    fn lora_delta(&self, l: &Lora, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let mut h = x.clone();
        if ctx.train && l.dropout > 0.0 {
            h = dropout(&h, l.dropout, ctx.seed, self.index)?;
        }
        lora_product(&h, l.a.as_tensor(), l.b.as_tensor(), l.scale)
    }

    pub fn in_features(&self) -> Result<usize> {
        Ok(self.base.dims()?.1)
    }

    pub fn out_features(&self) -> Result<usize> {
        Ok(self.base.dims()?.0)
    }
}

/// `scale · h · Aᵀ · Bᵀ` in h's dtype.
fn lora_product(h: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let dt = h.dtype();
    matmul_t(&matmul_t(h, &a.to_dtype(dt)?)?, &b.to_dtype(dt)?)? * scale
}

/// Inverted dropout with a mask drawn from `(seed, index)`, so it is reproducible on resume.
fn dropout(x: &Tensor, p: f32, seed: u64, index: usize) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn randn(seed: u64, shape: &[usize]) -> Tensor {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let d = rand_distr::Normal::new(0.0f32, 0.5).unwrap();
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| d.sample(&mut rng)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn served(seed: u64, r: usize, scale: f64) -> ServedLora {
        let layers = HashMap::from([(7, (randn(seed, &[r, 16]), randn(seed + 1, &[12, r])))]);
        ServedLora { scale, layers }
    }

    #[test]
    fn a_mixed_row_lora_forward_equals_each_row_with_its_own_adapter() {
        let layer = QLinear {
            base: FrozenWeight::Dense(randn(1, &[12, 16])),
            bias: Some(randn(2, &[12])),
            lora: None,
            index: 7,
        };
        let (a, b) = (served(10, 4, 2.0), served(20, 2, 0.5));
        let x = randn(3, &[5, 3, 16]);
        // Rows 0 and 3 use adapter a, 2 and 4 use b, row 1 is the base model.
        let which = [Some(&a), None, Some(&b), Some(&a), Some(&b)];
        let idx = |rows: &[u32]| Some(Tensor::new(rows, &Device::Cpu).unwrap());
        let groups = [
            LoraRows {
                lora: &a,
                rows: idx(&[0, 3]),
            },
            LoraRows {
                lora: &b,
                rows: idx(&[2, 4]),
            },
        ];
        let ctx = ForwardCtx {
            loras: &groups,
            ..Default::default()
        };
        let mixed = layer.forward(&x, &ctx).unwrap();
        for (i, lora) in which.iter().enumerate() {
            let row = x.narrow(0, i, 1).unwrap();
            let alone = match lora {
                Some(l) => {
                    let g = [LoraRows {
                        lora: l,
                        rows: None,
                    }];
                    layer.forward(
                        &row,
                        &ForwardCtx {
                            loras: &g,
                            ..Default::default()
                        },
                    )
                }
                None => layer.forward(&row, &ForwardCtx::default()),
            }
            .unwrap();
            let got = mixed.narrow(0, i, 1).unwrap();
            let diff = (got - &alone).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "row {i}");
            // The single-adapter (training) path gives the same row.
            if let Some(l) = lora {
                let (la, lb) = &l.layers[&7];
                let single = QLinear {
                    lora: Some(Lora {
                        a: Var::from_tensor(la).unwrap(),
                        b: Var::from_tensor(lb).unwrap(),
                        scale: l.scale,
                        dropout: 0.0,
                    }),
                    ..layer.clone()
                };
                let want = single.forward(&row, &ForwardCtx::default()).unwrap();
                let d = (alone - want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "row {i}");
            }
        }
        // The adapters change their rows.
        let base = layer.forward(&x, &ForwardCtx::default()).unwrap();
        let d = (mixed - base)
            .unwrap()
            .abs()
            .unwrap()
            .sum(2)
            .unwrap()
            .sum(1)
            .unwrap();
        let d = d.to_vec1::<f32>().unwrap();
        assert!(d[0] > 0.1 && d[1] == 0.0 && d[2] > 0.1, "{d:?}");
    }
}
