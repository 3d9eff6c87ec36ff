//! ggml 4-bit blocks (Q4_0, Q4_1, Q4_K) straight to a dense bf16/f16/f32 weight. candle's own
//! CUDA dequantisation writes f32 and a second kernel converts, which costs a 4-byte-per-weight
//! temporary and an extra pass each time a 4-bit layer is used in training; here one pass reads
//! the raw blocks and writes the target dtype. The f32 values equal candle's CPU decoding bit
//! for bit (same operations, no fused multiply-add), so 16-bit outputs are that, rounded once.

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor, WithDType};
use rayon::prelude::*;

use super::check::{compare, randn, Check};

/// `q` (any shape) dequantised on its device into a dense tensor of `dtype`. Q4_0, Q4_1 and
/// Q4_K into f32/bf16/f16 take the fused path; anything else is candle's dequantisation
/// followed by a conversion.
pub fn dequantize(q: &QTensor, dtype: DType) -> Result<Tensor> {
    let dev = q.device();
    let fused =
        Format::of(q.dtype()).is_some() && matches!(dtype, DType::F32 | DType::BF16 | DType::F16);
    match (&dev, Format::of(q.dtype())) {
        (Device::Cpu, Some(f)) if fused => cpu_dequantize(q, f, dtype),
        #[cfg(feature = "cuda")]
        (Device::Cuda(d), Some(f)) if fused => cuda::dequantize(d, q, f, dtype),
        _ => q.dequantize(&dev)?.to_dtype(dtype),
    }
}

/// The block formats with a fused path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Q4_0,
    Q4_1,
    Q4K,
}

impl Format {
    fn of(dt: GgmlDType) -> Option<Self> {
        match dt {
            GgmlDType::Q4_0 => Some(Self::Q4_0),
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q4K => Some(Self::Q4K),
            _ => None,
        }
    }

    /// Values per block.
    fn block_elems(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 => 32,
            Self::Q4K => 256,
        }
    }

    /// Bytes per block.
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q4K => 144,
        }
    }

    /// The CUDA kernel's base name (`<base>_<dtype>`).
    #[cfg(feature = "cuda")]
    fn kernel(self) -> &'static str {
        match self {
            Self::Q4_0 => "dequant_q4_0",
            Self::Q4_1 => "dequant_q4_1",
            Self::Q4K => "dequant_q4k",
        }
    }

    /// CUDA threads per block (one per byte of packed nibbles).
    fn threads_per_block(self) -> usize {
        self.block_elems() / 2
    }
}

/// The CUDA launch that decodes `n_blocks` blocks of `dtype` (Q4_0, Q4_1 or Q4_K): one thread
/// per byte of packed nibbles, blocks of 256 threads; `None` for other formats.
pub fn launch_shape(dtype: GgmlDType, n_blocks: usize) -> Option<crate::kernels::Launch> {
    Format::of(dtype).map(|f| shape(f, n_blocks))
}

/// Threads per CUDA block of the decoding kernels.
const THREADS: usize = 256;

fn shape(f: Format, n_blocks: usize) -> crate::kernels::Launch {
    crate::kernels::Launch::linear(n_blocks * f.threads_per_block(), THREADS as u32)
}

/// Number of blocks of `q`, checked against the format.
fn n_blocks(q: &QTensor, f: Format) -> Result<usize> {
    let n = q.shape().elem_count();
    if !n.is_multiple_of(f.block_elems()) {
        candle_core::bail!(
            "dequantize: {n} values are not whole {:?} blocks",
            q.dtype()
        );
    }
    let nb = n / f.block_elems();
    let have = q.storage_size_in_bytes();
    if have < nb * f.block_bytes() {
        candle_core::bail!(
            "dequantize: {have} bytes hold fewer than the {nb} {:?} blocks its shape needs",
            q.dtype()
        );
    }
    Ok(nb)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit (scale, min) pair #j of a Q4_K block.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// One block of raw bytes `b` into `y` (`f.block_elems()` values), the same operations as
/// candle's `to_float`.
fn decode_block<T: Copy>(f: Format, b: &[u8], y: &mut [T], conv: impl Fn(f32) -> T) {
    match f {
        Format::Q4_0 => {
            let d = f16_at(b, 0);
            for (j, &x) in b[2..18].iter().enumerate() {
                y[j] = conv(((x & 0xF) as i16 - 8) as f32 * d);
                y[j + 16] = conv(((x >> 4) as i16 - 8) as f32 * d);
            }
        }
        Format::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for (j, &x) in b[4..20].iter().enumerate() {
                y[j] = conv((x & 0xF) as f32 * d + m);
                y[j + 16] = conv((x >> 4) as f32 * d + m);
            }
        }
        Format::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            for g in 0..4 {
                let qs = &b[16 + 32 * g..16 + 32 * (g + 1)];
                let (sc, m) = scale_min_k4(2 * g, scales);
                let (d1, m1) = (d * sc as f32, dmin * m as f32);
                let (sc, m) = scale_min_k4(2 * g + 1, scales);
                let (d2, m2) = (d * sc as f32, dmin * m as f32);
                let y = &mut y[64 * g..64 * (g + 1)];
                for (l, &x) in qs.iter().enumerate() {
                    y[l] = conv(d1 * (x & 0xF) as f32 - m1);
                    y[l + 32] = conv(d2 * (x >> 4) as f32 - m2);
                }
            }
        }
    }
}

fn cpu_decode<T: WithDType>(q: &QTensor, f: Format, conv: fn(f32) -> T) -> Result<Tensor> {
    let nb = n_blocks(q, f)?;
    let data = q.data()?;
    if data.len() < nb * f.block_bytes() {
        candle_core::bail!(
            "dequantize: {} bytes for {nb} {:?} blocks",
            data.len(),
            q.dtype()
        );
    }
    let mut out = vec![T::zero(); nb * f.block_elems()];
    out.par_chunks_mut(f.block_elems())
        .zip(data.par_chunks(f.block_bytes()))
        .for_each(|(y, b)| decode_block(f, b, y, conv));
    Tensor::from_vec(out, q.shape().clone(), &Device::Cpu)
}

fn cpu_dequantize(q: &QTensor, f: Format, dtype: DType) -> Result<Tensor> {
    match dtype {
        DType::F32 => cpu_decode::<f32>(q, f, |x| x),
        DType::BF16 => cpu_decode(q, f, half::bf16::from_f32),
        DType::F16 => cpu_decode(q, f, half::f16::from_f32),
        dt => candle_core::bail!("dequantize: unsupported dtype {dt:?}"),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
    use candle_core::quantized::QTensor;
    use candle_core::{DType, Result, Tensor};

    use super::{n_blocks, Format};
    use crate::kernels::cuda::{by_float_dtype, func, tensor, DEQUANT};

    fn launch<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        q: &QTensor,
        f: Format,
        dtype: DType,
    ) -> Result<Tensor> {
        let nb = n_blocks(q, f)?;
        let n = nb * f.block_elems();
        if (nb * f.threads_per_block()).div_ceil(super::THREADS) > i32::MAX as usize {
            candle_core::bail!("dequantize: {n} values is too many for one launch");
        }
        let func = func(dev, DEQUANT, f.kernel(), Some(dtype))?;
        // SAFETY: the kernel writes every element (one thread per packed byte, two values each).
        let out = unsafe { dev.alloc::<T>(n.max(1))? };
        if nb == 0 {
            return Ok(tensor(out, dev, q.shape().clone()));
        }
        let stream = dev.cuda_stream();
        // The guard keeps the raw blocks alive (and ordered on `stream`) until after the launch.
        let (ptr, guard) = q.device_ptr_with_guard(&stream)?;
        let ptr = ptr as u64;
        let nb_u = nb as u64;
        let cfg = crate::kernels::cuda::config(super::shape(f, nb));
        let mut b = stream.launch_builder(&func);
        b.arg(&ptr).arg(&out).arg(&nb_u);
        // SAFETY: argument types match the kernel's signature (the blocks as a device pointer).
        unsafe { b.launch(cfg) }.w()?;
        drop(guard);
        Ok(tensor(out, dev, q.shape().clone()))
    }

    pub fn dequantize(dev: &CudaDevice, q: &QTensor, f: Format, dtype: DType) -> Result<Tensor> {
        by_float_dtype!(dtype, "dequantize", |E| launch::<E>(dev, q, f, dtype))
    }
}

/// [`dequantize`] on `dev` against candle's CPU `QTensor::dequantize`: Q4_0, Q4_1, Q4_K (and
/// Q8_0, the fallback) into f32, bf16 and f16. The decoding is exact, so every output must
/// equal the reference rounded to its dtype.
pub(crate) fn checks(dev: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    let mut seed = 500;
    for (rows, cols) in [(64, 512), (8, 256)] {
        for fmt in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q4K,
            GgmlDType::Q8_0,
        ] {
            seed += 1;
            let t = randn(seed, &[rows, cols], 1.0, DType::F32, &Device::Cpu)?;
            let qc = QTensor::quantize(&t, fmt)?;
            let want = qc.dequantize(&Device::Cpu)?;
            let qd = if dev.is_cpu() {
                qc
            } else {
                QTensor::new(QStorage::from_data(qc.data()?, dev, fmt)?, qc.shape())?
            };
            for dt in [DType::F32, DType::BF16, DType::F16] {
                let got = dequantize(&qd, dt)?;
                if got.dtype() != dt || !got.device().same_device(dev) {
                    candle_core::bail!("dequantize: got {:?} on {:?}", got.dtype(), got.device());
                }
                let want = want.to_dtype(dt)?.to_dtype(DType::F32)?;
                let case = format!("{rows}x{cols} {fmt:?} -> {dt:?}");
                out.push(compare("dequant", case, &got, &want, 1e-6)?);
            }
        }
    }
    Ok(out)
}
