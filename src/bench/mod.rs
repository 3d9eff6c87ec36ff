//! Benchmarks of the engine, run as commands (never as timed unit tests). Every figure
//! counts non-padding tokens only; prompts are random token ids of exactly the requested
//! length, so there is no padding.

pub mod compress;
pub mod kernels;
pub mod serve;

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cli::{BenchInferArgs, RandomWeightArgs};
use crate::error::Error;
use crate::model::device::dtype_name;
use crate::model::load::{self, LoadOptions, LoadedModel, ShapeOverrides};
use crate::model::weights::LoraPlan;
use crate::model::{ForwardCtx, Model, QuantFormat};
use crate::settings::{BaseStorage, EngineSettings, Settings};

/// Result of `bwb bench infer`, one per batch size.
#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    pub model: String,
    /// Built from the config's `shape:` with random weights (`--random-weights`).
    pub random_weights: bool,
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
    pub dims: Dims,
    /// Bytes of frozen weights a decode step reads (see [`weight_bytes`]); known for
    /// `--random-weights` models, whose storage is exactly what the flags ask.
    pub weight_bytes: Option<f64>,
    /// Unix seconds around this batch size's warm-up and timed runs, to line up external
    /// samplers (GPU memory) with the row.
    pub t_start: f64,
    pub t_end: f64,
    /// What differs from the real checkpoint, when anything does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The matmul shape of a decoder, for FLOP and byte counts.
#[derive(Debug, Clone, Serialize)]
pub struct Dims {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// Frozen matmul weights of the decoder layers (q, k, v, o, gate, up, down).
    pub layer_params: usize,
    /// The LM head, V × H: multiplied whether tied to the embedding or not.
    pub head_params: usize,
}

impl Dims {
    pub fn of(model: &Model) -> Self {
        let crate::model::Shape {
            layers,
            hidden,
            intermediate,
            heads,
            kv_heads,
            head_dim,
            vocab,
        } = model.decoder().shape();
        // q and o: H × heads·D; k and v: H × kv·D; gate, up, down: H × I.
        let per_layer = 2 * hidden * heads * head_dim
            + 2 * hidden * kv_heads * head_dim
            + 3 * hidden * intermediate;
        Self {
            layers,
            hidden,
            intermediate,
            heads,
            kv_heads,
            head_dim,
            vocab,
            layer_params: layers * per_layer,
            head_params: vocab * hidden,
        }
    }

    /// Every matmul weight a token passes through: the N of the FLOP formulas.
    pub fn matmul_params(&self) -> usize {
        self.layer_params + self.head_params
    }
}

/// Bytes of frozen weights one decode step reads: the layers' matrices in their storage
/// (ggml blocks: 4.5 bits per weight for q4k and q4_0, 5 for q4_1) and the LM head in the
/// compute dtype. The embedding gather (a few rows) is left out.
pub fn weight_bytes(dims: &Dims, quant: Option<QuantFormat>, dtype: candle_core::DType) -> f64 {
    let per_weight = match quant {
        Some(f) => {
            let g = f.ggml_dtype(dims.hidden);
            g.type_size() as f64 / g.block_size() as f64
        }
        None => dtype.size_in_bytes() as f64,
    };
    dims.layer_params as f64 * per_weight + dims.head_params as f64 * dtype.size_in_bytes() as f64
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Load the bench's model: the checkpoint `--model` names, or with `--random-weights` its
/// config's published shape with random weights (nothing downloaded). Returns the model and
/// a note on what differs from the real checkpoint.
fn load_bench_model(
    settings: &Settings,
    model: &str,
    engine: &EngineSettings,
    random: &RandomWeightArgs,
    lora: Option<LoraPlan>,
) -> Result<(LoadedModel, Option<String>)> {
    if !random.random_weights {
        let m = load::load_named(model, &settings.configs, &settings.hub, engine, lora)?;
        return Ok((m, None));
    }
    let opts = LoadOptions {
        device: engine.device.open()?,
        dtype: engine.dtype,
        quant: quant_of(engine.storage),
        dense_gguf: false,
        lora,
        quant_cache: None,
        record: None,
    };
    let (arch, cfg) = random_shape(settings, model, random)?;
    let m = load::load_random_shape(arch, &cfg, 0, &opts)?;
    let mut notes = vec!["random weights in the shape of the model config's `shape:`".to_string()];
    if random.layers.is_some() || random.vocab.is_some() {
        notes.push("scaled down with --layers/--vocab".into());
    }
    Ok((m, Some(notes.join("; "))))
}

/// The 4-bit format of a random-weight model's layers (dense unless `--quant` names one).
fn quant_of(storage: BaseStorage) -> Option<QuantFormat> {
    match storage {
        BaseStorage::Quantized(f) => Some(f),
        BaseStorage::AsStored | BaseStorage::Dense => None,
    }
}

/// The `quant` a report names: a random-weight model is dense unless `--quant` says
/// otherwise; a checkpoint without `--quant` runs as stored (`default`).
fn quant_label(engine: &EngineSettings, random: bool) -> String {
    match engine.storage {
        BaseStorage::AsStored if random => "none".into(),
        s => s.name().into(),
    }
}

fn random_shape(
    settings: &Settings,
    model: &str,
    random: &RandomWeightArgs,
) -> Result<(crate::config::Arch, serde_json::Value)> {
    let ov = ShapeOverrides {
        layers: random.layers,
        vocab: random.vocab,
    };
    Ok(load::random_shape(model, &settings.configs, ov)?)
}

/// Token ids for random prompts: the model's embedding rows (random weights), else the
/// tokenizer's vocabulary.
fn id_range(m: &LoadedModel, random: bool, dims: &Dims) -> u32 {
    let v = if random { dims.vocab } else { m.vocab_size() };
    v.max(2) as u32
}

fn check_batch_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(Error::Config("--batch-size: every size must be at least 1".into()).into());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A report's peak RSS as printed (`?` where unknown).
fn rss_text(mib: Option<f64>) -> String {
    mib.map(|x| format!("{x:.0}")).unwrap_or_else(|| "?".into())
}

/// A report's note as printed: ` (note)`, or nothing.
fn note_text(note: &Option<String>) -> String {
    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
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

pub fn infer(settings: &Settings, args: &BenchInferArgs, engine: &EngineSettings) -> Result<()> {
    check_batch_sizes(&args.batch_size)?;
    if args.prompt_len == 0 || args.repeat == 0 {
        return Err(Error::Config("--prompt-len and --repeat must be at least 1".into()).into());
    }
    let (m, note) = load_bench_model(
        settings,
        &args.bench.model,
        engine,
        &args.bench.random,
        None,
    )?;
    let dims = Dims::of(&m.model);
    let wbytes = if args.bench.random.random_weights {
        Some(weight_bytes(&dims, quant_of(engine.storage), m.dtype))
    } else {
        None
    };
    let vocab = id_range(&m, args.bench.random.random_weights, &dims);
    for &batch in &args.batch_size {
        let t_start = unix_now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let ids: Vec<u32> = (0..batch * args.prompt_len)
            .map(|_| rng.random_range(0..vocab))
            .collect();
        let ids = Tensor::from_vec(ids, (batch, args.prompt_len), &m.device)?;
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
            model: args.bench.model.clone(),
            random_weights: args.bench.random.random_weights,
            device: format!("{:?}", m.device),
            dtype: dtype_name(engine.dtype).into(),
            quant: quant_label(engine, args.bench.random.random_weights),
            batch_size: batch,
            prompt_len: args.prompt_len,
            new_tokens: args.new_tokens,
            prefill_s: p,
            decode_s: d,
            prefill_tok_s: (batch * args.prompt_len) as f64 / p,
            decode_tok_s: if d > 0.0 {
                (batch * args.new_tokens) as f64 / d
            } else {
                0.0
            },
            decode_ms_per_step: if args.new_tokens > 0 {
                1000.0 * d / args.new_tokens as f64
            } else {
                0.0
            },
            peak_rss_mib: peak_rss_mib(),
            dims: dims.clone(),
            weight_bytes: wbytes,
            t_start,
            t_end: unix_now(),
            note: note.clone(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "bench infer: {} {} {} quant={} B={} L={} new={}: prefill {:.0} tok/s ({:.3} s), decode {:.1} tok/s ({:.1} ms/step), peak RSS {} MiB{}",
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
                rss_text(r.peak_rss_mib),
                note_text(&r.note)
            );
        }
    }
    Ok(())
}

/// Result of `bwb bench train`, one per batch size.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub model: String,
    /// Built from the config's `shape:` with random weights (`--random-weights`).
    pub random_weights: bool,
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
    /// Approximate FLOPs of one step (see [`train_flops`]).
    pub step_gflop: f64,
    pub gflop_per_s: f64,
    pub peak_rss_mib: Option<f64>,
    pub dims: Dims,
    /// Unix seconds around this batch size's warm-up and timed steps.
    pub t_start: f64,
    pub t_end: f64,
    /// What differs from the real checkpoint, when anything does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// FLOPs of one LoRA training step over `b` rows of `l` tokens: `4·N·T` for the frozen
/// matmul weights N incl. the LM head (2 forward + 2 for the input gradient; no weight
/// gradient, so not the dense-training `6·N·T`), `6·N_lora·T` for the adapters, and
/// attention `3 × 4·L·heads·head_dim` per token and layer (QKᵀ and AV forward, twice that
/// backward; the full L×L product, as the engine computes it). Embedding lookups, norms and
/// element-wise ops are left out.
pub fn train_flops(dims: &Dims, lora: usize, b: usize, l: usize) -> f64 {
    let n = dims.matmul_params() as f64;
    let t = (b * l) as f64;
    let attn = 3.0 * 4.0 * l as f64 * (dims.heads * dims.head_dim * dims.layers) as f64;
    4.0 * n * t + 6.0 * lora as f64 * t + attn * t
}

/// LoRA target modules for the model's architecture (with `--random-weights`, the config's;
/// otherwise the checkpoint's, which is resolved, i.e. downloaded if needed).
fn targets_for(settings: &Settings, model: &str, random: &RandomWeightArgs) -> Result<Vec<String>> {
    let arch = if random.random_weights {
        random_shape(settings, model, random)?.0
    } else {
        let (src, _) = load::resolve(model, &settings.configs, &settings.hub)?;
        load::source_arch(&src)?
    };
    let names = arch.spec().lora_targets;
    Ok(names.iter().map(|s| s.to_string()).collect())
}

/// A few LoRA optimizer steps on random tokens of exactly `seq_len` (loss on every
/// position), timed step by step, for each batch size on the one loaded model.
pub fn train(
    settings: &Settings,
    args: &crate::cli::BenchTrainArgs,
    engine: &EngineSettings,
) -> Result<()> {
    use crate::train::batch::{make_batch, Tokenized};
    use crate::train::{optim, validate};
    check_batch_sizes(&args.batch_size)?;
    if args.seq_len < 2 || args.steps == 0 || args.rank == 0 {
        return Err(Error::Config(
            "--steps and --rank must be at least 1, --seq-len at least 2".into(),
        )
        .into());
    }
    let plan = LoraPlan {
        r: args.rank,
        alpha: 2.0 * args.rank as f64,
        dropout: 0.0,
        use_rslora: false,
        target_modules: targets_for(settings, &args.bench.model, &args.bench.random)?,
        init_seed: 0,
        adapter: None,
    };
    let (m, note) = load_bench_model(
        settings,
        &args.bench.model,
        engine,
        &args.bench.random,
        Some(plan),
    )?;
    let dims = Dims::of(&m.model);
    let params: Vec<candle_core::Var> = m
        .lora_vars
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect();
    let trainable: usize = params.iter().map(|p| p.elem_count()).sum();
    let vocab = id_range(&m, args.bench.random.random_weights, &dims);
    let ctx = ForwardCtx {
        train: true,
        seed: 0,
        ..Default::default()
    };
    for &batch_size in &args.batch_size {
        let t_start = unix_now();
        let mut opt = optim::AdamW::new(params.clone(), 0.0)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let rows: Vec<Tokenized> = (0..batch_size)
            .map(|_| Tokenized {
                ids: (0..args.seq_len)
                    .map(|_| rng.random_range(0..vocab))
                    .collect(),
                n_prompt: 0,
            })
            .collect();
        let refs: Vec<&Tokenized> = rows.iter().collect();
        let batch = make_batch(&refs, m.pad_id, &m.device)?;
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
        let tokens = (batch_size * args.seq_len) as f64;
        let flops = train_flops(&dims, trainable, batch_size, args.seq_len);
        let r = TrainReport {
            model: args.bench.model.clone(),
            random_weights: args.bench.random.random_weights,
            device: format!("{:?}", m.device),
            dtype: dtype_name(engine.dtype).into(),
            quant: engine.storage.name().into(),
            batch_size,
            seq_len: args.seq_len,
            rank: args.rank,
            steps: args.steps,
            trainable_params: trainable,
            step_s,
            tokens_per_s: tokens / step_s,
            step_gflop: flops / 1e9,
            gflop_per_s: flops / 1e9 / step_s,
            peak_rss_mib: peak_rss_mib(),
            dims: dims.clone(),
            t_start,
            t_end: unix_now(),
            note: note.clone(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "bench train: {} {} {} quant={} B={} L={} r={} ({} trainable): {:.3} s/step, {:.0} tok/s, {:.1} GFLOP/step, {:.1} GFLOP/s, peak RSS {} MiB{}",
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
                r.step_gflop,
                r.gflop_per_s,
                rss_text(r.peak_rss_mib),
                note_text(&r.note)
            );
        }
    }
    Ok(())
}
