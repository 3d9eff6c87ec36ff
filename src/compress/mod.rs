//! Compressed context: one [`Compressor`] trait applied to a prompt's context before the
//! backend call (`bwb experiments` with `mode: compressed`).
//!
//! Methods: the ScaleDown API (`scaledown.rs`: its raw compression endpoint, and the
//! abstractive summarization endpoint as `scaledown-summarize`) and two local compressors on
//! bwb's own engine (`local.rs`: `selective` and `lingua`, with the model-free selection in
//! `select.rs`). [`build`] makes any of them from a [`Spec`]; experiments, `bwb serve
//! --compressor` and `bwb bench compress` all go through it.

pub mod local;
pub mod scaledown;
pub mod select;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::api::ApiOptions;
use crate::settings::{EngineSettings, Settings};

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
    /// [`Compressor::compress`] at a rate a request names (`bwb serve --compressor`);
    /// `Rate::Auto` is the configured rate. Compressors with a fixed rate ignore it.
    fn compress_at(
        &self,
        context: &str,
        prompt: &str,
        rate: Rate,
    ) -> std::result::Result<Compressed, CompressError> {
        let _ = rate;
        self.compress(context, prompt)
    }
}

/// Every compression method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ScaleDown,
    ScaleDownSummarize,
    Selective,
    Lingua,
}

impl Method {
    pub const NAMES: &'static str = "scaledown, scaledown-summarize, selective, lingua";

    pub fn parse(s: &str) -> std::result::Result<Method, String> {
        match s.trim().to_lowercase().as_str() {
            "scaledown" => Ok(Method::ScaleDown),
            "scaledown-summarize" | "scaledown_summarize" => Ok(Method::ScaleDownSummarize),
            "selective" | "selective-context" => Ok(Method::Selective),
            "lingua" | "llmlingua" => Ok(Method::Lingua),
            other => Err(format!("unknown method `{other}`; valid: {}", Self::NAMES)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::ScaleDown => "scaledown",
            Method::ScaleDownSummarize => "scaledown-summarize",
            Method::Selective => "selective",
            Method::Lingua => "lingua",
        }
    }

    /// Runs on bwb's engine (a model to load) rather than a remote API.
    pub fn is_local(self) -> bool {
        matches!(self, Method::Selective | Method::Lingua)
    }
}

/// Everything that says how to compress, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub method: Method,
    pub rate: Rate,
    /// ScaleDown: the model it compresses for; local: the scoring model (config id, hub id,
    /// HF directory or .gguf; default [`local::DEFAULT_MODEL`]).
    pub model: Option<String>,
    /// Local only: strings that always survive.
    pub force_tokens: Vec<String>,
    /// Local only: keep every token holding a digit.
    pub keep_numbers: bool,
    /// `selective`'s lexical unit.
    pub unit: select::Unit,
    /// USD per million original tokens (unset: ScaleDown unpriced, local priced by compute
    /// time at the default GPU's hourly rate).
    pub price_per_mtok: Option<f64>,
}

impl Spec {
    /// A method with its defaults.
    pub fn new(method: Method, rate: Rate) -> Self {
        Self {
            method,
            rate,
            model: None,
            force_tokens: Vec::new(),
            keep_numbers: false,
            unit: select::Unit::default(),
            price_per_mtok: None,
        }
    }

    /// `METHOD` or `METHOD:RATE` (`lingua:0.5`, `selective:auto`).
    pub fn parse(arg: &str) -> std::result::Result<Spec, String> {
        let (m, r) = arg.split_once(':').unwrap_or((arg, "auto"));
        let method = Method::parse(m)?;
        let rate = match r.trim().parse::<f64>() {
            Ok(x) => Rate::parse(&serde_json::json!(x)),
            Err(_) => Rate::parse(&serde_json::json!(r)),
        }?;
        Ok(Spec::new(method, rate))
    }
}

/// Make the compressor `spec` names: a ScaleDown client (key and URLs from `settings.env`,
/// retries, timeout and cache from `api`) or a local compressor on the model `spec.model`
/// loaded with `engine` (`batch` windows per forward).
pub fn build(
    spec: &Spec,
    settings: &Settings,
    engine: &EngineSettings,
    api: &ApiOptions,
    batch: usize,
) -> anyhow::Result<Arc<dyn Compressor>> {
    let sd = |m| -> anyhow::Result<Arc<dyn Compressor>> {
        Ok(Arc::new(scaledown::ScaleDown::new(
            m,
            spec.rate,
            spec.model.as_deref(),
            spec.price_per_mtok,
            &settings.env,
            api,
        )?))
    };
    let method = match spec.method {
        Method::ScaleDown => return sd(scaledown::Method::Raw),
        Method::ScaleDownSummarize => return sd(scaledown::Method::Summarize),
        Method::Selective => local::Method::Selective,
        Method::Lingua => local::Method::Lingua,
    };
    let name = spec.model.as_deref().unwrap_or(local::DEFAULT_MODEL);
    let model =
        crate::model::load::load_named(name, &settings.configs, &settings.hub, engine, None)?;
    let pricing = &settings.configs.pricing;
    let opts = local::Options {
        unit: spec.unit,
        force_tokens: spec.force_tokens.clone(),
        keep_numbers: spec.keep_numbers,
        batch: batch.max(1),
        hourly_usd: pricing.gpu.get(&pricing.default_gpu).map(|g| g.hourly_usd),
        price_per_mtok: spec.price_per_mtok,
    };
    let rate = match spec.rate {
        Rate::Auto => local::AUTO_RATE,
        Rate::Fraction(r) => r,
    };
    Ok(Arc::new(local::Local::new(
        method,
        rate,
        Arc::new(model),
        opts,
    )))
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
        // `--compress METHOD:RATE` as the factory takes it.
        let s = Spec::parse("lingua:0.3").unwrap();
        assert_eq!((s.method, s.rate), (Method::Lingua, Rate::Fraction(0.3)));
        assert!(s.method.is_local() && !Method::ScaleDown.is_local());
        assert_eq!(Spec::parse("scaledown").unwrap().rate, Rate::Auto);
        assert_eq!(
            Spec::parse("Selective:auto").unwrap().method,
            Method::Selective
        );
        assert!(Spec::parse("zip:0.5")
            .unwrap_err()
            .contains("valid: scaledown, scaledown-summarize, selective, lingua"));
        assert!(Spec::parse("lingua:2")
            .unwrap_err()
            .contains("between 0 and 1"));
        assert_eq!(ratio(200, 50), 0.25);
    }
}
