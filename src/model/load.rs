//! Loading a model for the engine: a local HF directory, a hub id (through hf-hub's cache),
//! a GGUF file, or the in-process random `smoke` model. Produces the model, its tokenizer,
//! chat template and stop ids.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::linear::QuantFormat;
use super::weights::{Builder, LoraPlan, LoraVars, QuantCache, Source, TensorRecord};
use super::{llama, qwen3, Model};
use crate::config::{Arch, Configs, ModelConfig, RandomInit};
use crate::error::{Error, Result};
use crate::prompt::chat_template::ChatTemplate;
use crate::settings::{BaseStorage, EngineSettings, HubSettings};

/// Where the weights come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A directory in HF layout (config.json, *.safetensors, tokenizer.json, …).
    Dir(PathBuf),
    /// A llama.cpp GGUF file (tokenizer and chat template from its metadata).
    Gguf(PathBuf),
    /// A deterministic random-weight model of a real architecture, built in-process.
    Random { arch: Arch, init: RandomInit },
}

/// How to load: device, compute dtype, 4-bit format for frozen bases, LoRA.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    pub quant: Option<QuantFormat>,
    /// GGUF bases stay in their own 4-bit blocks unless this asks for a dense model
    /// (`--quant none`).
    pub dense_gguf: bool,
    pub lora: Option<LoraPlan>,
    /// Directory for cached quantised bases (None: no cache).
    pub quant_cache: Option<PathBuf>,
    /// Record every tensor the model reads (merged exports).
    pub record: Option<TensorRecord>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            quant: None,
            dense_gguf: false,
            lora: None,
            quant_cache: None,
            record: None,
        }
    }
}

/// The builder a model file descends: `opts` with the frozen-base format `quant`.
fn builder(src: Source, opts: &LoadOptions, quant: Option<QuantFormat>) -> Builder {
    let vb = Builder::new(src, &opts.device, opts.dtype, quant, opts.lora.clone());
    match &opts.record {
        Some(r) => vb.with_record(r.clone()),
        None => vb,
    }
}

/// A model ready to run: weights, tokenizer, chat template, stop ids and LoRA parameters.
pub struct LoadedModel {
    pub model: Model,
    pub arch: Arch,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// Generation stops on any of these.
    pub eos_ids: Vec<u32>,
    /// Fills padded slots (masked out, so any valid id works).
    pub pad_id: u32,
    /// Trainable LoRA parameters (module path, A, B), empty without LoRA.
    pub lora_vars: LoraVars,
    /// Human-readable origin, for logs and records.
    pub origin: String,
    pub device: Device,
    pub dtype: DType,
    /// Keyword arguments for the chat template (Qwen3: enable_thinking=false).
    pub chat_kwargs: BTreeMap<String, Value>,
    /// The positions the checkpoint was built for (config.json `max_position_embeddings`,
    /// GGUF `context_length`); unknown for random-weight models.
    pub max_context: Option<usize>,
}

impl LoadedModel {
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

impl LoadOptions {
    /// The options the resolved engine settings ask for (the device is opened here).
    pub fn from_engine(engine: &EngineSettings, lora: Option<LoraPlan>) -> Result<Self> {
        let (quant, dense_gguf) = match engine.storage {
            BaseStorage::AsStored => (None, false),
            BaseStorage::Dense => (None, true),
            BaseStorage::Quantized(f) => (Some(f), false),
        };
        Ok(Self {
            device: engine.device.open()?,
            dtype: engine.dtype,
            quant,
            dense_gguf,
            lora,
            quant_cache: engine.quant_cache.clone(),
            record: None,
        })
    }
}

/// Load the model a user named (`--model`: config id, hub id, HF directory or .gguf file)
/// with the resolved engine settings and an optional LoRA plan.
pub fn load_named(
    spec: &str,
    configs: &Configs,
    hub: &HubSettings,
    engine: &EngineSettings,
    lora: Option<LoraPlan>,
) -> anyhow::Result<LoadedModel> {
    use anyhow::Context;
    let opts = LoadOptions::from_engine(engine, lora)?;
    let (source, mc) = resolve(spec, configs, hub)?;
    let mut m = load(&source, &opts).with_context(|| format!("loading {spec}"))?;
    if let Some(mc) = mc {
        m.chat_kwargs = mc.chat_template_kwargs.clone();
    }
    Ok(m)
}

/// The architecture of a model source, without loading its weights (an HF directory's
/// config.json; a GGUF is Llama, the one GGUF architecture bwb runs).
pub fn source_arch(source: &ModelSource) -> Result<Arch> {
    match source {
        ModelSource::Dir(d) => {
            let p = d.join("config.json");
            arch_of(&read_json(&p)?, &p)
        }
        ModelSource::Gguf(_) => Ok(Arch::Llama),
        ModelSource::Random { arch, .. } => Ok(*arch),
    }
}

/// Load `source` with `opts`.
pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<LoadedModel> {
    match source {
        ModelSource::Dir(dir) => load_dir(dir, opts),
        ModelSource::Gguf(path) => load_gguf(path, opts),
        ModelSource::Random { arch, init } => load_random(*arch, init, opts),
    }
}

/// A JSON file (config.json and its siblings), with errors naming the file.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::MissingInput(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })
}

pub(crate) fn parse_cfg<T: serde::de::DeserializeOwned>(v: &Value, path: &Path) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("unexpected config: {e}"),
    })
}

/// The architecture named by an HF config (`model_type`, else `architectures`).
pub fn arch_of(cfg: &Value, path: &Path) -> Result<Arch> {
    let mt = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    let archs: Vec<&str> = cfg
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let registered = super::ARCHS.iter();
    let by_type = registered.clone().find(|a| a.model_types.contains(&mt));
    let by_name = registered
        .clone()
        .find(|a| archs.iter().any(|c| a.classes.contains(c)));
    by_type
        .or(by_name)
        .and_then(|a| Arch::by_name(a.name))
        .ok_or_else(|| Error::BadFile {
            path: path.to_path_buf(),
            message: format!(
                "architecture `{}` ({}) is not supported; supported: {}",
                if mt.is_empty() { "?" } else { mt },
                archs.join(", "),
                supported_archs()
            ),
        })
}

/// Every registered architecture with its HF class names, for errors.
pub fn supported_archs() -> String {
    let v: Vec<String> = super::ARCHS
        .iter()
        .map(|a| format!("{} ({})", a.name, a.classes.join(" / ")))
        .collect();
    v.join(", ")
}

fn build(arch: Arch, cfg: &Value, path: &Path, vb: &Builder) -> Result<Model> {
    Ok(Model::new(arch, (arch.spec().build)(cfg, path, vb)?))
}

/// Token ids of `eos_token_id` (an int or a list).
fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// A special-token string from tokenizer_config.json (a string or `{"content": …}`).
fn token_str(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Only the weights of an HF directory (no tokenizer needed): the model, its architecture,
/// its config.json and the LoRA parameters.
pub fn load_dir_weights(dir: &Path, opts: &LoadOptions) -> Result<(Model, Arch, Value, LoraVars)> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        return Err(Error::MissingInput(format!(
            "{}: no config.json; is this an HF model directory?",
            dir.display()
        )));
    }
    let cfg = read_json(&cfg_path)?;
    let arch = arch_of(&cfg, &cfg_path)?;
    let mut vb = builder(Source::safetensors_dir(dir)?, opts, opts.quant);
    if let (Some(cache_dir), Some(fmt)) = (&opts.quant_cache, opts.quant) {
        let key = quant_cache_key(dir, fmt)?;
        vb = vb.with_quant_cache(QuantCache::open(cache_dir.join(format!("{key}.gguf"))));
    }
    let model = build(arch, &cfg, &cfg_path, &vb)?;
    let lora_vars = vb.finish()?;
    Ok((model, arch, cfg, lora_vars))
}

/// Cache key for a checkpoint's quantised bases: the directory, every weight file's name,
/// size and modification time, the format and this bwb's version.
fn quant_cache_key(dir: &Path, fmt: QuantFormat) -> Result<String> {
    let mut parts = vec![
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        fmt.name().to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::MissingInput(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("safetensors"))
        .collect();
    files.sort();
    for f in files {
        let md = std::fs::metadata(&f)
            .map_err(|e| Error::MissingInput(format!("{}: {e}", f.display())))?;
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        parts.push(format!("{}:{}:{mtime}", f.display(), md.len()));
    }
    let joined = parts.join("\n");
    // FNV-1a twice with different offsets: 128 bits, stable across runs.
    let h = |seed: u64| {
        joined.bytes().fold(seed, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    Ok(format!(
        "{:016x}{:016x}",
        h(0xcbf2_9ce4_8422_2325),
        h(0x6c62_272e_07bb_0142)
    ))
}

/// Build a model of `arch` from an HF config and an in-memory tensor map (tests, merges).
pub fn from_tensors(
    arch: Arch,
    cfg: &Value,
    tensors: HashMap<String, candle_core::Tensor>,
    opts: &LoadOptions,
) -> Result<(Model, LoraVars)> {
    let vb = builder(Source::Tensors(tensors), opts, opts.quant);
    let model = build(arch, cfg, Path::new("<memory>"), &vb)?;
    Ok((model, vb.finish()?))
}

fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(Error::MissingInput(format!(
            "model directory {} does not exist",
            dir.display()
        )));
    }
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = super::tokenizer::tokenizer_from_file(&tok_path)?;
    let chat_template = ChatTemplate::from_hf_dir(dir)?;
    let (model, arch, cfg, lora_vars) = load_dir_weights(dir, opts)?;

    // Stop ids: generation_config.json (one or several), config.json, the eos token string.
    let mut eos_ids = Vec::new();
    let gen_path = dir.join("generation_config.json");
    if gen_path.exists() {
        eos_ids.extend(ids_of(read_json(&gen_path)?.get("eos_token_id")));
    }
    eos_ids.extend(ids_of(cfg.get("eos_token_id")));
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.exists() {
        read_json(&tc_path)?
    } else {
        Value::Null
    };
    if let Some(id) = token_str(tc.get("eos_token")).and_then(|t| tokenizer.token_to_id(&t)) {
        eos_ids.push(id);
    }
    dedup(&mut eos_ids);
    let pad_id = token_str(tc.get("pad_token"))
        .and_then(|t| tokenizer.token_to_id(&t))
        .or(eos_ids.first().copied())
        .unwrap_or(0);
    Ok(LoadedModel {
        model,
        arch,
        tokenizer,
        chat_template,
        eos_ids,
        pad_id,
        lora_vars,
        origin: dir.display().to_string(),
        device: opts.device.clone(),
        dtype: opts.dtype,
        chat_kwargs: BTreeMap::new(),
        max_context: [
            "max_position_embeddings",
            "text_config.max_position_embeddings",
        ]
        .iter()
        .find_map(|k| k.split('.').try_fold(&cfg, |v, f| v.get(f))?.as_u64())
        .map(|v| v as usize),
    })
}

fn dedup(ids: &mut Vec<u32>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|x| seen.insert(*x));
}

fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let bad = |m: String| Error::BadFile {
        path: path.to_path_buf(),
        message: m,
    };
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::MissingInput(format!("cannot open {}: {e}", path.display())))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| {
        bad(format!(
            "not a readable GGUF file: {}",
            crate::error::first_line(&e)
        ))
    })?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if arch != "llama" {
        return Err(bad(format!(
            "GGUF architecture `{arch}` is not supported; supported GGUF architectures: llama \
             (use the HF safetensors checkpoint for {})",
            supported_archs()
        )));
    }
    for (name, info) in &content.tensor_infos {
        use candle_core::quantized::GgmlDType as G;
        if !matches!(
            info.ggml_dtype,
            G::F32
                | G::F16
                | G::BF16
                | G::Q4_0
                | G::Q4_1
                | G::Q5_0
                | G::Q5_1
                | G::Q8_0
                | G::Q2K
                | G::Q3K
                | G::Q4K
                | G::Q5K
                | G::Q6K
                | G::Q8K
        ) {
            return Err(bad(format!(
                "tensor `{name}` has GGML type {:?}, which bwb cannot read",
                info.ggml_dtype
            )));
        }
    }
    let tied = !content.tensor_infos.contains_key("output.weight");
    let lcfg = llama::Config::from_gguf(&content.metadata, tied, path)?;
    let (tokenizer, special) = super::tokenizer::tokenizer_from_gguf(&content.metadata)?;
    let chat_template = match content.metadata.get("tokenizer.chat_template") {
        Some(v) => Some(ChatTemplate::new(
            v.to_string()
                .map_err(|e| bad(format!("tokenizer.chat_template: {e}")))?,
            special.bos_token.clone(),
            special.eos_token.clone(),
        )?),
        None => None,
    };
    let dcfg = lcfg.to_decoder()?;
    let (heads, kv) = (dcfg.num_attention_heads, dcfg.num_key_value_heads);
    // A GGUF base is already 4-bit: keep its blocks unless asked for a dense model.
    let quant = if opts.dense_gguf {
        None
    } else {
        opts.quant.or(Some(QuantFormat::Q4K))
    };
    let vb = builder(Source::gguf(path, content, heads, kv)?, opts, quant);
    let model = Model::new(
        Arch::Llama,
        std::sync::Arc::new(qwen3::Model::with_qk_norm(&dcfg, &vb, false)?),
    );
    let lora_vars = vb.finish()?;
    let mut eos_ids = special.eos_ids.clone();
    // Chat models end a turn with the template's end token too.
    if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
        eos_ids.push(id);
    }
    dedup(&mut eos_ids);
    Ok(LoadedModel {
        model,
        arch: Arch::Llama,
        pad_id: special.pad_id.or(eos_ids.first().copied()).unwrap_or(0),
        tokenizer,
        chat_template,
        eos_ids,
        lora_vars,
        origin: path.display().to_string(),
        device: opts.device.clone(),
        dtype: opts.dtype,
        chat_kwargs: BTreeMap::new(),
        max_context: lcfg.max_position_embeddings,
    })
}

/// ChatML, as Qwen renders it without a reasoning block: the smoke model's template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Overrides that scale a model config's `shape:` down, for quick CPU runs of the
/// benchmark path.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShapeOverrides {
    /// `num_hidden_layers`.
    pub layers: Option<usize>,
    /// `vocab_size`; at least 259, the byte tokenizer's ids.
    pub vocab: Option<usize>,
}

/// The architecture and HF config of config id `spec`'s published shape (`shape:` in
/// configs/models/<id>.yaml), with `ov` applied. Nothing is read but the config.
pub fn random_shape(
    spec: &str,
    configs: &crate::config::Configs,
    ov: ShapeOverrides,
) -> Result<(Arch, Value)> {
    let mc = configs.model(spec)?;
    let file = format!("configs/models/{spec}.yaml");
    let arch = mc
        .arch
        .ok_or_else(|| Error::Config(format!("{file}: field `arch` is required")))?;
    let mut shape = mc.shape.clone().ok_or_else(|| {
        Error::Config(format!(
            "{file} has no `shape:` block (the checkpoint's config.json fields); \
             --random-weights needs one"
        ))
    })?;
    if let Some(n) = ov.layers {
        if n == 0 {
            return Err(Error::Config("--layers must be at least 1".into()));
        }
        shape.insert("num_hidden_layers".into(), n.into());
        // A per-layer list must cover exactly the layers built.
        if let Some(Value::Array(t)) = shape.get_mut("layer_types") {
            t.truncate(n);
        }
    }
    if let Some(v) = ov.vocab {
        let min = 256 + 3;
        if v < min {
            return Err(Error::Config(format!(
                "--vocab {v}: must be at least {min} (the byte tokenizer's ids)"
            )));
        }
        shape.insert("vocab_size".into(), v.into());
    }
    Ok((arch, Value::Object(shape)))
}

/// A model of `arch` in the shape of the HF config `cfg` with seeded random weights (as the
/// smoke model: N(0, 0.02) matrices), the smoke model's byte tokenizer and ChatML template:
/// benchmarks of a real shape without downloading its checkpoint. Every tensor name exists
/// in the random source, so a tied config still gets its own `lm_head.weight` where the
/// architecture asks the source (Phi-3): the same FLOPs and bytes read per token, V × H more
/// parameters held.
pub fn load_random_shape(
    arch: Arch,
    cfg: &Value,
    seed: u64,
    opts: &LoadOptions,
) -> Result<LoadedModel> {
    let vocab = cfg
        .get("vocab_size")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Config("random shape: `vocab_size` is missing".into()))?;
    let origin = format!("random-weight {arch:?} shape (seed {seed})");
    random_loaded(arch, vocab as usize, seed, origin, opts, |vb| {
        build(arch, cfg, Path::new("<shape: in the model config>"), vb)
    })
}

fn load_random(arch: Arch, init: &RandomInit, opts: &LoadOptions) -> Result<LoadedModel> {
    if arch != Arch::Qwen3 {
        return Err(Error::Config(format!(
            "random_init builds the qwen3 architecture only, not {arch:?}"
        )));
    }
    let origin = format!("random {arch:?} (seed {})", init.seed);
    random_loaded(arch, init.vocab_size, init.seed, origin, opts, |vb| {
        let m = qwen3::Model::new(&random_config(init), vb)?;
        Ok(Model::new(Arch::Qwen3, std::sync::Arc::new(m)))
    })
}

/// The decoder config of a `random_init:` model (configs/models/smoke.yaml).
fn random_config(init: &RandomInit) -> qwen3::Config {
    qwen3::Config {
        vocab_size: init.vocab_size,
        hidden_size: init.hidden_size,
        intermediate_size: init.intermediate_size,
        num_hidden_layers: init.num_hidden_layers,
        num_attention_heads: init.num_attention_heads,
        num_key_value_heads: init.num_key_value_heads,
        head_dim: Some(init.head_dim),
        rms_norm_eps: 1e-6,
        rope: super::common::RopeFields {
            rope_theta: Some(10_000.0),
            ..Default::default()
        },
        tie_word_embeddings: false,
        attention_bias: false,
        hidden_act: "silu".into(),
        max_position_embeddings: None,
    }
}

/// A model that `build_model` builds from seeded random weights, with the byte tokenizer,
/// ChatML and its special tokens as stops.
fn random_loaded(
    arch: Arch,
    vocab_size: usize,
    seed: u64,
    origin: String,
    opts: &LoadOptions,
    build_model: impl FnOnce(&Builder) -> Result<Model>,
) -> Result<LoadedModel> {
    let tokenizer = byte_tokenizer(vocab_size)?;
    let vb = builder(Source::Random { seed }, opts, opts.quant);
    let model = build_model(&vb)?;
    let lora_vars = vb.finish()?;
    let im_end = tokenizer.token_to_id("<|im_end|>").unwrap_or(0);
    let eot = tokenizer.token_to_id("<|endoftext|>").unwrap_or(0);
    Ok(LoadedModel {
        model,
        arch,
        tokenizer,
        chat_template: Some(ChatTemplate::new(CHATML, None, Some("<|im_end|>".into()))?),
        eos_ids: vec![im_end, eot],
        pad_id: eot,
        lora_vars,
        origin,
        device: opts.device.clone(),
        dtype: opts.dtype,
        chat_kwargs: BTreeMap::new(),
        max_context: None,
    })
}

/// GPT-2's byte → printable-character table used by byte-level BPE vocabularies.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain('¡' as u32..='¬' as u32)
        .chain('®' as u32..='ÿ' as u32)
        .collect();
    let mut out = vec!['\0'; 256];
    for &b in &printable {
        out[b as usize] = char::from_u32(b).unwrap_or('\0');
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            out[b as usize] = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
            printable.push(b);
        }
    }
    out
}

/// The smoke model's tokenizer: one token per byte plus ChatML's special tokens, as a
/// byte-level BPE without merges, so any text round-trips.
pub fn byte_tokenizer(vocab_size: usize) -> Result<Tokenizer> {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    if vocab_size < 256 + specials.len() {
        return Err(Error::Config(format!(
            "random_init.vocab_size {vocab_size} is too small; the byte tokenizer needs at least {}",
            256 + specials.len()
        )));
    }
    let mut vocab: HashMap<String, u32> = byte_chars()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vocab.insert(s.to_string(), 256 + i as u32);
            serde_json::json!({"id": 256 + i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| Error::Config(format!("building the byte tokenizer: {e}")))
}

/// Resolve `--model`: an existing `.gguf` file, an existing HF directory, or a config id
/// from configs/models/ (random, a GGUF in a hub repo, or a hub repo).
pub fn resolve(
    spec: &str,
    configs: &Configs,
    hub: &HubSettings,
) -> Result<(ModelSource, Option<ModelConfig>)> {
    let p = Path::new(spec);
    if p.is_file() {
        if p.extension().and_then(|e| e.to_str()) == Some("gguf") {
            return Ok((ModelSource::Gguf(p.to_path_buf()), None));
        }
        return Err(Error::Config(format!(
            "--model {spec}: a file must be a .gguf; pass an HF model directory or a config id instead"
        )));
    }
    if p.is_dir() {
        return Ok((ModelSource::Dir(p.to_path_buf()), None));
    }
    if let Some((repo_id, revision)) = hub_id(spec) {
        let hub_client = crate::data::download::Hub::new(hub)?;
        let repo = hf_hub::Repo::with_revision(repo_id, hf_hub::RepoType::Model, revision);
        return Ok((
            ModelSource::Dir(fetch_hf_dir(&hub_client, &repo, spec)?),
            None,
        ));
    }
    if spec.contains('/') || spec.ends_with(".gguf") {
        return Err(Error::MissingInput(format!(
            "--model {spec}: no such file or directory (and not a config id in configs/models/)"
        )));
    }
    let mc = configs.model(spec)?.clone();
    if mc.kind != crate::config::ModelKind::Local {
        return Err(Error::Config(format!(
            "model `{spec}` is an API model; the engine runs local models only"
        )));
    }
    let arch = mc.arch.ok_or_else(|| {
        Error::Config(format!(
            "configs/models/{spec}.yaml: field `arch` is required"
        ))
    })?;
    if let Some(init) = &mc.random_init {
        return Ok((
            ModelSource::Random {
                arch,
                init: init.clone(),
            },
            Some(mc),
        ));
    }
    let repo_id = mc.hf_repo.clone().ok_or_else(|| {
        Error::Config(format!(
            "configs/models/{spec}.yaml: field `hf_repo` is required"
        ))
    })?;
    let hub_client = crate::data::download::Hub::new(hub)?;
    let repo = hf_hub::Repo::with_revision(
        repo_id,
        hf_hub::RepoType::Model,
        mc.revision.clone().unwrap_or_else(|| "main".into()),
    );
    if let Some(g) = &mc.gguf {
        let path = hub_client.get_file(&repo, g)?;
        return Ok((ModelSource::Gguf(path), Some(mc)));
    }
    let dir = fetch_hf_dir(&hub_client, &repo, spec)?;
    Ok((ModelSource::Dir(dir), Some(mc)))
}

impl LoadedModel {
    /// Token ids for a conversation: rendered with the model's chat template (generation
    /// prompt added), or with `raw` the last message's text as is (plus the tokenizer's own
    /// special tokens, e.g. BOS).
    pub fn encode_prompt(
        &self,
        messages: &[crate::prompt::chat_template::Message],
        raw: bool,
    ) -> Result<Vec<u32>> {
        let (text, special) = match (&self.chat_template, raw) {
            (Some(t), false) => (t.render(messages, true, &self.chat_kwargs)?, false),
            (None, false) => {
                return Err(Error::Config(format!(
                    "{} has no chat template; pass --raw to feed the prompt as is",
                    self.origin
                )))
            }
            (_, true) => (
                messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
                true,
            ),
        };
        let enc = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| Error::Config(format!("tokenising the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode completion ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Config(format!("decoding tokens: {e}")))
    }

    /// Complete every prompt (token ids) in one batch.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        params: &super::generate::GenParams,
    ) -> Result<Vec<super::generate::Completion>> {
        super::generate::generate(
            &self.model,
            &self.device,
            prompts,
            &self.eos_ids,
            self.pad_id,
            params,
            &|ids| self.decode(ids),
        )
    }
}

/// A hub model id (`org/name` or `org/name@revision`) as a local HF directory: downloaded,
/// or found in the hub cache, the way `--model` resolves hub ids (config, tokenizer files,
/// safetensors weights).
pub fn fetch_hub_model(spec: &str, hub: &HubSettings) -> Result<PathBuf> {
    let (repo_id, revision) = hub_id(spec).ok_or_else(|| {
        Error::Config(format!(
            "`{spec}` is neither a directory nor a hub id (org/name or org/name@revision)"
        ))
    })?;
    let hub_client = crate::data::download::Hub::new(hub)?;
    let repo = hf_hub::Repo::with_revision(repo_id, hf_hub::RepoType::Model, revision);
    fetch_hf_dir(&hub_client, &repo, spec)
}

/// `org/name` or `org/name@revision` (not a path: no leading `.`/`/`, exactly one `/`).
fn hub_id(spec: &str) -> Option<(String, String)> {
    let (id, rev) = match spec.split_once('@') {
        Some((i, r)) if !r.is_empty() => (i, r),
        Some(_) => return None,
        None => (spec, "main"),
    };
    let (org, name) = id.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (ok(org) && ok(name)).then(|| (id.to_string(), rev.to_string()))
}

/// Download (or find in the hub cache) what the engine needs from a model repo and return
/// the snapshot directory: config, tokenizer files, generation config, chat template and
/// the safetensors weights (single file or every shard of the index).
fn fetch_hf_dir(
    hub_client: &crate::data::download::Hub,
    repo: &hf_hub::Repo,
    spec: &str,
) -> Result<PathBuf> {
    let files = hub_client.list_files(repo)?;
    let mut wanted: Vec<String> = ["config.json", "tokenizer.json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for opt in [
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "model.safetensors.index.json",
        "model.safetensors",
    ] {
        if files.iter().any(|f| f == opt) {
            wanted.push(opt.to_string());
        }
    }
    let mut shards: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".safetensors") && f.starts_with("model-"))
        .cloned()
        .collect();
    shards.sort();
    wanted.extend(shards);
    let mut dir = None;
    for f in &wanted {
        let path = hub_client.get_file(repo, f)?;
        if f == "config.json" {
            dir = path.parent().map(Path::to_path_buf);
        }
    }
    dir.ok_or_else(|| Error::Download(format!("{spec}: config.json has no parent directory")))
}
