//! `bwb bench serve`: a streaming load client for any OpenAI-compatible server (bwb serve,
//! vLLM, …), so the same command measures bwb and its peer. Requests arrive all at once and
//! run `--concurrency` at a time, or at `--request-rate` with gamma inter-arrival times
//! (shape `--burstiness`, 1 = Poisson) as vLLM's serving benchmark draws them; `--model`
//! values take turns. Each request streams with `ignore_eos`, `temperature: 0` and
//! `stream_options.include_usage`; output tokens come from the server's `usage` (else one per
//! text chunk). Failed requests are counted and reported, never fatal; a run where every
//! request fails is an error. `--endpoint compress` loads a ScaleDown-style `/compress/raw/`
//! endpoint instead ([`compress`]). Definitions of the figures: [`stats`].

pub mod compress;
pub mod prompts;
pub mod stats;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{BenchServeArgs, ServeEndpoint};
use crate::error::Error;
use stats::{Slo, Stats};

/// Seconds from the start of the run at which each request arrives: gamma-distributed gaps
/// with shape `burstiness` and mean `1 / rate`, scaled so the last arrival is at exactly
/// `n / rate` (vLLM does the same, so a seed's throughput does not depend on the draw's sum).
pub fn arrival_times(n: usize, rate: f64, burstiness: f64, seed: u64) -> Result<Vec<f64>> {
    use rand_distr::{Distribution, Gamma};
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness)).map_err(|e| {
        Error::Config(format!(
            "--request-rate {rate} / --burstiness {burstiness}: {e}"
        ))
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0.0;
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            t += gamma.sample(&mut rng);
            t
        })
        .collect();
    if let Some(&last) = out.last() {
        if last > 0.0 {
            let k = n as f64 / rate / last;
            out.iter_mut().for_each(|x| *x *= k);
        }
    }
    Ok(out)
}

/// How requests are released: arrival times (none: all at once) and a cap on those in flight.
#[derive(Debug, Clone)]
pub struct Load {
    pub arrivals: Option<Vec<f64>>,
    pub concurrency: Option<usize>,
}

/// Run `make(i)` for every request under the load shape; returns the outputs in request
/// order and the seconds from the first release to the last completion. A request's future
/// starts (and takes its start time) only once it has arrived and holds a concurrency slot.
pub async fn drive<F, Fut, O>(load: &Load, n: usize, make: F) -> Result<(Vec<O>, f64)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = O> + Send + 'static,
    O: Send + 'static,
{
    let slots = load
        .concurrency
        .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS);
    let sem = Arc::new(tokio::sync::Semaphore::new(slots));
    let t0 = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = t0 + Duration::from_secs_f64(load.arrivals.as_ref().map_or(0.0, |a| a[i]));
        let (sem, fut) = (sem.clone(), make(i));
        set.spawn(async move {
            tokio::time::sleep_until(at).await;
            let _slot = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| anyhow::anyhow!("a request task failed: {e}"))?);
    }
    let secs = t0.elapsed().as_secs_f64();
    out.sort_by_key(|(i, _)| *i);
    Ok((out.into_iter().map(|(_, o)| o).collect(), secs))
}

/// What one streamed request measured (seconds from its send).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Index into `--model`.
    pub model: usize,
    pub error: Option<String>,
    pub ttft: f64,
    pub e2el: f64,
    pub itl: Vec<f64>,
    pub output_tokens: usize,
    /// `output_tokens` is the server's `usage.completion_tokens` (else counted chunks).
    pub from_usage: bool,
    pub prompt_tokens: Option<usize>,
}

/// Splits an SSE byte stream into the `data` of each complete event.
#[derive(Debug, Default)]
pub struct SseBuffer {
    buf: Vec<u8>,
}

impl SseBuffer {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(end) = find_event_end(&self.buf) else {
                return out;
            };
            let (event, len) = end;
            let text = String::from_utf8_lossy(&self.buf[..event]).into_owned();
            self.buf.drain(..event + len);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
    }
}

/// The end of the first event: (its length, the separator's length).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One stream's progress, event by event.
struct StreamState {
    start: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The last chunk with a choice (text or not).
    any_choice: Option<Instant>,
    out: Outcome,
    chunks: usize,
    done: bool,
}

impl StreamState {
    fn new(start: Instant, model: usize) -> StreamState {
        StreamState {
            start,
            first: None,
            last: None,
            any_choice: None,
            out: Outcome {
                model,
                ..Outcome::default()
            },
            chunks: 0,
            done: false,
        }
    }

    /// Handle one `data:` payload that arrived at `at`.
    fn event(&mut self, data: &str, at: Instant) {
        if data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return self.fail(format!("malformed stream event ({e}): {}", clip(data))),
        };
        if let Some(err) = v.get("error") {
            return self.fail(format!("error event: {}", clip(&err.to_string())));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).map(|x| x as usize);
            if let Some(c) = n("completion_tokens") {
                self.out.output_tokens = c;
                self.out.from_usage = true;
            }
            self.out.prompt_tokens = n("prompt_tokens");
        }
        let choice = v.get("choices").and_then(|c| c.get(0));
        if choice.is_some() {
            self.any_choice = Some(at);
        }
        let text = choice.and_then(|c| c.get("text").or_else(|| c.pointer("/delta/content")));
        if text.and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
            self.chunks += 1;
            match self.last {
                None => self.first = Some(at),
                Some(prev) => self.out.itl.push((at - prev).as_secs_f64()),
            }
            self.last = Some(at);
        }
    }

    fn fail(&mut self, why: String) {
        if self.out.error.is_none() {
            self.out.error = Some(why);
        }
    }

    fn finish(mut self) -> Outcome {
        match (self.first, self.last) {
            _ if self.out.error.is_some() => {}
            (Some(f), Some(l)) if self.done => {
                self.out.ttft = (f - self.start).as_secs_f64();
                self.out.e2el = (l - self.start).as_secs_f64();
                if !self.out.from_usage {
                    self.out.output_tokens = self.chunks;
                }
            }
            // Tokens that decode to no text (special tokens, held-back bytes): the last
            // chunk with a choice stands for them.
            (None, _) if self.done && self.out.output_tokens > 0 && self.any_choice.is_some() => {
                let t = self
                    .any_choice
                    .map_or(0.0, |a| (a - self.start).as_secs_f64());
                (self.out.ttft, self.out.e2el) = (t, t);
            }
            (None, _) => self.fail("the stream carried no output text".into()),
            _ => self.fail("the stream ended before `data: [DONE]`".into()),
        }
        self.out
    }
}

fn clip(s: &str) -> String {
    let one: String = s.replace('\n', " ").chars().take(200).collect();
    one
}

/// One request as sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub body: String,
    pub model: usize,
    pub api_key: Option<String>,
}

/// Send one streaming request and time its chunks.
pub async fn stream_one(http: reqwest::Client, req: Request) -> Outcome {
    let start = Instant::now();
    let mut st = StreamState::new(start, req.model);
    let mut r = http
        .post(&req.url)
        .header("content-type", "application/json")
        .body(req.body);
    if let Some(k) = &req.api_key {
        r = r.bearer_auth(k);
    }
    let mut resp = match r.send().await {
        Ok(resp) => resp,
        Err(e) => {
            st.fail(crate::backend::api::client::error_chain(&e));
            return st.finish();
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        st.fail(format!("HTTP {}: {}", status.as_u16(), clip(&text)));
        return st.finish();
    }
    let mut sse = SseBuffer::default();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let at = Instant::now();
                for data in sse.push(&bytes) {
                    st.event(&data, at);
                }
            }
            Ok(None) => break,
            Err(e) => {
                st.fail(format!(
                    "reading the stream: {}",
                    crate::backend::api::client::error_chain(&e)
                ));
                break;
            }
        }
    }
    st.finish()
}

/// The request body for one prompt.
pub fn body(endpoint: ServeEndpoint, model: &str, prompt: &str, max_tokens: usize) -> String {
    let mut b = json!({
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    match endpoint {
        ServeEndpoint::Chat => b["messages"] = json!([{"role": "user", "content": prompt}]),
        _ => b["prompt"] = json!(prompt),
    }
    b.to_string()
}

/// Distinct failure messages (the first five, in order of first appearance) and how often.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorCount {
    pub error: String,
    pub count: usize,
}

pub fn error_counts<'a>(errors: impl Iterator<Item = &'a str>) -> Vec<ErrorCount> {
    let mut out: Vec<ErrorCount> = Vec::new();
    for e in errors {
        match out.iter_mut().find(|c| c.error == e) {
            Some(c) => c.count += 1,
            None => out.push(ErrorCount {
                error: e.to_string(),
                count: 1,
            }),
        }
    }
    out.truncate(5);
    out
}

/// The figures of a streamed run (see [`stats`] for the definitions).
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub completed: usize,
    pub failed: usize,
    pub duration_s: f64,
    /// Mean `usage.prompt_tokens` of the completed requests, when the server reported it.
    pub prompt_tokens_mean: Option<f64>,
    pub output_tokens: usize,
    /// Completed requests whose output count is the server's `usage` (the others: chunks).
    pub output_tokens_from_usage: usize,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Prompt (from usage, else `--prompt-len`) plus output tokens per second.
    pub total_token_throughput: f64,
    pub ttft_ms: Option<Stats>,
    pub tpot_ms: Option<Stats>,
    pub itl_ms: Option<Stats>,
    pub e2el_ms: Option<Stats>,
    pub slo: Option<Slo>,
    /// Completed requests meeting every SLO.
    pub good_requests: Option<usize>,
    /// `good_requests` per second.
    pub goodput: Option<f64>,
}

pub fn summarize(outs: &[Outcome], duration: f64, prompt_len: usize, slo: Option<Slo>) -> Metrics {
    let ok: Vec<&Outcome> = outs.iter().filter(|o| o.error.is_none()).collect();
    let per_s = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
    let output: usize = ok.iter().map(|o| o.output_tokens).sum();
    let prompts: Vec<usize> = ok.iter().filter_map(|o| o.prompt_tokens).collect();
    let prompt_total: usize = ok
        .iter()
        .map(|o| o.prompt_tokens.unwrap_or(prompt_len))
        .sum();
    let tpots: Vec<f64> = ok
        .iter()
        .map(|o| stats::tpot(o.e2el, o.ttft, o.output_tokens))
        .collect();
    let good = slo.map(|s| {
        ok.iter()
            .zip(&tpots)
            .filter(|(o, &t)| s.met(o.ttft, t, o.e2el))
            .count()
    });
    let col = |f: fn(&Outcome) -> f64| ok.iter().map(|o| f(o)).collect::<Vec<f64>>();
    let multi: Vec<f64> = ok
        .iter()
        .zip(&tpots)
        .filter(|(o, _)| o.output_tokens > 1)
        .map(|(_, &t)| t)
        .collect();
    let itl: Vec<f64> = ok.iter().flat_map(|o| o.itl.iter().copied()).collect();
    Metrics {
        completed: ok.len(),
        failed: outs.len() - ok.len(),
        duration_s: duration,
        prompt_tokens_mean: (!prompts.is_empty())
            .then(|| prompts.iter().sum::<usize>() as f64 / prompts.len() as f64),
        output_tokens: output,
        output_tokens_from_usage: ok.iter().filter(|o| o.from_usage).count(),
        request_throughput: per_s(ok.len() as f64),
        output_throughput: per_s(output as f64),
        total_token_throughput: per_s((prompt_total + output) as f64),
        ttft_ms: Stats::of_seconds(&col(|o| o.ttft)),
        tpot_ms: Stats::of_seconds(&multi),
        itl_ms: Stats::of_seconds(&itl),
        e2el_ms: Stats::of_seconds(&col(|o| o.e2el)),
        slo,
        good_requests: good,
        goodput: good.map(|g| per_s(g as f64)),
    }
}

/// Requests, failures and output tokens of one `--model`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCount {
    pub model: String,
    pub completed: usize,
    pub failed: usize,
    pub output_tokens: usize,
}

/// What the run was asked, shared by both report kinds.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub endpoint: &'static str,
    pub url: String,
    pub models: Vec<String>,
    pub concurrency: Option<usize>,
    pub request_rate: Option<f64>,
    pub burstiness: Option<f64>,
    pub requests: usize,
    pub prompt_len: usize,
    pub seed: u64,
    /// Unix seconds around the timed run.
    pub t_start: f64,
    pub t_end: f64,
}

/// Result of `bwb bench serve` on a chat or completions endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    #[serde(flatten)]
    pub run: RunInfo,
    pub max_tokens: usize,
    pub prompt_len_exact: bool,
    pub prompt_note: String,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub per_model: Vec<ModelCount>,
    pub errors: Vec<ErrorCount>,
}

/// The validated settings of a run.
pub struct Plan {
    pub base: String,
    pub load: Load,
    pub slo: Option<Slo>,
    pub http: reqwest::Client,
}

/// The server's base URL: http(s), no trailing `/` or `/v1`.
fn base_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    let u = u.strip_suffix("/v1").unwrap_or(u);
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
        return Err(Error::Config(format!(
            "--url `{url}` must be the server's http:// or https:// address, e.g. http://127.0.0.1:8000"
        ))
        .into());
    }
    Ok(u.to_string())
}

impl Plan {
    pub fn of(args: &BenchServeArgs) -> Result<Plan> {
        let base = base_url(&args.url)?;
        if let Some(m) = args.model.iter().find(|m| m.trim().is_empty()) {
            return Err(
                Error::Config(format!("--model `{m}` is empty; name a served model")).into(),
            );
        }
        let arrivals = match args.request_rate {
            Some(r) if !(r > 0.0 && r.is_finite()) => {
                return Err(Error::Config(format!(
                    "--request-rate {r} must be a positive number of requests per second"
                ))
                .into())
            }
            Some(_) if !(args.burstiness > 0.0 && args.burstiness.is_finite()) => {
                return Err(Error::Config(format!(
                    "--burstiness {} must be a positive number (1 is Poisson)",
                    args.burstiness
                ))
                .into())
            }
            Some(r) => Some(arrival_times(args.requests, r, args.burstiness, args.seed)?),
            None => None,
        };
        let slo = args
            .slo
            .as_deref()
            .map(Slo::parse)
            .transpose()
            .map_err(Error::Config)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout.max(1)))
            .user_agent(concat!("bwb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Plan {
            base,
            load: Load {
                arrivals,
                concurrency: args.concurrency,
            },
            slo,
            http,
        })
    }

    fn info(&self, args: &BenchServeArgs, t_start: f64) -> RunInfo {
        RunInfo {
            endpoint: match args.endpoint {
                ServeEndpoint::Chat => "chat",
                ServeEndpoint::Completions => "completions",
                ServeEndpoint::Compress => "compress",
            },
            url: self.base.clone(),
            models: args.model.clone(),
            concurrency: args.concurrency,
            request_rate: args.request_rate,
            burstiness: args.request_rate.map(|_| args.burstiness),
            requests: args.requests,
            prompt_len: args.prompt_len,
            seed: args.seed,
            t_start,
            t_end: super::unix_now(),
        }
    }
}

pub fn run(args: &BenchServeArgs) -> Result<()> {
    let plan = Plan::of(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (completed, first_error) = if args.endpoint == ServeEndpoint::Compress {
        let r = rt.block_on(compress::run(&plan, args))?;
        print_out(args.json, &r, || compress::print_table(&r))?;
        (r.completed, r.errors.first().map(|e| e.error.clone()))
    } else {
        let r = rt.block_on(streamed(&plan, args))?;
        print_out(args.json, &r, || print_table(&r))?;
        (
            r.metrics.completed,
            r.errors.first().map(|e| e.error.clone()),
        )
    };
    if completed == 0 {
        anyhow::bail!(
            "every request to {} failed; the first error: {}",
            plan.base,
            first_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn print_out<R: Serialize>(json: bool, r: &R, table: impl FnOnce()) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        table();
    }
    Ok(())
}

/// A chat or completions run: prompts, then the timed load.
async fn streamed(plan: &Plan, args: &BenchServeArgs) -> Result<ServeReport> {
    let chat = args.endpoint == ServeEndpoint::Chat;
    let tok = prompts::Tokenizer {
        http: &plan.http,
        base: &plan.base,
        api_key: args.api_key.as_deref(),
        model: &args.model[0],
    };
    let p = prompts::make(&tok, args.requests, args.prompt_len, args.seed, chat).await;
    let route = if chat {
        "v1/chat/completions"
    } else {
        "v1/completions"
    };
    let reqs: Vec<Request> = p
        .texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let m = i % args.model.len();
            Request {
                url: format!("{}/{route}", plan.base),
                body: body(args.endpoint, &args.model[m], text, args.max_tokens),
                model: m,
                api_key: args.api_key.clone(),
            }
        })
        .collect();
    let t_start = super::unix_now();
    let (outs, secs) = drive(&plan.load, reqs.len(), |i| {
        stream_one(plan.http.clone(), reqs[i].clone())
    })
    .await?;
    let per_model = args
        .model
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let mine = || outs.iter().filter(move |o| o.model == m);
            ModelCount {
                model: name.clone(),
                completed: mine().filter(|o| o.error.is_none()).count(),
                failed: mine().filter(|o| o.error.is_some()).count(),
                output_tokens: mine()
                    .filter(|o| o.error.is_none())
                    .map(|o| o.output_tokens)
                    .sum(),
            }
        })
        .collect();
    Ok(ServeReport {
        run: plan.info(args, t_start),
        max_tokens: args.max_tokens,
        prompt_len_exact: p.exact,
        prompt_note: p.note,
        metrics: summarize(&outs, secs, args.prompt_len, plan.slo),
        per_model,
        errors: error_counts(outs.iter().filter_map(|o| o.error.as_deref())),
    })
}

/// `—` for a missing figure.
fn num(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:.prec$}"))
}

/// The run's header lines, shared by both tables.
fn print_header(run: &RunInfo, extra: &str) {
    let load = match (run.concurrency, run.request_rate) {
        (Some(c), None) => format!("concurrency {c}"),
        (c, Some(r)) => format!(
            "{r} req/s (burstiness {}){}",
            run.burstiness.unwrap_or(1.0),
            c.map(|c| format!(", at most {c} in flight"))
                .unwrap_or_default()
        ),
        (None, None) => String::new(),
    };
    println!(
        "bench serve: {} {} model(s) {}: {} requests, {load}, prompt {} tokens{extra}, seed {}",
        run.endpoint,
        run.url,
        run.models.join(","),
        run.requests,
        run.prompt_len,
        run.seed
    );
}

fn print_errors(errors: &[ErrorCount]) {
    for e in errors {
        println!("  error ×{}: {}", e.count, e.error);
    }
}

fn print_table(r: &ServeReport) {
    let m = &r.metrics;
    print_header(&r.run, &format!(", max_tokens {}", r.max_tokens));
    println!("  prompts: {}", r.prompt_note);
    let rows: [(&str, String); 7] = [
        (
            "completed / failed",
            format!("{} / {}", m.completed, m.failed),
        ),
        ("duration (s)", format!("{:.2}", m.duration_s)),
        (
            "request throughput (req/s)",
            format!("{:.3}", m.request_throughput),
        ),
        (
            "output throughput (tok/s)",
            format!("{:.1}", m.output_throughput),
        ),
        (
            "total token throughput (tok/s)",
            format!("{:.1}", m.total_token_throughput),
        ),
        (
            "output tokens (from usage)",
            format!(
                "{} ({} of {} requests)",
                m.output_tokens, m.output_tokens_from_usage, m.completed
            ),
        ),
        (
            "goodput (req/s)",
            match (m.goodput, m.good_requests, m.slo) {
                (Some(g), Some(n), Some(s)) => format!(
                    "{g:.3} ({n} requests within {})",
                    serde_json::to_string(&s).unwrap_or_default()
                ),
                _ => "— (no --slo)".into(),
            },
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<31} {v}");
    }
    println!("  {:<10} {:>10} {:>10} {:>10}", "ms", "mean", "p50", "p99");
    for (k, s) in [
        ("TTFT", m.ttft_ms),
        ("TPOT", m.tpot_ms),
        ("ITL", m.itl_ms),
        ("E2E", m.e2el_ms),
    ] {
        println!(
            "  {k:<10} {:>10} {:>10} {:>10}",
            num(s.map(|s| s.mean), 1),
            num(s.map(|s| s.p50), 1),
            num(s.map(|s| s.p99), 1)
        );
    }
    if r.per_model.len() > 1 {
        for c in &r.per_model {
            println!(
                "  model {}: {} completed, {} failed, {} output tokens",
                c.model, c.completed, c.failed, c.output_tokens
            );
        }
    }
    print_errors(&r.errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(t: &[f64]) -> Vec<f64> {
        std::iter::once(t[0])
            .chain(t.windows(2).map(|w| w[1] - w[0]))
            .collect()
    }

    fn cv(g: &[f64]) -> f64 {
        let m = g.iter().sum::<f64>() / g.len() as f64;
        let var = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64;
        var.sqrt() / m
    }

    #[test]
    fn seeded_arrivals_repeat_and_average_one_over_the_rate() {
        let a = arrival_times(2000, 4.0, 1.0, 7).unwrap();
        assert_eq!(a, arrival_times(2000, 4.0, 1.0, 7).unwrap());
        assert_ne!(a, arrival_times(2000, 4.0, 1.0, 8).unwrap());
        assert!(a.windows(2).all(|w| w[1] >= w[0]));
        // Scaled so the last arrival is at n / rate: the mean gap is exactly 1 / rate.
        assert!((a[1999] - 500.0).abs() < 1e-9);
        let g = gaps(&a);
        assert!((g.iter().sum::<f64>() / 2000.0 - 0.25).abs() < 1e-12);
        // Gamma gaps of shape k have a coefficient of variation 1/√k: 1 for Poisson.
        assert!((cv(&g) - 1.0).abs() < 0.08, "{}", cv(&g));
        let even = gaps(&arrival_times(2000, 4.0, 16.0, 7).unwrap());
        assert!((cv(&even) - 0.25).abs() < 0.03, "{}", cv(&even));
        let bursty = gaps(&arrival_times(2000, 4.0, 0.25, 7).unwrap());
        assert!((cv(&bursty) - 2.0).abs() < 0.3, "{}", cv(&bursty));
    }

    #[test]
    fn sse_events_survive_any_chunking() {
        let body = "data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: ping\n\ndata:[DONE]\n\n";
        let want = vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"];
        for cut in 1..body.len() {
            let mut s = SseBuffer::default();
            let mut got = s.push(&body.as_bytes()[..cut]);
            got.extend(s.push(&body.as_bytes()[cut..]));
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    fn outcome(ttft: f64, e2el: f64, tokens: usize, prompt: Option<usize>) -> Outcome {
        Outcome {
            ttft,
            e2el,
            itl: vec![(e2el - ttft) / (tokens.max(2) - 1) as f64; tokens.saturating_sub(1)],
            output_tokens: tokens,
            from_usage: true,
            prompt_tokens: prompt,
            ..Outcome::default()
        }
    }

    #[test]
    fn summaries_count_tokens_throughput_and_goodput() {
        let failed = Outcome {
            error: Some("HTTP 500: boom".into()),
            ..Outcome::default()
        };
        let outs = vec![
            outcome(0.1, 1.0, 10, Some(32)), // tpot 0.1
            outcome(0.5, 0.5, 1, Some(32)),  // one token: tpot 0 for goodput, none in TPOT
            outcome(0.2, 2.0, 10, None),     // tpot 0.2
            failed.clone(),
        ];
        let slo = Slo::parse("ttft=300,tpot=150").unwrap();
        let m = summarize(&outs, 4.0, 30, Some(slo));
        assert_eq!((m.completed, m.failed, m.output_tokens), (3, 1, 21));
        assert_eq!(m.output_tokens_from_usage, 3);
        assert!((m.request_throughput - 0.75).abs() < 1e-12);
        assert!((m.output_throughput - 21.0 / 4.0).abs() < 1e-12);
        assert!((m.total_token_throughput - (32.0 + 32.0 + 30.0 + 21.0) / 4.0).abs() < 1e-12);
        assert_eq!(m.prompt_tokens_mean, Some(32.0));
        // Only the first meets both: the second's TTFT and the third's TPOT are over.
        assert_eq!(m.good_requests, Some(1));
        assert!((m.goodput.unwrap() - 0.25).abs() < 1e-12);
        let tpot = m.tpot_ms.unwrap();
        assert!((tpot.mean - 150.0).abs() < 1e-9 && (tpot.p50 - 150.0).abs() < 1e-9);
        let ttft = m.ttft_ms.unwrap();
        assert!((ttft.mean - 800.0 / 3.0).abs() < 1e-9 && (ttft.p50 - 200.0).abs() < 1e-9);
        assert_eq!(m.itl_ms.unwrap().mean, 150.0);
        assert!(summarize(&outs, 4.0, 30, None).goodput.is_none());
        let none = summarize(&[failed], 1.0, 30, None);
        assert!(none.ttft_ms.is_none() && none.completed == 0 && none.output_throughput == 0.0);
    }

    #[test]
    fn a_stream_is_timed_from_text_chunks_and_counted_from_usage() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut st = StreamState::new(t0, 0);
        let delta = |c: &str| json!({"choices": [{"delta": {"content": c}}]}).to_string();
        st.event(
            &json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}).to_string(),
            at(5),
        );
        st.event(&delta("a"), at(100));
        st.event(&delta("b"), at(150));
        st.event(
            &json!({"choices": [{"text": "c", "finish_reason": "length"}]}).to_string(),
            at(220),
        );
        st.event(
            &json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}})
                .to_string(),
            at(230),
        );
        st.event("[DONE]", at(231));
        let o = st.finish();
        assert_eq!(o.error, None);
        assert!(
            (o.ttft - 0.1).abs() < 1e-9 && (o.e2el - 0.22).abs() < 1e-9,
            "{o:?}"
        );
        assert_eq!(
            (o.output_tokens, o.from_usage, o.prompt_tokens),
            (4, true, Some(7))
        );
        assert_eq!(o.itl.len(), 2);
        let fresh = || StreamState::new(t0, 0);
        let mut cut = fresh();
        cut.event(&delta("a"), at(10));
        assert!(cut.finish().error.unwrap().contains("[DONE]"));
        let mut err = fresh();
        err.event(&delta("a"), at(10));
        err.event(r#"{"error": {"message": "engine died"}}"#, at(11));
        err.event("[DONE]", at(12));
        assert!(err.finish().error.unwrap().contains("engine died"));
        let mut counted = fresh();
        counted.event(&delta("a"), at(10));
        counted.event(&delta("b"), at(20));
        counted.event("[DONE]", at(21));
        let c = counted.finish();
        assert_eq!((c.output_tokens, c.from_usage), (2, false));
        // Tokens without text (held-back bytes): timed at the finishing chunk.
        let mut blank = fresh();
        blank.event(
            &json!({"choices": [{"text": "", "finish_reason": "length"}]}).to_string(),
            at(40),
        );
        blank.event(
            &json!({"choices": [], "usage": {"completion_tokens": 3}}).to_string(),
            at(41),
        );
        blank.event("[DONE]", at(42));
        let b = blank.finish();
        assert_eq!((b.error, b.output_tokens), (None, 3));
        assert!((b.ttft - 0.04).abs() < 1e-9 && (b.e2el - 0.04).abs() < 1e-9);
        let mut empty = fresh();
        empty.event("[DONE]", at(5));
        assert!(empty.finish().error.unwrap().contains("no output text"));
    }

    #[test]
    fn error_counts_keep_distinct_messages_in_order() {
        let e = error_counts(["b", "a", "b", "c", "d", "e", "f", "g"].into_iter());
        assert_eq!(e.len(), 5);
        assert_eq!((e[0].error.as_str(), e[0].count), ("b", 2));
        assert_eq!(e[1].error, "a");
    }

    #[test]
    fn urls_lose_a_trailing_v1_and_must_be_http() {
        assert_eq!(
            base_url("http://127.0.0.1:8000/v1/").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            base_url(" https://127.0.0.1 ").unwrap(),
            "https://127.0.0.1"
        );
        let e = base_url("127.0.0.1:8000").unwrap_err().to_string();
        assert!(e.contains("--url") && e.contains("http://"), "{e}");
    }
}
