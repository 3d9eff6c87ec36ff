//! Fused RMSNorm: `y = x · r · w` with `r = 1/√(mean(x²) + eps)`, statistics in f32, `w` f32
//! (Gemma's `1 + w` already folded in by the caller). The backward is one more pass over `x`
//! and `g` (`dx = r·w∘g − x·r³/n·Σ g∘w∘x`), so training keeps only `x` for it, where the
//! composed ops kept `x` in f32, `x²`, the mean and the quotient.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor, Var, D};
use rayon::prelude::*;

use super::check::{compare, randn, tol, Check};
use super::{cpu_f32, to_f32_vec, with_cpu_slice, Elem};

/// Fused RMSNorm over the last dimension of `x` (f32, bf16 or f16) with an f32 weight of
/// that length. Differentiable in `x` (and in `w` when it is tracked).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if x.elem_count() == 0 {
        return Ok(x.clone());
    }
    if w.dims() != [n] || w.dtype() != DType::F32 {
        candle_core::bail!(
            "rms_norm: weight must be f32 of shape [{n}], got {:?} {:?}",
            w.dtype(),
            w.dims()
        );
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f32 })
}

/// The CUDA launch of the forward and backward kernels for `rows` rows of `n`: one block per row.
pub fn launch_shape(rows: usize, n: usize) -> crate::kernels::Launch {
    crate::kernels::Launch::rows(rows, crate::kernels::threads_for(n))
}

/// The input gradient of [`rms_norm`] for upstream gradient `g` (same shape and dtype as `x`).
pub fn rms_norm_backward(x: &Tensor, w: &Tensor, g: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if w.dims() != [n] || g.dims() != x.dims() {
        candle_core::bail!(
            "rms_norm_backward: x {:?}, weight {:?}, gradient {:?}",
            x.dims(),
            w.dims(),
            g.dims()
        );
    }
    if x.elem_count() == 0 {
        return Ok(x.clone());
    }
    let x = x.contiguous()?;
    let g = g.to_dtype(x.dtype())?.contiguous()?;
    let w = w.contiguous()?;
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = x.device() {
        return cuda::backward(dev, &x, &w, &g, eps as f32);
    }
    let n = x.dim(D::Minus1)?;
    let (xs, ws, gs) = (to_f32_vec(&x)?, to_f32_vec(&w)?, to_f32_vec(&g)?);
    let mut dx = vec![0f32; xs.len()];
    dx.par_chunks_mut(n)
        .zip(xs.par_chunks(n).zip(gs.par_chunks(n)))
        .for_each(|(d, (x, g))| backward_row(x, &ws, g, d, eps as f32));
    Tensor::from_vec(dx, x.shape(), x.device())?.to_dtype(x.dtype())
}

/// `1/√(mean(x²) + eps)` of one row, accumulated in f32.
fn inv_rms<T: Elem>(x: &[T], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v.f() * v.f()).sum();
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

fn forward_row<T: Elem>(x: &[T], w: &[f32], y: &mut [T], eps: f32) {
    let r = inv_rms(x, eps);
    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
        *y = T::of(x.f() * r * w);
    }
}

fn forward<T: Elem>(x: &[T], w: &[f32], n: usize, eps: f32) -> Vec<T> {
    let mut y = vec![T::of(0.0); x.len()];
    y.par_chunks_mut(n)
        .zip(x.par_chunks(n))
        .for_each(|(y, x)| forward_row(x, w, y, eps));
    y
}

fn backward_row(x: &[f32], w: &[f32], g: &[f32], dx: &mut [f32], eps: f32) {
    let r = inv_rms(x, eps);
    let dot: f32 = x.iter().zip(w).zip(g).map(|((x, w), g)| g * w * x).sum();
    let c = dot * r * r * r / x.len() as f32;
    for (((d, x), w), g) in dx.iter_mut().zip(x).zip(w).zip(g) {
        *d = r * w * g - x * c;
    }
}

struct RmsNormOp {
    eps: f32,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "bwb-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let w = cpu_f32(s2, l2, "rms_norm")?;
        let y = with_cpu_slice!(s1, l1, "rms_norm", |x, wrap| wrap(forward(
            x, &w, n, self.eps
        )));
        Ok((y, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let s = cuda::forward(s1, l1, s2, l2, self.eps)?;
        Ok((s, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = rms_norm_backward(x, w, grad, self.eps as f64)?;
        let dw = if w.track_op() {
            // Σ over rows of g ∘ x · r (composed: only when the weight is trained).
            let xf = x.to_dtype(DType::F32)?;
            let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + self.eps as f64)?
                .sqrt()?
                .recip()?;
            let n = x.dim(D::Minus1)?;
            let gx = grad.to_dtype(DType::F32)?.mul(&xf.broadcast_mul(&r)?)?;
            Some(gx.reshape(((), n))?.sum(0)?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
    use candle_core::{Layout, Result, Storage, Tensor};

    use crate::kernels::contiguous;
    use crate::kernels::cuda::{by_float_dtype, config, func, tensor, RMSNORM};

    fn launch_fwd<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
        eps: f32,
    ) -> Result<CudaSlice<T>> {
        let (xa, xb) = contiguous(lx, "rms_norm")?;
        let (wa, wb) = contiguous(lw, "rms_norm")?;
        let xs = x.as_cuda_slice::<T>()?.slice(xa..xb);
        let ws = w.as_cuda_slice::<f32>()?.slice(wa..wb);
        let n = wb - wa;
        let el = xb - xa;
        let f = func(dev, RMSNORM, "rmsnorm_fwd", Some(x.dtype()))?;
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<T>(el)? };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        let n_i = n as i32;
        b.arg(&xs).arg(&ws).arg(&y).arg(&n_i).arg(&eps);
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(config(super::launch_shape(el / n.max(1), n))) }.w()?;
        Ok(y)
    }

    pub fn forward(
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
        eps: f32,
    ) -> Result<CudaStorage> {
        let dev = x.device().clone();
        by_float_dtype!(x.dtype(), "rms_norm", |E| {
            let y = launch_fwd::<E>(&dev, x, lx, w, lw, eps)?;
            Ok(CudaStorage::wrap_cuda_slice(y, dev))
        })
    }

    fn launch_bwd<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let (sx, lx) = x.storage_and_layout();
        let (sw, lw) = w.storage_and_layout();
        let (sg, lg) = g.storage_and_layout();
        let (Storage::Cuda(sx), Storage::Cuda(sw), Storage::Cuda(sg)) = (&*sx, &*sw, &*sg) else {
            candle_core::bail!("rms_norm_backward: tensors must be on the GPU");
        };
        let (xa, xb) = contiguous(lx, "rms_norm_backward")?;
        let (wa, wb) = contiguous(lw, "rms_norm_backward")?;
        let (ga, gb) = contiguous(lg, "rms_norm_backward")?;
        let xs = sx.as_cuda_slice::<T>()?.slice(xa..xb);
        let ws = sw.as_cuda_slice::<f32>()?.slice(wa..wb);
        let gs = sg.as_cuda_slice::<T>()?.slice(ga..gb);
        let n = wb - wa;
        let el = xb - xa;
        let f = func(dev, RMSNORM, "rmsnorm_bwd", Some(x.dtype()))?;
        // SAFETY: every element is written by the kernel.
        let dx = unsafe { dev.alloc::<T>(el)? };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        let n_i = n as i32;
        b.arg(&xs).arg(&ws).arg(&gs).arg(&dx).arg(&n_i).arg(&eps);
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(config(super::launch_shape(el / n.max(1), n))) }.w()?;
        Ok(tensor(dx, dev, x.shape().clone()))
    }

    pub fn backward(
        dev: &CudaDevice,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        by_float_dtype!(x.dtype(), "rms_norm_backward", |E| {
            launch_bwd::<E>(dev, x, w, g, eps)
        })
    }
}

/// [`rms_norm`] on `dev` against the composed ops on the CPU: values, `dx` and `dw`, for f32
/// and bf16 inputs, rows of 96 and 4096 (multi-warp reductions on the GPU).
pub(crate) fn checks(dev: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for (i, &(rows, n, dt)) in [
        (37, 96, DType::F32),
        (5, 4096, DType::F32),
        (37, 96, DType::BF16),
        (6, 2560, DType::BF16),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 + i as u64;
        let x = randn(seed, &[rows, n], 1.5, DType::F32, &Device::Cpu)?;
        let w = (randn(seed + 1, &[n], 0.3, DType::F32, &Device::Cpu)? + 1.0)?;
        let c = randn(seed + 2, &[rows, n], 1.0, DType::F32, &Device::Cpu)?;
        let eps = 1e-6;
        // Reference: composed f32 ops on the CPU, inputs rounded to `dt` first.
        let xr = Var::from_tensor(&x.to_dtype(dt)?.to_dtype(DType::F32)?)?;
        let wr = Var::from_tensor(&w)?;
        let yr = composed(xr.as_tensor(), wr.as_tensor(), eps)?;
        let gr = (&yr * &c)?.sum_all()?.backward()?;
        // Fused on `dev`.
        let xd = Var::from_tensor(&x.to_dtype(dt)?.to_device(dev)?)?;
        let wd = Var::from_tensor(&w.to_device(dev)?)?;
        let yd = rms_norm(xd.as_tensor(), wd.as_tensor(), eps)?;
        let gd = (yd.to_dtype(DType::F32)? * c.to_device(dev)?)?
            .sum_all()?
            .backward()?;
        let case = format!("{rows}x{n} {dt:?}");
        let t = tol(dt);
        out.push(compare("rms_norm", format!("{case} y"), &yd, &yr, t)?);
        let (Some(dxd), Some(dxr)) = (gd.get(&xd), gr.get(&xr)) else {
            candle_core::bail!("rms_norm: no gradient for x");
        };
        out.push(compare("rms_norm", format!("{case} dx"), dxd, dxr, t)?);
        let (Some(dwd), Some(dwr)) = (gd.get(&wd), gr.get(&wr)) else {
            candle_core::bail!("rms_norm: no gradient for w");
        };
        out.push(compare("rms_norm", format!("{case} dw"), dwd, dwr, t)?);
    }
    Ok(out)
}

/// The composed ops [`rms_norm`] replaces (also `model::ops::RmsNorm::forward_composed`).
fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}
