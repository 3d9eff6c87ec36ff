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

pub fn run(args: &BenchKernelsArgs) -> Result<()> {
    let dev = crate::commands::generate::device(args.device.as_deref())?;
    let dtype = crate::commands::generate::dtype(&args.dtype)?;
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
        for t in timings(&dev, dtype, args.tokens, args.repeat)? {
            if args.json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                println!(
                    "time  {:<14} {:<26} {:>5} fwd {:>8.3} ms vs {:>8.3} ms composed; fwd+bwd {:>8.3} ms vs {:>8.3} ms ({:.2}x)",
                    t.op, t.shape, t.dtype, t.fused_fwd_ms, t.composed_fwd_ms, t.fused_fwd_bwd_ms, t.composed_fwd_bwd_ms, t.speedup
                );
            }
        }
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

/// Fused vs composed at Qwen3-8B's widths (hidden 4096, 32 query heads of 128) for `tokens`
/// tokens.
pub fn timings(
    dev: &Device,
    dtype: DType,
    tokens: usize,
    repeat: usize,
) -> Result<Vec<KernelTiming>> {
    let mut out = Vec::new();
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
    Ok(out)
}
