//! `bwb export --merge`: fold a PEFT LoRA adapter into its base, `W ← W + scale · B · A`
//! for every adapted weight, and write the result as an HF model directory that
//! transformers (or `bwb --model DIR`) loads without PEFT.
//!
//! * HF directory bases: every tensor keeps its name, dtype and shard (an adapted weight is
//!   merged in f32 and cast back to its dtype, as PEFT's `merge_and_unload` does); the
//!   config, tokenizer, chat template and generation config are copied. One shard is in
//!   memory at a time.
//! * GGUF bases (Llama) and the random smoke model: the engine reads every tensor by its
//!   HF name (GGUF's Q/K rows un-permuted) and the merged model is written **dequantised in
//!   f32**, with a config.json, tokenizer.json, tokenizer_config.json (chat template) and
//!   generation_config.json derived from the base. f32 is deliberate: the merged weights are
//!   exactly what QLoRA trained against (dequantised base + adapter, the engine's training
//!   forward), HF layout has no ggml 4-bit blocks, and re-quantising would add a second
//!   rounding on top of the one the adapter learned to correct. It costs 4 bytes a
//!   parameter (SmolLM2-135M: ~0.5 GB).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::config::Arch;
use crate::error::{Error, Result};
use crate::model::load::{self, LoadOptions, ModelSource};
use crate::model::weights::{self, LoraPlan, TensorRecord};
use crate::model::{adapter, qwen3};

/// What `bwb export --merge` wrote.
#[derive(Debug, Clone)]
pub struct MergeReport {
    pub out: PathBuf,
    /// Adapted weights folded into the base.
    pub merged: usize,
    /// Files written, by name.
    pub files: Vec<String>,
}

/// Files of an HF model directory copied unchanged when present.
const SIDE_FILES: [&str; 10] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
];

/// Merge the adapter in `adapter_dir` into `source` and write an HF model directory `out`.
/// `out` must not exist (or be empty); it appears complete or not at all.
pub fn export_merged(source: &ModelSource, adapter_dir: &Path, out: &Path) -> Result<MergeReport> {
    let plan = adapter::load(adapter_dir, &Device::Cpu)?;
    if let ModelSource::Dir(base) = source {
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
        if same(base, out) {
            return Err(Error::Config(format!(
                "--merge {}: that is the base model's directory; give a new directory",
                out.display()
            )));
        }
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::Config(format!(
            "--merge {}: already exists and is not empty; give a new directory or delete it",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::fsutil::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".bwb-tmp-merge-")
        .tempdir_in(&parent)
        .map_err(|source| Error::Write {
            path: parent.clone(),
            source,
        })?;
    let mut folder = Folder::new(&plan, adapter_dir);
    let mut files = match source {
        ModelSource::Dir(base) => merge_hf_dir(base, &mut folder, tmp.path())?,
        other => merge_engine_base(other, &mut folder, tmp.path())?,
    };
    folder.finish()?;
    files.sort();
    if out.exists() {
        std::fs::remove_dir(out).map_err(|source| Error::Write {
            path: out.to_path_buf(),
            source,
        })?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).map_err(|source| Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(MergeReport {
        out: out.to_path_buf(),
        merged: folder.done.len(),
        files,
    })
}

/// Folds adapter pairs into base tensors as they stream past.
struct Folder {
    pairs: HashMap<String, (Tensor, Tensor)>,
    scale: f64,
    done: HashSet<String>,
    adapter_dir: PathBuf,
}

impl Folder {
    fn new(plan: &LoraPlan, adapter_dir: &Path) -> Self {
        Self {
            pairs: plan.adapter.clone().unwrap_or_default(),
            scale: plan.scale(),
            done: HashSet::new(),
            adapter_dir: adapter_dir.to_path_buf(),
        }
    }

    /// The adapter module a checkpoint tensor name belongs to (Gemma 3's multimodal
    /// checkpoints keep the text model under `language_model.`).
    fn module_of(&self, name: &str) -> Option<String> {
        let m = name.strip_suffix(".weight")?;
        let candidates = [
            Some(m.to_string()),
            m.strip_prefix("language_model.").map(str::to_owned),
            m.strip_prefix("model.language_model.")
                .map(|r| format!("model.{r}")),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|c| self.pairs.contains_key(c))
    }

    /// Merge every adapted weight among `tensors` in place.
    fn fold(&mut self, tensors: &mut HashMap<String, Tensor>) -> Result<()> {
        let names: Vec<String> = tensors.keys().cloned().collect();
        for name in names {
            let Some(module) = self.module_of(&name) else {
                continue;
            };
            let (a, b) = &self.pairs[&module];
            let w = &tensors[&name];
            let want = [b.dim(0)?, a.dim(1)?];
            if w.dims() != want {
                return Err(Error::Config(format!(
                    "{}: `base_model.model.{module}` makes a {want:?} update but the base's `{name}` is {:?}; \
                     the adapter was made for another base model",
                    self.adapter_dir.display(),
                    w.dims()
                )));
            }
            let delta = b
                .to_dtype(DType::F32)?
                .matmul(&a.to_dtype(DType::F32)?)?
                .affine(self.scale, 0.0)?;
            let merged = (w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
            tensors.insert(name, merged);
            self.done.insert(module);
        }
        Ok(())
    }

    /// Every adapter module must have found its weight.
    fn finish(&self) -> Result<()> {
        let mut missing: Vec<&String> = self
            .pairs
            .keys()
            .filter(|m| !self.done.contains(*m))
            .collect();
        missing.sort();
        match missing.first() {
            Some(m) => Err(Error::Config(format!(
                "{}: adapter tensor `base_model.model.{m}.lora_A.weight` has no `{m}.weight` in the base model; \
                 the adapter was made for another base model",
                self.adapter_dir.display()
            ))),
            None => Ok(()),
        }
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map_err(|source| Error::Write {
        path: to.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// safetensors with `{"format": "pt"}` metadata, as transformers writes them.
fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut items: Vec<(&String, &Tensor)> = tensors.iter().collect();
    items.sort_by(|x, y| x.0.cmp(y.0));
    safetensors::serialize_to_file(items, Some(meta), path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn merge_hf_dir(base: &Path, folder: &mut Folder, out: &Path) -> Result<Vec<String>> {
    let cfg_path = base.join("config.json");
    if !cfg_path.is_file() {
        return Err(Error::MissingInput(format!(
            "{}: no config.json; --model must be an HF model directory, a .gguf file or a config id",
            base.display()
        )));
    }
    load::arch_of(&load::read_json(&cfg_path)?, &cfg_path)?;
    let mut written = vec!["config.json".to_string()];
    copy(&cfg_path, &out.join("config.json"))?;
    // The shards, each rewritten under its own name (the index stays valid).
    let shards = weights::safetensors_files(base)?;
    if base.join(weights::INDEX_FILE).is_file() {
        copy(
            &base.join(weights::INDEX_FILE),
            &out.join(weights::INDEX_FILE),
        )?;
        written.push(weights::INDEX_FILE.into());
    }
    for shard in &shards {
        let path = base.join(shard);
        let mut tensors =
            candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: e.to_string().replace('\n', " "),
            })?;
        folder.fold(&mut tensors)?;
        save_safetensors(&tensors, &out.join(shard))?;
        written.push(shard.clone());
    }
    for f in SIDE_FILES {
        if base.join(f).is_file() {
            copy(&base.join(f), &out.join(f))?;
            written.push(f.to_string());
        }
    }
    Ok(written)
}

/// HF config.json for the Qwen3/Llama decoder.
fn hf_config(arch: Arch, cfg: &qwen3::Config, tied: bool, eos: &[u32]) -> Value {
    let spec = arch.spec();
    let class = spec.classes.first().copied().unwrap_or_default();
    let model_type = spec.model_types.first().copied().unwrap_or_default();
    let eos_v = match eos {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "architectures": [class],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim(),
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope.rope_theta.unwrap_or(10_000.0),
        "rope_scaling": cfg.rope.rope_scaling.clone(),
        "tie_word_embeddings": tied,
        "attention_bias": cfg.attention_bias,
        "mlp_bias": false,
        "hidden_act": cfg.hidden_act,
        "max_position_embeddings": cfg.max_position_embeddings.unwrap_or(4096),
        "eos_token_id": eos_v,
        "torch_dtype": "float32",
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    crate::fsutil::write_json_atomic(path, v)
}

/// A base the engine reads itself (GGUF, random): loaded through the loader in f32 without
/// quantisation, recording every tensor the model file reads by its HF name (GGUF's Q/K
/// rows un-permuted), so the tensor names, config and GGUF handling are the loader's.
fn merge_engine_base(source: &ModelSource, folder: &mut Folder, out: &Path) -> Result<Vec<String>> {
    let record = TensorRecord::default();
    let opts = LoadOptions {
        dense_gguf: true,
        record: Some(record.clone()),
        ..LoadOptions::default()
    };
    let base = load::load(source, &opts)?;
    let arch = base.model.arch;
    let Some(cfg) = base.model.decoder().qwen3_config().cloned() else {
        return Err(Error::Config(format!(
            "{}: merging into a GGUF or random base supports the qwen3 and llama architectures",
            base.origin
        )));
    };
    let tied = base.model.lm_head_is_tied();
    drop(base.model);
    let mut tensors: HashMap<String, Tensor> = record.take().into_iter().collect();
    folder.fold(&mut tensors)?;
    save_safetensors(&tensors, &out.join("model.safetensors"))?;
    drop(tensors);
    write_json(
        &out.join("config.json"),
        &hf_config(arch, &cfg, tied, &base.eos_ids),
    )?;
    write_tokenizer_files(
        &base.tokenizer,
        base.chat_template.as_ref(),
        &base.eos_ids,
        base.pad_id,
        out,
    )?;
    Ok([
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ]
    .map(String::from)
    .to_vec())
}

/// tokenizer.json, tokenizer_config.json (chat template, eos and pad tokens) and
/// generation_config.json of an engine-read base.
fn write_tokenizer_files(
    tok: &tokenizers::Tokenizer,
    chat_template: Option<&crate::prompt::chat_template::ChatTemplate>,
    eos_ids: &[u32],
    pad_id: u32,
    out: &Path,
) -> Result<()> {
    let tok_path = out.join("tokenizer.json");
    tok.save(&tok_path, false).map_err(|e| Error::Write {
        path: tok_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let name = |id: u32| tok.id_to_token(id);
    let mut tc = serde_json::Map::new();
    if let Some(t) = chat_template {
        tc.insert("chat_template".into(), json!(t.source()));
    }
    if let Some(e) = eos_ids.last().copied().and_then(name) {
        tc.insert("eos_token".into(), json!(e));
    }
    if let Some(p) = name(pad_id) {
        tc.insert("pad_token".into(), json!(p));
    }
    tc.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    write_json(&out.join("tokenizer_config.json"), &Value::Object(tc))?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"eos_token_id": eos_ids, "pad_token_id": pad_id}),
    )
}
