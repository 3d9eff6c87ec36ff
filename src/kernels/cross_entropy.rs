//! Chunked cross-entropy over the full vocabulary: `Σ_i −log softmax(z_i)[t_i]` with
//! `z = hidden · lm_headᵀ` (in lm_head's dtype, then f32) and optional Gemma soft-capping
//! `z = c·tanh(z/c)`. `chunk_rows` rows at a time, on detached tensors: the logits chunk, the
//! per-row loss and `dL/dz = softmax(z) − onehot(t)` (× `1 − (z/c)²` when capped) in one fused
//! pass, then `dL/dh = dL/dz · lm_head`. The returned scalar is attached to `hidden` by a
//! custom op that holds that `(N, H)` gradient, so no `(N, V)` tensor lives in the graph.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, Var, D};
use rayon::prelude::*;

use super::check::{compare, randn, tol, Check};
use super::{cpu_f32, to_f32_vec};

/// Rows per chunk so that a chunk's f32 logits stay within about 256 MB.
pub fn default_chunk_rows(vocab: usize) -> usize {
    ((256usize << 20) / (4 * vocab.max(1))).clamp(1, 8192)
}

/// Sum over rows of `−log softmax(hidden · lm_headᵀ)[target]` as a scalar f32 tensor.
///
/// `hidden` `(N, H)` (f32/bf16/f16), `lm_head` `(V, H)` (frozen; the matmul runs in its dtype),
/// `targets` `(N,)` u32, `softcap` Gemma's final logit soft-capping. When `hidden` is tracked,
/// the result's backward gives `dL/dhidden` (computed here, chunk by chunk) times the upstream
/// gradient; otherwise no gradient work is done.
pub fn cross_entropy_sum(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Tensor,
    softcap: Option<f64>,
    chunk_rows: usize,
) -> Result<Tensor> {
    let (n, h) = hidden.dims2()?;
    let (_, h2) = lm_head.dims2()?;
    if h != h2 {
        candle_core::bail!(
            "cross_entropy: hidden {:?} vs lm_head {:?}",
            hidden.dims(),
            lm_head.dims()
        );
    }
    if targets.dims() != [n] {
        candle_core::bail!("cross_entropy: targets {:?} for {n} rows", targets.dims());
    }
    let dev = hidden.device();
    if n == 0 {
        return Tensor::zeros((), DType::F32, dev);
    }
    let targets = if targets.dtype() == DType::U32 {
        targets.clone()
    } else {
        targets.to_dtype(DType::U32)?
    };
    // Out-of-range ids are an error on every device (the GPU kernel would only yield NaN).
    let vocab = lm_head.dim(0)?;
    let max_t = targets.max(0)?.to_scalar::<u32>()? as usize;
    if max_t >= vocab {
        candle_core::bail!("cross_entropy: target id {max_t} is outside the vocabulary of {vocab}");
    }
    let cap = match softcap {
        Some(c) if c > 0.0 => c as f32,
        _ => 0.0,
    };
    let want_grad = hidden.track_op();
    let mdt = lm_head.dtype();
    let hd = hidden.detach();
    let w = lm_head.detach();
    let wt = w.t()?;
    let chunk = chunk_rows.max(1);
    let mut losses = Vec::with_capacity(n.div_ceil(chunk));
    let mut grads = Vec::new();
    let mut start = 0;
    while start < n {
        let c = chunk.min(n - start);
        let hc = hd.narrow(0, start, c)?.to_dtype(mdt)?;
        let z = hc.matmul(&wt)?;
        let tc = targets.narrow(0, start, c)?.contiguous()?;
        let (loss, gz) = ce_rows(&z, &tc, cap, want_grad)?;
        losses.push(loss);
        if let Some(gz) = gz {
            grads.push(gz.matmul(&w)?);
        }
        start += c;
    }
    let loss = Tensor::cat(&losses, 0)?.sum_all()?;
    if !want_grad {
        return Ok(loss);
    }
    let grad = Tensor::cat(&grads, 0)?;
    hidden.apply_op1(CeGrad { loss, grad })
}

/// The CUDA launch of the per-row kernel for `rows` rows of `vocab` logits: one block per row.
pub fn launch_shape(rows: usize, vocab: usize) -> crate::kernels::Launch {
    crate::kernels::Launch::rows(rows, crate::kernels::threads_for(vocab))
}

/// The fused per-row step on a logits chunk `z` `(c, V)` (any float dtype): per-row loss `(c,)`
/// f32 and, when `want_grad`, `dL/dz` `(c, V)` in `z`'s dtype.
fn ce_rows(
    z: &Tensor,
    targets: &Tensor,
    cap: f32,
    want_grad: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let z = z.contiguous()?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = z.device() {
        return cuda::ce_rows(dev, &z, targets, cap, want_grad);
    }
    let (c, v) = z.dims2()?;
    let ts = targets.to_vec1::<u32>()?;
    if let Some(t) = ts.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("cross_entropy: target {t} outside a vocabulary of {v}");
    }
    // The f32 copy of the chunk becomes the gradient in place.
    let mut g = to_f32_vec(&z)?;
    let mut loss = vec![0f32; c];
    g.par_chunks_mut(v)
        .zip(loss.par_iter_mut())
        .zip(ts.par_iter())
        .for_each(|((row, l), &t)| *l = row_step(row, t as usize, cap, want_grad));
    let loss = Tensor::from_vec(loss, c, z.device())?;
    let grad = if want_grad {
        Some(Tensor::from_vec(g, (c, v), z.device())?.to_dtype(z.dtype())?)
    } else {
        None
    };
    Ok((loss, grad))
}

/// One row: returns `logsumexp(z_c) − z_c[t]`; with `grad`, overwrites `row` with `dL/dz`.
fn row_step(row: &mut [f32], t: usize, cap: f32, grad: bool) -> f32 {
    if cap > 0.0 {
        for x in row.iter_mut() {
            *x = cap * (*x / cap).tanh();
        }
    }
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let s: f32 = row.iter().map(|x| (x - m).exp()).sum();
    let loss = m + s.ln() - row[t];
    if grad {
        let inv = 1.0 / s;
        for (i, x) in row.iter_mut().enumerate() {
            let mut g = (*x - m).exp() * inv - if i == t { 1.0 } else { 0.0 };
            if cap > 0.0 {
                let u = *x / cap;
                g *= 1.0 - u * u;
            }
            *x = g;
        }
    }
    loss
}

/// The loss, attached to `hidden`: forward yields the precomputed loss, backward the
/// precomputed `dL/dhidden` times the upstream gradient.
struct CeGrad {
    loss: Tensor,
    grad: Tensor,
}

impl CustomOp1 for CeGrad {
    fn name(&self) -> &'static str {
        "bwb-cross-entropy"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let (s, l) = self.loss.storage_and_layout();
        let candle_core::Storage::Cpu(s) = &*s else {
            candle_core::bail!("cross_entropy: loss is not on the CPU");
        };
        let v = cpu_f32(s, l, "cross_entropy")?;
        Ok((CpuStorage::F32(v), Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let (s, l) = self.loss.storage_and_layout();
        let candle_core::Storage::Cuda(s) = &*s else {
            candle_core::bail!("cross_entropy: loss is not on the GPU");
        };
        Ok((s.try_clone(l)?, Shape::from(())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = self
            .grad
            .to_dtype(DType::F32)?
            .broadcast_mul(&grad_res.to_dtype(DType::F32)?)?
            .to_dtype(arg.dtype())?;
        Ok(Some(g))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
    use candle_core::{Result, Storage, Tensor};

    use crate::kernels::contiguous;
    use crate::kernels::cuda::{by_float_dtype, config, func, tensor, CROSS_ENTROPY};

    fn launch<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        z: &Tensor,
        targets: &Tensor,
        cap: f32,
        want_grad: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (c, v) = z.dims2()?;
        let (sz, lz) = z.storage_and_layout();
        let (st, lt) = targets.storage_and_layout();
        let (Storage::Cuda(sz), Storage::Cuda(st)) = (&*sz, &*st) else {
            candle_core::bail!("cross_entropy: tensors must be on the GPU");
        };
        let (za, zb) = contiguous(lz, "cross_entropy")?;
        let (ta, tb) = contiguous(lt, "cross_entropy")?;
        if zb - za != c * v || tb - ta != c {
            candle_core::bail!("cross_entropy: logits/targets sizes do not match");
        }
        let zs = sz.as_cuda_slice::<T>()?.slice(za..zb);
        let ts = st.as_cuda_slice::<u32>()?.slice(ta..tb);
        let f = func(dev, CROSS_ENTROPY, "ce_rows", Some(z.dtype()))?;
        // SAFETY: the kernel writes every row's loss and, when wanted, every gradient element.
        let loss = unsafe { dev.alloc::<f32>(c)? };
        let grad = if want_grad {
            Some(unsafe { dev.alloc::<T>(c * v)? })
        } else {
            None
        };
        let null = 0u64;
        let v_i = v as i32;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&zs).arg(&ts);
        match &grad {
            Some(g) => b.arg(g),
            None => b.arg(&null),
        };
        b.arg(&loss).arg(&v_i).arg(&cap);
        // SAFETY: argument types match the kernel's signature (a null `grad` is a 0 pointer).
        unsafe { b.launch(config(super::launch_shape(c, v))) }.w()?;
        let grad = grad.map(|g| tensor(g, dev, (c, v)));
        Ok((tensor(loss, dev, c), grad))
    }

    pub fn ce_rows(
        dev: &CudaDevice,
        z: &Tensor,
        targets: &Tensor,
        cap: f32,
        want_grad: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        by_float_dtype!(z.dtype(), "cross_entropy", |E| {
            launch::<E>(dev, z, targets, cap, want_grad)
        })
    }
}

/// [`cross_entropy_sum`] on `dev` against the composed ops on the CPU (matmul, log_softmax,
/// gather, sum; f32, inputs rounded to the test dtype): the loss and `dL/dhidden`.
pub(crate) fn checks(dev: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    let (v, h) = (1000, 64);
    // (rows, chunk, dtype, softcap)
    let cases = [
        (37, 8, DType::F32, None),
        (37, 8, DType::F32, Some(30.0)),
        (37, 8, DType::BF16, None),
        (37, 8, DType::BF16, Some(30.0)),
        (20, 6, DType::F16, Some(30.0)),
        (37, 64, DType::F32, Some(30.0)),
        (5, 5, DType::BF16, None),
    ];
    for (i, &(n, chunk, dt, cap)) in cases.iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let hid = randn(seed, &[n, h], 1.0, DType::F32, &Device::Cpu)?.to_dtype(dt)?;
        // Logits of std ~ 8 in f32 (well into the soft-cap's curvature at c = 30); ~ 3 in
        // 16-bit, where the logits' own rounding (≈ |z|·2⁻⁹ in bf16) moves the softmax.
        let ws = if dt == DType::F32 { 1.0 } else { 0.4 };
        let w = randn(seed + 1, &[v, h], ws, DType::F32, &Device::Cpu)?.to_dtype(dt)?;
        let tg: Vec<u32> = (0..n).map(|r| ((r * 7919 + 13 * i) % v) as u32).collect();
        let tg = Tensor::from_vec(tg, n, &Device::Cpu)?;
        // Reference: composed f32 ops on the CPU.
        let hr = Var::from_tensor(&hid.to_dtype(DType::F32)?)?;
        let lr = composed(hr.as_tensor(), &w.to_dtype(DType::F32)?, &tg, cap)?;
        // Upstream gradient 0.75, not 1.
        let gr = (&lr * 0.75)?.backward()?;
        // Fused on `dev`.
        let hd = Var::from_tensor(&hid.to_device(dev)?)?;
        let ld = cross_entropy_sum(
            hd.as_tensor(),
            &w.to_device(dev)?,
            &tg.to_device(dev)?,
            cap,
            chunk,
        )?;
        let gd = (&ld * 0.75)?.backward()?;
        let case = format!(
            "{n}x{h}->{v} chunk {chunk} {dt:?} cap {}",
            cap.map_or("none".to_string(), |c| c.to_string())
        );
        let t = tol(dt);
        out.push(compare(
            "cross_entropy",
            format!("{case} loss"),
            &ld,
            &lr,
            t,
        )?);
        let (Some(dhd), Some(dhr)) = (gd.get(&hd), gr.get(&hr)) else {
            candle_core::bail!("cross_entropy: no gradient for hidden");
        };
        out.push(compare("cross_entropy", format!("{case} dh"), dhd, dhr, t)?);
        // Untracked hidden: loss only.
        let lu = cross_entropy_sum(
            &hid.to_device(dev)?,
            &w.to_device(dev)?,
            &tg.to_device(dev)?,
            cap,
            chunk,
        )?;
        out.push(compare(
            "cross_entropy",
            format!("{case} loss no-grad"),
            &lu,
            &lr,
            t,
        )?);
    }
    Ok(out)
}

/// The composed ops [`cross_entropy_sum`] replaces (`train::validate::batch_loss`).
fn composed(h: &Tensor, w: &Tensor, targets: &Tensor, cap: Option<f64>) -> Result<Tensor> {
    let mut z = h.matmul(&w.t()?)?;
    if let Some(c) = cap {
        z = ((z / c)?.tanh()? * c)?;
    }
    let logp = candle_nn::ops::log_softmax(&z, D::Minus1)?;
    logp.gather(&targets.unsqueeze(1)?, 1)?.sum_all()?.neg()
}
