//! `bwb bench compress`: local compressor throughput (context tokens/s) for a method, a
//! scoring model, a context length and a batch (windows or sentences per forward).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{load_bench_model, median, note_text, peak_rss_mib, rss_text, unix_now};
use crate::cli::BenchCompressArgs;
use crate::compress::local::{Local, Method, Options};
use crate::compress::Compressor;
use crate::error::Error;
use crate::model::device::dtype_name;
use crate::settings::{EngineSettings, Settings};

/// Sentences the synthetic context cycles through (ordinary prose with numbers and names,
/// so every unit kind and the sentence step have something to do).
const PROSE: [&str; 8] = [
    "The committee met on 14 March to review the budget for the coming year.",
    "Revenue from the northern region rose by 12 percent, mostly from new contracts.",
    "Maria Lopez, the finance director, warned that shipping costs remain high.",
    "Two warehouses will close, and their staff will move to the site near the port.",
    "The board approved a loan of 3.5 million dollars to upgrade the delivery fleet.",
    "Customers asked for faster support, so the help desk will open on weekends.",
    "An audit found no errors in the accounts, but it suggested clearer invoices.",
    "The next meeting is planned for early June, after the quarterly results.",
];

/// Result of one `bwb bench compress` run.
#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    pub method: String,
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub context_tokens: u64,
    pub batch: usize,
    pub rate: f64,
    pub kept_tokens: u64,
    /// Median seconds of one compression.
    pub seconds: f64,
    pub context_tok_s: f64,
    pub peak_rss_mib: Option<f64>,
    pub t_start: f64,
    pub t_end: f64,
    pub note: Option<String>,
}

/// A context of about `n` tokens of the model's tokenizer: the prose, cycled with a counter
/// so no two sentences repeat exactly.
fn context(m: &crate::model::load::LoadedModel, n: usize) -> Result<String> {
    let mut text = String::new();
    let mut i = 0;
    loop {
        let enc = m
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| Error::Config(format!("tokenising the bench context: {e}")))?;
        if enc.len() >= n {
            let end = enc.get_offsets().get(n).map_or(text.len(), |o| o.0);
            text.truncate(end);
            return Ok(text);
        }
        text.push_str(&format!("{} (item {i}) ", PROSE[i % PROSE.len()]));
        i += 1;
    }
}

pub fn run(settings: &Settings, args: &BenchCompressArgs, engine: &EngineSettings) -> Result<()> {
    if args.context_tokens == 0 || args.batch == 0 || args.repeat == 0 {
        return Err(Error::Config(
            "--context-tokens, --batch and --repeat must be at least 1".into(),
        )
        .into());
    }
    let rate = crate::compress::Rate::parse(&serde_json::json!(args.rate))
        .map_err(|m| Error::Config(format!("--rate: {m}")))?;
    let method = match crate::compress::Method::parse(&args.method).map_err(Error::Config)? {
        crate::compress::Method::Selective => Method::Selective,
        crate::compress::Method::Lingua => Method::Lingua,
        other => {
            return Err(Error::Config(format!(
                "--method {}: the bench times local compressors only (selective, lingua)",
                other.name()
            ))
            .into())
        }
    };
    let (m, note) = load_bench_model(
        settings,
        &args.bench.model,
        engine,
        &args.bench.random,
        None,
    )?;
    let m = Arc::new(m);
    let text = context(&m, args.context_tokens)?;
    let opts = Options {
        batch: args.batch,
        ..Options::default()
    };
    let c = Local::new(method, args.rate, m.clone(), opts);
    let question = "What did the board approve?";
    let t_start = unix_now();
    let first = c
        .compress_at(&text, question, rate)
        .map_err(|e| anyhow::anyhow!(e.message))?; // warm-up
    let mut times = Vec::new();
    for _ in 0..args.repeat {
        let t0 = Instant::now();
        c.compress_at(&text, question, rate)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let s = median(times);
    let r = CompressReport {
        method: c.name().into(),
        model: args.bench.model.clone(),
        device: format!("{:?}", m.device),
        dtype: dtype_name(engine.dtype).into(),
        context_tokens: first.original_tokens,
        batch: args.batch,
        rate: args.rate,
        kept_tokens: first.compressed_tokens,
        seconds: s,
        context_tok_s: first.original_tokens as f64 / s,
        peak_rss_mib: peak_rss_mib(),
        t_start,
        t_end: unix_now(),
        note,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "bench compress: {} {} {} {} context={} B={} rate={}: {:.0} context tok/s ({:.3} s), kept {} tokens, peak RSS {} MiB{}",
            r.method,
            r.model,
            r.device,
            r.dtype,
            r.context_tokens,
            r.batch,
            r.rate,
            r.context_tok_s,
            r.seconds,
            r.kept_tokens,
            rss_text(r.peak_rss_mib),
            note_text(&r.note)
        );
    }
    Ok(())
}
