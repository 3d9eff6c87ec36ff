//! Benchmarks of the engine, run as commands (never as timed unit tests). Every figure
//! counts non-padding tokens only; prompts are random token ids of exactly the requested
//! length, so there is no padding.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cli::BenchInferArgs;
use crate::error::Error;
use crate::model::{ForwardCtx, Model};
use crate::settings::Settings;

/// Result of `bwb bench infer`.
#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub quant: String,
    pub batch_size: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Median over repetitions.
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Milliseconds per decode step (one token for every row).
    pub decode_ms_per_step: f64,
    pub peak_rss_mib: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process (Linux), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One prefill of `(B, L)` random tokens, then `new` greedy decode steps with the cache.
/// Returns (prefill seconds, decode seconds).
fn run_once(model: &Model, dev: &Device, ids: &Tensor, new: usize) -> Result<(f64, f64)> {
    let (b, l) = ids.dims2()?;
    let ctx = ForwardCtx::default();
    let pos = Tensor::arange(0i64, l as i64, dev)?
        .unsqueeze(0)?
        .broadcast_as((b, l))?
        .contiguous()?;
    let mut cache = model.new_cache();
    let t0 = Instant::now();
    let h = model.forward_hidden(ids, &pos, Some(&mut cache), &ctx)?;
    let mut next = model.logits(&h.narrow(1, l - 1, 1)?)?.argmax(2)?; // (B, 1), synchronises
    let _ = next.to_vec2::<u32>()?;
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for step in 0..new {
        let p = Tensor::full((l + step) as i64, (b, 1), dev)?;
        let h = model.forward_hidden(&next, &p, Some(&mut cache), &ctx)?;
        next = model.logits(&h)?.argmax(2)?;
        // The sampled ids go back to the host every step, as in real generation.
        let _ = next.to_vec2::<u32>()?;
    }
    Ok((prefill, t1.elapsed().as_secs_f64()))
}

pub fn infer(settings: &Settings, args: &BenchInferArgs) -> Result<()> {
    if args.batch_size == 0 || args.prompt_len == 0 || args.repeat == 0 {
        return Err(Error::Config(
            "--batch-size, --prompt-len and --repeat must be at least 1".into(),
        )
        .into());
    }
    let m = crate::commands::generate::load_model(settings, &args.engine, None)?;
    let vocab = m.vocab_size().max(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<u32> = (0..args.batch_size * args.prompt_len)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let ids = Tensor::from_vec(ids, (args.batch_size, args.prompt_len), &m.device)?;
    run_once(&m.model, &m.device, &ids, args.new_tokens.min(2))?; // warm-up
    let mut pre = Vec::new();
    let mut dec = Vec::new();
    for _ in 0..args.repeat {
        let (p, d) = run_once(&m.model, &m.device, &ids, args.new_tokens)?;
        pre.push(p);
        dec.push(d);
    }
    let (p, d) = (median(pre), median(dec));
    let r = InferReport {
        model: args.engine.model.clone(),
        device: format!("{:?}", m.device),
        dtype: args.engine.dtype.clone(),
        quant: args
            .engine
            .quant
            .clone()
            .unwrap_or_else(|| "default".into()),
        batch_size: args.batch_size,
        prompt_len: args.prompt_len,
        new_tokens: args.new_tokens,
        prefill_s: p,
        decode_s: d,
        prefill_tok_s: (args.batch_size * args.prompt_len) as f64 / p,
        decode_tok_s: if d > 0.0 {
            (args.batch_size * args.new_tokens) as f64 / d
        } else {
            0.0
        },
        decode_ms_per_step: if args.new_tokens > 0 {
            1000.0 * d / args.new_tokens as f64
        } else {
            0.0
        },
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "bench infer: {} {} {} quant={} B={} L={} new={}: prefill {:.0} tok/s ({:.3} s), decode {:.1} tok/s ({:.1} ms/step), peak RSS {} MiB",
            r.model,
            r.device,
            r.dtype,
            r.quant,
            r.batch_size,
            r.prompt_len,
            r.new_tokens,
            r.prefill_tok_s,
            r.prefill_s,
            r.decode_tok_s,
            r.decode_ms_per_step,
            r.peak_rss_mib.map(|x| format!("{x:.0}")).unwrap_or_else(|| "?".into())
        );
    }
    Ok(())
}
