//! Gemini generateContent (`POST {base}/v1beta/models/{model}:generateContent`,
//! `x-goog-api-key`). `usageMetadata.candidatesTokenCount` leaves out thinking tokens
//! (`thoughtsTokenCount`), which are billed as output, so they are added to the output.

use serde_json::{json, Value};

use super::{count, split_system, Reply, WireFormat};
use crate::backend::Usage;
use crate::prompt::chat_template::Message;

pub struct Gemini;

impl WireFormat for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }
    fn key_var(&self) -> &'static str {
        "GEMINI_API_KEY"
    }
    fn base_url_var(&self) -> &'static str {
        "GEMINI_BASE_URL"
    }
    fn default_base_url(&self) -> &'static str {
        "https://generativelanguage.googleapis.com"
    }
    fn path(&self, model: &str) -> String {
        format!("/v1beta/models/{model}:generateContent")
    }
    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![("x-goog-api-key", key.to_string())]
    }
    fn body(&self, _model: &str, messages: &[Message], max_tokens: usize) -> Value {
        let (system, turns) = split_system(messages);
        let contents: Vec<Value> = turns
            .iter()
            .map(|m| {
                let role = if m.role == "assistant" {
                    "model"
                } else {
                    "user"
                };
                json!({"role": role, "parts": [{"text": m.content}]})
            })
            .collect();
        let mut body = json!({
            "contents": contents,
            "generationConfig": {"maxOutputTokens": max_tokens, "temperature": 0},
        });
        if let Some(s) = system {
            body["systemInstruction"] = json!({"parts": [{"text": s}]});
        }
        body
    }
    fn parse(&self, body: &str) -> Result<Reply, String> {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let cand = v
            .get("candidates")
            .and_then(|c| c.get(0))
            .ok_or("no `candidates[0]` in the response")?;
        let text: String = cand
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    // Thought summaries are not the answer.
                    .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let u = v
            .get("usageMetadata")
            .ok_or("no `usageMetadata` in the response")?;
        let thoughts = count(u, &["thoughtsTokenCount"]);
        Ok(Reply {
            text,
            usage: Usage {
                input_tokens: count(u, &["promptTokenCount"]),
                output_tokens: count(u, &["candidatesTokenCount"]) + thoughts,
                cached_input_tokens: count(u, &["cachedContentTokenCount"]),
                cache_write_tokens: 0,
                reasoning_tokens: thoughts,
            },
            finish_reason: cand
                .get("finishReason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thoughts_are_billed_as_output_and_roles_map_to_model() {
        let b = Gemini.body(
            "m",
            &[
                Message::system("S"),
                Message::user("U"),
                Message::assistant("A"),
                Message::user("Q"),
            ],
            9,
        );
        assert_eq!(b["systemInstruction"]["parts"][0]["text"], "S");
        assert_eq!(b["contents"][1]["role"], "model");
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 9);
        let r = Gemini
            .parse(r#"{"candidates":[{"content":{"parts":[{"text":"x","thought":true},{"text":"neutral"}]},"finishReason":"STOP"}],
                "usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":2,"thoughtsTokenCount":30,"cachedContentTokenCount":10}}"#)
            .unwrap();
        assert_eq!(r.text, "neutral");
        assert_eq!(r.usage.output_tokens, 32);
        assert_eq!(r.usage.reasoning_tokens, 30);
        assert_eq!(r.usage.cached_input_tokens, 10);
    }
}
