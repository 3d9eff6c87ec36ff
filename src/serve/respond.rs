//! Response bodies in OpenAI's shapes: one JSON object, or a server-sent-event stream.
//!
//! This slice generates a request's whole completion before answering, so a stream replays
//! it: a role chunk, one content delta per token (the text each token adds once decoded;
//! a token that ends inside a UTF-8 character waits for the next), the `finish_reason`
//! chunk, the usage chunk when `stream_options.include_usage` asks, then `data: [DONE]`.
//! The engine has already cut each text at its stop string, so no part of a stop string
//! reaches the client.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::{ApiError, Usage};
use super::Plan;
use crate::model::generate::{Completion, FinishReason};
use crate::model::load::LoadedModel;

/// One request's finished generation (rows are prompt-major: prompt p, copy k at p·n + k).
pub struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// `/v1/chat/completions` (else `/v1/completions`).
    pub chat: bool,
    pub prompt_tokens: usize,
    pub outs: Vec<Completion>,
}

pub fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

impl Answer {
    fn usage(&self) -> Usage {
        let completion_tokens = self.outs.iter().map(|c| c.completion_tokens).sum();
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens,
            total_tokens: self.prompt_tokens + completion_tokens,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    fn body(&self) -> Value {
        let choices: Vec<Value> = self
            .outs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let reason = finish_reason(c.finish_reason);
                if self.chat {
                    json!({"index": i, "message": {"role": "assistant", "content": c.text},
                           "logprobs": null, "finish_reason": reason})
                } else {
                    json!({"index": i, "text": c.text, "logprobs": null, "finish_reason": reason})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        })
    }

    /// One streamed chunk for choice `i`: a delta (`text`, and the role on the first chat
    /// chunk) or the closing `finish_reason`.
    fn chunk(
        &self,
        i: usize,
        text: Option<&str>,
        role: bool,
        reason: Option<&str>,
        usage: bool,
    ) -> Value {
        let choice = if self.chat {
            let mut delta = serde_json::Map::new();
            if role {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            json!({"index": i, "delta": delta, "logprobs": null, "finish_reason": reason})
        } else {
            json!({"index": i, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason})
        };
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if usage {
            v["usage"] = Value::Null;
        }
        v
    }

    fn sse(&self, m: &LoadedModel, include_usage: bool) -> String {
        let mut out = String::new();
        let mut event = |v: &Value| {
            out.push_str("data: ");
            out.push_str(&v.to_string());
            out.push_str("\n\n");
        };
        for (i, c) in self.outs.iter().enumerate() {
            if self.chat {
                event(&self.chunk(i, Some(""), true, None, include_usage));
            }
            for piece in deltas(m, &c.token_ids, &c.text) {
                event(&self.chunk(i, Some(&piece), false, None, include_usage));
            }
            let reason = finish_reason(c.finish_reason);
            event(&self.chunk(i, None, false, Some(reason), include_usage));
        }
        if include_usage {
            event(&json!({
                "id": self.id,
                "object": self.object(true),
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage(),
            }));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// The text each token adds, in order; the pieces join to exactly `text` (the completion,
/// already cut at a stop string).
pub fn deltas(m: &LoadedModel, ids: &[u32], text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut sent = 0; // bytes of `text` already sent
    for i in 1..=ids.len() {
        let Ok(t) = m.decode(&ids[..i]) else {
            continue;
        };
        if t.ends_with('\u{FFFD}') {
            continue; // mid-character: wait for the token that completes it
        }
        let upto = t.len().min(text.len());
        if upto > sent && text.is_char_boundary(upto) && t.starts_with(&text[..upto]) {
            pieces.push(text[sent..upto].to_string());
            sent = upto;
        }
        if sent == text.len() {
            break;
        }
    }
    if sent < text.len() {
        pieces.push(text[sent..].to_string());
    }
    pieces
}

/// Answer a finished generation as JSON or, when the request asked to stream, as SSE
/// (built off the async workers: decoding every prefix costs CPU).
pub(super) async fn respond(
    answer: Answer,
    model: Arc<LoadedModel>,
    plan: &Plan,
) -> Result<Response, ApiError> {
    if !plan.stream {
        return Ok(Json(answer.body()).into_response());
    }
    let include_usage = plan.include_usage;
    let body = tokio::task::spawn_blocking(move || answer.sse(&model, include_usage))
        .await
        .map_err(|e| ApiError::internal(format!("building the stream: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
