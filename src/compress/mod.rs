//! Compressed context: one [`Compressor`] trait applied to a prompt's context before the
//! backend call (`bwb experiments` with `mode: compressed`).
//!
//! This slice has the ScaleDown API (`scaledown.rs`: its raw compression endpoint, and the
//! abstractive summarization endpoint as a second method). Local compressors on the engine
//! (`selective`, `lingua`) are named in the experiments file's vocabulary but not built yet;
//! asking for one is a one-line error.

pub mod scaledown;

use serde::{Deserialize, Serialize};

/// How much to keep: `auto` (the service decides) or a fraction in (0, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Auto,
    Fraction(f64),
}

impl Rate {
    /// `auto`, or a number strictly between 0 and 1.
    pub fn parse(v: &serde_json::Value) -> std::result::Result<Rate, String> {
        match v {
            serde_json::Value::String(s) if s.trim().eq_ignore_ascii_case("auto") => Ok(Rate::Auto),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(r) if r > 0.0 && r < 1.0 => Ok(Rate::Fraction(r)),
                _ => Err(format!(
                    "rate {n} must be between 0 and 1 (exclusive), or `auto`"
                )),
            },
            other => Err(format!(
                "rate {other} must be `auto` or a number between 0 and 1"
            )),
        }
    }

    /// As sent and recorded: `"auto"` or the number.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Rate::Auto => serde_json::json!("auto"),
            Rate::Fraction(r) => serde_json::json!(r),
        }
    }
}

/// One compressed context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compressed {
    /// The context to send instead of the original.
    pub text: String,
    /// Tokens of the original and compressed prompt, as the compressor counts them.
    pub original_tokens: u64,
    pub compressed_tokens: u64,
    /// compressed / original (the convention; < 1 is smaller).
    pub compression_ratio: f64,
    pub latency_ms: f64,
    /// None: the compressor has no price.
    pub cost_usd: Option<f64>,
    /// Answered from the response cache.
    #[serde(default)]
    pub from_cache: bool,
}

/// Why a context was not compressed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CompressError {
    /// Stops the whole run (a rejected key): retrying other examples cannot help.
    pub fatal: bool,
    pub message: String,
}

/// A context compressor. `prompt` is the question the context serves (question-aware
/// compressors condition on it).
pub trait Compressor: Send + Sync {
    /// `scaledown`, `scaledown-summarize`, …
    fn name(&self) -> &str;
    fn compress(
        &self,
        context: &str,
        prompt: &str,
    ) -> std::result::Result<Compressed, CompressError>;
}

/// compressed / original, 1.0 for an empty original.
pub fn ratio(original: u64, compressed: u64) -> f64 {
    if original == 0 {
        1.0
    } else {
        compressed as f64 / original as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_auto_and_open_interval_fractions_only() {
        assert_eq!(Rate::parse(&serde_json::json!("auto")), Ok(Rate::Auto));
        assert_eq!(
            Rate::parse(&serde_json::json!(0.5)),
            Ok(Rate::Fraction(0.5))
        );
        for bad in [
            serde_json::json!(0),
            serde_json::json!(1.0),
            serde_json::json!("half"),
        ] {
            assert!(Rate::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(ratio(0, 0), 1.0);
        assert_eq!(ratio(200, 50), 0.25);
    }
}
