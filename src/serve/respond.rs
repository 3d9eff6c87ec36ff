//! Response bodies in OpenAI's shapes: one JSON object, or a server-sent-event stream fed by
//! the engine as it decodes.
//!
//! A stream is a role chunk per choice (chat), content deltas as the engine sends them (it
//! holds back any text that could still become a stop string, and partial UTF-8 characters),
//! each choice's `finish_reason` chunk, the usage chunk (`choices: []`) when
//! `stream_options.include_usage` asks, then `data: [DONE]`. An engine error mid-stream is a
//! `data: {"error": …}` event before `[DONE]`. Dropping the body (the client went away)
//! drops the event receiver, which cancels the request at the engine's next step.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{ApiError, Usage};
use super::engine::Event;
use crate::model::generate::{Completion, FinishReason, TokenLogprob};

/// A token's text in logprobs (special tokens kept, as vLLM names them).
pub type TokenNamer = std::sync::Arc<dyn Fn(u32) -> String + Send + Sync>;

/// One request's answer (rows are prompt-major: prompt p, copy k at p·n + k); `outs` fill in
/// as rows finish.
pub struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// `/v1/chat/completions` (else `/v1/completions`).
    pub chat: bool,
    pub prompt_tokens: usize,
    pub outs: Vec<Completion>,
    /// Answer logprobs with this many alternatives per token.
    pub logprobs: Option<usize>,
    /// `/v1/completions` with `echo`: each prompt's text and token ids (empty: no echo).
    pub echo: Vec<(String, Vec<u32>)>,
    /// Rows per prompt (`n`).
    pub n: usize,
    pub name_token: TokenNamer,
}

/// Logprobs as JSON numbers: −inf becomes OpenAI's −9999.
fn clamp(x: f32) -> f64 {
    (x as f64).max(-9999.0)
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

    /// Chat shape: `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob,
    /// bytes}]}]}` (the `k` most likely tokens, most likely first).
    fn chat_logprobs(&self, entries: &[TokenLogprob]) -> Value {
        let item = |id: u32, lp: f32| {
            let t = (self.name_token)(id);
            json!({"token": t, "logprob": clamp(lp), "bytes": t.as_bytes()})
        };
        let content: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut v = item(e.token, e.logprob);
                v["top_logprobs"] = e.top.iter().map(|&(t, l)| item(t, l)).collect();
                v
            })
            .collect();
        json!({ "content": content })
    }

    /// Legacy completions shape: `{tokens, token_logprobs, top_logprobs, text_offset}`; a
    /// token without an entry (the first prompt token) has nulls; each `top_logprobs` dict
    /// holds the `k` most likely tokens and the token itself (as OpenAI's and vLLM's);
    /// offsets count characters from `offset`.
    fn legacy_logprobs(&self, tokens: &[(u32, Option<&TokenLogprob>)], mut offset: usize) -> Value {
        let (mut names, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for &(id, e) in tokens {
            let name = (self.name_token)(id);
            offsets.push(offset);
            offset += name.chars().count();
            lps.push(e.map(|e| clamp(e.logprob)));
            tops.push(e.map(|e| {
                let mut d = serde_json::Map::new();
                // Tokens that read the same share a key: keep the larger logprob, so the
                // dict's maximum is still the position's maximum (lm-eval's greedy check).
                for &(t, l) in e.top.iter().chain([(e.token, e.logprob)].iter()) {
                    let (key, l) = ((self.name_token)(t), clamp(l));
                    if d.get(&key)
                        .and_then(Value::as_f64)
                        .is_none_or(|old| old < l)
                    {
                        d.insert(key, json!(l));
                    }
                }
                d
            }));
            names.push(name);
        }
        json!({"tokens": names, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
    }

    /// A row's echoed prompt tokens with their entries (none for the first).
    fn echo_tokens<'a>(
        &self,
        row: usize,
        entries: &'a [TokenLogprob],
    ) -> Vec<(u32, Option<&'a TokenLogprob>)> {
        let ids = self
            .echo
            .get(row / self.n.max(1))
            .map(|e| e.1.as_slice())
            .unwrap_or(&[]);
        ids.iter()
            .enumerate()
            .map(|(i, &id)| (id, i.checked_sub(1).and_then(|j| entries.get(j))))
            .collect()
    }

    fn echo_text(&self, row: usize) -> &str {
        self.echo
            .get(row / self.n.max(1))
            .map(|e| e.0.as_str())
            .unwrap_or("")
    }

    /// Row `row`'s logprobs for `prompt` (echoed) and `generated` entries, or null.
    fn logprobs_json(
        &self,
        row: usize,
        prompt: Option<&[TokenLogprob]>,
        generated: &[TokenLogprob],
        offset: usize,
    ) -> Value {
        if self.logprobs.is_none() {
            return Value::Null;
        }
        if self.chat {
            return self.chat_logprobs(generated);
        }
        let mut tokens = match prompt {
            Some(p) => self.echo_tokens(row, p),
            None => Vec::new(),
        };
        tokens.extend(generated.iter().map(|e| (e.token, Some(e))));
        self.legacy_logprobs(&tokens, offset)
    }

    fn body(&self) -> Value {
        let echo = !self.echo.is_empty();
        let choices: Vec<Value> = self
            .outs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let reason = finish_reason(c.finish_reason);
                let prompt = echo.then_some(c.prompt_logprobs.as_slice());
                let logprobs = self.logprobs_json(i, prompt, &c.logprobs, 0);
                if self.chat {
                    json!({"index": i, "message": {"role": "assistant", "content": c.text},
                           "logprobs": logprobs, "finish_reason": reason})
                } else {
                    let text = format!("{}{}", self.echo_text(i), c.text);
                    json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": reason})
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
        (text, logprobs): (Option<&str>, Value),
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
            json!({"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": reason})
        } else {
            json!({"index": i, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": reason})
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
}

fn event(out: &mut String, v: &Value) {
    out.push_str("data: ");
    out.push_str(&v.to_string());
    out.push_str("\n\n");
}

/// Every row's completion, in row order, once the engine has finished them all.
pub(super) async fn collect(
    mut rx: UnboundedReceiver<Event>,
    rows: usize,
) -> Result<Vec<Completion>, ApiError> {
    let mut outs: Vec<Option<Completion>> = vec![None; rows];
    let mut left = rows;
    while left > 0 {
        match rx.recv().await {
            Some(Event::Done { row, completion }) => {
                if let Some(slot) = outs.get_mut(row) {
                    *slot = Some(completion);
                    left -= 1;
                }
            }
            Some(Event::Delta { .. }) => {}
            Some(Event::Error(e)) => {
                return Err(ApiError::internal(format!("generation failed: {e}")))
            }
            None => return Err(ApiError::internal("the engine dropped the request")),
        }
    }
    Ok(outs.into_iter().flatten().collect())
}

/// A streaming answer in progress.
struct Streamer {
    answer: Answer,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    rows: usize,
    started: bool,
    finished: bool,
    /// Per row: whether the echoed prompt went out, and the characters sent (text offsets).
    echoed: Vec<bool>,
    sent_chars: Vec<usize>,
}

impl Streamer {
    fn new(answer: Answer, rx: UnboundedReceiver<Event>, rows: usize, include_usage: bool) -> Self {
        Self {
            answer,
            rx,
            include_usage,
            rows,
            started: false,
            finished: false,
            echoed: vec![false; rows],
            sent_chars: vec![0; rows],
        }
    }

    /// A content chunk for `row`: the echoed prompt first (completions with `echo`), then
    /// `text`, with the entries' logprobs.
    fn delta(
        &mut self,
        row: usize,
        text: &str,
        prompt_logprobs: &[TokenLogprob],
        logprobs: &[TokenLogprob],
    ) -> Value {
        let a = &self.answer;
        let first = !a.echo.is_empty() && !self.echoed.get(row).copied().unwrap_or(true);
        let text = match first {
            true => format!("{}{text}", a.echo_text(row)),
            false => text.to_string(),
        };
        let offset = self.sent_chars.get(row).copied().unwrap_or(0);
        let lp = a.logprobs_json(row, first.then_some(prompt_logprobs), logprobs, offset);
        let v = a.chunk(row, (Some(&text), lp), false, None, self.include_usage);
        if let Some(e) = self.echoed.get_mut(row) {
            *e = true;
        }
        if let Some(c) = self.sent_chars.get_mut(row) {
            *c += text.chars().count();
        }
        v
    }

    /// The next piece of the SSE body; `None` once `[DONE]` is sent.
    async fn next(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        let mut out = String::new();
        if !self.started {
            self.started = true;
            if self.answer.chat {
                for i in 0..self.rows {
                    event(
                        &mut out,
                        &self.answer.chunk(
                            i,
                            (Some(""), Value::Null),
                            true,
                            None,
                            self.include_usage,
                        ),
                    );
                }
                return Some(out);
            }
        }
        match self.rx.recv().await {
            Some(Event::Delta {
                row,
                text,
                prompt_logprobs,
                logprobs,
            }) => {
                let v = self.delta(row, &text, &prompt_logprobs, &logprobs);
                event(&mut out, &v);
            }
            Some(Event::Done { row, completion }) => {
                if !self.answer.echo.is_empty() && !self.echoed.get(row).copied().unwrap_or(true) {
                    let v = self.delta(row, "", &[], &[]);
                    event(&mut out, &v);
                }
                let reason = finish_reason(completion.finish_reason);
                let a = &self.answer;
                event(
                    &mut out,
                    &a.chunk(
                        row,
                        (None, Value::Null),
                        false,
                        Some(reason),
                        self.include_usage,
                    ),
                );
                self.answer.outs.push(completion);
                if self.answer.outs.len() == self.rows {
                    self.close(&mut out, None);
                }
            }
            Some(Event::Error(e)) => self.close(&mut out, Some(format!("generation failed: {e}"))),
            None => self.close(&mut out, Some("the engine dropped the request".into())),
        }
        Some(out)
    }

    /// The usage chunk (when asked for) or an error event, then `[DONE]`.
    fn close(&mut self, out: &mut String, error: Option<String>) {
        match error {
            Some(e) => event(out, &ApiError::internal(e).body()),
            None if self.include_usage => {
                let a = &self.answer;
                event(
                    out,
                    &json!({
                        "id": a.id,
                        "object": a.object(true),
                        "created": a.created,
                        "model": a.model,
                        "choices": [],
                        "usage": a.usage(),
                    }),
                );
            }
            None => {}
        }
        out.push_str("data: [DONE]\n\n");
        self.finished = true;
    }
}

/// Answer as JSON once every row is done or, when the request asked to stream, as SSE fed by
/// the engine's events.
pub(super) async fn respond(
    mut answer: Answer,
    rx: UnboundedReceiver<Event>,
    rows: usize,
    plan: &super::Plan,
) -> Result<Response, ApiError> {
    if !plan.stream {
        answer.outs = collect(rx, rows).await?;
        return Ok(Json(answer.body()).into_response());
    }
    let streamer = Streamer::new(answer, rx, rows, plan.include_usage);
    let body = futures_util::stream::unfold(streamer, |mut s| async move {
        let piece = s.next().await?;
        Some((Ok::<Bytes, Infallible>(Bytes::from(piece)), s))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn streamer(
        chat: bool,
        rows: usize,
        include_usage: bool,
    ) -> (Streamer, tokio::sync::mpsc::UnboundedSender<Event>) {
        let (tx, rx) = unbounded_channel();
        let answer = Answer {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            chat,
            prompt_tokens: 3,
            outs: Vec::new(),
            logprobs: None,
            echo: Vec::new(),
            n: 1,
            name_token: std::sync::Arc::new(|t| format!("<{t}>")),
        };
        (Streamer::new(answer, rx, rows, include_usage), tx)
    }

    /// Every SSE piece until the stream ends.
    fn drain(mut s: Streamer) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut out = Vec::new();
            while let Some(p) = s.next().await {
                out.push(p);
            }
            out
        })
    }

    fn done(row: usize, text: &str, tokens: usize) -> Event {
        Event::Done {
            row,
            completion: Completion {
                token_ids: vec![0; tokens],
                finish_reason: FinishReason::Length,
                prompt_tokens: 3,
                completion_tokens: tokens,
                text: text.into(),
                logprobs: Vec::new(),
                prompt_logprobs: Vec::new(),
            },
        }
    }

    #[test]
    fn a_stream_sends_roles_deltas_finish_reasons_usage_and_done() {
        let (s, tx) = streamer(true, 2, true);
        tx.send(Event::Delta {
            row: 1,
            text: "b".into(),
            prompt_logprobs: vec![],
            logprobs: vec![],
        })
        .unwrap();
        tx.send(Event::Delta {
            row: 0,
            text: "a".into(),
            prompt_logprobs: vec![],
            logprobs: vec![],
        })
        .unwrap();
        tx.send(done(0, "a", 1)).unwrap();
        tx.send(done(1, "b", 2)).unwrap();
        let all = drain(s).concat();
        let events: Vec<&str> = all.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2 + 2 + 2 + 1 + 1, "{all}");
        assert!(events[0].contains(r#""role":"assistant""#) && events[0].contains(r#""index":0"#));
        assert!(events[1].contains(r#""role":"assistant""#) && events[1].contains(r#""index":1"#));
        assert!(events[2].contains(r#""content":"b""#) && events[2].contains(r#""index":1"#));
        assert!(events[4].contains(r#""finish_reason":"length""#));
        assert!(events[6].contains(r#""choices":[]"#));
        assert!(
            events[6].contains(r#""completion_tokens":3"#),
            "{}",
            events[6]
        );
        assert_eq!(events[7], "data: [DONE]");
    }

    #[test]
    fn an_engine_error_mid_stream_is_an_error_event_then_done() {
        let (s, tx) = streamer(false, 1, false);
        tx.send(Event::Delta {
            row: 0,
            text: "partial".into(),
            prompt_logprobs: vec![],
            logprobs: vec![],
        })
        .unwrap();
        tx.send(Event::Error("out of memory".into())).unwrap();
        let all = drain(s).concat();
        let events: Vec<&str> = all.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{all}");
        assert!(events[0].contains(r#""text":"partial""#));
        let err: Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of memory"));
        assert_eq!(err["error"]["type"], "server_error");
        assert_eq!(events[2], "data: [DONE]");
        // The engine going away without an answer is an error too.
        let (s, tx) = streamer(false, 1, false);
        drop(tx);
        assert!(drain(s).concat().contains("the engine dropped the request"));
    }
}
