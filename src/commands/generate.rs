//! `bwb generate`: load a local model (config id, HF directory or GGUF), optionally with a
//! PEFT adapter, and complete every prompt in one batch.

use std::io::Write;

use anyhow::{Context, Result};
use candle_core::{DType, Device};

use crate::cli::{EngineArgs, GenerateArgs};
use crate::error::Error;
use crate::model::generate::GenParams;
use crate::model::load::{self, LoadOptions, LoadedModel};
use crate::model::QuantFormat;
use crate::prompt::chat_template::Message;
use crate::settings::Settings;

/// Parse `--device`: cpu, cuda, cuda:N. Without it: CUDA when built with it and a GPU is
/// present, otherwise the CPU (with a warning when CUDA was built in but is unusable).
pub fn device(spec: Option<&str>) -> Result<Device> {
    match spec {
        None => {
            if cfg!(feature = "cuda") {
                match open_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => tracing::warn!("no usable CUDA GPU ({e}); running on the CPU"),
                }
            }
            Ok(Device::Cpu)
        }
        Some("cpu") => Ok(Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            let n: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    Error::Config(format!("--device {s}: expected cuda:N with N a GPU index"))
                })?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                return Err(Error::Config(format!(
                    "--device {s}: this bwb was built without CUDA; rebuild with ./start.sh --cuda or use --device cpu"
                ))
                .into());
            }
            open_cuda(n).map_err(|e| {
                Error::Config(format!("--device {s}: cannot open the GPU: {e}")).into()
            })
        }
        Some(other) => {
            Err(Error::Config(format!("--device {other}: expected cpu, cuda or cuda:N")).into())
        }
    }
}

/// Where quantised bases are cached: `BWB_CACHE_DIR`, else `$XDG_CACHE_HOME/bwb/quantized`,
/// else `~/.cache/bwb/quantized`; `BWB_CACHE_DIR=off` disables the cache.
pub fn quant_cache_dir() -> Option<std::path::PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("BWB_CACHE_DIR") {
        if d == "off" {
            return None;
        }
        return Some(d.into());
    }
    let base = var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("bwb").join("quantized"))
}

/// Open GPU `n`. cudarc loads the CUDA libraries at first use and panics when one is missing
/// (no driver on this machine): turn that into an error, without the panic's message.
fn open_cuda(n: usize) -> std::result::Result<Device, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| Device::new_cuda(n));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(crate::error::first_line(&e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("CUDA initialisation panicked");
            // cudarc: `Unable to dynamically load the "cuda" shared library - searched for …`
            let short = msg.split(" - ").next().unwrap_or(msg);
            Err(format!("{short}; is the NVIDIA driver installed?"))
        }
    }
}

pub fn dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(Error::Config(format!("--dtype {other}: expected f32, bf16 or f16")).into()),
    }
}

/// Load the model named by `--model` with the engine flags (and a LoRA plan).
pub fn load_model(
    settings: &Settings,
    args: &EngineArgs,
    lora: Option<crate::model::weights::LoraPlan>,
) -> Result<LoadedModel> {
    let dev = device(args.device.as_deref())?;
    let (quant, dense_gguf) = match args.quant.as_deref() {
        None => (None, false),
        Some(q) => {
            let f = QuantFormat::parse(q).map_err(|m| Error::Config(format!("--quant: {m}")))?;
            (f, f.is_none())
        }
    };
    let opts = LoadOptions {
        device: dev,
        dtype: dtype(&args.dtype)?,
        quant,
        dense_gguf,
        lora,
        quant_cache: quant_cache_dir(),
    };
    let (source, mc) = load::resolve(&args.model, &settings.configs, &settings.hub)?;
    let mut m = load::load(&source, &opts).with_context(|| format!("loading {}", args.model))?;
    if let Some(mc) = mc {
        m.chat_kwargs = mc.chat_template_kwargs.clone();
    }
    Ok(m)
}

pub fn generate(settings: &Settings, args: &GenerateArgs) -> Result<()> {
    let lora = match &args.adapter {
        Some(dir) => Some(crate::model::adapter::load(
            dir,
            &device(args.engine.device.as_deref())?,
        )?),
        None => None,
    };
    let m = load_model(settings, &args.engine, lora)?;
    let params = GenParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop: args.stop.clone(),
    };
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(Error::Config(format!("--top-p {}: must be in (0, 1]", args.top_p)).into());
    }
    let mut prompts = Vec::with_capacity(args.prompt.len());
    for p in &args.prompt {
        let messages: Vec<Message> = args
            .system
            .iter()
            .map(|s| Message::system(s.clone()))
            .chain(std::iter::once(Message::user(p.clone())))
            .collect();
        prompts.push(m.encode_prompt(&messages, args.raw)?);
    }
    let outs = m.generate(&prompts, &params)?;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for o in outs {
        if args.json {
            writeln!(w, "{}", serde_json::to_string(&o)?)?;
        } else {
            writeln!(w, "{}", o.text)?;
        }
    }
    Ok(())
}
