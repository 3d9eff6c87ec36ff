//! Llama (HuggingFaceTB/SmolLM2-135M-Instruct): the Qwen3 decoder without q/k norms. This
//! file holds its config, from HF `config.json` or from GGUF metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde::Deserialize;

use super::common::RopeFields;
use super::qwen3;
use crate::error::{Error, Result};

/// HF `config.json`, as is.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(flatten)]
    pub rope: RopeFields,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "silu")]
    pub hidden_act: String,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

fn silu() -> String {
    "silu".into()
}

impl Config {
    pub fn to_decoder(&self) -> Result<qwen3::Config> {
        if self.mlp_bias {
            return Err(Error::Config(
                "Llama checkpoints with `mlp_bias: true` are not supported".into(),
            ));
        }
        Ok(qwen3::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope: self.rope.clone(),
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias,
            hidden_act: self.hidden_act.clone(),
            max_position_embeddings: self.max_position_embeddings,
        })
    }

    /// From llama.cpp's GGUF metadata (`llama.*` keys). Whether the embeddings are tied is
    /// decided by the presence of `output.weight`.
    pub fn from_gguf(
        md: &HashMap<String, Value>,
        tied: bool,
        path: &std::path::Path,
    ) -> Result<Self> {
        let get = |k: &str| -> Result<&Value> {
            md.get(&format!("llama.{k}")).ok_or_else(|| Error::BadFile {
                path: path.to_path_buf(),
                message: format!("GGUF metadata `llama.{k}` is missing"),
            })
        };
        let num = |k: &str| -> Result<usize> {
            let v = get(k)?;
            v.to_u64()
                .map(|x| x as usize)
                .or_else(|_| v.to_u32().map(|x| x as usize))
                .map_err(|e| Error::BadFile {
                    path: path.to_path_buf(),
                    message: format!(
                        "GGUF metadata `llama.{k}`: {}",
                        crate::error::first_line(&e)
                    ),
                })
        };
        let float = |k: &str| -> Result<f64> {
            get(k)?.to_f32().map(f64::from).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "GGUF metadata `llama.{k}`: {}",
                    crate::error::first_line(&e)
                ),
            })
        };
        let heads = num("attention.head_count")?;
        let hidden = num("embedding_length")?;
        let vocab = match num("vocab_size") {
            Ok(v) => v,
            Err(_) => md
                .get("tokenizer.ggml.tokens")
                .and_then(|t| t.to_vec().ok())
                .map(|t| t.len())
                .ok_or_else(|| Error::BadFile {
                    path: path.to_path_buf(),
                    message: "GGUF has neither `llama.vocab_size` nor `tokenizer.ggml.tokens`"
                        .into(),
                })?,
        };
        Ok(Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: num("feed_forward_length")?,
            num_hidden_layers: num("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(num("attention.head_count_kv").unwrap_or(heads)),
            head_dim: num("rope.dimension_count").ok().or(Some(hidden / heads)),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon")?,
            rope: RopeFields {
                rope_theta: Some(float("rope.freq_base").unwrap_or(10_000.0)),
                rope_scaling: None,
                rope_parameters: None,
            },
            tie_word_embeddings: tied,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: "silu".into(),
            max_position_embeddings: num("context_length").ok(),
        })
    }
}

/// Llama (`HuggingFaceTB/SmolLM2-135M-Instruct`), run on the Qwen3 decoder without q/k norms.
pub const ARCH: super::ArchSpec = super::ArchSpec {
    name: "llama",
    model_types: &["llama"],
    classes: &["LlamaForCausalLM"],
    lora_targets: &super::ATTENTION_MLP_TARGETS,
    build: |cfg, path, vb| {
        let c: Config = super::load::parse_cfg(cfg, path)?;
        let m = qwen3::Model::with_qk_norm(&c.to_decoder()?, vb, false)?;
        Ok(std::sync::Arc::new(m))
    },
};
