//! The Candle engine: model files (one per architecture), the one linear-layer type
//! (frozen base, optionally 4-bit, plus LoRA), loading, and batched KV-cached generation.
//!
//! Every model takes tokens `(B, L)` with per-row positions `(B, L)` (i64, negative for
//! padding) and an optional caller-owned [`Cache`]; masks come from the positions, so left-
//! or right-padded ragged batches need no extra argument. `forward_hidden` returns the final
//! hidden states; the caller applies the LM head only where it needs logits (the last
//! position when generating, answer tokens when training).
//!
//! `bert` is the exception: an encoder (BERT, DistilBERT) for metrics such as BERTScore
//! ([`crate::metrics::bertscore`]), not a [`Decoder`] and not in [`ARCHS`].

pub mod adapter;
pub mod bert;
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

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

pub use cache::Cache;
pub use linear::{ForwardCtx, QLinear, QuantFormat};

use crate::config::Arch;
use weights::Builder;

/// What every architecture's model gives the engine. Implemented once per model file.
pub trait Decoder: std::fmt::Debug + Send + Sync {
    /// Final hidden states `(B, L, H)` for tokens `(B, L)` at per-row positions `(B, L)`.
    fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor>;
    /// The LM head `(V, H)`.
    fn lm_head(&self) -> &Tensor;
    /// Whether the LM head is the embedding matrix itself.
    fn lm_head_is_tied(&self) -> bool;
    /// Gemma's `c · tanh(z / c)` on the logits, when the model has one.
    fn final_softcap(&self) -> Option<f64> {
        None
    }
    fn num_layers(&self) -> usize;
    /// Position at which a generating row's cache must be rebuilt (Phi-3 longrope).
    fn rope_switch_at(&self) -> Option<usize> {
        None
    }
    /// The sizes FLOP and byte counts need.
    fn shape(&self) -> Shape;
    /// The Qwen3-family decoder config (Qwen3, Llama), which `bwb export` writes for bases
    /// the engine reads itself (GGUF, random).
    fn qwen3_config(&self) -> Option<&qwen3::Config> {
        None
    }
}

/// A decoder's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
}

/// An architecture: the names HF configs give it and how to build it. Each model file
/// defines one `ARCH`; [`ARCHS`] lists them.
#[derive(Debug)]
pub struct ArchSpec {
    /// Our name (`arch:` in configs/models/*.yaml).
    pub name: &'static str,
    /// HF `model_type` values (the first is what `bwb export` writes).
    pub model_types: &'static [&'static str],
    /// HF `architectures` class names (the first is what `bwb export` writes).
    pub classes: &'static [&'static str],
    /// The projections LoRA adapts in every layer, PEFT names.
    pub lora_targets: &'static [&'static str],
    /// The model from its HF `config.json` (named `path` in errors) and weights.
    pub build: fn(&serde_json::Value, &Path, &Builder) -> crate::error::Result<Arc<dyn Decoder>>,
}

/// The LoRA targets of a decoder with separate q/k/v and gate/up projections.
pub const ATTENTION_MLP_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Every architecture the engine runs — the one place an architecture is registered.
pub const ARCHS: &[&ArchSpec] = &[&qwen3::ARCH, &gemma3::ARCH, &phi3::ARCH, &llama::ARCH];

/// A loaded model of one of the [`ARCHS`].
#[derive(Debug, Clone)]
pub struct Model {
    pub arch: Arch,
    decoder: Arc<dyn Decoder>,
    /// Its linear layers, where serving attaches adapters (empty if not recorded).
    linears: Arc<[weights::LinearSite]>,
}

impl Model {
    /// The model `vb` built (its linear layers as `vb` recorded them).
    pub fn new(arch: Arch, decoder: Arc<dyn Decoder>, vb: &Builder) -> Self {
        Self {
            arch,
            decoder,
            linears: vb.sites().into(),
        }
    }

    /// Its linear layers (module path, index, size), for attaching served adapters.
    pub fn linears(&self) -> &[weights::LinearSite] {
        &self.linears
    }

    pub fn decoder(&self) -> &dyn Decoder {
        self.decoder.as_ref()
    }

    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        cache: Option<&mut Cache>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        self.decoder.forward_hidden(ids, positions, cache, ctx)
    }

    /// The LM head `(V, H)`.
    pub fn lm_head(&self) -> &Tensor {
        self.decoder.lm_head()
    }

    /// Whether the LM head is the embedding matrix itself (always for Gemma 3).
    pub fn lm_head_is_tied(&self) -> bool {
        self.decoder.lm_head_is_tied()
    }

    /// Gemma's `c · tanh(z / c)` on the logits, when the model has one.
    pub fn final_softcap(&self) -> Option<f64> {
        self.decoder.final_softcap()
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
        self.decoder.num_layers()
    }

    /// Position at which a generating row's cache must be rebuilt (Phi-3 longrope).
    pub fn rope_switch_at(&self) -> Option<usize> {
        self.decoder.rope_switch_at()
    }

    pub fn new_cache(&self) -> Cache {
        Cache::new(self.num_layers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;

    #[test]
    fn every_registered_architecture_is_found_by_its_names() {
        let mut names: Vec<&str> = ARCHS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ARCHS.len(), "names must be unique");
        for spec in ARCHS {
            let arch = Arch::by_name(spec.name).unwrap();
            assert_eq!(arch.spec().name, spec.name);
            assert!(!spec.lora_targets.is_empty());
            let path = Path::new("config.json");
            for mt in spec.model_types {
                let cfg = serde_json::json!({"model_type": mt});
                assert_eq!(load::arch_of(&cfg, path).unwrap(), arch, "{mt}");
            }
            for class in spec.classes {
                let cfg = serde_json::json!({"architectures": [class]});
                assert_eq!(load::arch_of(&cfg, path).unwrap(), arch, "{class}");
            }
            let yaml: Arch = serde_json::from_value(serde_json::json!(spec.name)).unwrap();
            assert_eq!(yaml, arch);
        }
        let err = serde_json::from_value::<Arch>(serde_json::json!("mamba"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`mamba`") && err.contains("qwen3, gemma3, phi3, llama"),
            "{err}"
        );
        let err = load::arch_of(
            &serde_json::json!({"model_type": "mamba"}),
            Path::new("c.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mamba") && err.contains("llama (LlamaForCausalLM)"),
            "{err}"
        );
    }
}
