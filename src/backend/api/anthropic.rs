//! Anthropic messages (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`). The
//! system prompt is a top-level field; usage reports cache reads and writes apart from
//! `input_tokens`, so they are added back to get the whole prompt.

use serde_json::{json, Value};

use super::{count, split_system, Reply, WireFormat};
use crate::backend::Usage;
use crate::prompt::chat_template::Message;

pub struct Anthropic;

pub const API_VERSION: &str = "2023-06-01";

impl WireFormat for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn key_var(&self) -> &'static str {
        "ANTHROPIC_API_KEY"
    }
    fn base_url_var(&self) -> &'static str {
        "ANTHROPIC_BASE_URL"
    }
    fn default_base_url(&self) -> &'static str {
        "https://api.anthropic.com"
    }
    fn path(&self, _model: &str) -> String {
        "/v1/messages".into()
    }
    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", key.to_string()),
            ("anthropic-version", API_VERSION.to_string()),
        ]
    }
    fn body(&self, model: &str, messages: &[Message], max_tokens: usize) -> Value {
        let (system, turns) = split_system(messages);
        let mut body = json!({
            "model": model,
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": turns,
        });
        if let Some(s) = system {
            body["system"] = Value::String(s);
        }
        body
    }
    fn parse(&self, body: &str) -> Result<Reply, String> {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let content = v
            .get("content")
            .and_then(Value::as_array)
            .ok_or("no `content` list in the response")?;
        let text: String = content
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let u = v.get("usage").ok_or("no `usage` in the response")?;
        let read = count(u, &["cache_read_input_tokens"]);
        let write = count(u, &["cache_creation_input_tokens"]);
        Ok(Reply {
            text,
            usage: Usage {
                input_tokens: count(u, &["input_tokens"]) + read + write,
                output_tokens: count(u, &["output_tokens"]),
                cached_input_tokens: read,
                cache_write_tokens: write,
                reasoning_tokens: 0,
            },
            finish_reason: v
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_is_top_level_and_cache_tokens_count_as_input() {
        let b = Anthropic.body("m", &[Message::system("S"), Message::user("U")], 5);
        assert_eq!(b["system"], "S");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["max_tokens"], 5);
        let r = Anthropic
            .parse(r#"{"content":[{"type":"text","text":"A"},{"type":"text","text":"B"}],"stop_reason":"end_turn",
                "usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":20,"cache_creation_input_tokens":5}}"#)
            .unwrap();
        assert_eq!(r.text, "AB");
        assert_eq!(r.usage.input_tokens, 35);
        assert_eq!(r.usage.cached_input_tokens, 20);
        assert_eq!(r.usage.cache_write_tokens, 5);
    }
}
