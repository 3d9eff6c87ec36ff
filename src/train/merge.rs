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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::config::Arch;
use crate::error::{Error, Result};
use crate::model::adapter;
use crate::model::load::{self, LoadOptions, ModelSource};
use crate::model::qwen3;
use crate::model::weights::{Builder, Init, LoraPlan, Source};

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
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::MissingInput(format!("cannot read {}: {e}", cfg_path.display())))?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: cfg_path.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    load::arch_of(&cfg, &cfg_path)?;
    let mut written = vec!["config.json".to_string()];
    copy(&cfg_path, &out.join("config.json"))?;
    // The shards, each rewritten under its own name (the index stays valid).
    let index = base.join("model.safetensors.index.json");
    let shards: Vec<String> = if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| Error::MissingInput(format!("cannot read {}: {e}", index.display())))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: index.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let mut s: Vec<String> = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::BadFile {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?
            .values()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        s.sort();
        s.dedup();
        copy(&index, &out.join("model.safetensors.index.json"))?;
        written.push("model.safetensors.index.json".into());
        s
    } else {
        vec!["model.safetensors".into()]
    };
    for shard in &shards {
        let path = base.join(shard);
        if !path.is_file() {
            return Err(Error::MissingInput(format!(
                "{}: missing; download the base model's weights again",
                path.display()
            )));
        }
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

/// The decoder config and tensor source of a base the engine reads itself (GGUF, random).
fn engine_base(source: &ModelSource) -> Result<(Arch, qwen3::Config, Source, Option<usize>)> {
    match source {
        ModelSource::Random { arch, init } => {
            if *arch != Arch::Qwen3 {
                return Err(Error::Config(format!(
                    "random_init builds the qwen3 architecture only, not {arch:?}"
                )));
            }
            // As load::load_random builds it.
            let cfg = qwen3::Config {
                vocab_size: init.vocab_size,
                hidden_size: init.hidden_size,
                intermediate_size: init.intermediate_size,
                num_hidden_layers: init.num_hidden_layers,
                num_attention_heads: init.num_attention_heads,
                num_key_value_heads: init.num_key_value_heads,
                head_dim: Some(init.head_dim),
                rms_norm_eps: 1e-6,
                rope: crate::model::common::RopeFields {
                    rope_theta: Some(10_000.0),
                    ..Default::default()
                },
                tie_word_embeddings: false,
                attention_bias: false,
                hidden_act: "silu".into(),
            };
            Ok((Arch::Qwen3, cfg, Source::Random { seed: init.seed }, None))
        }
        ModelSource::Gguf(path) => {
            let mut f = std::fs::File::open(path)
                .map_err(|e| Error::MissingInput(format!("cannot open {}: {e}", path.display())))?;
            let content = gguf_file::Content::read(&mut f).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: format!("not a readable GGUF file: {e}"),
            })?;
            let tied = !content.tensor_infos.contains_key("output.weight");
            let lcfg = crate::model::llama::Config::from_gguf(&content.metadata, tied, path)?;
            let ctx = content
                .metadata
                .get("llama.context_length")
                .and_then(|v| v.to_u32().ok())
                .map(|x| x as usize);
            let cfg = lcfg.to_decoder()?;
            let (h, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
            Ok((Arch::Llama, cfg, Source::gguf(path, content, h, kv)?, ctx))
        }
        ModelSource::Dir(_) => Err(Error::Config(
            "an HF directory base is merged tensor by tensor, not through the engine".into(),
        )),
    }
}

/// Every tensor of the Qwen3/Llama decoder by HF name, dense f32.
fn decoder_tensors(
    cfg: &qwen3::Config,
    qk_norm: bool,
    vb: &Builder,
) -> Result<BTreeMap<String, Tensor>> {
    let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (nh, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let w = Init::Normal(0.02);
    let mut specs: Vec<(String, Vec<usize>, Init)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![cfg.vocab_size, h],
            w,
        ),
        ("model.norm.weight".into(), vec![h], Init::Ones),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        specs.push((format!("{p}.input_layernorm.weight"), vec![h], Init::Ones));
        specs.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Init::Ones,
        ));
        for (m, out, inp) in [
            ("q_proj", nh * d, h),
            ("k_proj", kv * d, h),
            ("v_proj", kv * d, h),
            ("o_proj", h, nh * d),
        ] {
            specs.push((format!("{p}.self_attn.{m}.weight"), vec![out, inp], w));
            if cfg.attention_bias {
                specs.push((format!("{p}.self_attn.{m}.bias"), vec![out], Init::Zeros));
            }
        }
        if qk_norm {
            specs.push((format!("{p}.self_attn.q_norm.weight"), vec![d], Init::Ones));
            specs.push((format!("{p}.self_attn.k_norm.weight"), vec![d], Init::Ones));
        }
        for (m, out, inp) in [("gate_proj", i, h), ("up_proj", i, h), ("down_proj", h, i)] {
            specs.push((format!("{p}.mlp.{m}.weight"), vec![out, inp], w));
        }
    }
    if !cfg.tie_word_embeddings || vb.contains("lm_head.weight") {
        specs.push(("lm_head.weight".into(), vec![cfg.vocab_size, h], w));
    }
    let mut out = BTreeMap::new();
    for (name, shape, init) in specs {
        let t = vb.tensor_f32(&name, &shape, init)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// HF config.json for the Qwen3/Llama decoder.
fn hf_config(
    arch: Arch,
    cfg: &qwen3::Config,
    tied: bool,
    ctx: Option<usize>,
    eos: &[u32],
) -> Value {
    let (class, model_type) = match arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        _ => ("Qwen3ForCausalLM", "qwen3"),
    };
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
        "max_position_embeddings": ctx.unwrap_or(4096),
        "eos_token_id": eos_v,
        "torch_dtype": "float32",
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    crate::fsutil::write_json_atomic(path, v)
}

fn merge_engine_base(source: &ModelSource, folder: &mut Folder, out: &Path) -> Result<Vec<String>> {
    // Tokenizer, chat template and stop ids as the engine loads them (4-bit blocks kept, so
    // this costs little memory).
    let meta = load::load(source, &LoadOptions::default())?;
    let (arch, cfg, src, ctx) = engine_base(source)?;
    let vb = Builder::new(src, &Device::Cpu, DType::F32, None, None);
    let tensors = decoder_tensors(&cfg, arch == Arch::Qwen3, &vb)?;
    let tied = !tensors.contains_key("lm_head.weight");
    let mut tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    folder.fold(&mut tensors)?;
    save_safetensors(&tensors, &out.join("model.safetensors"))?;
    drop(tensors);

    let tok = &meta.tokenizer;
    write_json(
        &out.join("config.json"),
        &hf_config(arch, &cfg, tied, ctx, &meta.eos_ids),
    )?;
    let tok_path = out.join("tokenizer.json");
    tok.save(&tok_path, false).map_err(|e| Error::Write {
        path: tok_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let name = |id: u32| tok.id_to_token(id);
    let mut tc = serde_json::Map::new();
    if let Some(t) = &meta.chat_template {
        tc.insert("chat_template".into(), json!(t.source()));
    }
    if let Some(e) = meta.eos_ids.last().copied().and_then(name) {
        tc.insert("eos_token".into(), json!(e));
    }
    if let Some(p) = name(meta.pad_id) {
        tc.insert("pad_token".into(), json!(p));
    }
    tc.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    write_json(&out.join("tokenizer_config.json"), &Value::Object(tc))?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"eos_token_id": meta.eos_ids, "pad_token_id": meta.pad_id}),
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
