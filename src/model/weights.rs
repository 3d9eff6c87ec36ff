//! Where a model's tensors come from (memory-mapped safetensors shards, a GGUF file, or a
//! seeded random generator) and the builder the model files descend with `pp()`, like
//! candle's `VarBuilder`, except that it hands out [`QLinear`]s: quantised at load time when
//! asked, with a LoRA adapter attached where the plan targets that module.
//!
//! Names are HF checkpoint names (`model.layers.0.self_attn.q_proj.weight`); the GGUF source
//! maps them to llama.cpp names and undoes llama.cpp's Q/K row permutation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::linear::{FrozenWeight, Lora, QLinear, QuantFormat, ServedLora};
use crate::error::{Error, Result};

/// How a random-init tensor is filled (the smoke model, tests).
#[derive(Debug, Clone, Copy)]
pub enum Init {
    Normal(f64),
    Ones,
    Zeros,
}

pub enum Source {
    Safetensors {
        st: MmapedSafetensors,
        names: HashSet<String>,
        /// Prefix substitutions from HF causal-LM names to this checkpoint's names (Gemma 3's
        /// multimodal checkpoint keeps the text model under `language_model.`).
        key_map: Vec<(String, String)>,
        path: PathBuf,
    },
    Gguf {
        content: gguf_file::Content,
        file: Mutex<File>,
        path: PathBuf,
        heads: usize,
        kv_heads: usize,
    },
    Random {
        seed: u64,
    },
    /// In-memory tensors by HF name (tests, merged exports).
    Tensors(HashMap<String, Tensor>),
}

impl Source {
    /// Memory-map `model.safetensors` or every shard named in `model.safetensors.index.json`.
    pub fn safetensors_dir(dir: &Path) -> Result<Self> {
        let files: Vec<PathBuf> = safetensors_files(dir)?
            .iter()
            .map(|f| dir.join(f))
            .collect();
        // SAFETY: the files are opened read-only; we never write them while mapped.
        let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| bad(dir, e))?;
        let names: HashSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let key_map = if names.contains("language_model.model.embed_tokens.weight") {
            vec![
                ("model.".to_string(), "language_model.model.".to_string()),
                (
                    "lm_head.".to_string(),
                    "language_model.lm_head.".to_string(),
                ),
            ]
        } else if names.contains("model.language_model.embed_tokens.weight") {
            vec![("model.".to_string(), "model.language_model.".to_string())]
        } else {
            Vec::new()
        };
        Ok(Self::Safetensors {
            st,
            names,
            key_map,
            path: dir.to_path_buf(),
        })
    }

    pub fn gguf(
        path: &Path,
        content: gguf_file::Content,
        heads: usize,
        kv_heads: usize,
    ) -> Result<Self> {
        let file = File::open(path).map_err(|e| bad(path, e))?;
        Ok(Self::Gguf {
            content,
            file: Mutex::new(file),
            path: path.to_path_buf(),
            heads,
            kv_heads,
        })
    }

    /// Does the checkpoint hold this HF name?
    pub fn has(&self, name: &str) -> bool {
        match self {
            Self::Safetensors { names, key_map, .. } => names.contains(&map_key(key_map, name)),
            Self::Gguf { content, .. } => gguf_name(name)
                .map(|g| content.tensor_infos.contains_key(&g))
                .unwrap_or(false),
            // Every tensor but a separate LM head: a config with tied embeddings ties it, as
            // the real checkpoint does (and holds one V × H matrix, not two).
            Self::Random { .. } => !name.ends_with("lm_head.weight"),
            Self::Tensors(m) => m.contains_key(name),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Safetensors { path, .. } | Self::Gguf { path, .. } => path.display().to_string(),
            Self::Random { seed } => format!("random weights (seed {seed})"),
            Self::Tensors(_) => "in-memory weights".to_string(),
        }
    }
}

/// The weight files of an HF model directory, relative to it: every shard named in
/// `model.safetensors.index.json` (sorted, once each), else `model.safetensors`. Each must
/// exist.
pub fn safetensors_files(dir: &Path) -> Result<Vec<String>> {
    let index = dir.join(INDEX_FILE);
    let files: Vec<String> = if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| bad(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad(&index, "no `weight_map` object"))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        shards.sort();
        shards.dedup();
        shards
    } else {
        if !dir.join(SINGLE_FILE).exists() {
            return Err(Error::MissingInput(format!(
                "{}: no {SINGLE_FILE} or {INDEX_FILE}; download the \
                 model's weights into this directory",
                dir.display()
            )));
        }
        vec![SINGLE_FILE.to_string()]
    };
    for f in &files {
        if !dir.join(f).exists() {
            return Err(Error::MissingInput(format!(
                "missing shard {} (listed in {}); download it again",
                dir.join(f).display(),
                index.display()
            )));
        }
    }
    Ok(files)
}

/// An HF directory's single weight file, and the index of a sharded one.
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

fn map_key(map: &[(String, String)], name: &str) -> String {
    for (from, to) in map {
        if let Some(rest) = name.strip_prefix(from.as_str()) {
            return format!("{to}{rest}");
        }
    }
    name.to_string()
}

/// A tensor as stored: dense, or ggml-quantised (GGUF). Short-lived (one per tensor while
/// loading), so the size of a CUDA `QTensor` does not matter.
#[allow(clippy::large_enum_variant)]
enum Raw {
    Dense(Tensor),
    Quant(QTensor),
}

/// HF name → llama.cpp GGUF name (Llama architecture).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let part = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{idx}.{part}"))
}

/// llama.cpp's converter permutes Q/K rows so ggml's interleaved RoPE applies; undo it so the
/// weights are HF's and HF-style RoPE (and PEFT adapters) apply. Rows are whole quantised
/// blocks, so this is a byte shuffle.
fn unpermute_rows(q: &QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let dt = q.dtype();
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let data = q.data()?;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..half {
                let hf_row = h * hd + s * half + j;
                let gg_row = h * hd + 2 * j + s;
                out[hf_row * row_bytes..(hf_row + 1) * row_bytes]
                    .copy_from_slice(&data[gg_row * row_bytes..(gg_row + 1) * row_bytes]);
            }
        }
    }
    candle_core::quantized::ggml_file::qtensor_from_ggml(dt, &out, vec![rows, cols], &q.device())
}

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: crate::error::first_line(&e),
    }
}

/// Trainable LoRA parameters: (module path, A, B) in model order.
pub type LoraVars = Vec<(String, Var, Var)>;

/// Which modules get LoRA and how; `adapter` holds loaded PEFT tensors by module path.
#[derive(Debug, Clone)]
pub struct LoraPlan {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f32,
    pub use_rslora: bool,
    pub target_modules: Vec<String>,
    /// Seed for the initial A matrices of a new adapter.
    pub init_seed: u64,
    /// PEFT tensors keyed by module path (`model.layers.0.self_attn.q_proj`): (A, B).
    pub adapter: Option<HashMap<String, (Tensor, Tensor)>>,
}

impl LoraPlan {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    fn targets(&self, module: &str) -> bool {
        let leaf = module.rsplit('.').next().unwrap_or(module);
        self.target_modules.iter().any(|t| t == leaf || t == module)
    }

    /// A loaded adapter's (A, B) for `module`, shape-checked against the layer, in f32.
    fn loaded_pair(
        &self,
        ad: &HashMap<String, (Tensor, Tensor)>,
        module: &str,
        in_f: usize,
        out_f: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (a, b) = ad.get(module).ok_or_else(|| {
            Error::Config(format!(
                "adapter has no tensors for `{module}` although its target_modules include it; \
                 the adapter was made for another model"
            ))
        })?;
        for (t, want, which) in [
            (a, [self.r, in_f], "lora_A"),
            (b, [out_f, self.r], "lora_B"),
        ] {
            if t.dims() != want {
                return Err(Error::Config(format!(
                    "adapter tensor `base_model.model.{module}.{which}.weight` has shape {:?}, \
                     the base model needs {want:?}; the adapter was made for another base model",
                    t.dims()
                )));
            }
        }
        Ok((
            a.to_dtype(DType::F32).map_err(ce)?,
            b.to_dtype(DType::F32).map_err(ce)?,
        ))
    }

    /// Once the model is built with this plan (`used`: the modules that got LoRA): every
    /// adapter tensor must have found its module, and every target module name must exist.
    fn check_coverage(&self, used: &HashSet<String>) -> Result<()> {
        if let Some(ad) = &self.adapter {
            let mut extra: Vec<&String> = ad.keys().filter(|k| !used.contains(*k)).collect();
            extra.sort();
            if let Some(k) = extra.first() {
                return Err(Error::Config(format!(
                    "adapter tensor `base_model.model.{k}.lora_A.weight` matches no targeted module of \
                     this model; the adapter was made for another base model"
                )));
            }
        }
        for t in &self.target_modules {
            if !used
                .iter()
                .any(|u| u == t || u.rsplit('.').next() == Some(t.as_str()))
            {
                return Err(Error::Config(format!(
                    "LoRA target module `{t}` does not exist in this model; check `target_modules`"
                )));
            }
        }
        Ok(())
    }

    /// This loaded adapter as a [`ServedLora`] for a model built without LoRA whose linear
    /// layers are `sites`, its tensors in `dtype`; checked as a build with the plan would be.
    pub fn served(&self, sites: &[LinearSite], dtype: DType) -> Result<ServedLora> {
        let ad = self.adapter.as_ref().ok_or_else(|| {
            Error::Config("a served adapter needs loaded tensors, not a fresh plan".into())
        })?;
        let mut layers = HashMap::new();
        let mut used = HashSet::new();
        for s in sites.iter().filter(|s| self.targets(&s.module)) {
            let (a, b) = self.loaded_pair(ad, &s.module, s.in_f, s.out_f)?;
            let cast = |t: Tensor| t.to_dtype(dtype).map_err(ce);
            layers.insert(s.index, (cast(a)?, cast(b)?));
            used.insert(s.module.clone());
        }
        self.check_coverage(&used)?;
        Ok(ServedLora {
            scale: self.scale(),
            layers,
        })
    }
}

/// Where a linear layer sits in a model: its module path, index and size, recorded while
/// building so adapters can be attached to the built model later ([`LoraPlan::served`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearSite {
    pub module: String,
    pub index: usize,
    pub in_f: usize,
    pub out_f: usize,
}

/// Every tensor a model build reads, by HF name, in f32 as the model holds it before any
/// quantisation: a merged export walks its base through the model files with this instead
/// of listing tensor names itself.
#[derive(Debug, Clone, Default)]
pub struct TensorRecord(Arc<Mutex<BTreeMap<String, Tensor>>>);

impl TensorRecord {
    fn keep(&self, name: &str, t: &Tensor) -> Result<()> {
        let t = t.to_dtype(DType::F32).map_err(ce)?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_string(), t);
        }
        Ok(())
    }

    /// The tensors recorded so far (the record is left empty).
    pub fn take(&self) -> BTreeMap<String, Tensor> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// Quantised bases cached on disk as a GGUF file, so the second load of a checkpoint skips
/// reading and quantising the dense weights.
pub struct QuantCache {
    path: PathBuf,
    existing: Option<(gguf_file::Content, Mutex<File>)>,
    fresh: Mutex<Vec<(String, Arc<QTensor>)>>,
}

impl QuantCache {
    /// Open (or plan) the cache file `path`. An unreadable cache file is ignored and rewritten.
    pub fn open(path: PathBuf) -> Self {
        let existing = File::open(&path).ok().and_then(|mut f| {
            let content = gguf_file::Content::read(&mut f).ok()?;
            Some((content, Mutex::new(f)))
        });
        Self {
            path,
            existing,
            fresh: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn get(&self, name: &str, dev: &Device) -> Option<QTensor> {
        let (content, file) = self.existing.as_ref()?;
        let mut f = file.lock().ok()?;
        content.tensor(&mut *f, name, dev).ok()
    }

    /// Write the tensors quantised during this load (atomically), if any.
    fn flush(&self) -> Result<()> {
        let fresh = match self.fresh.lock() {
            Ok(f) => f,
            Err(_) => return Ok(()),
        };
        if fresh.is_empty() || self.existing.is_some() {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::fsutil::create_dir_all(dir)?;
        let wrap = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".bwb-tmp-")
            .tempfile_in(dir)
            .map_err(wrap)?;
        let tensors: Vec<(&str, &QTensor)> = fresh
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_ref()))
            .collect();
        {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            gguf_file::write(&mut w, &[], &tensors).map_err(|e| Error::Write {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            std::io::Write::flush(&mut w).map_err(wrap)?;
        }
        tmp.persist(&self.path).map_err(|e| wrap(e.error))?;
        Ok(())
    }
}

struct Shared {
    src: Source,
    qcache: Option<QuantCache>,
    record: Option<TensorRecord>,
    device: Device,
    dtype: DType,
    quant: Option<QuantFormat>,
    lora: Option<LoraPlan>,
    /// Trainable LoRA parameters by PEFT-style module path, in creation order.
    vars: Mutex<LoraVars>,
    used_targets: Mutex<HashSet<String>>,
    next_index: AtomicUsize,
    sites: Mutex<Vec<LinearSite>>,
}

/// Descends a checkpoint by name, handing out tensors and [`QLinear`]s.
#[derive(Clone)]
pub struct Builder {
    shared: Arc<Shared>,
    prefix: String,
}

impl Builder {
    pub fn new(
        src: Source,
        device: &Device,
        dtype: DType,
        quant: Option<QuantFormat>,
        lora: Option<LoraPlan>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                src,
                qcache: None,
                record: None,
                device: device.clone(),
                dtype,
                quant,
                lora,
                vars: Mutex::new(Vec::new()),
                used_targets: Mutex::new(HashSet::new()),
                next_index: AtomicUsize::new(0),
                sites: Mutex::new(Vec::new()),
            }),
            prefix: String::new(),
        }
    }

    /// Use (and fill) an on-disk cache of quantised bases. Call before building the model.
    pub fn with_quant_cache(mut self, cache: QuantCache) -> Self {
        if let Some(sh) = Arc::get_mut(&mut self.shared) {
            sh.qcache = Some(cache);
        }
        self
    }

    /// Record every tensor the model build reads (see [`TensorRecord`]). Call before
    /// building the model.
    pub fn with_record(mut self, record: TensorRecord) -> Self {
        if let Some(sh) = Arc::get_mut(&mut self.shared) {
            sh.record = Some(record);
        }
        self
    }

    fn keep(&self, full: &str, t: &Tensor) -> Result<()> {
        match &self.shared.record {
            Some(r) => r.keep(full, t),
            None => Ok(()),
        }
    }

    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            shared: self.shared.clone(),
            prefix,
        }
    }

    pub fn device(&self) -> &Device {
        &self.shared.device
    }

    pub fn dtype(&self) -> DType {
        self.shared.dtype
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shared.src.has(&self.full(name))
    }

    fn raw(&self, name: &str, shape: &[usize], init: Init) -> Result<Raw> {
        let full = self.full(name);
        let sh = &self.shared;
        let raw = match &sh.src {
            Source::Safetensors {
                st,
                names,
                key_map,
                path,
            } => {
                let key = map_key(key_map, &full);
                if !names.contains(&key) {
                    return Err(Error::BadFile {
                        path: path.clone(),
                        message: format!(
                            "tensor `{key}` is missing; the checkpoint does not match its config.json"
                        ),
                    });
                }
                Raw::Dense(st.load(&key, &sh.device).map_err(|e| bad(path, e))?)
            }
            Source::Gguf {
                content,
                file,
                path,
                heads,
                kv_heads,
            } => {
                let g = gguf_name(&full)
                    .ok_or_else(|| bad(path, format!("no GGUF tensor name for `{full}`")))?;
                if !content.tensor_infos.contains_key(&g) {
                    return Err(bad(path, format!("tensor `{g}` is missing")));
                }
                let mut f = file
                    .lock()
                    .map_err(|_| bad(path, "GGUF file lock poisoned"))?;
                let q = content
                    .tensor(&mut *f, &g, &sh.device)
                    .map_err(|e| bad(path, format!("tensor `{g}`: {e}")))?;
                let q = if g.ends_with("attn_q.weight") {
                    unpermute_rows(&q, *heads).map_err(|e| bad(path, e))?
                } else if g.ends_with("attn_k.weight") {
                    unpermute_rows(&q, *kv_heads).map_err(|e| bad(path, e))?
                } else {
                    q
                };
                match q.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        Raw::Dense(q.dequantize(&sh.device).map_err(|e| bad(path, e))?)
                    }
                    _ => Raw::Quant(q),
                }
            }
            Source::Random { seed } => Raw::Dense(random(*seed, &full, shape, init, &sh.device)?),
            Source::Tensors(m) => Raw::Dense(
                m.get(&full)
                    .ok_or_else(|| Error::Config(format!("tensor `{full}` is missing")))?
                    .to_device(&sh.device)?,
            ),
        };
        let got = match &raw {
            Raw::Dense(t) => t.dims().to_vec(),
            Raw::Quant(q) => q.shape().dims().to_vec(),
        };
        if got != shape {
            return Err(Error::Config(format!(
                "{}: tensor `{full}` has shape {got:?}, the config implies {shape:?}",
                sh.src.describe()
            )));
        }
        Ok(raw)
    }

    /// A dense tensor in the compute dtype (dequantised if stored quantised).
    pub fn tensor(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let t = match self.raw(name, shape, init)? {
            Raw::Dense(t) => t,
            Raw::Quant(q) => q.dequantize(&self.shared.device).map_err(ce)?,
        };
        let t = t.to_dtype(self.shared.dtype).map_err(ce)?;
        self.keep(&self.full(name), &t)?;
        Ok(t)
    }

    /// A dense tensor kept in f32 (norm weights).
    pub fn tensor_f32(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let t = match self.raw(name, shape, init)? {
            Raw::Dense(t) => t,
            Raw::Quant(q) => q.dequantize(&self.shared.device).map_err(ce)?,
        };
        let t = t.to_dtype(DType::F32).map_err(ce)?;
        self.keep(&self.full(name), &t)?;
        Ok(t)
    }

    /// The linear layer `name` (`[out, in]` weight, optional bias): quantised when a 4-bit
    /// format is set, with LoRA when the plan targets it.
    pub fn linear(&self, name: &str, in_f: usize, out_f: usize, bias: bool) -> Result<QLinear> {
        let sh = &self.shared;
        let std = 0.02;
        let wname = self.full(&format!("{name}.weight"));
        let cached = match (&sh.qcache, sh.quant) {
            (Some(c), Some(_)) => c
                .get(&wname, &sh.device)
                .filter(|q| q.shape().dims() == [out_f, in_f]),
            _ => None,
        };
        let raw = match cached {
            Some(q) => Raw::Quant(q),
            None => self.raw(&format!("{name}.weight"), &[out_f, in_f], Init::Normal(std))?,
        };
        let base = match raw {
            // `--quant none`: the file's own blocks, dequantised once.
            Raw::Quant(q) if sh.quant.is_none() => FrozenWeight::Dense(
                q.dequantize(&sh.device)
                    .and_then(|t| t.to_dtype(sh.dtype))
                    .map_err(ce)?,
            ),
            // candle's x86 kernels have no SIMD dot product for Q4_1/Q5_*: for 4-bit
            // execution on the CPU, re-block those as Q8_0 (error well under the 4-bit step,
            // 1.7× the memory, faster decode; docs/BENCHMARKS.md).
            Raw::Quant(q)
                if sh.device.is_cpu()
                    && matches!(
                        q.dtype(),
                        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
                    ) =>
            {
                let dense = q.dequantize(&sh.device).map_err(ce)?;
                FrozenWeight::quantized(QTensor::quantize(&dense, GgmlDType::Q8_0).map_err(ce)?)
                    .map_err(ce)?
            }
            Raw::Quant(q) => FrozenWeight::quantized(q).map_err(ce)?,
            Raw::Dense(w) => match sh.quant {
                None => FrozenWeight::Dense(w.to_dtype(sh.dtype).map_err(ce)?),
                Some(fmt) => {
                    let w32 = w.to_dtype(DType::F32).map_err(ce)?;
                    let q = Arc::new(QTensor::quantize(&w32, fmt.ggml_dtype(in_f)).map_err(ce)?);
                    if let Some(c) = &sh.qcache {
                        if let Ok(mut fresh) = c.fresh.lock() {
                            fresh.push((wname.clone(), q.clone()));
                        }
                    }
                    FrozenWeight::quantized_arc(q).map_err(ce)?
                }
            },
        };
        if sh.record.is_some() {
            let w = match &base {
                FrozenWeight::Dense(w) => w.clone(),
                FrozenWeight::Quant { q, .. } => q.dequantize(&sh.device).map_err(ce)?,
            };
            self.keep(&wname, &w)?;
        }
        let bias = if bias {
            Some(self.tensor(&format!("{name}.bias"), &[out_f], Init::Zeros)?)
        } else {
            None
        };
        let index = sh.next_index.fetch_add(1, Ordering::Relaxed);
        let module = self.full(name);
        if let Ok(mut sites) = sh.sites.lock() {
            sites.push(LinearSite {
                module: module.clone(),
                index,
                in_f,
                out_f,
            });
        }
        let lora = match &sh.lora {
            Some(plan) if plan.targets(&module) => {
                Some(self.make_lora(plan, &module, in_f, out_f)?)
            }
            _ => None,
        };
        Ok(QLinear {
            base,
            bias,
            lora,
            index,
        })
    }

    fn make_lora(&self, plan: &LoraPlan, module: &str, in_f: usize, out_f: usize) -> Result<Lora> {
        let sh = &self.shared;
        let (a, b) = match &plan.adapter {
            Some(ad) => plan.loaded_pair(ad, module, in_f, out_f)?,
            None => {
                // PEFT's default: A ~ kaiming_uniform(a=√5) = U(±1/√in), B = 0.
                let bound = 1.0 / (in_f as f64).sqrt();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.init_seed ^ hash(module));
                let vals: Vec<f32> = (0..plan.r * in_f)
                    .map(|_| (rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0) as f32 * bound as f32)
                    .collect();
                let a = Tensor::from_vec(vals, (plan.r, in_f), &sh.device).map_err(ce)?;
                let b = Tensor::zeros((out_f, plan.r), DType::F32, &sh.device).map_err(ce)?;
                (a, b)
            }
        };
        let a = Var::from_tensor(&a).map_err(ce)?;
        let b = Var::from_tensor(&b).map_err(ce)?;
        if let Ok(mut vars) = sh.vars.lock() {
            vars.push((module.to_string(), a.clone(), b.clone()));
        }
        if let Ok(mut used) = sh.used_targets.lock() {
            used.insert(module.to_string());
        }
        Ok(Lora {
            a,
            b,
            scale: plan.scale(),
            dropout: plan.dropout,
        })
    }

    /// The linear layers built so far, in build order.
    pub fn sites(&self) -> Vec<LinearSite> {
        self.shared
            .sites
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// After the model is built: every adapter tensor must have found its module, and
    /// every target module name must exist in the model.
    pub fn finish(&self) -> Result<LoraVars> {
        let sh = &self.shared;
        if let Some(c) = &sh.qcache {
            c.flush()?;
        }
        let used = sh
            .used_targets
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        if let Some(plan) = &sh.lora {
            plan.check_coverage(&used)?;
        }
        Ok(sh.vars.lock().map(|v| v.clone()).unwrap_or_default())
    }
}

fn ce(e: candle_core::Error) -> Error {
    Error::Config(crate::error::first_line(&e))
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (std's hasher is not).
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn random(seed: u64, name: &str, shape: &[usize], init: Init, dev: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let vals: Vec<f32> = match init {
        Init::Ones => vec![1.0; n],
        Init::Zeros => vec![0.0; n],
        Init::Normal(std) => {
            let d = Normal::new(0.0f32, std as f32)
                .map_err(|e| Error::Config(format!("random init: {e}")))?;
            let base = seed ^ hash(name);
            if n < RANDOM_CHUNK {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(base);
                (0..n).map(|_| d.sample(&mut rng)).collect()
            } else {
                // Real-shape benchmark models (billions of weights): fixed-size chunks, each
                // from its own seeded stream, filled in parallel — the same values whatever
                // the thread count.
                let mut vals = vec![0f32; n];
                let chunks: Vec<(usize, &mut [f32])> =
                    vals.chunks_mut(RANDOM_CHUNK).enumerate().collect();
                let threads = std::thread::available_parallelism()
                    .map(|t| t.get())
                    .unwrap_or(1);
                let per = chunks.len().div_ceil(threads);
                let mut groups: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
                let mut it = chunks.into_iter().peekable();
                while it.peek().is_some() {
                    groups.push(it.by_ref().take(per).collect());
                }
                std::thread::scope(|s| {
                    for g in groups {
                        s.spawn(move || {
                            for (i, chunk) in g {
                                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                                    base ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                                );
                                for v in chunk.iter_mut() {
                                    *v = d.sample(&mut rng);
                                }
                            }
                        });
                    }
                });
                vals
            }
        }
    };
    Tensor::from_vec(vals, shape, dev).map_err(ce)
}

/// Random tensors this large are filled in parallel chunks of this many values.
const RANDOM_CHUNK: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rslora: bool) -> LoraPlan {
        LoraPlan {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            use_rslora: rslora,
            target_modules: vec!["q_proj".into()],
            init_seed: 0,
            adapter: None,
        }
    }

    #[test]
    fn large_random_tensors_are_deterministic_and_normal() {
        let shape = [3 * RANDOM_CHUNK + 5];
        let a = random(7, "w", &shape, Init::Normal(0.02), &Device::Cpu).unwrap();
        let b = random(7, "w", &shape, Init::Normal(0.02), &Device::Cpu).unwrap();
        let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        assert_eq!(a, b);
        // Chunks draw from different streams.
        assert_ne!(a[..16], a[RANDOM_CHUNK..RANDOM_CHUNK + 16]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-4, "{mean}");
        assert!((std - 0.02).abs() < 1e-4, "{std}");
    }

    #[test]
    fn lora_scale_follows_peft() {
        // PEFT: alpha / r, or alpha / sqrt(r) with use_rslora.
        assert_eq!(plan(false).scale(), 2.0);
        assert_eq!(plan(true).scale(), 8.0);
    }

    #[test]
    fn targets_match_leaf_names_or_full_paths() {
        let p = plan(false);
        assert!(p.targets("model.layers.0.self_attn.q_proj"));
        assert!(!p.targets("model.layers.0.self_attn.k_proj"));
        assert!(!p.targets("model.layers.0.self_attn.q_proj_extra"));
    }

    #[test]
    fn gguf_names_map_hf_names() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.weight").as_deref(),
            Some("blk.3.attn_q.weight")
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("model.layers.3.self_attn.q_norm.weight"), None);
    }
}
