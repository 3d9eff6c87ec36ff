//! The ScaleDown compression API: `POST {SCALEDOWN_BASE_URL}/compress/raw/` with header
//! `x-api-key: $SCALEDOWN_API_KEY` and body `{"context", "prompt", "model", "scaledown":
//! {"rate"}}`; the answer carries `compressed_prompt`, `original_prompt_tokens`,
//! `compressed_prompt_tokens` (and the service's own `compression_ratio`) inside `results`
//! (some deployments: `data`). The abstractive summarization endpoint
//! (`SCALEDOWN_SUMMARIZE_URL`, the full URL) takes the same body: method
//! `scaledown-summarize`.
//!
//! Same policy as the model API clients (`backend::api::client`): the key lives only in the
//! request header (scrubbed from every message), 429 / 5xx / malformed bodies are retried
//! under [`RetryPolicy`] honouring Retry-After, a rejected key stops the run, any other 4xx is
//! that example's error, and answers are cached on disk by request body.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{ratio, CompressError, Compressed, Compressor, Rate};
use crate::backend::api::client::{error_chain, retry_after};
use crate::backend::api::{ApiOptions, RetryPolicy};
use crate::error::{Error, Result};
use crate::settings::Env;

/// The service's documented base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.scaledown.xyz";
/// The model ScaleDown compresses for when none is named.
pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `/compress/raw/`: extractive compression.
    Raw,
    /// `SCALEDOWN_SUMMARIZE_URL`: abstractive summarization.
    Summarize,
}

/// A configured ScaleDown client.
pub struct ScaleDown {
    method: Method,
    url: String,
    key: String,
    model: String,
    rate: Rate,
    http: reqwest::blocking::Client,
    retry: RetryPolicy,
    cache_dir: Option<PathBuf>,
    /// USD per million original tokens, when known.
    price_per_mtok: Option<f64>,
}

impl std::fmt::Debug for ScaleDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleDown")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl ScaleDown {
    /// Key and URLs from the environment or .env; retries, timeout and cache from `opts`.
    pub fn new(
        method: Method,
        rate: Rate,
        model: Option<&str>,
        price_per_mtok: Option<f64>,
        env: &Env,
        opts: &ApiOptions,
    ) -> Result<ScaleDown> {
        let key = match env.get("SCALEDOWN_API_KEY") {
            Some((k, _)) => k.trim().to_string(),
            None => {
                return Err(Error::Config(
                    "SCALEDOWN_API_KEY is not set; the scaledown compression methods need it: export it or add `SCALEDOWN_API_KEY=...` to .env in the project root".into(),
                ))
            }
        };
        let url = match method {
            Method::Raw => {
                let base = env
                    .get("SCALEDOWN_BASE_URL")
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
                format!("{}/compress/raw/", base.trim().trim_end_matches('/'))
            }
            Method::Summarize => match env.get("SCALEDOWN_SUMMARIZE_URL") {
                Some((v, _)) => v.trim().to_string(),
                None => {
                    return Err(Error::Config(
                        "SCALEDOWN_SUMMARIZE_URL is not set; method `scaledown-summarize` posts to that URL: export it or add it to .env".into(),
                    ))
                }
            },
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "ScaleDown URL `{url}` must start with http:// or https:// (SCALEDOWN_BASE_URL / SCALEDOWN_SUMMARIZE_URL)"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(opts.timeout)
            .user_agent(concat!("bwb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(ScaleDown {
            method,
            url,
            key,
            model: model.unwrap_or(DEFAULT_MODEL).to_string(),
            rate,
            http,
            retry: opts.retry.clone(),
            cache_dir: opts.cache_dir.clone(),
            price_per_mtok,
        })
    }

    fn scrub(&self, s: &str) -> String {
        let out = s.replace('\n', " ");
        if self.key.is_empty() {
            out
        } else {
            out.replace(&self.key, "[redacted]")
        }
    }

    fn body(&self, context: &str, prompt: &str) -> String {
        serde_json::json!({
            "context": context,
            "prompt": prompt,
            "model": self.model,
            "scaledown": {"rate": self.rate.to_json()},
        })
        .to_string()
    }

    fn cache_path(&self, body: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = Sha256::new();
        for part in ["scaledown", self.url.as_str(), body] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join("scaledown").join(format!("{hex}.json")))
    }

    /// One attempt: Ok(answer), or Err((retry?, message, retry-after)).
    fn attempt(&self, body: &str) -> std::result::Result<Compressed, Attempt> {
        let resp = self
            .http
            .post(&self.url)
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| Attempt::Retry(self.scrub(&error_chain(&e)), None))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let text = resp.text().map_err(|e| {
            Attempt::Retry(
                format!("reading the body: {}", self.scrub(&error_chain(&e))),
                None,
            )
        })?;
        let snippet = || {
            let s: String = self.scrub(&text).chars().take(200).collect();
            format!("HTTP {status}: {s}")
        };
        match status {
            200..=299 => {
                parse(&text).map_err(|m| Attempt::Retry(format!("malformed response: {m}"), None))
            }
            429 | 500..=599 => Err(Attempt::Retry(snippet(), after)),
            401 | 403 => Err(Attempt::Fatal(format!(
                "ScaleDown rejected the key in SCALEDOWN_API_KEY ({}); check the key",
                snippet()
            ))),
            _ => Err(Attempt::Fail(snippet())),
        }
    }
}

enum Attempt {
    Retry(String, Option<std::time::Duration>),
    Fail(String),
    Fatal(String),
}

/// The answer object: `results` or `data` (or the top level), `compressed_prompt` required.
pub(crate) fn parse(text: &str) -> std::result::Result<Compressed, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if v.get("successful").and_then(|s| s.as_bool()) == Some(false) {
        return Err(format!(
            "the service says it did not succeed: {}",
            first(&v.to_string())
        ));
    }
    let r = v.get("results").or_else(|| v.get("data")).unwrap_or(&v);
    let Some(text) = r.get("compressed_prompt").and_then(|t| t.as_str()) else {
        return Err(format!(
            "no `compressed_prompt` in {}",
            first(&v.to_string())
        ));
    };
    let count = |k: &str| r.get(k).and_then(|x| x.as_u64());
    let compressed = count("compressed_prompt_tokens")
        .unwrap_or_else(|| text.chars().count().div_ceil(4) as u64);
    let original = count("original_prompt_tokens").unwrap_or(compressed);
    Ok(Compressed {
        text: text.to_string(),
        original_tokens: original,
        compressed_tokens: compressed,
        compression_ratio: ratio(original, compressed),
        latency_ms: 0.0,
        cost_usd: None,
        from_cache: false,
    })
}

fn first(s: &str) -> String {
    s.chars().take(200).collect()
}

impl Compressor for ScaleDown {
    fn name(&self) -> &str {
        match self.method {
            Method::Raw => "scaledown",
            Method::Summarize => "scaledown-summarize",
        }
    }

    fn compress(
        &self,
        context: &str,
        prompt: &str,
    ) -> std::result::Result<Compressed, CompressError> {
        let body = self.body(context, prompt);
        let cache = self.cache_path(&body);
        if let Some(c) = cache.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            if let Ok(mut hit) = serde_json::from_str::<Compressed>(&c) {
                hit.from_cache = true;
                hit.cost_usd = hit.cost_usd.map(|_| 0.0);
                return Ok(hit);
            }
        }
        let t0 = Instant::now();
        let mut rng = rand::rng();
        let mut failures = 0;
        loop {
            let why = match self.attempt(&body) {
                Ok(mut c) => {
                    c.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                    c.cost_usd = self
                        .price_per_mtok
                        .map(|p| c.original_tokens as f64 * p / 1e6);
                    if let Some(p) = &cache {
                        // A cache that cannot be written only costs a repeat request.
                        let _ = crate::fsutil::write_json_atomic(p, &c);
                    }
                    return Ok(c);
                }
                Err(Attempt::Fatal(m)) => {
                    return Err(CompressError {
                        fatal: true,
                        message: m,
                    })
                }
                Err(Attempt::Fail(m)) => {
                    return Err(CompressError {
                        fatal: false,
                        message: m,
                    })
                }
                Err(Attempt::Retry(m, after)) => (m, after),
            };
            failures += 1;
            if failures >= self.retry.max_attempts {
                return Err(CompressError {
                    fatal: false,
                    message: format!("{} after {failures} attempts", why.0),
                });
            }
            std::thread::sleep(self.retry.delay(failures, why.1, &mut rng));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_wrappers_and_missing_counts_parse() {
        let a = parse(r#"{"successful": true, "results": {"compressed_prompt": "abc", "original_prompt_tokens": 100, "compressed_prompt_tokens": 40, "compression_ratio": 2.5}}"#).unwrap();
        assert_eq!((a.original_tokens, a.compressed_tokens), (100, 40));
        assert!((a.compression_ratio - 0.4).abs() < 1e-12);
        let b = parse(r#"{"data": {"compressed_prompt": "abcdefgh"}}"#).unwrap();
        assert_eq!((b.original_tokens, b.compressed_tokens), (2, 2));
        assert!(parse(r#"{"successful": false, "results": {}}"#).is_err());
        assert!(parse(r#"{"results": {"compressed": "x"}}"#).is_err());
        assert!(parse(r#"{"results": {"compressed_prompt": "x""#).is_err());
    }
}
