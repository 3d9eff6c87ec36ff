//! Experiments file → a checked plan: every experiment resolved to its model, its dataset
//! configs (one per subtask), split, sample, metrics and an estimate of tokens and cost.
//! Nothing here sends a request or loads a model, so `--dry-run` is this module alone.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::backend::api::wire;
use crate::config::{AnswerKind, ApiPrice, Configs, ModelKind, Provider, TaskConfig};
use crate::error::{Error, Result};
use crate::score::MetricId;
use crate::settings::Env;

use super::file::{at, line, ExperimentSpec, Loaded};

/// The three task names of the experiments file.
pub const TASKS: [&str; 3] = ["rag_qa", "retrieval", "summarization"];

/// Modes: `baseline` sends the full context; `compressed` compresses it first (`scaledown`
/// is the replaced tool's name for compressed mode through ScaleDown).
pub const MODES: [&str; 3] = ["baseline", "compressed", "scaledown"];

/// One dataset config as the experiments file sees it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub config: &'a TaskConfig,
    /// The name experiments use (`hotpotqa`, `longbench`, …).
    pub dataset: String,
    /// `rag_qa`, `retrieval` or `summarization`.
    pub task: String,
    /// LongBench / ETHIC subtask.
    pub subtask: Option<String>,
    /// Input tokens of a typical example (the dry-run estimate before any download).
    pub typical_input_tokens: Option<usize>,
}

/// Every dataset config experiments can name.
#[derive(Debug, Clone, Default)]
pub struct Catalog<'a> {
    pub entries: Vec<Entry<'a>>,
}

impl<'a> Catalog<'a> {
    /// The configs of configs/datasets/.
    pub fn from_configs(configs: &'a Configs) -> Catalog<'a> {
        let entries = configs
            .datasets
            .values()
            .filter_map(|c| {
                let m = c.experiment.as_ref()?;
                Some(Entry {
                    config: c,
                    dataset: m.dataset.clone(),
                    task: m.task.as_str().to_string(),
                    subtask: m.subtask.clone(),
                    typical_input_tokens: Some(m.typical_input_tokens),
                })
            })
            .collect();
        Catalog { entries }
    }

    fn datasets(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.iter().map(|e| e.dataset.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Where a model's completions come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRef {
    /// `provider:NAME`, or an API model of configs/models/.
    Api {
        provider: Provider,
        api_model: String,
        /// The configs/models/ id, where the model is one.
        config_id: Option<String>,
    },
    /// A local config id, HF directory or .gguf, with an optional adapter directory.
    Local {
        spec: String,
        adapter: Option<String>,
    },
}

impl ModelRef {
    /// The model's name in records and file names.
    pub fn name(&self) -> String {
        match self {
            Self::Api {
                provider,
                api_model,
                ..
            } => format!("{}:{api_model}", provider_name(*provider)),
            Self::Local { spec, adapter } => {
                let base = crate::paths::model_name(spec);
                match adapter {
                    Some(a) => format!("{base}+{}", crate::paths::model_name(a)),
                    None => base,
                }
            }
        }
    }
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Openai => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gemini",
    }
}

/// One experiment, resolved.
#[derive(Debug, Clone)]
pub struct Planned<'a> {
    pub id: String,
    pub tags: Vec<String>,
    pub model: ModelRef,
    pub mode: String,
    /// One per subtask (one for single-task datasets), in file order of the configs.
    pub entries: Vec<Entry<'a>>,
    pub split: String,
    pub num_examples: Option<usize>,
    pub seed: u64,
    pub metrics: Vec<MetricId>,
    pub price: Option<ApiPrice>,
    pub concurrency: Option<usize>,
    pub max_tokens: Option<usize>,
    /// The BERTScore encoder (file defaults).
    pub bertscore: Option<super::file::BertscoreSpec>,
    /// `compressed` mode: the compressor.
    pub compression: Option<crate::compress::Spec>,
}

/// The dry-run estimate of one experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub id: String,
    pub model: String,
    pub datasets: Vec<String>,
    pub examples: usize,
    /// From prepared data where present, else the dataset's typical size.
    pub input_tokens: u64,
    /// `max_tokens` per example: an upper bound.
    pub max_output_tokens: u64,
    /// None: the model has no price (local, or unpriced API model).
    pub cost_usd: Option<f64>,
}

/// Resolve and check every experiment of `loaded` selected by `ids` / `tags` (empty: all):
/// one result per experiment. Selecting nothing is the error.
pub fn plan<'a>(
    loaded: &Loaded,
    catalog: &Catalog<'a>,
    configs: &Configs,
    env: &Env,
    ids: &[String],
    tags: &[String],
) -> Result<Vec<Result<Planned<'a>>>> {
    for id in ids {
        if !loaded.file.experiments.iter().any(|e| &e.id.value == id) {
            let all: Vec<&str> = loaded
                .file
                .experiments
                .iter()
                .map(|e| e.id.value.as_str())
                .collect();
            return Err(Error::Config(format!(
                "--experiment-id {id}: no such experiment in {}; ids: {}",
                loaded.path.display(),
                all.join(", ")
            )));
        }
    }
    let selected: Vec<&ExperimentSpec> = loaded
        .file
        .experiments
        .iter()
        .filter(|e| ids.is_empty() || ids.contains(&e.id.value))
        .filter(|e| tags.is_empty() || e.tags.iter().any(|t| tags.contains(t)))
        .collect();
    if selected.is_empty() {
        return Err(Error::Config(format!(
            "no experiment in {} has tag {}; pick another --tag or --experiment-id",
            loaded.path.display(),
            tags.join(" or ")
        )));
    }
    // Every experiment is checked on its own, so one bad line does not hide the others.
    Ok(selected
        .into_iter()
        .map(|e| {
            plan_one(
                &loaded.path,
                &loaded.file.defaults,
                e,
                catalog,
                configs,
                env,
            )
        })
        .collect::<Vec<_>>())
}

fn plan_one<'a>(
    path: &Path,
    defaults: &super::file::Defaults,
    e: &ExperimentSpec,
    catalog: &Catalog<'a>,
    configs: &Configs,
    env: &Env,
) -> Result<Planned<'a>> {
    let mode = match &e.mode {
        None => "baseline".to_string(),
        Some(m) if MODES.contains(&m.value.as_str()) => m.value.clone(),
        Some(m) => {
            return Err(at(
                path,
                line(m),
                "mode",
                format!("`{}` is not a mode; valid: {}", m.value, MODES.join(", ")),
            ))
        }
    };
    let compression = compression_of(path, e, &mode, configs, env)?;
    let mode = if compression.is_some() {
        "compressed".to_string()
    } else {
        mode
    };
    let entries = entries_of(path, e, catalog)?;
    let split = split_of(path, e, &entries)?;
    let model = model_of(path, e, configs, env)?;
    let metrics = metrics_of(path, e, &entries)?;
    let price = price_of(e, &model, configs);
    let concurrency = e.concurrency.or(defaults.concurrency);
    if concurrency == Some(0) || e.max_tokens == Some(0) || e.dataset.num_examples == Some(0) {
        return Err(at(
            path,
            line(&e.id),
            "concurrency / max_tokens / dataset.num_examples",
            "must be at least 1",
        ));
    }
    Ok(Planned {
        id: e.id.value.clone(),
        tags: e.tags.clone(),
        model,
        mode,
        entries,
        split,
        num_examples: e.dataset.num_examples,
        seed: e.dataset.seed.unwrap_or(42),
        metrics,
        price,
        concurrency,
        max_tokens: e.max_tokens,
        bertscore: defaults.bertscore.clone(),
        compression,
    })
}

/// The compressor of a `compressed` (or `scaledown`) experiment; an error for a block that
/// does not fit the mode, an unknown method, a bad rate, a missing key or model file.
fn compression_of(
    path: &Path,
    e: &ExperimentSpec,
    mode: &str,
    configs: &Configs,
    env: &Env,
) -> Result<Option<crate::compress::Spec>> {
    let mode_line = e.mode.as_ref().map_or(line(&e.id), line);
    let plan = match (mode, &e.compression, &e.scaledown) {
        ("baseline", None, None) => return Ok(None),
        ("baseline", Some(c), _) => {
            return Err(at(
                path,
                line(c),
                "compression",
                "only applies to `mode: compressed`; set the mode or drop the block",
            ))
        }
        ("baseline", None, Some(c)) => {
            return Err(at(
                path,
                line(c),
                "scaledown",
                "only applies to `mode: scaledown`; set the mode or drop the block",
            ))
        }
        ("compressed", None, _) => {
            return Err(at(
                path,
                mode_line,
                "mode",
                "`compressed` needs a `compression: {method: scaledown, rate: auto}` block",
            ))
        }
        (_, Some(c), _) => compression_block(path, c, configs, env)?,
        (_, None, s) => {
            // The replaced tool's `mode: scaledown` with an optional `scaledown:` block.
            let l = s.as_ref().map_or(mode_line, line);
            let spec = s.as_ref().map(|s| s.value.clone()).unwrap_or_default();
            scaledown_key(path, l, "mode", env)?;
            let mut plan = crate::compress::Spec::new(
                crate::compress::Method::ScaleDown,
                rate_of(path, &spec.rate, l, "scaledown.rate")?,
            );
            plan.model = spec.compression_model;
            plan
        }
    };
    Ok(Some(plan))
}

/// A `compression:` block.
fn compression_block(
    path: &Path,
    c: &serde_saphyr::Spanned<super::file::CompressionSpec>,
    configs: &Configs,
    env: &Env,
) -> Result<crate::compress::Spec> {
    use crate::compress::{select::Unit, Method, Spec};
    let l = line(c);
    let method =
        Method::parse(&c.value.method).map_err(|m| at(path, l, "compression.method", m))?;
    let mut spec = Spec::new(method, rate_of(path, &c.value.rate, l, "compression.rate")?);
    spec.model = c.value.model.clone();
    spec.price_per_mtok = c.value.price_per_1m_tokens;
    if !method.is_local() {
        if !c.value.force_tokens.is_empty()
            || c.value.unit.is_some()
            || c.value.keep_numbers.is_some()
        {
            return Err(at(
                path,
                l,
                "compression.force_tokens / unit / keep_numbers",
                "apply to the local compressors (selective, lingua) only; ScaleDown takes none",
            ));
        }
        scaledown_key(path, l, "compression", env)?;
        return Ok(spec);
    }
    if let Some(u) = &c.value.unit {
        spec.unit = Unit::parse(u).map_err(|m| at(path, l, "compression.unit", m))?;
    }
    spec.force_tokens = c.value.force_tokens.clone();
    spec.keep_numbers = c.value.keep_numbers.unwrap_or(false);
    if let Some(m) = &spec.model {
        local_model(m, configs).map_err(|m| at(path, l, "compression.model", m))?;
    }
    Ok(spec)
}

/// A local compressor's model, checked without loading it: an existing .gguf file or
/// directory, a hub id (`org/name`), or a local config id.
fn local_model(spec: &str, configs: &Configs) -> std::result::Result<(), String> {
    let p = Path::new(spec);
    let pathish = spec.ends_with(".gguf")
        || spec.starts_with(['.', '/', '~'])
        || spec.matches('/').count() > 1;
    match (p.is_file(), p.is_dir()) {
        (true, _) if spec.ends_with(".gguf") => Ok(()),
        (true, _) => Err(format!("`{spec}` is a file but not a .gguf; name a .gguf, an HF model directory, a hub id or a config id")),
        (_, true) => Ok(()),
        _ if pathish => Err(format!("`{spec}`: no such file or directory")),
        _ if spec.contains('/') => Ok(()),
        _ => match configs.models.get(spec) {
            Some(m) if m.kind == crate::config::ModelKind::Local => Ok(()),
            Some(_) => Err(format!("`{spec}` is an API model; a local compressor needs a local model")),
            None => Err(format!("`{spec}` is not a config id in configs/models/, a hub id (org/name), a directory or a .gguf file")),
        },
    }
}

fn rate_of(
    path: &Path,
    v: &Option<serde_json::Value>,
    l: usize,
    field: &str,
) -> Result<crate::compress::Rate> {
    match v {
        None => Ok(crate::compress::Rate::Auto),
        Some(v) => crate::compress::Rate::parse(v).map_err(|m| at(path, l, field, m)),
    }
}

fn scaledown_key(path: &Path, l: usize, field: &str, env: &Env) -> Result<()> {
    if env.get("SCALEDOWN_API_KEY").is_none() {
        return Err(at(
            path,
            l,
            field,
            "ScaleDown needs SCALEDOWN_API_KEY: export it or add `SCALEDOWN_API_KEY=...` to .env in the project root",
        ));
    }
    Ok(())
}

/// The dataset configs an experiment names: one, or every subtask when `dataset.task` is
/// null on a dataset that has subtasks.
fn entries_of<'a>(
    path: &Path,
    e: &ExperimentSpec,
    catalog: &Catalog<'a>,
) -> Result<Vec<Entry<'a>>> {
    let name = e.dataset.name.value.trim().to_lowercase();
    let of_dataset: Vec<&Entry> = catalog
        .entries
        .iter()
        .filter(|x| x.dataset == name)
        .collect();
    if of_dataset.is_empty() {
        return Err(at(
            path,
            line(&e.dataset.name),
            "dataset.name",
            format!(
                "unknown dataset `{}`; valid: {}",
                e.dataset.name.value,
                catalog.datasets().join(", ")
            ),
        ));
    }
    let task = e.task.value.name();
    let of_task: Vec<&Entry> = of_dataset
        .iter()
        .copied()
        .filter(|x| x.task == task)
        .collect();
    if of_task.is_empty() {
        let mut valid: Vec<&str> = of_dataset.iter().map(|x| x.task.as_str()).collect();
        valid.sort_unstable();
        valid.dedup();
        let why = if TASKS.contains(&task) {
            format!("dataset `{name}` has no `{task}` task")
        } else {
            format!("unknown task `{task}`")
        };
        return Err(at(
            path,
            line(&e.task),
            "task.name",
            format!("{why}; valid for `{name}`: {}", valid.join(", ")),
        ));
    }
    let chosen: Vec<Entry> = match &e.dataset.task {
        None => of_task.into_iter().cloned().collect(),
        Some(sub) => {
            let want = sub.value.trim().to_lowercase();
            let hit: Vec<Entry> = of_task
                .iter()
                .filter(|x| x.subtask.as_deref().map(str::to_lowercase) == Some(want.clone()))
                .map(|x| (*x).clone())
                .collect();
            if hit.is_empty() {
                let subs: Vec<&str> = of_task
                    .iter()
                    .filter_map(|x| x.subtask.as_deref())
                    .collect();
                let valid = if subs.is_empty() {
                    format!("`{name}` has no subtasks; leave `dataset.task` out")
                } else {
                    format!("valid: {} (or null for all of them)", subs.join(", "))
                };
                return Err(at(
                    path,
                    line(sub),
                    "dataset.task",
                    format!("unknown subtask `{}` of `{name}`; {valid}", sub.value),
                ));
            }
            hit
        }
    };
    Ok(chosen)
}

fn split_of(path: &Path, e: &ExperimentSpec, entries: &[Entry]) -> Result<String> {
    let splits: Vec<&String> = entries[0].config.source.splits.keys().collect();
    match &e.dataset.split {
        None => Ok(entries[0]
            .config
            .splits
            .test
            .clone()
            .unwrap_or_else(|| splits.first().map(|s| s.to_string()).unwrap_or_default())),
        Some(s) => {
            for x in entries {
                if !x.config.source.splits.contains_key(&s.value) {
                    let valid: Vec<&str> =
                        x.config.source.splits.keys().map(String::as_str).collect();
                    return Err(at(
                        path,
                        line(s),
                        "dataset.split",
                        format!(
                            "`{}` has no split `{}`; valid: {}",
                            x.config.id,
                            s.value,
                            valid.join(", ")
                        ),
                    ));
                }
            }
            Ok(s.value.clone())
        }
    }
}

fn model_of(path: &Path, e: &ExperimentSpec, configs: &Configs, env: &Env) -> Result<ModelRef> {
    let name = e.model.value.name().trim();
    let adapter = e.model.value.adapter().map(str::to_string);
    let l = line(&e.model);
    let api = |provider: Provider, api_model: String, config_id: Option<String>| {
        let w = wire(provider);
        if env.get(w.key_var()).is_none() {
            return Err(at(
                path,
                l,
                "model",
                format!(
                    "`{name}` needs {}: export it or add `{}=...` to .env in the project root",
                    w.key_var(),
                    w.key_var()
                ),
            ));
        }
        if adapter.is_some() {
            return Err(at(path, l, "model.adapter", "API models take no adapter"));
        }
        Ok(ModelRef::Api {
            provider,
            api_model,
            config_id,
        })
    };
    if let Ok(m) = configs.model(name) {
        return match (m.kind, m.provider, &m.api_model) {
            (ModelKind::Api, Some(p), Some(am)) => api(p, am.clone(), Some(m.id.clone())),
            _ => Ok(ModelRef::Local {
                spec: name.to_string(),
                adapter,
            }),
        };
    }
    if Path::new(name).exists() {
        return Ok(ModelRef::Local {
            spec: name.to_string(),
            adapter,
        });
    }
    if let Some((prov, model)) = name.split_once(':') {
        let provider = match prov.trim().to_lowercase().as_str() {
            "openai" => Provider::Openai,
            "anthropic" | "claude" => Provider::Anthropic,
            "gemini" | "google" => Provider::Gemini,
            other => {
                return Err(at(
                    path,
                    l,
                    "model",
                    format!(
                        "unknown provider `{other}` in `{name}`; valid: openai, anthropic, gemini"
                    ),
                ))
            }
        };
        if model.trim().is_empty() {
            return Err(at(
                path,
                l,
                "model",
                format!("`{name}` names no model after the provider"),
            ));
        }
        return api(provider, model.trim().to_string(), None);
    }
    let ids: Vec<&str> = configs.models.keys().map(String::as_str).collect();
    Err(at(
        path,
        l,
        "model",
        format!(
            "unknown model `{name}`: not `provider:NAME` (openai, anthropic, gemini), a model id ({}) or an existing HF directory / .gguf file",
            ids.join(", ")
        ),
    ))
}

/// A metric name as users write it → bwb's id (`em` → `exact_match`, `rouge_l` → `rougeL`,
/// `bertscore` → `bertscore_f1`, `precision` → the kind's precision…).
fn metric_id(name: &str, kind: AnswerKind) -> Option<MetricId> {
    let n = name.trim().to_lowercase().replace('-', "_");
    let by_kind = |list: MetricId, retrieval: MetricId, text: Option<MetricId>| match kind {
        AnswerKind::List => Some(list),
        AnswerKind::Retrieval => Some(retrieval),
        _ => text,
    };
    let alias = match n.as_str() {
        "em" | "exact" => Some(MetricId::ExactMatch),
        "rouge_1" => Some(MetricId::Rouge1),
        "rouge_2" => Some(MetricId::Rouge2),
        "rougel" | "rouge_l" | "rouge" => Some(MetricId::RougeL),
        "bertscore" | "bert_score" | "bertscore_f" => Some(MetricId::BertscoreF1),
        "precision" => by_kind(MetricId::SetPrecision, MetricId::RetrievalPrecision, None),
        "recall" => by_kind(MetricId::SetRecall, MetricId::RetrievalRecall, None),
        "f1" if kind == AnswerKind::List => Some(MetricId::SetF1),
        "f1" if kind == AnswerKind::Retrieval => Some(MetricId::RetrievalF1),
        "exact_match" if kind == AnswerKind::List => Some(MetricId::SetExactMatch),
        _ => None,
    };
    alias.or_else(|| {
        MetricId::ALL
            .into_iter()
            .find(|m| m.as_str().to_lowercase() == n)
    })
}

/// The metrics a dataset config can report: its scorer's, plus BERTScore for free text.
pub fn allowed_metrics(config: &TaskConfig) -> Vec<MetricId> {
    let mut v = crate::score::scorer(config).metric_ids().to_vec();
    if matches!(config.answer.kind, AnswerKind::Text | AnswerKind::Summary) {
        v.extend([
            MetricId::BertscorePrecision,
            MetricId::BertscoreRecall,
            MetricId::BertscoreF1,
        ]);
    }
    v
}

fn metrics_of(path: &Path, e: &ExperimentSpec, entries: &[Entry]) -> Result<Vec<MetricId>> {
    let first = entries[0].config;
    if e.metrics.is_empty() {
        return Ok(crate::score::scorer(first).metric_ids().to_vec());
    }
    let mut out = Vec::new();
    for m in &e.metrics {
        // Only what every chosen config computes (subtasks of one task share a kind).
        let allowed: Vec<MetricId> = allowed_metrics(first)
            .into_iter()
            .filter(|id| {
                entries
                    .iter()
                    .all(|x| allowed_metrics(x.config).contains(id))
            })
            .collect();
        let names = || {
            allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(id) = metric_id(&m.value, first.answer.kind) else {
            return Err(at(
                path,
                line(m),
                "metrics",
                format!(
                    "unknown metric `{}`; valid for this task: {}",
                    m.value,
                    names()
                ),
            ));
        };
        if !allowed.contains(&id) {
            return Err(at(
                path,
                line(m),
                "metrics",
                format!(
                    "`{}` does not fit task `{}` on `{}`; valid: {}",
                    m.value,
                    e.task.value.name(),
                    entries[0].dataset,
                    names()
                ),
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The experiment's `pricing`, else configs/pricing.yaml by model id or API model name.
fn price_of(e: &ExperimentSpec, model: &ModelRef, configs: &Configs) -> Option<ApiPrice> {
    if let Some(p) = e.pricing {
        return Some(ApiPrice {
            input_per_mtok: p.input_per_1m_tokens,
            cached_input_per_mtok: None,
            output_per_mtok: p.output_per_1m_tokens,
            long_context: None,
        });
    }
    let ModelRef::Api {
        api_model,
        config_id,
        ..
    } = model
    else {
        return None;
    };
    let api = &configs.pricing.api;
    config_id
        .as_ref()
        .and_then(|id| api.get(id))
        .or_else(|| api.get(api_model))
        .cloned()
}

/// Tokens of an example's prompt inputs, estimated at 4 characters a token.
pub fn estimate_tokens(ex: &crate::data::Example) -> u64 {
    let chars: usize = ex.inputs.values().map(|v| v.chars().count()).sum();
    (chars as u64).div_ceil(4)
}

/// Examples, tokens and cost of each planned experiment. Prepared data is read where it
/// exists (the real sample); otherwise the dataset's row count and typical size are used.
pub fn estimate(plans: &[Planned<'_>], paths: &crate::paths::Paths) -> Result<Vec<Estimate>> {
    let mut out = Vec::new();
    for p in plans {
        let mut examples = 0usize;
        let mut input = 0u64;
        let mut max_out = 0u64;
        for e in &p.entries {
            let max_tokens = p.max_tokens.unwrap_or(e.config.max_new_tokens) as u64;
            let (n, tokens) =
                match super::run::sample(paths, e.config, &p.split, p.num_examples, p.seed) {
                    Ok(exs) => (exs.len(), exs.iter().map(estimate_tokens).sum::<u64>()),
                    Err(_) => {
                        let rows = e
                            .config
                            .source
                            .splits
                            .get(&p.split)
                            .and_then(|s| s.rows)
                            .unwrap_or(0);
                        let mut n = p.num_examples.map_or(rows, |k| k.min(rows));
                        if paths.smoke {
                            n = n.min(e.config.smoke.test_sample_size);
                        }
                        (n, n as u64 * e.typical_input_tokens.unwrap_or(0) as u64)
                    }
                };
            examples += n;
            input += tokens;
            max_out += n as u64 * max_tokens;
        }
        let cost_usd = p.price.as_ref().map(|pr| {
            (input as f64 * pr.input_per_mtok + max_out as f64 * pr.output_per_mtok) / 1e6
        });
        out.push(Estimate {
            id: p.id.clone(),
            model: p.model.name(),
            datasets: p.entries.iter().map(|e| e.config.id.clone()).collect(),
            examples,
            input_tokens: input,
            max_output_tokens: max_out,
            cost_usd,
        });
    }
    Ok(out)
}

/// `hotpotqa`, or `longbench-… (4 configs)` for several.
fn datasets_label(d: &[String]) -> String {
    match d {
        [one] => one.clone(),
        [first, ..] => format!("{first} +{}", d.len() - 1),
        [] => String::new(),
    }
}

/// The plan as a table (`--dry-run`).
pub fn print_plan(est: &[Estimate]) {
    println!(
        "{:<28} {:<26} {:<34} {:>8} {:>12} {:>12} {:>10}",
        "experiment", "model", "datasets", "examples", "input tok", "max out tok", "cost USD"
    );
    let mut tot: BTreeMap<&str, f64> = BTreeMap::new();
    for e in est {
        let cost = e
            .cost_usd
            .map_or("unpriced".to_string(), |c| format!("{c:.4}"));
        println!(
            "{:<28} {:<26} {:<34} {:>8} {:>12} {:>12} {:>10}",
            e.id,
            e.model,
            datasets_label(&e.datasets),
            e.examples,
            e.input_tokens,
            e.max_output_tokens,
            cost
        );
        *tot.entry("examples").or_default() += e.examples as f64;
        *tot.entry("input").or_default() += e.input_tokens as f64;
        *tot.entry("cost").or_default() += e.cost_usd.unwrap_or(0.0);
    }
    println!(
        "{} experiments, {} examples, ~{} input tokens, at most ${:.4} (priced models; output at max_tokens)",
        est.len(),
        tot.get("examples").copied().unwrap_or(0.0),
        tot.get("input").copied().unwrap_or(0.0),
        tot.get("cost").copied().unwrap_or(0.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_aliases_follow_the_answer_kind() {
        assert_eq!(
            metric_id("EM", AnswerKind::Text),
            Some(MetricId::ExactMatch)
        );
        assert_eq!(metric_id("f1", AnswerKind::Text), Some(MetricId::F1));
        assert_eq!(metric_id("f1", AnswerKind::List), Some(MetricId::SetF1));
        assert_eq!(
            metric_id("precision", AnswerKind::Retrieval),
            Some(MetricId::RetrievalPrecision)
        );
        assert_eq!(
            metric_id("rougeL", AnswerKind::Summary),
            Some(MetricId::RougeL)
        );
        assert_eq!(
            metric_id("rouge-l", AnswerKind::Summary),
            Some(MetricId::RougeL)
        );
        assert_eq!(
            metric_id("bertscore", AnswerKind::Summary),
            Some(MetricId::BertscoreF1)
        );
        assert_eq!(metric_id("bleu", AnswerKind::Summary), None);
    }
}
