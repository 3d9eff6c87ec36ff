//! Fused attention over positions: causal, padding (negative positions), sliding window,
//! soft-cap and grouped KV heads, without materialising the `L × T` score matrix. The forward
//! is an online softmax over key tiles (running max and sum per query row) that also keeps the
//! per-row log-sum-exp; the backward recomputes the probabilities `p` from it, with
//! `Δ = Σ_j p_j dO·v_j` (what `dO·O` is before O's rounding to bf16/f16, so half-precision
//! gradients are not degraded by it) and `dS = p(dO·v − Δ)`, times `1 − (s/c)²` under a
//! soft-cap. Training keeps q, k, v and one f32 per query row, where the composed ops kept the
//! f32 scores, the masked scores, the softmax and its intermediates (`B·Hq·L·T` each).
//!
//! Query rows with no visible key (padding queries) give zeros here; the composed ops give a
//! uniform average there. Callers discard those rows.
//!
//! On a GPU, bf16/f16 inputs with head dimension 64/128/256 run the forward on tensor cores
//! (kernels/attention_tc.cu, WMMA; the backward too for 64/128), everything else the CUDA-core
//! kernels of kernels/attention.cu; [`tensor_core_forward`] / [`tensor_core_backward`] decide.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, Var};
use rayon::prelude::*;

use super::check::{compare, randn, tol, Check};
use super::{cpu_f32, cpu_from_f32, to_f32_vec};

/// Largest head dimension the CUDA kernels take (8 values per lane).
pub const MAX_GPU_HEAD_DIM: usize = 256;

/// Attention of q `(B, Hq, L, D)` over k, v `(B, Hkv, T, D)` (f32, bf16 or f16, all the same;
/// `Hq` a multiple of `Hkv`, query head `h` reading KV head `h / (Hq / Hkv)`) at query
/// positions `(B, L)` and key positions `(B, T)` (i64, negative = padding). Key `j` is visible
/// to query `i` when `0 <= k_pos[j] <= q_pos[i]` and, with a window `w`,
/// `q_pos[i] − k_pos[j] < w`. Scores `scale · q·k` (soft-capped to `c·tanh(s/c)` with
/// `softcap = Some(c)`), softmax over the visible keys, in f32. Output `(B, Hq, L, D)` in q's
/// dtype; differentiable in q, k and v.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_pos: &Tensor,
    k_pos: &Tensor,
    window: Option<usize>,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let (b, hq, l, d) = q.dims4()?;
    let (bk, hkv, t, dk) = k.dims4()?;
    if k.dims() != v.dims() || bk != b || dk != d {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not match",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if hkv == 0 || hq % hkv != 0 {
        candle_core::bail!("attention: {hq} query heads are not a multiple of {hkv} KV heads");
    }
    let dt = q.dtype();
    if k.dtype() != dt || v.dtype() != dt || !matches!(dt, DType::F32 | DType::BF16 | DType::F16) {
        candle_core::bail!(
            "attention: q, k, v must share one dtype of f32, bf16, f16; got {:?}, {:?}, {:?}",
            dt,
            k.dtype(),
            v.dtype()
        );
    }
    if q_pos.dims() != [b, l] || k_pos.dims() != [b, t] {
        candle_core::bail!(
            "attention: positions {:?} / {:?}, expected [{b}, {l}] / [{b}, {t}]",
            q_pos.dims(),
            k_pos.dims()
        );
    }
    if let Some(c) = softcap {
        if c.is_nan() || c <= 0.0 {
            candle_core::bail!("attention: softcap must be positive, got {c}");
        }
    }
    if q.device().is_cuda() && d > MAX_GPU_HEAD_DIM {
        candle_core::bail!("attention: head dim {d} > {MAX_GPU_HEAD_DIM} on the GPU");
    }
    if q.device().is_cuda() && (hq > 65_535 || b > 65_535) {
        candle_core::bail!(
            "attention: {b} rows × {hq} query heads exceed the GPU grid (65 535 each)"
        );
    }
    if b == 0 || l == 0 || t == 0 || d == 0 || hq == 0 {
        // No key anywhere: every row is a padding row.
        return Tensor::zeros(q.shape(), dt, q.device());
    }
    let dev = q.device();
    let pos = |p: &Tensor| p.to_dtype(DType::I64)?.to_device(dev)?.contiguous();
    let op = AttentionOp {
        q_pos: pos(q_pos)?,
        k_pos: pos(k_pos)?,
        dims: Dims {
            b,
            hq,
            hkv,
            l,
            t,
            d,
        },
        params: Params {
            scale: scale as f32,
            softcap: softcap.map(|c| c as f32),
            window: window.map_or(-1, |w| i64::try_from(w).unwrap_or(i64::MAX)),
        },
        lse: Mutex::new(None),
    };
    // A GPU reads K/V straight from a preallocated KV cache (rows `kv_cap` apart per head);
    // everything else takes contiguous tensors.
    let (k, v) = if dev.is_cuda() && kv_span(k.layout()).is_some() && kv_span(v.layout()).is_some()
    {
        (k.clone(), v.clone())
    } else {
        (k.contiguous()?, v.contiguous()?)
    };
    q.contiguous()?.apply_op3(&k, &v, op)
}

/// `(start, end, kv_cap)` of a `(B, H, T, D)` K or V whose rows of one `(b, h)` are the first
/// `T` of `kv_cap ≥ T` contiguous rows (a contiguous tensor: `kv_cap = T`; the first `T` slots
/// of a preallocated `(B, H, kv_cap, D)` cache: its `narrow(2, 0, T)`); `None` otherwise.
pub fn kv_span(l: &Layout) -> Option<(usize, usize, usize)> {
    let (dims, st) = (l.dims(), l.stride());
    let [b, h, t, d] = dims else { return None };
    let (b, h, t, d) = (*b, *h, *t, *d);
    if b * h * t * d == 0 {
        return None;
    }
    let cap = if l.is_contiguous() {
        t
    } else {
        if st[3] != 1 || st[2] != d || st[1] % d != 0 {
            return None;
        }
        let cap = st[1] / d;
        if cap < t || (b > 1 && st[0] != h * cap * d) {
            return None;
        }
        cap
    };
    let start = l.start_offset();
    Some((start, start + (b * h - 1) * cap * d + t * d, cap))
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    hq: usize,
    hkv: usize,
    l: usize,
    t: usize,
    d: usize,
}

impl Dims {
    /// `(hq, hkv, L, T, D)` as the kernels' `int` arguments.
    #[cfg(feature = "cuda")]
    fn kernel_args(&self) -> (i32, i32, i32, i32, i32) {
        (
            self.hq as i32,
            self.hkv as i32,
            self.l as i32,
            self.t as i32,
            self.d as i32,
        )
    }

    /// Query heads per KV head.
    fn rep(&self) -> usize {
        self.hq / self.hkv
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    scale: f32,
    softcap: Option<f32>,
    /// Sliding window; negative = none.
    window: i64,
}

impl Params {
    fn visible(&self, qp: i64, kp: i64) -> bool {
        kp >= 0 && kp <= qp && (self.window < 0 || qp - kp < self.window)
    }

    fn cap(&self, s: f32) -> f32 {
        match self.softcap {
            Some(c) => c * (s / c).tanh(),
            None => s,
        }
    }
}

struct AttentionOp {
    q_pos: Tensor,
    k_pos: Tensor,
    dims: Dims,
    params: Params,
    /// `(B, Hq, L)` f32 log-sum-exp of each query row's scores (−∞ for rows with no visible
    /// key), set by the forward for the backward.
    lse: Mutex<Option<Tensor>>,
}

impl AttentionOp {
    fn set_lse(&self, lse: Tensor) -> Result<()> {
        *self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: lse lock poisoned".into()))? =
            Some(lse);
        Ok(())
    }
}

fn pos_vec(p: &Tensor) -> Result<Vec<i64>> {
    p.flatten_all()?.to_vec1::<i64>()
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "bwb-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = cpu_f32(s1, l1, "attention")?;
        let k = cpu_f32(s2, l2, "attention")?;
        let v = cpu_f32(s3, l3, "attention")?;
        let (qp, kp) = (pos_vec(&self.q_pos)?, pos_vec(&self.k_pos)?);
        let (out, lse) = cpu_forward(&q, &k, &v, &qp, &kp, &self.dims, &self.params);
        let dm = &self.dims;
        self.set_lse(Tensor::from_vec(lse, (dm.b, dm.hq, dm.l), &Device::Cpu)?)?;
        Ok((cpu_from_f32(out, s1.dtype())?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (out, lse) = cuda::forward(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            &self.q_pos,
            &self.k_pos,
            &self.dims,
            &self.params,
        )?;
        self.set_lse(lse)?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lse = self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: lse lock poisoned".into()))?
            .clone();
        let Some(lse) = lse else {
            candle_core::bail!("attention: backward before forward");
        };
        let (dq, dk, dv) = backward(
            [q, k, v, res],
            grad,
            &lse,
            &self.q_pos,
            &self.k_pos,
            &self.dims,
            &self.params,
        )?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// `(dq, dk, dv)` for upstream gradient `g` of the output `o` (the tensor-core backward
/// computes Δ from it).
#[allow(clippy::too_many_arguments)]
fn backward(
    [q, k, v, o]: [&Tensor; 4],
    g: &Tensor,
    lse: &Tensor,
    q_pos: &Tensor,
    k_pos: &Tensor,
    dm: &Dims,
    pr: &Params,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dt = q.dtype();
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let g = g.to_dtype(dt)?.contiguous()?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = q.device() {
        let o = o.to_dtype(dt)?.contiguous()?;
        return cuda::backward(
            dev,
            [&q, &k, &v, &o, &g],
            &lse.contiguous()?,
            q_pos,
            k_pos,
            dm,
            pr,
        );
    }
    #[cfg(not(feature = "cuda"))]
    let _ = o;
    let (qs, ks, vs) = (to_f32_vec(&q)?, to_f32_vec(&k)?, to_f32_vec(&v)?);
    let (gs, ls) = (to_f32_vec(&g)?, to_f32_vec(lse)?);
    let (qp, kp) = (pos_vec(q_pos)?, pos_vec(k_pos)?);
    let (dq, dk, dv) = cpu_backward([&qs, &ks, &vs, &gs], &ls, &qp, &kp, dm, pr);
    let dev = q.device();
    Ok((
        Tensor::from_vec(dq, q.shape(), dev)?.to_dtype(dt)?,
        Tensor::from_vec(dk, k.shape(), dev)?.to_dtype(dt)?,
        Tensor::from_vec(dv, v.shape(), dev)?.to_dtype(dt)?,
    ))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Query rows per parallel task and keys per online-softmax tile (CPU).
const CPU_ROWS: usize = 16;
const CPU_TILE: usize = 64;

/// Output `(B, Hq, L, D)` and log-sum-exp `(B, Hq, L)`, f32.
fn cpu_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    qp: &[i64],
    kp: &[i64],
    dm: &Dims,
    pr: &Params,
) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        hq, hkv, l, t, d, ..
    } = *dm;
    let rep = dm.rep();
    let rows = dm.b * hq * l;
    let mut out = vec![0f32; rows * d];
    let mut lse = vec![f32::NEG_INFINITY; rows];
    out.par_chunks_mut(CPU_ROWS * d)
        .zip(lse.par_chunks_mut(CPU_ROWS))
        .enumerate()
        .for_each(|(c, (o, ls))| {
            for (n, (orow, lrow)) in o.chunks_mut(d).zip(ls.iter_mut()).enumerate() {
                let row = c * CPU_ROWS + n;
                let (bh, i) = (row / l, row % l);
                let (b, h) = (bh / hq, bh % hq);
                let kv = (b * hkv + h / rep) * t * d..(b * hkv + h / rep + 1) * t * d;
                *lrow = forward_row(
                    &q[row * d..(row + 1) * d],
                    &k[kv.clone()],
                    &v[kv],
                    qp[b * l + i],
                    &kp[b * t..(b + 1) * t],
                    pr,
                    orow,
                );
            }
        });
    (out, lse)
}

/// One query row: online softmax over tiles of `CPU_TILE` keys; writes `o`, returns the lse.
fn forward_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    qp: i64,
    kp: &[i64],
    pr: &Params,
    o: &mut [f32],
) -> f32 {
    let d = q.len();
    let mut s = [0f32; CPU_TILE];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
    o.fill(0.0);
    for t0 in (0..kp.len()).step_by(CPU_TILE) {
        let n = CPU_TILE.min(kp.len() - t0);
        let mut mt = f32::NEG_INFINITY;
        for (jj, s) in s[..n].iter_mut().enumerate() {
            let j = t0 + jj;
            *s = if pr.visible(qp, kp[j]) {
                pr.cap(pr.scale * dot(q, &k[j * d..(j + 1) * d]))
            } else {
                f32::NEG_INFINITY
            };
            mt = mt.max(*s);
        }
        if mt == f32::NEG_INFINITY {
            continue;
        }
        let mn = m.max(mt);
        let alpha = (m - mn).exp();
        l *= alpha;
        o.iter_mut().for_each(|x| *x *= alpha);
        for (jj, &sj) in s[..n].iter().enumerate() {
            if sj != f32::NEG_INFINITY {
                let p = (sj - mn).exp();
                l += p;
                let j = t0 + jj;
                axpy(o, p, &v[j * d..(j + 1) * d]);
            }
        }
        m = mn;
    }
    if l > 0.0 {
        o.iter_mut().for_each(|x| *x /= l);
        m + l.ln()
    } else {
        f32::NEG_INFINITY
    }
}

/// `(dq, dk, dv)` in f32 from `[q, k, v, dO]`, parallel over (batch, KV head): each task
/// owns the dq rows of its query heads and the dk/dv rows of its KV head.
fn cpu_backward(
    [q, k, v, g]: [&[f32]; 4],
    lse: &[f32],
    qp: &[i64],
    kp: &[i64],
    dm: &Dims,
    pr: &Params,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims { hkv, l, t, d, .. } = *dm;
    let rep = dm.rep();
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; k.len()];
    let mut dv = vec![0f32; v.len()];
    dq.par_chunks_mut(rep * l * d)
        .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
        .enumerate()
        .for_each(|(bg, (dqg, (dkg, dvg)))| {
            let b = bg / hkv;
            let kg = &k[bg * t * d..(bg + 1) * t * d];
            let vg = &v[bg * t * d..(bg + 1) * t * d];
            let kpb = &kp[b * t..(b + 1) * t];
            // The group's query rows (b, g·rep + hh, i) are contiguous from row bg·rep·L.
            for r in 0..rep * l {
                let row = bg * rep * l + r;
                let lse_r = lse[row];
                if !lse_r.is_finite() {
                    continue; // no visible key
                }
                let qpi = qp[b * l + r % l];
                let qr = &q[row * d..(row + 1) * d];
                let gr = &g[row * d..(row + 1) * d];
                // (p_j, dO·v_j) of key j, recomputed from the lse.
                let p_dp = |j: usize| {
                    let sc = pr.cap(pr.scale * dot(qr, &kg[j * d..(j + 1) * d]));
                    (sc, (sc - lse_r).exp(), dot(gr, &vg[j * d..(j + 1) * d]))
                };
                let visible = |j: &usize| pr.visible(qpi, kpb[*j]);
                // Δ = Σ_j p_j dO·v_j (= dO·O before O's rounding to the input dtype).
                let delta: f32 = (0..t)
                    .filter(visible)
                    .map(|j| {
                        let (_, p, dp) = p_dp(j);
                        p * dp
                    })
                    .sum();
                let dqr = &mut dqg[r * d..(r + 1) * d];
                for j in (0..t).filter(visible) {
                    let kj = &kg[j * d..(j + 1) * d];
                    let (sc, p, dp) = p_dp(j);
                    let mut ds = p * (dp - delta);
                    if let Some(c) = pr.softcap {
                        let x = sc / c;
                        ds *= 1.0 - x * x;
                    }
                    axpy(dqr, pr.scale * ds, kj);
                    axpy(&mut dkg[j * d..(j + 1) * d], pr.scale * ds, qr);
                    axpy(&mut dvg[j * d..(j + 1) * d], p, gr);
                }
            }
        });
    (dq, dk, dv)
}

/// Keys (or query rows) per shared-memory tile; `ATTN_TK` in kernels/attention.cu.
const TK: usize = 16;
/// Dynamic shared memory per block: under the 48 KiB available without opting in, leaving room
/// for the kernels' small static arrays.
const SMEM_LIMIT: usize = 46 * 1024;

/// The CUDA launch for `n` rows (queries: `attn_fwd`, `attn_bwd_dq`; keys: `attn_bwd_dkdv`) of
/// each of `hkv` KV heads and `b` batch rows, head dimension `d`: blocks of up to 8 warps, one
/// row per warp, with two staged `TK × (d + 2)` f32 tiles plus `per_warp` f32 rows of `d` per
/// warp (1 forward, 2 backward) in dynamic shared memory.
pub fn launch_shape(
    n: usize,
    d: usize,
    hkv: usize,
    b: usize,
    per_warp: usize,
) -> crate::kernels::Launch {
    let tiles = 2 * TK * (d + 2) * 4;
    let mut nw = 8;
    while nw > 1 && tiles + nw * per_warp * d * 4 > SMEM_LIMIT {
        nw /= 2;
    }
    crate::kernels::Launch {
        grid: [n.div_ceil(nw) as u32, hkv as u32, b as u32],
        block: [32 * nw as u32, 1, 1],
        smem: (tiles + nw * per_warp * d * 4) as u32,
    }
}

/// Query rows per block of the tensor-core forward (`attn_fwd_tc_*`, 4 warps of 16 rows).
const TC_ROWS: usize = 64;
/// Keys per tile of the tensor-core forward; `TC_TK` in kernels/attention_tc.cu.
const TC_TK: usize = 32;

/// The CUDA launch of the tensor-core forward for `l` query rows of each of `hq` heads and `b`
/// batch rows, head dimension `d` (64, 128 or 256): K and V tiles of `TC_TK × d` in the input
/// dtype (2 bytes) plus 3328 bytes per warp (scores, probabilities, row statistics).
pub fn launch_shape_tc(l: usize, d: usize, hq: usize, b: usize) -> crate::kernels::Launch {
    crate::kernels::Launch {
        grid: [l.div_ceil(TC_ROWS) as u32, hq as u32, b as u32],
        block: [32 * (TC_ROWS / 16) as u32, 1, 1],
        smem: (2 * TC_TK * d * 2 + (TC_ROWS / 16) * 3328) as u32,
    }
}

thread_local! {
    static NO_TENSOR_CORES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with the CUDA attention forward on this thread kept on the CUDA-core kernel
/// (`bwb bench kernels` times both).
pub fn without_tensor_cores<R>(f: impl FnOnce() -> R) -> R {
    let before = NO_TENSOR_CORES.with(|c| c.replace(true));
    let out = f();
    NO_TENSOR_CORES.with(|c| c.set(before));
    out
}

/// The CUDA launch of the tensor-core backward kernels for `n` rows (queries: `attn_bwd_dq_tc_*`
/// over `heads` = Hq; keys: `attn_bwd_dkdv_tc_*` over `heads` = Hkv) of `b` batch rows, head
/// dimension `d` (64 or 128): two `TC_TK × d` tiles in the input dtype plus 6272 bytes per warp.
pub fn launch_shape_tc_bwd(n: usize, d: usize, heads: usize, b: usize) -> crate::kernels::Launch {
    crate::kernels::Launch {
        grid: [n.div_ceil(TC_ROWS) as u32, heads as u32, b as u32],
        block: [32 * (TC_ROWS / 16) as u32, 1, 1],
        smem: (2 * TC_TK * d * 2 + (TC_ROWS / 16) * 6272) as u32,
    }
}

/// Whether the CUDA backward runs on tensor cores (`attn_bwd_*_tc_*`): as
/// [`tensor_core_forward`], for head dimensions 64 and 128.
pub fn tensor_core_backward(dtype: DType, d: usize) -> bool {
    tensor_core_forward(dtype, d) && d <= 128
}

/// Whether the CUDA forward runs on tensor cores (`attn_fwd_tc_*`): bf16/f16 inputs, head
/// dimension 64, 128 or 256, a build for compute capability 8.0 or newer, and
/// `BWB_ATTENTION_TC` not `off` ([`super::KernelSwitches`]; then the CUDA-core kernel
/// `attn_fwd` runs, e.g. for A/B runs).
pub fn tensor_core_forward(dtype: DType, d: usize) -> bool {
    if NO_TENSOR_CORES.with(|c| c.get()) {
        return false;
    }
    let cap_ok = option_env!("BWB_CUDA_COMPUTE_CAP")
        .and_then(|c| c.parse::<u32>().ok())
        .is_some_and(|c| c >= 80);
    let on = cap_ok && super::attention_tensor_cores();
    on && matches!(dtype, DType::BF16 | DType::F16) && matches!(d, 64 | 128 | 256)
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
    use candle_core::{Layout, Result, Storage, Tensor};

    use super::{Dims, Params};
    use crate::kernels::contiguous;
    use crate::kernels::cuda::{by_float_dtype, func, tensor, ATTENTION, ATTENTION_TC};

    fn cfg(n: usize, dm: &Dims, per_warp: usize) -> LaunchConfig {
        crate::kernels::cuda::config(super::launch_shape(n, dm.d, dm.hkv, dm.b, per_warp))
    }

    fn view<'a, T: CudaDType>(s: &'a Storage, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
        let Storage::Cuda(s) = s else {
            candle_core::bail!("attention: {what} must be on the GPU");
        };
        let (a, b) = contiguous(l, "attention")?;
        Ok(s.as_cuda_slice::<T>()?.slice(a..b))
    }

    fn slice<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
        let (a, b) = contiguous(l, "attention")?;
        Ok(s.as_cuda_slice::<T>()?.slice(a..b))
    }

    fn softcap_arg(pr: &Params) -> f32 {
        pr.softcap.unwrap_or(0.0)
    }

    fn launch_fwd<T: CudaDType + DeviceRepr>(
        [(q, lq), (k, lk), (v, lv)]: [(&CudaStorage, &Layout); 3],
        q_pos: &Tensor,
        k_pos: &Tensor,
        dm: &Dims,
        pr: &Params,
    ) -> Result<(CudaSlice<T>, CudaSlice<f32>)> {
        let dev = q.device();
        let qs = slice::<T>(q, lq)?;
        let ((ka, kb, kcap), (va, vb, vcap)) = match (super::kv_span(lk), super::kv_span(lv)) {
            (Some(k), Some(v)) if k.2 == v.2 => (k, v),
            _ => candle_core::bail!("attention: k and v must be contiguous or one KV cache's rows"),
        };
        let ks = k.as_cuda_slice::<T>()?.slice(ka..kb);
        let vs = v.as_cuda_slice::<T>()?.slice(va..vb);
        let kv_cap = i32::try_from(kcap.max(vcap))
            .map_err(|_| candle_core::Error::Msg("attention: KV cache too long".into()))?;
        let (qps, qpl) = q_pos.storage_and_layout();
        let qpv = view::<i64>(&qps, qpl, "q_pos")?;
        let (kps, kpl) = k_pos.storage_and_layout();
        let kpv = view::<i64>(&kps, kpl, "k_pos")?;
        let rows = dm.b * dm.hq * dm.l;
        // SAFETY: the kernel writes every output row and every lse.
        let out = unsafe { dev.alloc::<T>(rows * dm.d)? };
        let lse = unsafe { dev.alloc::<f32>(rows)? };
        let tc = super::tensor_core_forward(q.dtype(), dm.d);
        let f = if tc {
            let name = format!("attn_fwd_tc_d{}", dm.d);
            func(dev, ATTENTION_TC, &name, Some(q.dtype()))?
        } else {
            func(dev, ATTENTION, "attn_fwd", Some(q.dtype()))?
        };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        let (hq, hkv, l, t, d) = dm.kernel_args();
        let softcap = softcap_arg(pr);
        b.arg(&qs)
            .arg(&ks)
            .arg(&vs)
            .arg(&qpv)
            .arg(&kpv)
            .arg(&out)
            .arg(&lse);
        b.arg(&hq).arg(&hkv).arg(&l).arg(&t).arg(&kv_cap);
        // The tensor-core kernels have the head dimension as a template parameter.
        if !tc {
            b.arg(&d);
        }
        b.arg(&pr.scale).arg(&softcap).arg(&pr.window);
        let shape = if tc {
            crate::kernels::cuda::config(super::launch_shape_tc(dm.l, dm.d, dm.hq, dm.b))
        } else {
            cfg(dm.rep() * dm.l, dm, 1)
        };
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(shape) }.w()?;
        Ok((out, lse))
    }

    /// The output storage and the `(B, Hq, L)` f32 lse tensor.
    pub fn forward(
        q: (&CudaStorage, &Layout),
        k: (&CudaStorage, &Layout),
        v: (&CudaStorage, &Layout),
        q_pos: &Tensor,
        k_pos: &Tensor,
        dm: &Dims,
        pr: &Params,
    ) -> Result<(CudaStorage, Tensor)> {
        let dev = q.0.device().clone();
        let lse_shape = (dm.b, dm.hq, dm.l);
        let args = [q, k, v];
        by_float_dtype!(q.0.dtype(), "attention", |E| {
            let (o, lse) = launch_fwd::<E>(args, q_pos, k_pos, dm, pr)?;
            let lse = tensor(lse, &dev, lse_shape);
            Ok((CudaStorage::wrap_cuda_slice(o, dev), lse))
        })
    }

    fn launch_bwd<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        [q, k, v, o, g]: [&Tensor; 5],
        lse: &Tensor,
        q_pos: &Tensor,
        k_pos: &Tensor,
        dm: &Dims,
        pr: &Params,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (sq, lq) = q.storage_and_layout();
        let (sk, lk) = k.storage_and_layout();
        let (sv, lv) = v.storage_and_layout();
        let (sg, lg) = g.storage_and_layout();
        let (sl, ll) = lse.storage_and_layout();
        let (sqp, lqp) = q_pos.storage_and_layout();
        let (skp, lkp) = k_pos.storage_and_layout();
        let qs = view::<T>(&sq, lq, "q")?;
        let ks = view::<T>(&sk, lk, "k")?;
        let vs = view::<T>(&sv, lv, "v")?;
        let gs = view::<T>(&sg, lg, "the output gradient")?;
        let (so, lo) = o.storage_and_layout();
        let os = view::<T>(&so, lo, "the output")?;
        let lses = view::<f32>(&sl, ll, "lse")?;
        let qpv = view::<i64>(&sqp, lqp, "q_pos")?;
        let kpv = view::<i64>(&skp, lkp, "k_pos")?;
        let rows = dm.b * dm.hq * dm.l;
        let kv_el = dm.b * dm.hkv * dm.t * dm.d;
        let dt = q.dtype();
        let stream = dev.cuda_stream();
        let (hq, hkv, l, t, d) = dm.kernel_args();
        let softcap = softcap_arg(pr);

        // SAFETY: attn_bwd_dq writes Δ of every query row before attn_bwd_dkdv reads it.
        let delta = unsafe { dev.alloc::<f32>(rows)? };

        if super::tensor_core_backward(dt, dm.d) {
            // SAFETY: the kernels write every row of dq, dk and dv.
            let dq = unsafe { dev.alloc::<T>(rows * dm.d)? };
            let dk = unsafe { dev.alloc::<T>(kv_el)? };
            let dv = unsafe { dev.alloc::<T>(kv_el)? };
            let f = func(
                dev,
                ATTENTION_TC,
                &format!("attn_bwd_dq_tc_d{}", dm.d),
                Some(dt),
            )?;
            let mut b = stream.launch_builder(&f);
            b.arg(&qs)
                .arg(&ks)
                .arg(&vs)
                .arg(&os)
                .arg(&gs)
                .arg(&lses)
                .arg(&delta);
            b.arg(&qpv).arg(&kpv).arg(&dq);
            b.arg(&hq).arg(&hkv).arg(&l).arg(&t);
            b.arg(&pr.scale).arg(&softcap).arg(&pr.window);
            let shape = super::launch_shape_tc_bwd(dm.l, dm.d, dm.hq, dm.b);
            // SAFETY: argument types match the kernel's signature.
            unsafe { b.launch(crate::kernels::cuda::config(shape)) }.w()?;
            let f = func(
                dev,
                ATTENTION_TC,
                &format!("attn_bwd_dkdv_tc_d{}", dm.d),
                Some(dt),
            )?;
            let mut b = stream.launch_builder(&f);
            b.arg(&qs).arg(&ks).arg(&vs).arg(&gs).arg(&lses).arg(&delta);
            b.arg(&qpv).arg(&kpv).arg(&dk).arg(&dv);
            b.arg(&hq).arg(&hkv).arg(&l).arg(&t);
            b.arg(&pr.scale).arg(&softcap).arg(&pr.window);
            let shape = super::launch_shape_tc_bwd(dm.t, dm.d, dm.hkv, dm.b);
            // SAFETY: argument types match the kernel's signature.
            unsafe { b.launch(crate::kernels::cuda::config(shape)) }.w()?;
            return Ok((
                tensor(dq, dev, q.shape().clone()),
                tensor(dk, dev, k.shape().clone()),
                tensor(dv, dev, v.shape().clone()),
            ));
        }

        // dQ (and Δ), one warp per query row.
        // SAFETY: the kernel writes every row.
        let dq = unsafe { dev.alloc::<T>(rows * dm.d)? };
        let f = func(dev, ATTENTION, "attn_bwd_dq", Some(dt))?;
        let mut b = stream.launch_builder(&f);
        b.arg(&qs).arg(&ks).arg(&vs).arg(&gs).arg(&lses).arg(&delta);
        b.arg(&qpv).arg(&kpv).arg(&dq);
        b.arg(&hq).arg(&hkv).arg(&l).arg(&t).arg(&d);
        b.arg(&pr.scale).arg(&softcap).arg(&pr.window);
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(cfg(dm.rep() * dm.l, dm, 2)) }.w()?;

        // dK and dV, one warp per key.
        // SAFETY: the kernel writes every row of both.
        let dk = unsafe { dev.alloc::<T>(kv_el)? };
        let dv = unsafe { dev.alloc::<T>(kv_el)? };
        let f = func(dev, ATTENTION, "attn_bwd_dkdv", Some(dt))?;
        let mut b = stream.launch_builder(&f);
        b.arg(&qs).arg(&ks).arg(&vs).arg(&gs).arg(&lses).arg(&delta);
        b.arg(&qpv).arg(&kpv).arg(&dk).arg(&dv);
        b.arg(&hq).arg(&hkv).arg(&l).arg(&t).arg(&d);
        b.arg(&pr.scale).arg(&softcap).arg(&pr.window);
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(cfg(dm.t, dm, 2)) }.w()?;

        Ok((
            tensor(dq, dev, q.shape().clone()),
            tensor(dk, dev, k.shape().clone()),
            tensor(dv, dev, v.shape().clone()),
        ))
    }

    pub fn backward(
        dev: &CudaDevice,
        qkvg: [&Tensor; 5],
        lse: &Tensor,
        q_pos: &Tensor,
        k_pos: &Tensor,
        dm: &Dims,
        pr: &Params,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        by_float_dtype!(qkvg[0].dtype(), "attention backward", |E| {
            launch_bwd::<E>(dev, qkvg, lse, q_pos, k_pos, dm, pr)
        })
    }
}

/// One check case: shapes, left padding per batch row (the first `pad[b]` keys are padding;
/// the queries sit at the last `L` key positions), options and dtype.
struct Case {
    name: &'static str,
    hq: usize,
    hkv: usize,
    l: usize,
    t: usize,
    d: usize,
    pad: [usize; 2],
    window: Option<usize>,
    softcap: Option<f64>,
    scale: f64,
    dt: DType,
}

/// Key positions `(B, T)` and query positions `(B, L)` (the last `L` key positions) of `c`.
fn case_positions(c: &Case) -> Result<(Tensor, Tensor)> {
    let mut kp = Vec::with_capacity(2 * c.t);
    let mut qp = Vec::with_capacity(2 * c.l);
    for &pad in &c.pad {
        let row: Vec<i64> = (0..c.t).map(|j| j as i64 - pad as i64).collect();
        let row: Vec<i64> = row.into_iter().map(|p| p.max(-1)).collect();
        qp.extend_from_slice(&row[c.t - c.l..]);
        kp.extend(row);
    }
    Ok((
        Tensor::from_vec(qp, (2, c.l), &Device::Cpu)?,
        Tensor::from_vec(kp, (2, c.t), &Device::Cpu)?,
    ))
}

/// [`attention`] on `dev` against `model::ops::attention` with `attention_mask` on the CPU in
/// f32 (inputs rounded to the case's dtype first): output and dq/dk/dv of
/// `Σ out ∘ c`, compared on the query rows with a position (padding rows zeroed in both, and
/// zero in `c`).
/// The yardstick for the tensor-core kernels, which round P and dS to the 16-bit input dtype for
/// the MMAs (as FlashAttention does): the error of candle's composed attention computed in
/// `dt` (bf16/f16 scores, probabilities and products) against the same ops in f32, for the
/// output and `dq`, `dk`, `dv` of `Σ out ∘ w`, in [`compare`]'s metric. Inputs are f32 tensors
/// already rounded to `dt`; `w` is zero on query rows without a position, and outputs are
/// compared on the other rows only. A tensor-core result passes at twice this error (the
/// criterion of FlashAttention's tests) or within the dtype's usual tolerance.
#[allow(clippy::too_many_arguments)]
pub fn composed_errors(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_pos: &Tensor,
    k_pos: &Tensor,
    window: Option<usize>,
    scale: f64,
    softcap: Option<f64>,
    w: &Tensor,
    dt: DType,
) -> Result<[f64; 4]> {
    use crate::model::ops;
    let mask = ops::attention_mask(q_pos, k_pos, window)?;
    let rows = q_pos
        .ge(0i64)?
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .unsqueeze(3)?;
    let run = |dtype: DType| -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let vars = [q, k, v].map(|x| x.to_dtype(dtype).and_then(|x| Var::from_tensor(&x)));
        let [qv, kv, vv] = vars;
        let (qv, kv, vv) = (qv?, kv?, vv?);
        let y = ops::attention(&qv, &kv, &vv, &mask, scale, softcap)?.to_dtype(DType::F32)?;
        let g = (&y * w)?.sum_all()?.backward()?;
        let grad = |x: &Var| -> Result<Tensor> {
            g.get(x)
                .ok_or_else(|| candle_core::Error::Msg("attention: no gradient".into()))?
                .to_dtype(DType::F32)
        };
        Ok((y.broadcast_mul(&rows)?, grad(&qv)?, grad(&kv)?, grad(&vv)?))
    };
    let (r, l) = (run(DType::F32)?, run(dt)?);
    let err = |a: &Tensor, b: &Tensor| -> Result<f64> {
        Ok(compare("attention", String::new(), a, b, 0.0)?.err)
    };
    Ok([
        err(&l.0, &r.0)?,
        err(&l.1, &r.1)?,
        err(&l.2, &r.2)?,
        err(&l.3, &r.3)?,
    ])
}

pub(crate) fn checks(dev: &Device) -> Result<Vec<Check>> {
    use crate::model::ops;
    let s64 = 1.0 / 8.0;
    let cases = [
        Case {
            name: "gqa 4/2 d64 padded",
            hq: 4,
            hkv: 2,
            l: 33,
            t: 33,
            d: 64,
            pad: [0, 7],
            window: None,
            softcap: None,
            scale: s64,
            dt: DType::F32,
        },
        Case {
            name: "gqa 4/2 d128 padded",
            hq: 4,
            hkv: 2,
            l: 24,
            t: 24,
            d: 128,
            pad: [3, 0],
            window: None,
            softcap: None,
            scale: 1.0 / 128f64.sqrt(),
            dt: DType::BF16,
        },
        Case {
            name: "kv-cache 5 of 40 d64",
            hq: 4,
            hkv: 2,
            l: 5,
            t: 40,
            d: 64,
            pad: [0, 9],
            window: None,
            softcap: None,
            scale: s64,
            dt: DType::F32,
        },
        Case {
            name: "window 5 d64 padded",
            hq: 4,
            hkv: 2,
            l: 33,
            t: 33,
            d: 64,
            pad: [0, 6],
            window: Some(5),
            softcap: None,
            scale: s64,
            dt: DType::F32,
        },
        Case {
            name: "softcap 50 d64 padded",
            hq: 4,
            hkv: 2,
            l: 20,
            t: 20,
            d: 64,
            pad: [2, 0],
            window: None,
            softcap: Some(50.0),
            scale: 1.0,
            dt: DType::F32,
        },
        Case {
            name: "softcap 50 d128 padded",
            hq: 4,
            hkv: 2,
            l: 20,
            t: 20,
            d: 128,
            pad: [2, 0],
            window: None,
            softcap: Some(50.0),
            scale: 1.0 / 128f64.sqrt() * 4.0,
            dt: DType::BF16,
        },
        Case {
            name: "mqa 4/1 kv-cache window 5 softcap 50 d64",
            hq: 4,
            hkv: 1,
            l: 7,
            t: 40,
            d: 64,
            pad: [5, 0],
            window: Some(5),
            softcap: Some(50.0),
            scale: 1.0,
            dt: DType::BF16,
        },
        Case {
            name: "d256 padded",
            hq: 2,
            hkv: 2,
            l: 9,
            t: 9,
            d: 256,
            pad: [0, 3],
            window: None,
            softcap: None,
            scale: 1.0 / 16.0,
            dt: DType::BF16,
        },
        Case {
            name: "d80 kv-cache",
            hq: 2,
            hkv: 1,
            l: 3,
            t: 17,
            d: 80,
            pad: [4, 0],
            window: None,
            softcap: None,
            scale: 1.0 / 80f64.sqrt(),
            dt: DType::F32,
        },
    ];
    let cpu = Device::Cpu;
    let mut out = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let seed = 300 + 10 * n as u64;
        let (qp, kp) = case_positions(c)?;
        let q = randn(seed, &[2, c.hq, c.l, c.d], 1.0, DType::F32, &cpu)?;
        let k = randn(seed + 1, &[2, c.hkv, c.t, c.d], 1.0, DType::F32, &cpu)?;
        let v = randn(seed + 2, &[2, c.hkv, c.t, c.d], 1.0, DType::F32, &cpu)?;
        // (B, 1, L, 1): 1 on query rows with a position.
        let rows = qp
            .ge(0i64)?
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .unsqueeze(3)?;
        let w =
            randn(seed + 3, &[2, c.hq, c.l, c.d], 1.0, DType::F32, &cpu)?.broadcast_mul(&rows)?;
        let rounded = |x: &Tensor| x.to_dtype(c.dt)?.to_dtype(DType::F32);
        // Reference: composed f32 ops on the CPU.
        let (qr, kr, vr) = (
            Var::from_tensor(&rounded(&q)?)?,
            Var::from_tensor(&rounded(&k)?)?,
            Var::from_tensor(&rounded(&v)?)?,
        );
        let mask = ops::attention_mask(&qp, &kp, c.window)?;
        let yr = ops::attention(&qr, &kr, &vr, &mask, c.scale, c.softcap)?;
        let gr = (&yr * &w)?.sum_all()?.backward()?;
        // Fused on `dev`.
        let on_dev = |x: &Tensor| Var::from_tensor(&x.to_dtype(c.dt)?.to_device(dev)?);
        let (qd, kd, vd) = (on_dev(&q)?, on_dev(&k)?, on_dev(&v)?);
        let yd = attention(
            &qd,
            &kd,
            &vd,
            &qp.to_device(dev)?,
            &kp.to_device(dev)?,
            c.window,
            c.scale,
            c.softcap,
        )?;
        let gd = (yd.to_dtype(DType::F32)? * w.to_device(dev)?)?
            .sum_all()?
            .backward()?;
        let tc = dev.is_cuda() && tensor_core_forward(c.dt, c.d);
        let case = format!(
            "{} {:?}{}",
            c.name,
            c.dt,
            if tc { " (tensor cores)" } else { "" }
        );
        let t = tol(c.dt);
        // Per output: the dtype's tolerance, or twice candle's own error in this dtype where the
        // tensor-core kernels (16-bit P and dS) run.
        let tols = if tc {
            let r = |x: &Tensor| x.to_dtype(c.dt)?.to_dtype(DType::F32);
            let e = composed_errors(
                &r(&q)?,
                &r(&k)?,
                &r(&v)?,
                &qp,
                &kp,
                c.window,
                c.scale,
                c.softcap,
                &w,
                c.dt,
            )?;
            e.map(|e| t.max(2.0 * e))
        } else {
            [t; 4]
        };
        let yd_rows = yd
            .to_dtype(DType::F32)?
            .to_device(&cpu)?
            .broadcast_mul(&rows)?;
        let yr_rows = yr.broadcast_mul(&rows)?;
        out.push(compare(
            "attention",
            format!("{case} out"),
            &yd_rows,
            &yr_rows,
            tols[0],
        )?);
        let grads = [("dq", &qd, &qr), ("dk", &kd, &kr), ("dv", &vd, &vr)];
        for ((name, xd, xr), t) in grads.into_iter().zip(&tols[1..]) {
            let (Some(a), Some(b)) = (gd.get(xd), gr.get(xr)) else {
                candle_core::bail!("attention {case}: no gradient for {name}");
            };
            out.push(compare("attention", format!("{case} {name}"), a, b, *t)?);
        }
    }
    Ok(out)
}
