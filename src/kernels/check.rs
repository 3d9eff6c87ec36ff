//! Kernel checks: every fused op run on a device against the composed candle ops it replaces,
//! computed on the CPU in f32 (values and gradients). On the CPU this checks the CPU
//! implementations; on a GPU it checks the CUDA kernels. Used by tests/it/kernels.rs and by
//! `bwb bench kernels`, which is how the GPU machine (no Rust there) runs them.

use candle_core::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// One compared output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub kernel: &'static str,
    pub case: String,
    /// `max |got − want| / rms(want)`.
    pub err: f64,
    pub tol: f64,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.err <= self.tol
    }
}

/// Compare `got` (any device/dtype) with `want` (the f32 reference).
pub fn compare(
    kernel: &'static str,
    case: String,
    got: &Tensor,
    want: &Tensor,
    tol: f64,
) -> Result<Check> {
    if got.dims() != want.dims() {
        candle_core::bail!(
            "{kernel} {case}: shape {:?} != reference {:?}",
            got.dims(),
            want.dims()
        );
    }
    let g = super::to_f32_vec(got)?;
    let w = super::to_f32_vec(want)?;
    let rms = (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len().max(1) as f64).sqrt();
    let mut max = 0f64;
    for (a, b) in g.iter().zip(&w) {
        let d = (*a as f64 - *b as f64).abs();
        // NaN anywhere fails the check.
        if d.is_nan() {
            max = f64::NAN;
            break;
        }
        max = max.max(d);
    }
    Ok(Check {
        kernel,
        case,
        err: max / rms.max(1e-12),
        tol,
    })
}

/// Tolerance for an output computed in `dtype` (relative to the reference's RMS).
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        _ => 4e-2,
    }
}

/// Deterministic N(0, std²) tensor of `shape` in `dtype` on `dev`.
pub fn randn(seed: u64, shape: &[usize], std: f32, dtype: DType, dev: &Device) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)
}

/// The checks of one kernel (`rms_norm`, `rope`, `attention`, `cross_entropy`, `dequant`).
pub fn run_kernel(kernel: &str, dev: &Device) -> Result<Vec<Check>> {
    match kernel {
        "rms_norm" => super::rmsnorm::checks(dev),
        "rope" => super::rope::checks(dev),
        "attention" => super::attention::checks(dev),
        "cross_entropy" => super::cross_entropy::checks(dev),
        "dequant" => super::dequant::checks(dev),
        other => candle_core::bail!("unknown kernel `{other}`; valid: {}", KERNELS.join(", ")),
    }
}

/// The kernels, in check order.
pub const KERNELS: [&str; 5] = ["rms_norm", "rope", "attention", "cross_entropy", "dequant"];

/// Every kernel's checks on `dev`.
pub fn run(dev: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for k in KERNELS {
        out.extend(run_kernel(k, dev)?);
    }
    Ok(out)
}
