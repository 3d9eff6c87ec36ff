//! `bwb bench kernels`: first the kernel checks (every fused op against the composed candle
//! ops it replaces, on the chosen device: on a GPU this is the CUDA-vs-reference test run,
//! since the GPU machine has no Rust toolchain), then the time of each fused op against the
//! composed ops on the same device, forward and forward + backward, at a Qwen3-8B-like shape.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;

use crate::cli::BenchKernelsArgs;
use crate::kernels::check::{self, randn, Check};
use crate::model::device::DeviceSpec;
use crate::model::ops::{RmsNorm, Rotary};

/// One timed op: fused vs composed, same inputs and device.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTiming {
    pub op: String,
    pub shape: String,
    pub dtype: String,
    pub device: String,
    pub fused_fwd_ms: f64,
    pub composed_fwd_ms: f64,
    pub fused_fwd_bwd_ms: f64,
    pub composed_fwd_bwd_ms: f64,
    /// composed / fused, forward + backward.
    pub speedup: f64,
}

/// Check and time on `device` (`--device`), timing inputs of `dtype` (`--dtype`).
pub fn run(args: &BenchKernelsArgs, device: DeviceSpec, dtype: DType) -> Result<()> {
    let dev = device.open()?;
    let dev_name = format!("{:?}", dev.location());
    let checks = check::run(&dev)?;
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok()).collect();
    for c in &checks {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&serde_json::json!({"check": c, "ok": c.ok()}))?
            );
        } else {
            let verdict = if c.ok() { "ok" } else { "FAIL" };
            println!(
                "check {:<14} {:<34} err {:>9.2e} (tol {:.0e}) {verdict}",
                c.kernel, c.case, c.err, c.tol
            );
        }
    }
    if !args.no_timing {
        let json = args.json;
        timings(&dev, dtype, args.tokens, args.repeat, &mut |t| {
            if json {
                println!("{}", serde_json::to_string(t).unwrap_or_default());
            } else {
                println!(
                    "time  {:<14} {:<26} {:>5} fwd {:>8.3} ms vs {:>8.3} ms composed; fwd+bwd {:>8.3} ms vs {:>8.3} ms ({:.2}x)",
                    t.op, t.shape, t.dtype, t.fused_fwd_ms, t.composed_fwd_ms, t.fused_fwd_bwd_ms, t.composed_fwd_bwd_ms, t.speedup
                );
            }
        })?;
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} kernel checks failed on {dev_name} (listed above)",
            failed.len(),
            checks.len()
        );
    }
    Ok(())
}

/// Median milliseconds of `f` over `repeat` runs after one warm-up, synchronising `dev`.
fn time_ms(
    dev: &Device,
    repeat: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut v = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Forward and forward+backward time of `fused` and `composed` on a tracked input `x`
/// (loss: the sum of the output in f32).
fn pair(
    dev: &Device,
    repeat: usize,
    x: &Var,
    fused: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    composed: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<[f64; 4]> {
    let t = x.as_tensor();
    let fwd = |f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>| {
        time_ms(dev, repeat, || f(&t.detach()).map(|_| ()))
    };
    let both = |f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>| {
        time_ms(dev, repeat, || {
            f(t)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .backward()
                .map(|_| ())
        })
    };
    Ok([fwd(fused)?, fwd(composed)?, both(fused)?, both(composed)?])
}

fn timing(op: &str, shape: String, dtype: DType, dev: &Device, t: [f64; 4]) -> KernelTiming {
    KernelTiming {
        op: op.into(),
        shape,
        dtype: format!("{dtype:?}").to_lowercase(),
        device: format!("{:?}", dev.location()),
        fused_fwd_ms: t[0],
        composed_fwd_ms: t[1],
        fused_fwd_bwd_ms: t[2],
        composed_fwd_bwd_ms: t[3],
        speedup: t[3] / t[2],
    }
}

/// Hands each timing to the caller as soon as it is measured.
struct Reporter<'a>(&'a mut dyn FnMut(&KernelTiming));

impl Reporter<'_> {
    fn push(&mut self, t: KernelTiming) {
        (self.0)(&t);
    }
}

/// Fused vs composed at Qwen3-8B's widths (hidden 4096, 32 query heads of 128 on 8 KV heads,
/// vocabulary 151 936) for `tokens` tokens.
pub fn timings(
    dev: &Device,
    dtype: DType,
    tokens: usize,
    repeat: usize,
    report: &mut dyn FnMut(&KernelTiming),
) -> Result<()> {
    let mut out = Reporter(report);
    let (hidden, heads, head_dim) = (4096usize, 32usize, 128usize);
    // RMSNorm over the hidden size.
    let x = Var::from_tensor(&randn(1, &[tokens, hidden], 1.0, dtype, dev)?)?;
    let w = (randn(2, &[hidden], 0.1, DType::F32, dev)? + 1.0)?;
    let norm = RmsNorm::new(w, 1e-6, false)?;
    let t = pair(dev, repeat, &x, &|x| norm.forward(x), &|x| {
        norm.forward_composed(x)
    })?;
    out.push(timing(
        "rms_norm",
        format!("{tokens}x{hidden}"),
        dtype,
        dev,
        t,
    ));
    // RoPE on the query heads, one row of `tokens` positions.
    let rot = Rotary::new(1_000_000.0, head_dim, None, 1.0, dev)?;
    let pos = Tensor::arange(0i64, tokens as i64, dev)?.reshape((1, tokens))?;
    let (cos, sin) = rot.cos_sin(&pos)?;
    let q = Var::from_tensor(&randn(3, &[1, heads, tokens, head_dim], 1.0, dtype, dev)?)?;
    let t = pair(dev, repeat, &q, &|x| rot.apply(x, &cos, &sin), &|x| {
        rot.apply_composed(x, &cos, &sin)
    })?;
    out.push(timing(
        "rope",
        format!("1x{heads}x{tokens}x{head_dim}"),
        dtype,
        dev,
        t,
    ));
    // Causal attention, 32 query heads on 8 KV heads, one row of `tokens` (q is the tracked
    // input; k and v are fixed).
    let kv_heads = 8;
    let k = randn(4, &[1, kv_heads, tokens, head_dim], 1.0, dtype, dev)?;
    let v = randn(5, &[1, kv_heads, tokens, head_dim], 1.0, dtype, dev)?;
    let mask = crate::model::ops::attention_mask(&pos, &pos, None)?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let t = pair(
        dev,
        repeat,
        &q,
        &|x| crate::kernels::attention::attention(x, &k, &v, &pos, &pos, None, scale, None),
        &|x| crate::model::ops::attention(x, &k, &v, &mask, scale, None),
    )?;
    let attn_shape = format!("1x{heads}/{kv_heads}x{tokens}x{head_dim} causal");
    let tc = dev.is_cuda() && crate::kernels::attention::tensor_core_forward(dtype, head_dim);
    let name = if tc {
        "attention (tensor-core forward)"
    } else {
        "attention"
    };
    out.push(timing(name, attn_shape.clone(), dtype, dev, t));
    if tc {
        // The same on the CUDA-core forward kernel, for the A/B.
        let t = crate::kernels::attention::without_tensor_cores(|| {
            pair(
                dev,
                repeat,
                &q,
                &|x| crate::kernels::attention::attention(x, &k, &v, &pos, &pos, None, scale, None),
                &|x| crate::model::ops::attention(x, &k, &v, &mask, scale, None),
            )
        })?;
        out.push(timing(
            "attention (CUDA-core forward)",
            attn_shape,
            dtype,
            dev,
            t,
        ));
    }
    // Answer-token cross-entropy: `tokens` rows over Qwen3's 151 936-token vocabulary.
    let vocab = 151_936;
    // Generated on the device (curand on a GPU): 622 M values.
    let head = Tensor::randn(0f32, 0.02, (vocab, hidden), dev)?.to_dtype(dtype)?;
    let h = Var::from_tensor(&randn(7, &[tokens, hidden], 1.0, dtype, dev)?)?;
    let ids: Vec<u32> = (0..tokens as u32)
        .map(|i| (i * 7919) % vocab as u32)
        .collect();
    let targets = Tensor::from_vec(ids, tokens, dev)?;
    let chunk = crate::kernels::cross_entropy::default_chunk_rows(vocab);
    let t = pair(
        dev,
        repeat,
        &h,
        &|x| crate::kernels::cross_entropy::cross_entropy_sum(x, &head, &targets, None, chunk),
        &|x| {
            let z = crate::model::linear::matmul_t(x, &head)?.to_dtype(DType::F32)?;
            let logp = candle_nn::ops::log_softmax(&z, candle_core::D::Minus1)?;
            logp.gather(&targets.unsqueeze(1)?, 1)?.sum_all()?.neg()
        },
    )?;
    out.push(timing(
        "cross_entropy",
        format!("{tokens}x{hidden}->{vocab}"),
        dtype,
        dev,
        t,
    ));
    // Dequantising a Qwen3-8B MLP matrix (12 288 × 4096, Q4_K) to the compute dtype: timed as
    // the forward; the composed column is candle's f32 dequantisation + cast.
    let wq = candle_core::quantized::QTensor::quantize_onto(
        &randn(8, &[12_288, hidden], 0.02, DType::F32, &Device::Cpu)?,
        candle_core::quantized::GgmlDType::Q4K,
        dev,
    )?;
    let fused = time_ms(dev, repeat, || {
        crate::kernels::dequant::dequantize(&wq, dtype).map(|_| ())
    })?;
    let composed = time_ms(dev, repeat, || {
        wq.dequantize(dev)?.to_dtype(dtype).map(|_| ())
    })?;
    out.push(timing(
        "dequant q4k",
        format!("12288x{hidden}"),
        dtype,
        dev,
        [fused, composed, fused, composed],
    ));
    Ok(())
}
