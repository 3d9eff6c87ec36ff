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

/// Result of `bwb bench train`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub quant: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub rank: usize,
    pub steps: usize,
    pub trainable_params: usize,
    /// Median seconds per optimizer step (forward, backward, clip, AdamW).
    pub step_s: f64,
    /// Tokens per second; every token is a real (non-padding) token.
    pub tokens_per_s: f64,
    /// Approximate FLOPs of one step (see [`train_flops`]), when the model's shape is known.
    pub step_gflop: Option<f64>,
    pub gflop_per_s: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

/// FLOPs of one LoRA training step over `b` rows of `l` tokens, for the Qwen3/Llama
/// decoder: `4·N·T` for the frozen matmul weights N (2 forward + 2 for the input gradient;
/// no weight gradient, so not the dense-training `6·N·T`), `6·N_lora·T` for the adapters,
/// and attention `3 × 4·L·heads·head_dim` per token and layer (QKᵀ and AV forward, twice
/// that backward; the full L×L product, as the engine computes it). Embedding lookups,
/// norms and element-wise ops are left out.
pub fn train_flops(cfg: &crate::model::qwen3::Config, lora: usize, b: usize, l: usize) -> f64 {
    let (h, i, d) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.head_dim() as f64,
    );
    let (nh, kv) = (
        cfg.num_attention_heads as f64,
        cfg.num_key_value_heads as f64,
    );
    let per_layer = h * nh * d * 2.0 + h * kv * d * 2.0 + 3.0 * h * i;
    let n = cfg.num_hidden_layers as f64 * per_layer + cfg.vocab_size as f64 * h;
    let t = (b * l) as f64;
    let attn = 3.0 * 4.0 * l as f64 * nh * d * cfg.num_hidden_layers as f64;
    4.0 * n * t + 6.0 * lora as f64 * t + attn * t
}

/// LoRA target modules for the model's architecture.
fn targets_for(settings: &Settings, spec: &str) -> Result<Vec<String>> {
    use crate::model::load::{self, ModelSource};
    let (src, _) = load::resolve(spec, &settings.configs, &settings.hub)?;
    let arch = match &src {
        ModelSource::Dir(d) => {
            let p = d.join("config.json");
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Error::MissingInput(format!("cannot read {}: {e}", p.display())))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::BadFile {
                path: p.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
            load::arch_of(&v, &p)?
        }
        ModelSource::Gguf(_) => crate::config::Arch::Llama,
        ModelSource::Random { arch, .. } => *arch,
    };
    let names: &[&str] = match arch {
        crate::config::Arch::Phi3 => &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        _ => &[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    };
    Ok(names.iter().map(|s| s.to_string()).collect())
}

/// A few LoRA optimizer steps on random tokens of exactly `seq_len` (loss on every
/// position), timed step by step.
pub fn train(settings: &Settings, args: &crate::cli::BenchTrainArgs) -> Result<()> {
    use crate::train::batch::{make_batch, Tokenized};
    use crate::train::{optim, validate};
    if args.batch_size == 0 || args.seq_len < 2 || args.steps == 0 || args.rank == 0 {
        return Err(Error::Config(
            "--batch-size, --steps and --rank must be at least 1, --seq-len at least 2".into(),
        )
        .into());
    }
    let plan = crate::model::weights::LoraPlan {
        r: args.rank,
        alpha: 2.0 * args.rank as f64,
        dropout: 0.0,
        use_rslora: false,
        target_modules: targets_for(settings, &args.engine.model)?,
        init_seed: 0,
        adapter: None,
    };
    // QLoRA, as `bwb train`: a 4-bit base unless asked otherwise.
    let mut engine = args.engine.clone();
    engine.quant = Some(engine.quant.unwrap_or_else(|| "q4k".into()));
    let m = crate::commands::generate::load_model(settings, &engine, Some(plan))?;
    let params: Vec<candle_core::Var> = m
        .lora_vars
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect();
    let trainable: usize = params.iter().map(|p| p.elem_count()).sum();
    let mut opt = optim::AdamW::new(params.clone(), 0.0)?;
    let vocab = m.vocab_size().max(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let rows: Vec<Tokenized> = (0..args.batch_size)
        .map(|_| Tokenized {
            ids: (0..args.seq_len)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect(),
            n_prompt: 0,
        })
        .collect();
    let refs: Vec<&Tokenized> = rows.iter().collect();
    let batch = make_batch(&refs, m.pad_id, &m.device)?;
    let ctx = ForwardCtx {
        train: true,
        seed: 0,
    };
    let mut times = Vec::new();
    for step in 0..=args.steps {
        let t0 = Instant::now();
        let loss = validate::batch_loss(&m, &batch, &ctx, batch.n_targets as f64)?;
        let grads = loss.backward()?;
        let mut g: Vec<Tensor> = params
            .iter()
            .map(|p| match grads.get(p.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => p.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?;
        optim::clip(&mut g, 1.0)?;
        opt.step(&g, 1e-4)?;
        let _ = loss.to_scalar::<f32>()?; // synchronises the device
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step_s = median(times);
    let tokens = (args.batch_size * args.seq_len) as f64;
    let cfg = match &m.model {
        Model::Qwen3(x) | Model::Llama(x) => Some(&x.cfg),
        _ => None,
    };
    let flops = cfg.map(|c| train_flops(c, trainable, args.batch_size, args.seq_len));
    let r = TrainReport {
        model: args.engine.model.clone(),
        device: format!("{:?}", m.device),
        dtype: args.engine.dtype.clone(),
        quant: engine.quant.clone().unwrap_or_default(),
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        rank: args.rank,
        steps: args.steps,
        trainable_params: trainable,
        step_s,
        tokens_per_s: tokens / step_s,
        step_gflop: flops.map(|f| f / 1e9),
        gflop_per_s: flops.map(|f| f / 1e9 / step_s),
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "bench train: {} {} {} quant={} B={} L={} r={} ({} trainable): {:.3} s/step, {:.0} tok/s, {} GFLOP/step, {} GFLOP/s, peak RSS {} MiB",
            r.model,
            r.device,
            r.dtype,
            r.quant,
            r.batch_size,
            r.seq_len,
            r.rank,
            r.trainable_params,
            r.step_s,
            r.tokens_per_s,
            r.step_gflop.map(|x| format!("{x:.1}")).unwrap_or_else(|| "?".into()),
            r.gflop_per_s.map(|x| format!("{x:.1}")).unwrap_or_else(|| "?".into()),
            r.peak_rss_mib.map(|x| format!("{x:.0}")).unwrap_or_else(|| "?".into())
        );
    }
    Ok(())
}
