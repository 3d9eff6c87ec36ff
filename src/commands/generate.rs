//! `bwb generate`: load a local model (config id, HF directory or GGUF), optionally with a
//! PEFT adapter, and complete every prompt in one batch.

use std::io::Write;

use anyhow::Result;

use crate::cli::GenerateArgs;
use crate::error::Error;
use crate::model::generate::GenParams;
use crate::model::load;
use crate::prompt::chat_template::Message;
use crate::settings::{EngineUse, Settings};

pub fn generate(settings: &Settings, args: &GenerateArgs) -> Result<()> {
    let engine = settings.engine(&args.engine, EngineUse::Generate)?;
    let lora = match &args.adapter {
        Some(dir) => {
            crate::model::adapter::check_base(dir, &args.model, &settings.configs)?;
            Some(crate::model::adapter::load(dir, &engine.device.open()?)?)
        }
        None => None,
    };
    let m = load::load_named(&args.model, &settings.configs, &settings.hub, &engine, lora)?;
    let params = GenParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop: args.stop.clone(),
        ..GenParams::default()
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
