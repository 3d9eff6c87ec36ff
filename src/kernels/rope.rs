//! Fused rotary position embedding in HF's "rotate half" layout, with partial rotary
//! (Phi-4-mini rotates 96 of 128 features) and per-row positions. One pass instead of the
//! composed narrow / neg / cat / two broadcast products / add / cat, and the backward is the
//! same kernel with `sin` negated (the transpose of a rotation), so nothing but the `cos`/`sin`
//! tables is kept for it.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, Var};
use rayon::prelude::*;

use super::check::{compare, randn, tol, Check};
use super::{cpu_f32, with_cpu_slice, Elem};

/// The CUDA launch for `n` elements: one thread each, blocks of 256.
pub fn launch_shape(n: usize) -> crate::kernels::Launch {
    crate::kernels::Launch::linear(n, 256)
}

/// Rotate the first `rot_dim` features of `x` `(B, H, L, D)` (f32, bf16 or f16) by the
/// angles whose `cos`/`sin` are given as `(B, 1, L, rot_dim)` f32 tables (the first half of
/// the last dimension is read; HF repeats it). Differentiable in `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, rot_dim: usize) -> Result<Tensor> {
    let (b, _h, l, d) = x.dims4()?;
    let want = [b, 1, l, rot_dim];
    if rot_dim == 0 || !rot_dim.is_multiple_of(2) || rot_dim > d {
        candle_core::bail!("rope: rotary dimension {rot_dim} must be even and in 2..={d}");
    }
    for (name, t) in [("cos", cos), ("sin", sin)] {
        if t.dims() != want || t.dtype() != DType::F32 {
            candle_core::bail!(
                "rope: {name} must be f32 {want:?}, got {:?} {:?}",
                t.dtype(),
                t.dims()
            );
        }
    }
    if x.elem_count() == 0 {
        return Ok(x.clone());
    }
    x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        RopeOp {
            rot: rot_dim,
            inverse: false,
        },
    )
}

struct RopeOp {
    rot: usize,
    inverse: bool,
}

/// One row of `d` features at table row `t` (`cos`/`sin` slices of length `rot`).
fn rope_row<T: Elem>(x: &[T], c: &[f32], s: &[f32], rot: usize, inverse: bool, y: &mut [T]) {
    let h = rot / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    for i in 0..h {
        let (c, s) = (c[i], sign * s[i]);
        let (a, b) = (x[i].f(), x[i + h].f());
        y[i] = T::of(a * c - b * s);
        y[i + h] = T::of(b * c + a * s);
    }
    y[rot..].copy_from_slice(&x[rot..]);
}

#[allow(clippy::too_many_arguments)]
fn rope_rows<T: Elem>(
    x: &[T],
    cos: &[f32],
    sin: &[f32],
    heads: usize,
    len: usize,
    d: usize,
    rot: usize,
    inverse: bool,
) -> Vec<T> {
    let mut y = vec![T::of(0.0); x.len()];
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .enumerate()
        .for_each(|(row, (y, x))| {
            let t = (row / (heads * len) * len + row % len) * rot;
            rope_row(x, &cos[t..t + rot], &sin[t..t + rot], rot, inverse, y);
        });
    y
}

impl CustomOp3 for RopeOp {
    fn name(&self) -> &'static str {
        "bwb-rope"
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
        let (_b, heads, len, d) = l1.shape().dims4()?;
        let cos = cpu_f32(s2, l2, "rope")?;
        let sin = cpu_f32(s3, l3, "rope")?;
        let (rot, inv) = (self.rot, self.inverse);
        let y = with_cpu_slice!(s1, l1, "rope", |x, wrap| wrap(rope_rows(
            x, &cos, &sin, heads, len, d, rot, inv
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
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let s = cuda::forward(s1, l1, s2, l2, s3, l3, self.rot, self.inverse)?;
        Ok((s, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The transpose of the (scaled) rotation: the same op with sin negated.
        let dx = grad.contiguous()?.apply_op3_no_bwd(
            cos,
            sin,
            &RopeOp {
                rot: self.rot,
                inverse: !self.inverse,
            },
        )?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
    use candle_core::{Layout, Result};

    use crate::kernels::contiguous;
    use crate::kernels::cuda::{by_float_dtype, func, ROPE};

    #[allow(clippy::too_many_arguments)]
    fn launch<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        x: &CudaStorage,
        lx: &Layout,
        c: &CudaStorage,
        lc: &Layout,
        s: &CudaStorage,
        ls: &Layout,
        rot: usize,
        inverse: bool,
    ) -> Result<CudaSlice<T>> {
        let (_b, heads, len, d) = lx.shape().dims4()?;
        let (xa, xb) = contiguous(lx, "rope")?;
        let (ca, cb) = contiguous(lc, "rope")?;
        let (sa, sb) = contiguous(ls, "rope")?;
        let xs = x.as_cuda_slice::<T>()?.slice(xa..xb);
        let cs = c.as_cuda_slice::<f32>()?.slice(ca..cb);
        let ss = s.as_cuda_slice::<f32>()?.slice(sa..sb);
        let n = xb - xa;
        let f = func(dev, ROPE, "rope", Some(x.dtype()))?;
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<T>(n)? };
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        let (n_el, heads, len, d, rot, inv) = (
            n as i64,
            heads as i32,
            len as i32,
            d as i32,
            rot as i32,
            i32::from(inverse),
        );
        b.arg(&xs).arg(&cs).arg(&ss).arg(&y);
        b.arg(&n_el)
            .arg(&heads)
            .arg(&len)
            .arg(&d)
            .arg(&rot)
            .arg(&inv);
        let cfg = crate::kernels::cuda::config(super::launch_shape(n));
        // SAFETY: argument types match the kernel's signature.
        unsafe { b.launch(cfg) }.w()?;
        Ok(y)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        x: &CudaStorage,
        lx: &Layout,
        c: &CudaStorage,
        lc: &Layout,
        s: &CudaStorage,
        ls: &Layout,
        rot: usize,
        inverse: bool,
    ) -> Result<CudaStorage> {
        let dev = x.device().clone();
        by_float_dtype!(x.dtype(), "rope", |E| {
            let y = launch::<E>(&dev, x, lx, c, lc, s, ls, rot, inverse)?;
            Ok(CudaStorage::wrap_cuda_slice(y, dev))
        })
    }
}

/// [`rope`] on `dev` against the composed ops (`model::ops::Rotary::apply_composed`) on the
/// CPU: values and `dx`, full and partial rotary (Phi), scaled tables (longrope), f32 and bf16.
pub(crate) fn checks(dev: &Device) -> Result<Vec<Check>> {
    use crate::model::ops::Rotary;
    let mut out = Vec::new();
    let cases = [
        (64, 64, 1.0, DType::F32),
        (128, 96, 1.19, DType::F32),
        (64, 64, 1.0, DType::BF16),
        (128, 96, 1.0, DType::BF16),
    ];
    for (i, &(d, rot, scaling, dt)) in cases.iter().enumerate() {
        let seed = 200 + i as u64;
        let (b, h, l) = (2, 3, 11);
        let rotary = Rotary::new(10_000.0, rot, None, scaling, &Device::Cpu)?;
        // Per-row positions, one row offset (left padding clamped to 0 as the models do).
        let pos: Vec<i64> = (0..b * l)
            .map(|k| ((k % l) as i64 + 7 * (k / l) as i64 - 3).max(0))
            .collect();
        let pos = Tensor::from_vec(pos, (b, l), &Device::Cpu)?;
        let (cos, sin) = rotary.cos_sin(&pos)?;
        let x = randn(seed, &[b, h, l, d], 1.0, DType::F32, &Device::Cpu)?;
        let c = randn(seed + 1, &[b, h, l, d], 1.0, DType::F32, &Device::Cpu)?;
        let xr = Var::from_tensor(&x.to_dtype(dt)?.to_dtype(DType::F32)?)?;
        let yr = rotary.apply_composed(xr.as_tensor(), &cos, &sin)?;
        let gr = (&yr * &c)?.sum_all()?.backward()?;
        let xd = Var::from_tensor(&x.to_dtype(dt)?.to_device(dev)?)?;
        let yd = rope(
            xd.as_tensor(),
            &cos.to_device(dev)?,
            &sin.to_device(dev)?,
            rot,
        )?;
        let gd = (yd.to_dtype(DType::F32)? * c.to_device(dev)?)?
            .sum_all()?
            .backward()?;
        let case = format!("d{d} rot{rot} x{scaling} {dt:?}");
        out.push(compare("rope", format!("{case} y"), &yd, &yr, tol(dt))?);
        let (Some(dxd), Some(dxr)) = (gd.get(&xd), gr.get(&xr)) else {
            candle_core::bail!("rope: no gradient for x");
        };
        out.push(compare("rope", format!("{case} dx"), dxd, dxr, tol(dt))?);
    }
    Ok(out)
}
