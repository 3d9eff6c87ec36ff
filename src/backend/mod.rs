//! One `Backend` trait serves local and API models: a batch of chat conversations in,
//! completions with token usage, latency, cost and a per-request error out. Local and API
//! models therefore see byte-identical messages and are scored identically.
//!
//! Completions are handed to a sink as they finish (not in request order), so the caller can
//! append each prediction to disk the moment it exists.

pub mod api;
pub mod local;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::prompt::chat_template::Message;

/// One conversation to complete. `key` is the caller's handle, echoed in the completion.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: usize,
    pub messages: Vec<Message>,
    pub max_new_tokens: usize,
    /// Which independent draw of this prompt this is (0, 1, …), for a backend that samples
    /// ([`Backend::samples`]): draws after the first are part of the response-cache key, so
    /// each eval seed gets its own completion. None for greedy use (one completion a prompt).
    pub sample: Option<u64>,
}

/// Token counts as the provider (or the engine) reports them. `input_tokens` includes cached
/// input and `output_tokens` includes reasoning tokens, so both are what is billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (billed at the cached rate).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Hidden reasoning / thinking tokens (part of `output_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
    }
}

/// The result of one request.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub key: usize,
    pub text: String,
    pub usage: Usage,
    /// Wall time of the request (local: of its batch), retries and backoff included.
    pub latency_ms: f64,
    /// This request's share of the compute: a local batch's wall time divided by its rows;
    /// None for API requests (the provider's compute is not ours to count).
    pub compute_ms: Option<f64>,
    /// What the request cost (API, from configs/pricing.yaml); None when unknown or local.
    pub cost_usd: Option<f64>,
    /// Why the request produced no completion (after retries); None on success.
    pub error: Option<String>,
    /// eos / stop / length, or the provider's own finish reason.
    pub finish_reason: Option<String>,
    /// Served from the on-disk response cache: nothing was sent and nothing was spent.
    pub from_cache: bool,
}

/// What one `generate` call did, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// HTTP requests actually sent (retries included); 0 for local models.
    pub requests_sent: usize,
    /// Completions answered from the response cache.
    pub cache_hits: usize,
    /// Money spent by this call (cache hits cost nothing).
    pub spent_usd: f64,
}

/// Receives each completion as soon as it is ready; an error stops the batch.
pub type Sink<'a> = dyn FnMut(Completion) -> Result<()> + 'a;

/// A model that completes chat conversations.
pub trait Backend {
    /// For logs and records: the model and where it runs.
    fn describe(&self) -> String;

    /// Prompt length in tokens under this model's own chat template, when the backend can
    /// count locally (API backends cannot without a request).
    fn count_tokens(&self, messages: &[Message]) -> Result<Option<usize>>;

    /// Whether completions are sampled (temperature > 0) rather than greedy: each eval seed
    /// is then an independent generation of the test set instead of a resample of one.
    fn samples(&self) -> bool {
        false
    }

    /// Complete every request, calling `sink` once per request as each finishes. A request
    /// that fails after retries comes back with `error` set; only failures that doom every
    /// request (a rejected key, a spent cost limit, a model error) end the call with `Err`,
    /// after the completions already finished have reached the sink.
    fn generate(&self, requests: Vec<Request>, sink: &mut Sink<'_>) -> Result<BatchStats>;
}
