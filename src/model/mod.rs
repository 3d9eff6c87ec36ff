//! The Candle engine: model files (one per architecture), the one linear-layer type
//! (frozen base, optionally 4-bit, plus LoRA), loading, and batched KV-cached generation.
//!
//! Every model takes tokens `(B, L)` with per-row positions `(B, L)` (i64, negative for
//! padding) and an optional caller-owned [`Cache`]; masks come from the positions, so left-
//! or right-padded ragged batches need no extra argument. `forward_hidden` returns the final
//! hidden states; the caller applies the LM head only where it needs logits (the last
//! position when generating, answer tokens when training).

pub mod adapter;
pub mod cache;
pub mod common;
pub mod device;
pub mod gemma3;
pub mod generate;
pub mod linear;
pub mod llama;
pub mod load;
pub mod ops;
pub mod phi3;
pub mod qwen3;
pub mod tokenizer;
pub mod weights;

use candle_core::{DType, Result, Tensor};

pub use cache::Cache;
pub use linear::{ForwardCtx, QLinear, QuantFormat};

/// One of the supported architectures.
#[derive(Debug, Clone)]
pub enum Model {
    Qwen3(qwen3::Model),
    /// Llama runs on the Qwen3 decoder without q/k norms.
    Llama(qwen3::Model),
    Gemma3(gemma3::Model),
    Phi3(phi3::Model),
}

impl Model {
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        match self {
            Self::Qwen3(m) | Self::Llama(m) => m.forward_hidden(ids, positions, cache, ctx),
            Self::Gemma3(m) => m.forward_hidden(ids, positions, cache, ctx),
            Self::Phi3(m) => m.forward_hidden(ids, positions, cache, ctx),
        }
    }

    /// The LM head `(V, H)`.
    pub fn lm_head(&self) -> &Tensor {
        match self {
            Self::Qwen3(m) | Self::Llama(m) => m.lm_head(),
            Self::Gemma3(m) => m.lm_head(),
            Self::Phi3(m) => m.lm_head(),
        }
    }

    /// Whether the LM head is the embedding matrix itself (always for Gemma 3).
    pub fn lm_head_is_tied(&self) -> bool {
        match self {
            Self::Qwen3(m) | Self::Llama(m) => m.lm_head_is_tied(),
            Self::Gemma3(_) => true,
            Self::Phi3(m) => m.lm_head_is_tied(),
        }
    }

    /// Gemma's `c · tanh(z / c)` on the logits, when the model has one.
    pub fn final_softcap(&self) -> Option<f64> {
        match self {
            Self::Gemma3(m) => m.cfg.final_logit_softcapping,
            _ => None,
        }
    }

    /// Logits `(…, V)` in f32 for hidden states `(…, H)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let w = self.lm_head();
        let logits = linear::matmul_t(&hidden.to_dtype(w.dtype())?, w)?.to_dtype(DType::F32)?;
        match self.final_softcap() {
            Some(c) => (logits / c)?.tanh()? * c,
            None => Ok(logits),
        }
    }

    /// Full-sequence logits `(B, L, V)`.
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        self.logits(&self.forward_hidden(ids, positions, cache, ctx)?)
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Qwen3(m) | Self::Llama(m) => m.num_layers(),
            Self::Gemma3(m) => m.num_layers(),
            Self::Phi3(m) => m.num_layers(),
        }
    }

    /// Position at which a generating row's cache must be rebuilt (Phi-3 longrope).
    pub fn rope_switch_at(&self) -> Option<usize> {
        match self {
            Self::Phi3(m) => m.rope_switch_at(),
            _ => None,
        }
    }

    pub fn new_cache(&self) -> Cache {
        Cache::new(self.num_layers())
    }
}
