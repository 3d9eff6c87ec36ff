//! Fused ops for the hot paths of QLoRA training and batched inference, each with a CPU
//! implementation (the reference, and what CPU runs use) and a CUDA kernel from `kernels/`
//! (compiled to PTX by build.rs with nvcc when the `cuda` feature is on, loaded once per
//! device). `tests/it/kernels.rs` checks every CPU implementation against the composed
//! candle ops it replaces (values and gradients) and, where a GPU is present, every CUDA
//! kernel against its CPU implementation.
//!
//! - [`rmsnorm`]: RMSNorm forward + input-gradient backward in one pass each.
//! - [`rope`]: rotary embedding (rotate-half layout, partial rotary) forward + backward.
//! - [`attention`]: attention over positions (causal, padding, sliding window, soft-cap,
//!   grouped KV heads) that never materialises the `L × T` score matrix, forward + backward.
//! - [`cross_entropy`]: answer-token cross-entropy over the full vocabulary in row chunks, with
//!   the gradient to the hidden states computed in the same pass (no `(N, V)` graph).
//! - [`dequant`]: ggml 4-bit blocks (Q4_0, Q4_1, Q4_K) straight to bf16/f16/f32.

pub mod attention;
pub mod check;
pub mod cross_entropy;
pub mod dequant;
pub mod rmsnorm;
pub mod rope;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Which fused paths are on, resolved once by settings.rs (`BWB_KERNELS`,
/// `BWB_ATTENTION_TC`) and set for the process by [`configure`]: the ops choose inside
/// every forward, where no settings travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSwitches {
    /// The fused ops (default) or the composed candle ops they replace (A/B benchmarks, an
    /// escape hatch).
    pub fused: bool,
    /// The CUDA attention forward on tensor cores where it can (default), or on CUDA cores.
    pub attention_tensor_cores: bool,
}

impl Default for KernelSwitches {
    fn default() -> Self {
        Self {
            fused: true,
            attention_tensor_cores: true,
        }
    }
}

static FUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static ATTENTION_TC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Set the process's kernel switches (bwb does it once, right after resolving settings;
/// library users that never call it get the defaults).
pub fn configure(s: KernelSwitches) {
    use std::sync::atomic::Ordering::Relaxed;
    FUSED.store(s.fused, Relaxed);
    ATTENTION_TC.store(s.attention_tensor_cores, Relaxed);
}

/// Whether the models use the fused ops (see [`KernelSwitches::fused`]).
pub fn enabled() -> bool {
    FUSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the CUDA attention may use tensor cores (see
/// [`KernelSwitches::attention_tensor_cores`]).
pub fn attention_tensor_cores() -> bool {
    ATTENTION_TC.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    static FORCE_FUSED_ATTENTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with every attention call on this thread taking the fused path, whatever the
/// device and size (tests: the CPU normally keeps small attentions on the composed path).
pub fn with_fused_attention<R>(f: impl FnOnce() -> R) -> R {
    let before = FORCE_FUSED_ATTENTION.with(|c| c.replace(true));
    let out = f();
    FORCE_FUSED_ATTENTION.with(|c| c.set(before));
    out
}

/// Whether [`with_fused_attention`] is in force on this thread.
pub fn fused_attention_forced() -> bool {
    FORCE_FUSED_ATTENTION.with(|c| c.get())
}

/// The contiguous element range of `layout`, or an error naming the op.
pub(crate) fn contiguous(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))
}

/// A kernel launch shape: grid and block dimensions and bytes of dynamic shared memory. The
/// CUDA code launches with these; `tests/it/kernels_emu.rs` launches the kernel sources under
/// the CPU emulation (kernels/emu/) with the same shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub smem: u32,
}

impl Launch {
    /// One block of `threads` per row.
    pub fn rows(n_rows: usize, threads: u32) -> Self {
        Self {
            grid: [n_rows as u32, 1, 1],
            block: [threads, 1, 1],
            smem: 0,
        }
    }

    /// `n` threads in blocks of `threads`, one dimension.
    pub fn linear(n: usize, threads: u32) -> Self {
        Self::rows(n.div_ceil(threads as usize), threads)
    }
}

/// Threads per row-block for a row of `n` elements: a multiple of 32, at most 1024.
pub fn threads_for(n: usize) -> u32 {
    (n.div_ceil(4)).next_multiple_of(32).clamp(32, 1024) as u32
}

#[cfg(feature = "cuda")]
pub(crate) mod cuda {
    //! PTX modules and launch helpers (CUDA builds only).
    use candle_core::cuda_backend::cudarc::driver::{
        CudaFunction, CudaSlice, DeviceRepr, LaunchConfig,
    };
    use candle_core::cuda_backend::{CudaDevice, CudaStorage};
    use candle_core::op::BackpropOp;
    use candle_core::{DType, Result, Shape, Storage, Tensor};

    macro_rules! ptx {
        ($name:literal) => {
            include_str!(concat!(env!("OUT_DIR"), "/kernels/", $name, ".ptx"))
        };
    }
    pub const RMSNORM: (&str, &str) = ("bwb_rmsnorm", ptx!("rmsnorm"));
    pub const ROPE: (&str, &str) = ("bwb_rope", ptx!("rope"));
    pub const ATTENTION: (&str, &str) = ("bwb_attention", ptx!("attention"));
    pub const ATTENTION_TC: (&str, &str) = ("bwb_attention_tc", ptx!("attention_tc"));
    pub const CROSS_ENTROPY: (&str, &str) = ("bwb_cross_entropy", ptx!("cross_entropy"));
    pub const DEQUANT: (&str, &str) = ("bwb_dequant", ptx!("dequant"));

    /// `$body` with the type alias `$t` bound to the Rust element type of float dtype `$dt`
    /// (f32, bf16, f16); other dtypes are an error naming `$op`.
    macro_rules! by_float_dtype {
        ($dt:expr, $op:expr, |$t:ident| $body:expr) => {
            match $dt {
                candle_core::DType::F32 => {
                    type $t = f32;
                    $body
                }
                candle_core::DType::BF16 => {
                    type $t = half::bf16;
                    $body
                }
                candle_core::DType::F16 => {
                    type $t = half::f16;
                    $body
                }
                dt => candle_core::bail!("{}: unsupported dtype {dt:?}", $op),
            }
        };
    }
    pub(crate) use by_float_dtype;

    /// `base_<dtype>` from `module`, loaded into `dev` on first use. Launch it with
    /// `dev.cuda_stream().launch_builder(&f)`.
    pub fn func(
        dev: &CudaDevice,
        module: (&str, &str),
        base: &str,
        dtype: Option<DType>,
    ) -> Result<CudaFunction> {
        let name = match dtype {
            None => base.to_string(),
            Some(DType::F32) => format!("{base}_f32"),
            Some(DType::BF16) => format!("{base}_bf16"),
            Some(DType::F16) => format!("{base}_f16"),
            Some(dt) => candle_core::bail!("{base}: no kernel for {dt:?}"),
        };
        Ok(dev
            .get_or_load_custom_func(&name, module.0, module.1)?
            .into_cuda_function())
    }

    /// A fresh (graph-less) tensor owning `slice`.
    pub fn tensor<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
        slice: CudaSlice<T>,
        dev: &CudaDevice,
        shape: impl Into<Shape>,
    ) -> Tensor {
        let storage = CudaStorage::wrap_cuda_slice(slice, dev.clone());
        Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
    }

    /// cudarc's form of a [`Launch`](super::Launch).
    pub fn config(l: super::Launch) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: l.smem,
        }
    }
}

/// A float element the CPU implementations read and write, computing in f32.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    fn f(self) -> f32;
    fn of(v: f32) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
    #[inline(always)]
    fn of(v: f32) -> Self {
        v
    }
}

impl Elem for half::bf16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn of(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

impl Elem for half::f16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn of(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// Run `$body` with `$x` bound to the contiguous `&[T]` of CPU storage `$s` (f32, bf16, f16)
/// and `$wrap` to the `CpuStorage` constructor of the same dtype.
macro_rules! with_cpu_slice {
    ($s:expr, $l:expr, $op:expr, |$x:ident, $wrap:ident| $body:expr) => {{
        let (a, b) = $crate::kernels::contiguous($l, $op)?;
        match $s {
            candle_core::CpuStorage::F32(v) => {
                let $x = &v[a..b];
                let $wrap = candle_core::CpuStorage::F32;
                $body
            }
            candle_core::CpuStorage::BF16(v) => {
                let $x = &v[a..b];
                let $wrap = candle_core::CpuStorage::BF16;
                $body
            }
            candle_core::CpuStorage::F16(v) => {
                let $x = &v[a..b];
                let $wrap = candle_core::CpuStorage::F16;
                $body
            }
            other => candle_core::bail!(
                "{}: unsupported dtype {:?}",
                $op,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    }};
}
pub(crate) use with_cpu_slice;

/// An f32 copy of a contiguous CPU storage range (f32, bf16 or f16).
pub(crate) fn cpu_f32(s: &CpuStorage, l: &Layout, op: &str) -> Result<Vec<f32>> {
    let (a, b) = contiguous(l, op)?;
    Ok(match s {
        CpuStorage::F32(v) => v[a..b].to_vec(),
        CpuStorage::BF16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        CpuStorage::F16(v) => v[a..b].iter().map(|x| x.to_f32()).collect(),
        other => candle_core::bail!("{op}: unsupported dtype {:?}", other.dtype()),
    })
}

/// CPU storage of `dtype` holding `v` (rounded from f32 once).
pub(crate) fn cpu_from_f32(v: Vec<f32>, dtype: DType) -> Result<CpuStorage> {
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(v),
        DType::BF16 => CpuStorage::BF16(v.into_iter().map(half::bf16::from_f32).collect()),
        DType::F16 => CpuStorage::F16(v.into_iter().map(half::f16::from_f32).collect()),
        dt => candle_core::bail!("unsupported dtype {dt:?}"),
    })
}

/// A tensor's values as a flat f32 vector (CPU paths and tests).
pub(crate) fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}
