//! OpenAI chat completions (`POST {base}/chat/completions`), also spoken by vLLM and most
//! proxies. GPT-5-family models take `max_completion_tokens` (which covers reasoning tokens)
//! and only the default temperature, so none is sent.

use serde_json::{json, Value};

use super::{count, Reply, WireFormat};
use crate::backend::Usage;
use crate::prompt::chat_template::Message;

pub struct OpenAi;

impl WireFormat for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn key_var(&self) -> &'static str {
        "OPENAI_API_KEY"
    }
    fn base_url_var(&self) -> &'static str {
        "OPENAI_BASE_URL"
    }
    fn default_base_url(&self) -> &'static str {
        "https://api.openai.com/v1"
    }
    fn path(&self, _model: &str) -> String {
        "/chat/completions".into()
    }
    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {key}"))]
    }
    fn body(&self, model: &str, messages: &[Message], max_tokens: usize) -> Value {
        json!({
            "model": model,
            "messages": messages,
            "max_completion_tokens": max_tokens,
        })
    }
    /// GPT-5-family models sample at their fixed default temperature (1), and so does an
    /// OpenAI-compatible server (vLLM) given no temperature.
    fn samples(&self) -> bool {
        true
    }
    fn parse(&self, body: &str) -> Result<Reply, String> {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or("no `choices[0]` in the response")?;
        let text = match choice.get("message").and_then(|m| m.get("content")) {
            Some(Value::String(s)) => s.clone(),
            // A refusal or an empty answer (e.g. all tokens spent on reasoning).
            Some(Value::Null) | None => String::new(),
            Some(other) => return Err(format!("`message.content` is not text: {other}")),
        };
        let usage = v.get("usage").ok_or("no `usage` in the response")?;
        Ok(Reply {
            text,
            usage: Usage {
                input_tokens: count(usage, &["prompt_tokens"]),
                output_tokens: count(usage, &["completion_tokens"]),
                cached_input_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
                cache_write_tokens: 0,
                reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
            },
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cached_and_reasoning_tokens() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"positive"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":120,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":64},
            "completion_tokens_details":{"reasoning_tokens":32}}}"#;
        let r = OpenAi.parse(body).unwrap();
        assert_eq!(r.text, "positive");
        assert_eq!(r.usage.input_tokens, 120);
        assert_eq!(r.usage.cached_input_tokens, 64);
        assert_eq!(r.usage.reasoning_tokens, 32);
        assert_eq!(r.usage.output_tokens, 40);
        assert!(OpenAi.parse(r#"{"choices":[{"message":"#).is_err());
        assert!(OpenAi.parse(r#"{"error":{}}"#).is_err());
    }

    #[test]
    fn body_uses_max_completion_tokens() {
        let b = OpenAi.body("m", &[Message::user("hi")], 7);
        assert_eq!(b["max_completion_tokens"], 7);
        assert!(b.get("max_tokens").is_none() && b.get("temperature").is_none());
        assert_eq!(b["messages"][0]["role"], "user");
    }
}
