//! bwb → PEFT: adapters trained and saved by bwb on the tiny HF fixture models, loaded by
//! PEFT (`PeftModel.from_pretrained`) in scripts/check_peft_roundtrip.py, which recorded the
//! logits PEFT computes with them (tests/fixtures/peft/README.md). bwb must compute the same
//! logits with the same files. The other direction (PEFT-made adapters loaded by bwb) is
//! `model_reference::peft_adapters_give_peft_logits_and_gradients`, on the adapters in
//! tests/fixtures/models/<arch>/adapter.

use std::path::{Path, PathBuf};

use bwb::model::load::{self, LoadOptions};
use bwb::model::weights::LoraPlan;
use bwb::model::{adapter, ForwardCtx, Model};
use bwb::train::optim::AdamW;
use candle_core::{Device, Tensor, D};

use crate::common::REPO;
use crate::export::{logits, max_abs_diff};

const ARCHS: [&str; 4] = ["qwen3", "gemma3", "phi3", "llama"];

fn peft_fixture(arch: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/peft").join(arch)
}

fn model_fixture(arch: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/models").join(arch)
}

/// The prompt the fixture's logits are for, and PEFT's logits `(L, V)`.
fn peft_reference(arch: &str) -> (Vec<u32>, Tensor) {
    let st = candle_core::safetensors::load(
        peft_fixture(arch).join("peft_logits.safetensors"),
        &Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{arch}: {e}; run scripts/check_peft_roundtrip.py"));
    let ids: Vec<i64> = st["input_ids"].to_vec1().unwrap();
    (
        ids.iter().map(|&x| x as u32).collect(),
        st["logits"].clone(),
    )
}

#[test]
fn bwb_trained_adapters_give_the_logits_peft_computes_with_them() {
    for arch in ARCHS {
        let dir = peft_fixture(arch).join("adapter");
        let plan = adapter::load(&dir, &Device::Cpu).unwrap();
        let opts = LoadOptions {
            lora: Some(plan),
            ..Default::default()
        };
        let model = load::load_dir_weights(&model_fixture(arch), &opts)
            .unwrap()
            .0;
        let (ids, want) = peft_reference(arch);
        let got = logits(&model, &ids);
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{arch}: bwb vs PEFT logits differ by {d}");
        // The adapter matters: without it the logits are far from PEFT's.
        let base = load::load_dir_weights(&model_fixture(arch), &LoadOptions::default())
            .unwrap()
            .0;
        let off = max_abs_diff(&logits(&base, &ids), &want);
        assert!(off > 1e-2, "{arch}: adapter changes logits by only {off}");
    }
}

/// Mean next-token cross-entropy over `ids`.
fn lm_loss(model: &Model, ids: &[u32], ctx: &ForwardCtx) -> Tensor {
    let n = ids.len();
    let t = Tensor::from_vec(ids.to_vec(), (1, n), &Device::Cpu).unwrap();
    let pos = Tensor::arange(0i64, n as i64, &Device::Cpu)
        .unwrap()
        .reshape((1, n))
        .unwrap();
    let lg = model
        .forward(&t, &pos, None, ctx)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let logp = candle_nn::ops::log_softmax(&lg.narrow(0, 0, n - 1).unwrap(), D::Minus1).unwrap();
    let targets = Tensor::from_vec(ids[1..].to_vec(), (n - 1, 1), &Device::Cpu).unwrap();
    (logp.gather(&targets, 1).unwrap().mean_all().unwrap() * -1.0).unwrap()
}

/// Regenerates tests/fixtures/peft/<arch>/adapter: a fresh bwb LoRA (PEFT's init, A seeded,
/// B = 0) trained for 8 AdamW steps on the fixture's LoRA prompt, saved by bwb's PEFT
/// writer. llama uses rsLoRA and gemma3 a non-default alpha, so PEFT has to honour the
/// config fields. Run with `cargo test --test it write_peft_fixtures -- --ignored`, then
/// scripts/check_peft_roundtrip.py.
#[test]
#[ignore = "regenerates committed fixtures"]
fn write_peft_fixtures() {
    for arch in ARCHS {
        let src_cfg = adapter::load(&model_fixture(arch).join("adapter"), &Device::Cpu).unwrap();
        let plan = LoraPlan {
            r: 4,
            alpha: match arch {
                "gemma3" => 12.0,
                _ => 8.0,
            },
            dropout: 0.0,
            use_rslora: arch == "llama",
            target_modules: src_cfg.target_modules.clone(),
            init_seed: 11,
            adapter: None,
        };
        let opts = LoadOptions {
            lora: Some(plan.clone()),
            ..Default::default()
        };
        let (model, _, _, vars) = load::load_dir_weights(&model_fixture(arch), &opts).unwrap();
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(model_fixture(arch).join("reference.json")).unwrap(),
        )
        .unwrap();
        let ids: Vec<u32> = r["prompts"][1]["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let params: Vec<candle_core::Var> = vars
            .iter()
            .flat_map(|(_, a, b)| [a.clone(), b.clone()])
            .collect();
        let mut opt = AdamW::new(params.clone(), 0.0).unwrap();
        let ctx = ForwardCtx {
            train: true,
            seed: 0,
            ..Default::default()
        };
        for _ in 0..8 {
            let loss = lm_loss(&model, &ids, &ctx);
            let grads = loss.backward().unwrap();
            let g: Vec<Tensor> = params
                .iter()
                .map(|p| grads.get(p.as_tensor()).unwrap().clone())
                .collect();
            opt.step(&g, 1e-2).unwrap();
        }
        let out = peft_fixture(arch).join("adapter");
        let cfg = adapter::AdapterConfig::for_plan(&plan, &format!("tests/fixtures/models/{arch}"));
        adapter::save(&out, &cfg, &vars).unwrap();
    }
}
