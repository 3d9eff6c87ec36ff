//! PEFT LoRA adapters on disk: `adapter_config.json` + `adapter_model.safetensors` with PEFT's
//! tensor names (`base_model.model.<module>.lora_A.weight`, A `[r, in]`, B `[out, r]`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::weights::{LoraPlan, LoraVars};
use crate::config::{Configs, ModelConfig};
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// The fields of PEFT's `adapter_config.json` that define the adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f32,
    pub target_modules: TargetModules,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default = "none")]
    pub bias: String,
}

fn none() -> String {
    "none".into()
}

/// PEFT writes target_modules as a list, or a single regex string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    One(String),
}

impl TargetModules {
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::List(v) => v.clone(),
            Self::One(s) => vec![s.clone()],
        }
    }
}

/// Read and parse `<dir>/adapter_config.json`.
pub fn read_config(dir: &Path) -> Result<AdapterConfig> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
        Error::MissingInput(format!(
            "{}: {e}; an adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}",
            cfg_path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: cfg_path,
        message: format!("not a PEFT adapter config: {e}"),
    })
}

/// The name an adapter bwb trains on `spec` records as `base_model_name_or_path`: the hub
/// repo id of a model config (`HuggingFaceTB/SmolLM2-135M-Instruct` for `smollm2-135m`), as
/// PEFT (`AutoPeftModelForCausalLM`) and vLLM resolve it; a path or a config without
/// `hf_repo` (the random `smoke` model) as given.
pub fn peft_base(spec: &str, configs: &Configs) -> String {
    match configs.models.get(spec).and_then(|m| m.hf_repo.as_deref()) {
        Some(repo) => repo.to_string(),
        None => spec.to_string(),
    }
}

/// The model config an adapter's `base_model_name_or_path` names: a config id (adapters
/// written before bwb recorded hub ids) or a config's `hf_repo`. None for anything else.
pub fn base_config<'a>(base: &str, configs: &'a Configs) -> Option<&'a ModelConfig> {
    configs.models.get(base).or_else(|| {
        configs
            .models
            .values()
            .find(|m| m.hf_repo.as_deref() == Some(base))
    })
}

/// Refuse an adapter whose `base_model_name_or_path` names a different known model than the
/// one it is about to be attached to (`spec`: a config id, directory or GGUF file). A base bwb
/// does not know (a path, another hub repo) is accepted: the tensor shapes are checked when
/// the adapter is attached.
pub fn check_base(dir: &Path, spec: &str, configs: &Configs) -> Result<()> {
    let cfg = read_config(dir)?;
    let Some(base) = cfg.base_model_name_or_path.as_deref() else {
        return Ok(());
    };
    let Some(named) = base_config(base, configs) else {
        return Ok(());
    };
    let same = named.id == spec
        || named.hf_repo.as_deref() == Some(spec)
        || configs
            .models
            .get(spec)
            .is_some_and(|m| m.hf_repo.is_some() && m.hf_repo == named.hf_repo);
    if same {
        return Ok(());
    }
    Err(Error::BadFile {
        path: dir.join(CONFIG_FILE),
        message: format!(
            "base_model_name_or_path `{base}` is model `{}`, not `{spec}`; load this adapter with --model {}",
            named.id, named.id
        ),
    })
}

/// Read a PEFT adapter directory into a LoRA plan whose tensors the model builder attaches.
pub fn load(dir: &Path, device: &Device) -> Result<LoraPlan> {
    let cfg_path = dir.join(CONFIG_FILE);
    let cfg = read_config(dir)?;
    if !cfg.peft_type.eq_ignore_ascii_case("LORA") {
        return Err(Error::BadFile {
            path: cfg_path,
            message: format!("peft_type `{}` is not supported; only LORA", cfg.peft_type),
        });
    }
    if cfg.bias != "none" {
        return Err(Error::BadFile {
            path: cfg_path,
            message: format!("bias `{}` is not supported; only `none`", cfg.bias),
        });
    }
    if let TargetModules::One(s) = &cfg.target_modules {
        if s.chars().any(|c| "*?[](|\\".contains(c)) {
            return Err(Error::BadFile {
                path: cfg_path,
                message: format!("regex target_modules `{s}` is not supported; list module names"),
            });
        }
    }
    let w_path = dir.join(WEIGHTS_FILE);
    if !w_path.exists() {
        return Err(Error::MissingInput(format!(
            "{}: missing; the adapter directory must hold {WEIGHTS_FILE}",
            w_path.display()
        )));
    }
    let tensors = candle_core::safetensors::load(&w_path, device).map_err(|e| Error::BadFile {
        path: w_path.clone(),
        message: crate::error::first_line(&e),
    })?;
    let mut a: HashMap<String, Tensor> = HashMap::new();
    let mut b: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in tensors {
        let bad = |m: &str| Error::BadFile {
            path: w_path.clone(),
            message: format!("tensor `{name}`: {m}"),
        };
        let rest = name
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("expected a name starting with `base_model.model.`"))?;
        if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            a.insert(m.to_string(), t);
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            b.insert(m.to_string(), t);
        } else {
            return Err(bad("only lora_A / lora_B weights are supported"));
        }
    }
    let mut pairs = HashMap::new();
    for (m, ta) in a {
        let tb = b.remove(&m).ok_or_else(|| Error::BadFile {
            path: w_path.clone(),
            message: format!("`{PREFIX}{m}.lora_A.weight` has no matching lora_B"),
        })?;
        pairs.insert(m, (ta, tb));
    }
    if let Some(m) = b.keys().next() {
        return Err(Error::BadFile {
            path: w_path,
            message: format!("`{PREFIX}{m}.lora_B.weight` has no matching lora_A"),
        });
    }
    Ok(LoraPlan {
        r: cfg.r,
        alpha: cfg.lora_alpha,
        dropout: cfg.lora_dropout,
        use_rslora: cfg.use_rslora,
        target_modules: cfg.target_modules.names(),
        init_seed: 0,
        adapter: Some(pairs),
    })
}

impl AdapterConfig {
    /// The PEFT config for a LoRA plan on `base_model`.
    pub fn for_plan(plan: &LoraPlan, base_model: &str) -> Self {
        Self {
            peft_type: "LORA".into(),
            r: plan.r,
            lora_alpha: plan.alpha,
            lora_dropout: plan.dropout,
            target_modules: TargetModules::List(plan.target_modules.clone()),
            base_model_name_or_path: Some(base_model.to_string()),
            task_type: Some("CAUSAL_LM".into()),
            use_rslora: plan.use_rslora,
            bias: none(),
        }
    }
}

/// The adapter tensors by PEFT name (`base_model.model.<module>.lora_{A,B}.weight`), f32.
pub fn peft_tensors(vars: &LoraVars) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (module, a, b) in vars {
        for (which, v) in [("lora_A", a), ("lora_B", b)] {
            let t = v
                .as_tensor()
                .to_dtype(candle_core::DType::F32)?
                .to_device(&Device::Cpu)?;
            out.insert(format!("{PREFIX}{module}.{which}.weight"), t);
        }
    }
    Ok(out)
}

/// Write a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`);
/// each file is replaced atomically. PEFT (and [`load`]) read it back.
pub fn save(dir: &Path, cfg: &AdapterConfig, vars: &LoraVars) -> Result<()> {
    crate::fsutil::create_dir_all(dir)?;
    let tensors = peft_tensors(vars)?;
    let w_path = dir.join(WEIGHTS_FILE);
    let wrap = |source| Error::Write {
        path: w_path.clone(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".bwb-tmp-")
        .suffix(".safetensors")
        .tempfile_in(dir)
        .map_err(wrap)?;
    candle_core::safetensors::save(&tensors, tmp.path()).map_err(|e| Error::Write {
        path: w_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    tmp.as_file().sync_all().map_err(wrap)?;
    tmp.persist(&w_path).map_err(|e| wrap(e.error))?;
    crate::fsutil::write_json_atomic(&dir.join(CONFIG_FILE), cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> Configs {
        Configs::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")).unwrap()
    }

    fn write_cfg(dir: &Path, base: &str) {
        let cfg = serde_json::json!({
            "peft_type": "LORA", "r": 4, "lora_alpha": 8.0,
            "target_modules": ["q_proj"], "base_model_name_or_path": base,
        });
        std::fs::write(dir.join(CONFIG_FILE), cfg.to_string()).unwrap();
    }

    #[test]
    fn adapters_name_the_hub_repo_and_still_find_their_bwb_base() {
        let c = configs();
        assert_eq!(
            peft_base("smollm2-135m", &c),
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        assert_eq!(peft_base("smoke", &c), "smoke");
        assert_eq!(peft_base("some/dir", &c), "some/dir");
        let d = tempfile::tempdir().unwrap();
        // Written now (hub id) and before (config id): both attach to smollm2-135m.
        for base in ["HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"] {
            write_cfg(d.path(), base);
            assert_eq!(base_config(base, &c).unwrap().id, "smollm2-135m");
            check_base(d.path(), "smollm2-135m", &c).unwrap();
            check_base(d.path(), "HuggingFaceTB/SmolLM2-135M-Instruct", &c).unwrap();
            let e = check_base(d.path(), "qwen3-8b", &c)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--model smollm2-135m"), "{e}");
        }
        // A base bwb does not know is left to the shape checks.
        write_cfg(d.path(), "tests/fixtures/models/llama");
        check_base(d.path(), "qwen3-8b", &c).unwrap();
    }
}
