//! The experiments file (`configs/experiments.yaml`, or `--config F`): a list of experiments,
//! each one model × dataset × task × mode × metrics, plus file-level defaults.
//!
//! ```yaml
//! defaults: {concurrency: 8, parallel: false}
//! experiments:
//!   - id: hotpotqa-gpt4o-baseline
//!     tags: [hotpotqa, baseline]
//!     model: {name: openai:gpt-4o}            # or `model: openai:gpt-4o`; local: a config id,
//!     mode: baseline                          # an HF dir or a .gguf, with optional `adapter:`
//!     pricing: {input_per_1m_tokens: 2.5, output_per_1m_tokens: 10}
//!     dataset: {name: hotpotqa, split: validation, num_examples: 50, seed: 42}
//!     task: {name: rag_qa}
//!     metrics: [exact_match, f1]
//! ```
//!
//! A file that is only the list (no `experiments:` key) is read the same way. Every field is
//! checked; errors name `file:line` and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{Error, Result};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentsFile {
    #[serde(default)]
    pub defaults: Defaults,
    pub experiments: Vec<ExperimentSpec>,
}

/// File-level defaults; each experiment may override `concurrency`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// API requests in flight at once per experiment.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Run the selected experiments concurrently (`--parallel-experiments` /
    /// `--serial-experiments` override it).
    #[serde(default)]
    pub parallel: Option<bool>,
    /// Stop sending API requests once a run has spent this many USD.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// MLflow tracking, as run_defaults.yaml's `tracking:` (`mlflow`, `mlflow_uri`,
    /// `mlflow_experiment`); the command line and environment still win.
    #[serde(default)]
    pub tracking: Option<crate::config::TrackingFile>,
    /// The encoder BERTScore uses (default: bert_score's `distilbert-base-uncased`, layer 5).
    #[serde(default)]
    pub bertscore: Option<BertscoreSpec>,
}

/// `bertscore: {model: ID-or-DIR, num_layers: K, idf: false, rescale_with_baseline: false}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BertscoreSpec {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub num_layers: Option<usize>,
    #[serde(default)]
    pub idf: bool,
    #[serde(default)]
    pub rescale_with_baseline: bool,
    /// bert_score's baseline file for a model it has no embedded baseline for.
    #[serde(default)]
    pub baseline_path: Option<PathBuf>,
}

/// One experiment as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub id: Spanned<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub model: Spanned<ModelField>,
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub pricing: Option<PricingOverride>,
    pub dataset: DatasetSpec,
    pub task: Spanned<TaskField>,
    #[serde(default)]
    pub metrics: Vec<Spanned<String>>,
    /// Per-experiment API concurrency.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Completion cap (default: the dataset's `max_new_tokens`).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// `mode: compressed`: how the context is compressed.
    #[serde(default)]
    pub compression: Option<Spanned<CompressionSpec>>,
    /// The replaced tool's form: `mode: scaledown` with `scaledown: {rate, compression_model}`.
    #[serde(default)]
    pub scaledown: Option<Spanned<ScaledownSpec>>,
}

/// `compression: {method: scaledown | scaledown-summarize | selective | lingua, rate: auto |
/// 0<r<1, model: …, force_tokens: […], keep_numbers, unit, price_per_1m_tokens: …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSpec {
    pub method: String,
    #[serde(default)]
    pub rate: Option<serde_json::Value>,
    /// ScaleDown: the model it compresses for; local methods: the scoring model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub force_tokens: Vec<String>,
    /// Local methods: keep every token holding a digit.
    #[serde(default)]
    pub keep_numbers: Option<bool>,
    /// `selective`: the lexical unit scored and dropped (token, phrase, sentence).
    #[serde(default)]
    pub unit: Option<String>,
    /// The compressor's price in USD per million original tokens (unset: unpriced).
    #[serde(default)]
    pub price_per_1m_tokens: Option<f64>,
}

/// `scaledown: {rate: auto | 0.5, compression_model: gemini-2.5-flash}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaledownSpec {
    #[serde(default)]
    pub rate: Option<serde_json::Value>,
    #[serde(default)]
    pub compression_model: Option<String>,
}

/// `model: NAME` or `model: {name: NAME, adapter: DIR}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModelField {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        adapter: Option<String>,
    },
}

impl ModelField {
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Full { name: n, .. } => n,
        }
    }

    pub fn adapter(&self) -> Option<&str> {
        match self {
            Self::Name(_) => None,
            Self::Full { adapter, .. } => adapter.as_deref(),
        }
    }
}

/// `task: rag_qa` or `task: {name: rag_qa}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TaskField {
    Name(String),
    Full { name: String },
}

impl TaskField {
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Full { name: n } => n,
        }
    }
}

/// Per-experiment prices in USD per million tokens (override configs/pricing.yaml).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingOverride {
    pub input_per_1m_tokens: f64,
    pub output_per_1m_tokens: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: Spanned<String>,
    /// The raw split (default: the dataset's only or first split).
    #[serde(default)]
    pub split: Option<Spanned<String>>,
    /// A subtask (LongBench `narrativeqa`, ETHIC `Recalling`); absent or null: all of them.
    #[serde(default)]
    pub task: Option<Spanned<String>>,
    /// Examples to run, sampled with `seed`; absent or null: all.
    #[serde(default)]
    pub num_examples: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The file parsed, with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub file: ExperimentsFile,
}

/// `file:line: field `name`: message` for a value read at `line` (0: unknown).
pub fn at(path: &Path, line: usize, field: &str, msg: impl std::fmt::Display) -> Error {
    let line = if line > 0 {
        format!(":{line}")
    } else {
        String::new()
    };
    Error::Config(format!("{}{line}: field `{field}`: {msg}", path.display()))
}

/// The line a spanned value was read from.
pub fn line<T>(s: &Spanned<T>) -> usize {
    s.referenced.line() as usize
}

/// Read and parse an experiments file.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!(
            "cannot read the experiments file: {e}; write one (see README, \"Experiments\") or pass --config"
        ),
    })?;
    parse(path, &text)
}

/// Parse experiments-file text read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Loaded> {
    let is_list = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && l != &"---")
        .is_some_and(|l| l.starts_with('-'));
    let file = if is_list {
        ExperimentsFile {
            defaults: Defaults::default(),
            experiments: crate::config::parse_yaml(path, text)?,
        }
    } else {
        crate::config::parse_yaml(path, text)?
    };
    if file.experiments.is_empty() {
        return Err(Error::Config(format!(
            "{}: no experiments; add at least one under `experiments:`",
            path.display()
        )));
    }
    let mut seen: Vec<&Spanned<String>> = Vec::new();
    for e in &file.experiments {
        let id = e.id.value.trim();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(at(
                path,
                line(&e.id),
                "id",
                format!(
                    "`{id}` is not usable as a folder name; use letters, digits, `-`, `_` or `.`"
                ),
            ));
        }
        if let Some(first) = seen.iter().find(|s| s.value == e.id.value) {
            return Err(at(
                path,
                line(&e.id),
                "id",
                format!(
                    "`{id}` is used twice (first at line {}); ids must be unique",
                    line(first)
                ),
            ));
        }
        seen.push(&e.id);
    }
    if file.defaults.concurrency == Some(0) {
        return Err(Error::Config(format!(
            "{}: field `defaults.concurrency` must be at least 1",
            path.display()
        )));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Loaded> {
        parse(Path::new("x.yaml"), text)
    }

    #[test]
    fn the_replaced_tools_readme_example_parses() {
        let l = p("experiments:\n  - id: a\n    tags: [t]\n    model: {name: openai:gpt-4o}\n    mode: baseline\n    dataset: {name: hotpotqa, split: validation, num_examples: 50, seed: 42}\n    task: {name: rag_qa}\n    metrics: [exact_match, f1]\n").unwrap();
        let e = &l.file.experiments[0];
        assert_eq!(e.model.value.name(), "openai:gpt-4o");
        assert_eq!(e.dataset.num_examples, Some(50));
        assert_eq!(e.task.value.name(), "rag_qa");
        assert_eq!(line(&e.metrics[1]), 8);
        assert_eq!(line(&e.dataset.name), 6);
    }

    #[test]
    fn a_bare_list_and_short_forms_parse() {
        let l =
            p("# c\n- id: a\n  model: smoke\n  dataset: {name: qmsum}\n  task: summarization\n")
                .unwrap();
        let e = &l.file.experiments[0];
        assert_eq!(e.model.value.name(), "smoke");
        assert_eq!(e.task.value.name(), "summarization");
        assert!(e.metrics.is_empty());
    }

    #[test]
    fn duplicate_ids_unknown_fields_and_empty_files_are_errors() {
        let dup = "experiments:\n  - {id: a, model: m, dataset: {name: d}, task: t}\n  - {id: a, model: m, dataset: {name: d}, task: t}\n";
        let e = p(dup).unwrap_err().to_string();
        assert!(e.contains("x.yaml:3") && e.contains("used twice"), "{e}");
        let typo =
            "experiments:\n  - {id: a, model: m, dataset: {name: d, num_exmples: 3}, task: t}\n";
        let e = p(typo).unwrap_err().to_string();
        assert!(e.contains("x.yaml:2") && e.contains("num_exmples"), "{e}");
        let e = p("experiments: []\n").unwrap_err().to_string();
        assert!(e.contains("no experiments"), "{e}");
        let e = p("experiments:\n  - {id: ../x, model: m, dataset: {name: d}, task: t}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("folder name"), "{e}");
    }
}
