//! Frontier models behind HTTP APIs. Each provider module only knows its wire format (URL,
//! headers, request body, how to read a response); [`client::ApiBackend`] owns everything
//! else: keys, retries, concurrency, the cost limit and the response cache.

pub mod anthropic;
pub mod client;
pub mod gemini;
pub mod openai;

use crate::backend::Usage;
use crate::config::{ApiPrice, Provider};
use crate::prompt::chat_template::Message;

pub use client::{ApiBackend, ApiOptions, RetryPolicy};

/// A provider's answer, read from a successful response body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
    pub finish_reason: Option<String>,
}

/// One provider's wire format.
pub trait WireFormat: Send + Sync {
    /// Lower-case provider name (cache key, messages).
    fn name(&self) -> &'static str;
    /// The environment variable holding the key.
    fn key_var(&self) -> &'static str;
    /// The environment variable that overrides the base URL.
    fn base_url_var(&self) -> &'static str;
    /// The provider's documented base URL.
    fn default_base_url(&self) -> &'static str;
    /// Path appended to the base URL for `model`.
    fn path(&self, model: &str) -> String;
    /// Authentication and version headers for `key`.
    fn headers(&self, key: &str) -> Vec<(&'static str, String)>;
    /// The request body.
    fn body(&self, model: &str, messages: &[Message], max_tokens: usize) -> serde_json::Value;
    /// Read a 2xx body; `Err` means malformed (retried).
    fn parse(&self, body: &str) -> Result<Reply, String>;
    /// Whether the body leaves sampling on (no temperature 0): completions of the same prompt
    /// differ from request to request.
    fn samples(&self) -> bool {
        false
    }
}

/// The wire format of `provider`.
pub fn wire(provider: Provider) -> Box<dyn WireFormat> {
    match provider {
        Provider::Openai => Box::new(openai::OpenAi),
        Provider::Anthropic => Box::new(anthropic::Anthropic),
        Provider::Gemini => Box::new(gemini::Gemini),
    }
}

/// USD for one request's usage: uncached input at the input rate, cache reads at the cached
/// rate (the input rate when none is listed), cache writes at the input rate, output (with
/// reasoning) at the output rate; prompts above a long-context threshold use that tier.
pub fn cost_usd(price: &ApiPrice, u: &Usage) -> f64 {
    let (input, cached, output) = match &price.long_context {
        Some(t) if u.input_tokens > t.above_input_tokens => (
            t.input_per_mtok,
            t.cached_input_per_mtok.unwrap_or(t.input_per_mtok),
            t.output_per_mtok,
        ),
        _ => (
            price.input_per_mtok,
            price.cached_input_per_mtok.unwrap_or(price.input_per_mtok),
            price.output_per_mtok,
        ),
    };
    let cached_in = u.cached_input_tokens.min(u.input_tokens);
    let fresh_in = u.input_tokens - cached_in;
    (fresh_in as f64 * input + cached_in as f64 * cached + u.output_tokens as f64 * output) / 1e6
}

/// Messages in provider form: the system prompt(s) apart, the rest as alternating turns.
pub(crate) fn split_system(messages: &[Message]) -> (Option<String>, Vec<&Message>) {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let rest = messages.iter().filter(|m| m.role != "system").collect();
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, rest)
}

/// A JSON number as u64 (absent or not a number: 0).
pub(crate) fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LongContextTier;

    #[test]
    fn cost_bills_cached_input_and_reasoning_once() {
        let price = ApiPrice {
            input_per_mtok: 1.0,
            cached_input_per_mtok: Some(0.1),
            output_per_mtok: 10.0,
            long_context: Some(LongContextTier {
                above_input_tokens: 1000,
                input_per_mtok: 2.0,
                cached_input_per_mtok: None,
                output_per_mtok: 20.0,
            }),
        };
        let u = Usage {
            input_tokens: 100,
            cached_input_tokens: 40,
            output_tokens: 10,
            reasoning_tokens: 6,
            ..Usage::default()
        };
        let want = (60.0 * 1.0 + 40.0 * 0.1 + 10.0 * 10.0) / 1e6;
        assert!((cost_usd(&price, &u) - want).abs() < 1e-15);
        let long = Usage {
            input_tokens: 2000,
            output_tokens: 1,
            ..Usage::default()
        };
        assert!((cost_usd(&price, &long) - (2000.0 * 2.0 + 20.0) / 1e6).abs() < 1e-15);
    }
}
