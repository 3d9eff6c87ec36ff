//! The local backend: the Candle engine's batched generation, greedy, with requests sorted by
//! prompt length so each batch pads as little as possible.

use std::time::Instant;

use super::{Backend, BatchStats, Completion, Request, Sink, Usage};
use crate::error::Result;
use crate::model::generate::{FinishReason, GenParams};
use crate::model::load::LoadedModel;
use crate::prompt::chat_template::Message;

pub struct LocalBackend {
    pub model: LoadedModel,
    /// Prompts per generate call.
    pub batch_size: usize,
    /// Name for records (config id or path).
    pub name: String,
}

impl LocalBackend {
    pub fn new(model: LoadedModel, batch_size: usize, name: impl Into<String>) -> Self {
        Self {
            model,
            batch_size: batch_size.max(1),
            name: name.into(),
        }
    }
}

impl Backend for LocalBackend {
    fn describe(&self) -> String {
        format!("{} (local, {})", self.name, self.model.origin)
    }

    fn count_tokens(&self, messages: &[Message]) -> Result<Option<usize>> {
        Ok(Some(self.model.encode_prompt(messages, false)?.len()))
    }

    fn generate(&self, requests: Vec<Request>, sink: &mut Sink<'_>) -> Result<BatchStats> {
        let mut encoded = requests
            .into_iter()
            .map(|r| Ok((self.model.encode_prompt(&r.messages, false)?, r)))
            .collect::<Result<Vec<_>>>()?;
        // Longest first: the slowest batch runs while the progress bar is still honest, and
        // rows of similar length share a batch.
        encoded.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.key.cmp(&b.1.key)));
        let mut rest = encoded.as_slice();
        while !rest.is_empty() {
            // Rows of one batch share one max_new_tokens (a task uses one for all).
            let max_new = rest[0].1.max_new_tokens;
            let n = rest
                .iter()
                .take(self.batch_size)
                .take_while(|(_, r)| r.max_new_tokens == max_new)
                .count();
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let prompts: Vec<Vec<u32>> = batch.iter().map(|(ids, _)| ids.clone()).collect();
            let params = GenParams {
                max_new_tokens: max_new,
                ..GenParams::default()
            };
            let t0 = Instant::now();
            let outs = self.model.generate(&prompts, &params)?;
            let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
            for ((_, req), out) in batch.iter().zip(outs) {
                sink(Completion {
                    key: req.key,
                    text: out.text,
                    usage: Usage {
                        input_tokens: out.prompt_tokens as u64,
                        output_tokens: out.completion_tokens as u64,
                        ..Usage::default()
                    },
                    latency_ms,
                    compute_ms: Some(latency_ms / n as f64),
                    cost_usd: None,
                    error: None,
                    finish_reason: Some(
                        match out.finish_reason {
                            FinishReason::Eos => "eos",
                            FinishReason::Stop => "stop",
                            FinishReason::Length => "length",
                        }
                        .to_string(),
                    ),
                    from_cache: false,
                })?;
            }
        }
        Ok(BatchStats::default())
    }
}
