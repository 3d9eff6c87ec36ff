//! `bwb serve`: load the base model and one copy per `--lora-modules` adapter, then hand them
//! to the OpenAI-compatible server (`src/serve/`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::ServeArgs;
use crate::config::Arch;
use crate::error::Error;
use crate::model::load::{self, LoadedModel};
use crate::model::weights::LoraPlan;
use crate::serve::{ServeOptions, ServedModel};
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

/// Load the base (with an optional adapter). Qwen3 serves with thinking off unless the model
/// config or a request's `chat_template_kwargs` says otherwise, also from an HF directory or
/// GGUF that no config describes.
fn load_model(
    settings: &Settings,
    args: &ServeArgs,
    engine: &EngineSettings,
    lora: Option<LoraPlan>,
) -> Result<Arc<LoadedModel>> {
    let model = args.model.as_deref().unwrap_or_default();
    let mut m = load::load_named(model, &settings.configs, &settings.hub, engine, lora)?;
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
    let adapters = lora_modules(args, &base_name)?;
    let mut models = vec![ServedModel {
        name: base_name.clone(),
        parent: None,
        model: load_model(settings, args, &engine, None)?,
    }];
    let max_model_len = max_model_len(args.max_model_len, models[0].model.max_context)?;
    // One model per adapter: mixed-adapter batches are a later slice.
    for (name, path) in adapters {
        crate::model::adapter::check_base(Path::new(&path), &model, &settings.configs)?;
        let plan = crate::model::adapter::load(Path::new(&path), &engine.device.open()?)?;
        let m = load::load_named(
            &model,
            &settings.configs,
            &settings.hub,
            &engine,
            Some(plan),
        )?;
        models.push(ServedModel {
            name,
            parent: Some(base_name.clone()),
            model: Arc::new(m),
        });
    }
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone(),
        max_num_seqs: args.max_num_seqs,
        max_queue: args.max_queue,
        max_model_len,
        max_batch_tokens,
        compressor,
    };
    crate::serve::run(models, opts)
}
