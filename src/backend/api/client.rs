//! The API backend: one blocking HTTP client shared by `concurrency` worker threads, a retry
//! policy, a per-run cost limit and an on-disk response cache.
//!
//! Keys come from the environment or `.env` and live only in request headers: they are never
//! part of a cache key, a file, an error or a log line (response snippets are scrubbed too).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{cost_usd, wire, Reply, WireFormat};
use crate::backend::{Backend, BatchStats, Completion, Request, Sink};
use crate::config::{ApiPrice, ModelConfig, PricingConfig};
use crate::error::{Error, Result};
use crate::prompt::chat_template::Message;
use crate::settings::Env;

/// When and how long to wait before trying a request again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles per failed attempt.
    pub base: Duration,
    /// Ceiling of the exponential backoff.
    pub max_delay: Duration,
    /// A server's Retry-After is honoured up to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts (1 after the first). A Retry-After from the
    /// server wins (plus a little jitter, so workers do not return in lockstep); otherwise
    /// "equal jitter": half the exponential step fixed, half random.
    pub fn delay(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let jitter = |d: Duration, rng: &mut dyn rand::RngCore| {
            let ms = d.as_millis() as u64;
            if ms == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(rng.next_u64() % (ms + 1))
            }
        };
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after) + jitter(self.base / 4, rng);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max_delay);
        exp / 2 + jitter(exp / 2, rng)
    }
}

/// Knobs of an API run.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-request timeout (connect to last byte).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Stop sending once this much was spent in this run (None: no limit).
    pub max_cost_usd: Option<f64>,
    /// Where responses are cached (None: no cache).
    pub cache_dir: Option<PathBuf>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_cost_usd: None,
            cache_dir: None,
        }
    }
}

/// An API key that never prints.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One response as cached on disk.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    provider: String,
    path: String,
    latency_ms: f64,
    /// The provider's response body, verbatim.
    response: String,
}

/// What one HTTP attempt came to.
enum Attempt {
    Done(Reply, String),
    /// Worth another try (429, 5xx, timeout, connection error, malformed body).
    Retry(String, Option<Duration>),
    /// This request cannot succeed (other 4xx); the run goes on.
    Fail(String),
    /// No request can succeed (rejected key, unknown model); the run stops.
    Fatal(String),
}

pub struct ApiBackend {
    wire: Box<dyn WireFormat>,
    /// bwb's model id (pricing key, records).
    model_id: String,
    /// The provider's model name.
    api_model: String,
    base_url: String,
    key: Secret,
    http: reqwest::blocking::Client,
    opts: ApiOptions,
    price: Option<ApiPrice>,
    /// Ask a sampling wire format for temperature 0 (the model config's `greedy`).
    greedy: bool,
    /// Spent by this process so far (all calls), for the cost limit.
    spent: Mutex<f64>,
}

impl std::fmt::Debug for ApiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBackend")
            .field("provider", &self.wire.name())
            .field("model", &self.api_model)
            .field("base_url", &self.base_url)
            .field("key", &self.key)
            .finish()
    }
}

impl ApiBackend {
    /// Build the backend for an API model config. Errors name the missing key variable or the
    /// bad base URL.
    pub fn new(
        model: &ModelConfig,
        env: &Env,
        pricing: &PricingConfig,
        opts: ApiOptions,
    ) -> Result<Self> {
        let cfg = format!("configs/models/{}.yaml", model.id);
        let provider = model.provider.ok_or_else(|| {
            Error::Config(format!(
                "{cfg}: field `provider` is required for API models (openai, anthropic or gemini)"
            ))
        })?;
        let api_model = model.api_model.clone().ok_or_else(|| {
            Error::Config(format!(
                "{cfg}: field `api_model` is required for API models"
            ))
        })?;
        let wire = wire(provider);
        let greedy = model.greedy && wire.samples();
        let key = match env.get(wire.key_var()) {
            Some((k, _)) => k.trim().to_string(),
            None => {
                return Err(Error::Config(format!(
                    "{} is not set; model `{}` uses the {} API: export {} or add `{}=...` to .env in the project root",
                    wire.key_var(),
                    model.id,
                    wire.name(),
                    wire.key_var(),
                    wire.key_var()
                )))
            }
        };
        let (base_url, from) = match env.get(wire.base_url_var()) {
            Some((v, _)) => (
                v.to_string(),
                format!("environment variable {}", wire.base_url_var()),
            ),
            None => match &model.base_url {
                Some(u) => (u.clone(), format!("{cfg} field `base_url`")),
                None => (wire.default_base_url().to_string(), "default".into()),
            },
        };
        let base_url = base_url.trim().trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{from}: base URL `{base_url}` must start with http:// or https://"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(opts.timeout)
            .user_agent(concat!("bwb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            wire,
            model_id: model.id.clone(),
            api_model,
            base_url,
            key: Secret(key),
            http,
            price: pricing.api.get(&model.id).cloned(),
            greedy,
            opts,
            spent: Mutex::new(0.0),
        })
    }

    /// Dollars spent by this backend in this process (cache hits excluded).
    pub fn spent_usd(&self) -> f64 {
        self.spent.lock().map(|s| *s).unwrap_or(0.0)
    }

    /// The base URL in use (for messages).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Replace the key (and anything long enough to be part of it) in text bound for a
    /// message or log line.
    fn scrub(&self, s: &str) -> String {
        let mut out = s.replace('\n', " ");
        if !self.key.0.is_empty() {
            out = out.replace(&self.key.0, "[redacted]");
        }
        out
    }

    fn cache_path(&self, path: &str, body: &str, sample: Option<u64>) -> Option<PathBuf> {
        let dir = self.opts.cache_dir.as_ref()?;
        let mut h = Sha256::new();
        for part in [self.wire.name(), path, body] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        // Greedy requests and a prompt's first sample keep the keys they always had; each
        // further sample of a prompt gets its own.
        if let Some(k) = sample.filter(|&k| k > 0 && self.wire.samples()) {
            h.update(format!("sample:{k}").as_bytes());
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(self.wire.name()).join(format!("{hex}.json")))
    }

    fn completion(&self, key: usize, reply: Reply, latency_ms: f64, cached: bool) -> Completion {
        Completion {
            key,
            cost_usd: self.price.as_ref().map(|p| cost_usd(p, &reply.usage)),
            text: reply.text,
            usage: reply.usage,
            latency_ms,
            compute_ms: None,
            error: None,
            finish_reason: reply.finish_reason,
            from_cache: cached,
        }
    }

    /// One HTTP attempt.
    fn attempt(&self, url: &str, body: &str) -> Attempt {
        let mut rb = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in self.wire.headers(&self.key.0) {
            rb = rb.header(k, v);
        }
        let resp = match rb.send() {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry(
                    format!("no answer within {:.1}s", self.opts.timeout.as_secs_f64()),
                    None,
                )
            }
            Err(e) => return Attempt::Retry(self.scrub(&error_chain(&e)), None),
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let text = match resp.text() {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry(
                    format!("reading the body: {}", self.scrub(&error_chain(&e))),
                    None,
                )
            }
        };
        let snippet = || {
            let s: String = self.scrub(&text).chars().take(200).collect();
            format!("HTTP {status}: {s}")
        };
        match status {
            200..=299 => match self.wire.parse(&text) {
                Ok(r) => Attempt::Done(r, text),
                Err(m) => Attempt::Retry(format!("malformed response body: {m}"), None),
            },
            429 | 500..=599 => Attempt::Retry(snippet(), retry_after),
            401 | 403 => Attempt::Fatal(format!(
                "the {} API rejected the key in {} ({}); check the key",
                self.wire.name(),
                self.wire.key_var(),
                snippet()
            )),
            404 => Attempt::Fatal(format!(
                "{url} answered 404 for model `{}` (configs/models/{}.yaml field `api_model`); check the model name and base URL ({})",
                self.api_model,
                self.model_id,
                snippet()
            )),
            _ => Attempt::Fail(snippet()),
        }
    }

    /// Complete one request: the cache, or attempts under the retry policy.
    fn complete(
        &self,
        req: &Request,
        sent: &AtomicUsize,
    ) -> std::result::Result<Completion, String> {
        let path = self.wire.path(&self.api_model);
        let mut body = self
            .wire
            .body(&self.api_model, &req.messages, req.max_new_tokens);
        if self.greedy {
            body["temperature"] = serde_json::json!(0);
        }
        let body = body.to_string();
        let cache_path = self.cache_path(&path, &body, req.sample);
        if let Some(p) = &cache_path {
            if let Some(entry) = std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str::<CacheEntry>(&t).ok())
            {
                if let Ok(reply) = self.wire.parse(&entry.response) {
                    return Ok(self.completion(req.key, reply, entry.latency_ms, true));
                }
            }
        }
        let url = format!("{}{path}", self.base_url);
        let t0 = Instant::now();
        let mut rng = rand::rng();
        let mut last = String::new();
        for attempt in 1..=self.opts.retry.max_attempts.max(1) {
            sent.fetch_add(1, Ordering::SeqCst);
            match self.attempt(&url, &body) {
                Attempt::Done(reply, text) => {
                    let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                    if let Some(p) = &cache_path {
                        let entry = CacheEntry {
                            provider: self.wire.name().into(),
                            path: path.clone(),
                            latency_ms,
                            response: text,
                        };
                        if let Err(e) = crate::fsutil::write_json_atomic(p, &entry) {
                            tracing::warn!("response cache: {e}");
                        }
                    }
                    return Ok(self.completion(req.key, reply, latency_ms, false));
                }
                Attempt::Retry(why, ra) => {
                    if attempt < self.opts.retry.max_attempts {
                        let wait = self.opts.retry.delay(attempt, ra, &mut rng);
                        tracing::debug!(
                            "{} request {} attempt {attempt} failed ({why}); retrying in {wait:?}",
                            self.wire.name(),
                            req.key
                        );
                        std::thread::sleep(wait);
                    }
                    last = why;
                }
                Attempt::Fail(why) => {
                    return Ok(self.failed(req.key, why, t0));
                }
                Attempt::Fatal(why) => return Err(why),
            }
        }
        Ok(self.failed(
            req.key,
            format!(
                "gave up after {} attempts; last: {last}",
                self.opts.retry.max_attempts
            ),
            t0,
        ))
    }

    fn failed(&self, key: usize, why: String, t0: Instant) -> Completion {
        Completion {
            key,
            error: Some(why),
            latency_ms: t0.elapsed().as_secs_f64() * 1e3,
            cost_usd: Some(0.0),
            ..Completion::default()
        }
    }

    fn limit_reached(&self) -> bool {
        match self.opts.max_cost_usd {
            Some(limit) => self.spent_usd() >= limit,
            None => false,
        }
    }
}

/// An error with its sources, one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The longest Retry-After read from a header (a day); [`RetryPolicy::max_retry_after`]
/// then caps the wait.
const RETRY_AFTER_CAP_S: f64 = 86_400.0;

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds, at most [`RETRY_AFTER_CAP_S`]
/// (a server may send anything: `1e300` must not overflow a `Duration`).
pub(crate) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let secs = match get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Some(ms) => ms / 1e3,
        None => get("retry-after")?.parse::<f64>().ok()?,
    };
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(RETRY_AFTER_CAP_S)).ok()
}

impl Backend for ApiBackend {
    fn describe(&self) -> String {
        format!(
            "{} ({} API, model {}, {})",
            self.model_id,
            self.wire.name(),
            self.api_model,
            self.base_url
        )
    }

    fn samples(&self) -> bool {
        self.wire.samples() && !self.greedy
    }

    fn count_tokens(&self, _messages: &[Message]) -> Result<Option<usize>> {
        Ok(None)
    }

    fn generate(&self, requests: Vec<Request>, sink: &mut Sink<'_>) -> Result<BatchStats> {
        let limit_msg = |spent: f64| {
            Error::Config(format!(
                "cost limit reached: spent ${spent:.4} of --max-cost-usd {:.4} in this run; finished predictions are saved, raise the limit and rerun to continue",
                self.opts.max_cost_usd.unwrap_or(0.0)
            ))
        };
        if self.limit_reached() {
            return Err(limit_msg(self.spent_usd()));
        }
        let queue = Mutex::new(VecDeque::from(requests));
        let stop = AtomicBool::new(false);
        let sent = AtomicUsize::new(0);
        let mut stats = BatchStats::default();
        let mut fatal: Option<String> = None;
        let mut sink_err: Option<Error> = None;
        let workers = self.opts.concurrency.max(1);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<std::result::Result<Completion, String>>();
            for _ in 0..workers {
                let tx = tx.clone();
                let (queue, stop, sent) = (&queue, &stop, &sent);
                s.spawn(move || loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(req) = next else { break };
                    let res = self.complete(&req, sent);
                    // Count the spend here, before this worker takes another request, so
                    // the limit stops it at once (others may still have one in flight).
                    if let Ok(c) = &res {
                        if let (false, Some(cost)) = (c.from_cache, c.cost_usd) {
                            if let Ok(mut sp) = self.spent.lock() {
                                *sp += cost;
                            }
                        }
                        if self.limit_reached() {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    if tx.send(res).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            // Results arrive here, on the caller's thread, in completion order.
            for msg in rx {
                match msg {
                    Ok(c) => {
                        if c.from_cache {
                            stats.cache_hits += 1;
                        } else if let Some(cost) = c.cost_usd {
                            stats.spent_usd += cost;
                        }
                        if sink_err.is_none() {
                            if let Err(e) = sink(c) {
                                sink_err = Some(e);
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(why) => {
                        fatal.get_or_insert(why);
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        });
        stats.requests_sent = sent.load(Ordering::SeqCst);
        if let Some(e) = sink_err {
            return Err(e);
        }
        if let Some(why) = fatal {
            return Err(Error::Config(why));
        }
        let unfinished = queue.lock().map(|q| q.len()).unwrap_or(0);
        if unfinished > 0 && self.limit_reached() {
            return Err(limit_msg(self.spent_usd()));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(10),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for failures in 1..10u32 {
            let exp = (100u64 << (failures - 1)).min(1000);
            for _ in 0..20 {
                let d = p.delay(failures, None, &mut rng).as_millis() as u64;
                assert!(d >= exp / 2 && d <= exp, "{failures}: {d} vs {exp}");
            }
        }
        let d = p.delay(1, Some(Duration::from_secs(3)), &mut rng);
        assert!(
            d >= Duration::from_secs(3) && d <= Duration::from_millis(3025),
            "{d:?}"
        );
        let d = p.delay(1, Some(Duration::from_secs(999)), &mut rng);
        assert!(d <= Duration::from_millis(10025), "{d:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn huge_or_odd_retry_after_is_capped_not_a_panic() {
        let cap = Some(Duration::from_secs_f64(RETRY_AFTER_CAP_S));
        for (k, v, want) in [
            ("retry-after", "1e300", cap),
            ("retry-after", "inf", cap),
            ("retry-after-ms", "1e300", cap),
            ("retry-after", "NaN", None),
            ("retry-after", "-1", None),
        ] {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(k, v.parse().unwrap());
            assert_eq!(retry_after(&h), want, "{k}: {v}");
        }
    }
}
