//! `bwb export --merge`: the merged model computes what base + adapter computes, for every
//! architecture's HF fixture, for the in-process smoke model and for a GGUF base; bad input
//! gives one line.

use std::path::{Path, PathBuf};

use bwb::model::load::{self, LoadOptions, ModelSource};
use bwb::model::{adapter, ForwardCtx, Model};
use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::common::{Project, REPO};

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/models").join(name)
}

fn prompt_of(arch: &str) -> Vec<u32> {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(arch).join("reference.json")).unwrap(),
    )
    .unwrap();
    r["lora"]["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Full-sequence logits `(L, V)` of one unpadded prompt.
pub fn logits(model: &Model, prompt: &[u32]) -> Tensor {
    let n = prompt.len();
    let ids = Tensor::from_vec(prompt.to_vec(), (1, n), &Device::Cpu).unwrap();
    let pos = Tensor::arange(0i64, n as i64, &Device::Cpu)
        .unwrap()
        .reshape((1, n))
        .unwrap();
    model
        .forward(&ids, &pos, None, &ForwardCtx::default())
        .unwrap()
        .squeeze(0)
        .unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn with_adapter(dir: &Path, adapter_dir: &Path) -> Model {
    let plan = adapter::load(adapter_dir, &Device::Cpu).unwrap();
    let opts = LoadOptions {
        lora: Some(plan),
        ..Default::default()
    };
    load::load_dir_weights(dir, &opts).unwrap().0
}

#[test]
fn merged_export_gives_base_plus_adapter_logits_for_every_architecture() {
    let p = Project::new();
    for arch in ["qwen3", "gemma3", "phi3", "llama", "gemma3-mm-prefix"] {
        let base = fixture(arch);
        let adapter_arch = arch.trim_end_matches("-mm-prefix");
        let adapter_dir = fixture(adapter_arch).join("adapter");
        let out = p.path(&format!("merged/{arch}"));
        let stdout = p
            .bwb(&[
                "export",
                "--model",
                base.to_str().unwrap(),
                "--adapter",
                adapter_dir.to_str().unwrap(),
                "--merge",
                out.to_str().unwrap(),
            ])
            .ok()
            .stdout();
        assert!(stdout.contains("merged"), "{stdout}");
        // config.json and generation_config.json are the base's, byte for byte.
        for f in ["config.json", "generation_config.json"] {
            assert_eq!(
                std::fs::read(base.join(f)).unwrap(),
                std::fs::read(out.join(f)).unwrap(),
                "{arch}: {f}"
            );
        }
        let prompt = prompt_of(adapter_arch);
        let want = logits(&with_adapter(&base, &adapter_dir), &prompt);
        let merged = load::load_dir_weights(&out, &LoadOptions::default())
            .unwrap()
            .0;
        let got = logits(&merged, &prompt);
        let d = max_abs_diff(&want, &got);
        assert!(d < 1e-4, "{arch}: merged logits differ by {d}");
        // And the adapter really changed the model (the merge is not a copy of the base).
        let plain = logits(
            &load::load_dir_weights(&base, &LoadOptions::default())
                .unwrap()
                .0,
            &prompt,
        );
        assert!(
            max_abs_diff(&plain, &got) > 1e-2,
            "{arch}: merge changed nothing"
        );
        // Every tensor of the base is there under its own name, in its own dtype.
        let st_base =
            candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu).unwrap();
        let st_out =
            candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(st_base.len(), st_out.len(), "{arch}");
        for (k, t) in &st_base {
            assert_eq!(t.dtype(), st_out[k].dtype(), "{arch}: {k}");
        }
    }
}

/// The smoke model with a trained-looking adapter (B non-zero), saved in PEFT format.
pub fn smoke_adapter(dir: &Path) -> ModelSource {
    let c = bwb::config::Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let mc = c.model("smoke").unwrap();
    let src = ModelSource::Random {
        arch: mc.arch.unwrap(),
        init: mc.random_init.clone().unwrap(),
    };
    let hp = c.training.get("smoke").unwrap().clone();
    let plan = bwb::train::lora_plan(&hp, 3);
    let m = load::load(
        &src,
        &LoadOptions {
            lora: Some(plan.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    for (_, _, b) in &m.lora_vars {
        b.set(&Tensor::randn(0f32, 0.2, b.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let cfg = adapter::AdapterConfig::for_plan(&plan, "smoke");
    adapter::save(dir, &cfg, &m.lora_vars).unwrap();
    src
}

#[test]
fn merged_smoke_model_loads_as_an_hf_directory_with_its_tokenizer_and_template() {
    let p = Project::new();
    let ad = p.path("adapter");
    let src = smoke_adapter(&ad);
    let out = p.path("merged");
    p.bwb(&[
        "export",
        "--model",
        "smoke",
        "--adapter",
        ad.to_str().unwrap(),
        "--merge",
        out.to_str().unwrap(),
    ])
    .ok();
    let plan = adapter::load(&ad, &Device::Cpu).unwrap();
    let want = load::load(
        &src,
        &LoadOptions {
            lora: Some(plan),
            ..Default::default()
        },
    )
    .unwrap();
    let got = load::load(&ModelSource::Dir(out.clone()), &LoadOptions::default()).unwrap();
    let msgs = [bwb::prompt::chat_template::Message::user(
        "Is this up or down?",
    )];
    let ids = want.encode_prompt(&msgs, false).unwrap();
    assert_eq!(got.encode_prompt(&msgs, false).unwrap(), ids);
    assert_eq!(got.eos_ids[0], want.eos_ids[0]);
    let d = max_abs_diff(&logits(&want.model, &ids), &logits(&got.model, &ids));
    assert!(d < 1e-4, "merged smoke logits differ by {d}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "Qwen3ForCausalLM");
}

/// The real SmolLM2 GGUF (4-bit Llama) merged with an adapter: the HF directory computes
/// what the dequantised GGUF plus the adapter computes, and its config.json carries the
/// GGUF's shape and context length (the loader's, read once).
#[test]
fn merged_gguf_base_gives_base_plus_adapter_logits() {
    let gguf = Path::new(REPO)
        .join("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        println!(
            "skipped: {} is absent (../shared not mounted)",
            gguf.display()
        );
        return;
    }
    let p = Project::new();
    let src = ModelSource::Gguf(gguf.clone());
    let plan = bwb::model::weights::LoraPlan {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        use_rslora: false,
        target_modules: vec!["q_proj".into(), "k_proj".into(), "down_proj".into()],
        init_seed: 5,
        adapter: None,
    };
    let dense = |lora| LoadOptions {
        dense_gguf: true,
        lora,
        ..Default::default()
    };
    let m = load::load(&src, &dense(Some(plan.clone()))).unwrap();
    for (_, _, b) in &m.lora_vars {
        b.set(&Tensor::randn(0f32, 0.05, b.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let ad = p.path("adapter");
    adapter::save(
        &ad,
        &adapter::AdapterConfig::for_plan(&plan, "smollm2"),
        &m.lora_vars,
    )
    .unwrap();
    let msgs = [bwb::prompt::chat_template::Message::user("What is 2 + 2?")];
    let ids = m.encode_prompt(&msgs, false).unwrap();
    let want = logits(&m.model, &ids);
    drop(m);

    let out = p.path("merged");
    p.bwb(&[
        "export",
        "--model",
        gguf.to_str().unwrap(),
        "--adapter",
        ad.to_str().unwrap(),
        "--merge",
        out.to_str().unwrap(),
    ])
    .ok();
    let got = load::load(&ModelSource::Dir(out.clone()), &LoadOptions::default()).unwrap();
    assert_eq!(got.encode_prompt(&msgs, false).unwrap(), ids);
    let d = max_abs_diff(&want, &logits(&got.model, &ids));
    assert!(d < 1e-3, "merged GGUF logits differ by {d}");
    let plain = logits(&load::load(&src, &dense(None)).unwrap().model, &ids);
    assert!(
        max_abs_diff(&plain, &want) > 1e-2,
        "the adapter changed nothing"
    );

    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["num_hidden_layers"], 30);
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["max_position_embeddings"], 8192, "llama.context_length");
    let st = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    // Embeddings, final norm, and per layer two norms and seven projections; no LM head.
    assert_eq!(st.len(), 2 + 30 * 9);
    assert!(!st.contains_key("lm_head.weight"));
}

#[test]
fn bad_export_input_gives_one_line_errors_and_writes_nothing() {
    let p = Project::new();
    let run = |model: &Path, adapter_dir: &Path, out: &Path| {
        p.bwb(&[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter_dir.to_str().unwrap(),
            "--merge",
            out.to_str().unwrap(),
        ])
        .fails(1)
    };
    let out = p.path("merged");
    // No adapter there.
    let err = run(&fixture("qwen3"), &p.path("nope"), &out);
    assert!(err.contains("adapter_config.json"), "{err}");
    // An adapter for another base: phi3's fused modules do not exist in llama …
    let err = run(&fixture("llama"), &fixture("phi3").join("adapter"), &out);
    assert!(
        err.contains("another base model")
            && (err.contains("qkv_proj") || err.contains("gate_up_proj")),
        "{err}"
    );
    // … gemma3's third layer does not exist in the 2-layer qwen3 …
    let err = run(&fixture("qwen3"), &fixture("gemma3").join("adapter"), &out);
    assert!(
        err.contains("another base model") && err.contains("layers.2"),
        "{err}"
    );
    // … and a shape mismatch names both tensors.
    let tmp = p.path("bad-adapter");
    std::fs::create_dir_all(&tmp).unwrap();
    let src = fixture("qwen3").join("adapter");
    std::fs::copy(
        src.join("adapter_config.json"),
        tmp.join("adapter_config.json"),
    )
    .unwrap();
    let mut t = candle_core::safetensors::load(src.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap();
    let key = "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight".to_string();
    let bad = t[&key].narrow(1, 0, 64).unwrap();
    t.insert(key, bad);
    candle_core::safetensors::save(&t, tmp.join("adapter_model.safetensors")).unwrap();
    let err = run(&fixture("qwen3"), &tmp, &out);
    assert!(
        err.contains("model.layers.1.mlp.down_proj") && err.contains("another base model"),
        "{err}"
    );
    assert!(!out.exists(), "a failed export leaves no output directory");
    let leftovers: Vec<_> = std::fs::read_dir(p.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bwb-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary directories left behind");
    // An existing, non-empty output directory is never overwritten.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let err = run(&fixture("qwen3"), &src, &out);
    assert!(err.contains("not empty"), "{err}");
    assert!(out.join("keep.txt").exists());
}
