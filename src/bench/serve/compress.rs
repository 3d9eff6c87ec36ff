//! `bwb bench serve --endpoint compress`: load on a ScaleDown-style compression endpoint,
//! `POST {url}/compress/raw/` with `{"context", "prompt", "model", "scaledown": {"rate"}}` and
//! the key (if any) in `x-api-key`; the answer is read as the ScaleDown client reads it
//! (`results` or `data` holding `compressed_prompt` and the token counts). Each context is
//! `--prompt-len` seeded random words. Reports requests/s, latency (request sent → whole
//! answer read) mean/p50/p95/p99, the mean compression ratio (compressed / original tokens,
//! as bwb records it everywhere) and the error rate. A non-2xx answer, a transport error or
//! an answer without `compressed_prompt` is a failed request; nothing is retried.

use std::time::Instant;

use anyhow::Result;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::json;

use super::stats::Stats;
use super::{drive, error_counts, print_errors, print_header, ErrorCount, Plan, RunInfo};
use crate::cli::BenchServeArgs;
use crate::compress::Rate;
use crate::error::Error;

/// The question sent with every context.
const QUESTION: &str = "What are the main points of this text?";

/// What one compression request measured.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub error: Option<String>,
    pub latency: f64,
    pub original_tokens: u64,
    pub compressed_tokens: u64,
    pub ratio: f64,
}

/// Result of `bwb bench serve --endpoint compress`.
#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    #[serde(flatten)]
    pub run: RunInfo,
    /// `scaledown.rate` as sent.
    pub rate: serde_json::Value,
    pub completed: usize,
    pub failed: usize,
    /// failed / requests.
    pub error_rate: f64,
    pub duration_s: f64,
    pub request_throughput: f64,
    pub latency_ms: Option<Stats>,
    /// Mean of compressed / original tokens over the completed requests.
    pub compression_ratio_mean: Option<f64>,
    pub original_tokens_mean: Option<f64>,
    pub compressed_tokens_mean: Option<f64>,
    pub errors: Vec<ErrorCount>,
}

fn parse_rate(text: &str) -> Result<Rate> {
    let v = match text.trim().parse::<f64>() {
        Ok(x) => json!(x),
        Err(_) => json!(text.trim()),
    };
    Rate::parse(&v).map_err(|e| Error::Config(format!("--compress-rate: {e}")).into())
}

async fn compress_one(
    http: reqwest::Client,
    url: String,
    body: String,
    key: Option<String>,
) -> Answer {
    let t0 = Instant::now();
    let mut req = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = &key {
        req = req.header("x-api-key", k);
    }
    let fail = |why: String| Answer {
        error: Some(why),
        ..Answer::default()
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return fail(crate::backend::api::client::error_chain(&e)),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "reading the body: {}",
                crate::backend::api::client::error_chain(&e)
            ))
        }
    };
    let latency = t0.elapsed().as_secs_f64();
    if !status.is_success() {
        return fail(format!("HTTP {}: {}", status.as_u16(), super::clip(&text)));
    }
    match crate::compress::scaledown::parse(&text) {
        Ok(c) => Answer {
            error: None,
            latency,
            original_tokens: c.original_tokens,
            compressed_tokens: c.compressed_tokens,
            ratio: c.compression_ratio,
        },
        Err(m) => fail(format!("malformed answer: {m}")),
    }
}

pub async fn run(plan: &Plan, args: &BenchServeArgs) -> Result<CompressReport> {
    let rate = parse_rate(&args.compress_rate)?.to_json();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let url = format!("{}/compress/raw/", plan.base);
    let bodies: Vec<String> = (0..args.requests)
        .map(|i| {
            let context = super::prompts::words(args.prompt_len, &mut rng);
            let model = &args.model[i % args.model.len()];
            json!({"context": context, "prompt": QUESTION, "model": model, "scaledown": {"rate": rate}})
                .to_string()
        })
        .collect();
    let t_start = crate::bench::unix_now();
    let (outs, secs) = drive(&plan.load, bodies.len(), |i| {
        compress_one(
            plan.http.clone(),
            url.clone(),
            bodies[i].clone(),
            args.api_key.clone(),
        )
    })
    .await?;
    let ok: Vec<&Answer> = outs.iter().filter(|a| a.error.is_none()).collect();
    let mean = |f: fn(&Answer) -> f64| {
        (!ok.is_empty()).then(|| ok.iter().map(|a| f(a)).sum::<f64>() / ok.len() as f64)
    };
    let latencies: Vec<f64> = ok.iter().map(|a| a.latency).collect();
    Ok(CompressReport {
        run: plan.info(args, t_start),
        rate,
        completed: ok.len(),
        failed: outs.len() - ok.len(),
        error_rate: (outs.len() - ok.len()) as f64 / outs.len().max(1) as f64,
        duration_s: secs,
        request_throughput: if secs > 0.0 {
            ok.len() as f64 / secs
        } else {
            0.0
        },
        latency_ms: Stats::of_seconds(&latencies),
        compression_ratio_mean: mean(|a| a.ratio),
        original_tokens_mean: mean(|a| a.original_tokens as f64),
        compressed_tokens_mean: mean(|a| a.compressed_tokens as f64),
        errors: error_counts(outs.iter().filter_map(|a| a.error.as_deref())),
    })
}

pub fn print_table(r: &CompressReport) {
    print_header(&r.run, &format!(" (words), rate {}", r.rate));
    let n = super::num;
    println!(
        "  {:<28} {} / {}",
        "completed / failed", r.completed, r.failed
    );
    println!("  {:<28} {:.1} %", "error rate", 100.0 * r.error_rate);
    println!("  {:<28} {:.2}", "duration (s)", r.duration_s);
    println!(
        "  {:<28} {:.3}",
        "request throughput (req/s)", r.request_throughput
    );
    println!(
        "  {:<28} {} (tokens {} → {})",
        "compression ratio (mean)",
        n(r.compression_ratio_mean, 3),
        n(r.original_tokens_mean, 1),
        n(r.compressed_tokens_mean, 1)
    );
    let l = r.latency_ms;
    println!(
        "  {:<28} mean {} p50 {} p95 {} p99 {}",
        "latency (ms)",
        n(l.map(|s| s.mean), 1),
        n(l.map(|s| s.p50), 1),
        n(l.map(|s| s.p95), 1),
        n(l.map(|s| s.p99), 1)
    );
    print_errors(&r.errors);
}
