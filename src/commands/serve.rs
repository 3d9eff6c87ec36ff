//! `bwb serve`: load the base model once and every adapter (`--lora-modules`,
//! `--adapter-dir`) onto it, then hand them to the OpenAI-compatible server (`src/serve/`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::ServeArgs;
use crate::config::Arch;
use crate::error::Error;
use crate::model::linear::ServedLora;
use crate::model::load::{self, LoadedModel};
use crate::serve::adapters::{trained_adapters, AdapterLoader};
use crate::serve::{ServeOptions, Setup};
use crate::settings::{EngineSettings, EngineUse, Settings};

/// `NAME=PATH` pairs, names unique and distinct from the base's.
fn lora_modules(args: &ServeArgs, base: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in &args.lora_modules {
        let Some((name, path)) = spec
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        else {
            return Err(Error::Config(format!(
                "--lora-modules {spec}: expected NAME=PATH (an adapter directory)"
            ))
            .into());
        };
        if name == base || out.iter().any(|(n, _)| n == name) {
            return Err(Error::Config(format!(
                "--lora-modules {spec}: the name `{name}` is already served"
            ))
            .into());
        }
        out.push((name.to_string(), path.to_string()));
    }
    Ok(out)
}

/// Load the base. Qwen3 serves with thinking off unless the model
/// config or a request's `chat_template_kwargs` says otherwise, also from an HF directory or
/// GGUF that no config describes.
fn load_model(
    settings: &Settings,
    model: &str,
    engine: &EngineSettings,
) -> Result<Arc<LoadedModel>> {
    let mut m = load::load_named(model, &settings.configs, &settings.hub, engine, None)?;
    if m.arch == Arch::Qwen3 {
        m.chat_kwargs
            .entry("enable_thinking".to_string())
            .or_insert(serde_json::Value::Bool(false));
    }
    Ok(Arc::new(m))
}

/// `--compressor METHOD [--compressor-model M] [--compressor-rate R]`, built.
fn compressor(
    settings: &Settings,
    args: &ServeArgs,
    engine: &EngineSettings,
) -> Result<Option<crate::serve::compress::Service>> {
    let Some(method) = &args.compressor else {
        return Ok(None);
    };
    let arg = format!(
        "{method}:{}",
        args.compressor_rate.as_deref().unwrap_or("auto")
    );
    let mut spec = crate::compress::Spec::parse(&arg)
        .map_err(|m| Error::Config(format!("--compressor {method} / --compressor-rate: {m}")))?;
    spec.model = args.compressor_model.clone();
    let api = crate::backend::api::ApiOptions::default();
    let compressor = crate::compress::build(&spec, settings, engine, &api, 8)?;
    Ok(Some(crate::serve::compress::Service { compressor }))
}

/// Context length when no --max-model-len is given and the model does not say (random weights).
const FALLBACK_MAX_MODEL_LEN: usize = 4096;

/// `--max-model-len`, or the model's own context length; never beyond the model's.
fn max_model_len(given: Option<usize>, model: Option<usize>) -> Result<usize> {
    match (given, model) {
        (Some(v), Some(m)) if v > m => Err(Error::Config(format!(
            "--max-model-len {v} exceeds the model's context length {m} (max_position_embeddings); \
             give at most {m} or leave it out"
        ))
        .into()),
        (Some(v), _) => Ok(v),
        (None, Some(m)) => Ok(m),
        (None, None) => Ok(FALLBACK_MAX_MODEL_LEN),
    }
}

/// The adapters served from the start: `--lora-modules`, then every adapter of this base
/// under `--adapter-dir` (name, directory, weights).
fn served_adapters(
    settings: &Settings,
    args: &ServeArgs,
    model: &str,
    loader: &AdapterLoader,
    base_name: &str,
) -> Result<Vec<(String, String, ServedLora)>> {
    let mut adapters = Vec::new();
    for (name, path) in lora_modules(args, base_name)? {
        let lora = loader.load(Path::new(&path))?;
        adapters.push((name, path, lora));
    }
    let Some(dir) = &args.adapter_dir else {
        return Ok(adapters);
    };
    for (name, path) in trained_adapters(dir)? {
        if adapters.iter().any(|(n, _, _)| *n == name) || name == base_name {
            continue; // --lora-modules named it already
        }
        // A checkpoints folder holds the adapters of every model trained there.
        if let Err(e) = crate::model::adapter::check_base(&path, model, &settings.configs) {
            tracing::warn!("--adapter-dir: skipping {name}: {e}");
            continue;
        }
        let lora = loader.load(&path)?;
        adapters.push((name, path.display().to_string(), lora));
    }
    Ok(adapters)
}

pub fn serve(settings: &Settings, args: &ServeArgs) -> Result<()> {
    let max_batch_tokens = args
        .max_batch_tokens
        .unwrap_or_else(|| args.max_num_seqs.saturating_mul(2).max(2048));
    if max_batch_tokens <= args.max_num_seqs {
        return Err(Error::Config(format!(
            "--max-batch-tokens {max_batch_tokens} must exceed --max-num-seqs {} (a step \
             decodes one token per sequence and prefills with what is left)",
            args.max_num_seqs
        ))
        .into());
    }
    let engine = settings.engine(&args.engine, EngineUse::Serve)?;
    let compressor = compressor(settings, args, &engine)?;
    let Some(model) = args.model.clone() else {
        let c = compressor
            .ok_or_else(|| Error::Config("--model is required without --compressor".into()))?;
        return crate::serve::compress::run_only(c, &args.host, args.port, args.api_key.clone());
    };
    let base_name = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| model.clone());
    let base = load_model(settings, &model, &engine)?;
    let max_model_len = max_model_len(args.max_model_len, base.max_context)?;
    let loader = AdapterLoader {
        spec: model.clone(),
        configs: Arc::new(settings.configs.clone()),
        model: base.clone(),
    };
    let adapters = served_adapters(settings, args, &model, &loader, &base_name)?;
    let setup = Setup {
        base,
        base_name,
        adapters,
        loader,
    };
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone(),
        max_num_seqs: args.max_num_seqs,
        max_queue: args.max_queue,
        max_model_len,
        max_batch_tokens,
        max_loras: args.max_loras,
        allow_runtime_lora: args.allow_runtime_lora,
        compressor,
    };
    crate::serve::run(setup, opts)
}
