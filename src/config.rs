//! Typed YAML configs. Every struct denies unknown fields so a typo is an error naming the
//! file, line and field instead of a silently ignored setting.
//!
//! Layout: `configs/tasks/<task>.yaml`, `configs/datasets/<id>.yaml` (eval-only, same
//! schema without a train split), `configs/models/<model>.yaml`,
//! `configs/training/<name>.yaml`, `configs/pricing.yaml`, `configs/run_defaults.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Read and parse one YAML file; errors name `file:line:column` and the offending field.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read config: {e}"),
    })?;
    parse_yaml(path, &text)
}

/// Parse YAML text that came from `path` (used for error messages only).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        Error::Config(format!(
            "{}{location}: {}",
            path.display(),
            yaml_message(&e)
        ))
    })
}

/// serde-saphyr's message without its own "error: line X column Y:" prefix, location suffix
/// or source snippet (we print the location as file:line:column).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut msg = full.lines().next().unwrap_or("invalid YAML").trim();
    msg = msg.strip_prefix("error:").unwrap_or(msg).trim_start();
    if msg.starts_with("line ") {
        if let Some(i) = msg.find(": ") {
            msg = &msg[i + 2..];
        }
    }
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Tasks

/// How the raw files of a dataset are stored on the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    Parquet,
    /// A JSON array of objects, or `{"data": [...]}`.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row; every value is read as a string.
    Csv,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    /// Paths inside the hub repo; `*` matches within one path segment (sharded splits).
    pub files: Vec<String>,
    /// Expected number of rows of the real dataset: a truncated download fails loudly.
    /// Required for hub sources; a local file has none (its rows are counted and reported).
    #[serde(default)]
    pub rows: Option<usize>,
}

/// Where a task's or dataset's rows come from: a hub dataset repo (`repo`, `revision`,
/// `format`, `splits`), or a local file (`path`, bring your own data).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Hub dataset repo, e.g. `PolyAI/banking77`.
    #[serde(default)]
    pub repo: Option<String>,
    /// Branch, tag or commit; `refs/convert/parquet` is the hub's auto-converted parquet.
    #[serde(default)]
    pub revision: Option<String>,
    /// How the files are stored; for a local `path`, taken from its extension when left out.
    #[serde(default)]
    pub format: Option<RawFormat>,
    /// Raw split name → its files. A local `path` is the one raw split [`LOCAL_SPLIT`].
    #[serde(default)]
    pub splits: BTreeMap<String, RawSplit>,
    /// Bring your own data: a `.csv`, `.jsonl`, `.json` or `.parquet` file, relative to the
    /// project root (or absolute). `bwb download` skips it; `bwb prepare` reads it directly.
    #[serde(default)]
    pub path: Option<String>,
    /// Column renames (our name → the file's), merged into the config's top-level `columns`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// The raw split name of a local `source.path` file.
pub const LOCAL_SPLIT: &str = "data";

impl Source {
    /// The hub repo (empty for a local source; hub sources are checked to have one).
    pub fn repo_id(&self) -> &str {
        self.repo.as_deref().unwrap_or_default()
    }

    /// The hub revision (hub sources are checked to have one).
    pub fn revision_name(&self) -> &str {
        self.revision.as_deref().unwrap_or_default()
    }

    /// The file format (checked at load: given, or from a local path's extension).
    pub fn raw_format(&self) -> RawFormat {
        self.format
            .or_else(|| self.path.as_deref().and_then(format_from_extension))
            .unwrap_or(RawFormat::Jsonl)
    }

    /// The local file, resolved against the project root; `None` for hub sources.
    pub fn local_file(&self, root: &Path) -> Option<PathBuf> {
        self.path.as_ref().map(|p| root.join(p))
    }

    /// Where the rows come from, for messages: `repo@revision` or the local path.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.clone(),
            None => format!("{}@{}", self.repo_id(), self.revision_name()),
        }
    }
}

/// A local file's format from its extension (`.csv`, `.jsonl`, `.json`, `.parquet`).
pub fn format_from_extension(path: &str) -> Option<RawFormat> {
    let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(RawFormat::Csv),
        "jsonl" => Some(RawFormat::Jsonl),
        "json" => Some(RawFormat::Json),
        "parquet" => Some(RawFormat::Parquet),
        _ => None,
    }
}

/// What a task's answer looks like, and so how a raw row becomes an `Example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// One label out of `labels` (classification).
    Label,
    /// Zero or more extracted spans (CUAD).
    Spans,
    /// One lettered option (multiple choice).
    Choice,
    /// A Python function checked by asserts (MBPP).
    Code,
    /// A short free-text answer checked against one or more gold answers (HotpotQA,
    /// LongBench QA, MS MARCO, FinanceBench): exact match and token F1.
    Text,
    /// A list of items compared as a set (ETHIC).
    List,
    /// The ids of the relevant passages among the numbered ones in the context (MS MARCO).
    Retrieval,
    /// A free-text summary compared with reference summaries (QMSum): ROUGE, BERTScore.
    Summary,
}

impl AnswerKind {
    /// The context benchmark's kinds, whose long contexts are cut in the middle to fit a
    /// local model's window (LongBench's convention) instead of windowed like CUAD.
    pub fn is_long_context(self) -> bool {
        matches!(
            self,
            Self::Text | Self::List | Self::Retrieval | Self::Summary
        )
    }
}

/// Which reference's exact-match / token-F1 rules a text task follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextConvention {
    /// The official SQuAD evaluation script (max over gold answers).
    #[default]
    Squad,
    /// HotpotQA's `hotpot_evaluate_v1.py`: a yes / no / noanswer prediction or gold scores F1
    /// 0 unless both are the same.
    Hotpotqa,
    /// LongBench's `qa_f1_score` (max over gold answers; empty against empty is 0).
    Longbench,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    pub kind: AnswerKind,
    /// Class names in the dataset's index order (label tasks).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Option letters in order (choice tasks).
    #[serde(default)]
    pub options: Vec<String>,
    /// What the model should answer when a span task has no answer; for a text task, the
    /// dataset's abstention answer (MS MARCO `No Answer Present.`), also a prompt variable.
    #[serde(default)]
    pub no_answer: Option<String>,
    /// Raw columns holding the option texts, in option order (choice tasks).
    #[serde(default)]
    pub option_columns: Vec<String>,
    /// Exact-match / F1 rules of a text task.
    #[serde(default)]
    pub convention: TextConvention,
    /// Retrieval tasks: how many of the model's ranked ids count (`@k`); all when unset.
    #[serde(default)]
    pub k: Option<usize>,
    /// List tasks: how the gold column becomes items.
    #[serde(default)]
    pub items: ListItems,
}

/// How a list task's gold column (a list of strings, or one string) becomes its items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListItems {
    /// Each string of the list (a single string is split at `,`, `;` and newlines), trimmed.
    #[default]
    Text,
    /// Numbers, as ETHIC scores them: every number of a single string in order (Organizing),
    /// or the first number of each string of a list (Attributing: `Segment 12` → `12`).
    Numbers,
}

/// How a text / retrieval / summary / list task's `context` column is rendered into the
/// prompt's `context` input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextLayout {
    /// A text column, as is.
    #[default]
    Plain,
    /// HotpotQA's `{title: [..], sentences: [[..]]}`: one "title\nsentences joined" block per
    /// paragraph, blank lines between.
    TitledParagraphs,
    /// MS MARCO's `{is_selected: [..], passage_text: [..], url: [..]}`: passages numbered
    /// `[1] …` to `[n] …` (retrieval gold: the numbers of the selected ones).
    Passages,
    /// FinanceBench's `evidence` list: each distinct `evidence_text_full_page`, headed
    /// `[doc_name, page N]`.
    EvidencePages,
}

/// What an eval-only dataset is to the `bwb experiments` runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The benchmark it belongs to (`hotpotqa`, `longbench`, `ethic`, …).
    pub dataset: String,
    pub task: ExperimentTask,
    /// The benchmark's own name for this part (`narrativeqa`, `Recalling`, …).
    #[serde(default)]
    pub subtask: Option<String>,
    /// Typical prompt length in tokens, for planning context sizes and cost.
    pub typical_input_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentTask {
    RagQa,
    Retrieval,
    Summarization,
}

impl ExperimentTask {
    /// The name experiments files use (`rag_qa`, `retrieval`, `summarization`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RagQa => "rag_qa",
            Self::Retrieval => "retrieval",
            Self::Summarization => "summarization",
        }
    }
}

/// Which raw split feeds each of our splits. `val` / `test` left out: held out of `train`,
/// stratified and seeded. For an eval-only dataset, `test` names the raw split experiments
/// evaluate (every raw split is prepared whole).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMap {
    /// Required for tasks (configs/tasks/: fine-tuned); eval-only datasets have none.
    #[serde(default)]
    pub train: Option<String>,
    #[serde(default)]
    pub val: Option<String>,
    #[serde(default)]
    pub test: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptNames {
    pub system: String,
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub id: String,
    pub name: String,
    pub source: Source,
    /// Our column name → the dataset's, where they differ (e.g. FPB `text: sentence`).
    /// Names per answer kind — label: text, label; spans: id, title, context, question,
    /// answers; choice: id, question, answer; code: task_id, text, code, test_list,
    /// test_setup_code, challenge_test_list; text, list, retrieval, summary: id, answers and
    /// the names in `inputs` (retrieval: also is_selected, inside the `context` passages).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Text, list, retrieval and summary kinds: our names of the columns that become prompt
    /// inputs (`Example.inputs`, the template variables); default `[question, context]`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// How the `context` column is rendered (text, list, retrieval and summary kinds).
    #[serde(default)]
    pub context_layout: ContextLayout,
    /// Eval-only datasets (configs/datasets/): what the experiments runner needs to know.
    #[serde(default)]
    pub experiment: Option<Experiment>,
    /// The headline metric the task is reported and training epochs are selected by; one of
    /// the metrics its answer kind computes (src/score/).
    pub metric_id: crate::score::MetricId,
    pub answer: AnswerSpec,
    /// Required for tasks; a local `source.path` defaults to `train: data` (tasks) or
    /// `test: data` (datasets).
    #[serde(default)]
    pub splits: SplitMap,
    /// Validation examples (held out of train, or sampled from the raw val split); tasks only.
    #[serde(default)]
    pub val_size: usize,
    /// Test examples evaluated per run (datasets: the default number of examples sampled).
    pub test_sample_size: usize,
    /// Upper bound on training examples for `lora-full` (`lora-500` takes the first 500);
    /// tasks only.
    #[serde(default)]
    pub training_cap: usize,
    /// Sizes for `--smoke-test` runs on the small fixture datasets.
    pub smoke: SmokeSizes,
    /// Down-sample every split to equal counts per stratum (CUAD: present/absent 50/50).
    #[serde(default)]
    pub balance_strata: bool,
    pub max_seq_length: usize,
    /// Maximum tokens a model may generate for one answer.
    pub max_new_tokens: usize,
    pub prompts: PromptNames,
    /// Per-task training overrides applied on top of configs/training/<model>.yaml.
    #[serde(default)]
    pub training: TrainingOverrides,
}

/// Split sizes used by smoke runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeSizes {
    #[serde(default)]
    pub val_size: usize,
    pub test_sample_size: usize,
    #[serde(default)]
    pub training_cap: usize,
    /// Completion cap for smoke runs (the random smoke model never stops by itself).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
}

/// Split sizes in force for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub val: usize,
    pub test: usize,
    pub training_cap: usize,
}

// ---------------------------------------------------------------------------------------
// Models

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Runs in bwb's Candle engine.
    Local,
    /// A frontier model behind a provider's HTTP API.
    Api,
}

impl ModelKind {
    /// The serialised name: `local` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Anthropic,
    Gemini,
}

/// A model architecture: one of [`crate::model::ARCHS`], named in configs by its
/// [`ArchSpec::name`](crate::model::ArchSpec) (`qwen3`, `gemma3`, `phi3`, `llama`).
#[derive(Clone, Copy)]
pub struct Arch(&'static crate::model::ArchSpec);

#[allow(non_upper_case_globals)]
impl Arch {
    /// The architectures code refers to by name (random smoke models, GGUF files, tests).
    pub const Qwen3: Arch = Arch(&crate::model::qwen3::ARCH);
    pub const Gemma3: Arch = Arch(&crate::model::gemma3::ARCH);
    pub const Phi3: Arch = Arch(&crate::model::phi3::ARCH);
    pub const Llama: Arch = Arch(&crate::model::llama::ARCH);

    pub fn spec(self) -> &'static crate::model::ArchSpec {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The registered architecture called `name`.
    pub fn by_name(name: &str) -> Option<Arch> {
        crate::model::ARCHS
            .iter()
            .find(|a| a.name == name)
            .map(|a| Arch(a))
    }

    /// Every registered name, comma-separated (for errors).
    pub fn names() -> String {
        let v: Vec<&str> = crate::model::ARCHS.iter().map(|a| a.name).collect();
        v.join(", ")
    }
}

impl PartialEq for Arch {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Arch {}

impl std::fmt::Debug for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Arch::by_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown architecture `{name}`, expected one of {}",
                Arch::names()
            ))
        })
    }
}

/// Shape of the deterministic random-weight model used by smoke runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomInit {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub id: String,
    pub kind: ModelKind,
    /// Local: architecture of the checkpoint.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Local: hub repo real users download weights from.
    #[serde(default)]
    pub hf_repo: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    /// Local: a GGUF file inside `hf_repo` (or a path) instead of safetensors.
    #[serde(default)]
    pub gguf: Option<String>,
    /// Local: name of configs/training/<name>.yaml (defaults to the model id).
    #[serde(default)]
    pub training: Option<String>,
    /// Local: keyword arguments passed to the chat template (Qwen3: enable_thinking: false).
    #[serde(default)]
    pub chat_template_kwargs: BTreeMap<String, serde_json::Value>,
    /// Local: built in-process with random weights instead of loaded (the `smoke` model).
    #[serde(default)]
    pub random_init: Option<RandomInit>,
    /// Local: the checkpoint's HF `config.json` fields (the text model's for Gemma 3) as
    /// published, so `bwb bench … --random-weights` builds the real shape without downloading.
    #[serde(default)]
    pub shape: Option<serde_json::Map<String, serde_json::Value>>,
    /// API: which provider's wire format.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// API: the provider's model name.
    #[serde(default)]
    pub api_model: Option<String>,
    /// API: base URL override (any compatible server can stand in).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API (openai): send `temperature: 0`, so a local OpenAI-compatible server (`bwb serve`,
    /// vLLM) decodes greedily as local eval does; GPT-5-family models refuse it.
    #[serde(default)]
    pub greedy: bool,
}

impl ModelConfig {
    /// Whether this model's completions are sampled rather than greedy (an API whose wire
    /// format leaves sampling on); local models decode greedily.
    pub fn samples(&self) -> bool {
        match (self.kind, self.provider) {
            (ModelKind::Api, Some(p)) => !self.greedy && crate::backend::api::wire(p).samples(),
            _ => false,
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let missing = |field: &str, why: &str| {
            Err(Error::Config(format!(
                "{}: field `{field}` is required for {why}",
                path.display()
            )))
        };
        match self.kind {
            ModelKind::Local => {
                if self.arch.is_none() {
                    return missing("arch", "local models");
                }
                if self.hf_repo.is_none() && self.random_init.is_none() {
                    return missing("hf_repo", "local models without random_init");
                }
                if self.provider.is_some() || self.api_model.is_some() {
                    return Err(Error::Config(format!(
                        "{}: `provider`/`api_model` only apply to `kind: api` models",
                        path.display()
                    )));
                }
            }
            ModelKind::Api => {
                if self.shape.is_some() {
                    return Err(Error::Config(format!(
                        "{}: `shape` only applies to `kind: local` models",
                        path.display()
                    )));
                }
                if self.provider.is_none() {
                    return missing("provider", "API models (openai, anthropic or gemini)");
                }
                if self.api_model.is_none() {
                    return missing("api_model", "API models");
                }
            }
        }
        Ok(())
    }

    /// The training config name for a local model.
    pub fn training_name(&self) -> &str {
        self.training.as_deref().unwrap_or(&self.id)
    }
}

// ---------------------------------------------------------------------------------------
// Training

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    pub lora: LoraConfig,
    pub lr: f64,
    pub weight_decay: f64,
    /// Fraction of optimizer steps spent warming up linearly from 0.
    pub warmup_ratio: f64,
    pub lr_schedule: LrSchedule,
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation: usize,
    pub max_grad_norm: f64,
    pub max_seq_length: usize,
    /// Stop after this many epochs without improvement (None: never).
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
}

/// Task-level overrides; every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingOverrides {
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub weight_decay: Option<f64>,
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub gradient_accumulation: Option<usize>,
    #[serde(default)]
    pub max_seq_length: Option<usize>,
    #[serde(default)]
    pub lora_r: Option<usize>,
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    #[serde(default)]
    pub lora_dropout: Option<f64>,
}

impl TrainingConfig {
    /// The model's training config with a task's overrides applied.
    pub fn with_overrides(&self, o: &TrainingOverrides) -> TrainingConfig {
        let mut t = self.clone();
        if let Some(v) = o.lr {
            t.lr = v;
        }
        if let Some(v) = o.weight_decay {
            t.weight_decay = v;
        }
        if let Some(v) = o.warmup_ratio {
            t.warmup_ratio = v;
        }
        if let Some(v) = o.epochs {
            t.epochs = v;
        }
        if let Some(v) = o.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = o.gradient_accumulation {
            t.gradient_accumulation = v;
        }
        if let Some(v) = o.max_seq_length {
            t.max_seq_length = v;
        }
        if let Some(v) = o.lora_r {
            t.lora.r = v;
        }
        if let Some(v) = o.lora_alpha {
            t.lora.alpha = v;
        }
        if let Some(v) = o.lora_dropout {
            t.lora.dropout = v;
        }
        t
    }

    fn validate(&self, path: &Path) -> Result<()> {
        match self.out_of_bounds() {
            None => Ok(()),
            Some((field, value, want)) => Err(Error::Config(format!(
                "{}: field `{field}` = {value} must be {want}",
                path.display()
            ))),
        }
    }

    /// The first field outside its bounds: (field, value, what it must be).
    fn out_of_bounds(&self) -> Option<(&'static str, String, &'static str)> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let non_neg = |v: f64| v.is_finite() && v >= 0.0;
        let l = &self.lora;
        let floats = [
            ("lora.alpha", l.alpha, pos(l.alpha), "a positive number"),
            (
                "lora.dropout",
                l.dropout,
                (0.0..1.0).contains(&l.dropout),
                "in [0, 1)",
            ),
            ("lr", self.lr, pos(self.lr), "a positive number"),
            (
                "weight_decay",
                self.weight_decay,
                non_neg(self.weight_decay),
                "a number ≥ 0",
            ),
            (
                "warmup_ratio",
                self.warmup_ratio,
                (0.0..=1.0).contains(&self.warmup_ratio),
                "in [0, 1]",
            ),
            (
                "max_grad_norm",
                self.max_grad_norm,
                non_neg(self.max_grad_norm),
                "a number ≥ 0 (0: no clipping)",
            ),
        ];
        if let Some((f, v, _, want)) = floats.into_iter().find(|(_, _, ok, _)| !ok) {
            return Some((f, v.to_string(), want));
        }
        if l.target_modules.is_empty() {
            return Some(("lora.target_modules", "[]".into(), "a non-empty list"));
        }
        let counts = [
            ("lora.r", Some(l.r)),
            ("epochs", Some(self.epochs)),
            ("batch_size", Some(self.batch_size)),
            ("gradient_accumulation", Some(self.gradient_accumulation)),
            ("max_seq_length", Some(self.max_seq_length)),
            ("early_stopping_patience", self.early_stopping_patience),
        ];
        counts
            .into_iter()
            .find(|(_, v)| *v == Some(0))
            .map(|(f, _)| (f, "0".to_string(), "at least 1"))
    }
}

// ---------------------------------------------------------------------------------------
// Pricing and run defaults

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContextTier {
    /// Prompts above this many input tokens are billed at this tier.
    pub above_input_tokens: u64,
    pub input_per_mtok: f64,
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPrice {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    #[serde(default)]
    pub long_context: Option<LongContextTier>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuPrice {
    pub hourly_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    pub currency: String,
    /// When the prices were copied from the providers' pages.
    pub as_of: String,
    /// API model id → price.
    pub api: BTreeMap<String, ApiPrice>,
    /// GPU name → rental price.
    pub gpu: BTreeMap<String, GpuPrice>,
    /// GPU used for local TCO.
    pub default_gpu: String,
    /// Monthly query volumes for TCO curves.
    pub monthly_queries: Vec<u64>,
    /// How local serving is billed in TCO.
    #[serde(default)]
    pub local_billing: LocalBilling,
}

/// How a local model's serving GPU is paid for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalBilling {
    /// Whole GPUs rented around the clock (730 h a month each), as many as the volume needs
    /// and at least one: what a latency-sensitive service pays.
    #[default]
    AlwaysOn,
    /// Only the GPU-hours the volume needs at the measured throughput (batch jobs, or a
    /// serverless GPU platform billing by the second).
    PerHour,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    /// Seed for data preparation, shuffling and training.
    pub seed: u64,
    /// Test resamples per evaluation; the first `n_eval_seeds` of `eval_seeds` are used.
    pub n_eval_seeds: usize,
    pub eval_seeds: Vec<u64>,
    /// What `bwb run` covers when not told otherwise.
    pub models: Vec<String>,
    pub tasks: Vec<String>,
    pub conditions: Vec<String>,
    /// What `bwb --smoke-test run` covers when not told otherwise.
    #[serde(default)]
    pub smoke: SmokeRun,
    /// Experiment tracking (`src/track/`); flags and environment variables override it.
    #[serde(default)]
    pub tracking: TrackingFile,
}

/// `run_defaults.yaml` `tracking:` — each field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingFile {
    /// Log runs to an MLflow tracking server.
    pub mlflow: Option<bool>,
    /// The server, e.g. `http://127.0.0.1:5000`.
    pub mlflow_uri: Option<String>,
    /// The experiment runs go to (created when missing).
    pub mlflow_experiment: Option<String>,
}

/// `run_defaults.yaml` `smoke:` — the defaults of `bwb --smoke-test run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeRun {
    pub models: Vec<String>,
    pub tasks: Vec<String>,
    pub conditions: Vec<String>,
    pub n_eval_seeds: usize,
}

impl Default for SmokeRun {
    fn default() -> Self {
        Self {
            models: vec!["smoke".into()],
            tasks: vec!["fpb".into(), "medmcqa".into(), "mbpp".into()],
            conditions: vec!["zero-shot".into(), "5-shot".into(), "lora-500".into()],
            n_eval_seeds: 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// All configs, loaded and cross-checked once.

#[derive(Debug, Clone)]
pub struct Configs {
    pub dir: PathBuf,
    /// configs/tasks/: the fine-tuned tasks (`--task all`, the training grid).
    pub tasks: BTreeMap<String, TaskConfig>,
    /// configs/datasets/: eval-only datasets for `bwb experiments` (no train split).
    pub datasets: BTreeMap<String, TaskConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub training: BTreeMap<String, TrainingConfig>,
    pub pricing: PricingConfig,
    pub run_defaults: RunDefaults,
}

/// Prices must be finite and non-negative, and `default_gpu` must name a listed GPU.
fn check_pricing(path: &Path, p: &PricingConfig) -> Result<()> {
    let bad = |field: String, v: f64| {
        Err(Error::Config(format!(
            "{}: field `{field}` = {v} must be a finite number ≥ 0 (USD)",
            path.display()
        )))
    };
    for (name, a) in &p.api {
        let mut fields = vec![
            ("input_per_mtok", Some(a.input_per_mtok)),
            ("cached_input_per_mtok", a.cached_input_per_mtok),
            ("output_per_mtok", Some(a.output_per_mtok)),
        ];
        if let Some(t) = &a.long_context {
            fields.push(("long_context.input_per_mtok", Some(t.input_per_mtok)));
            fields.push((
                "long_context.cached_input_per_mtok",
                t.cached_input_per_mtok,
            ));
            fields.push(("long_context.output_per_mtok", Some(t.output_per_mtok)));
        }
        for (f, v) in fields {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return bad(format!("api.{name}.{f}"), v);
            }
        }
    }
    for (name, g) in &p.gpu {
        if !(g.hourly_usd.is_finite() && g.hourly_usd >= 0.0) {
            return bad(format!("gpu.{name}.hourly_usd"), g.hourly_usd);
        }
    }
    if !p.gpu.contains_key(&p.default_gpu) {
        return Err(Error::Config(format!(
            "{}: field `default_gpu` = `{}` is not under `gpu`; valid: {}",
            path.display(),
            p.default_gpu,
            p.gpu.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

/// `<dir>/*.yaml` parsed into a map keyed by file stem; the `id` inside must equal the stem.
fn load_dir<T: DeserializeOwned>(dir: &Path) -> Result<BTreeMap<String, (PathBuf, T)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::BadFile {
        path: dir.to_path_buf(),
        message: format!(
            "cannot list config directory: {e}; run bwb from the project root or pass --root"
        ),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut out = BTreeMap::new();
    for path in paths {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let value: T = load_yaml(&path)?;
        out.insert(stem, (path, value));
    }
    Ok(out)
}

fn check_id(path: &Path, stem: &str, id: &str) -> Result<()> {
    if stem != id {
        return Err(Error::Config(format!(
            "{}: field `id` is `{id}` but the file is named `{stem}.yaml`; make them match",
            path.display()
        )));
    }
    Ok(())
}

impl TaskConfig {
    /// Real sizes, or the `smoke:` ones for smoke runs.
    pub fn sizes(&self, smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                val: self.smoke.val_size,
                test: self.smoke.test_sample_size,
                training_cap: self.smoke.training_cap,
            }
        } else {
            Sizes {
                val: self.val_size,
                test: self.test_sample_size,
                training_cap: self.training_cap,
            }
        }
    }

    /// The dataset's column for one of our column names.
    pub fn column<'a>(&'a self, ours: &'a str) -> &'a str {
        self.columns.get(ours).map(String::as_str).unwrap_or(ours)
    }
}

impl Configs {
    pub fn load(dir: &Path) -> Result<Configs> {
        let mut tasks = BTreeMap::new();
        for (stem, (path, t)) in load_dir::<TaskConfig>(&dir.join("tasks"))? {
            check_id(&path, &stem, &t.id)?;
            let t = normalize_task(&path, t, false)?;
            validate_task(&path, &t, false)?;
            tasks.insert(stem, t);
        }
        let datasets = load_datasets(&dir.join("datasets"), &tasks)?;
        let mut training = BTreeMap::new();
        for (stem, (path, t)) in load_dir::<TrainingConfig>(&dir.join("training"))? {
            t.validate(&path)?;
            training.insert(stem, t);
        }
        // A task's overrides must keep every training file in bounds: fail at load, not
        // mid-training.
        for t in tasks.values() {
            for base in training.values() {
                let path = dir.join("tasks").join(format!("{}.yaml", t.id));
                check_training_overrides(&path, &base.with_overrides(&t.training))?;
            }
        }
        let mut models = BTreeMap::new();
        for (stem, (path, m)) in load_dir::<ModelConfig>(&dir.join("models"))? {
            check_id(&path, &stem, &m.id)?;
            m.validate(&path)?;
            if m.kind == ModelKind::Local && !training.contains_key(m.training_name()) {
                return Err(Error::Config(format!(
                    "{}: training config `{}` not found; add configs/training/{}.yaml or set `training:`",
                    path.display(),
                    m.training_name(),
                    m.training_name()
                )));
            }
            models.insert(stem, m);
        }
        let pricing_path = dir.join("pricing.yaml");
        let pricing: PricingConfig = load_yaml(&pricing_path)?;
        check_pricing(&pricing_path, &pricing)?;
        let defaults_path = dir.join("run_defaults.yaml");
        let run_defaults: RunDefaults = load_yaml(&defaults_path)?;
        if run_defaults.n_eval_seeds == 0
            || run_defaults.n_eval_seeds > run_defaults.eval_seeds.len()
        {
            return Err(Error::Config(format!(
                "{}: field `n_eval_seeds` = {} must be between 1 and the number of `eval_seeds` ({})",
                defaults_path.display(),
                run_defaults.n_eval_seeds,
                run_defaults.eval_seeds.len()
            )));
        }
        let model_ids = models.keys().cloned().collect::<Vec<_>>();
        let task_ids = tasks.keys().cloned().collect::<Vec<_>>();
        if run_defaults.smoke.n_eval_seeds == 0
            || run_defaults.smoke.n_eval_seeds > run_defaults.eval_seeds.len()
        {
            return Err(Error::Config(format!(
                "{}: field `smoke.n_eval_seeds` = {} must be between 1 and the number of `eval_seeds` ({})",
                defaults_path.display(),
                run_defaults.smoke.n_eval_seeds,
                run_defaults.eval_seeds.len()
            )));
        }
        for (field, names, valid) in [
            ("models", &run_defaults.models, &model_ids),
            ("tasks", &run_defaults.tasks, &task_ids),
            ("smoke.models", &run_defaults.smoke.models, &model_ids),
            ("smoke.tasks", &run_defaults.smoke.tasks, &task_ids),
        ] {
            if let Some(bad) = names.iter().find(|n| !valid.contains(n)) {
                return Err(Error::Config(format!(
                    "{}: field `{field}` names `{bad}`, which has no config; valid: {}",
                    defaults_path.display(),
                    valid.join(", ")
                )));
            }
        }
        for (name, m) in &models {
            if m.kind == ModelKind::Api && !pricing.api.contains_key(name) {
                tracing::warn!("configs/pricing.yaml has no price for API model `{name}`: its cost will be reported as unknown");
            }
        }
        Ok(Configs {
            dir: dir.to_path_buf(),
            tasks,
            datasets,
            models,
            training,
            pricing,
            run_defaults,
        })
    }

    /// The task config named `id`, or an error listing the valid ones.
    pub fn task(&self, id: &str) -> Result<&TaskConfig> {
        self.tasks.get(id).ok_or_else(|| Error::Unknown {
            kind: "task",
            value: id.to_string(),
            valid: join_keys(&self.tasks),
        })
    }

    /// The eval-only dataset config named `id`, or an error listing the valid ones.
    pub fn dataset(&self, id: &str) -> Result<&TaskConfig> {
        self.datasets.get(id).ok_or_else(|| Error::Unknown {
            kind: "dataset",
            value: id.to_string(),
            valid: join_keys(&self.datasets),
        })
    }

    /// `bwb download` / `bwb prepare`: like [`Configs::select_tasks`], but an id that is not a
    /// task may name an eval-only dataset (`all` stays the tasks).
    pub fn select_data(&self, sel: &str) -> Result<Vec<&TaskConfig>> {
        if sel == "all" {
            return Ok(self.tasks.values().collect());
        }
        let ids: Vec<&str> = sel
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if ids.is_empty() {
            return self.select_tasks(sel);
        }
        let mut out = Vec::new();
        for id in ids {
            match self.datasets.get(id) {
                Some(d) if !self.tasks.contains_key(id) => out.push(d),
                _ => out.extend(self.select_tasks(id).map_err(|e| match e {
                    Error::Unknown { kind, value, valid } => Error::Unknown {
                        kind,
                        value,
                        valid: format!("{valid}, or a dataset: {}", join_keys(&self.datasets)),
                    },
                    other => other,
                })?),
            }
        }
        Ok(out)
    }

    /// `all` → every task in name order; otherwise exactly the one named.
    pub fn select_tasks(&self, sel: &str) -> Result<Vec<&TaskConfig>> {
        if sel == "all" {
            return Ok(self.tasks.values().collect());
        }
        let mut out = Vec::new();
        for id in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !self.tasks.contains_key(id) && self.datasets.contains_key(id) {
                return Err(Error::Config(format!(
                    "`{id}` is an eval-only dataset (configs/datasets/{id}.yaml, no train split): only `bwb download` and `bwb prepare` take it as --task; train and eval take the tasks: {}",
                    join_keys(&self.tasks)
                )));
            }
            out.push(self.task(id).map_err(|e| match e {
                Error::Unknown { kind, value, valid } => Error::Unknown {
                    kind,
                    value,
                    valid: format!("{valid} (or `all`)"),
                },
                other => other,
            })?);
        }
        if out.is_empty() {
            return Err(Error::Unknown {
                kind: "task",
                value: sel.to_string(),
                valid: format!("{} (or `all`)", join_keys(&self.tasks)),
            });
        }
        Ok(out)
    }

    /// The model config named `id`, or an error listing the valid ones.
    pub fn model(&self, id: &str) -> Result<&ModelConfig> {
        self.models.get(id).ok_or_else(|| Error::Unknown {
            kind: "model",
            value: id.to_string(),
            valid: join_keys(&self.models),
        })
    }

    /// Training hyperparameters for a local model on a task (task overrides applied).
    pub fn training_for(&self, model: &ModelConfig, task: &TaskConfig) -> Result<TrainingConfig> {
        self.training_named(model.training_name(), task)
    }

    /// configs/training/<name>.yaml with `task`'s `training:` overrides applied, checked
    /// after the merge: an override out of bounds is an error naming the task file.
    pub fn training_named(&self, name: &str, task: &TaskConfig) -> Result<TrainingConfig> {
        let base = self.training.get(name).ok_or_else(|| {
            Error::Config(format!(
                "no training config configs/training/{name}.yaml; add one"
            ))
        })?;
        let merged = base.with_overrides(&task.training);
        check_training_overrides(
            &self.dir.join("tasks").join(format!("{}.yaml", task.id)),
            &merged,
        )?;
        Ok(merged)
    }

    /// For a model given as a path with no training file of its own: the training file of
    /// the local model config with the same architecture (one with real weights before the
    /// random `smoke` model, then by id), as (training name, model config id).
    pub fn training_fallback(&self, arch: Arch) -> Option<(&str, &str)> {
        let mut same: Vec<&ModelConfig> = self
            .models
            .values()
            .filter(|m| m.kind == ModelKind::Local && m.arch == Some(arch))
            .collect();
        same.sort_by_key(|m| (m.random_init.is_some(), m.id.clone()));
        same.first().map(|m| (m.training_name(), m.id.as_str()))
    }
}

/// A merged training config out of bounds: the task file's `training:` override did it (the
/// training files themselves were checked when they loaded).
fn check_training_overrides(task_path: &Path, merged: &TrainingConfig) -> Result<()> {
    let Some((field, value, want)) = merged.out_of_bounds() else {
        return Ok(());
    };
    let field = match field {
        "lora.r" => "lora_r".to_string(),
        "lora.alpha" => "lora_alpha".to_string(),
        "lora.dropout" => "lora_dropout".to_string(),
        f => f.to_string(),
    };
    Err(Error::Config(format!(
        "{}: field `training.{field}` = {value} must be {want}; fix the override",
        task_path.display()
    )))
}

fn join_keys<V>(m: &BTreeMap<String, V>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The 1-based line of a top-level `key:` in a YAML file (for errors found after parsing).
fn key_line(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let prefix = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&prefix))
        .map(|i| i + 1)
}

/// configs/datasets/*.yaml (an absent directory is none): eval-only, so no train split; an id
/// may not also be a task's.
fn load_datasets(
    dir: &Path,
    tasks: &BTreeMap<String, TaskConfig>,
) -> Result<BTreeMap<String, TaskConfig>> {
    let mut datasets = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(datasets);
    }
    for (stem, (path, d)) in load_dir::<TaskConfig>(dir)? {
        check_id(&path, &stem, &d.id)?;
        if tasks.contains_key(&stem) {
            return Err(Error::Config(format!(
                "{}: id `{stem}` is also configs/tasks/{stem}.yaml; rename one of them",
                path.display()
            )));
        }
        let d = normalize_task(&path, d, true)?;
        validate_task(&path, &d, true)?;
        datasets.insert(stem, d);
    }
    Ok(datasets)
}

/// Checks the source (hub repo or local file) and fills what a local file implies: its one
/// raw split [`LOCAL_SPLIT`], `splits` defaults, and `source.columns` merged into `columns`.
fn normalize_task(path: &Path, mut t: TaskConfig, eval_only: bool) -> Result<TaskConfig> {
    let err = |msg: String| Err(Error::Config(format!("{}: {msg}", path.display())));
    for (ours, theirs) in std::mem::take(&mut t.source.columns) {
        if let Some(other) = t.columns.get(&ours).filter(|o| **o != theirs) {
            return err(format!(
                "column `{ours}` is renamed twice: `source.columns` says `{theirs}`, `columns` says `{other}`; keep one"
            ));
        }
        t.columns.insert(ours, theirs);
    }
    let Some(file) = t.source.path.clone() else {
        for (field, v) in [
            ("source.repo", &t.source.repo),
            ("source.revision", &t.source.revision),
        ] {
            if v.is_none() {
                return err(format!(
                    "field `{field}` is required (or give `source.path`: a local .csv/.jsonl/.json/.parquet file)"
                ));
            }
        }
        if t.source.format.is_none() {
            return err(
                "field `source.format` is required for a hub source (parquet, json, jsonl or csv)"
                    .into(),
            );
        }
        if let Some((name, _)) = t.source.splits.iter().find(|(_, s)| s.rows.is_none()) {
            return err(format!(
                "field `source.splits.{name}.rows` is required: the real dataset's row count, so a truncated download fails loudly"
            ));
        }
        return Ok(t);
    };
    if t.source.repo.is_some() || t.source.revision.is_some() || !t.source.splits.is_empty() {
        return err(format!(
            "field `source.path` = `{file}` is a local file: leave out `source.repo`, `source.revision` and `source.splits` (its rows are the one raw split `{LOCAL_SPLIT}`)"
        ));
    }
    if t.source.format.is_none() && format_from_extension(&file).is_none() {
        return err(format!(
            "field `source.path` = `{file}`: cannot tell the format from the extension; use .csv, .jsonl, .json or .parquet, or set `source.format`"
        ));
    }
    t.source.splits.insert(
        LOCAL_SPLIT.to_string(),
        RawSplit {
            files: vec![file],
            rows: None,
        },
    );
    if eval_only && t.splits.test.is_none() {
        t.splits.test = Some(LOCAL_SPLIT.to_string());
    }
    if !eval_only && t.splits.train.is_none() {
        t.splits.train = Some(LOCAL_SPLIT.to_string());
    }
    Ok(t)
}

impl TaskConfig {
    /// An eval-only dataset (configs/datasets/): no train split.
    pub fn is_eval_only(&self) -> bool {
        self.splits.train.is_none()
    }

    /// Our names of the columns that become prompt inputs (text, list, retrieval, summary).
    pub fn input_names(&self) -> Vec<String> {
        if self.inputs.is_empty() {
            vec!["question".to_string(), "context".to_string()]
        } else {
            self.inputs.clone()
        }
    }
}

/// `eval_only`: a configs/datasets/ file (no train split, no training sizes).
fn validate_task(path: &Path, t: &TaskConfig, eval_only: bool) -> Result<()> {
    let err = |msg: String| Err(Error::Config(format!("{}: {msg}", path.display())));
    if !eval_only && t.splits.train.is_none() {
        return err("field `splits.train` is required for a task (configs/tasks/ are fine-tuned); an eval-only config without one goes in configs/datasets/".into());
    }
    if eval_only && t.splits.train.is_some() {
        return err("field `splits.train`: configs/datasets/ are eval-only; name the evaluated raw split in `splits.test`, or move the config to configs/tasks/".into());
    }
    if eval_only && t.splits.test.is_none() {
        return err(
            "field `splits.test` is required for a dataset: the raw split experiments evaluate"
                .into(),
        );
    }
    for (field, split) in [
        ("splits.train", t.splits.train.as_ref()),
        ("splits.val", t.splits.val.as_ref()),
        ("splits.test", t.splits.test.as_ref()),
    ] {
        if let Some(s) = split {
            if !t.source.splits.contains_key(s) {
                let valid: Vec<_> = t.source.splits.keys().cloned().collect();
                return err(format!(
                    "field `{field}` names raw split `{s}`, which `source.splits` does not define ({})",
                    valid.join(", ")
                ));
            }
        }
    }
    for (name, split) in &t.source.splits {
        if split.files.is_empty() {
            return err(format!("field `source.splits.{name}.files` is empty"));
        }
    }
    validate_answer(path, t)?;
    validate_metric(path, t)?;
    let mut counts = vec![
        ("test_sample_size", t.test_sample_size),
        ("max_seq_length", t.max_seq_length),
        ("max_new_tokens", t.max_new_tokens),
        ("smoke.test_sample_size", t.smoke.test_sample_size),
        ("smoke.max_new_tokens", t.smoke.max_new_tokens.unwrap_or(1)),
    ];
    if !eval_only {
        counts.extend([
            ("val_size", t.val_size),
            ("training_cap", t.training_cap),
            ("smoke.val_size", t.smoke.val_size),
            ("smoke.training_cap", t.smoke.training_cap),
        ]);
    }
    if let Some((field, _)) = counts.into_iter().find(|(_, v)| *v == 0) {
        return err(format!("field `{field}` must be at least 1"));
    }
    Ok(())
}

fn validate_answer(path: &Path, t: &TaskConfig) -> Result<()> {
    let err = |msg: String| Err(Error::Config(format!("{}: {msg}", path.display())));
    match t.answer.kind {
        AnswerKind::Label if t.answer.labels.len() < 2 => {
            return err("field `answer.labels` needs at least two labels for a label task".into())
        }
        AnswerKind::Choice if t.answer.options.len() < 2 => {
            return err(
                "field `answer.options` needs at least two options for a choice task".into(),
            )
        }
        AnswerKind::Choice if t.answer.option_columns.len() != t.answer.options.len() => {
            return err(format!(
                "field `answer.option_columns` has {} columns but `answer.options` has {} letters",
                t.answer.option_columns.len(),
                t.answer.options.len()
            ))
        }
        AnswerKind::Spans if t.answer.no_answer.is_none() => {
            return err("field `answer.no_answer` is required for a spans task".into())
        }
        AnswerKind::Retrieval if t.context_layout != ContextLayout::Passages => {
            return err("field `context_layout` must be `passages` for a retrieval task (the prompt numbers the passages; gold is the numbers of the selected ones)".into())
        }
        AnswerKind::Retrieval if t.answer.k == Some(0) => {
            return err("field `answer.k` must be at least 1 (or left out: all ranked ids count)".into())
        }
        _ => {}
    }
    let new_kind = matches!(
        t.answer.kind,
        AnswerKind::Text | AnswerKind::List | AnswerKind::Retrieval | AnswerKind::Summary
    );
    if !new_kind && (!t.inputs.is_empty() || t.context_layout != ContextLayout::Plain) {
        return err("fields `inputs` and `context_layout` only apply to text, list, retrieval and summary answers".into());
    }
    if let Some(dup) = t
        .input_names()
        .iter()
        .enumerate()
        .find(|(i, n)| t.input_names()[..*i].contains(n))
    {
        return err(format!("field `inputs` names `{}` twice", dup.1));
    }
    Ok(())
}

fn validate_metric(path: &Path, t: &TaskConfig) -> Result<()> {
    let computed = crate::score::scorer(t).metric_ids();
    if !computed.contains(&t.metric_id) {
        let names: Vec<&str> = computed.iter().map(|m| m.as_str()).collect();
        let line = key_line(path, "metric_id")
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        return Err(Error::Config(format!(
            "{}{line}: field `metric_id`: `{}` is not computed for {} answers; valid: {}",
            path.display(),
            t.metric_id,
            serde_json::to_value(t.answer.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            names.join(", ")
        )));
    }
    Ok(())
}
